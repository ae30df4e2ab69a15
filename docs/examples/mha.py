"""A small attention block built on ``nn.MultiheadAttention``.

``MultiheadAttention`` calls its ``out_proj`` functionally (``F.multi_head_attention_forward``
reads ``out_proj.weight``), so the ``out_proj`` module is never *called* — yet every parameter
gets a gradient. ``python -m torchscope check docs/examples/mha.py:build --input-size 2,5,32``
reports no unused parameters.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionBlock", "build"]


class AttentionBlock(nn.Module):
    """Pre-norm self-attention with a residual connection and a feed-forward layer."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        attended, _ = self.attn(h, h, h, need_weights=False)
        x = x + attended
        out: torch.Tensor = x + self.ff(x)
        return out


def build() -> nn.Module:
    """The block for inputs of shape ``(batch, tokens, 32)``."""
    return AttentionBlock()
