"""The host-device synchronization detector: each kind at its line, counts, false positives,
nesting, the chapter's loss.item() lesson, GPT-2's mask helper, and the ``syncs`` command."""

from __future__ import annotations

import gc
import inspect
import io
import json
import linecache
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from models import gpt2
from torch import nn

import torchscope
from torchscope.cli import main
from torchscope.errors import SyncError
from torchscope.records import SyncKind, SyncReport
from torchscope.syncs import detect_syncs, no_syncs

HERE = os.path.abspath(__file__)
S, H, P, D, C = (SyncKind.SCALAR_READ, SyncKind.HOST_COPY, SyncKind.PRINT, SyncKind.DATA_SHAPE,
                 SyncKind.COMPARE)


def marked_line(func: Callable[..., Any], marker: str = "# sync") -> int:
    """The absolute line number of the line of ``func`` that carries ``marker``."""
    lines, start = inspect.getsourcelines(func)
    hits = [start + i for i, text in enumerate(lines) if text.rstrip().endswith(marker)]
    assert len(hits) == 1, f"{func.__name__} must mark exactly one line with {marker!r}"
    return hits[0]


def fn_stack_depth() -> int:
    return int(torch._C._len_torch_function_stack())


# -- one function per synchronizing operation; the line that synchronizes ends with "# sync" ---
t = torch.tensor([0.5, -1.0, 2.0, 0.0])
mask = t > 0
ints = torch.tensor([1, 2, 2, 3])


def item() -> Any:
    return t.sum().item()  # sync


def to_float() -> Any:
    return float(t.sum())  # sync


def to_int() -> Any:
    return int(ints[0])  # sync


def to_bool() -> Any:
    return bool(mask[0])  # sync


def if_tensor() -> Any:
    if t.sum():  # sync
        return 1
    return 0


def while_tensor() -> Any:
    x = t.abs().sum()
    while x > 1:  # sync
        x = x / 2
    return x


def contains() -> Any:
    return 2.0 in t  # sync


def tolist() -> Any:
    return t.tolist()  # sync


def cpu() -> Any:
    return t.cpu()  # sync


def to_cpu() -> Any:
    return t.to("cpu")  # sync


def to_cpu_device() -> Any:
    return t.to(device=torch.device("cpu"))  # sync


def to_numpy() -> Any:
    return t.numpy()  # sync


def np_asarray() -> Any:
    return np.asarray(t)  # sync


def print_repr() -> Any:
    return str(t)  # sync


def f_string() -> Any:
    return f"{t.sum():.3f}"  # sync


def nonzero() -> Any:
    return t.nonzero()  # sync


def torch_nonzero() -> Any:
    return torch.nonzero(t, as_tuple=True)  # sync


def argwhere() -> Any:
    return torch.argwhere(t)  # sync


def where_one_arg() -> Any:
    return torch.where(mask)  # sync


def mask_index() -> Any:
    return t[mask]  # sync


def mask_index_tuple() -> Any:
    return t.view(2, 2)[mask.view(2, 2)[:, 0], :]  # sync


def mask_assign_tensor() -> Any:
    x = t.clone()
    x[mask] = torch.ones(2)  # sync
    return x


def masked_select() -> Any:
    return t.masked_select(mask)  # sync


def unique() -> Any:
    return torch.unique(ints)  # sync


def unique_method() -> Any:
    return ints.unique(return_counts=True)  # type: ignore[no-untyped-call]  # sync


def unique_consecutive() -> Any:
    return torch.unique_consecutive(ints)  # sync


def repeat_interleave() -> Any:
    return torch.repeat_interleave(t, ints)  # sync


def repeat_interleave_method() -> Any:
    return t.repeat_interleave(ints, dim=0)  # sync


def bincount() -> Any:
    return torch.bincount(ints)  # sync


def equal() -> Any:
    return torch.equal(t, t)  # sync


def allclose() -> Any:
    return torch.allclose(t, t + 1e-9)  # sync


