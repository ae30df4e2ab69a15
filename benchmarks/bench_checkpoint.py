"""Benchmark: inspecting a ~2 GB checkpoint vs reading its bytes once.

Writes a training checkpoint of about 2 GB (a model state dict with tied embeddings, an
optimizer state and scalars) with ``torch.save`` and the model's tensors as a safetensors file,
into a temporary folder that is deleted afterwards. Each measurement runs in a fresh subprocess
(after importing torch and torchscope) and reports the call's wall time and the growth of the
process's peak resident memory (``VmHWM``), median of several runs. Baselines measured in the
same run: reading the file's bytes once (16 MiB chunks), and ``torch.load`` without ``mmap``
(what a naive inspection costs).

Targets: peak RSS growth under 100 MB and under 0.5x the time of reading the file.

    python benchmarks/bench_checkpoint.py [--size-gb 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
import torch, torchscope, torchscope.checkpoint, torchscope.tying, safetensors.torch

def hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")

mode, path = sys.argv[1], sys.argv[2]
before = hwm_kib()
start = time.perf_counter()
if mode == "inspect":
    info = torchscope.inspect_checkpoint(path)
    n = len(info.entries)
elif mode == "read":
    n = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(16 << 20):
            n += len(chunk)
elif mode == "load":
    obj = torch.load(path, weights_only=True)
    n = 1
else:
    raise SystemExit(f"unknown mode {mode}")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rss_mib": (hwm_kib() - before) / 1024, "n": n}))
"""


def _measure(mode: str, path: Path, repeat: int) -> tuple[float, float]:
    times, rss = [], []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path)], check=True,
                             capture_output=True, text=True)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(data["seconds"])
        rss.append(data["rss_mib"])
    return statistics.median(times), statistics.median(rss)


def _write(folder: Path, size_gb: float) -> tuple[Path, Path]:
    import torch
    from safetensors.torch import save_file

    # model: embedding (tied to the head) + square layers; optimizer: one Adam moment per layer
    hidden = 4096
    vocab = 32_000
    emb = torch.ones(vocab, hidden)  # 500 MiB
    layer_bytes = hidden * hidden * 4  # 64 MiB
    budget = int(size_gb * 2**30) - emb.nbytes
    layers = max(1, budget // (2 * layer_bytes))
    sd: dict[str, torch.Tensor] = {"embed.weight": emb}
    for i in range(layers):
        sd[f"layers.{i}.weight"] = torch.full((hidden, hidden), float(i))
        sd[f"layers.{i}.bias"] = torch.zeros(hidden)
    sd["head.weight"] = emb  # tied: stored once
    optim = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.ones(hidden, hidden)}
                       for i in range(layers)},
             "param_groups": [{"lr": 1e-4, "params": list(range(layers))}]}
    ckpt = folder / "big.ckpt"
    torch.save({"model": sd, "optimizer": optim, "epoch": 3}, ckpt)
    del optim
    st = folder / "big.safetensors"
    save_file({k: v for k, v in sd.items() if k != "head.weight"}, st)
    return ckpt, st


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tmp_root = Path(tempfile.gettempdir())
    free_gb = shutil.disk_usage(tmp_root).free / 2**30
    size = args.size_gb
    need = 2.2 * size + 1  # the checkpoint plus a safetensors copy of the model, and headroom
    if free_gb < need:
        size = max(0.25, (free_gb - 1) / 2.2)
        print(f"note: only {free_gb:.1f} GiB free in {tmp_root}; using {size:.2f} GB instead of "
              f"{args.size_gb} GB")
    folder = Path(tempfile.mkdtemp(prefix="torchscope-bench-"))
    try:
        start = time.perf_counter()
        ckpt, st = _write(folder, size)
        print(f"wrote {ckpt.name} ({ckpt.stat().st_size / 2**30:.2f} GiB) and {st.name} "
              f"({st.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.1f} s; "
              f"median of {args.repeat} runs, each in a fresh process, page cache warm\n")
        rows = []
        verdicts = []
        for path in (ckpt, st):
            read_s, read_rss = _measure("read", path, args.repeat)
            insp_s, insp_rss = _measure("inspect", path, args.repeat)
            rows.append((path.name, "read the bytes once (baseline)", read_s, read_rss, 1.0))
            rows.append((path.name, "inspect_checkpoint", insp_s, insp_rss, insp_s / read_s))
            if path == ckpt:
                load_s, load_rss = _measure("load", path, max(1, args.repeat // 2))
                rows.append((path.name, "torch.load(weights_only=True), no mmap", load_s,
                             load_rss, load_s / read_s))
            verdicts.append((path.name, insp_rss < 100, insp_s / read_s < 0.5, insp_rss,
                             insp_s / read_s))
        print(f"{'file':16} {'what':40} {'median s':>9} {'peak RSS +MiB':>14} {'x read':>7}")
        for name, what, sec, rss, ratio in rows:
            print(f"{name:16} {what:40} {sec:9.4f} {rss:14.1f} {ratio:7.3f}")
        print()
        for name, rss_ok, time_ok, rss, ratio in verdicts:
            print(f"{name}: RSS growth {rss:.1f} MiB (target < 100 MB: "
                  f"{'met' if rss_ok else 'MISSED'}), time {ratio:.3f}x the read (target < 0.5x: "
                  f"{'met' if time_ok else 'MISSED'})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
