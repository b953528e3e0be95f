"""``llama-1b``: a Llama-architecture decoder of about 1.2 B parameters built from its config with
seeded random weights: real shapes and real compute for GPU decoding, nothing downloaded.

The shapes are Llama 3.2 1B's (``config.json`` of meta-llama/Llama-3.2-1B: hidden size 2048,
intermediate size 8192, 16 layers, 32 attention heads, 8 KV heads of 64, vocabulary 128,256,
tied embeddings, RoPE theta 500,000): 1.236 B parameters, a 4.9 GB fp32 directory. The weights
are transformers' own initialisation (normal, std ``initializer_range`` 0.02) under
``torch.manual_seed(0)``, so every machine builds the same model.

The tokenizer is byte-level (each UTF-8 byte one token, ids 0-255, no merges): the corpus's text
still drives the prompts, and it needs no vocabulary file. Fidelity is against this model's own
fp32 (random weights give near-uniform logits, so a reduced precision flips more argmaxes than it
would on a trained model: the agreement is a lower bound for a trained model of the same shape).
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import BackendUnavailable
from harness.models.causal_lm import CausalLMModel, _offline

SEED = 0
# meta-llama/Llama-3.2-1B config.json (the architecture's published shapes)
LLAMA_3_2_1B: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
}
BYTE_TOKENS = 256
# the byte tokenizer's special tokens sit just above the bytes
BOS_ID, EOS_ID = BYTE_TOKENS, BYTE_TOKENS + 1


def byte_tokenizer() -> Any:
    """A transformers fast tokenizer that maps each UTF-8 byte to its own id (0-255), with
    ``<s>``/``</s>`` at 256/257; no merges, no normalisation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins for bytes
    byte_order = sorted(alphabet, key=_byte_of)
    vocab = {symbol: i for i, symbol in enumerate(byte_order)}
    vocab.update({"<s>": BOS_ID, "</s>": EOS_ID})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def _byte_of(symbol: str) -> int:
    """The byte GPT-2's byte-level alphabet stands ``symbol`` in for (its bytes_to_unicode)."""
    code = ord(symbol)
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    if code in printable:
        return code
    missing = [b for b in range(BYTE_TOKENS) if b not in printable]
    return missing[code - BYTE_TOKENS]


class SeededLlama(CausalLMModel):
    """A Llama-architecture decoder from ``CONFIG`` with seeded weights (see the module)."""

    CONFIG: ClassVar[dict[str, Any]] = LLAMA_3_2_1B
    VERSION: ClassVar[str] = "llama-1b-v1:Llama-3.2-1B-shapes"

    def __init__(self, name: str = "llama-1b") -> None:
        super().__init__(name)
        self.max_positions = int(self.CONFIG["max_position_embeddings"])
        self.description = "Llama-3.2-1B-shaped decoder (1.24B params), seeded random weights"

    def source_fingerprint(self) -> str:
        return f"{self.VERSION}:seed{SEED}:byte-tokenizer"

    def _source_record(self) -> dict[str, str]:
        return {"seeded": self.source_fingerprint()}

    def _load_source(self) -> tuple[Any, Any]:
        _offline()
        try:
            import torch
            from transformers import AutoModelForCausalLM, LlamaConfig
        except ImportError as exc:
            raise BackendUnavailable(f"transformers is not installed: {exc}") from None
        config = LlamaConfig(**self.CONFIG, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                             architectures=["LlamaForCausalLM"])  # fmt: skip
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        return model.eval(), byte_tokenizer()
