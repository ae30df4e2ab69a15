"""Promises 4 and 5 under attack: every bad input is one ``TorchscopeError`` line naming the
thing, the value seen and the fix (CLI exit 2), and meta/fake traces say what they could not
see."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

import torchscope
from torchscope import examples
from torchscope.cli import main
from torchscope.errors import (
    ArgumentError,
    InitPolicyError,
    InputSpecError,
    TargetError,
    TorchscopeError,
)
from torchscope.init import _policy
from torchscope.trace import load_json

MLP = "torchscope.examples:MLP"


def _one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# devices this build does not have


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_acceptance_command_prints_one_line_and_exits_2() -> None:
    # guards the bug: `--device cuda` on a CPU build ended in a raw AssertionError traceback
    run = subprocess.run(
        [sys.executable, "-m", "torchscope", "summarize", MLP, "--input-size", "2,20",
         "--device", "cuda"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "torchscope summarize: error: device = 'cuda': this torch build "
        f"({torch.__version__}) or machine has no cuda device; use 'cpu' or 'meta', or run "
        "where cuda is available"]


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "xpu", "mps", "hpu"])
@pytest.mark.parametrize("mode", ["auto", "meta", "fake", "real"])
def test_a_device_this_machine_lacks_is_one_line(device: str, mode: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    kind = device.split(":")[0]
    if kind == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _one_line_exit_2(["summarize", MLP, "--input-size", "2,20", "--device", device,
                             "--mode", mode], capsys)
    assert line == (f"torchscope summarize: error: device = {device!r}: this torch build "
                    f"({torch.__version__}) or machine has no {kind} device; use 'cpu' or "
                    f"'meta', or run where {kind} is available")


@pytest.mark.parametrize("device", ["cuda", "xpu:1", "mps"])
def test_api_refuses_a_missing_device(device: str) -> None:
    with pytest.raises(InputSpecError, match=rf"^device = {device!r}: this torch build"):
        torchscope.summarize(examples.MLP(), input_size=[(2, 20)], device=device)
    with pytest.raises(InputSpecError, match=rf"^device = {device!r}: this torch build"):
        torchscope.build_inputs([(2, 20)], device=device)


@pytest.mark.parametrize("device", ["gpu", "cuda:-1:2", 3.5, "x" * 1000])
def test_a_device_that_is_no_device_is_one_line(device: object) -> None:
    with pytest.raises(InputSpecError, match=r"^device = .* is not a torch device; use e\.g\. "):
        torchscope.trace_forward(examples.MLP(), input_size=[(2, 20)], device=device)


# ---------------------------------------------------------------------------------------------
# sizes, dtypes, JSON


@pytest.mark.parametrize("size", ["99999999999,99999999999,999999999999", "9" * 40,
                                  "4611686018427387904,2"])
@pytest.mark.parametrize("mode", ["meta", "fake", "auto"])
def test_sizes_that_overflow_are_one_line(size: str, mode: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_exit_2(["summarize", MLP, "--input-size", size, "--mode", mode], capsys)
    assert "overflows: more than 2**63 bytes of float32; give sizes whose product fits" in line
    assert line.startswith("torchscope summarize: error: input_size[0] = (")


@pytest.mark.parametrize("dtype", ["qint8", "quint8", "qint32", "quint4x2"])
def test_dtypes_torch_cannot_build_inputs_of(dtype: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_exit_2(["summarize", MLP, "--input-size", "2,20", "--dtype", dtype],
                            capsys)
    assert line == (f"torchscope summarize: error: dtypes[0] = {dtype!r}: torch cannot build "
                    "example inputs of this dtype from sizes; use a plain dtype (float32, "
                    "bfloat16, long, bool) or pass example_inputs")


@pytest.mark.parametrize("depth", [65, 5000, 200_000])
def test_deeply_nested_kwargs_are_one_line(depth: int, capsys: pytest.CaptureFixture[str]) -> None:
    # guards the bug: a deeply nested --kwargs raised RecursionError
    text = '{"a": ' + "[" * depth + "]" * depth + "}"
    if len(text) > 100_000:
        expected = f"torchscope summarize: error: --kwargs is {len(text):,} bytes long"
    else:
        expected = ("torchscope summarize: error: --kwargs nests arrays or objects more than 64 "
                    "levels deep; flatten it")
    line = _one_line_exit_2(["summarize", MLP, "--kwargs", text], capsys)
    assert line.startswith(expected)


def test_real_inputs_that_cannot_be_allocated_are_one_line() -> None:
    with pytest.raises(InputSpecError, match=(
            r"^cannot build inputs of sizes \[\[1073741824, 536870912\]\] on device 'cpu': "
            r"2,305,843,009,213,693,952 bytes could not be allocated \(RuntimeError\); use "
            r"smaller sizes or mode='meta'$")):
        torchscope.trace_forward(nn.Linear(8, 8), input_size=[(2**30, 2**29)], mode="real")


def test_load_json_limits() -> None:
    assert load_json('{"a": [[1]]}', what="x", max_depth=3) == {"a": [[1]]}
    with pytest.raises(TargetError, match=r"^x nests arrays or objects more than 2 levels deep"):
        load_json('{"a": [[1]]}', what="x", max_depth=2, error=TargetError)
    with pytest.raises(InputSpecError, match=r"^x is 11 bytes long \(at most 10\)"):
        load_json('"123456789"', what="x", max_bytes=10)


# ---------------------------------------------------------------------------------------------
# policies: long strings, hanging regexes


def test_an_initializer_string_of_100000_characters_is_one_line() -> None:
    # guards the bug: parsing it raised MemoryError
    with pytest.raises(InitPolicyError, match=r"^policy rule #0 \('\*\.bias'\): initializer "
                                              r"'\(\(\(.*'… is 100,000 characters long \(at most "
                                              r"500\)"):
        torchscope.apply_init(examples.MLP(), {"*.bias": "(" * 100_000})


def test_a_pattern_of_100000_characters_is_one_line() -> None:
    with pytest.raises(InitPolicyError, match=r"a pattern of 100,003 characters \(at most 1000\)"):
        torchscope.apply_init(examples.MLP(), {"re:" + "a" * 100_000: "zeros"})


class _LongNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module("a" * 40 + "b", nn.Linear(2, 2))


def test_a_catastrophic_regex_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the bug: 're:^(a+)+$' against a long name ran for 44 s
    monkeypatch.setattr(_policy, "REGEX_TIMEOUT", 0.2)
    model = _LongNames()
    before = [p.clone() for p in model.parameters()]
    start = time.monotonic()
    with pytest.raises(InitPolicyError, match=r"^init selector 're:\^\(a\+\)\+\$' took more "
                                              r"than 0\.2 s on the name 'a{40}b\.weight'"):
        torchscope.apply_init(model, {"re:^(a+)+$": "zeros"})
    assert time.monotonic() - start < 30  # not the exponential run (a loose bound, not timing)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_off_the_main_thread_a_nested_repeat_is_refused_up_front() -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            torchscope.apply_init(_LongNames(), {"re:^(a+)+$": "zeros"})
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], InitPolicyError)
    assert str(errors[0]).startswith("init selector 're:^(a+)+$' nests unbounded repeats")


@pytest.mark.parametrize("pattern", [r"^layers\.\d+\.weight$", r"(attn|mlp)\.", r"^a+b$"])
def test_ordinary_regexes_still_match(pattern: str) -> None:
    assert not _policy._nested_repeat(pattern)


# ---------------------------------------------------------------------------------------------
# argument checks of the public functions


CALLS: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "trace_forward(None)": (lambda: torchscope.trace_forward(None, input_size=[(2, 20)]),  # type: ignore[arg-type]
                            InputSpecError, r"^model = NoneType is not a torch\.nn\.Module"),
    "trace_forward(mode=42)": (lambda: torchscope.trace_forward(examples.MLP(), mode=42),  # type: ignore[arg-type]
                               InputSpecError, r"^mode = 42 is not one of auto, real"),
    "inspect_checkpoint(42)": (lambda: torchscope.inspect_checkpoint(42),  # type: ignore[arg-type]
                               ArgumentError, r"^inspect_checkpoint: path = int is not a file "
                               r"path"),
    "inspect_checkpoint(None)": (lambda: torchscope.inspect_checkpoint(None),  # type: ignore[arg-type]
                                 ArgumentError, r"^inspect_checkpoint: path = NoneType"),
    "diff_checkpoint(None, {})": (lambda: torchscope.diff_checkpoint(None, {}),  # type: ignore[arg-type]
                                  ArgumentError, r"^diff_checkpoint: model = NoneType is not a "
                                  r"torch\.nn\.Module"),
    "diff_checkpoint(m, 42)": (lambda: torchscope.diff_checkpoint(examples.MLP(), 42),  # type: ignore[arg-type]
                               ArgumentError, r"^diff_checkpoint: source = int is not a file "
                               r"path"),
    "load_policy(None)": (lambda: torchscope.load_policy(None),  # type: ignore[arg-type]
                          InitPolicyError, r"^load_policy: path = NoneType is not a file path"),
    "apply_init(None, ...)": (lambda: torchscope.apply_init(None, {"*": "zeros"}),  # type: ignore[arg-type]
                              InitPolicyError, r"^apply_init needs an nn\.Module, got NoneType"),
    "apply_init(m, None)": (lambda: torchscope.apply_init(examples.MLP(), None),  # type: ignore[arg-type]
                            InitPolicyError, r"^policy None is a NoneType; give a dict"),
    "apply_init(dry_run=1)": (lambda: torchscope.apply_init(examples.MLP(), {"*": "keep"},
                                                            dry_run=1),  # type: ignore[arg-type]
                              InitPolicyError, r"^apply_init: dry_run = 1 is not a bool"),
    "infer_lazy_shapes(None)": (lambda: torchscope.infer_lazy_shapes(None, input_size=[(2, 20)]),  # type: ignore[arg-type]
                                InputSpecError, r"^infer_lazy_shapes: model = NoneType is not a "
                                r"torch\.nn\.Module"),
    "materialize(None)": (lambda: torchscope.materialize(None),  # type: ignore[arg-type]
                          InputSpecError, r"^materialize: model = NoneType"),
    "find_lazy(42)": (lambda: torchscope.find_lazy(42),  # type: ignore[arg-type]
                      InputSpecError, r"^find_lazy: model = int is not a torch\.nn\.Module"),
    "check_devices(None)": (lambda: torchscope.check_devices(None),  # type: ignore[arg-type]
                            InputSpecError, r"^model = NoneType is not a torch\.nn\.Module"),
    "check_devices(mode=x)": (lambda: torchscope.check_devices(examples.MLP(), mode="x"),
                              InputSpecError, r"^check_devices: mode = 'x' is not one of"),
    "state_guard(None)": (lambda: torchscope.state_guard(None).__enter__(),  # type: ignore[arg-type]
                          InputSpecError, r"^state_guard: model = NoneType"),
    "build_inputs(None)": (lambda: torchscope.build_inputs(None),
                           InputSpecError, r"^input_size = None is not a list of shapes"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_public_functions_check_their_arguments(name: str) -> None:
    call, error, message = CALLS[name]
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, TorchscopeError)
    assert "\n" not in str(info.value)


def test_argument_errors_are_also_type_errors() -> None:
    assert issubclass(ArgumentError, TypeError)
    assert issubclass(ArgumentError, TorchscopeError)


# ---------------------------------------------------------------------------------------------
# promise 5: honest about what a mode cannot see


def test_real_mode_with_meta_device_is_refused() -> None:
    with pytest.raises(InputSpecError, match=r"^mode = 'real' with device = 'meta': a real "
                                             r"forward needs inputs with data; use mode='meta'"):
        torchscope.summarize(examples.MLP(), input_size=[(2, 20)], mode="real", device="meta")


@pytest.mark.parametrize("mode", ["meta", "fake"])
def test_a_dtype_mismatch_meta_cannot_see_is_noted(mode: str) -> None:
    report = torchscope.summarize(nn.Linear(4, 4), input_size=[(2, 4)], dtypes=["bfloat16"],
                                  mode=mode)
    assert report.mode == mode
    assert (f"{mode} tensors do not check dtypes: <root> (bfloat16 into float32) got inputs of "
            "another dtype than their parameters, which a real forward may refuse; run "
            "mode='real' to be sure") in report.notes
    with pytest.raises(torchscope.ForwardError,
                       match=r"in real mode; .*RuntimeError: mat1 and mat2 must have the same "
                             r"dtype"):
        torchscope.summarize(nn.Linear(4, 4), input_size=[(2, 4)], dtypes=["bfloat16"],
                             mode="real")


def test_matching_dtypes_get_no_such_note() -> None:
    report = torchscope.summarize(nn.Linear(4, 4), input_size=[(2, 4)], mode="meta")
    assert not any("do not check dtypes" in n for n in report.notes)
    assert not any("have no values" in n for n in report.notes)


def test_gpt2_with_a_sequence_longer_than_its_positions_says_so_on_meta() -> None:
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    report = torchscope.summarize(model, input_size=[(1, 32)], dtypes=["long"], mode="meta")
    assert ("meta tensors have no values: the indices into transformer.wte, transformer.wpe "
            "(token ids, positions) were not checked against their sizes; a real forward "
            "raises on an index out of range (run mode='real' to be sure)") in report.notes
    with pytest.raises(torchscope.ForwardError, match=r"in module 'transformer\.wpe' .* in real "
                                                      r"mode; .*IndexError: index out of "
                                                      r"range"):
        torchscope.summarize(model, input_size=[(1, 32)], dtypes=["long"], mode="real")


def test_check_devices_builds_inputs_on_the_model_device() -> None:
    # guards the bug: a meta model got a devices-input error about inputs built on cpu
    model = examples.MLP().to("meta")
    codes = [f.code for f in torchscope.check_devices(model, input_size=[(2, 20)], mode="meta")]
    assert codes == ["devices-meta"]


def test_check_devices_meta_mode_sees_a_mismatch_without_running_the_model(
        tmp_path: Path) -> None:
    model = examples.MLP()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    findings = torchscope.check_devices(model, torch.zeros(2, 20, device="meta"), mode="meta")
    assert [f.code for f in findings] == ["devices-input"]
    assert findings[0].message == ("input 0 of hidden (Linear) is on meta but hidden's "
                                   "parameters are on cpu")
    assert calls == [1]  # the hook ran on the copy, which keeps the model's hooks...
    assert len(model._forward_pre_hooks) == 1  # ...and the model has only its own hook
