"""Cost of an initialization policy: ``apply_init`` against a hand-written ``torch.nn.init`` loop.

The baseline, measured in the same run on the same model, is the loop a user would write::

    with torch.no_grad():
        for name, p in model.named_parameters():
            nn.init.zeros_(p) if name.endswith("bias") else nn.init.normal_(p, std=0.02)

``apply_init`` runs the equivalent policy ``{"*.bias": "zeros", "*": "normal(std=0.02)"}`` with
``seed=0`` (planning, tie detection, meta checks of every initializer, the forked RNG). Models:
stacks of 1,000 and 10,000 small Linear layers (overhead per tensor dominates) and a GPT-2-like
stack of 12 blocks of width 768 (~85M parameters; filling memory dominates). Also times the dry
run alone. Rounds alternate between the variants; prints medians and the ratio to the
baseline.

    python benchmarks/bench_init.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import torchscope

POLICY = {"*.bias": "zeros", "*": "normal(std=0.02)"}


def linear_stack(n_layers: int) -> nn.Module:
    return nn.Sequential(*[nn.Linear(8, 8) for _ in range(n_layers)])


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)


def gpt_like(n_blocks: int, width: int = 768) -> nn.Module:
    return nn.Sequential(*[Block(width) for _ in range(n_blocks)])


def baseline(model: nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)


def medians_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function; rounds alternate between them so drift hits all."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            gc.collect()
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchscope {torchscope.__version__}, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"{'model':<22}{'tensors':>9}{'params':>12}{'loop ms':>10}{'apply ms':>10}"
          f"{'ratio':>8}{'dry run ms':>12}{'us/tensor':>11}")
    cases: list[tuple[str, Callable[[], nn.Module]]] = [
        ("1,000 x Linear(8,8)", lambda: linear_stack(1_000)),
        ("10,000 x Linear(8,8)", lambda: linear_stack(10_000)),
        ("12 blocks, width 768", lambda: gpt_like(12)),
    ]
    for label, build in cases:
        model = build()
        tensors = sum(1 for _ in model.parameters())
        params = sum(p.numel() for p in model.parameters())
        baseline(model)  # warm-up: first touches, lazy imports
        loop, applied, dry = medians_ms(
            [
                lambda: baseline(model),
                lambda: torchscope.apply_init(model, POLICY, seed=0),
                lambda: torchscope.apply_init(model, POLICY, seed=0, dry_run=True),
            ],
            args.repeats,
        )
        overhead_us = (applied - loop) * 1e3 / tensors
        print(f"{label:<22}{tensors:>9,}{params:>12,}{loop:>10.1f}{applied:>10.1f}"
              f"{applied / loop:>7.2f}x{dry:>12.1f}{overhead_us:>11.1f}")


if __name__ == "__main__":
    main()
