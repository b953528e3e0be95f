"""tiny-bert: a 4-layer, 64-wide BERT encoder with seeded weights, for testing the transformer
recipes (head and neuron pruning, layer distillation) in seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.minilm import MiniLM

if TYPE_CHECKING:
    import torch


class TinyBert(MiniLM):
    name = "tiny-bert"
    description = "4-layer BERT encoder, 64 hidden, 4 heads, seeded weights (for tests)"

    def source_fingerprint(self) -> str:
        return "tiny-bert-v1:L4-H64-A4-I128:seed0"

    def build_torch(self) -> torch.nn.Module:
        from harness.models.pooling import bert_sentence_encoder

        return bert_sentence_encoder(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128
        )
