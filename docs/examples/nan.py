"""A model whose first layer makes NaN from all-zero inputs.

``Standardize`` divides by the standard deviation of each row: a constant row (all zeros, as
``--input-size`` builds) has deviation 0, and ``0 / 0`` is NaN.
``python -m torchscope check docs/examples/nan.py:build --input-size 2,8 --nonfinite`` names
the module (``0``, ``Standardize``) and the line of the division.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Standardize", "build"]


class Standardize(nn.Module):
    """Zero mean and unit deviation per row, without an epsilon (the bug)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - x.mean(dim=-1, keepdim=True)
        return centered / x.std(dim=-1, keepdim=True)


def build() -> nn.Module:
    """Standardize, then a two-layer MLP."""
    return nn.Sequential(Standardize(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
