"""TTFT, TPOT, inter-token latency and tokens/s from raw per-token timestamps.

One generation (``TokenTimes``) is the harness clock's reading when the call started and when
each generated token reached the harness's streamer callback (for a batch, one reading per decode
step: all rows' tokens of that step arrive together). Definitions follow MLPerf Inference's LLM
rules and vLLM's ``benchmark_serving``:

* TTFT  = first token - start (prefill plus the first sampled token), ms.
* TPOT  = (last token - first token) / (gen_len - 1): the mean decode step of one request, ms.
* ITL   = every gap between consecutive tokens, pooled over requests (its tail shows stalls
  that a per-request mean hides), ms.
* e2e   = last token - start, ms.
* prefill tokens/s = batch x prompt_len / TTFT;  decode tokens/s = batch x (gen_len - 1) /
  (last - first token), each the median over requests.

Quantile intervals are the distribution-free order-statistic intervals of
:mod:`harness.measure.stats`; a tail with too few samples is ``None``, not invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import MeasurementError
from harness.measure.stats import NS_PER_MS, Quantile, quantile


@dataclass(frozen=True)
class TokenTimes:
    """One timed generation: ``start_ns`` and the arrival of each decode step's tokens, ns."""

    start_ns: int
    token_ns: tuple[int, ...]

    def check(self) -> None:
        """MeasurementError when no token arrived or time ran backwards."""
        if not self.token_ns:
            raise MeasurementError("a generation produced no token timestamps")
        steps = np.diff(np.asarray((self.start_ns, *self.token_ns), dtype=np.int64))
        if np.any(steps < 0):
            raise MeasurementError("token timestamps go backwards: the streamer clock is wrong")


@dataclass(frozen=True)
class GenerativeStats:
    """Statistics over the timed generations of one case; times in ms.

    n_requests: timed generations; n_itl: pooled inter-token gaps.
    """

    n_requests: int
    n_itl: int
    ttft: tuple[Quantile, Quantile, Quantile]
    tpot: tuple[Quantile, Quantile, Quantile]
    itl_p99: Quantile
    e2e_p50: float
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    output_tokens_per_s: float


def _ms(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64) / NS_PER_MS


def per_request(times: TokenTimes) -> tuple[float, float | None, np.ndarray, float]:
    """(TTFT ms, TPOT ms or None for one token, ITL gaps ms, e2e ms) of one generation."""
    times.check()
    tokens = np.asarray(times.token_ns, dtype=np.int64)
    ttft = float(_ms(tokens[:1] - times.start_ns)[0])
    gaps = _ms(np.diff(tokens))
    tpot = float(gaps.mean()) if gaps.size else None
    return ttft, tpot, gaps, float(_ms(tokens[-1:] - times.start_ns)[0])


def generative_stats(
    runs: list[TokenTimes], batch_size: int, prompt_len: int, confidence: float = 0.95
) -> GenerativeStats:
    """Statistics of ``runs`` (each a generation of ``batch_size`` rows of ``prompt_len`` prompt
    tokens). Raises MeasurementError for no runs, or for runs of different lengths (a fixed
    ``gen_len`` is what makes them comparable)."""
    if not runs:
        raise MeasurementError("no generations were timed")
    if len({len(r.token_ns) for r in runs}) != 1:
        raise MeasurementError("generations made different numbers of tokens (EOS not ignored?)")
    parts = [per_request(r) for r in runs]
    ttft = np.sort(np.array([p[0] for p in parts]))
    tpots = [p[1] for p in parts if p[1] is not None]
    tpot = np.sort(np.array(tpots, dtype=np.float64))
    itl = np.sort(np.concatenate([p[2] for p in parts]))
    e2e = np.array([p[3] for p in parts])
    gen_len = len(runs[0].token_ns)

    def three(sorted_ms: np.ndarray) -> tuple[Quantile, Quantile, Quantile]:
        if sorted_ms.size == 0:
            return (Quantile(0.5, None, None, None), Quantile(0.9, None, None, None),
                    Quantile(0.99, None, None, None))  # fmt: skip
        return (quantile(sorted_ms, 0.5, confidence), quantile(sorted_ms, 0.9, confidence),
                quantile(sorted_ms, 0.99, confidence))  # fmt: skip

    ttft_p50 = float(np.median(ttft))
    tpot_p50 = float(np.median(tpot)) if tpot.size else None
    return GenerativeStats(
        n_requests=len(runs),
        n_itl=int(itl.size),
        ttft=three(ttft),
        tpot=three(tpot),
        itl_p99=three(itl)[2],
        e2e_p50=float(np.median(e2e)),
        prefill_tokens_per_s=batch_size * prompt_len * 1e3 / ttft_p50 if ttft_p50 > 0 else None,
        decode_tokens_per_s=batch_size * 1e3 / tpot_p50 if tpot_p50 else None,
        output_tokens_per_s=batch_size * gen_len * 1e3 / float(e2e.mean()),
    )


def kv_cache_bytes(
    layers: int, kv_heads: int, head_dim: int, tokens: int, batch_size: int, bytes_per_value: float
) -> int:
    """Bytes of a full KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x
    bytes per value (4 fp32, 2 bf16/fp16, 1 int8; per-group scales are not counted). The standard
    accounting, e.g. vLLM's ``CacheEngine.get_cache_block_size``."""
    if min(layers, kv_heads, head_dim, tokens, batch_size) < 1 or bytes_per_value <= 0:
        raise ValueError("KV-cache dimensions must be positive")
    return int(2 * layers * kv_heads * head_dim * tokens * batch_size * bytes_per_value)


@dataclass(frozen=True)
class GenerativeRaw:
    """What a worker measured for one decoder case, raw (no statistic).

    runs:             the timed generations, in order (a different prompt each).
    cold_ttft_ms:     TTFT of the first generation after load (untimed warm-up), ms.
    kv_cache_bytes:   the full KV cache (prompt_len + gen_len tokens, batch) computed from the
                      model's config at the cache's element size.
    kv_cache_bytes_engine: as the engine reports it, where it does.
    next_token_agreement, perplexity_ratio: teacher-forced on the held-out split against fp32
                      (None where the engine returns no logits).
    matching_greedy_len: greedy tokens equal to fp32's continuation of the same prompt (mean
                      over the prompts compared).
    """

    runs: tuple[TokenTimes, ...]
    prompt_len: int
    gen_len: int
    cold_ttft_ms: float
    kv_cache_bytes: int | None
    kv_cache_bytes_engine: int | None = None
    next_token_agreement: float | None = None
    perplexity_ratio: float | None = None
    matching_greedy_len: float | None = None
