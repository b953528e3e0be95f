"""One decoder case inside a worker: load -> warm-up -> timed generations -> fidelity.

What is timed: ``load_s`` is ``load_generator`` (conversion and weight compression included
when not cached); each timed generation records the harness clock just before ``generate`` and in
the engine's per-token callback. Every generation gets a different prompt from the corpus's
training split (engines that cache prompt prefixes would otherwise report a false TTFT).
Sampling stops after ``min_samples`` generations or when ``budget_s`` is spent (at least
``MIN_GENERATIONS``). Fidelity compares with the fp32 model in PyTorch on the evaluation split.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from harness.backend import (
    Generates,
    GenerationSettings,
    ReportsDetails,
    ReportsDeviceMemory,
    ReportsStepTimes,
    StepTimes,
    backend_class,
)
from harness.case import Case
from harness.environment import cpu_model, isa_flags
from harness.errors import BackendUnavailable, ConfigError, MeasurementError
from harness.execute import Measurement, pin_cpus, timed_load
from harness.generate.fidelity import (
    matching_prefix_len,
    next_token_agreement,
    perplexity,
    target_logprobs,
)
from harness.generate.stats import GenerativeRaw, TokenTimes, kv_cache_bytes
from harness.launch.base import Progress, no_progress
from harness.measure.clock import Clock
from harness.measure.energy import choose_probe
from harness.measure.memory import peak_rss_mb
from harness.models.causal_lm import prompts
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant

MIN_GENERATIONS = 3
WARMUP_GENERATIONS = 2  # untimed; the first is the cold start (the row's first_inference_ms)
FIDELITY_ROWS = 4  # held-out windows scored teacher-forced
FIDELITY_LEN = 128  # tokens per window
GREEDY_PROMPTS = 2  # prompts whose greedy continuation is compared with fp32's
# An engine's duration of a call may fall short of the harness's reading around it by the
# call's own overhead (arguments in, results out: well under a millisecond for OpenVINO GenAI
# at batch 1, where both clocks are read); more than this is a clock that cannot be trusted.
ENGINE_SHORTFALL_REL, ENGINE_SHORTFALL_NS = 0.02, 5_000_000
ENGINE_EXCESS_NS = 100_000  # rounding: the engine's call lies inside the harness's


def engine_token_times(start_ns: int, end_ns: int, engine: StepTimes, gen_len: int) -> TokenTimes:
    """The token times of a call the engine timed itself, on the harness clock: each step's
    offset added to the harness's reading before the call. MeasurementError unless the
    engine's steps are ``gen_len``, in order and within its call, its call's duration is the
    harness's minus at most ``ENGINE_SHORTFALL_REL`` (or ``ENGINE_SHORTFALL_NS``), and its last
    step is within the same slack of the call's end (the last token ends a call)."""
    harness_ns = end_ns - start_ns
    steps = engine.steps_ns
    said = (f"{engine.source}: {len(steps)} steps, call {engine.total_ns / 1e6:.3f} ms; harness "
            f"clock {harness_ns / 1e6:.3f} ms")  # fmt: skip
    if len(steps) != gen_len or list(steps) != sorted(steps):
        raise MeasurementError(f"engine step times are not {gen_len} ordered steps ({said})")
    if not 0 < steps[-1] <= engine.total_ns + ENGINE_EXCESS_NS:
        raise MeasurementError(f"engine step times fall outside its call ({said})")
    slack = max(ENGINE_SHORTFALL_REL * harness_ns, ENGINE_SHORTFALL_NS)
    if not harness_ns - slack <= engine.total_ns <= harness_ns + ENGINE_EXCESS_NS:
        raise MeasurementError(f"the engine's clock disagrees with the harness's ({said})")
    if engine.total_ns - steps[-1] > slack:  # the last token ends the call: steps in a wrong unit
        raise MeasurementError(f"the engine's last step is not at the end of its call ({said})")
    return TokenTimes(start_ns, tuple(start_ns + s for s in steps))


