"""Structural recipes for BERT-style sentence encoders: layer dropping for distillation, head and
FFN-neuron pruning, and the distillation loop that recovers fidelity. Imports torch: load lazily.

They apply to ``SentenceEmbedding`` modules wrapping a Hugging Face BERT encoder (minilm-l6,
bert-base); other architectures raise ``VariantNotApplicable``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harness.errors import VariantNotApplicable


# Hugging Face layers are reached by attribute (layer.attention.self.query, ...): typed ``Any``.
def encoder_layers(module: Any, step: str) -> list[Any]:
    try:  # a SentenceEmbedding around a BERT-style model: encoder.encoder.layer
        layers = module.get_submodule("encoder.encoder.layer")
    except AttributeError:
        layers = None
    if not isinstance(layers, torch.nn.ModuleList):
        raise VariantNotApplicable(
            f"{step} applies to transformer encoders (BERT-style layers); this model has none"
        )
    return list(layers)


def student_layer_indices(teacher_layers: int, layers: int) -> list[int]:
    """Evenly spaced teacher layers (every other one for half depth, as DistilBERT does)."""
    return [round(i * teacher_layers / layers) for i in range(layers)]


def drop_layers(module: Any, keep: list[int], step: str) -> torch.nn.Module:
    """A copy of ``module`` keeping only the encoder layers at ``keep``."""
    student: Any = copy.deepcopy(module)
    layers = encoder_layers(student, step)
    student.encoder.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    student.encoder.config.num_hidden_layers = len(keep)
    return student


def _slice_linear(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A Linear keeping output rows (dim 0) or input columns (dim 1) at ``index``."""
    weight = linear.weight.index_select(dim, index).clone()
    bias: torch.Tensor | None = linear.bias
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, index).clone()
    out_f, in_f = weight.shape
    new = torch.nn.Linear(in_f, out_f, bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def restructure(module: Any, heads: list[list[int]], neurons: list[list[int]]) -> None:
    """Keep only the listed attention heads and FFN neurons of every layer, in place."""
    for layer, keep_heads, keep_neurons in zip(
        encoder_layers(module, "pruned-structured"), heads, neurons, strict=True
    ):
        attn = layer.attention.self
        size = attn.attention_head_size
        rows = torch.tensor([h * size + i for h in keep_heads for i in range(size)])
        attn.query = _slice_linear(attn.query, rows, 0)
        attn.key = _slice_linear(attn.key, rows, 0)
        attn.value = _slice_linear(attn.value, rows, 0)
        attn.num_attention_heads = len(keep_heads)
        attn.all_head_size = len(rows)
        layer.attention.output.dense = _slice_linear(layer.attention.output.dense, rows, 1)
        cols = torch.tensor(keep_neurons)
        layer.intermediate.dense = _slice_linear(layer.intermediate.dense, cols, 0)
        layer.output.dense = _slice_linear(layer.output.dense, cols, 1)


def importance(
    module: Any, inputs: dict[str, np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer, a score per head and per FFN neuron: the mean magnitude of its activation on
    the training split times the norm of the weights that carry it onward."""
    layers = encoder_layers(module, "pruned-structured")
    head_act = [torch.zeros(0)] * len(layers)
    ffn_act = [torch.zeros(0)] * len(layers)
    hooks = []

    def keep(store: list[torch.Tensor], index: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            flat = args[0].detach().abs().reshape(-1, args[0].shape[-1]).sum(dim=0)
            store[index] = flat if store[index].numel() == 0 else store[index] + flat

        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(keep(head_act, i)))
        hooks.append(layer.output.dense.register_forward_pre_hook(keep(ffn_act, i)))
    with torch.inference_mode():
        for batch in _batches(inputs, 16, shuffle=False):
            module(*batch)
    for hook in hooks:
        hook.remove()
    heads: list[np.ndarray] = []
    neurons: list[np.ndarray] = []
    for i, layer in enumerate(layers):
        size = layer.attention.self.attention_head_size
        w_o = layer.attention.output.dense.weight.detach()
        per_head = head_act[i].reshape(-1, size) * w_o.norm(dim=0).reshape(-1, size)
        heads.append(per_head.sum(dim=1).numpy())
        neurons.append((ffn_act[i] * layer.output.dense.weight.detach().norm(dim=0)).numpy())
    return heads, neurons


def choose_structure(
    scores: tuple[list[np.ndarray], list[np.ndarray]], amount: float
) -> tuple[list[list[int]], list[list[int]]]:
    """Per layer, the most important (1 - amount) share of heads and neurons (at least one)."""
    heads: list[list[int]] = []
    neurons: list[list[int]] = []
    for head_scores, neuron_scores in zip(*scores, strict=True):
        for store, values in ((heads, head_scores), (neurons, neuron_scores)):
            keep = max(1, round(len(values) * (1 - amount)))
            store.append(sorted(int(i) for i in np.argsort(-values)[:keep]))
    return heads, neurons


def _batches(
    inputs: dict[str, np.ndarray], size: int, shuffle: bool, seed: int = 0
) -> list[tuple[torch.Tensor, ...]]:
    """Mini-batches trimmed to their longest row (less padding, faster training)."""
    rows = len(inputs["input_ids"])
    order = np.random.default_rng(seed).permutation(rows) if shuffle else np.arange(rows)
    out = []
    for start in range(0, rows, size):
        idx = order[start : start + size]
        length = int(inputs["attention_mask"][idx].sum(axis=1).max())
        out.append(tuple(
            torch.from_numpy(np.ascontiguousarray(inputs[name][idx, :length]))
            for name in ("input_ids", "attention_mask")
        ))  # fmt: skip
    return out


def augment(
    ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token-level augmentation of a batch: each row is kept, has 15% of its tokens dropped or
    replaced by random word pieces, is cropped to a span, or is joined with part of another row.
    The teacher labels whatever text results, so the student sees far more than the split."""
    rows = []
    for r in range(len(ids)):
        n = int(mask[r].sum())
        cls, body, sep = ids[r, 0], ids[r, 1 : n - 1], ids[r, n - 1]
        kind = rng.integers(5)
        if kind == 1 and len(body) > 2:
            body = body[rng.random(len(body)) > 0.15]
        elif kind == 2:
            body = body.copy()
            hit = rng.random(len(body)) < 0.15
            body[hit] = rng.integers(1000, vocab_size, int(hit.sum()))
        elif kind == 3 and len(body) > 4:
            span = int(rng.integers(len(body) // 2, len(body) + 1))
            first = int(rng.integers(0, len(body) - span + 1))
            body = body[first : first + span]
        elif kind == 4:
            other = int(rng.integers(len(ids)))
            m = int(mask[other].sum())
            body = np.concatenate([body, ids[other, 1 + (m - 2) // 2 : m - 1]])
        rows.append(np.concatenate([[cls], body[: ids.shape[1] - 2], [sep]]))
    width = max(len(row) for row in rows)
    out_ids = np.zeros((len(rows), width), dtype=np.int64)
    out_mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        out_ids[r, : len(row)], out_mask[r, : len(row)] = row, 1
    return out_ids, out_mask


def _embed(module: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Sentence embedding and every layer's hidden states."""
    from harness.models.pooling import mean_pool_normalize

    out = module.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return mean_pool_normalize(out[0], mask), out.hidden_states


def distil(
    student: torch.nn.Module,
    teacher: Any,
    inputs: dict[str, np.ndarray],
    layer_map: list[int],
    epochs: int,
    lr: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Train ``student`` to reproduce ``teacher`` on augmented training text (seeded).

    Loss: 1 - cosine of the sentence embeddings, plus the mean squared error between student
    layer k's output and teacher layer ``layer_map[k]``'s, scaled by the teacher's variance.
    """
    torch.manual_seed(0)
    teacher.eval()
    vocab = int(teacher.encoder.config.vocab_size)
    rows = len(inputs["input_ids"])
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    student.train()
    started = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(epochs):
        rng = np.random.default_rng(epoch)
        order = rng.permutation(rows)
        total = 0.0
        for start in range(0, rows, 16):
            idx = order[start : start + 16]
            ids_np, mask_np = augment(
                inputs["input_ids"][idx], inputs["attention_mask"][idx], rng, vocab
            )
            ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
            with torch.no_grad():  # not inference_mode: these are loss targets under autograd
                target, target_hidden = _embed(teacher, ids, mask)
            out, hidden = _embed(student, ids, mask)
            loss = (1 - torch.nn.functional.cosine_similarity(out, target, dim=-1)).mean()
            for k, t in enumerate(layer_map):
                goal = target_hidden[t + 1]
                loss = loss + torch.nn.functional.mse_loss(hidden[k + 1], goal) / (
                    goal.var() * len(layer_map)
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        loss_value = total / rows
        progress(f"distilling: epoch {epoch + 1}/{epochs}, loss {loss_value:.5f}")
    student.eval()
    return {
        "epochs": epochs,
        "lr": lr,
        "train_rows": rows,
        "augmentation": "token drop / replace / crop / join, 15%",
        "layer_map": layer_map,
        "final_loss": loss_value,
        "train_s": time.perf_counter() - started,
    }
