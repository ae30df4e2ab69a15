"""``torchscope.check`` and the ``check`` command: one CheckResult, exactly what the command
prints, in every format; --backward and --nonfinite; exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from models import assert_same_state, state_fingerprint
from torch import nn

import torchscope
from torchscope import examples
from torchscope.cli import main
from torchscope.errors import InputSpecError
from torchscope.records import CheckResult

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("target", "sizes", "flags"), [
    ("torchscope.examples:FixedHiddenMLP", ["2,20"], []),
    ("torchscope.examples:SharedMLP", [], []),
    ("docs/examples/unused.py:Discarded", ["2,8"], []),
    ("docs/examples/unused.py:Discarded", ["2,8"], ["--backward"]),
    ("docs/examples/nan.py:build", ["2,8"], ["--nonfinite"]),
    ("torchscope.examples:NestMLP", ["2,20"], ["--mode", "meta"]),
])
def test_cli_prints_exactly_the_api_findings(target: str, sizes: list[str], flags: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = [target, *(a for s in sizes for a in ("--input-size", s)), *flags]
    code, out, _ = run_cli([*argv, "--format", "json"], capsys)
    data = json.loads(out)
    model = torchscope.cli.resolve_target(target)
    mode = flags[flags.index("--mode") + 1] if "--mode" in flags else "auto"
    result = torchscope.check(model, input_size=[tuple(map(int, s.split(","))) for s in sizes]
                              or None, mode=mode, backward="--backward" in flags,
                              nonfinite="--nonfinite" in flags)
    assert [(f["code"], f["path"], f["location"]) for f in data["findings"]] == [
        (f.code, f.path, f.location) for f in result.findings]
    assert data["notes"] == list(result.notes)
    assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
    assert code == result.exit_code == data["exit_code"] == (1 if result.errors else 0)
    assert data["errors"] == result.errors


def test_discarded_layer_with_backward_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["docs/examples/unused.py:Discarded", "--input-size", "2,8",
                            "--backward", "--format", "text"], capsys)
    assert code == 1
    assert "ERROR   unused-parameters aux_head:" in out
    assert "output not used: aux_head.weight, aux_head.bias" in out
    assert "Gradient flow" in out
    assert out.rstrip().endswith("Discarded: 1 error, 0 warnings, 0 info")
    # without --backward the same parameters are a warning (no training step was asked for)
    code, out, _ = run_cli(["docs/examples/unused.py:Discarded", "--input-size", "2,8",
                            "--format", "text"], capsys)
    assert code == 0 and "WARNING unused-parameters aux_head:" in out


def test_multihead_attention_has_no_unused_parameters(
        capsys: pytest.CaptureFixture[str]) -> None:
    # guards: nn.MultiheadAttention's out_proj was reported as unused (it is used functionally)
    code, out, _ = run_cli(["docs/examples/mha.py:build", "--input-size", "2,5,32",
                            "--backward", "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["findings"] == []


def test_nonfinite_names_module_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["docs/examples/nan.py:build", "--input-size", "2,8",
                            "--nonfinite", "--format", "json"], capsys)
    assert code == 1
    data = json.loads(out)
    (finding,) = [f for f in data["findings"] if f["code"] == "nonfinite"]
    assert finding["path"] == "0" and finding["location"].startswith("docs/examples/nan.py:")
    assert data["nonfinite"]["module_type"] == "Standardize"


@pytest.mark.parametrize("fmt", ["rich", "text", "markdown", "json"])
def test_render_every_format(fmt: str) -> None:
    result = torchscope.check(examples.FixedHiddenMLP(), input_size=[(2, 20)], backward=True)
    assert isinstance(result, CheckResult)
    out = torchscope.render(result, fmt)  # type: ignore[arg-type]
    if fmt == "json":
        data = json.loads(out)
        assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
        assert data["gradients"]["blocks"][0]["block"] == "linear"
    elif fmt != "rich":
        assert "devices-plain-tensor" in out and "FixedHiddenMLP: 0 errors" in out
    assert str(result) == torchscope.render(result, "text")


def test_result_record() -> None:
    result = torchscope.check(examples.SharedMLP())
    assert result.mode is None and result.ok and result.exit_code == 0
    assert result.notes[0].startswith("no --input-size")
    assert [(f.code, f.severity) for f in result.findings] == [
        (f.code, f.severity) for f in torchscope.check_ties(examples.SharedMLP())]
    assert result.findings and result.errors == 0
    assert result.to_dict()["errors"] == 0
    half = examples.MLP()
    half.output.to("meta")
    bad = torchscope.check(half)
    assert not bad.ok and bad.errors == 1 and bad.findings[0].code == "devices-meta"


def test_check_keeps_every_promise() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 2))
    model[0].weight.grad = torch.ones(8, 8)
    grad = model[0].weight.grad
    x = torch.randn(4, 8)
    versions = [p._version for p in model.parameters()]
    before = state_fingerprint(model)
    result = torchscope.check(model, x, backward=True, nonfinite=True)
    assert [p._version for p in model.parameters()] == versions
    assert result.ok and result.gradients is not None and result.nonfinite is not None
    assert_same_state(before, state_fingerprint(model))
    assert model[0].weight.grad is grad and bool((grad == 1).all())
    assert model[3].weight.grad is None


def test_bad_input_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["torchscope.examples:MLP", "--input-size", "2,x"], capsys)
    assert code == 2 and out == "" and "is not a shape" in err
    with pytest.raises(InputSpecError, match=r"check: mode = 'slow' is not one of"):
        torchscope.check(examples.MLP(), input_size=[(2, 20)], mode="slow")


def test_acceptance_command_json_has_schema_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "torchscope", "check",
                           "torchscope.examples:FixedHiddenMLP", "--input-size", "2,20",
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "schema_version" in json.loads(proc.stdout)


class _RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, :3])  # wrong width: the model cannot run


@pytest.mark.parametrize("mode", ["real", "auto", "meta"])
def test_a_forward_that_raises_is_a_finding_not_a_usage_error(mode: str) -> None:
    # guards: check reported a model that fails on its inputs as bad usage (exit 2), so CI
    # could not tell a broken model from a mistyped command
    model = _RaisesInForward()
    before = state_fingerprint(model)
    result = torchscope.check(model, input_size=[(2, 8)], mode=mode)
    errors = [f for f in result.findings if f.severity.value == "error"]
    assert [f.code for f in errors] == ["forward-failed"]
    assert "fc" in errors[0].message and result.exit_code == 1
    assert_same_state(before, state_fingerprint(model))


def test_check_reports_a_module_cycle() -> None:
    # guards: the module-cycle error of the walk was missing from check's findings
    model = nn.Sequential(nn.Linear(2, 2))
    model[0]._modules["up"] = model
    result = torchscope.check(model)
    assert [f.code for f in result.findings if f.severity.value == "error"] == ["module-cycle"]
    assert result.exit_code == 1


class KeywordOnly(nn.Module):
    """A model whose forward takes its input by keyword only."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, *, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("mode", ["auto", "real", "meta", "fake"])
def test_keyword_inputs_reach_every_check(mode: str) -> None:
    # guards the bug: check ran its device check without the keyword inputs, so a model that
    # takes them got a forward error ("missing argument x") instead of its findings
    result = torchscope.check(KeywordOnly(), example_kwargs={"x": torch.zeros(3, 2)}, mode=mode)
    assert [f.code for f in result.findings] == []
    assert result.mode == ("real" if mode == "auto" else mode)


def test_keyword_inputs_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # guards the bugs: the check command dropped --input name=SHAPE; with --mode meta it built
    # them on meta, which the device check then called a mismatch with the CPU model
    (tmp_path / "kw.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass K(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)\n\n"
        "    def forward(self, *, x):\n        return self.fc(x)\n")
    monkeypatch.chdir(tmp_path)
    from torchscope.cli import main

    for extra in ([], ["--mode", "meta"], ["--mode", "fake"]):
        assert main(["check", "kw.py:K", "--input", "x=3,2", *extra]) == 0
        assert "0 errors" in capsys.readouterr().out
