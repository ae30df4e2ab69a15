"""Benchmark: forward tracing against a bare forward and against the minimal recorder.

One run prints, per model, the median time of (same model, same input, batch 1, ``no_grad``):

* ``bare``: the plain forward;
* ``recorder``: the *minimal recorder* — the same forward with two global module hooks
  (``register_module_forward_pre_hook`` / ``register_module_forward_hook``) that only append
  the module and its output shape to a list: the floor of any hook-based tracer;
* ``traced``: ``torchscope.trace_forward(model, x, mode="real")`` — the whole call: state guard,
  hooks, specs, flow edges, records;
* ``summary``: ``torchscope.summarize(model, x, mode="real")`` — what a user calls: the static
  walk, the trace and the report with every call attached;
* ``torchinfo``: ``torchinfo.summary(model, input_data=x)``, when torchinfo is installed;

and the ratios traced/recorder, traced/bare and summary/recorder, by wall clock and by CPU
time. Then the meta summary
of the Llama 7B and 70B architectures (built under ``torch.device("meta")``): bare meta forward
against ``trace_forward(model, input_size=[(1, 128)], dtypes=["long"])`` (auto picks meta), with
the peak RSS growth of each.

Targets: traced <= 1.3x recorder on the stacks, the whole summary <= 1.5x recorder on the
1,000- and 5,000-block stacks, <= 1.1x bare on GPT-2, meta 70B <= 1.5x bare meta forward with
peak RSS growth < 300 MB.

    python benchmarks/bench_trace.py            # ~2-3 minutes on 2 cores
    python benchmarks/bench_trace.py --quick    # fewer repeats, smaller cases
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchscope.inspect import summarize
from torchscope.trace import trace_forward

WIDTH = 64


class Residual(nn.Module):
    """``x + relu(linear(x))``: a residual block of width 64."""

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.act(self.linear(x))
        return out


def linear_relu_stack(blocks: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers)


def residual_stack(blocks: int) -> nn.Module:
    return nn.Sequential(*(Residual() for _ in range(blocks)))


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    model: nn.Module = GPT2LMHeadModel(GPT2Config())
    return model.eval()


def llama_meta(size: str) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    configs: dict[str, dict[str, Any]] = {
        "7B": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                   intermediate_size=11008, vocab_size=32000),
        "70B": dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                    num_key_value_heads=8, intermediate_size=28672, vocab_size=128256),
    }
    config: Any = LlamaConfig(**configs[size])
    with torch.device("meta"):
        model: nn.Module = LlamaForCausalLM(config)
    return model.eval()


# ---------------------------------------------------------------------------------------------


def minimal_recorder(model: nn.Module, x: torch.Tensor) -> list[Any]:
    """The floor of a hook-based tracer: append the module and its output shape."""
    record: list[Any] = []

    def pre(module: nn.Module, args: Any) -> None:
        record.append(module)

    def post(module: nn.Module, args: Any, output: Any) -> None:
        record.append(output.shape if isinstance(output, torch.Tensor) else None)

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h1.remove()
        h2.remove()
    return record


def bare(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def traced(model: nn.Module, x: torch.Tensor) -> None:
    trace_forward(model, x, mode="real")


def summarized(model: nn.Module, x: torch.Tensor) -> None:
    summarize(model, x, mode="real")


def torchinfo_summary(model: nn.Module, x: torch.Tensor) -> None:
    import torchinfo

    torchinfo.summary(model, input_data=x, verbose=0)


def median_times(fns: dict[str, Callable[[], object]],
                 repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each function; runs interleaved so drift hits all alike.

    CPU time (``time.process_time``: this process, all its threads) is printed next to wall
    time because it holds up on a shared machine, where wall time also counts other programs.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start_cpu = time.process_time()
            start = time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def have_torchinfo() -> bool:
    try:
        import torchinfo  # noqa: F401
    except ImportError:
        return False
    return True


HEADER = (f"{'model':<25} {'calls':>6}  {'clock':<5} {'bare ms':>9} {'recorder ms':>12} "
          f"{'(x bare)':>8} {'traced ms':>10} {'/recorder':>9} {'/bare':>6} "
          f"{'summary ms':>11} {'/recorder':>9}")


def bench_real(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> None:
    calls = len(trace_forward(model, x, mode="real").calls)
    fns: dict[str, Callable[[], object]] = {
        "bare": lambda: bare(model, x),
        "recorder": lambda: minimal_recorder(model, x),
        "traced": lambda: traced(model, x),
        "summary": lambda: summarized(model, x),
    }
    if have_torchinfo():
        fns["torchinfo"] = lambda: torchinfo_summary(model, x)
    t = median_times(fns, repeats)
    for k, clock in enumerate(("wall", "cpu")):
        b, r, tr, su = t["bare"][k], t["recorder"][k], t["traced"][k], t["summary"][k]
        label = f"{name:<25} {calls:>6}" if k == 0 else " " * 32
        line = (f"{label}  {clock:<5} {b * 1e3:9.1f} {r * 1e3:12.1f} {f'({r / b:.2f}x)':>8} "
                f"{tr * 1e3:10.1f} {tr / r:8.2f}x {tr / b:5.2f}x "
                f"{su * 1e3:11.1f} {su / r:8.2f}x")
        if "torchinfo" in t:
            line += f"  torchinfo {t['torchinfo'][k] / b:.1f}x bare"
        print(line, flush=True)


# ---------------------------------------------------------------------------------------------
# peak RSS: reset the high-water mark (Linux: write 5 to /proc/self/clear_refs), read VmHWM


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def peak_growth_mb(fn: Callable[[], object]) -> float | None:
    """Peak RSS during ``fn()`` minus RSS before it, in MB (None where unknown)."""
    gc.collect()
    if not _reset_peak():
        return None
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return (peak - before) / 1024


def bench_meta(size: str, repeats: int) -> None:
    build_start = time.perf_counter()
    model = llama_meta(size)
    build = time.perf_counter() - build_start
    ids = torch.zeros(1, 128, dtype=torch.long, device="meta")
    n_params = sum(p.numel() for p in model.parameters())

    def meta_bare() -> None:
        with torch.no_grad():
            model(ids)

    def meta_traced() -> object:
        return trace_forward(model, input_size=[(1, 128)], dtypes=["long"])

    result = trace_forward(model, input_size=[(1, 128)], dtypes=["long"])
    assert result.mode == "meta", result.notes
    t = median_times({"bare": meta_bare, "traced": meta_traced}, repeats)
    grow_bare = peak_growth_mb(meta_bare)
    grow_traced = peak_growth_mb(meta_traced)

    def mb(v: float | None) -> str:
        return "unknown" if v is None else f"{v:+.1f} MB"

    print(f"llama {size} on meta: {n_params / 1e9:.1f} B parameters, {len(result.calls)} calls, "
          f"built in {build:.2f} s")
    print(f"{'':<34}peak RSS growth: bare meta forward {mb(grow_bare)}, "
          f"traced {mb(grow_traced)}")
    for k, clock in enumerate(("wall", "cpu")):
        b, tr = t["bare"][k], t["traced"][k]
        print(f"{'':<32}  {clock:<5} bare meta forward {b * 1e3:8.1f} ms  traced "
              f"{tr * 1e3:8.1f} ms  traced/bare {tr / b:4.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller cases")
    parser.add_argument("--stacks", action="store_true",
                        help="only the Linear+ReLU and residual stacks")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians")
    print(HEADER)
    x = torch.randn(1, WIDTH)
    small = [1000] if args.quick else [1000, 5000]
    for blocks in small:
        reps = 15 if blocks <= 1000 else 7
        if args.quick:
            reps = 5
        bench_real(f"Linear+ReLU x {blocks}", linear_relu_stack(blocks), x, reps)
        bench_real(f"Residual x {blocks}", residual_stack(blocks), x, reps)
    if args.stacks:
        return 0
    model = gpt2()
    ids = torch.zeros(1, 128, dtype=torch.long)
    bench_real("GPT-2 124M, ids (1, 128)", model, ids, 3 if args.quick else 5)
    del model
    for size in (["7B"] if args.quick else ["7B", "70B"]):
        bench_meta(size, 3 if args.quick else 5)
    if not have_torchinfo():
        print("torchinfo is not installed: its column is skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
