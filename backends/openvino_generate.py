"""openvino's generative capability: OpenVINO GenAI's ``LLMPipeline`` on an IR converted here.

optimum-intel (the usual exporter) cannot be installed beside transformers 5, so the fp32
directory is converted the way optimum-intel does it: ``openvino.convert_model`` on the
transformers model with its KV cache as explicit inputs and outputs, a ``beam_idx`` input, and
OpenVINO's make-stateful transformation (the KV cache becomes internal state, as LLMPipeline
expects); the tokenizer comes from ``openvino_tokenizers.convert_tokenizer``. Weight-only int8 /
int4 is NNCF ``compress_weights`` (int4: symmetric, group size 64, as 576 is not divisible by
128). Converted IRs are cached under ``<cache>/openvino-genai/<key>``.

Fairness: the f32 inference-precision hint is set for fp32 (CPUs with BF16 would otherwise run
bf16 with a u8 KV cache); the KV-cache precision is f32 unless ``kv-int8`` asks for u8; prompts
are token ids (no chat template); the harness varies prompts per generation, so the prompt-
prefix cache never serves a timed prompt.

Batch > 1 (evidence from openvino-genai 2026.4.1, smollm2-135m, prompt 16, gen 8, 2 threads):
``LLMPipeline`` runs its continuous-batching implementation, which refuses a streamer for more
than one prompt ("Currently streaming is possible only with batch size=1", a RuntimeError from
``continuous_batching/pipeline_impl.cpp``), so the harness's clock cannot be read per token.
Its ``perf_metrics`` are usable with care: ``raw_metrics.m_new_token_times`` holds one
timestamp per decode step (``m_batch_sizes`` = the batch at every step) and
``m_times_to_first_token`` the TTFT, while ``get_tpot()`` divides by every token of the batch
(58 ms at batch 2 with steps 117 ms apart), so it is *not* the harness's per-step TPOT and is
not used. At batch 1, where both clocks are read, the engine's figures matched the harness's
streamer readings (TTFT 437.67 vs 437.97 ms, step gaps within 1-3 ms, the call 1293.18 vs
1293.29 ms). So for batch > 1 this backend reports the engine's step times (``StepTimes``:
TTFT, then TTFT plus each step's time since the first) and the call's duration
(``get_generate_duration``); the harness anchors them at its own reading before the call and
rejects them unless that duration agrees with its clock (``engine_token_times``). The row's
``details.token_clock`` says which clock timed it. Batch 1 keeps the streamer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import GenerationSettings, StepTimes, native_precision_missing, staged
from harness.errors import BackendError, BackendUnavailable

IR_FORMAT = 1  # bump when the conversion changes what it writes
INT4_GROUP_SIZE = 64


def _flat_cache_module(model: Any) -> Any:
    """The causal LM as a module of (input_ids, attention_mask, position_ids, *past k/v) ->
    (logits, *present k/v), the KV cache as plain tensors so it can be traced."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = model.config.num_hidden_layers

    class FlatCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any
        ) -> Any:
            cache = DynamicCache()
            cache.layers = []
            for i in range(layers):
                layer = DynamicLayer()
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]
                layer.is_initialized, layer.device, layer.dtype = (
                    True,
                    past[0].device,
                    past[0].dtype,
                )
                cache.layers.append(layer)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            flat = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *flat)

    return FlatCache()


