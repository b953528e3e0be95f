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
        import torch
        import transformers

        from harness.models.pooling import SentenceEmbedding

        transformers.logging.set_verbosity_error()
        torch.manual_seed(0)
        config = transformers.BertConfig(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128
        )
        return SentenceEmbedding(transformers.BertModel(config, add_pooling_layer=False)).eval()
