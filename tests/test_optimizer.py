"""Optimizer coverage: what an optimizer holds compared with the model's trainable
parameters; nothing is changed."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import torchscope
from torchscope.errors import InputSpecError
from torchscope.records import Severity


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.norm = nn.LayerNorm(8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embed.weight


def codes(report: torchscope.OptimizerReport) -> list[tuple[str, Severity]]:
    return [(f.code, f.severity) for f in report.findings]


def test_a_clean_optimizer() -> None:
    model = Net()
    decay = [p for n, p in model.named_parameters() if n in ("embed.weight", "body.weight")]
    no_decay = [model.norm.weight, model.norm.bias, model.body.bias]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    report = torchscope.check_optimizer(model, opt)
    assert report.findings == ()
    assert [(g.index, g.lr, g.weight_decay, g.params, g.numel, g.blocks)
            for g in report.groups] == [(0, 1e-3, 0.1, 2, 144, ("embed", "body")),
                                        (1, 1e-3, 0.0, 3, 24, ("norm", "body"))]


def test_missing_frozen_and_decay_on_biases_and_norms() -> None:
    model = Net()
    model.body.requires_grad_(False)
    opt = torch.optim.AdamW([model.body.weight, model.norm.weight, model.norm.bias],
                            weight_decay=0.01)
    report = torchscope.check_optimizer(model, opt)
    assert codes(report) == [("optimizer-missing", Severity.WARNING),
                             ("optimizer-frozen", Severity.INFO),
                             ("optimizer-decay-no-decay", Severity.INFO),
                             ("optimizer-decay-no-decay", Severity.INFO)]
    missing, frozen, norm, bias = report.findings
    assert "embed.weight" in missing.message and "body" not in missing.message
    assert "body.weight" in frozen.message
    assert "1 bias: norm.bias" in bias.message
    assert "1 norm weight: norm.weight" in norm.message


def test_parameter_in_two_groups() -> None:
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups.append({**opt.param_groups[0], "params": [model.body.weight]})
    report = torchscope.check_optimizer(model, opt)
    assert codes(report) == [("optimizer-duplicate", Severity.ERROR)]
    assert "body.weight (groups 0, 1)" in report.findings[0].message


def test_tied_parameter_listed_twice() -> None:
    model = Net()
    named = [p for _, p in model.named_parameters(remove_duplicate=False)]
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = torch.optim.SGD(named, lr=0.1)
    report = torchscope.check_optimizer(model, opt)
    assert codes(report) == [("optimizer-twice", Severity.ERROR)]
    assert "embed.weight ×2 in group 0" in report.findings[0].message


def test_parameters_of_another_model_and_views() -> None:
    model, other = Net(), Net()
    opt = torch.optim.SGD([*model.parameters(), other.body.weight,
                           model.body.weight.detach()[:2]], lr=0.1)
    report = torchscope.check_optimizer(model, opt)
    assert codes(report) == [("optimizer-foreign", Severity.ERROR)]
    assert "(8, 8) float32" in report.findings[0].message
    shared = torch.optim.SGD([*model.parameters(), model.body.weight.detach()], lr=0.1)
    assert codes(torchscope.check_optimizer(model, shared)) == [
        ("optimizer-twice", Severity.ERROR)]


def test_reads_only() -> None:
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.body(torch.ones(1, 8)).sum().backward()
    opt.step()
    state = {k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in s.items()}
             for k, s in opt.state_dict()["state"].items()}
    grads = [p.grad for p in model.parameters()]
    torchscope.check_optimizer(model, opt)
    after = opt.state_dict()["state"]
    assert state.keys() == after.keys()
    for k in state:
        for n, v in state[k].items():
            assert torch.equal(v, after[k][n]) if isinstance(v, torch.Tensor) else v == after[k][n]
    assert [p.grad for p in model.parameters()] == grads


def test_render_and_bad_input() -> None:
    model = torchscope.examples.MLP()
    report = torchscope.check_optimizer(model, torch.optim.SGD(model.hidden.parameters(), lr=1))
    text = torchscope.render(report, "text")
    assert "SGD on MLP: parameter groups" in text and "optimizer-missing" in text
    data = json.loads(torchscope.render(report, "json"))
    assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
    assert data["groups"][0]["blocks"] == ["hidden"]
    with pytest.raises(InputSpecError, match=r"optimizer = dict has no param_groups list"):
        torchscope.check_optimizer(model, {})  # type: ignore[arg-type]
