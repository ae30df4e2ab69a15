"""Tie detection speed: ``find_tied(model)`` against a bare parameter listing.

The baseline is ``list(model.named_parameters(remove_duplicate=False))`` on the same model in
the same run. Models: Sequentials of ``Linear(2, 2)`` with 1,000 / 10,000 / 100,000 parameter
tensors, some tied — every 10th weight an alias of the previous one, every 50th a
``shared_storage`` copy (``nn.Parameter(prev.weight.data)``), every 100th bias a row of the
previous weight (``overlap``). Target: at most 3x the baseline at 100,000 tensors, and a time
per tensor that stays flat as the model grows (O(n log n) at worst).

Also printed: the cost of ``check_ties(model)`` on each stack, and on GPT-2 (124M, built on
meta) next to ``summarize(model)``, which finds the same ties and findings from its own single
walk of the module tree (no second walk).
Medians of several runs; on a shared machine the absolute times are noisy, the ratios less so.

    python benchmarks/bench_tying.py
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import torchscope
from torchscope.tying import check_ties, find_tied


def tied_stack(n_tensors: int) -> nn.Module:
    """``n_tensors // 2`` Linear(2, 2) layers with alias, shared_storage and overlap ties."""
    layers = [nn.Linear(2, 2) for _ in range(n_tensors // 2)]
    for i in range(1, len(layers)):
        if i % 10 == 0:
            layers[i].weight = layers[i - 1].weight
        elif i % 50 == 1:
            layers[i].weight = nn.Parameter(layers[i - 1].weight.data)
        if i % 100 == 2:
            layers[i].bias = nn.Parameter(layers[i - 1].weight.data[0])
    return nn.Sequential(*layers)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    print(f"torch {torch.__version__}, torchscope {torchscope.__version__}; medians "
          "(shared machine: absolute times are noisy)")
    print(f"{'tensors':>9}{'groups':>8}{'bare ms':>10}{'find_tied ms':>14}{'ratio':>8}"
          f"{'us/tensor':>11}{'check_ties ms':>15}")
    per_tensor: list[float] = []
    bare_per_tensor: list[float] = []
    ratio_at_max = 0.0
    for n in (1_000, 10_000, 100_000):
        model = tied_stack(n)
        count = sum(1 for _ in model.named_parameters(remove_duplicate=False))
        groups = len(find_tied(model))  # also the warm-up
        repeats = 15 if n <= 1_000 else 9 if n <= 10_000 else 5
        t_bare = median_time(lambda: list(model.named_parameters(remove_duplicate=False)),
                             repeats)
        t_find = median_time(lambda: find_tied(model), repeats)
        t_check = median_time(lambda: check_ties(model), repeats)
        per_tensor.append(t_find / count)
        bare_per_tensor.append(t_bare / count)
        ratio_at_max = t_find / t_bare
        print(f"{count:>9,}{groups:>8,}{t_bare * 1e3:>10.1f}{t_find * 1e3:>14.1f}"
              f"{t_find / t_bare:>7.2f}x{t_find / count * 1e6:>11.2f}{t_check * 1e3:>15.1f}",
              flush=True)
    spread = max(per_tensor) / min(per_tensor) - 1
    bare_spread = max(bare_per_tensor) / min(bare_per_tensor) - 1
    print(f"time per tensor from 1,000 to 100,000 tensors varies {spread * 100:.0f}% for "
          f"find_tied, {bare_spread * 100:.0f}% for the bare listing (memory effects)")
    verdict = "meets" if ratio_at_max <= 3 else "MISSES"
    print(f"target (<= 3x bare listing at 100,000 tensors): {verdict} ({ratio_at_max:.2f}x)")

    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config())
    t_bare = median_time(lambda: list(gpt2.named_parameters(remove_duplicate=False)), 15)
    t_find = median_time(lambda: find_tied(gpt2), 15)
    t_check = median_time(lambda: check_ties(gpt2), 15)
    t_sum = median_time(lambda: torchscope.summarize(gpt2), 9)
    print(f"gpt2 (124M, meta): bare {t_bare * 1e3:.2f} ms, find_tied {t_find * 1e3:.2f} ms "
          f"({t_find / t_bare:.2f}x), check_ties {t_check * 1e3:.2f} ms, summarize "
          f"{t_sum * 1e3:.2f} ms (ties and their findings included, from its one walk)")


if __name__ == "__main__":
    main()
