"""Strict JSON out: every JSON infrabench writes parses with any JSON parser.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats, which are not JSON
(RFC 8259, section 6). :func:`dumps` writes them as ``null`` (an unknown value) instead.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Inf) inside dicts, lists and tuples
    replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` with non-finite floats as null; never writes NaN/Infinity
    (``allow_nan=False`` makes a missed case an error, not invalid JSON)."""
    default = kwargs.pop("default", None)
    if default is not None:  # objects turned into JSON by ``default`` are cleaned too
        value = json.loads(json.dumps(value, default=default, allow_nan=True))
    return json.dumps(finite(value), allow_nan=False, **kwargs)
