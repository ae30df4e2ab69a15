"""Static summary speed: ``summarize(model)`` (no rendering) against a bare traversal.

The baseline is ``list(model.named_modules())`` plus
``list(model.named_parameters(remove_duplicate=False))`` on the same model in the same run.
Models: stacks of 1,000 / 10,000 / 50,000 modules made of Linear+ReLU blocks and of residual
blocks, and the default GPT-2 (124M parameters, built on meta). Prints medians, the ratio and
the time per module; torchinfo's static ``summary(model, verbose=0)`` too when it is installed.

The baseline and ``summarize`` are timed alternately (one of each per repeat, with the cyclic
garbage collector enabled as in normal use and a ``gc.collect()`` before each timing), so that
a load change on a shared machine hits both. Collections that ``summarize`` defers run inside
its own call. The baseline's own time per module grows with the model (cache misses, its
collections), so its spread is printed next to summarize's.

    python benchmarks/bench_static.py
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import torchscope


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.act(self.fc(x))
        return out


def linear_stack(n_modules: int) -> nn.Module:
    """Sequential of (Linear, ReLU) pairs: 2 modules per pair, plus the root."""
    return nn.Sequential(*[m for _ in range(n_modules // 2) for m in (nn.Linear(8, 8), nn.ReLU())])


def residual_stack(n_modules: int) -> nn.Module:
    """Sequential of residual blocks: 3 modules per block (block, fc, act), plus the root."""
    return nn.Sequential(*[Residual(8) for _ in range(n_modules // 3)])


def _once(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(_once(fn) for _ in range(repeats))


def paired_medians(first: Callable[[], object], second: Callable[[], object],
                   repeats: int) -> tuple[float, float]:
    """Medians of ``first`` and ``second`` timed alternately."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(_once(first))
        b.append(_once(second))
    return statistics.median(a), statistics.median(b)


def bare(model: nn.Module) -> None:
    list(model.named_modules())
    list(model.named_parameters(remove_duplicate=False))


def main() -> None:
    try:
        import torchinfo  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        torchinfo = None
    print(f"torch {torch.__version__}, torchscope {torchscope.__version__}, "
          f"torchinfo {'installed' if torchinfo else 'not installed'}")
    header = (f"{'model':<24}{'modules':>9}{'bare ms':>10}{'summarize ms':>14}{'ratio':>8}"
              f"{'us/module':>11}")
    if torchinfo:
        header += f"{'torchinfo':>11}"
    print(header)
    per_module: dict[str, list[float]] = {}
    bare_per_module: dict[str, list[float]] = {}
    cases: list[tuple[str, Callable[[int], nn.Module], int]] = []
    for n in (1_000, 10_000, 50_000):
        cases.append(("linear+relu", linear_stack, n))
        cases.append(("residual", residual_stack, n))
    for kind, build, n in cases:
        model = build(n)
        count = sum(1 for _ in model.modules())
        repeats = 15 if n <= 1_000 else 7 if n <= 10_000 else 5
        torchscope.summarize(model)  # warm-up
        t_bare, t_sum = paired_medians(lambda: bare(model),
                                       lambda: torchscope.summarize(model), repeats)
        line = (f"{kind + ' ' + format(n, ','):<24}{count:>9,}{t_bare * 1e3:>10.1f}"
                f"{t_sum * 1e3:>14.1f}{t_sum / t_bare:>7.2f}x{t_sum / count * 1e6:>11.2f}")
        if torchinfo:
            t_ti = median_time(lambda: torchinfo.summary(model, verbose=0), max(1, repeats // 3))
            line += f"{t_ti / t_bare:>10.1f}x"
        print(line, flush=True)
        per_module.setdefault(kind, []).append(t_sum / count)
        bare_per_module.setdefault(kind, []).append(t_bare / count)
    for kind, values in per_module.items():
        spread = max(values) / min(values) - 1
        base = bare_per_module[kind]
        print(f"{kind}: time per module varies {spread * 100:.0f}% from 1,000 to 50,000 modules "
              f"(the baseline's: {(max(base) / min(base) - 1) * 100:.0f}%)")
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config())
    t_bare, t_sum = paired_medians(lambda: bare(gpt2), lambda: torchscope.summarize(gpt2), 15)
    print(f"{'gpt2 (124M, meta)':<24}{sum(1 for _ in gpt2.modules()):>9,}{t_bare * 1e3:>10.1f}"
          f"{t_sum * 1e3:>14.1f}{t_sum / t_bare:>7.2f}x")


if __name__ == "__main__":
    main()
