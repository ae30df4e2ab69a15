"""Device consistency checks on models mixing ``cpu`` and ``meta`` tensors, the state promise,
and the ``check`` command's findings and exit codes."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from models import TRANSFORMERS, assert_same_state, gpt2, state_fingerprint
from torch import nn

import torchscope
from torchscope import examples
from torchscope.cli import main
from torchscope.devices import check_devices, device_map
from torchscope.errors import ForwardError, InputSpecError
from torchscope.records import Finding, Severity


def codes(findings: tuple[Finding, ...]) -> list[tuple[str, Severity, str | None]]:
    return [(f.code, f.severity, f.path) for f in findings]


EXAMPLES = [examples.MLP, examples.MySequential, examples.NestMLP, examples.SharedMLP,
            examples.LazyMLP, examples.CenteredLayer, examples.MyLinear]


@pytest.mark.parametrize("cls", EXAMPLES, ids=[c.__name__ for c in EXAMPLES])
def test_chapter_models_are_clean(cls: Callable[[], nn.Module]) -> None:
    assert check_devices(cls()) == ()


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformers_models_are_clean(name: str) -> None:
    assert check_devices(TRANSFORMERS[name]()) == ()


def test_fixed_hidden_mlp_constant_is_a_plain_tensor() -> None:
    (finding,) = check_devices(examples.FixedHiddenMLP())
    assert (finding.code, finding.severity, finding.path) == (
        "devices-plain-tensor", Severity.WARNING, "rand_weight")
    assert "[20, 20] float32 on cpu" in finding.message
    assert ".to() will not move it and state_dict will not save it" in finding.message
    assert finding.hint is not None
    assert "register_buffer('rand_weight', tensor, persistent=False)" in finding.hint


class Holder(nn.Module):
    """Plain tensors directly, in a list and in a dict, one of them on another device."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.lin.scale = torch.ones(2, device="meta")
        self.table = [torch.zeros(3), 5]
        self.cache = {"k": torch.zeros(1)}
        self.register_buffer("ok", torch.zeros(1), persistent=False)


def test_plain_tensors_in_containers_and_on_another_device() -> None:
    found = {str(f.path): f for f in check_devices(Holder())}
    assert sorted(found) == ["cache['k']", "lin.scale", "table[0]"]
    assert found["lin.scale"].severity is Severity.ERROR  # meta while lin's params are on cpu
    assert "while the module's parameters are on cpu" in found["lin.scale"].message
    assert found["table[0]"].severity is Severity.WARNING
    assert found["table[0]"].hint is not None and "ParameterList" in found["table[0]"].hint
    # errors come first
    assert check_devices(Holder())[0].path == "lin.scale"


def test_module_boundary_split_cpu_meta() -> None:
    mlp = examples.MLP()
    mlp.output.to("meta")
    assert device_map(mlp) == {"cpu": ("hidden",), "meta": ("output",)}
    found = check_devices(mlp)
    assert codes(found) == [("devices-meta", Severity.ERROR, "output.weight"),
                            ("devices-split", Severity.INFO, "")]
    assert "2 of 4 tensors are still on the meta device (output.weight, output.bias)" in (
        found[0].message)
    assert "cpu (5,376 values): hidden; meta (2,570 values): output" in found[1].message


def test_module_split_over_devices_is_an_error() -> None:
    mlp = examples.MLP()
    mlp.output.bias = nn.Parameter(torch.zeros(10, device="meta"))
    assert device_map(mlp) == {"cpu": ("hidden", "output.weight"), "meta": ("output.bias",)}
    found = check_devices(mlp)
    assert ("devices-mixed-module", Severity.ERROR, "output") in codes(found)
    mixed = next(f for f in found if f.code == "devices-mixed-module")
    assert "cpu: weight; meta: bias" in mixed.message
    assert mixed.hint == "move the whole module: model.output.to('cpu')"
    assert not any(f.code == "devices-stray-tensor" for f in found)  # said once, per module


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = examples.MLP()
        self.scale = nn.Parameter(torch.ones(1, device="meta"))