def timed_generation(
    backend: Generates, prompt: np.ndarray, gen_len: int, clock: Clock
) -> tuple[TokenTimes, np.ndarray]:
    """One generation timed by ``clock``: the reading before the call and one per token; for
    a call that streamed no token, the engine's own step times cross-checked with the
    readings around the call (``engine_token_times``), where the backend reports them."""
    stamps: list[int] = []

    def on_token() -> None:
        stamps.append(clock.now_ns())

    start = clock.now_ns()
    tokens = backend.generate(prompt, gen_len, on_token)
    end = clock.now_ns()
    engine = backend.last_step_times() if isinstance(backend, ReportsStepTimes) else None
    if not stamps and engine is not None:
        return engine_token_times(start, end, engine, gen_len), tokens
    return TokenTimes(start, tuple(stamps)), tokens


def kv_value_bytes(kv_cache_int8: bool, executed_precision: str | None) -> int:
    """Bytes per cached key/value element: 1 for an int8 KV cache, 2 where the decoder executes
    in fp16/bf16 (its cache is held in that type), else 4 (fp32)."""
    if kv_cache_int8:
        return 1
    return 2 if executed_precision in ("fp16", "bf16") else 4


def config_kv_bytes(model_dir: Path, tokens: int, batch: int, bytes_per_value: float) -> int:
    """KV-cache bytes from the directory's config.json (layers, KV heads, head size)."""
    config = json.loads((model_dir / "config.json").read_text())
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return kv_cache_bytes(config["num_hidden_layers"], kv_heads, head_dim, tokens, batch,
                          bytes_per_value)  # fmt: skip


def reference(
    model_dir: Path, ids: np.ndarray, greedy: list[np.ndarray], gen_len: int
) -> dict[str, np.ndarray]:
    """fp32 PyTorch's argmax and target log-probabilities for ``ids`` (rows, length), and its
    greedy continuations of ``greedy`` prompts; cached beside the fp32 directory."""
    digest = hashlib.sha256(ids.tobytes() + b"".join(p.tobytes() for p in greedy))
    cache = model_dir / f"generative-reference-{digest.hexdigest()[:16]}-g{gen_len}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    import torch

    from harness.models.causal_lm import load_hf_causal_lm

    model, _ = load_hf_causal_lm(model_dir)
    with torch.inference_mode():
        logits = model(torch.from_numpy(ids)).logits.float().numpy()
        conts = [
            model.generate(torch.from_numpy(p), max_new_tokens=gen_len, min_new_tokens=gen_len,
                           do_sample=False).numpy()[:, p.shape[1]:]
            for p in greedy
        ]  # fmt: skip
    out = {
        "argmax": logits[:, :-1].argmax(-1),
        "logprobs": target_logprobs(logits[:, :-1], ids[:, 1:]),
        "greedy": np.stack(conts),
    }
    np.savez(cache, **out)
    return out


def generative_fidelity(
    backend: Generates, reference_dir: Path, gen_len: int
) -> tuple[float | None, float | None, float]:
    """(next-token agreement, perplexity ratio fp32/variant, mean matching greedy length)."""
    ids = np.concatenate(prompts(reference_dir, "evaluation", FIDELITY_LEN, FIDELITY_ROWS, 1))
    greedy = prompts(reference_dir, "evaluation", 32, 1, GREEDY_PROMPTS)
    ref = reference(reference_dir, ids, greedy, gen_len)
    logits = backend.next_token_logits(ids)
    agreement = ratio = None
    if logits is not None:
        agreement = next_token_agreement(ref["argmax"], logits[:, :-1].argmax(-1))
        ppl = perplexity(target_logprobs(logits[:, :-1], ids[:, 1:]))
        ratio = perplexity(ref["logprobs"]) / ppl
    matched = [
        matching_prefix_len(ref["greedy"][i][0], backend.generate(p, gen_len, lambda: None)[0])
        for i, p in enumerate(greedy)
    ]
    return agreement, ratio, float(np.mean(matched))