def convert(model_dir: Path, target: Path, weight_bits: int | None) -> dict[str, Any]:
    """Write ``openvino_model.xml`` (stateful), the tokenizer/detokenizer IRs and the configs
    to ``target``; returns facts for the row's details."""
    import openvino as ov
    import openvino_tokenizers
    import torch
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cfg = model.config
    layers, kv_heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    past, new = 2, 3  # example lengths for tracing only; every axis but heads/head_dim is dynamic
    example = (torch.ones(1, new, dtype=torch.long), torch.ones(1, past + new, dtype=torch.long),
               torch.arange(past, past + new)[None],
               *[torch.zeros(1, kv_heads, past, head_dim) for _ in range(2 * layers)])  # fmt: skip
    kv_in = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    kv_out = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    names = ["input_ids", "attention_mask", "position_ids", *kv_in]
    # Tracing warns about Python branches taken on the example's shapes (mask creation, the
    # deprecated past_key_values argument); the converted model is checked against fp32
    # PyTorch by the fidelity step instead, so the warnings are not errors here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir = ov.convert_model(_flat_cache_module(model), example_input=example)
    for port, name in zip(ir.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ir.outputs, ["logits", *kv_out], strict=True):
        port.get_tensor().set_names({name})
    shapes = {n: ov.PartialShape([-1, -1]) for n in names[:3]}
    shapes.update({n: ov.PartialShape([-1, kv_heads, -1, head_dim]) for n in kv_in})
    ir.reshape(shapes)
    # beam_idx reorders the cache rows between steps (LLMPipeline requires the input)
    beam = opset13.parameter(name="beam_idx", dtype=ov.Type.i32, shape=ov.PartialShape([-1]))
    beam.output(0).get_tensor().add_names({"beam_idx"})
    ir.add_parameters([beam])
    for name in kv_in:
        port = ir.input(name)
        consumers = port.get_target_inputs()
        gathered = opset13.gather(port, beam, opset13.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(gathered.output(0))
    ir.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(ir, dict(zip(kv_in, kv_out, strict=True)))
    batch = opset13.gather(opset13.shape_of(ir.input("input_ids"), output_type="i64"),
                           opset13.constant([0]), opset13.constant(0))  # fmt: skip
    for op in ir.get_ops():  # the state starts as zeros of (batch, heads, 0, head_dim)
        if op.get_type_name() == "ReadValue":
            dims: list[Any] = [d.min_length for d in op.get_output_partial_shape(0)]
            dims[0] = batch
            parts = [opset13.constant(np.array([d], dtype=np.int64)) if isinstance(d, int) else d
                     for d in dims]  # fmt: skip
            zero = opset13.constant(0.0, dtype=op.get_output_element_type(0))
            op.set_arguments([opset13.broadcast(zero, opset13.concat(parts, axis=0))])
    ir.validate_nodes_and_infer_types()
    facts: dict[str, Any] = {"weights": "fp32"}
    if weight_bits is not None:
        import nncf

        if weight_bits == 8:
            ir = nncf.compress_weights(ir, mode=nncf.CompressWeightsMode.INT8_ASYM)
            facts["weights"] = "int8 asymmetric per channel (NNCF compress_weights)"
        else:
            ir = nncf.compress_weights(ir, mode=nncf.CompressWeightsMode.INT4_SYM,
                                       group_size=INT4_GROUP_SIZE, ratio=1.0)  # fmt: skip
            facts["weights"] = (
                f"int4 symmetric, group size {INT4_GROUP_SIZE} (NNCF compress_weights; "
                "embeddings and head int8 by NNCF's default)"
            )
    ov.save_model(ir, target / "openvino_model.xml", compress_to_fp16=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ov_tok, ov_detok = openvino_tokenizers.convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(ov_tok, target / "openvino_tokenizer.xml")
    ov.save_model(ov_detok, target / "openvino_detokenizer.xml")
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, target / name)
    (target / "facts.json").write_text(json.dumps(facts))
    return facts


def engine_steps(metrics: Any, batch: int) -> StepTimes:
    """The step times of one generate call from its ``PerfMetrics``: TTFT
    (``m_times_to_first_token``, microseconds), then TTFT plus each later step's time since the
    first step (``m_new_token_times``, one per step, **milliseconds** in openvino-genai 2026.4:
    reading them as microseconds once put every step within a millisecond of the first).
    ``m_durations`` is not used: at batch B it holds each step's gap divided by B, B times.
    BackendError when a step ran at another batch size (a request finished early: the steps
    would not be the batch's)."""
    raw = metrics.raw_metrics
    sizes = list(raw.m_batch_sizes)
    if any(size != batch for size in sizes):
        raise BackendError(f"openvino-genai ran steps at batch sizes {sizes}, not {batch}")
    times_ms = [float(t) for t in raw.m_new_token_times]
    ttft_us = float(next(iter(raw.m_times_to_first_token)))
    steps = tuple(round(ttft_us * 1e3 + (t - times_ms[0]) * 1e6) for t in times_ms)
    total_ns = round(float(metrics.get_generate_duration().mean) * 1e6)
    return StepTimes(steps, total_ns, "openvino-genai perf_metrics (raw new-token times)")


class OpenVinoGenerator:
    """Mixed into ``OpenVinoBackend``: implements ``harness.backend.Generates``."""

    _pipe: Any = None
    _facts: dict[str, Any] | None = None
    _gen_precision: str = "fp32"
    _ir_dir: Path = Path()
    _genai: Any = None
    _steps: StepTimes | None = None

    def load_generator(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        final, converted, config = self._converted_ir(model_dir, settings)
        try:
            self._pipe = self._genai.LLMPipeline(str(final), "CPU", **config)
        except RuntimeError as exc:
            raise BackendError(f"LLMPipeline refused the converted model: {exc}") from None
        return converted

    def _converted_ir(
        self, model_dir: Path, settings: GenerationSettings
    ) -> tuple[Path, float | None, dict[str, Any]]:
        """The converted IR directory (converting it once, cached), the seconds spent
        converting (None: cached) and the CPU plugin properties every pipeline is built with."""
        try:
            import openvino_genai
        except ImportError as exc:
            raise BackendUnavailable(
                f'openvino-genai is not installed ({exc}); pip install "infrabench[llm]"'
            ) from None
        missing = native_precision_missing(settings.precision, settings.isa_flags)
        if missing:
            raise BackendUnavailable(f"openvino {settings.precision}: {missing}")
        os.environ["HF_HUB_OFFLINE"] = "1"
        import time

        import openvino as ov

        key = hashlib.sha256(json.dumps([IR_FORMAT, str(model_dir.resolve()), settings.weight_bits,
                                         ov.get_version()]).encode()).hexdigest()[:20]  # fmt: skip
        root = settings.cache_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "infrabench"
        final = root / "openvino-genai" / key
        started = time.perf_counter()
        converted = None
        if not (final / "facts.json").is_file():
            with staged(final, "facts.json") as staging:
                convert(model_dir, staging, settings.weight_bits)
            converted = time.perf_counter() - started
        self._facts = json.loads((final / "facts.json").read_text())
        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[settings.precision]
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "KV_CACHE_PRECISION": "u8" if settings.kv_cache_int8 else hint,
            "INFERENCE_NUM_THREADS": settings.threads,
        }
        self._gen_precision = settings.precision
        self._ir_dir = final
        self._genai = openvino_genai
        return final, converted, config

    def generate(
        self, prompt_ids: np.ndarray, gen_len: int, on_token: Callable[[], None]
    ) -> np.ndarray:
        import openvino as ov

        genai = self._genai

        class Steps(genai.StreamerBase):  # type: ignore[misc,name-defined]
            """Called with each decode step's token ids as soon as they exist."""

            def write(self, token: Any) -> Any:
                on_token()
                return genai.StreamingStatus.RUNNING

            def end(self) -> None:
                return None

        batch = prompt_ids.shape[0]
        config = genai.GenerationConfig()
        config.max_new_tokens = config.min_new_tokens = gen_len
        config.ignore_eos = True
        config.do_sample = False
        ids = np.ascontiguousarray(prompt_ids, dtype=np.int64)
        inputs = genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        self._steps = None
        if batch == 1:
            result = self._pipe.generate(inputs, config, streamer=Steps())
        else:  # its streamer refuses a batch: the engine's step times instead (module doc)
            result = self._pipe.generate(inputs, config)
            self._steps = engine_steps(result.perf_metrics, batch)
        self.last_metrics = result.perf_metrics
        return np.array(result.tokens, dtype=np.int64)

    def last_step_times(self) -> StepTimes | None:
        return self._steps

    def next_token_logits(self, ids: np.ndarray) -> np.ndarray | None:
        """The same IR run directly (LLMPipeline returns no logits): one forward pass from an
        empty state, with the pipeline's precision."""
        import openvino as ov

        core = ov.Core()
        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[self._gen_precision]
        compiled = core.compile_model(str(self._ir_dir / "openvino_model.xml"), "CPU",
                                      {"INFERENCE_PRECISION_HINT": hint})  # fmt: skip
        request = compiled.create_infer_request()
        request.reset_state()
        batch, length = ids.shape
        request.infer({
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones_like(ids, dtype=np.int64),
            "position_ids": np.tile(np.arange(length, dtype=np.int64), (batch, 1)),
            "beam_idx": np.arange(batch, dtype=np.int32),
        })  # fmt: skip
        logits: np.ndarray = request.get_tensor("logits").data.copy()
        return logits

    def kv_cache_bytes(self) -> int | None:
        return None

    def generator_report(self) -> dict[str, Any]:
        return dict(self._facts or {})