def test_single_stray_tensor_is_an_error_not_a_split() -> None:
    found = check_devices(Scaled())
    stray = [f for f in found if f.code == "devices-stray-tensor"]
    assert codes(tuple(stray)) == [("devices-stray-tensor", Severity.ERROR, "scale")]
    assert "the only tensor on meta; the other 4 are on cpu" in stray[0].message
    assert not any(f.code == "devices-split" for f in found)


def test_all_meta_model_is_a_note() -> None:
    with torch.device("meta"):
        model = examples.NestMLP()
    assert codes(check_devices(model)) == [("devices-meta", Severity.INFO, "")]
    # and meta inputs reach it fine
    assert codes(check_devices(model, torch.zeros(2, 20, device="meta"))) == [
        ("devices-meta", Severity.INFO, "")]


def test_inputs_on_another_device_than_the_receiving_module() -> None:
    found = check_devices(examples.NestMLP(), torch.zeros(2, 20, device="meta"))
    assert codes(found) == [("devices-input", Severity.ERROR, "net.0")]
    assert "input 0 of net.0 (Linear) is on meta but net.0's parameters are on cpu" in (
        found[0].message)
    assert found[0].hint is not None and "x.to('cpu')" in found[0].hint


def test_activation_crossing_a_split_without_to() -> None:
    mlp = examples.MLP()
    mlp.output.to("meta")
    found = check_devices(mlp, torch.zeros(2, 20))
    inputs = [f for f in found if f.code == "devices-input"]
    assert codes(tuple(inputs)) == [("devices-input", Severity.ERROR, "output")]


def test_keyword_inputs_gpt2() -> None:
    model = gpt2()
    ids = torch.zeros(1, 8, dtype=torch.long)
    assert check_devices(model, {"input_ids": ids}) == ()
    found = check_devices(model, {"input_ids": ids.to("meta")})
    assert codes(found) == [("devices-input", Severity.ERROR, "transformer.wte")]
    assert "input 0 of transformer.wte (Embedding) is on meta" in found[0].message


def test_declared_tie_broken_across_devices() -> None:
    model = gpt2()
    model.get_submodule("lm_head").weight = nn.Parameter(torch.empty(1000, 64, device="meta"))
    found = [f for f in check_devices(model) if f.code == "tie-devices"]
    assert codes(tuple(found)) == [("tie-devices", Severity.ERROR, "lm_head.weight")]
    assert "declared tied to transformer.wte.weight (cpu)" in found[0].message
    # an untied configuration declares no tie: different devices are not a broken tie
    untied = gpt2(tie=False)
    untied.get_submodule("lm_head").to("meta")
    assert not any(f.code == "tie-devices" for f in check_devices(untied))


def test_mixed_dtypes_in_one_module() -> None:
    lin = nn.Linear(4, 4)
    lin.bias.data = lin.bias.data.half()
    found = check_devices(nn.Sequential(lin, nn.ReLU()))
    assert codes(found) == [("devices-mixed-dtype", Severity.WARNING, "0")]
    assert "float16: bias; float32: weight" in found[0].message
    # integer buffers (BatchNorm's num_batches_tracked) and whole-model casts are fine
    assert check_devices(nn.BatchNorm1d(3)) == ()
    assert check_devices(examples.MLP().half()) == ()


def test_lazy_model_with_inputs_stays_uninitialized() -> None:
    model = examples.LazyMLP()
    assert check_devices(model, torch.zeros(2, 20)) == ()
    assert isinstance(model.get_parameter("0.weight"), nn.parameter.UninitializedParameter)


def make_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))


@pytest.mark.parametrize("inputs", [None, "ok", "meta", "bad-shape"])
def test_no_side_effects(inputs: str | None) -> None:
    model = make_bn_model().train()
    model.get_submodule("3").eval()  # a mixed tree of training flags
    example = {None: None, "ok": torch.randn(4, 20), "meta": torch.zeros(4, 20, device="meta"),
               "bad-shape": torch.randn(4, 7)}[inputs]
    before = state_fingerprint(model)
    if inputs == "bad-shape":
        with pytest.raises(ForwardError, match=r"forward raised in 0 \(RuntimeError: .*\)"):
            check_devices(model, example)
    else:
        check_devices(model, example)
    assert_same_state(before, state_fingerprint(model))
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_not_a_module() -> None:
    with pytest.raises(InputSpecError, match=r"model = Tensor is not a torch\.nn\.Module"):
        check_devices(torch.zeros(2))  # type: ignore[arg-type]