def scalar_tensor_index() -> Any:
    return t[torch.tensor(1)]  # sync


CASES = [
    (item, ".item()", S), (to_float, "float()", S), (to_int, "int()", S),
    (to_bool, "bool()", S), (if_tensor, "bool()", S), (contains, "in (contains)", S),
    (tolist, ".tolist()", H), (cpu, ".cpu()", H), (to_cpu, '.to("cpu")', H),
    (to_cpu_device, '.to("cpu")', H), (to_numpy, ".numpy()", H),
    (np_asarray, "numpy.asarray()", H), (print_repr, "print()/repr()", P),
    (f_string, "format()", P), (nonzero, "nonzero()", D), (torch_nonzero, "nonzero()", D),
    (argwhere, "argwhere()", D), (where_one_arg, "torch.where(cond)", D),
    (mask_index, "x[mask]", D), (mask_index_tuple, "x[mask]", D),
    (mask_assign_tensor, "x[mask] = tensor", D), (masked_select, "masked_select()", D),
    (unique, "unique()", D), (unique_method, "unique()", D),
    (unique_consecutive, "unique_consecutive()", D), (repeat_interleave, "repeat_interleave()", D),
    (repeat_interleave_method, "repeat_interleave()", D), (bincount, "bincount()", D),
    (equal, "equal()", C), (allclose, "allclose()", C),
    (scalar_tensor_index, "x[tensor scalar]", S),
]


