"""Distributed models: DTensor/FSDP2 records, per-rank gathering, sharding findings, set-up.

The multi-process checks launch two local processes on the gloo backend (CPU) the way
torchrun does (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment), so
``setup_from_launcher`` itself starts the group. Each launch costs seconds (two torch imports on
two cores), so one launch runs every check and writes its observations as JSON; the tests
then assert on them. Every launch has a timeout: a hang fails fast with both ranks' output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

import torchscope
from torchscope import distributed as D
from torchscope._torch import fsdp_resharded, unwrap_wrappers
from torchscope.errors import TorchscopeError
from torchscope.examples import MLP
from torchscope.records import Report
from torchscope.rendering._distributed import ranks_renderable, ranks_rows

HERE = Path(__file__).parent
LAUNCH_TIMEOUT = 180  # seconds for a whole two-process launch (torch imports on 2 busy cores)


pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend: the distributed "
    "checks need two local gloo processes",
)


# ------------------------------------------------------------------------------------------
# launching


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (bound together, so none is handed out twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _launch(argv_of: Callable[[int], list[str]], *, world: int = 2,
            timeout: float = LAUNCH_TIMEOUT) -> list[subprocess.CompletedProcess[str]]:
    """Start ``world`` processes with a torchrun-like environment; wait (bounded) for all."""
    # MASTER_PORT for the launcher's group; a second port for a group the "user" creates
    # (a TCP store's port is not reliably reusable right after the group is destroyed)
    port, user_port, *cli_ports = _free_ports(4)
    procs = []
    for rank in range(world):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC")}
        env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), TORCHSCOPE_TEST_USER_PORT=str(user_port),
                   TORCHSCOPE_TEST_CLI_PORTS=",".join(map(str, cli_ports)),
                   OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen(argv_of(rank), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results: list[subprocess.CompletedProcess[str]] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        outputs = [p.communicate() for p in procs]
        pytest.fail(f"distributed launch hung for {timeout}s (rank {len(results)} did not "
                    "finish): "
                    + "\n".join(f"--- rank {i}\n{o}\n{e}" for i, (o, e) in enumerate(outputs)))
    return results


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """One two-rank launch of :func:`_worker`; per rank, what it observed."""
    out = tmp_path_factory.mktemp("distributed")
    results = _launch(lambda rank: [
        sys.executable, "-c", f"import test_distributed as t; t._worker({str(out)!r})"])
    observed = []
    for rank, res in enumerate(results):
        path = out / f"rank{rank}.json"
        assert res.returncode == 0 and path.exists(), (
            f"rank {rank} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
        obs = json.loads(path.read_text())
        assert "session" in obs, f"rank {rank} could not start its session: {obs.get('failure')}"
        observed.append(obs)
    return observed


# ------------------------------------------------------------------------------------------
# the worker: runs in each launched process


class _TiedHead(nn.Module):
    """An embedding tied to the output head (GPT-style), with a body between them."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(self.wte(x)))
        return out


def _sharded_mlp_root_params() -> nn.Module:
    """MLP where the root FSDP unit owns ``output``'s parameters (FSDP keeps the root unit
    unsharded after a forward)."""
    from torch.distributed.fsdp import fully_shard

    model = MLP()
    fully_shard(model.hidden)
    fully_shard(model)
    return model


def _local_state(model: nn.Module) -> dict[str, tuple[str, tuple[int, ...], torch.Tensor]]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        local = p._local_tensor if isinstance(p, DTensor) else p
        out[name] = (type(p).__name__, tuple(local.shape), local.detach().clone())
    return out


def _same_local_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and a[k][1] == b[k][1] and torch.equal(a[k][2], b[k][2]) for k in a)