def test_public_names() -> None:
    assert torchscope.check_devices is check_devices
    assert torchscope.SyncReport is torchscope.devices.SyncReport


# -- the `check` command -----------------------------------------------------------------------

MODELS_FILE = """import torch
from torch import nn
from torchscope.examples import MLP

def half_meta():
    m = MLP()
    m.output.to("meta")
    return m

class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.spare = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            pass
        return self.used(x)
"""


def run_check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_fixed_hidden_mlp_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(["torchscope.examples:FixedHiddenMLP", "--input-size", "2,20",
                                "--format", "json"], capsys)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert [f["code"] for f in data["findings"]] == ["devices-plain-tensor", "sync"]
    lines, start = inspect.getsourcelines(examples.FixedHiddenMLP.forward)
    (line,) = [start + i for i, text in enumerate(lines) if "while" in text]
    assert data["findings"][1]["location"] == f"torchscope/examples.py:{line}"
    assert data["errors"] == 0 and data["exit_code"] == 0


def test_check_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(["torchscope.examples:FixedHiddenMLP", "--format", "text"], capsys)
    assert code == 0
    assert "devices-plain-tensor" in out
    assert out.rstrip().endswith("FixedHiddenMLP: 0 errors, 1 warning, 0 info")
    assert "note: no --input-size: no forward ran" in out


def test_check_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "models.py"
    path.write_text(MODELS_FILE)
    code, out, _ = run_check([f"{path}:half_meta", "--format", "json"], capsys)
    assert code == 1
    data = json.loads(out)
    assert [(f["code"], f["severity"]) for f in data["findings"]] == [
        ("devices-meta", "error"), ("devices-split", "info")]
    code, out, _ = run_check([f"{path}:half_meta", "--input-size", "2,20", "--format", "json"],
                             capsys)
    assert code == 1
    data = json.loads(out)
    assert ("devices-input", "error") in [(f["code"], f["severity"]) for f in data["findings"]]
    assert any("device mismatch" in note for note in data["notes"])


def test_check_unused_parameters_and_syncs(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "models.py"
    path.write_text(MODELS_FILE)
    code, out, _ = run_check([f"{path}:Unused", "--input-size", "2,4", "--format", "json"],
                             capsys)
    assert code == 0
    found = {f["code"]: f for f in json.loads(out)["findings"]}
    assert sorted(found) == ["sync", "unused-parameters"]
    assert found["unused-parameters"]["path"] == "spare"
    assert found["sync"]["location"] == f"{path}:17"


@pytest.mark.parametrize("cls", [examples.SharedMLP, examples.LazyMLP, examples.MLP],
                         ids=lambda c: c.__name__)
def test_check_runs_tie_and_lazy_checks(cls: type[nn.Module],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    model = cls()
    expected = sorted(f.code for f in (*torchscope.check_ties(model),
                                       *torchscope.check_lazy(model)))
    code, out, _ = run_check([f"torchscope.examples:{cls.__name__}", "--format", "json"], capsys)
    assert code == 0
    assert sorted(f["code"] for f in json.loads(out)["findings"]) == expected
    assert (len(expected) > 0) is (cls is not examples.MLP)


def test_check_meta_mode_runs_no_sync_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(["torchscope.examples:NestMLP", "--input-size", "2,20",
                              "--mode", "meta", "--format", "json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["findings"] == []
    assert data["notes"] == [
        "the forward ran in meta mode: syncs need a real forward (--mode real)"]


def test_check_bad_target_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(["torchscope.examples:Nope"], capsys)
    assert code == 2 and out == ""
    assert "has no attribute 'Nope'" in err
