"""Promise 4 under attack, one clear line for every bad input: public functions check their
arguments, the syncs command keeps its report through hostile scripts, distributed set-up fails
within a stated timeout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import torchscope
from torchscope import distributed as D
from torchscope.distributed import check_fsdp_ties, gather_report
from torchscope.errors import ArgumentError, InputSpecError, TorchscopeError
from torchscope.tying import tensor_extent, unique_size

# ---------------------------------------------------------------------------------------------
# arguments

_LINEAR = nn.Linear(2, 2)
_REPORT = torchscope.summarize(torchscope.examples.MLP())

BAD_CALLS: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "summarize(None)": (lambda: torchscope.summarize(None),  # type: ignore[arg-type]
                        InputSpecError,
                        r"^summarize: model = None \(NoneType\) is not a torch.nn.Module; pass "
                        r"the model itself"),
    "summarize(mode=5)": (lambda: torchscope.summarize(_LINEAR, mode=5),  # type: ignore[arg-type]
                          InputSpecError,
                          r"^summarize: mode = 5 is not one of auto, real, meta, fake$"),
    "summarize(distributed='x')": (
        lambda: torchscope.summarize(_LINEAR, distributed="x"),  # type: ignore[arg-type]
        InputSpecError, r"^summarize: distributed = 'x' is not True or False; pass a bool$"),
    "walk(42)": (lambda: torchscope.walk(42),  # type: ignore[arg-type]
                 InputSpecError, r"^walk: model = 42 \(int\) is not a torch.nn.Module"),
    "list_parameters('m')": (lambda: torchscope.list_parameters("m"),  # type: ignore[arg-type]
                             InputSpecError,
                             r"^list_parameters: model = 'm' \(str\) is not a torch.nn.Module"),
    "find_tied(None)": (lambda: torchscope.find_tied(None),  # type: ignore[arg-type]
                        InputSpecError,
                        r"^find_tied needs an nn.Module, got None \(NoneType\): pass the model$"),
    "check_ties(42)": (lambda: torchscope.check_ties(42),  # type: ignore[arg-type]
                       InputSpecError, r"^check_ties needs an nn.Module, got 42 \(int\)"),
    "compare_ties(snap, None)": (
        lambda: torchscope.compare_ties(torchscope.snapshot_ties(_LINEAR),
                                        None),  # type: ignore[arg-type]
        InputSpecError, r"^compare_ties needs an nn.Module, got None \(NoneType\)"),
    "check_fsdp_ties(None, m)": (
        lambda: check_fsdp_ties(None, _LINEAR), InputSpecError,
        r"^check_fsdp_ties: tied = None \(NoneType\) is not a sequence of TiedGroup records; "
        r"pass torchscope.find_tied\(model\)"),
    "check_fsdp_ties((), None)": (
        lambda: check_fsdp_ties((), None),  # type: ignore[arg-type]
        InputSpecError, r"^check_fsdp_ties: model = None \(NoneType\) is not an nn.Module"),
    "gather_report(42)": (lambda: gather_report(42),  # type: ignore[arg-type]
                          InputSpecError,
                          r"^gather_report: report = 42 \(int\) is not a Report; pass what "
                          r"torchscope.summarize returned"),
    "gather_report(uneven_ratio='x')": (
        lambda: gather_report(_REPORT, uneven_ratio="x"),  # type: ignore[arg-type]
        InputSpecError, r"^gather_report: uneven_ratio = 'x' \(str\) is not a number >= 1"),
    "render(report, 42)": (lambda: torchscope.render(_REPORT, 42),  # type: ignore[arg-type]
                           TorchscopeError, r"^fmt = 42 is not a format; use one of"),
    "render_graph(report, 42)": (
        lambda: torchscope.render_graph(_REPORT, 42),  # type: ignore[arg-type]
        TorchscopeError, r"^path = 42 \(int\) is not a file path; give one such as 'net.svg'"),
    "detect_syncs(deep='x')": (lambda: torchscope.detect_syncs(deep="x"),  # type: ignore[arg-type]
                               TorchscopeError, r"^deep = 'x' is not True or False; pass a bool$"),
    "no_syncs(include_cpu=1)": (
        lambda: torchscope.no_syncs(include_cpu=1),  # type: ignore[arg-type]
        TorchscopeError, r"^include_cpu = 1 is not True or False \(or None for the default\)"),
    "unique_size(None)": (lambda: unique_size(None),  # type: ignore[arg-type]
                          InputSpecError, r"^unique_size needs a sequence of tensors, got "
                          r"NoneType: pass a list such as \[model.weight, model.bias\]$"),
    "unique_size([1])": (lambda: unique_size([1]),  # type: ignore[list-item]
                         InputSpecError, r"^unique_size needs a torch.Tensor, got 1 \(int\)"),
    "tensor_extent('x')": (lambda: tensor_extent("x"),  # type: ignore[arg-type]
                           InputSpecError,
                           r"^tensor_extent needs a torch.Tensor, got 'x' \(str\): pass a "
                           r"tensor$"),
    "meta_copy(None)": (lambda: torchscope.meta_copy(None),  # type: ignore[arg-type]
                        ArgumentError,
                        r"^meta_copy: model = NoneType is not a torch.nn.Module; pass the model"),
    "device_map(None)": (lambda: torchscope.device_map(None),  # type: ignore[arg-type]
                         ArgumentError, r"^device_map: model = NoneType is not a torch.nn.Module"),
    "inferred_numel(None)": (lambda: torchscope.inferred_numel(None),  # type: ignore[arg-type]
                             ArgumentError, r"^inferred_numel: records = NoneType is not a list "
                             r"of LazyRecord; pass what infer_lazy_shapes"),
    "trace_lazy(lazy=3)": (
        lambda: torchscope.trace_lazy(torchscope.examples.LazyMLP(), input_size=[(2, 20)],
                                      lazy=3),  # type: ignore[arg-type]
        ArgumentError, r"^trace_lazy: lazy = int is not a list of LazyRecord"),
    "summary(m, [2, 'a'])": (
        lambda: torchscope.summary(_LINEAR, [2, "a"], verbose=0),  # type: ignore[list-item]
        InputSpecError, r"^input_size = \[2, 'a'\] is not a shape or a list of shapes"),
    "summary(batch_dim='x')": (
        lambda: torchscope.summary(_LINEAR, (2,), batch_dim="x", verbose=0),  # type: ignore[arg-type]
        InputSpecError, r"^batch_dim = 'x' is not an index"),
    "check(backward='no')": (
        lambda: torchscope.check(_LINEAR, backward="no"),  # type: ignore[arg-type]
        ArgumentError, r"^check: backward = 'no' is not True or False; pass a bool$"),
    "summarize(cost='no')": (
        lambda: torchscope.summarize(_LINEAR, cost="no"),  # type: ignore[arg-type]
        InputSpecError, r"^summarize: cost = 'no' is not True or False; pass a bool$"),
    "setup_from_launcher(timeout='x')": (
        lambda: D.setup_from_launcher(timeout="x"),  # type: ignore[arg-type]
        TorchscopeError, r"^timeout = 'x' is not a positive number of seconds; give e.g. 600$"),
}


@pytest.mark.parametrize("call", BAD_CALLS)
def test_public_functions_check_their_arguments(call: str) -> None:
    # guards: AttributeError/TypeError from inside instead of a line naming the argument
    fn, error, message = BAD_CALLS[call]
    with pytest.raises(error, match=message) as info:
        fn()
    assert "\n" not in str(info.value)


def test_torchscript_trace_forward_is_refused_with_the_module_named() -> None:
    with pytest.raises(InputSpecError, match=r"^\(root\) \(RecursiveScriptModule\) is a "
                       "TorchScript module"):
        torchscope.trace_forward(torch.jit.script(nn.Linear(2, 2)), torch.zeros(1, 2))


# ---------------------------------------------------------------------------------------------
# syncs: hostile scripts


def _syncs(tmp_path: Path, body: str, *options: str, cwd: Path | None = None,
           ) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "torchscope", "syncs", *options, str(script)],
        capture_output=True, text=True, cwd=cwd or tmp_path, timeout=120,
    )


def test_syncs_script_raising_a_base_exception_keeps_report_and_exit_code(
        tmp_path: Path) -> None:
    # guards: a BaseException subclass skipped the report and printed a traceback
    done = _syncs(tmp_path, "import torch\n\nclass Stop(BaseException):\n    pass\n\n"
                  "torch.ones(1).item()\nraise Stop('custom stop')\n", "--format", "text")
    assert done.returncode == 1
    assert done.stdout.startswith("1 host-device synchronization at 1 site")
    assert done.stderr.strip().splitlines()[-1].endswith("stopped: Stop: custom stop")
    assert "Traceback" not in done.stderr


def test_syncs_counts_item_calls_in_threads(tmp_path: Path) -> None:
    # guards: the detector's modes are per thread, so worker threads went unseen
    done = _syncs(tmp_path, "import threading, torch\n\ndef work():\n"
                  "    for _ in range(4):\n        torch.ones(1).item()\n\n"
                  "t = threading.Thread(target=work)\nt.start()\nt.join()\n",
                  "--format", "json")
    assert done.returncode == 0, done.stderr
    sites = json.loads(done.stdout)["sites"]
    assert [(s["line"], s["function"], s["count"]) for s in sites] == [(5, "work", 4)]


def test_thread_started_while_recording_is_counted_and_stops_after() -> None:
    def work() -> None:
        for _ in range(3):
            torch.ones(1).item()

    start = threading.Thread.start
    with torchscope.detect_syncs() as report:
        assert threading.Thread.start is not start
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert report.total == 3
    late = threading.Thread(target=work)
    late.start()
    late.join()
    assert report.total == 3
    assert threading.Thread.start is start


def test_syncs_forked_child_prints_no_second_report(tmp_path: Path) -> None:
    # guards: a forked child returning from the script printed its own report
    done = _syncs(tmp_path, "import os, torch\ntorch.ones(1).item()\npid = os.fork()\n"
                  "if pid == 0:\n    torch.ones(1).item()\nelse:\n    os.waitpid(pid, 0)\n",
                  "--format", "text")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("host-device synchronization") == 1


def test_syncs_output_path_is_resolved_before_the_script_changes_folder(tmp_path: Path) -> None:
    # guards: -o out.txt was written into the folder the script chdir'ed to
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _syncs(tmp_path, "import os, torch\ntorch.ones(1).item()\n"
                  f"os.chdir({str(elsewhere)!r})\n", "-o", "out.txt")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text().startswith("1 host-device synchronization")
    assert list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# distributed set-up


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launcher_env(monkeypatch: pytest.MonkeyPatch, rank: int, addr: str, port: int) -> None:
    for var, value in (("RANK", str(rank)), ("WORLD_SIZE", "2"), ("MASTER_ADDR", addr),
                       ("MASTER_PORT", str(port))):
        monkeypatch.setenv(var, value)


def test_missing_peer_fails_within_the_setup_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # guards: rank 0 waited the 10-minute collective timeout for a peer that never came
    port = _free_port()
    _launcher_env(monkeypatch, 0, "127.0.0.1", port)
    monkeypatch.setenv("TORCHSCOPE_SETUP_TIMEOUT", "2")
    start = time.monotonic()
    with pytest.raises(TorchscopeError, match=rf"^could not start the gloo process group within "
                       rf"2 s \(rank 0 of 2, master 127.0.0.1:{port}\): DistStoreError: .*1/2 "
                       r"clients joined.*TORCHSCOPE_SETUP_TIMEOUT=seconds waits longer$"):
        D.setup_from_launcher()
    assert time.monotonic() - start < 60  # bounded by the set-up timeout, not 600 s
    assert not dist.is_initialized() and D._STATE["created"] is False


def test_unresolvable_master_address_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _launcher_env(monkeypatch, 1, "no-such-host.invalid", _free_port())
    with pytest.raises(TorchscopeError, match=r"^MASTER_ADDR = 'no-such-host.invalid' does not "
                       r"resolve \(.*\); give the master's host name or IP address"):
        D.setup_from_launcher(setup_timeout=30)
    assert not dist.is_initialized()


@pytest.mark.parametrize("value", ["soon", "-1", "0", "nan"])
def test_setup_timeout_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch,
                                                       value: str) -> None:
    _launcher_env(monkeypatch, 1, "127.0.0.1", _free_port())
    monkeypatch.setenv("TORCHSCOPE_SETUP_TIMEOUT", value)
    with pytest.raises(TorchscopeError, match=rf"^TORCHSCOPE_SETUP_TIMEOUT = '{value}' is not a "
                       "number of seconds; give a positive number such as 60$"):
        D.setup_from_launcher()


def test_setup_without_launcher_needs_no_timeout() -> None:
    assert "RANK" not in os.environ
    assert D.setup_from_launcher(setup_timeout=0.5) is False


class RaisingGetattr(nn.Module):
    """A module whose ``__getattr__`` raises something other than AttributeError."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def __getattr__(self, name: str) -> object:
        raise RuntimeError("no attributes here")