def measure_generation(
    case: Case,
    artifact: Artifact,
    reference_artifact: Artifact | None,
    clock: Clock,
    progress: Progress = no_progress,
) -> Measurement:
    """Measure the decoder case ``case`` in this process; raises like ``measure_case``."""
    if case.gen_len is None or case.seq_len is None:
        raise ConfigError(f"{case.case_id}: a decoder case needs prompt_len and gen_len")
    backend = backend_class(case.backend)()
    backend.check()
    if not isinstance(backend, Generates):
        raise BackendUnavailable(f"{case.backend} cannot generate text")
    affinity = pin_cpus(case.threads)
    variant = parse_variant(case.variant)
    model_dir = Path(artifact.directory)
    settings = GenerationSettings(
        threads=case.threads, batch_size=case.batch_size,
        max_length=case.seq_len + case.gen_len, weight_bits=variant.weight_bits,
        kv_cache_int8=variant.kv_cache_int8, precision=variant.runtime_precision,
        isa_flags=tuple(isa_flags()), cache_dir=cache_root(), options=case.options,
    )  # fmt: skip
    policy = case.settings.timing
    probe, energy_note = choose_probe(case.settings.energy, case.device, cpu_model())
    count = max(policy.min_samples, MIN_GENERATIONS) + WARMUP_GENERATIONS
    batches = prompts(model_dir, "training", case.seq_len, case.batch_size, count)
    try:
        progress("loading")
        compile_s, load_s, model_mem_mb = timed_load(
            lambda: backend.load_generator(model_dir, settings), clock
        )
        progress("warm-up")
        cold, _ = timed_generation(backend, batches[0], case.gen_len, clock)
        for prompt in batches[1:WARMUP_GENERATIONS]:
            timed_generation(backend, prompt, case.gen_len, clock)
        progress("sampling")
        runs: list[TokenTimes] = []
        if probe is not None:
            probe.start()
        began = clock.now_ns()
        for prompt in batches[WARMUP_GENERATIONS:]:
            runs.append(timed_generation(backend, prompt, case.gen_len, clock)[0])
            spent = (clock.now_ns() - began) / 1e9
            if len(runs) >= MIN_GENERATIONS and spent >= policy.budget_s:
                break
        sampling_s = (clock.now_ns() - began) / 1e9
        energy = probe.stop() if probe is not None else None
        # which clock timed the runs (the fidelity pass's batch-1 calls reset it)
        engine = backend.last_step_times() if isinstance(backend, ReportsStepTimes) else None
        progress("fidelity")
        ref_dir = Path((reference_artifact or artifact).directory)
        agreement, ratio, matched = generative_fidelity(backend, ref_dir, case.gen_len)
        engine_kv = backend.kv_cache_bytes()
        executed = backend.executed_precision()
        versions = backend.versions()
        device_mem = backend.device_mem_mb() if isinstance(backend, ReportsDeviceMemory) else None
        details = backend.report() if isinstance(backend, ReportsDetails) else {}
    finally:
        backend.close()
    tokens = case.seq_len + case.gen_len
    kv_bytes = config_kv_bytes(model_dir, tokens, case.batch_size,
                               kv_value_bytes(variant.kv_cache_int8, executed))  # fmt: skip
    raw = GenerativeRaw(
        runs=tuple(runs), prompt_len=case.seq_len, gen_len=case.gen_len,
        cold_ttft_ms=(cold.token_ns[0] - cold.start_ns) / 1e6, kv_cache_bytes=kv_bytes,
        kv_cache_bytes_engine=engine_kv, next_token_agreement=agreement,
        perplexity_ratio=ratio, matching_greedy_len=matched,
    )  # fmt: skip
    return Measurement(
        samples_ns=tuple(r.token_ns[-1] - r.start_ns for r in runs),
        warmup_iters=WARMUP_GENERATIONS,
        warmup_s=(cold.token_ns[-1] - cold.start_ns) / 1e9,
        warmup_steady=True,
        stop_reason="budget" if len(runs) < count - WARMUP_GENERATIONS else "max_samples",
        rel_ci_width=None,
        load_s=load_s,
        compile_s=compile_s,
        first_inference_ms=(cold.token_ns[-1] - cold.start_ns) / 1e6,
        model_mem_mb=model_mem_mb,
        peak_rss_mb=peak_rss_mb(),
        device_mem_mb=device_mem,
        affinity=affinity,
        executed_precision=executed,
        versions=versions,
        energy_note=energy_note,
        energy=energy,
        details={
            **details,
            "sampling_s": sampling_s,
            "token_clock": (
                "harness clock in the engine's per-token callback"
                if engine is None
                else f"{engine.source}, anchored at and cross-checked with the harness clock"
            ),
        },
        generative=raw,
    )