def _worker(out_dir: str) -> None:
    """Every multi-process check, in one launch; observations go to ``rank<N>.json``."""
    from torch.distributed.fsdp import fully_shard

    rank = int(os.environ["RANK"])
    obs: dict[str, Any] = {}

    def attempt(key: str, fn: Callable[[], Any]) -> None:
        try:
            obs[key] = fn()
        except Exception as err:
            obs[key] = {"raised": f"{type(err).__name__}: {err}",
                        "clear": isinstance(err, TorchscopeError),
                        "trace": traceback.format_exc(limit=-4)}

    # a group the user created is left alone
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{os.environ['TORCHSCOPE_TEST_USER_PORT']}",
        rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
    obs["user_group_setup"] = D.setup_from_launcher()
    D.teardown()
    obs["user_group_kept"] = dist.is_initialized()
    dist.destroy_process_group()

    try:
        with D.distributed_session(timeout=60) as on:
            obs["session"] = on
            obs["created"] = D._STATE["created"]
            obs["primary"] = D.is_primary()

            # global vs local shapes, per-rank totals
            fsdp = torchscope.examples.fsdp_mlp()
            obs["fsdp_mlp_type"] = type(fsdp).__name__
            obs["fsdp_mlp"] = D.gather_report(torchscope.summarize(fsdp)).to_json()

            # uneven shards: 5 rows over 2 ranks
            uneven = nn.Sequential(nn.Linear(4, 5))
            fully_shard(uneven)
            obs["uneven"] = D.gather_report(torchscope.summarize(uneven)).to_json()

            # meta-device model, sharded: summarized without allocating
            with torch.device("meta"):
                meta = torchscope.examples.MLP()
            fully_shard(meta.hidden)
            fully_shard(meta)
            obs["meta"] = D.gather_report(torchscope.summarize(meta)).to_json()
            obs["meta_after"] = all(p._local_tensor.is_meta  # type: ignore[attr-defined]
                                  for p in meta.parameters())
            attempt("meta_traced", lambda: torchscope.summarize(
                meta, input_size=[(2, 20)]).to_json())

            # traced forward shapes on a sharded model
            obs["traced"] = D.gather_report(
                torchscope.summarize(fsdp, input_size=[(2, 20)])).to_json()

            # the model still trains after a traced summary (root unit owns parameters)
            model = _sharded_mlp_root_params()
            x = torch.randn(2, 20)
            before = _local_state(model)
            attempt("root_traced", lambda: torchscope.summarize(
                model, input_size=[(2, 20)]).mode)
            obs["root_state_kept"] = _same_local_state(before, _local_state(model))

            def train_step() -> bool:
                model(x).sum().backward()
                return all(p.grad is not None for p in model.parameters())
            attempt("root_trains_after", train_step)

            # fsdp_resharded puts the root unit back to sharded after a forward
            model2 = _sharded_mlp_root_params()
            with torch.no_grad():
                model2(x)
            obs["unsharded_after_forward"] = sorted(
                {type(p).__name__ for p in model2.parameters()})
            model3 = _sharded_mlp_root_params()
            with fsdp_resharded(list(model3.modules())), torch.no_grad():
                model3(x)
            obs["resharded"] = sorted({type(p).__name__ for p in model3.parameters()})

            # tensor parallel (DTensor without FSDP): sharded on dim 0, dim 1, replicated
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.tensor.parallel import (
                ColwiseParallel,
                RowwiseParallel,
                parallelize_module,
            )

            tp = MLP()
            mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
            parallelize_module(tp, mesh, {"hidden": ColwiseParallel(),
                                          "output": RowwiseParallel()})
            obs["tp"] = D.gather_report(torchscope.summarize(tp)).to_json()
            attempt("tp_meta", lambda: torchscope.summarize(
                tp, input_size=[(2, 20)], mode="meta").to_json())

            # ranks that build different models
            other = (nn.Sequential(nn.Linear(4, 5)) if rank == 0
                     else nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2)))
            obs["mismatch"] = D.gather_report(torchscope.summarize(other)).to_json()

            # ties: a tie split across FSDP units, checked against the groups found before
            split = _TiedHead()
            tied_before = torchscope.find_tied(split)
            fully_shard(split.head)
            fully_shard(split)
            obs["split_findings"] = [f.code for f in D.check_fsdp_ties(tied_before, split)]
            obs["split_messages"] = [f.message for f in D.check_fsdp_ties(tied_before, split)]
            kept = _TiedHead()
            kept_before = torchscope.find_tied(kept)
            fully_shard(kept.body)
            fully_shard(kept)
            obs["kept_findings"] = [f.code for f in D.check_fsdp_ties(kept_before, kept)]
            obs["kept_tied"] = kept.head.weight is kept.wte.weight
            attempt("kept_summary", lambda: torchscope.summarize(kept).to_json())
            try:
                snapshot_ties, compare_ties = torchscope.snapshot_ties, torchscope.compare_ties
            except (AttributeError, ImportError):
                pass  # the Tying issue's guard is not built yet
            else:
                guarded = _TiedHead()
                snap = snapshot_ties(guarded)
                fully_shard(guarded.head)
                fully_shard(guarded)
                attempt("tie_guard", lambda: [
                    [f.code, f.message] for f in compare_ties(snap, guarded)])
                obs["split_from_snapshot"] = [f.code for f in D.check_fsdp_ties(snap, guarded)]

            # DDP's module. prefix
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(torchscope.examples.MLP())
            inner, notes = unwrap_wrappers(ddp)
            obs["ddp_names"] = [p.name for p in torchscope.summarize(inner).params]
            obs["ddp_notes"] = list(notes)
            obs["ddp_summary"] = torchscope.summarize(ddp).to_json()

            # the public API: summarize(distributed=True) gathers; FSDP units are tagged
            obs["api"] = torchscope.summarize(
                torchscope.examples.fsdp_mlp(), distributed=True).to_json()
            wrapped = MLP()
            if rank == 0:
                fully_shard(wrapped.hidden)
            fully_shard(wrapped)
            obs["wrapping"] = torchscope.summarize(
                wrapped, distributed=True).to_json()

            # a rank that failed: every rank raises, nobody waits forever
            failure: Report | BaseException = (
                ValueError("rank 1 could not build the model") if rank == 1
                else torchscope.summarize(torchscope.examples.MLP()))
            D.gather_report(failure)
            obs["failure"] = "no error"
    except TorchscopeError as err:
        obs["failure"] = str(err)
    obs["initialized_after"] = dist.is_initialized()
    obs["created_after"] = D._STATE["created"]

    # the command line under a launcher: it starts (and ends) its own group; rank 0 prints
    from torchscope import cli

    for key, target, port in zip(("cli", "cli_failed"),
                                 ("torchscope.examples:fsdp_mlp", "test_distributed:rank1_fails"),
                                 os.environ["TORCHSCOPE_TEST_CLI_PORTS"].split(",")):
        os.environ["MASTER_PORT"] = port
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["summarize", target, "--input-size", "2,20", "--format", "text"])
        obs[key] = {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
                    "initialized_after": dist.is_initialized()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(obs))


