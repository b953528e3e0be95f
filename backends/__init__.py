"""Backends: one module per runtime, registered under the ``infrabench.backends`` entry point."""
