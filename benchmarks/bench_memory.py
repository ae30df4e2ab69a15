"""Benchmark: peak memory (RSS) of summaries whose questions need no memory.

Each case runs in a fresh subprocess that reports its own peak RSS (``ru_maxrss``), next to a
baseline measured the same way in the same run: the subprocess that only imports torch and
torchscope. Cases:

* ``summarize --mode meta|fake|auto --input-size 1000,1000,1000`` on ``Linear(1000, 8)``:
  4 GB of float32 input if it were real, next to a second baseline: the bare meta forward
  of the same model (torch itself imports sympy and ``torch._dynamo`` the first time one of
  its Python meta kernels runs, some 75 MB). Goal: under 300 MB peak, and no more than the same
  summary with ``--input-size 2,1000`` (the input size costs nothing); the same for
  ``check --mode meta``;
* a traced (meta) summary of a model of 10,000 and of 100,000 modules: the 100k run's RSS
  growth over the baseline should stay within 12x the 10k run's (linear, not worse).

    python benchmarks/bench_memory.py           # ~1-2 minutes
    python benchmarks/bench_memory.py --quick   # without the 100,000-module case
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
{setup}
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(f"RSS {{rss}}")
"""

IMPORT = "import torch, torchscope"

MODEL_FILE = """
from torch import nn


def linear():
    return nn.Linear(1000, 8)


def blocks(n=10_000):
    # n modules in all: a Sequential of (n - 1) // 3 blocks of Linear + ReLU
    return nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU())
                           for _ in range((n - 1) // 3)])
"""


def _run(setup: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of a fresh interpreter running ``setup``."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"case failed:\n{setup}\n{out.stderr}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RSS ")][-1]
    return int(line.split()[1]) / 1024, wall


def _cli(folder: Path, args: str) -> str:
    return (f"sys.path.insert(0, {str(folder)!r})\n"
            "import contextlib, io\n"
            "from torchscope.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    code = main({args.split()!r})\n"
            "assert code == 0, code")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-module case")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_models.py").write_text(MODEL_FILE)
        base, base_wall = _run(IMPORT)
        print(f"baseline: import torch, torchscope  peak RSS {base:7.1f} MiB  ({base_wall:.1f} s)")
        bare, _ = _run(IMPORT + "\nfrom torch import nn\n"
                       "nn.Linear(1000, 8, device='meta')(torch.zeros(1000, 1000, 1000, "
                       "device='meta'))")
        print(f"baseline: the same, then a bare meta forward of Linear(1000, 8) (torch imports "
              f"sympy and torch._dynamo for its Python meta kernels)  peak RSS {bare:7.1f} MiB "
              f"(+{bare - base:.1f})")
        print()
        print("summarize Linear(1000, 8) with --input-size (4 GB of float32 if it were real)")
        small, _ = _run(_cli(folder, "summarize bench_models:linear --mode meta "
                                     "--input-size 2,1000"))
        print(f"  --mode meta --input-size 2,1000            peak RSS {small:7.1f} MiB  "
              f"(+{small - base:.1f} over baseline)")
        for mode in ("meta", "fake", "auto"):
            rss, wall = _run(_cli(folder, f"summarize bench_models:linear --mode {mode} "
                                          "--input-size 1000,1000,1000"))
            goal = "ok" if rss < 300 else "OVER the 300 MiB goal"
            print(f"  --mode {mode:<4} --input-size 1000,1000,1000  peak RSS {rss:7.1f} MiB  "
                  f"(+{rss - base:.1f} over baseline, +{rss - bare:.1f} over the bare meta "
                  f"forward, {rss - small:+.1f} vs 2,1000; {goal}; {wall:.1f} s)")
        rss, wall = _run(_cli(folder, "check bench_models:linear --mode meta "
                                      "--input-size 1000,1000,1000"))
        goal = "ok" if rss < 300 else "OVER the 300 MiB goal"
        print(f"  check --mode meta --input-size 1000,1000,1000 peak RSS {rss:7.1f} MiB  "
              f"(+{rss - base:.1f} over baseline, {rss - small:+.1f} vs the 2,1000 summary; "
              f"{goal}; {wall:.1f} s)")
        print()
        print("traced (meta) summary of many modules")
        sizes = [10_000] if opts.quick else [10_000, 100_000]
        growth: dict[int, float] = {}
        for n in sizes:
            setup = (f"sys.path.insert(0, {str(folder)!r})\n"
                     "import torchscope, bench_models\n"
                     f"model = bench_models.blocks({n})\n"
                     "torchscope.summarize(model, input_size=[(1, 4)], mode='meta')")
            built = (f"sys.path.insert(0, {str(folder)!r})\n"
                     "import torchscope, bench_models\n"
                     f"model = bench_models.blocks({n})")
            model_rss, _ = _run(built)
            rss, wall = _run(setup)
            growth[n] = rss - model_rss
            print(f"  {n:>7,} modules: model alone {model_rss:7.1f} MiB, with the traced summary "
                  f"{rss:7.1f} MiB (+{growth[n]:.1f} for the summary; {wall:.1f} s)")
        if len(growth) == 2 and growth[10_000] > 0:
            ratio = growth[100_000] / growth[10_000]
            verdict = "ok" if ratio <= 12 else "OVER the 12x goal"
            print(f"  summary memory 100k / 10k: {ratio:.1f}x ({verdict})")


if __name__ == "__main__":
    main()
