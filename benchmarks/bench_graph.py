"""Block-diagram speed: ``summarize`` + ``render_graph`` to SVG against a bare forward + ``dot``.

Model: the full default GPT-2 (``GPT2LMHeadModel(GPT2Config())``, 124M real parameters) with
input ids of shape (1, 128), diagram collapsed (default depth, the 12 blocks as one ``×12``
box). The baseline, measured in the same run: one bare forward (``torch.no_grad()``) plus the
Graphviz ``dot -Tsvg`` run on the same diagram's DOT text — the least any tool that traces a
forward and lays the graph out with Graphviz must pay. Measured:

- ``graph (sizes)``: what ``python -m torchscope graph ... --input-size 1,128 --dtype long -o
  x.svg`` does after loading the model: summarize from sizes (auto mode: a meta trace, no
  activation memory) following torch functions (``follow_functions=True``: residual
  connections as edges), DOT, ``dot``;
- ``graph (ids)``: the same with the real input ids given (a real forward is traced);
- torchview's ``draw_graph(model, input_data=ids).visual_graph.pipe("svg")`` when torchview is
  installed.

Repeats are interleaved (each repeat times every measure once); prints medians and the median
of the per-repeat ratios to the baseline; the target is under 2x. Timings on a shared machine
are noisy: compare the ratios, not the milliseconds.

    python benchmarks/bench_graph.py [--repeats N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import graphviz
import torch

import torchscope
from torchscope.rendering.graph import render_graph, to_dot


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    from transformers import GPT2Config, GPT2LMHeadModel

    try:
        import torchview
    except ImportError:
        torchview = None
    torch.manual_seed(0)
    model: torch.nn.Module = GPT2LMHeadModel(GPT2Config())
    model.eval()
    ids = torch.zeros(1, 128, dtype=torch.long)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, torchscope {torchscope.__version__}, graphviz "
          f"{graphviz.version()}, torchview {'installed' if torchview else 'not installed'}, "
          f"{torch.get_num_threads()} threads")
    print(f"GPT2LMHeadModel(GPT2Config()): {params / 1e6:.1f} M parameters, input ids (1, 128); "
          f"medians of {repeats} (shared machine: timings are noisy)")
    out = Path(tempfile.mkdtemp()) / "gpt2.svg"

    def forward() -> None:
        with torch.no_grad():
            model(ids)

    for _ in range(2):  # warm-up: allocator, kernels, imports
        forward()
    sized = torchscope.summarize(model, input_size=[(1, 128)], dtypes=["long"],
                                 follow_functions=True)
    dot_text = to_dot(sized)

    def dot_run() -> None:
        graphviz.Source(dot_text).pipe(format="svg")

    def graph_sizes() -> None:
        report = torchscope.summarize(model, input_size=[(1, 128)], dtypes=["long"],
                                      follow_functions=True)
        render_graph(report, out)

    def graph_ids() -> None:
        report = torchscope.summarize(model, ids, follow_functions=True)
        render_graph(report, out)

    def summarize_sizes() -> None:
        torchscope.summarize(model, input_size=[(1, 128)], dtypes=["long"],
                             follow_functions=True)

    def summarize_plain() -> None:
        torchscope.summarize(model, input_size=[(1, 128)], dtypes=["long"])

    graph_sizes()
    graph_ids()
    # interleaved repeats: each repeat times every measure once, so that load from other
    # processes on a shared machine hits them alike; ratios are medians of per-repeat ratios
    measures: dict[str, Callable[[], object]] = {
        "forward": forward, "dot": dot_run, "summarize": summarize_sizes,
        "plain": summarize_plain,
        "to_dot": lambda: to_dot(sized), "sizes": graph_sizes, "ids": graph_ids,
    }
    if torchview is not None:
        def torchview_svg() -> None:
            graph = torchview.draw_graph(model, input_data=ids)
            graph.visual_graph.pipe(format="svg")

        measures["torchview"] = torchview_svg
    times: dict[str, list[float]] = {k: [] for k in measures}
    for _ in range(repeats):
        for key, fn in measures.items():
            times[key].append(median_ms(fn, 1))
    base = [f + d for f, d in zip(times["forward"], times["dot"])]
    times["baseline"] = base

    def ratio(key: str) -> float:
        return statistics.median(t / b for t, b in zip(times[key], base))

    print(f"{'measure':<48}{'median ms':>10}{'x baseline':>12}")
    rows = [
        ("bare forward (no_grad)", "forward"),
        ("dot -Tsvg on the diagram", "dot"),
        ("baseline = bare forward + dot", "baseline"),
        ("  summarize from sizes (meta, follow_functions)", "summarize"),
        ("  the same without follow_functions", "plain"),
        ("  to_dot (collapsed)", "to_dot"),
        ("graph (sizes): summarize + DOT + dot -> SVG", "sizes"),
        ("graph (ids): summarize real + DOT + dot -> SVG", "ids"),
    ]
    if torchview is not None:
        rows.append(("torchview draw_graph -> SVG", "torchview"))
    for name, key in rows:
        print(f"{name:<48}{statistics.median(times[key]):>10.1f}{ratio(key):>12.2f}")
    worst = max(ratio("sizes"), ratio("ids"))
    print(f"target: graph under 2x the baseline — {'met' if worst < 2 else 'NOT met'} "
          f"(worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
