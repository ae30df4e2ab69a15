"""``torchscope.find_nonfinite`` against ``torch.autograd.set_detect_anomaly(True)``: what each
finds and what each costs.

What each finds, on three models: NaN made in the forward (``docs/examples/nan.py``: 0 / 0 in
a standardization layer), an infinite gradient from a finite forward (``sqrt`` at 0), and a
finite model. Anomaly mode checks backward outputs only: it raises at the first backward node
returning NaN and prints the forward traceback of that node; ``find_nonfinite`` checks every
forward op's output first, then every backward node, and names the module call as well.

What each costs: one forward and backward of a finite model (a 4-layer MLP at hidden 512 and
64, batch 64, and a 2-layer GPT-2), timed bare, under anomaly mode and as ``find_nonfinite``
(which also saves and restores ``.grad`` fields and the model state). Rounds alternate between
the variants so drift hits all of them alike; the script prints medians and ratios against the
bare step measured in the same run.

    python benchmarks/bench_nonfinite.py [--rounds 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import torchscope

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs.examples import nan


class SqrtAtZero(nn.Module):
    """Finite forward, infinite gradient: d sqrt(x) / dx at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.relu(self.lin(x)) * 0)


def mlp(hidden: int) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(4):
        layers.append(nn.Linear(hidden, hidden))
        if i < 3:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000,
                                      n_positions=64))


def loss_of(out: Any) -> torch.Tensor:
    return torchscope.training.default_loss(out)


def anomaly_finds(model: nn.Module, x: torch.Tensor) -> str:
    """What anomaly mode reports: the failing backward node and the last user line of the
    forward traceback it prints."""
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings(record=True) as caught, torch.autograd.set_detect_anomaly(True):
        warnings.simplefilter("always")
        try:
            loss_of(model(x)).backward()  # type: ignore[no-untyped-call,unused-ignore]
        except RuntimeError as err:
            node = str(err).split("'")[1] if "'" in str(err) else str(err)[:60]
            lines = [line.strip() for w in caught for line in str(w.message).splitlines()
                     if line.strip().startswith("File ") and "site-packages" not in line
                     and "torch/" not in line]
            where = lines[-1].split(",")[:2] if lines else ["?"]
            return f"{node} (forward trace: {''.join(where).replace('File ', '')})"
    model.zero_grad(set_to_none=True)
    return "nothing"


def torchscope_finds(model: nn.Module, x: torch.Tensor) -> str:
    r = torchscope.find_nonfinite(model, x)
    if not r.found:
        return "nothing"
    return f"{r.phase}: {r.op} in module {r.module!r} ({r.module_type}) at {r.location}"


def compare_findings() -> None:
    cases: list[tuple[str, nn.Module, torch.Tensor]] = [
        ("NaN in the forward (0/0)", nan.build(), torch.zeros(2, 8)),
        ("Inf gradient (sqrt at 0)", SqrtAtZero(), torch.randn(2, 8)),
        ("finite MLP", mlp(64), torch.randn(2, 64)),
    ]
    print("What each finds")
    for name, model, x in cases:
        print(f"  {name}")
        print(f"    set_detect_anomaly: {anomaly_finds(model, x)}")
        print(f"    find_nonfinite:     {torchscope_finds(model, x)}")
    print()


def measure(model: nn.Module, x: torch.Tensor, rounds: int) -> dict[str, float]:
    def bare() -> None:
        model.zero_grad(set_to_none=True)
        loss_of(model(x)).backward()  # type: ignore[no-untyped-call,unused-ignore]

    def anomaly() -> None:
        with torch.autograd.set_detect_anomaly(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bare()

    def scope() -> None:
        torchscope.find_nonfinite(model, x)

    variants: dict[str, Callable[[], None]] = {"bare step": bare, "set_detect_anomaly": anomaly,
                                               "find_nonfinite": scope}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compare_findings()
    print("What each costs (median of one forward + backward; ratio to the bare step)")
    print(f"  {'model':<22} {'variant':<20} {'median':>10} {'ratio':>7}")
    for name, build, x in [
        ("MLP hidden 512", lambda: mlp(512), torch.randn(64, 512)),
        ("MLP hidden 64", lambda: mlp(64), torch.randn(64, 64)),
        ("GPT-2 2 layers", gpt2, torch.randint(0, 1000, (4, 64))),
    ]:
        with contextlib.ExitStack():
            medians = measure(build(), x, args.rounds)
        base = medians["bare step"]
        for variant, t in medians.items():
            print(f"  {name:<22} {variant:<20} {t * 1e3:>8.2f}ms {t / base:>6.2f}x")


if __name__ == "__main__":
    main()
