"""Benchmark: inferring lazy shapes on a meta copy against a real dry run, and one traced forward
for the trace plus the lazy shapes against two.

Per model, the median time of:

* ``dry run``: the baseline a user has without torchscope — build a fresh model and run a real
  forward under ``no_grad`` (its lazy layers materialize, with real memory);
* ``infer``: ``torchscope.infer_lazy_shapes(model, input_size=...)`` (a meta copy; the model
  stays lazy);
* ``trace+infer``: ``trace_forward`` then ``infer_lazy_shapes`` (two forwards);
* ``trace_lazy``: ``torchscope.lazy.trace_lazy`` (one forward gives both);

with the ratios infer/dry run and trace_lazy/(trace+infer). Then the peak RSS growth of
inferring a ``LazyLinear(100000)`` on a (1, 200000) input, which would hold 75 GiB if real.

    python benchmarks/bench_lazy.py            # about a minute on 2 cores
    python benchmarks/bench_lazy.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from torchscope.lazy import infer_lazy_shapes, trace_lazy
from torchscope.trace import trace_forward


def lazy_cnn() -> nn.Module:
    """A small lazy CNN: three conv/norm/relu stages and a lazy linear head."""
    layers: list[nn.Module] = []
    for width in (32, 64, 128):
        layers += [nn.LazyConv2d(width, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
                   nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(10)).eval()


def lazy_mlp(depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.LazyLinear(512), nn.ReLU()]
    return nn.Sequential(*layers, nn.LazyLinear(10)).eval()


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lazy CNN, 8x3x128x128": (lazy_cnn, (8, 3, 128, 128)),
    "lazy MLP x24, 64x1024": (lambda: lazy_mlp(24), (64, 1024)),
}


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (imports, decompositions)
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    repeats = 3 if parser.parse_args().quick else 9
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats}")
    header = (f"{'model':<24}{'dry run':>10}{'infer':>10}{'ratio':>8}"
              f"{'trace+infer':>13}{'trace_lazy':>12}{'ratio':>8}")
    print(header)
    for name, (build, size) in CASES.items():
        model = build()
        x = torch.randn(size)

        def dry_run(build: Callable[[], nn.Module] = build, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                build()(x)

        def infer(model: nn.Module = model, size: tuple[int, ...] = size) -> None:
            infer_lazy_shapes(model, input_size=[size])

        def two(model: nn.Module = model, size: tuple[int, ...] = size) -> None:
            trace_forward(model, input_size=[size])
            infer_lazy_shapes(model, input_size=[size])

        def one(model: nn.Module = model, size: tuple[int, ...] = size) -> None:
            trace_lazy(model, input_size=[size])

        t_dry, t_infer = median_s(dry_run, repeats), median_s(infer, repeats)
        t_two, t_one = median_s(two, repeats), median_s(one, repeats)
        print(f"{name:<24}{t_dry * 1e3:>8.1f}ms{t_infer * 1e3:>8.1f}ms{t_infer / t_dry:>7.2f}x"
              f"{t_two * 1e3:>11.1f}ms{t_one * 1e3:>10.1f}ms{t_one / t_two:>7.2f}x")

    infer_lazy_shapes(nn.Sequential(nn.LazyLinear(10)), input_size=[(1, 20)])  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    records = infer_lazy_shapes(nn.Sequential(nn.LazyLinear(100_000)),
                                input_size=[(1, 200_000)])
    elapsed = time.perf_counter() - start
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    shape = records[0].inferred[0][1]
    real_gib = shape[0] * shape[1] * 4 / 2**30
    print(f"LazyLinear(100000) on (1, 200000): weight {shape} ({real_gib:.1f} GiB if real), "
          f"inferred in {elapsed * 1e3:.1f} ms, peak RSS growth {growth_mib:.1f} MiB")


if __name__ == "__main__":
    main()