@pytest.mark.parametrize(("func", "op", "kind"), CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("deep", [False, True], ids=["function-mode", "deep"])
def test_each_sync_kind_at_its_line(func: Callable[[], Any], op: str, kind: SyncKind,
                                    deep: bool) -> None:
    with detect_syncs(deep=deep) as report:
        func()
    assert [(s.file, s.line, s.function, s.op, s.kind, s.count) for s in report.sites] == [
        (HERE, marked_line(func), func.__qualname__, op, kind, 1)
    ]
    site = report.sites[0]
    assert site.fix and site.via is None
    assert site.location.endswith(f"test_syncs.py:{site.line}")


def test_while_loop_counts_every_test() -> None:
    # x = 3.5 halves to 1.75, 0.875: the condition is read three times
    with detect_syncs() as report:
        while_tensor()
    assert [(s.line, s.count) for s in report.sites] == [(marked_line(while_tensor), 3)]


# -- operations that never synchronize -------------------------------------------------------------


def no_sync_ops() -> None:
    x = t.clone()
    x[mask] = 0.0  # one value: masked_fill_ on the device (the "scalar index_put_" case)
    x[mask] = torch.tensor(1.0)
    x[0] = 2.0
    _ = x[1:], x[0], x[..., None], x[ints], x[[0, 1]]
    _ = torch.repeat_interleave(x, ints, output_size=8)
    _ = x.repeat_interleave(2)
    _ = torch.where(mask, x, 0.0)
    _ = x.nonzero_static(size=4)
    _ = x.to(torch.float64), x.to(x), x.double()
    dev = x.device
    _ = x.to(dev)  # a device that only happens to be the host: no device sync named here
    _ = (x > 0).any(), x.sum() > 1, x.max(), x.masked_fill(mask, 0), x.shape[0], len(x)


@pytest.mark.parametrize("deep", [False, True], ids=["function-mode", "deep"])
def test_operations_that_do_not_synchronize(deep: bool) -> None:
    with detect_syncs(deep=deep) as report:
        no_sync_ops()
    assert report.sites == ()
    assert report.total == 0


def test_bad_arguments_raise_torchs_own_error() -> None:
    with detect_syncs() as report, pytest.raises(RuntimeError, match="device string"):
        t.to("no-such-device")
    assert report.sites == ()


def test_counts_in_a_loop_group_by_site() -> None:
    def loop() -> None:
        for _ in range(7):
            t.sum().item()  # sync
            _ = t * 2

    with detect_syncs() as report:
        loop()
    assert [(s.line, s.op, s.count) for s in report.sites] == [(marked_line(loop), ".item()", 7)]
    assert report.total == 7


def test_sites_sorted_by_count_then_first_seen() -> None:
    with detect_syncs() as report:
        for _ in range(2):
            bool(mask[0])
        for _ in range(5):
            t.tolist()
        t.cpu()
    assert [(s.op, s.count) for s in report.sites] == [(".tolist()", 5), ("bool()", 2),
                                                        (".cpu()", 1)]


def test_host_copy_chain_counts_once_per_call() -> None:
    # x.cpu().numpy(): the .numpy() reads the host copy, which costs nothing more
    def chain() -> None:
        for _ in range(3):
            t.detach().cpu().numpy()  # sync

    with detect_syncs() as report:
        chain()
    assert [(s.line, s.op, s.count) for s in report.sites] == [(marked_line(chain), ".cpu()", 3)]


def test_to_device_variable_is_not_reported_but_literal_cpu_is() -> None:
    device = torch.device("cpu")

    def move() -> None:
        _ = t.to(device)
        _ = t.to("cpu")  # sync

    with detect_syncs() as report:
        move()
    assert [(s.line, s.op) for s in report.sites] == [(marked_line(move), '.to("cpu")')]


def test_include_cpu_false_ignores_host_tensors() -> None:
    # with CUDA this is the default: reading a CPU tensor never waits for the GPU
    with detect_syncs(include_cpu=False) as report:
        item(), tolist(), mask_index(), unique()
    assert report.sites == ()
    assert report.include_cpu is False


def test_deep_mode_sees_scalar_reads_inside_torch() -> None:
    n = torch.tensor(3)

    def sized() -> Any:
        return torch.zeros(n)  # type: ignore[call-overload]  # sync

    with detect_syncs() as shallow:
        sized()
    assert shallow.sites == ()  # the trade-off: the function mode does not see this one
    with detect_syncs(deep=True) as deep:
        sized()
    assert [(s.line, s.op, s.kind) for s in deep.sites] == [
        (marked_line(sized), ".item() (in C++)", S)
    ]


def test_sync_inside_torch_is_attributed_to_the_user_line() -> None:
    net = nn.Linear(3, 1)
    net(torch.randn(2, 3)).sum().backward()

    def clip() -> None:
        nn.utils.clip_grad_norm_(net.parameters(), 1.0, error_if_nonfinite=True)  # sync

    with detect_syncs() as report:
        clip()
    (site,) = report.sites
    assert (site.file, site.line, site.op) == (HERE, marked_line(clip), "bool()")
    assert site.via is not None and site.via.startswith("torch/nn/utils/clip_grad.py:")


def test_torchscope_own_calls_are_not_reported_but_its_example_models_are() -> None:
    from torchscope.examples import FixedHiddenMLP

    # code that runs from a torchscope file (here: compiled under render.py's name) is
    # torchscope's own machinery, not the user's; the chapter's example models are user code
    own = compile("x.tolist()\nclip(net.parameters(), 1.0, error_if_nonfinite=True)",
                  os.path.join(os.path.dirname(torchscope.__file__), "render.py"), "exec")
    net = nn.Linear(3, 1)
    net(torch.randn(2, 3)).sum().backward()
    torch.manual_seed(0)
    model = FixedHiddenMLP()
    with detect_syncs() as report:
        # directly, and through a torch function that synchronizes on torchscope's behalf
        exec(own, {"x": t, "net": net, "clip": nn.utils.clip_grad_norm_})
        model(torch.ones(2, 20))
    (site,) = report.sites
    assert site.file == os.path.join(os.path.dirname(torchscope.__file__), "examples.py")
    assert (site.function, site.op) == ("FixedHiddenMLP.forward", "bool()")
    assert "while" in linecache.getline(site.file, site.line) and site.count >= 1


# -- training steps --------------------------------------------------------------------------------


def make_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 1))
    return net, torch.randn(8, 20), torch.randn(8, 1)


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("deep", [False, True], ids=["function-mode", "deep"])
def test_clean_training_step_reports_nothing(optimizer: type[torch.optim.Optimizer],
                                             deep: bool) -> None:
    net, x, y = make_net()
    opt = optimizer(net.parameters(), lr=0.01)  # type: ignore[call-arg]
    with detect_syncs(deep=deep) as report:
        for _ in range(3):
            loss = nn.functional.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    assert report.sites == ()


