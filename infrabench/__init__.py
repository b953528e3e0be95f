"""``import infrabench``: the analysis API (pandas DataFrames of stored results).

The distribution is called infrabench; the engine's import packages are ``harness`` and
``backends``. This module only re-exports ``harness.api`` (see its docstring)::

    import infrabench
    res = infrabench.load(store="results/infrabench.duckdb", run="latest")
    res.rows, res.samples, res.runs
"""

from harness import __version__
from harness.api import Results, load, rows_frame, write_parquet

__all__ = ["Results", "__version__", "load", "rows_frame", "write_parquet"]
