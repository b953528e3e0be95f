"""openvino's serving capability: OpenVINO GenAI's ``ContinuousBatchingPipeline``.

The engine schedules: its ``SchedulerConfig`` decides which requests run together in a step
(continuous batching with paged attention, prefill chunked into ``max_num_batched_tokens`` by
dynamic split-fuse), as in OpenVINO Model Server. This module only hands requests over
(``add_request``), advances the engine (``step``, the pipeline's own API, which OVMS calls in
its loop the same way) and reads each request's ``GenerationHandle`` after every step, so the
harness sees each token as soon as the step that made it returns.

Fairness, as for ``LLMPipeline``: the same converted IR and CPU properties (f32 inference
precision for fp32, KV cache in the inference precision unless ``kv-int8``); the prompt-prefix
cache is off (``enable_prefix_caching = False``) and the harness sends a different corpus
window with every request besides, so no TTFT is served from a cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import GenerationSettings, OnEnd, OnTokens, ServeRequest
from harness.errors import BackendError

MAX_NUM_BATCHED_TOKENS = 256  # GenAI's default chunk of prompt tokens per step


@dataclass
class _Live:
    handle: Any
    on_tokens: OnTokens
    on_end: OnEnd
    tokens: int = 0


class OpenVinoServer:
    """Mixed into ``OpenVinoBackend`` after ``OpenVinoGenerator`` (whose ``_converted_ir`` it
    uses): implements ``harness.backend.ServesRequests``."""

    _cb: Any = None
    _live: dict[int, _Live]
    _engine_error: str | None = None  # why the engine failed; later requests fail with it
    _serve_facts: dict[str, Any]

    def load_server(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        final, converted, config = self._converted_ir(model_dir, settings)  # type: ignore[attr-defined]
        genai = self._genai  # type: ignore[attr-defined]
        scheduler = genai.SchedulerConfig()
        scheduler.max_num_seqs = settings.batch_size
        scheduler.max_num_batched_tokens = max(MAX_NUM_BATCHED_TOKENS, settings.batch_size)
        scheduler.enable_prefix_caching = False
        scheduler.dynamic_split_fuse = True
        try:
            self._cb = genai.ContinuousBatchingPipeline(str(final), scheduler, "CPU", config)
        except RuntimeError as exc:
            raise BackendError(f"ContinuousBatchingPipeline refused the model: {exc}") from None
        self._live = {}
        self._serve_facts = {
            "engine": "openvino-genai ContinuousBatchingPipeline",
            "max_num_seqs": settings.batch_size,
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "prefix_caching": False,
        }
        return converted

    def submit(self, request: ServeRequest, on_tokens: OnTokens, on_end: OnEnd) -> None:
        import openvino as ov

        genai = self._genai  # type: ignore[attr-defined]
        config = genai.GenerationConfig()
        config.max_new_tokens = config.min_new_tokens = request.max_new_tokens
        config.ignore_eos = True
        config.do_sample = False
        ids = np.ascontiguousarray(request.prompt_ids, dtype=np.int64)[None]
        if self._engine_error is not None:
            on_end(self._engine_error, None)
            return
        try:
            handle = self._cb.add_request(request.request_id, ov.Tensor(ids), config)
        except RuntimeError as exc:  # refused by the engine: this request failed, not the load
            on_end(f"the engine refused the request: {str(exc).splitlines()[0][:200]}", None)
            return
        self._live[request.request_id] = _Live(handle, on_tokens, on_end)

    def pump(self, wait_s: float) -> None:
        idle = not self._live and not self._cb.has_non_finished_requests()
        if idle or self._engine_error is not None:  # a failed engine is not stepped again
            time.sleep(max(wait_s, 0.0))
            return
        try:
            self._cb.step()
        except RuntimeError as exc:  # the engine failed: every request in it has failed
            self._engine_error = f"engine step failed: {str(exc).splitlines()[0][:200]}"
            live, self._live = self._live, {}
            for entry in live.values():
                entry.on_end(self._engine_error, None)
            return
        status = self._genai.GenerationStatus  # type: ignore[attr-defined]
        for request_id, entry in list(self._live.items()):
            if entry.handle.can_read():
                new = [t for out in entry.handle.read().values() for t in out.generated_ids]
                if new:
                    entry.tokens += len(new)
                    entry.on_tokens(new)
            state = entry.handle.get_status()
            if state == status.RUNNING:
                continue
            del self._live[request_id]
            if state == status.FINISHED:
                entry.on_end(None, entry.tokens)
            else:  # IGNORED: it does not fit the KV cache; CANCEL/STOP: stopped by the engine
                entry.on_end(f"the engine ended the request: {state.name}", None)

    def cancel(self, request_id: int) -> None:
        entry = self._live.pop(request_id, None)
        if entry is not None:
            entry.handle.cancel()

    def report(self) -> dict[str, Any]:
        """The serving engine's scheduler settings (``ReportsDetails``); empty otherwise."""
        return dict(getattr(self, "_serve_facts", {})) if self._cb is not None else {}
