"""bert-base: the BERT-base architecture (12 layers, 768 hidden, 12 heads, 110M parameters)
built from its config with seeded random weights, for realistic compute size. Nothing is
downloaded; fidelity is measured against its own fp32 outputs. Inputs use minilm-l6's uncased
WordPiece tokenizer (the same 30,522-token vocabulary as bert-base-uncased).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.minilm import MiniLM

if TYPE_CHECKING:
    import torch


class BertBase(MiniLM):
    name = "bert-base"
    description = "BERT-base architecture (110M params) from its config, seeded random weights"

    def source_fingerprint(self) -> str:
        return "bert-base-v1:BertConfig-defaults:seed0:mean-pool-normalize"

    def build_torch(self) -> torch.nn.Module:
        from harness.models.pooling import bert_sentence_encoder

        return bert_sentence_encoder()  # BertConfig's defaults are BERT-base
