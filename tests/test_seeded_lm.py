"""``llama-1b`` (a Llama-3.2-1B-shaped decoder with seeded weights) and the decoder path of
torch-cuda, on the CPU: the real config's parameter count without allocating it, the byte
tokenizer, and a tiny model of the same class through the harness on the stand-in GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.case import Case, CaseSettings
from harness.generate.execute import kv_value_bytes
from harness.measure.timing import TimingPolicy
from harness.models import get_model
from harness.models.causal_lm import prompts
from harness.models.seeded_lm import LLAMA_3_2_1B, SeededLlama, byte_tokenizer
from harness.optimize.artifacts import build, cache_root
from harness.runner import measure_here
from tests.fakes import use_stand_in_cuda


@pytest.fixture
def stand_in_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stand_in_cuda(monkeypatch)


class TinyLlama(SeededLlama):
    CONFIG: ClassVar[dict[str, Any]] = {
        **LLAMA_3_2_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300,
        "max_position_embeddings": 512,
    }  # fmt: skip


def test_llama_1b_has_llama_3_2_1b_shapes() -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    model = get_model("llama-1b")
    assert model.generative and model.max_positions == 131072
    with torch.device("meta"):  # shapes only: nothing allocated
        lm = AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA_3_2_1B))
    params = sum(p.numel() for p in lm.parameters())
    assert params == 1_235_814_400  # Llama 3.2 1B's published count (tied embeddings)


def test_the_byte_tokenizer_maps_each_byte_to_its_value() -> None:
    text = "Säure, 5 mg\tq.d.\n"
    tokenizer = byte_tokenizer()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode())
    assert tokenizer.decode(ids) == text
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (256, 257)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llama")
    params_m = TinyLlama("tiny").save_fp32(directory)
    assert 0 < params_m < 1
    return directory


def test_the_seeded_weights_are_the_same_on_every_build(tiny_dir: Path, tmp_path: Path) -> None:
    TinyLlama("tiny").save_fp32(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == (
        tiny_dir / "model.safetensors"
    ).read_bytes()
    assert json.loads((tiny_dir / "source.json").read_text()) == {
        "seeded": "llama-1b-v1:Llama-3.2-1B-shapes:seed0:byte-tokenizer"
    }
    windows = prompts(tiny_dir, "training", 64, 2, 3)
    assert [w.shape for w in windows] == [(2, 64)] * 3 and max(w.max() for w in windows) < 256


def test_kv_bytes_follow_the_executed_precision() -> None:
    assert [kv_value_bytes(False, p) for p in ("fp32", "bf16", "fp16", None)] == [4, 2, 2, 4]
    assert kv_value_bytes(True, "bf16") == 1


@pytest.mark.usefixtures("stand_in_cuda")
@pytest.mark.parametrize("variant", ["fp32", "bf16"])
def test_a_decoder_runs_on_torch_cuda_through_the_harness(tiny_dir: Path, variant: str) -> None:
    """generate on the stand-in GPU: TTFT/TPOT columns, device memory, the executed precision,
    a 2-byte KV cache in bf16, and fidelity against the model's own fp32."""
    name = f"hf:{tiny_dir}"
    artifact = build(name, "fp32", cache_root())
    timing = TimingPolicy(budget_s=0.0, min_samples=3)
    case = Case(model=name, variant=variant, backend="torch-cuda", batch_size=2, seq_len=16,
                gen_len=4, threads=1, device="cuda",
                settings=CaseSettings(timing=timing))  # fmt: skip
    row, _ = measure_here("r", case, artifact, artifact)  # conftest restores the affinity
    assert row.status == "ok", row.reason
    assert row.executed_precision == variant and row.device_mem_mb == 3.0
    assert row.ttft_ms_p50 is not None and row.tpot_ms_p50 is not None
    per_value = 2 if variant == "bf16" else 4
    assert row.kv_cache_mb == pytest.approx(2 * 2 * 2 * 16 * 20 * 2 * per_value / 2**20)
    if variant == "fp32":
        assert row.fidelity_metric == "next_token_agreement" and row.fidelity == 1.0
    details = json.loads(row.details or "{}")
    assert details["timer"].startswith("the harness's clock per token")


@pytest.mark.usefixtures("stand_in_cuda")
def test_encoder_options_on_a_decoder_are_a_skip_with_the_reason(tiny_dir: Path) -> None:
    name = f"hf:{tiny_dir}"
    artifact = build(name, "fp32", cache_root())
    case = Case(model=name, variant="fp32", backend="torch-cuda", batch_size=1, seq_len=16,
                gen_len=4, threads=1, device="cuda", options={"cuda_graphs": True})  # fmt: skip
    row, _ = measure_here("r", case, artifact, artifact)
    assert row.status == "skipped"
    assert "apply to encoder cases; a decoder runs eager" in (row.reason or "")
    assert row.ttft_ms_p50 is None
