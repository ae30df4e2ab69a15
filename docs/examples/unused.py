"""Parameters that get no gradient, one model per cause.

``python -m torchscope check docs/examples/unused.py:Discarded --input-size 2,8 --backward``
names the auxiliary head's parameters: its output is computed and thrown away, so
``DistributedDataParallel(find_unused_parameters=False)`` fails at the second step.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Conditional", "Detached", "Discarded", "FunctionalWeight", "NoGrad", "Uncalled"]


class Discarded(nn.Module):
    """An auxiliary head whose output is never used."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)
        self.aux_head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        self.aux_head(h)  # computed, then discarded
        out: torch.Tensor = self.head(h)
        return out


class Detached(nn.Module):
    """A branch that is ``.detach()``\\ ed before it joins the output."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(8, 4)
        self.branch = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.main(x) + self.branch(x).detach()
        return out


class NoGrad(nn.Module):
    """A layer run under ``torch.no_grad()``."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(8, 4)
        self.teacher = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher(x)
        out: torch.Tensor = self.main(x) + target
        return out


class Uncalled(nn.Module):
    """A layer that is built but never called."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(8, 4)
        self.spare = nn.Sequential(nn.Linear(8, 8), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.main(x)
        return out


class Conditional(nn.Module):
    """Two branches chosen by the data: the branch not taken gets no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.positive = nn.Linear(8, 4)
        self.other = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            out: torch.Tensor = self.positive(x)
        else:
            out = self.other(x)
        return out


class FunctionalWeight(nn.Module):
    """An output layer tied to the embedding by using its weight functionally: the embedding
    module is called once, its weight used twice — nothing is unused."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.proj(self.embed(ids)))
        out: torch.Tensor = h @ self.embed.weight.T
        return out
