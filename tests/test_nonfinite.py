"""The first NaN/Inf of one training step: the module, the op and the user's line, with
statistics; the model, its gradients and the global state left as they were."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from models import assert_same_state, state_fingerprint
from torch import nn

import torchscope
from torchscope.errors import ForwardError, InputSpecError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs.examples import nan


def line_of(func: object, text: str) -> int:
    lines, start = inspect.getsourcelines(func)  # type: ignore[arg-type]
    (line,) = [start + i for i, source in enumerate(lines) if text in source]
    return line


class SqrtLoss(nn.Module):
    """Finite forward (sqrt(0) = 0), infinite gradient (d sqrt / dx at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return torch.sqrt(h * 0).sum()


class LogRatio(nn.Module):
    """Inf (log 0) deep inside a nested block."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.inner(x) * 0)


def test_forward_site_names_module_op_and_line() -> None:
    report = torchscope.find_nonfinite(nan.build(), input_size=[(2, 8)])
    assert (report.phase, report.module, report.module_type) == ("forward", "0", "Standardize")
    assert report.op is not None and "div" in report.op
    line = line_of(nan.Standardize.forward, "x.std(")
    assert report.location == f"docs/examples/nan.py:{line}"
    # the op's inputs were finite (0 and a deviation of 0), its output all NaN
    assert all(s.finite for s in report.inputs)
    assert report.inputs[1].max == 0.0
    assert report.outputs[0].nan == 16 and report.outputs[0].min is None  # unknown, not 0
    assert report.module_inputs[0].finite and report.module_outputs[0].nan == 16
    (finding,) = report.findings
    assert finding.code == "nonfinite" and finding.location == report.location
    assert "first NaN of the forward" in finding.message and "finite inputs" in finding.message


def test_inf_in_a_nested_module_call() -> None:
    report = torchscope.find_nonfinite(LogRatio(), torch.ones(1, 4), backward=False)
    assert (report.phase, report.module, report.op) == ("forward", "", "log")
    assert report.outputs[0].inf == 4
    assert report.location is not None
    assert report.location.endswith(f":{line_of(LogRatio.forward, 'torch.log')}")


def test_backward_site_when_the_forward_is_finite() -> None:
    report = torchscope.find_nonfinite(SqrtLoss(), torch.ones(2, 4))
    assert report.phase == "backward"
    assert report.op == "SqrtBackward0"
    assert report.location is not None
    assert report.location.endswith(f":{line_of(SqrtLoss.forward, 'torch.sqrt')}")
    assert all(s.finite for s in report.inputs) and report.outputs[0].inf == 8
    assert "gradient" in report.findings[0].message
    assert torchscope.find_nonfinite(SqrtLoss(), torch.ones(2, 4), backward=False).found is False


def test_parameters_already_nonfinite() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].bias[0] = float("nan")
    report = torchscope.find_nonfinite(model, torch.ones(1, 4))
    assert report.phase == "parameters" and report.tensors == ("1.bias",)


@pytest.mark.parametrize("cls", [torchscope.examples.MLP, torchscope.examples.NestMLP])
def test_finite_models(cls: type[nn.Module]) -> None:
    report = torchscope.find_nonfinite(cls(), torch.ones(2, 20))
    assert not report.found and report.findings == ()
    assert "every value finite" in torchscope.render(report, "text")


def test_everything_restored() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), SqrtLoss())
    model.train()
    model[0].weight.grad = torch.full((4, 4), 3.0)
    grad = model[0].weight.grad
    x = torch.randn(3, 4)
    before = state_fingerprint(model)
    report = torchscope.find_nonfinite(model, x)
    assert report.phase == "backward"
    assert_same_state(before, state_fingerprint(model))
    assert model[0].weight.grad is grad and torch.equal(grad, torch.full((4, 4), 3.0))
    assert model[0].bias.grad is None and model[3].lin.weight.grad is None
    assert int(model[1].num_batches_tracked) == 0


def test_forward_error_and_bad_input() -> None:
    model = nan.build()
    before = state_fingerprint(model)
    with pytest.raises(ForwardError, match=r"the step of Sequential raised RuntimeError"):
        torchscope.find_nonfinite(model, torch.ones(2, 5))
    assert_same_state(before, state_fingerprint(model))
    with pytest.raises(InputSpecError, match=r"find_nonfinite needs example inputs"):
        torchscope.find_nonfinite(model)


def test_nonfinite_inputs_are_noted() -> None:
    x = torch.ones(1, 20)
    x[0, 0] = float("inf")
    report = torchscope.find_nonfinite(torchscope.examples.MLP(), x, backward=False)
    assert any("already hold NaN/Inf" in n for n in report.notes)
    assert report.found and report.phase == "forward"


def test_render_json_and_text() -> None:
    report = torchscope.find_nonfinite(nan.build(), input_size=[(2, 8)])
    data = json.loads(torchscope.render(report, "json"))
    assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
    assert data["phase"] == "forward" and data["module"] == "0"
    text = torchscope.render(report, "text")
    assert "First non-finite (forward)" in text and "nan 16" in text
    assert "docs/examples/nan.py" in torchscope.render(report, "markdown")


def test_example_models_are_user_code() -> None:
    # guards: frames in torchscope/ are skipped, but the example models there are user code
    x = torch.tensor([[float("inf"), 1.0]])
    report = torchscope.find_nonfinite(torchscope.examples.CenteredLayer(), x, backward=False)
    line = line_of(torchscope.examples.CenteredLayer.forward, "x.mean()")
    assert report.location == f"torchscope/examples.py:{line}"
    assert "inputs that already held NaN/Inf" in report.findings[0].message


def test_golden_nonfinite_report(snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.find_nonfinite(nan.build(), input_size=[(2, 8)])
    snapshot("nonfinite_nan_example.txt", torchscope.render(report, "text"))


def test_a_meta_model_is_one_clear_error() -> None:
    # guards: a meta model ran its real step and failed inside the forward with a device or
    # .item() error instead of saying the model has no values
    model = nn.Linear(4, 4, device="meta")
    for inputs in ({"input_size": [(2, 4)]}, {"example_inputs": torch.zeros(2, 4)}):
        with pytest.raises(InputSpecError, match=r"find_nonfinite: Linear has 2 parameter/buffer "
                                                 r"tensors on the meta device \(weight, bias\)"):
            torchscope.find_nonfinite(model, **inputs)  # type: ignore[arg-type]
    with pytest.raises(InputSpecError, match=r"find_nonfinite: device = 'meta'"):
        torchscope.find_nonfinite(nn.Linear(4, 4), input_size=[(2, 4)], device="meta")
