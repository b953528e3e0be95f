"""Clock, timing loop, statistics and memory probes. Imports no ML runtime."""