def rank1_fails() -> nn.Module:
    """A CLI target that cannot be built on rank 1."""
    if os.environ["RANK"] == "1":
        raise ValueError("no model on rank 1")
    return MLP()


def _report(run: list[dict[str, Any]], rank: int, key: str) -> Report:
    value = run[rank][key]
    assert isinstance(value, str), f"rank {rank} {key}: {value}"
    return Report.from_json(value)


def _param(report: Report, name: str) -> Any:
    return next(p for p in report.params if p.name == name)


# ------------------------------------------------------------------------------------------
# multi-process checks


def test_distributed_setup_creates_and_tears_down_the_group(
        distributed_run: list[dict[str, Any]]) -> None:
    for rank, obs in enumerate(distributed_run):
        assert obs["session"] is True and obs["created"] is True
        assert obs["primary"] is (rank == 0)
        # the failure path below left the session with an exception: still torn down
        assert obs["initialized_after"] is False and obs["created_after"] is False


def test_distributed_user_group_is_left_alone(distributed_run: list[dict[str, Any]]) -> None:
    for obs in distributed_run:
        assert obs["user_group_setup"] is True
        assert obs["user_group_kept"] is True


def test_distributed_global_and_local_shapes(distributed_run: list[dict[str, Any]]) -> None:
    assert distributed_run[0]["fsdp_mlp_type"].startswith("FSDP")
    model = torchscope.examples.MLP()
    for rank in (0, 1):
        report = _report(distributed_run, rank, "fsdp_mlp")
        for name, p in model.named_parameters():
            rec = _param(report, name)
            assert rec.shape == rec.global_shape == tuple(p.shape)
            assert rec.local_shape == (p.shape[0] // 2, *p.shape[1:])
            assert rec.placements == ("S(0)",)
            assert rec.numel == p.numel()
            assert rec.nbytes == p.numel() * p.element_size() // 2
        assert report.total_params == sum(p.numel() for p in model.parameters())


def test_distributed_per_rank_totals(distributed_run: list[dict[str, Any]]) -> None:
    model = torchscope.examples.MLP()
    total = sum(p.numel() for p in model.parameters())
    report = _report(distributed_run, 0, "fsdp_mlp")
    assert [r.rank for r in report.ranks] == [0, 1]
    assert sum(r.local_params for r in report.ranks) == total
    assert sum(r.param_bytes for r in report.ranks) == total * 4
    assert {r.device for r in report.ranks} == {"cpu"}
    assert report.ranks[0].param_bytes == report.param_bytes
    # every rank gets the same gathered view
    assert _report(distributed_run, 1, "fsdp_mlp").ranks == report.ranks
    assert not [f for f in report.findings if f.code.startswith("distributed-")]
    header, rows = ranks_rows(report)
    assert header[0] == "Rank" and [r[0] for r in rows] == ["0", "1", "all"]
    assert rows[-1][2] == torchscope.rendering.humanize_count(total)
    text = ranks_renderable(report, fmt="text")
    assert isinstance(text, str) and max(len(line) for line in text.splitlines()) <= 100


def test_distributed_uneven_shards(distributed_run: list[dict[str, Any]]) -> None:
    reports = [_report(distributed_run, rank, "uneven") for rank in (0, 1)]
    assert _param(reports[0], "0.weight").local_shape == (3, 4)
    assert _param(reports[1], "0.weight").local_shape == (2, 4)
    assert _param(reports[0], "0.bias").local_shape == (3,)
    assert _param(reports[1], "0.bias").local_shape == (2,)
    ranks = reports[0].ranks
    assert [r.local_params for r in ranks] == [3 * 4 + 3, 2 * 4 + 2]
    assert [r.param_bytes for r in ranks] == [60, 40]
    findings = [f for f in reports[0].findings if f.code == "distributed-uneven-shards"]
    assert len(findings) == 1, reports[0].findings
    assert "rank 0" in findings[0].message and "0.weight [5, 4] split 12/8" in findings[0].message


def test_distributed_meta_sharded_model_is_not_allocated(
        distributed_run: list[dict[str, Any]]) -> None:
    report = _report(distributed_run, 0, "meta")
    assert {p.device for p in report.params} == {"meta"}
    assert report.total_params == 7946
    assert report.param_bytes == 7946 * 4 // 2  # what this rank will hold once materialized
    assert distributed_run[0]["meta_after"] is True


def test_distributed_meta_sharded_model_trace_fails_clearly(
        distributed_run: list[dict[str, Any]]) -> None:
    # FSDP refuses a forward on meta parameters and cannot be deep-copied for fake tensors:
    # tracing a meta-built sharded model is one clear TorchscopeError, not a hang or a crash
    result = distributed_run[0]["meta_traced"]
    assert isinstance(result, dict) and result["clear"] is True, result
    assert "meta" in result["raised"]


def test_distributed_traced_shapes_on_sharded_model(
        distributed_run: list[dict[str, Any]]) -> None:
    report = _report(distributed_run, 0, "traced")
    assert report.mode == "real"
    outputs = {m.path: m.calls[0].outputs for m in report.modules if m.calls}
    assert outputs["hidden"].shape == (2, 256)  # type: ignore[union-attr]
    assert outputs["output"].shape == (2, 10)  # type: ignore[union-attr]
    assert outputs[""].shape == (2, 10)  # type: ignore[union-attr]
    assert len(report.ranks) == 2


def test_distributed_tensor_parallel_layouts(distributed_run: list[dict[str, Any]]) -> None:
    report = _report(distributed_run, 1, "tp")
    layout = {p.name: (p.shape, p.local_shape, p.placements) for p in report.params}
    assert layout == {
        "hidden.weight": ((256, 20), (128, 20), ("S(0)",)),
        "hidden.bias": ((256,), (128,), ("S(0)",)),
        "output.weight": ((10, 256), (10, 128), ("S(1)",)),
        "output.bias": ((10,), (10,), ("R",)),
    }
    assert {p.mesh for p in report.params} == {"cpu(2,)[tp]"}
    assert report.total_params == 7946
    # the replicated bias is held whole by both ranks
    per_rank = 128 * 20 + 128 + 10 * 128 + 10
    assert [r.local_params for r in report.ranks] == [per_rank, per_rank]
    assert report.param_bytes == per_rank * 4
    # DTensor models without FSDP trace on meta: a block's DTensor output has its global
    # shape; the next block sees the local activation the parallel style hands it
    traced = _report(distributed_run, 0, "tp_meta")
    assert traced.mode == "meta"
    assert traced.module("hidden").calls[0].outputs.shape == (2, 256)  # type: ignore[union-attr]
    assert traced.module("act").calls[0].inputs[0].shape == (2, 128)  # type: ignore[union-attr]
    assert traced.outputs.shape == (2, 10)  # type: ignore[union-attr]


def test_distributed_forward_leaves_root_unit_unsharded_without_guard(
        distributed_run: list[dict[str, Any]]) -> None:
    # what fsdp_resharded guards against: FSDP2 keeps the root unit's parameters unsharded
    # (plain tensors) after a forward, expecting a backward
    assert "Parameter" in distributed_run[0]["unsharded_after_forward"]
    assert distributed_run[0]["resharded"] == ["DTensor"]


# regression: a real-mode forward on an FSDP model left the root unit unsharded while the
# state guard re-registered the sharded DTensors, so the next forward mixed Tensor and DTensor
def test_distributed_model_still_trains_after_traced_summary(
        distributed_run: list[dict[str, Any]]) -> None:
    obs = distributed_run[0]
    assert obs["root_traced"] == "real"
    assert obs["root_state_kept"] is True
    assert obs["root_trains_after"] is True, obs["root_trains_after"]


def test_distributed_rank_mismatch_finding(distributed_run: list[dict[str, Any]]) -> None:
    for rank in (0, 1):
        report = _report(distributed_run, rank, "mismatch")
        found = [f for f in report.findings if f.code == "distributed-rank-mismatch"]
        assert len(found) == 1
        message = found[0].message
        assert "'0.weight' is [5, 4] float32 on rank 0 but [6, 4] float32 on rank 1" in message
        assert "'1.weight' is on rank 1 but not on rank 0" in message
        assert found[0].severity.value == "error" and found[0].hint


def test_distributed_failed_rank_raises_on_every_rank(
        distributed_run: list[dict[str, Any]]) -> None:
    for obs in distributed_run:
        assert obs["failure"] == (
            "summarize failed on 1 of 2 ranks — rank 1: ValueError: rank 1 could not build the "
            "model")


def test_distributed_tie_split_across_fsdp_units(distributed_run: list[dict[str, Any]]) -> None:
    obs = distributed_run[0]
    assert obs["split_findings"] == ["distributed-tie-split"]
    assert "head.weight in head" in obs["split_messages"][0]
    assert "wte.weight in (root)" in obs["split_messages"][0]
    # tied weights inside one unit stay tied: no finding
    assert obs["kept_tied"] is True and obs["kept_findings"] == []


def test_distributed_tied_parameters_in_one_unit_summarize(
        distributed_run: list[dict[str, Any]]) -> None:
    # regression: tied DTensors crashed summarize (storage of a DTensor read directly), then
    # counted only this rank's shard of elements (40 params instead of 60)
    report = _report(distributed_run, 0, "kept_summary")
    assert [g.names for g in report.tied] == [("wte.weight", "head.weight")]
    assert report.total_params == 10 * 4 + 4 * 4 + 4
    assert report.param_bytes == (10 * 4 + 4 * 4 + 4) * 4 // 2
    assert report.module("wte").total_params == 10 * 4


def test_distributed_tie_guard_reports_ties_broken_by_wrapping(
        distributed_run: list[dict[str, Any]]) -> None:
    obs = distributed_run[0]
    if "tie_guard" not in obs:
        pytest.skip("torchscope.snapshot_ties/compare_ties (the Tying issue) are not built yet")
    findings = obs["tie_guard"]
    assert not (isinstance(findings, dict) and "raised" in findings), findings
    assert findings, "wrapping split wte.weight from head.weight: the tie guard must say so"
    assert any("head.weight" in message for _, message in findings)
    # check_fsdp_ties takes the same snapshot and says why: two FSDP units
    assert obs["split_from_snapshot"] == ["distributed-tie-split"]


def test_distributed_ddp_prefix_unwrapped(distributed_run: list[dict[str, Any]]) -> None:
    obs = distributed_run[0]
    assert obs["ddp_names"] == [n for n, _ in torchscope.examples.MLP().named_parameters()]
    assert obs["ddp_notes"] == [
        "wrapped by DistributedDataParallel: names are shown without the module. prefix"]


def test_distributed_summarize_api_gathers_and_tags_fsdp_units(
        distributed_run: list[dict[str, Any]]) -> None:
    report = _report(distributed_run, 0, "api")
    assert [r.rank for r in report.ranks] == [0, 1]
    assert [m.path for m in report.modules if "fsdp" in m.tags] == ["", "hidden", "output"]
    assert "act" in [m.path for m in report.modules if "fsdp" not in m.tags]
    # ranks that wrap differently disagree on the FSDP units
    wrapping = _report(distributed_run, 1, "wrapping")
    found = [f for f in wrapping.findings if f.code == "distributed-rank-mismatch"]
    assert len(found) == 1 and "FSDP units differ: only rank 0 shards ['hidden']" in (
        found[0].message)
    # summarize unwraps DistributedDataParallel's module. prefix itself, and says so
    ddp = _report(distributed_run, 0, "ddp_summary")
    assert [p.name for p in ddp.params] == distributed_run[0]["ddp_names"]
    assert distributed_run[0]["ddp_notes"][0] in ddp.notes


def test_distributed_cli_under_launcher(distributed_run: list[dict[str, Any]]) -> None:
    first, second = (obs["cli"] for obs in distributed_run)
    assert first["code"] == 0 and second["code"] == 0, (first, second)
    assert second["stdout"] == ""  # only rank 0 prints
    out = first["stdout"]
    assert "Per-rank shares (2 ranks)" in out
    assert "├─ hidden  FSDPLinear  [2, 20]   [2, 256]" in out
    ranks_table = out[out.index("Per-rank shares"):].splitlines()
    assert [line.split()[0] for line in ranks_table[4:]] == ["0", "1", "all"]
    assert max(len(line) for line in ranks_table) <= 100
    assert first["initialized_after"] is False and second["initialized_after"] is False


def test_distributed_cli_failure_on_one_rank(distributed_run: list[dict[str, Any]]) -> None:
    for obs in distributed_run:
        failed = obs["cli_failed"]
        assert failed["code"] == 2 and failed["stdout"] == ""
        assert failed["stderr"].startswith(
            "torchscope summarize: error: summarize failed on 1 of 2 ranks — rank 1: "
            "TargetError: calling rank1_fails() from 'test_distributed' raised ValueError: no "
            "model on rank 1")
        assert failed["initialized_after"] is False


# ------------------------------------------------------------------------------------------
# single-process checks


def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_distributed_not_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_launcher(monkeypatch)
    assert D.setup_from_launcher() is False
    assert not dist.is_initialized()
    assert D.is_primary() is True
    report = torchscope.summarize(torchscope.examples.MLP())
    assert D.gather_report(report) is report
    with pytest.raises(ValueError, match="boom"):
        D.gather_report(ValueError("boom"))
    D.teardown()  # nothing to tear down
    assert ranks_rows(report)[1] == []
    assert type(torchscope.examples.fsdp_mlp()) is torchscope.examples.MLP


def test_distributed_incomplete_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_launcher(monkeypatch)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TorchscopeError, match="MASTER_ADDR, MASTER_PORT not set"):
        D.setup_from_launcher()
    assert not dist.is_initialized() and D._STATE["created"] is False


def test_distributed_unreachable_master_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = _free_ports(1)  # nothing listens there
    for var, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(port))):
        monkeypatch.setenv(var, value)
    with pytest.raises(TorchscopeError, match=rf"could not start the gloo process group within "
                       rf"1 s \(rank 1 of 2, master 127.0.0.1:{port}\).*every rank was started"):
        D.setup_from_launcher(timeout=1)
    assert not dist.is_initialized() and D._STATE["created"] is False


def test_distributed_unwrap_data_parallel_and_compile() -> None:
    inner = torchscope.examples.MLP()
    model, notes = unwrap_wrappers(nn.DataParallel(inner))
    assert model is inner and notes == (
        "wrapped by DataParallel: names are shown without the module. prefix",)
    assert unwrap_wrappers(inner) == (inner, ())


def test_distributed_fsdp_checks_without_fsdp_are_noops() -> None:
    model = torchscope.examples.SharedMLP()
    ties = torchscope.find_tied(model)
    assert ties  # SharedMLP has ties, but no FSDP unit can split them
    assert D.check_fsdp_ties(ties, model) == ()
    with fsdp_resharded(list(model.modules())):
        assert model(torch.zeros(1, 4)).shape == (1, 1)
