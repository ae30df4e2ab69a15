"""Overhead of the host-device synchronization detector on one Adam training step.

A 4-layer MLP (Linear(h, h) x 4 with ReLU), batch 64, MSE loss, Adam: the step timed bare and
under ``torchscope.detect_syncs()`` (TorchFunctionMode only, the default) and
``detect_syncs(deep=True)`` (adds the TorchDispatchMode), at hidden 512 and 64. Rounds alternate
between the variants so drift hits all of them alike; the script prints medians and ratios
against the bare step measured in the same run.

Targets: at most 1.3x at hidden 512 and 2.5x at hidden 64 for the default detector.

    python benchmarks/bench_syncs.py [--rounds 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import torchscope

TARGETS = {512: 1.3, 64: 2.5}


def make_step(hidden: int, batch: int = 64) -> Callable[[], None]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(4):
        layers.append(nn.Linear(hidden, hidden))
        if i < 3:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, hidden), torch.randn(batch, hidden)

    def step() -> None:
        loss = nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        opt.step()

    return step


def measure(step: Callable[[], None], rounds: int) -> dict[str, float]:
    variants: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
        "bare": contextlib.nullcontext,
        "detect_syncs()": torchscope.detect_syncs,
        "detect_syncs(deep=True)": lambda: torchscope.detect_syncs(deep=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(10):  # warm-up: Adam state, allocator, caches
        step()
    for _ in range(rounds):
        for name, ctx in variants.items():
            with ctx() as report:
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
            if name != "bare":
                assert report is not None and report.total == 0, report  # a clean step
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds, "
          f"Adam step of 4 x Linear(h, h), batch 64")
    print(f"{'hidden':>6}  {'variant':<24} {'median':>10}  {'ratio':>6}  target")
    for hidden, target in TARGETS.items():
        medians = measure(make_step(hidden), args.rounds)
        base = medians["bare"]
        for name, median in medians.items():
            ratio = median / base
            verdict = ""
            if name == "detect_syncs()":
                verdict = f"<= {target}x  {'ok' if ratio <= target else 'MISSED'}"
            print(f"{hidden:>6}  {name:<24} {median * 1e6:>8.0f}us  {ratio:>5.2f}x  {verdict}")


if __name__ == "__main__":
    main()
