"""The ``llm-server`` scenario inside its worker: one rate point of a request-rate sweep.

A load (:func:`harness.scenarios.arrivals.plan_requests`) is handed to a ``ServesRequests``
backend request by request at its arrival time on the harness clock (:func:`run_load`); the
backend's engine (or the server behind the ``http`` target) batches them as it likes. Every
token's arrival is stamped on the harness clock in the backend's callbacks. Nothing here
sleeps: the backend's ``pump`` advances the engine or waits (at most :data:`POLL_S`, or until
the next arrival), so a fake backend with its own clock can run a load in no real time.

Every wait is bounded: a request not finished ``request_timeout_s`` after its arrival fails
with that reason and is cancelled, so a load ends by ``rate_duration_s + request_timeout_s``
(plus one engine step); the worker's ``timeout_s`` bounds the whole case besides.

What is timed: ``load_s`` is ``load_server``; a short untimed warm-up (``WARMUP_REQUESTS``
concurrent requests on their own prompts) compiles the engine's kernels first; then the load.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.backend import (
    GenerationSettings,
    ReportsDetails,
    ServeRequest,
    ServesRequests,
    backend_class,
)
from harness.case import Case
from harness.environment import isa_flags
from harness.errors import BackendUnavailable, ConfigError, HarnessError
from harness.execute import Measurement, pin_cpus, timed_load
from harness.launch.base import Progress, no_progress
from harness.measure.clock import Clock
from harness.measure.memory import peak_rss_mb
from harness.models.causal_lm import prompts
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant
from harness.scenarios.arrivals import PlannedRequest, plan_requests
from harness.scenarios.goodput import Objectives, RequestRecord
from harness.scenarios.record import LlmLoadRaw

POLL_S = 0.05  # the longest the loop waits before it checks arrivals and deadlines again
WARMUP_REQUESTS = 2
WARMUP_TOKENS = 8

Prompt = tuple[np.ndarray, str]  # token ids (1-D int64) and the same tokens as text


@dataclass
class _Open:
    """A request while it is in flight (guarded by the load's lock)."""

    planned: PlannedRequest
    arrival_ns: int
    stamps: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    end_ns: int | None = None
    error: str | None = None
    output_tokens: int | None = None

    def record(self) -> RequestRecord:
        p = self.planned
        return RequestRecord(
            p.index, self.arrival_ns, tuple(self.stamps), tuple(self.counts),
            self.end_ns if self.end_ns is not None else self.arrival_ns, p.prompt_len,
            p.output_len, self.error, self.output_tokens,
        )  # fmt: skip


def run_load(
    backend: ServesRequests,
    planned: Sequence[PlannedRequest],
    prompt_of: Sequence[Prompt],
    clock: Clock,
    request_timeout_s: float,
) -> tuple[int, list[RequestRecord]]:
    """Submit each planned request at ``start + arrival_s`` (``prompt_of[index]`` cut to its
    prompt length), pump the backend until every request finished, failed or passed its
    deadline. Returns the load's start (ns, the harness clock) and one record per request."""
    lock = threading.Lock()
    timeout_ns = int(request_timeout_s * 1e9)
    start = clock.now_ns()
    due = deque(sorted(planned, key=lambda p: p.arrival_s))
    opened: list[_Open] = []
    live: dict[int, _Open] = {}

    def close(entry: _Open, error: str | None, tokens: int | None) -> None:
        now = clock.now_ns()
        with lock:
            if entry.end_ns is None:
                entry.end_ns, entry.error, entry.output_tokens = now, error, tokens

    def submit(p: PlannedRequest) -> None:
        entry = _Open(p, start + int(p.arrival_s * 1e9))
        opened.append(entry)
        live[p.index] = entry

        def on_tokens(ids: Sequence[int]) -> None:
            now = clock.now_ns()
            with lock:
                if entry.end_ns is None:
                    entry.stamps.append(now)
                    entry.counts.append(len(ids))

        ids, text = prompt_of[p.index]
        request = ServeRequest(p.index, ids[: p.prompt_len], text, p.output_len)
        try:
            backend.submit(request, on_tokens, lambda err, n: close(entry, err, n))
        except HarnessError as exc:
            close(entry, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", None)

    while due or live:
        now = clock.now_ns()
        while due and start + int(due[0].arrival_s * 1e9) <= now:
            submit(due.popleft())
        expired = []
        with lock:
            for index, entry in list(live.items()):
                if entry.end_ns is not None:
                    del live[index]
                elif now - entry.arrival_ns > timeout_ns:
                    entry.end_ns = now
                    entry.error = f"no complete answer within request_timeout_s = " \
                                  f"{request_timeout_s:g} s"  # fmt: skip
                    del live[index]
                    expired.append(index)
        for index in expired:
            backend.cancel(index)
        if not due and not live:
            break
        wait = POLL_S
        if due:
            wait = min(POLL_S, max(0.0, (start + int(due[0].arrival_s * 1e9) - now) / 1e9))
        backend.pump(wait)
    return start, [entry.record() for entry in opened]


def load_prompts(model_dir: Path, planned: Sequence[PlannedRequest], extra: int) -> list[Prompt]:
    """One corpus window per planned request (and ``extra`` more, for a warm-up), each as
    long as the longest prompt, with its text: request ``i`` is cut to its own length, and its
    text is that cut decoded (what a server that takes text is sent)."""
    from tokenizers import Tokenizer

    longest = max((p.prompt_len for p in planned), default=1)
    windows = prompts(model_dir, "training", longest, 1, len(planned) + extra)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    lengths = [p.prompt_len for p in planned] + [longest] * extra
    out: list[Prompt] = []
    for window, length in zip(windows, lengths, strict=True):
        ids = np.ascontiguousarray(window[0, :length], dtype=np.int64)
        out.append((ids, tokenizer.decode(ids.tolist(), skip_special_tokens=False)))
    return out


def measure_llm_serving(
    case: Case, artifact: Artifact, clock: Clock, progress: Progress = no_progress
) -> Measurement:
    """Measure one rate point of ``case`` (scenario ``llm-server``) in this process; raises
    like ``measure_case`` (BackendUnavailable: skip; BackendError: fail). A failed request is
    not raised: it is counted in the row with its reason."""
    rate = case.serving.request_rate
    if case.gen_len is None or case.seq_len is None or rate is None:
        raise ConfigError(f"{case.case_id}: llm-server needs prompt_len, gen_len and a rate")
    backend = backend_class(case.backend)()
    backend.check()
    if not isinstance(backend, ServesRequests):
        raise BackendUnavailable(f"{case.backend} cannot serve generation requests")
    serving = case.settings.serving
    planned = plan_requests(
        rate, serving.rate_duration_s, serving.max_requests, case.seq_len, case.gen_len,
        serving.burstiness, serving.length_range_ratio, serving.seed,
    )  # fmt: skip
    model_dir = Path(artifact.directory)
    prompt_of = load_prompts(model_dir, planned, WARMUP_REQUESTS)
    warm = [PlannedRequest(len(planned) + i, 0.0, case.seq_len, WARMUP_TOKENS)
            for i in range(WARMUP_REQUESTS)]  # fmt: skip
    affinity = pin_cpus(case.threads)
    variant = parse_variant(case.variant)
    settings = GenerationSettings(
        threads=case.threads, batch_size=case.serving.max_batch_size,
        max_length=max(p.prompt_len + p.output_len for p in planned),
        weight_bits=variant.weight_bits, kv_cache_int8=variant.kv_cache_int8,
        precision=variant.runtime_precision, isa_flags=tuple(isa_flags()),
        cache_dir=cache_root(), options=case.options,
    )  # fmt: skip
    try:
        progress("loading")
        compile_s, load_s, model_mem_mb = timed_load(
            lambda: backend.load_server(model_dir, settings), clock
        )
        progress("warm-up")
        warm_start, warm_records = run_load(backend, warm, prompt_of, clock,
                                            serving.request_timeout_s)  # fmt: skip
        warm_end = max(r.end_ns for r in warm_records)
        progress(f"{rate:g} requests/s for up to {serving.rate_duration_s:g} s")
        start, records = run_load(backend, planned, prompt_of, clock, serving.request_timeout_s)
        details = backend.report() if isinstance(backend, ReportsDetails) else {}
        executed, versions = backend.executed_precision(), backend.versions()
    finally:
        backend.close()
    first = warm_records[0]
    raw = LlmLoadRaw(
        offered_rps=rate,
        start_ns=start,
        records=tuple(records),
        objectives=Objectives(serving.ttft_slo_ms, serving.tpot_slo_ms),
        attainment_goal=serving.attainment_goal,
        load={
            "burstiness": serving.burstiness, "rate_duration_s": serving.rate_duration_s,
            "max_requests": serving.max_requests, "request_timeout_s": serving.request_timeout_s,
            "length_range_ratio": serving.length_range_ratio, "seed": serving.seed,
            "max_num_seqs": case.serving.max_batch_size,
            "warmup_errors": sorted({r.error for r in warm_records if r.error}),
        },
    )  # fmt: skip
    return Measurement(
        samples_ns=tuple(r.end_ns - r.arrival_ns for r in records if r.ok),
        warmup_iters=len(warm_records),
        warmup_s=(warm_end - warm_start) / 1e9,
        warmup_steady=True,
        stop_reason="llm-server load",
        rel_ci_width=None,
        load_s=load_s,
        compile_s=compile_s,
        first_inference_ms=first.e2e_ms(),
        model_mem_mb=model_mem_mb,
        peak_rss_mb=peak_rss_mb(),
        affinity=affinity,
        executed_precision=executed,
        versions=versions,
        energy_note="not measured in load scenarios; ",
        details=details,
        llm_load=raw,
    )