def test_adam_step_counter_is_not_reported_but_the_same_read_in_user_code_is() -> None:
    # Adam reads its host-side `step` tensor with .item() every step (a CPU false positive);
    # the same read written by the user is reported, so the detector does see step tensors.
    net, x, y = make_net()
    opt = torch.optim.Adam(net.parameters())
    first = next(net.parameters())

    def train() -> None:
        for _ in range(4):
            loss = nn.functional.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            _ = opt.state[first]["step"].item()  # sync

    with detect_syncs() as report:
        train()
    assert [(s.line, s.count) for s in report.sites] == [(marked_line(train), 4)]
    assert isinstance(opt.state[first]["step"], torch.Tensor)  # it is a tensor read each step


def train_logging_every_step(steps: int) -> list[float]:
    net, x, y = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(loss.item())  # sync
    return losses


def train_accumulating_on_device(steps: int) -> float:
    net, x, y = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    total = torch.zeros(())
    for _ in range(steps):
        loss = nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += loss.detach()
    return float(total) / steps  # sync


def test_the_chapters_lesson_item_every_step_vs_once() -> None:
    steps = 12
    with detect_syncs() as slow:
        per_step = train_logging_every_step(steps)
    with detect_syncs() as fast:
        mean = train_accumulating_on_device(steps)
    assert [(s.line, s.op, s.count) for s in slow.sites] == [
        (marked_line(train_logging_every_step), ".item()", steps)
    ]
    assert [(s.line, s.op, s.count) for s in fast.sites] == [
        (marked_line(train_accumulating_on_device), "float()", 1)
    ]
    assert mean == pytest.approx(sum(per_step) / steps, rel=1e-5)  # same answer, one sync


def test_gpt2_attention_mask_helper_sites_inside_transformers() -> None:
    model = gpt2().eval()
    ids = torch.randint(0, 1000, (2, 16))
    attention = torch.ones(2, 16, dtype=torch.long)
    attention[0, :4] = 0  # left padding
    with torch.no_grad(), detect_syncs() as report:
        for _ in range(2):
            model(input_ids=ids, attention_mask=attention)
    assert report.sites, "transformers' mask helper reads the padding mask on the host"
    for site in report.sites:
        assert site.file.replace(os.sep, "/").endswith("transformers/masking_utils.py"), site
        assert site.location.startswith("transformers/masking_utils.py:")
        assert site.count == 2  # once per forward, not per layer
        assert site.op == "bool()" and "padding_mask" in linecache.getline(site.file, site.line)


# -- nesting, re-entry, exceptions, no_syncs ------------------------------------------------------


def test_nested_detectors_both_record_and_modes_are_restored() -> None:
    depth = fn_stack_depth()
    with detect_syncs() as outer:
        t.tolist()
        with detect_syncs() as inner:
            assert fn_stack_depth() == depth + 2
            t.sum().item()
        t.cpu()
    assert fn_stack_depth() == depth
    assert sorted(s.op for s in outer.sites) == [".cpu()", ".item()", ".tolist()"]
    assert [s.op for s in inner.sites] == [".item()"]
    assert inner.sites[0].line == outer.sites[[s.op for s in outer.sites].index(".item()")].line


def test_reentered_report_accumulates_and_reentry_while_active_is_harmless() -> None:
    depth = fn_stack_depth()
    report = detect_syncs()
    with report:
        tolist()
    with report as same:
        assert same is report
        with report:  # entered again while active: one mode, no double counting
            assert fn_stack_depth() == depth + 1
            tolist()
        assert fn_stack_depth() == depth + 1
    assert fn_stack_depth() == depth
    assert [(s.op, s.count) for s in report.sites] == [(".tolist()", 2)]


