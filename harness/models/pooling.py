"""Torch modules shared by text models. Imports torch: import this module lazily."""

from __future__ import annotations

from typing import Any

import torch


class SentenceEmbedding(torch.nn.Module):
    """Encoder -> mean pooling over real (unmasked) tokens -> L2 normalisation.

    The same pipeline as sentence-transformers' Transformer + Pooling(mean) + Normalize modules.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        return mean_pool_normalize(hidden, attention_mask)


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over real (unmasked) tokens, L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)


def bert_sentence_encoder(**config: Any) -> SentenceEmbedding:
    """A BERT encoder built from its config with seeded weights (nothing downloaded)."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    encoder = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False)
    return SentenceEmbedding(encoder).eval()


class LogitsOnly(torch.nn.Module):
    """A Hugging Face sequence classifier returning its logits tensor (not a ModelOutput)."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(
            input_ids=input_ids, attention_mask=attention_mask
        ).logits
        return logits


class TupleOutputs(torch.nn.Module):
    """A user's module with its outputs (tensor, tuple or dict) returned as a tuple."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(*args)
        if isinstance(out, dict):
            return tuple(out.values())
        return tuple(out) if isinstance(out, tuple | list) else (out,)
