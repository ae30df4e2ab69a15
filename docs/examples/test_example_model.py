"""A small transformer guarded in CI: architecture snapshot, a training step without host-device
synchronizations, inference without side effects, ties, parameter count and a checkpoint that
must keep loading.

Run it with ``python -m pytest docs/examples/test_example_model.py``. Change ``WIDTH`` and
``test_architecture`` fails with the architecture diff against
``__snapshots__/test_example_model/test_architecture.json`` (and the checkpoint no longer loads);
``pytest --torchscope-update`` accepts an intended change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from torchscope.testing import (
    assert_loads,
    assert_no_syncs,
    assert_param_count,
    assert_ties,
    assert_unchanged,
)

WIDTH = 16  # the model width; every block's shapes follow it
LAYERS = 2
HEADS = 2
VOCAB = 64
CONTEXT = 8
CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny_gpt.pt"


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP, each with a residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        attended, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + attended
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class TinyGPT(nn.Module):
    """Token and position embeddings, a stack of blocks, and an output head tied to the
    token embedding."""

    def __init__(self, *, width: int = WIDTH, layers: int = LAYERS, heads: int = HEADS,
                 vocab: int = VOCAB, context: int = CONTEXT) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight
        causal = torch.triu(torch.full((context, context), float("-inf")), diagonal=1)
        self.register_buffer("mask", causal, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(n, device=ids.device))
        for block in self.blocks:
            x = block(x, self.mask[:n, :n])
        logits: torch.Tensor = self.head(self.ln_f(x))
        return logits


@pytest.fixture
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT()


def test_architecture(model: TinyGPT, model_snapshot: Any) -> None:
    # blocks, parameter shapes, ties and the shapes of every call, against the snapshot
    model_snapshot(model, torch.zeros(2, CONTEXT, dtype=torch.long))


def test_parameters_and_ties(model: TinyGPT) -> None:
    assert_ties(model, [["tok.weight", "head.weight"]])
    assert_param_count(model, 7744, trainable=7744)


def test_training_step_has_no_syncs(model: TinyGPT) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, VOCAB, (4, CONTEXT + 1))
    with assert_no_syncs():
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_inference_leaves_the_model_unchanged(model: TinyGPT) -> None:
    model.eval()
    with assert_unchanged(model), torch.no_grad():
        model(torch.zeros(1, CONTEXT, dtype=torch.long))


def test_released_checkpoint_still_loads(model: TinyGPT) -> None:
    # the weights published with the last release must load into today's model
    assert_loads(model, CHECKPOINT)