@pytest.mark.parametrize("deep", [False, True], ids=["function-mode", "deep"])
def test_modes_restored_when_the_block_raises(deep: bool) -> None:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    depth, dispatch = fn_stack_depth(), len(_get_current_dispatch_mode_stack())
    with pytest.raises(ValueError, match="boom"), detect_syncs(deep=deep) as report:
        t.tolist()
        raise ValueError("boom")
    assert fn_stack_depth() == depth
    assert len(_get_current_dispatch_mode_stack()) == dispatch
    assert [s.op for s in report.sites] == [".tolist()"]
    assert t.tolist() == [0.5, -1.0, 2.0, 0.0]  # and torch works normally afterwards


def test_no_syncs_raises_at_the_first_one_naming_site_and_fix() -> None:
    def step() -> None:
        _ = t * 2
        _ = t.sum().item()  # sync
        raise AssertionError("not reached")

    depth = fn_stack_depth()
    with pytest.raises(SyncError, match=rf"\.item\(\) \(scalar read\) at .*test_syncs\.py:"
                       rf"{marked_line(step)} in .*step; fix: keep the value on the device"):
        with no_syncs():
            step()
    assert fn_stack_depth() == depth


def test_no_syncs_passes_clean_code_and_works_as_decorator() -> None:
    @no_syncs()
    def clean() -> torch.Tensor:
        return torch.where(mask, t, 0.0).sum()

    assert float(clean()) == 2.5
    with pytest.raises(SyncError, match=r"x\[mask\]"), no_syncs():
        mask_index()


def test_sync_error_is_a_torchscope_error() -> None:
    assert issubclass(SyncError, torchscope.TorchscopeError)
    assert torchscope.no_syncs is no_syncs and torchscope.detect_syncs is detect_syncs


def test_report_keeps_no_tensor_alive_and_is_plain_data() -> None:
    x = torch.ones(5)
    ref = weakref.ref(x)
    with detect_syncs() as report:
        x.cpu().tolist()
    del x
    gc.collect()
    assert ref() is None
    data = json.loads(report.to_json())
    assert data["total"] == 1 and data["sites"][0]["op"] == ".cpu()"
    assert data["sites"][0]["file"] == HERE
    assert isinstance(report, SyncReport) and "1 synchronizations at 1 sites" in repr(report)


def test_findings_carry_location_and_fix() -> None:
    with detect_syncs() as report:
        item()
    (finding,) = report.findings()
    assert finding.code == "sync" and finding.severity is torchscope.Severity.WARNING
    assert finding.location == f"{os.path.relpath(HERE)}:{marked_line(item)}"
    assert finding.hint == report.sites[0].fix and "item" in finding.message


def test_render_text_fits_100_columns_and_lists_fixes() -> None:
    with detect_syncs() as report:
        for func, _, _ in CASES:
            func()
    text = torchscope.render(report, "text")
    assert text.startswith(f"{len(CASES)} host-device synchronizations at ")
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "fixes:" in text and "output_size=" in text
    markdown = torchscope.render(report, "markdown")
    assert "| count" in markdown.replace("|   count", "| count")
    with pytest.raises(torchscope.TorchscopeError, match="fmt = 'xml' is not a format"):
        torchscope.render(report, "xml")
    empty = detect_syncs()
    assert torchscope.render(empty, "text") == "no host-device synchronizations\n"


def test_rich_rendering_fits_100_columns() -> None:
    import io

    from torchscope.rendering import make_console

    net = nn.Linear(3, 1)
    net(torch.randn(2, 3)).sum().backward()
    with detect_syncs() as report:
        for func, _, _ in CASES:
            func()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0, error_if_nonfinite=True)
    buf = io.StringIO()
    make_console(file=buf, width=100, color=False).print(report)
    text = buf.getvalue()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "synchronized inside torch, called from the site:" in text
    assert f"test_syncs.py:{marked_line(item)}" in text and "fixes:" in text


