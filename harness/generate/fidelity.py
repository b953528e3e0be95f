"""Fidelity of a generative variant against the fp32 model, as pure functions on token ids and
log-probabilities.

* next-token agreement: teacher-forced on held-out text, the share of positions where the
  variant's argmax next token equals fp32's (the LLM analogue of top-1 agreement).
* perplexity ratio: fp32 perplexity / the variant's, on the same tokens (1.0: no loss; the
  suite's ``fidelity_min_ratio`` gates it like any other "higher is better" ratio).
* matching continuation: how many greedy tokens the variant generates before it first differs
  from fp32's greedy continuation of the same prompt.
"""

from __future__ import annotations

import numpy as np


def next_token_agreement(reference_ids: np.ndarray, ids: np.ndarray) -> float:
    """Share of equal argmax ids; both of the same shape (any), non-empty."""
    if reference_ids.shape != ids.shape or reference_ids.size == 0:
        raise ValueError(f"shapes differ or are empty: {reference_ids.shape} vs {ids.shape}")
    return float(np.mean(reference_ids == ids))


def perplexity(target_logprobs: np.ndarray) -> float:
    """exp(-mean log p(target)) over the given natural-log probabilities of the true next
    tokens (shape: any, non-empty)."""
    if target_logprobs.size == 0:
        raise ValueError("no tokens to score")
    return float(np.exp(-np.mean(target_logprobs.astype(np.float64))))


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[target] per position: logits (..., vocab), targets (...) int."""
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    logsum = np.log(np.exp(x - top).sum(axis=-1)) + top[..., 0]
    picked = np.take_along_axis(x, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    return picked - logsum


def matching_prefix_len(reference: np.ndarray, generated: np.ndarray) -> int:
    """Length of the common prefix of two 1-D token sequences."""
    n = min(reference.size, generated.size)
    differ = np.nonzero(reference[:n] != generated[:n])[0]
    return int(differ[0]) if differ.size else n
