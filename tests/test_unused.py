"""Parameters without gradient, by the autograd graph of the outputs: every cause named, no
false alarm on functional use, no memory in meta mode, and the model left as it was."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from models import assert_same_state, gpt2, state_fingerprint
from torch import nn

import torchscope
from torchscope.errors import ForwardError, InputSpecError
from torchscope.records import Severity, UnusedReason

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs.examples import mha, unused


def reasons(report: torchscope.UnusedReport) -> dict[str, str]:
    return {u.name: u.reason.value for u in report.unused}


@pytest.mark.parametrize(("cls", "expected"), [
    (unused.Discarded, {"aux_head.weight": "output not used", "aux_head.bias": "output not used"}),
    (unused.Detached, {"branch.weight": "detached", "branch.bias": "detached"}),
    (unused.NoGrad, {"teacher.weight": "used only under no_grad",
                     "teacher.bias": "used only under no_grad"}),
    (unused.Uncalled, {"spare.0.weight": "module never called",
                       "spare.0.bias": "module never called"}),
    (unused.FunctionalWeight, {}),
], ids=lambda v: getattr(v, "__name__", ""))
def test_each_cause_is_named(cls: type[nn.Module], expected: dict[str, str]) -> None:
    x = torch.zeros(2, 5, dtype=torch.long) if cls is unused.FunctionalWeight else torch.ones(2, 8)
    report = torchscope.find_unused_parameters(cls(), x)
    assert report.mode == "meta"
    assert reasons(report) == expected
    assert [f.path for f in report.findings] == sorted({u.module.split(".")[0]
                                                        for u in report.unused})


def test_multihead_attention_out_proj_is_used() -> None:
    # guards: out_proj is never *called* (used functionally), which the old check took as unused
    model = mha.build()
    assert "attn.out_proj.weight" in dict(model.named_parameters())
    report = torchscope.find_unused_parameters(model, input_size=[(2, 5, 32)])
    assert report.unused == () and report.findings == ()
    assert report.trainable == len(list(model.parameters()))


def test_module_list_never_called_but_its_blocks_ran() -> None:
    # guards: a ModuleList is never called itself; the old check reported its blocks as unused
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return x

    assert torchscope.find_unused_parameters(Loop(), input_size=[(1, 4)]).unused == ()


def test_whole_uncalled_block_tied_and_frozen_parameters() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 4)
            self.unused = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
            self.frozen = nn.Linear(4, 2).requires_grad_(False)
            self.alias = nn.Linear(4, 4)
            self.alias.weight = self.used.weight  # tied to a called module: not unused
            self.alias.bias = self.used.bias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x)
            return out

    report = torchscope.find_unused_parameters(Branchy(), torch.zeros(1, 4))
    assert [(u.names, u.reason) for u in report.unused] == [
        (("unused.0.weight",), UnusedReason.NOT_CALLED),
        (("unused.0.bias",), UnusedReason.NOT_CALLED)]
    (finding,) = report.findings
    assert (finding.code, finding.severity, finding.path) == (
        "unused-parameters", Severity.WARNING, "unused")  # the whole never-called block
    assert "15 values" in finding.message and "module never called" in finding.message
    assert finding.hint is not None and "find_unused_parameters=True" in finding.hint


def test_tied_parameter_listed_once_with_every_name() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2  # nothing is used

    report = torchscope.find_unused_parameters(Tied(), torch.ones(1, 4, requires_grad=True))
    assert [u.names for u in report.unused] == [("a.weight", "b.weight"), ("a.bias",),
                                                ("b.bias",)]
    assert report.trainable == 3


def test_conditional_branch_falls_back_to_a_real_forward() -> None:
    report = torchscope.find_unused_parameters(unused.Conditional(), torch.zeros(2, 8))
    assert report.mode == "real"
    assert any("meta forward failed" in n for n in report.notes)
    assert reasons(report) == {"positive.weight": "module never called",
                               "positive.bias": "module never called"}
    positive = torchscope.find_unused_parameters(unused.Conditional(), torch.ones(2, 8))
    assert set(reasons(positive)) == {"other.weight", "other.bias"}


def test_loss_fn_decides_what_counts() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 2)
            self.b = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), self.b(x)

    both = torchscope.find_unused_parameters(TwoHeads(), input_size=[(1, 4)])
    assert both.unused == ()
    first = torchscope.find_unused_parameters(TwoHeads(), input_size=[(1, 4)],
                                              loss_fn=lambda out: out[0].sum())
    assert reasons(first) == {"b.weight": "output not used", "b.bias": "output not used"}


@pytest.mark.parametrize("mode", ["meta", "fake", "real"])
def test_modes_agree_and_leave_the_model_alone(mode: str) -> None:
    model = unused.Discarded()
    model.body.weight.grad = torch.ones_like(model.body.weight)
    grad = model.body.weight.grad
    before = state_fingerprint(model)
    report = torchscope.find_unused_parameters(model, input_size=[(2, 8)], mode=mode)
    assert report.mode == mode
    assert set(reasons(report)) == {"aux_head.weight", "aux_head.bias"}
    assert_same_state(before, state_fingerprint(model))
    assert model.body.weight.grad is grad and torch.equal(grad, torch.ones_like(grad))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "body.weight")
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_meta_mode_needs_no_parameter_memory() -> None:
    with torch.device("meta"):
        model = gpt2()
    report = torchscope.find_unused_parameters(model, input_size=[(1, 8)], dtypes=["long"])
    assert report.mode in ("meta", "fake")
    assert report.unused == ()
    assert all(p.is_meta for p in model.parameters())


def test_forward_that_raises_leaves_no_trace() -> None:
    model = unused.Discarded()
    before = state_fingerprint(model)
    with pytest.raises(ForwardError, match=r"forward of Discarded raised .*mat1 and mat2"):
        torchscope.find_unused_parameters(model, input_size=[(2, 7)])
    assert_same_state(before, state_fingerprint(model))


def test_bad_input() -> None:
    with pytest.raises(InputSpecError, match=r"model = Tensor is not a torch\.nn\.Module"):
        torchscope.find_unused_parameters(torch.zeros(1), input_size=[(1,)])  # type: ignore[arg-type]
    with pytest.raises(InputSpecError, match=r"needs example inputs"):
        torchscope.find_unused_parameters(unused.Discarded())
    with pytest.raises(InputSpecError, match=r"mode = 'slow' is not one of"):
        torchscope.find_unused_parameters(unused.Discarded(), input_size=[(2, 8)], mode="slow")
    with pytest.raises(InputSpecError, match=r"no tensor that requires a gradient"):
        torchscope.training.default_loss((torch.zeros(2), 3))


def test_render_text_and_json() -> None:
    report = torchscope.find_unused_parameters(unused.Discarded(), input_size=[(2, 8)])
    text = torchscope.render(report, "text")
    assert "2 of 6 trainable tensors get no gradient" in text
    assert "aux_head.weight" in text and "output not used" in text
    data = json.loads(torchscope.render(report, "json"))
    assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
    assert [u["reason"] for u in data["unused"]] == ["output not used"] * 2
    assert str(report) == text
