"""LoadGen's detail log (``mlperf_log_detail.txt``) -> the facts a row needs.

Each line of the detail log is ``:::MLLOG {json}`` with ``key`` and ``value`` (MLPerf's logging
format); :func:`parse_detail` keeps the last value per key. :func:`summarize` reads the keys
LoadGen's ``results.cc`` writes: ``result_validity``, ``result_perf_constraints_met``,
``result_min_duration_met``, ``result_min_queries_met``, ``early_stopping_met``,
``result_invalid_reason``, ``early_stopping_result`` (text with "Early stopping Xth percentile
estimate: N" lines, N in ns), ``early_stopping_latency_ss`` / ``early_stopping_latency_ms`` (the
single-/multi-stream estimate at ``effective_target_latency_percentile``, ns; the server
scenario's early stopping counts over-latency queries and gives no estimate), the throughput
key of each scenario and the ``result_NN.NN_percentile_latency_ns`` keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from harness.errors import MeasurementError

PREFIX = ":::MLLOG "
_ESTIMATE = re.compile(r"Early stopping (\d+(?:\.\d+)?)th percentile estimate: (\d+)")
# Which key holds a scenario's achieved samples per second (results.cc).
_THROUGHPUT = {
    "SingleStream": "result_qps_with_loadgen_overhead",
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
}
_CHECKS = {
    "result_perf_constraints_met": "latency constraint not met",
    "result_min_duration_met": "minimum duration not met",
    "result_min_queries_met": "minimum query count not met",
    "early_stopping_met": "early stopping not satisfied",
}


@dataclass(frozen=True)
class LoadgenSummary:
    """One LoadGen run. Latencies in ms, throughput in samples/s.

    valid:       LoadGen's ``result_validity`` is VALID.
    reasons:     why not (one phrase per failed check, then LoadGen's own reason text).
    early_stop:  early-stopping percentile estimates, percentile (e.g. 99.0) -> ms.
    percentiles: latency percentiles LoadGen reports, percentile -> ms (per sample; per query
                 for multi-stream, where LoadGen reports both and the bound is per query).
    """

    scenario: str
    valid: bool
    reasons: tuple[str, ...]
    achieved_qps: float | None
    target_qps: float | None
    query_count: int | None
    early_stop: dict[float, float] = field(default_factory=dict)
    percentiles: dict[float, float] = field(default_factory=dict)
    mean_ms: float | None = None
    perf_constraints_met: bool | None = None
    early_stopping_text: str = ""

    @property
    def early_stop_p99_ms(self) -> float | None:
        return self.early_stop.get(99.0)


def parse_detail(text: str) -> dict[str, Any]:
    """Every ``key -> value`` of a detail log (the last one wins); MeasurementError when no
    line parses (not a LoadGen detail log)."""
    values: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            entry = json.loads(line[len(PREFIX) :])
        except json.JSONDecodeError:
            continue  # LoadGen truncates nothing, but a killed run can leave half a line
        if isinstance(entry, dict) and "key" in entry:
            values[entry["key"]] = entry.get("value")
    if not values:
        raise MeasurementError("LoadGen detail log has no :::MLLOG entries")
    return values


def summarize(values: dict[str, Any]) -> LoadgenSummary:
    """The row's facts from a parsed detail log; MeasurementError when LoadGen wrote no result
    (``result_validity`` missing: the run did not finish)."""
    if "result_validity" not in values:
        raise MeasurementError("LoadGen detail log has no result_validity: the run did not finish")
    scenario = str(values.get("effective_scenario", ""))
    valid = values["result_validity"] == "VALID"
    reasons = [why for key, why in _CHECKS.items() if values.get(key) is False]
    own = str(values.get("result_invalid_reason") or "").strip()
    if own:
        reasons.append(own)
    text = " ".join(str(values.get("early_stopping_result") or "").split())
    early = {float(p): int(ns) / 1e6 for p, ns in _ESTIMATE.findall(text)}
    per_query = scenario == "MultiStream"
    pattern = re.compile(
        r"result_(\d+\.\d+)_percentile_per_query_latency_ns"
        if per_query
        else r"result_(\d+\.\d+)_percentile_latency_ns"
    )
    percentiles = {
        float(m.group(1)): float(v) / 1e6
        for k, v in values.items()
        if (m := pattern.fullmatch(k)) and v is not None
    }
    mean_key = "result_mean_query_latency_ns" if per_query else "result_mean_latency_ns"
    qps = values.get(_THROUGHPUT.get(scenario, ""))
    mean_query = values.get("result_mean_query_latency_ns")
    if scenario == "MultiStream" and mean_query:
        # LoadGen writes no throughput for multi-stream: queries run back to back, so samples
        # per second are samples per query over the mean query latency.
        qps = int(values.get("effective_samples_per_query", 1)) * 1e9 / float(mean_query)
    percentile = values.get("effective_target_latency_percentile")
    for key in ("early_stopping_latency_ss", "early_stopping_latency_ms"):
        # LoadGen's early-stopping estimate at the target percentile, in ns (0: not reached)
        if values.get(key) and percentile and values.get("early_stopping_met"):
            early.setdefault(round(float(percentile) * 100, 1), float(values[key]) / 1e6)
    target = values.get("effective_target_qps") if scenario in ("Server", "Offline") else None
    constraints = values.get("result_perf_constraints_met")
    return LoadgenSummary(
        scenario=scenario,
        valid=valid,
        reasons=tuple(reasons),
        achieved_qps=float(qps) if qps is not None else None,
        target_qps=float(target) if target is not None else None,
        query_count=int(values["result_query_count"]) if "result_query_count" in values else None,
        early_stop=early,
        percentiles=percentiles,
        mean_ms=float(values[mean_key]) / 1e6 if values.get(mean_key) is not None else None,
        perf_constraints_met=bool(constraints) if constraints is not None else None,
        early_stopping_text=text,
    )
