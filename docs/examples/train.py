"""A small training loop with the classic host-device synchronization: ``loss.item()`` on every
step. Run it under the sync detector from the repository root:

    python -m torchscope syncs -m docs.examples.train
    python -m torchscope syncs docs/examples/train.py --steps 20

Each ``.item()`` makes the host wait for the device; the report names the line and the fix
(keep the running total on the device and read it once).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from torchscope.examples import MLP


def main(argv: list[str] | None = None) -> float:
    """Train the chapter's MLP on random data for ``--steps`` steps; return the mean loss."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    total = 0.0
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()  # a synchronization on every step
    return total / max(args.steps, 1)


if __name__ == "__main__":
    print(f"mean loss {main():.4f}")
