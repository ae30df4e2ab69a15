"""Benchmark: growth of traced summaries with model size, and the memory of meta inputs.

Each case runs in a fresh subprocess (so peak RSS is its own) and prints its wall time and peak
RSS:

* traced summaries (``summarize(model, input_size=[(1, 8)])``, auto picks meta) of a flat
  ``Sequential`` of Linear(8, 8)+ReLU with 10,000 and 100,000 modules, then the block diagram of
  the same trace (``to_dot`` of ``summarize(..., follow_functions=True)``, what ``torchscope
  graph`` runs); the line under each pair gives the 100k/10k ratios (linear growth is 10x;
  goal <= 12x);
* ``python -m torchscope summarize <Linear(1000, 8)> --mode meta --input-size 1000,1000,1000``
  next to the same command without inputs (the floor the imports set):
  the peak RSS of the whole command (goal: under 300 MB; the input would be 4 GB of real
  zeros).

    python benchmarks/bench_scale.py            # ~8-10 minutes on 2 shared cores
    python benchmarks/bench_scale.py --quick    # 2,000 and 20,000 modules, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from torch import nn
import torchscope
from torchscope.rendering.graph import to_dot

n_modules, what = int(sys.argv[1]), sys.argv[2]
layers = []
for _ in range(n_modules // 2):
    layers += [nn.Linear(8, 8), nn.ReLU()]
model = nn.Sequential(*layers)
torchscope.summarize(nn.Sequential(nn.Linear(8, 8)), input_size=[(1, 8)])  # imports, warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if what == "summary":
    report = torchscope.summarize(model, input_size=[(1, 8)])
    size = len(report.modules)
else:
    size = len(to_dot(torchscope.summarize(model, input_size=[(1, 8)], follow_functions=True)))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "growth_mb": (peak - before) / 1024,
                  "size": size}))
"""


def _run_child(n_modules: int, what: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(n_modules), what],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_growth(small: int, large: int) -> None:
    print(f"{'case':<32} {'modules':>8} {'seconds':>8} {'peak RSS MB':>12} {'growth MB':>10}")
    for what in ("summary", "diagram"):
        rows = {}
        for n in (small, large):
            r = _run_child(n, what)
            rows[n] = r
            print(f"{'traced ' + what:<32} {n:>8,} {r['seconds']:8.2f} {r['peak_mb']:12.0f} "
                  f"{r['growth_mb']:10.0f}", flush=True)
        t = rows[large]["seconds"] / rows[small]["seconds"]
        g = rows[large]["growth_mb"] / max(rows[small]["growth_mb"], 1.0)
        print(f"  {large // small}x the modules: {t:.1f}x the time, {g:.1f}x the RSS growth "
              f"(goal <= {1.2 * large / small:.0f}x)", flush=True)


_PEAK = ("import resource, runpy, sys\n"
         "sys.argv = ['torchscope', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('torchscope', run_name='__main__')\n"
         "except SystemExit as exit:\n    code = exit.code\n"
         "else:\n    code = 0\n"
         "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def _command_peak(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, status) of ``python -m torchscope ARGS`` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    last = (done.stderr.strip().splitlines() or ["1 0"])[-1].split()
    code, peak_kb = last[0], float(last[1]) if len(last) > 1 else 0.0
    return seconds, peak_kb / 1024, "ok" if code in ("0", "None") else f"exit {code}"


def bench_meta_input() -> None:
    with tempfile.TemporaryDirectory() as folder:
        target = os.path.join(folder, "wide.py")
        with open(target, "w", encoding="utf-8") as f:
            f.write("import torch\nmodel = torch.nn.Linear(1000, 8)\n")
        common = ["summarize", f"{target}:model", "--format", "text"]
        static = _command_peak(common)
        meta = _command_peak([*common, "--mode", "meta", "--input-size", "1000,1000,1000"])
    print(f"summarize (static, the imports' floor) on Linear(1000, 8): {static[0]:.1f} s, peak "
          f"RSS {static[1]:.0f} MB [command {static[2]}]")
    print(f"summarize --mode meta --input-size 1000,1000,1000 on Linear(1000, 8): "
          f"{meta[0]:.1f} s, peak RSS {meta[1]:.0f} MB (goal < 300 MB: "
          f"{'met' if meta[1] < 300 else 'missed'}) [command {meta[2]}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 modules")
    args = parser.parse_args(argv)
    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    bench_meta_input()
    bench_growth(small, large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