# -- the `syncs` command ---------------------------------------------------------------------------

TRAIN = """import torch
from torch import nn
net = nn.Linear(20, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for step in range(50):
    loss = net(torch.randn(8, 20)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    print(f"loss {loss.item():.3f}")
"""


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    saved = sys.argv[:]
    code = main(argv)
    assert sys.argv == saved  # restored
    out, err = capsys.readouterr()
    return code, out, err


def test_syncs_command_acceptance_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         snapshot: Callable[[str, str], None]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    code, out, err = run_cli(["syncs", "--format", "text", "train.py"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert sum(line.startswith("loss ") for line in lines) == 50  # the script's own output
    report = "\n".join(line for line in lines if not line.startswith("loss ")) + "\n"
    snapshot("syncs_train.txt", report)
    assert "     50  train.py:8" in report


def test_syncs_command_json_argv_and_output_file(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "args.py"
    script.write_text("import sys, torch\nprint(sys.argv)\n"
                      "for a in sys.argv[1:]:\n    if a.isdigit(): torch.tensor(float(a)).item()\n")
    out_file = tmp_path / "report.json"
    code, out, _ = run_cli(["syncs", "--format", "json", "-o", str(out_file), str(script),
                            "1", "2", "--format", "5"], capsys)
    assert code == 0
    assert out == f"{[str(script), '1', '2', '--format', '5']}\n"  # argv is the script's
    data = json.loads(out_file.read_text())
    assert [(s["line"], s["op"], s["count"]) for s in data["sites"]] == [(4, ".item()", 3)]
    assert data["sites"][0]["file"] == str(script)


def test_syncs_command_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "sized.py"
    script.write_text("import torch\nn = torch.tensor(3)\nx = torch.zeros(n)\n")
    code, out, _ = run_cli(["syncs", "--format", "text", str(script)], capsys)
    assert code == 0 and out.startswith("no host-device synchronizations")
    code, out, _ = run_cli(["syncs", "--deep", "--format", "text", str(script)], capsys)
    assert code == 0 and "sized.py:3" in out and ".item() (in C++)" in out


def test_syncs_command_reports_when_the_script_raises(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import torch\nx = torch.ones(2)\nx.tolist()\nraise ValueError('bad')\n")
    code, out, err = run_cli(["syncs", "--format", "text", str(script)], capsys)
    assert code == 1
    assert "fails.py:3" in out and ".tolist()" in out
    assert err == f"torchscope syncs: {script} stopped: ValueError: bad\n"


def test_syncs_command_reports_when_interrupted(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "stop.py"
    script.write_text("import torch\nfor i in range(3):\n    torch.ones(1).item()\n"
                      "raise KeyboardInterrupt\n")
    code, out, err = run_cli(["syncs", "--format", "text", str(script)], capsys)
    assert code == 130
    assert "stop.py:3" in out and "      3  " in out
    assert "interrupted" in err


def test_syncs_command_exit_status_and_missing_script(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "exits.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert run_cli(["syncs", "--format", "text", str(script)], capsys)[0] == 3
    code, out, err = run_cli(["syncs", str(tmp_path / "nope.py")], capsys)
    assert code == 2 and out == ""
    assert "nope.py' does not exist" in err


# -- threads already running when recording starts -------------------------------------------------
# Other tests and the test runner may have threads of their own; the in-process tests below look
# only at the threads they start (by name). The exact wording is checked in a fresh interpreter,
# where the main thread is the only one ``threading`` lists: torch's intra-op threads are C++
# threads Python does not list, and pytest-xdist's I/O thread is started with ``_thread``.

def _loader(name: str, stop: threading.Event, looped: threading.Event | None = None,
            ) -> threading.Thread:
    """A started thread named ``name`` that calls ``.item()`` until ``stop`` (``looped`` is set
    after its first five calls)."""

    def work() -> None:
        calls = 0
        while not stop.is_set():
            torch.ones(1).item()
            calls += 1
            if calls == 5 and looped is not None:
                looped.set()
            time.sleep(0.001)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def _ours(report: SyncReport, *names: str) -> list[tuple[str, bool | None]]:
    return [(t.name, t.running_at_end) for t in report.unobserved_threads if t.name in names]


def test_thread_running_before_recording_is_named_and_not_counted() -> None:
    """Guards: a thread already running when recording started (a data-loader worker) called
    ``.item()`` unseen, and the report did not say so."""
    stop, looped = threading.Event(), threading.Event()
    worker = _loader("syncs-loader", stop, looped)
    try:
        with detect_syncs() as report:
            assert looped.wait(30)  # the worker synchronizes while recording goes on
            torch.ones(1).item()
            assert _ours(report, "syncs-loader") == [("syncs-loader", None)]
    finally:
        stop.set()
        worker.join(30)
    assert report.total == 1  # the main thread's only
    assert report.sites[0].function.endswith("test_thread_running_before_recording_is_named_"
                                              "and_not_counted")
    assert _ours(report, "syncs-loader") == [("syncs-loader", True)]
    note = report.threads_note()
    assert note is not None and "'syncs-loader' (still running when recording stopped)" in note
    assert report.notes == (note,)
    assert report.to_dict()["notes"] == [note]


def test_thread_ending_while_recording_is_named_as_ended() -> None:
    """Guards: a thread found running at the start and gone at the end is reported as ended,
    not as still running (its synchronizations before it ended were not counted either)."""
    stop = threading.Event()
    worker = _loader("syncs-short", stop)
    with detect_syncs() as report:
        stop.set()
        worker.join(30)
    assert _ours(report, "syncs-short") == [("syncs-short", False)]
    assert "'syncs-short' (ended before recording stopped)" in (report.threads_note() or "")


def test_threads_ended_before_or_started_while_recording_are_not_named() -> None:
    """Guards: a thread that ended before recording started, or one started while recording
    (observed, its ``.item()`` counted), is not named; nor, when the report is entered again, a
    thread the first recording started and still observes."""
    done = threading.Thread(target=lambda: None, name="syncs-done")
    done.start()
    done.join()
    go = threading.Event()

    def late() -> None:
        go.wait(30)
        torch.ones(1).item()

    report = detect_syncs()
    with report:
        worker = threading.Thread(target=late, name="syncs-watched")
        worker.start()
    with report:  # the worker still runs, under this report's modes
        go.set()
        worker.join(30)
    assert report.total == 1 and report.sites[0].function.endswith("late")
    assert _ours(report, "syncs-done", "syncs-watched") == []


def test_a_thread_found_in_two_recordings_is_named_once() -> None:
    """Guards: entering the report again listed a thread found running both times twice."""
    stop = threading.Event()
    worker = _loader("syncs-twice", stop)
    report = detect_syncs()
    try:
        with report:
            pass
        with report:
            pass
    finally:
        stop.set()
        worker.join(30)
    assert _ours(report, "syncs-twice") == [("syncs-twice", True)]


def test_thread_note_in_every_format_and_names_capped_but_json_complete() -> None:
    """Guards: the note reached only some outputs; text, Markdown and rich name at most eight
    threads and count the rest, JSON lists every one."""
    from torchscope.rendering import make_console

    stop = threading.Event()
    names = [f"syncs-pool-{i}" for i in range(9)]
    workers = [_loader(name, stop) for name in names]
    try:
        with detect_syncs() as report:
            torch.ones(1).item()
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    n = len(report.unobserved_threads)  # ours, and any other test's still running
    assert _ours(report, *names) == [(name, True) for name in names]
    for fmt in ("text", "markdown"):
        text = " ".join(torchscope.render(report, fmt).split())
        assert (f"{n} other Python threads were already running when recording started and "
                f"were not observed (their synchronizations are not counted): ") in text
        assert f", and {n - 8} more (the JSON output names them all)" in text
    buf = io.StringIO()
    make_console(file=buf, width=100, color=False).print(report)
    rich_text = " ".join(buf.getvalue().split())
    assert f"{n} other Python threads were already running" in rich_text
    assert f"and {n - 8} more" in rich_text
    data = json.loads(torchscope.render(report, "json"))
    assert [t["name"] for t in data["unobserved_threads"] if t["name"] in names] == names
    assert all(f"'{name}' (still running" in data["notes"][0] for name in names)


def test_thread_name_is_escaped_in_the_note() -> None:
    """Guards: a thread name with markup or control characters garbled the Markdown and the
    terminal (the name is shown as its ``repr``, then escaped)."""
    stop = threading.Event()
    worker = _loader("syncs|*x*\x1b[31m", stop)
    try:
        with detect_syncs() as report:
            pass
    finally:
        stop.set()
        worker.join(30)
    text = torchscope.render(report, "text")
    assert "\x1b" not in text
    assert "'syncs|*x*\\x1b[31m' (still running" in " ".join(text.split())
    assert "'syncs\\|\\*x\\*\\x1b[31m'" in torchscope.render(report, "markdown")


THREADED = """import sys, threading, time, torch
from torchscope.cli import main
stop = threading.Event()
def work():
    while not stop.is_set():
        torch.ones(1).item()
        time.sleep(0.001)
loader = threading.Thread(target=work, name="loader")
loader.start()
code = main(["syncs", "--format", sys.argv[1], sys.argv[2]])
stop.set()
loader.join()
sys.exit(code)
"""


def test_syncs_command_prints_the_note_for_a_thread_already_running(tmp_path: Path) -> None:
    """Guards: ``torchscope syncs`` run from a process with a thread already running (a
    notebook, a launcher) printed a report that looked complete. A fresh interpreter, so the
    expected text is exact."""
    job = tmp_path / "job.py"
    job.write_text("import torch\ntorch.ones(1).item()\n")
    runs = {fmt: subprocess.run([sys.executable, "-c", THREADED, fmt, str(job)],
                                capture_output=True, text=True, cwd=tmp_path, timeout=120)
            for fmt in ("text", "json")}
    for done in runs.values():
        assert done.returncode == 0, done.stderr
    assert runs["text"].stdout.startswith(
        "1 host-device synchronization at 1 site\n"
        "(no accelerator: these are the operations that would make the host wait for a GPU)\n"
        "\n"
        "1 other Python thread was already running when recording started and was not observed "
        "(its\n"
        "synchronizations are not counted): 'loader' (still running when recording stopped)\n"
        "\n"
        "  count  site      function    op\n")
    data = json.loads(runs["json"].stdout)
    assert data["total"] == 1  # the job's; the loader's calls are not counted
    assert data["unobserved_threads"] == [{"name": "loader", "running_at_end": True}]
    assert data["notes"] == [
        "1 other Python thread was already running when recording started and was not observed "
        "(its synchronizations are not counted): 'loader' (still running when recording stopped)"]


def test_syncs_command_without_other_threads_has_no_note(tmp_path: Path) -> None:
    """Guards: a note in a run where no other thread was running; a thread the script starts
    is observed (its ``.item()`` counted), not named. A fresh interpreter, so no thread of the
    test runner can be there."""
    job = tmp_path / "job.py"
    job.write_text("import threading, torch\n\ndef work():\n    torch.ones(1).item()\n\n"
                   "t = threading.Thread(target=work)\nt.start()\nt.join()\n")
    runs = {fmt: subprocess.run([sys.executable, "-m", "torchscope", "syncs", "--format", fmt,
                                 str(job)], capture_output=True, text=True, cwd=tmp_path,
                                timeout=120)
            for fmt in ("text", "json")}
    data = json.loads(runs["json"].stdout)
    assert (data["total"], data["unobserved_threads"], data["notes"]) == (1, [], [])
    assert "thread" not in runs["text"].stdout
