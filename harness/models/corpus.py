"""The project's text corpus: sentences written for infrabench in the settings our users work in
(clinical notes, financial risk reports, security alerts), fixed and versioned.

Each domain file is split with a fixed seed into calibration (quantization), training
(distillation) and held-out evaluation (fidelity) sentences; the evaluation split is never used
to train or calibrate anything.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal

import numpy as np

CORPUS_VERSION = 1
DOMAINS = ("clinical", "finance", "security")
SPLIT_SEED = 20261128
CALIBRATION_PER_DOMAIN = 16
EVALUATION_PER_DOMAIN = 20

Split = Literal["calibration", "training", "evaluation", "all"]


@functools.cache
def domain_sentences(domain: str) -> tuple[str, ...]:
    text = resources.files("harness").joinpath(f"data/corpus/{domain}.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def sentences(split: Split = "all") -> tuple[str, ...]:
    """The sentences of one split, in a fixed order (domains interleaved by the permutation)."""
    chosen: list[str] = []
    for index, domain in enumerate(DOMAINS):
        lines = domain_sentences(domain)
        if split == "all":
            chosen += lines
            continue
        order = np.random.default_rng(SPLIT_SEED + index).permutation(len(lines))
        cal, ev = CALIBRATION_PER_DOMAIN, EVALUATION_PER_DOMAIN
        picks = {
            "calibration": order[:cal],
            "evaluation": order[cal : cal + ev],
            "training": order[cal + ev :],
        }[split]
        chosen += [lines[i] for i in sorted(picks)]
    return tuple(chosen)


MIN_USER_LINES = 10


def split_lines(lines: list[str], split: Split) -> tuple[str, ...]:
    """A user's text split like the corpus: fixed seed, about 16% calibration, 20% evaluation,
    the rest training (each at least one line)."""
    if split == "all":
        return tuple(lines)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(lines))
    cal = max(1, round(0.16 * len(lines)))
    ev = max(1, round(0.20 * len(lines)))
    picks = {
        "calibration": order[:cal],
        "evaluation": order[cal : cal + ev],
        "training": order[cal + ev :],
    }[split]
    return tuple(lines[i] for i in sorted(picks))
