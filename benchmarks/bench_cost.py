"""Benchmark: cost analysis — FLOPs against other counters, and time on the 70B Llama.

Part 1, FLOPs of one forward (and backward where the tool counts it) of the same models and
inputs, side by side:

* ``torchscope``: ``estimate_cost(model, x)`` on meta tensors (forward and backward);
* ``FlopCounterMode``: torch's counter around a real forward and ``out.sum().backward()``;
* ``torchinfo``: ``summary(model, input_data=x).total_mult_adds`` (forward multiply-adds),
  when torchinfo is installed;
* ``fvcore``: ``FlopCountAnalysis(model, x).total()`` (forward, counts one multiply-add as one
  "flop"), when fvcore is installed.

Part 2, time and memory of the cost of the 70B Llama architecture (LlamaConfig hidden 8192,
80 layers, 64 heads, 8 key-value heads, intermediate 28672, vocabulary 128256; batch 1, 128
tokens), built on meta, medians of alternating runs:

* ``bare``: a meta forward and backward (``torch.autograd.grad`` of the logits' sum) of the
  model in bfloat16, the training dtype the cost is asked for;
* ``FlopCounterMode``: the same under ``FlopCounterMode(display=False)``;
* ``estimate_cost``: the whole cost analysis (copy, forward and backward with the counter and
  the saved-tensor hooks, the inference forward, the records);
* ``summarize(cost=True)``: the whole summary with the cost (static walk, traced shapes, cost).

Goals: ``estimate_cost`` <= 1.5x bare and never slower than FlopCounterMode alone; peak RSS
growth < 300 MB.

    python benchmarks/bench_cost.py            # ~1.5 minutes on 2 cores
    python benchmarks/bench_cost.py --quick    # one repeat
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchscope
from torchscope.examples import MLP


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000,
                                      use_cache=False, bos_token_id=0, eos_token_id=0))


def llama_small() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(hidden_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=256, vocab_size=1000, use_cache=False))


def llama_70b() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8, intermediate_size=28672, vocab_size=128256)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)


def _logits(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def flop_counter_step(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of FlopCounterMode on a real step."""
    counter = FlopCounterMode(display=False)
    with counter:
        _logits(model(x))
    forward = counter.get_total_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        _logits(model(x)).sum().backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


def torchinfo_mult_adds(model: nn.Module, x: torch.Tensor) -> int | None:
    try:
        import torchinfo
    except ImportError:
        return None
    stats = torchinfo.summary(model, input_data=x, verbose=0)
    return int(stats.total_mult_adds)


def fvcore_flops(model: nn.Module, x: torch.Tensor) -> int | None:
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return None
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def part_flops() -> None:
    print("FLOPs of one step (forward; forward + backward where counted)")
    print(f"{'model':<12}{'torchscope fwd':>16}{'FlopCounter fwd':>17}{'torchinfo MACs':>16}"
          f"{'fvcore':>14}{'torchscope f+b':>16}{'FlopCounter f+b':>17}  equal")
    cases: list[tuple[str, Callable[[], nn.Module], torch.Tensor]] = [
        ("mlp", MLP, torch.randn(2, 20)),
        ("conv-net", ConvNet, torch.randn(2, 3, 32, 32)),
        ("gpt2", gpt2, torch.zeros(2, 64, dtype=torch.long)),
        ("llama", llama_small, torch.zeros(2, 64, dtype=torch.long)),
    ]
    for name, build, x in cases:
        torch.manual_seed(0)
        model = build()
        cost = torchscope.estimate_cost(model, x)
        fwd, total = flop_counter_step(model, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = torchinfo_mult_adds(model, x)
            fv = fvcore_flops(model, x)
        equal = fwd == cost.forward_flops and total == cost.total_flops
        print(f"{name:<12}{cost.forward_flops:>16,}{fwd:>17,}"
              f"{'-' if macs is None else f'{macs:,}':>16}{'-' if fv is None else f'{fv:,}':>14}"
              f"{cost.total_flops:>16,}{total:>17,}  {'yes' if equal else 'NO'}")
    print("(torchinfo counts multiply-adds of Linear/Conv weights, fvcore one per multiply-add: "
          "FLOPs are about 2x either; FlopCounterMode and torchscope count 2 per multiply-add)")
    print()


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


def peak_growth_mb(fn: Callable[[], object]) -> float | None:
    """Peak RSS during ``fn()`` minus RSS before it, in MB (None where unknown)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return (peak - before) / 1024


def part_70b(repeats: int) -> None:
    model = llama_70b()
    # the baselines run the step the cost describes: the model in bfloat16 (free on meta)
    model_bf16 = llama_70b().to(torch.bfloat16)
    ids = torch.zeros(1, 128, dtype=torch.long, device="meta")
    params = [p for p in model_bf16.parameters() if p.requires_grad]

    def bare() -> None:
        out = _logits(model_bf16(ids))
        torch.autograd.grad(out.sum(), params)

    def flop_counter() -> None:
        with FlopCounterMode(display=False):
            bare()

    def cost() -> None:
        torchscope.estimate_cost(model, input_size=[(1, 128)], dtypes=["long"],
                                 optimizer="adam", train_dtype="bf16")

    def summary() -> None:
        torchscope.summarize(model, input_size=[(1, 128)], dtypes=["long"], cost=True,
                             optimizer="adam", train_dtype="bf16")

    runs: dict[str, Callable[[], None]] = {
        "bare meta forward+backward": bare,
        "FlopCounterMode": flop_counter,
        "estimate_cost": cost,
        "summarize(cost=True)": summary,
    }
    for fn in runs.values():  # warm up (lazy imports, first-call caches)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():  # alternate: load drift hits every variant
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    base = med["bare meta forward+backward"]
    base_cpu = med_cpu["bare meta forward+backward"]
    print("70B Llama on meta, batch 1, 128 tokens: forward + backward "
          f"(median of {repeats}; wall clock, and CPU time of this process)")
    for key, value in med.items():
        c = med_cpu[key]
        print(f"  {key:<28}{value:6.2f} s {value / base:5.2f}x bare "
              f"{value / med['FlopCounterMode']:5.2f}x FlopCounterMode | CPU {c:6.2f} s "
              f"{c / base_cpu:5.2f}x bare {c / med_cpu['FlopCounterMode']:5.2f}x FlopCounterMode")
    grow = {key: peak_growth_mb(runs[key]) for key in ("bare meta forward+backward",
                                                       "estimate_cost")}
    print("  peak RSS growth: " + ", ".join(
        f"{k} {'?' if v is None else f'{v:.1f} MB'}" for k, v in grow.items()))
    c = torchscope.estimate_cost(model, input_size=[(1, 128)], dtypes=["long"],
                                 optimizer="adam", train_dtype="bf16")
    print(f"  forward {c.forward_flops:,} FLOPs, backward {c.backward_flops:,} FLOPs, "
          f"training peak {c.training_peak_bytes / 2**30:.1f} GiB (Adam, bf16)")
    ok_bare = med_cpu["estimate_cost"] <= 1.5 * base_cpu
    ok_fc = med_cpu["estimate_cost"] <= med_cpu["FlopCounterMode"]
    rss = grow["estimate_cost"]
    print(f"  goals (CPU time): <= 1.5x bare {'met' if ok_bare else 'MISSED'}; not slower than "
          f"FlopCounterMode {'met' if ok_fc else 'MISSED'}; RSS growth < 300 MB "
          f"{'met' if rss is not None and rss < 300 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    torch.set_num_threads(1)
    part_flops()
    part_70b(1 if args.quick else 5)


if __name__ == "__main__":
    main()