def test_meta_copy_of_a_model_deepcopy_refuses_is_one_line() -> None:
    # guards the bug: a __getattr__ raising RuntimeError made meta_copy raise it raw from
    # inside copy.deepcopy
    with pytest.raises(InputSpecError, match=r"^meta_copy: copying RaisingGetattr raised "
                       r"RuntimeError: no attributes here — copy.deepcopy must work"):
        torchscope.meta_copy(RaisingGetattr())


@pytest.mark.parametrize("kind", ["script", "trace"])
@pytest.mark.parametrize("call", ["check", "check_devices", "estimate_cost", "state_guard"])
def test_torchscript_models_run_through_forward_checks(kind: str, call: str) -> None:
    # guards the bug: a scripted model raised a raw TypeError from the state guard (its
    # parameters sit behind TorchScript wrappers) and from hook registration in check_devices
    base = torchscope.examples.MLP()
    model = (torch.jit.script(base) if kind == "script"
             else torch.jit.trace(base, torch.randn(2, 20)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 20)
    if call == "check":
        assert torchscope.check(model, x).exit_code == 0
    elif call == "check_devices":
        assert torchscope.check_devices(model, x) == ()
    elif call == "estimate_cost":
        assert torchscope.estimate_cost(model, x).forward_flops > 0
    else:
        with torchscope.state_guard(model):
            model(x)
            model.hidden.weight.data.mul_(2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
