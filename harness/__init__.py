"""infrabench: hardware-aware benchmarking of neural-network inference.

Importing this package imports no ML runtime; backends and models load theirs lazily.
"""

__version__ = "0.1.0"
