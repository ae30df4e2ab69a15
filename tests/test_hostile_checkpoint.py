"""Promises 2, 3 and 4 for checkpoints and saved reports: lazy, nested and quantized tensors,
containers nested or shared without end, report JSON with fields of the wrong type, and bad diff
arguments each get a listing that says what it cannot count, or one clear line (exit 2 from the
CLI)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchscope
from tests.models import run_cli
from torchscope import examples
from torchscope.arch_diff import load_report
from torchscope.checkpoint import _read
from torchscope.errors import ArgumentError, CheckpointError, InputSpecError, TorchscopeError
from torchscope.records import Report


def _codes(findings: Any) -> list[str]:
    return [f.code for f in findings]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    node["w"] = torch.zeros(2)
    return root


def _quantized() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8)
    return q


# ---------------------------------------------------------------------------------------------
# lazy (uninitialized) tensors


def test_a_lazy_state_dict_diffs_against_its_lazy_model() -> None:
    # guards the bug: a lazy model's own state dict raised a raw ValueError from numel()
    model = examples.LazyMLP()
    d = torchscope.diff_checkpoint(model, model.state_dict())
    assert d.would_load_strict and d.matched == 4
    lazy = [f for f in d.findings if f.code == "checkpoint-lazy"]
    assert len(lazy) == 1 and "uninitialized (lazy) in the file and in the model" in (
        lazy[0].message)
    assert model.load_state_dict(model.state_dict())  # what the diff predicts


def test_a_lazy_state_dict_does_not_load_into_an_initialized_model() -> None:
    # guards the bug: uninitialized file tensors were compared by shape (raw ValueError); torch
    # cannot copy them into initialized tensors, so the diff must say the load fails
    done = examples.LazyMLP()
    done(torch.zeros(2, 20))
    d = torchscope.diff_checkpoint(done, examples.LazyMLP().state_dict())
    assert not d.would_load_strict and not d.would_load_after_fix
    errors = [f for f in d.findings if f.code == "checkpoint-not-comparable"]
    assert len(errors) == 4
    assert errors[0].message == (
        "0.weight: the file's tensor is uninitialized (lazy), the model's is not: "
        "load_state_dict cannot copy it; load_state_dict raises on it")
    with pytest.raises(RuntimeError):
        done.load_state_dict(examples.LazyMLP().state_dict())


# ---------------------------------------------------------------------------------------------
# nesting without end


def test_a_deeply_nested_file_is_one_line(tmp_path: Path) -> None:
    # guards the bug: a dict nested 5,000 levels raised RecursionError from the walk
    path = tmp_path / "deep.pt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # torch.save itself recurses
    try:
        torch.save(_deep(5000), path)
    finally:
        sys.setrecursionlimit(limit)
    message = (r"^'.*deep\.pt' nests dicts, lists or tuples more than 100 levels deep: "
               r"checkpoints nest a few levels; torchscope does not walk it: save a flat state "
               r"dict \(torch\.save\(model\.state_dict\(\), path\)\)$")
    with pytest.raises(CheckpointError, match=message):
        torchscope.inspect_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        torchscope.diff_checkpoint(examples.MLP(), path)
    proc = _cli("checkpoint", "deep.pt", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("torchscope checkpoint: error: 'deep.pt' nests dicts")


def test_a_deeply_nested_mapping_is_one_line() -> None:
    # guards the bug: the same mapping passed as a state dict raised RecursionError
    with pytest.raises(CheckpointError,
                       match=r"^the state dict nests dicts, lists or tuples more than 100 "):
        torchscope.diff_checkpoint(nn.Linear(2, 2), _deep(5000))


def test_nesting_within_the_limit_still_reads() -> None:
    # guards the limit itself: a checkpoint nested 90 levels is walked as before
    d = torchscope.diff_checkpoint(nn.Linear(2, 2), _deep(90))
    assert d.matched == 0 and len(d.unexpected) == 1


def test_a_mapping_that_contains_itself_is_one_line() -> None:
    # guards the bug: a dict holding itself made the walk recurse until RecursionError
    sd: dict[str, Any] = dict(nn.Linear(2, 2).state_dict())
    sd["loop"] = {"back": sd}
    with pytest.raises(CheckpointError, match=r"^the state dict holds a dict or list that "
                                              r"contains itself: torchscope cannot list it"):
        torchscope.diff_checkpoint(nn.Linear(2, 2), sd)


def test_shared_containers_that_multiply_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the class: a list shared at every level (a few bytes pickled) makes the walk visit
    # 2**60 places; the number of values walked is bounded
    monkeypatch.setattr(_read, "_MAX_WALK_ENTRIES", 10_000)
    node: Any = [torch.zeros(1)]
    for _ in range(60):
        node = [node, node]
    with pytest.raises(CheckpointError, match=r"holds more than 10,000 values to list"):
        torchscope.diff_checkpoint(nn.Linear(2, 2), {"weights": node})


# ---------------------------------------------------------------------------------------------
# nested tensors


def test_a_nested_tensor_is_counted_and_said(tmp_path: Path) -> None:
    # guards the bug: a nested tensor raised "NestedTensorImpl doesn't support sizes"
    path = tmp_path / "nested.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    torch.save({"n": nested, "w": torch.zeros(4)}, path)
    info = torchscope.inspect_checkpoint(path)
    assert [e.name for e in info.entries] == ["w"]
    assert (info.total_numel, info.total_bytes) == (9, 36)
    said = [f for f in info.findings if f.code == "checkpoint-nested-tensor"]
    assert [f.message for f in said] == [
        "1 nested tensor(s) (no single shape): n; not listed as entries, their 5 element(s) and "
        "20 bytes of data are in the totals"]
    d = torchscope.diff_checkpoint(nn.Linear(2, 2), {"weight": nested, "bias": torch.zeros(2)})
    assert not d.would_load_strict
    assert "weight: the file holds a nested tensor" in str(d)


# ---------------------------------------------------------------------------------------------
# quantized models: state dicts with values other than tensors


def test_a_dynamically_quantized_state_dict_diffs(tmp_path: Path) -> None:
    # guards the bug: its state dict (packed parameters, a dtype) was "no dict of named tensors"
    q = _quantized()
    d = torchscope.diff_checkpoint(q, q.state_dict())
    assert d.would_load_strict and d.matched == 4 and not d.missing and not d.unexpected
    said = [f for f in d.findings if f.code == "checkpoint-not-tensors"]
    assert len(said) == 1
    assert said[0].message.startswith(
        "2 state dict entries are not tensors in the file nor in the model (packed parameters "
        "of quantized layers, extra state): 0._packed_params.dtype, "
        "0._packed_params._packed_params; matched by key only")
    path = tmp_path / "q.pt"
    torch.save(q.state_dict(), path)
    assert torchscope.diff_checkpoint(q, path).would_load_strict


def test_a_statically_quantized_state_dict_diffs() -> None:
    # guards the bug for static quantization (scale/zero_point buffers and packed parameters)
    model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Linear(4, 4),
                          torch.ao.quantization.DeQuantStub())
    model.qconfig = torch.ao.quantization.get_default_qconfig(  # type: ignore[no-untyped-call]
        "qnnpack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = torch.ao.quantization.prepare(model.eval())  # type: ignore[no-untyped-call]
        prepared(torch.randn(8, 4))
        q = torch.ao.quantization.convert(prepared)  # type: ignore[no-untyped-call]
    d = torchscope.diff_checkpoint(q, q.state_dict())
    assert d.would_load_strict and not d.missing and not d.unexpected
    assert "checkpoint-not-tensors" in _codes(d.findings)


def test_a_quantized_file_against_a_float_model_says_what_differs() -> None:
    # guards the other direction: keys that differ are listed, nothing raises
    d = torchscope.diff_checkpoint(nn.Sequential(nn.Linear(4, 4)), _quantized().state_dict())
    assert not d.would_load_strict
    assert set(d.missing) == {"0.weight", "0.bias"}
    assert "0._packed_params._packed_params" in d.unexpected


def test_a_dict_without_named_tensors_still_says_so() -> None:
    # guards the message: tensors only inside lists are no state dict, said in one line
    with pytest.raises(CheckpointError, match=r"holds a dict with 2 tensor\(s\) but no dict "
                                              r"that maps names to tensors"):
        torchscope.diff_checkpoint(nn.Linear(2, 2), {"w": [torch.zeros(1), torch.zeros(1)]})


# ---------------------------------------------------------------------------------------------
# saved reports


def test_a_report_file_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    # guards the bug: 100,000 "[" raised RecursionError from json.loads
    (tmp_path / "deep.json").write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(TorchscopeError, match=r"nests JSON arrays or objects too deeply"):
        load_report(tmp_path / "deep.json")
    proc = _cli("diff", "deep.json", "torchscope.examples:MLP", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "torchscope diff: error: report file 'deep.json' nests JSON arrays or objects too deeply "
        "to be a torchscope report: give a report written by `torchscope summarize --format "
        "json`\n")


def _mlp_report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        torchscope.summarize(examples.MLP(), input_size=[(2, 20)]).to_json())
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(total_params="7946"),
         "total_params is '7946' (a str), expected an int >= 0"),
        (lambda d: d.update(total_params=float("nan")), "total_params is nan, expected an int"),
        (lambda d: d.update(total_params=True), "total_params is True, expected an int >= 0"),
        (lambda d: d.update(total_params=-1), "total_params is -1, expected an int >= 0"),
        (lambda d: d.update(modules={}), "modules is a dict, expected a list"),
        (lambda d: d["modules"][1].pop("type_name"),
         "modules[1].type_name is missing (a ModuleRecord needs it)"),
        (lambda d: d["modules"][1].update(path=3), "modules[1].path is 3, expected a str"),
        (lambda d: d["params"][0].update(kind="weight"),
         "params[0].kind is 'weight' (a str), expected one of 'parameter', 'buffer'"),
        (lambda d: d["params"][0].update(shape=[4, "x"]), "params[0].shape[1] is 'x'"),
        (lambda d: d["modules"][0]["calls"][0].update(inputs=[{"spec": []}]),
         "modules[0].calls[0].inputs[0] is a dict, expected a spec"),
        (lambda d: d["modules"][0]["calls"][0]["inputs"][0].update(shape=None),
         "modules[0].calls[0].inputs[0].shape is a NoneType, expected a list"),
    ],
)
def test_report_fields_of_the_wrong_type_are_one_line(change: Any, message: str,
                                                      tmp_path: Path) -> None:
    # guards the bug: a str total_params built a diff whose rendering raised TypeError, a NaN
    # one printed "nan → 7,946 (+nan)", other fields raised raw TypeError/AttributeError
    data = _mlp_report()
    change(data)
    with pytest.raises(InputSpecError, match=r"^Report data: " + re.escape(message)):
        Report.from_dict(data)
    with pytest.raises(InputSpecError, match=r"^Report data: " + re.escape(message)):
        Report.from_json(json.dumps(data))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    proc = _cli("diff", "bad.json", "torchscope.examples:MLP", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        "torchscope diff: error: report file 'bad.json' is a damaged torchscope report (Report "
        "data: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, r"^Report JSON nests arrays or objects too deeply"),
        ("not json", r"^Report JSON is not valid JSON \(Expecting value at line 1, column 1\)$"),
        ("[1]", r"^Report data: the top level is a list, expected a dict"),
        ('{"schema_version": 1}', r"^Report data: root_type is missing"),
        ('{"schema_version": 2}', r"^Report schema_version 2 is not supported"),
        (3, r"^Report.from_json takes JSON text \(a str\), got a value of type int$"),
    ],
)
def test_report_from_json_bad_text_is_one_line(text: Any, message: str) -> None:
    # guards the bug: from_json/from_dict raised raw JSONDecodeError, AttributeError,
    # RecursionError or TypeError
    with pytest.raises(InputSpecError, match=message):
        Report.from_json(text)


def test_a_spec_nested_without_end_is_one_line() -> None:
    # guards the class: from_dict decodes specs recursively, so their nesting is bounded first
    data = _mlp_report()
    spec: Any = None
    for _ in range(5000):
        spec = {"spec": "seq", "type_name": "tuple", "items": [spec]}
    data["outputs"] = spec
    with pytest.raises(InputSpecError, match=r"^Report data nests more than 200 levels deep"):
        Report.from_dict(data)


def test_reports_still_round_trip() -> None:
    # guards the checks themselves: every report torchscope writes reads back equal
    for report in (torchscope.summarize(examples.MLP(), input_size=[(2, 20)]),
                   torchscope.summarize(examples.LazyMLP()),
                   torchscope.summarize(examples.SharedMLP())):
        assert Report.from_json(report.to_json()) == report


# ---------------------------------------------------------------------------------------------
# diff arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": 3}, ArgumentError,
         r"^diff: labels = 3 is not a pair of names; give two str"),
        ({"labels": ("a",)}, ArgumentError, r"^diff: labels = \('a',\) is not a pair of names"),
        ({"labels": ("a", 2)}, ArgumentError, r"^diff: labels = \('a', 2\) is not a pair"),
        ({"mode": "bogus"}, InputSpecError,
         r"^diff: mode = 'bogus' is not one of auto, real, meta, fake$"),
    ],
)
def test_bad_diff_arguments_are_one_line(kwargs: dict[str, Any], error: type[Exception],
                                         message: str) -> None:
    # guards the bug: labels=3 or a 1-tuple and mode='bogus' were accepted or raised raw errors
    with pytest.raises(error, match=message):
        torchscope.diff(examples.MLP(), examples.MLP(), **kwargs)


def test_compare_reports_checks_its_arguments() -> None:
    # guards the same checks on the function diff() runs
    from torchscope.arch_diff import compare_reports

    report = torchscope.summarize(examples.MLP())
    with pytest.raises(ArgumentError, match=r"^compare_reports: after = 3 is not a Report"):
        compare_reports(report, 3)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^compare_reports: labels = 'ab' is not a pair"):
        compare_reports(report, report, labels="ab")  # type: ignore[arg-type]
