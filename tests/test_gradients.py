"""Gradient flow after one backward: norms per parameter and block, vanishing and exploding
blocks by stated thresholds, parameters without gradient; the user's gradients untouched."""

from __future__ import annotations

import json
import math

import pytest
import torch
from models import assert_same_state, gpt2, state_fingerprint
from torch import nn

import torchscope
from torchscope.errors import InputSpecError, TorchscopeError


def test_numbers_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = torchscope.examples.MLP()
    x = torch.randn(4, 20)
    report = torchscope.gradient_flow(model, x)
    reference = torchscope.examples.MLP()
    reference.load_state_dict(model.state_dict())
    reference(x).sum().backward()
    w, g = reference.hidden.weight.detach(), reference.hidden.weight.grad
    assert g is not None
    row = next(p for p in report.params if p.name == "hidden.weight")
    assert row.grad_norm == pytest.approx(float(g.norm()), rel=1e-5)
    assert row.ratio == pytest.approx(float(g.norm() / w.norm()), rel=1e-5)
    assert row.zero_share == pytest.approx(float((g == 0).float().mean()))
    block = next(b for b in report.blocks if b.block == "hidden")
    b = reference.hidden.bias.grad
    assert b is not None
    assert block.grad_norm == pytest.approx(math.hypot(float(g.norm()), float(b.norm())),
                                            rel=1e-5)
    assert report.loss == pytest.approx(float(reference(x).sum().detach()), rel=1e-5)
    assert [b.block for b in report.blocks] == ["hidden", "output"]
    assert report.findings == ()


def test_vanishing_exploding_and_missing_gradients() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1), nn.Linear(1, 1))
    with torch.no_grad():
        model[1].weight.zero_()  # nothing flows back to block 0
        model[2].weight.fill_(1e4)  # block 1 sees huge gradients

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.spare = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(x)
            return out

    report = torchscope.gradient_flow(Skip(), torch.ones(2, 4), depth=2)
    codes = {(f.code, f.path) for f in report.findings}
    assert ("gradients-vanishing", "net.0") in codes
    assert ("gradients-exploding", "net.1") in codes
    assert ("gradients-none", "spare") in codes
    assert report.none_grads == ("spare.weight", "spare.bias")
    vanishing = next(f for f in report.findings if f.code == "gradients-vanishing")
    assert "below 1e-07" in vanishing.message and "(all zero)" in vanishing.message
    loose = torchscope.gradient_flow(Skip(), torch.ones(2, 4), exploding=1e12)
    assert "gradients-exploding" not in {f.code for f in loose.findings}


def test_nonfinite_gradients_are_errors() -> None:
    class Sqrt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sqrt(self.lin(x) * 0)

    report = torchscope.gradient_flow(Sqrt(), torch.ones(1, 2))
    (finding,) = [f for f in report.findings if f.code == "gradients-nonfinite"]
    assert finding.severity is torchscope.Severity.ERROR
    assert "find_nonfinite" in (finding.hint or "")


def test_gradient_flow_leaves_grads_and_state() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.2), nn.Linear(4, 1))
    model[0].weight.grad = torch.full((4, 4), 7.0)
    grad = model[0].weight.grad
    x = torch.randn(3, 4)
    before = state_fingerprint(model)
    torchscope.gradient_flow(model, x)
    assert_same_state(before, state_fingerprint(model))
    assert model[0].weight.grad is grad and bool((grad == 7).all())
    assert model[3].weight.grad is None


def test_watch_gradients_around_the_users_step() -> None:
    model = torchscope.examples.NestMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torchscope.watch_gradients(model, depth=1) as g:
        model(torch.ones(2, 20)).pow(2).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(v is not None for v in grads.values())  # the user's gradients stay
    assert [b.block for b in g.blocks] == ["net", "linear"]
    assert g.report is not None and g.none_grads == ()
    opt.step()
    with pytest.raises(TorchscopeError, match=r"read after the with-block ends"):
        with torchscope.watch_gradients(model) as early:
            early.blocks  # noqa: B018


def test_transformer_blocks() -> None:
    torch.manual_seed(0)
    model = gpt2()
    ids = torch.randint(0, 1000, (1, 8))
    report = torchscope.gradient_flow(model, ids, depth=3,
                                      loss_fn=lambda out: out.logits.logsumexp(-1).mean())
    blocks = [b.block for b in report.blocks]
    assert blocks[:3] == ["transformer.wte", "transformer.wpe", "transformer.h.0"]
    assert "transformer.h.1" in blocks
    assert report.none_grads == ()


def test_render_and_bad_input() -> None:
    report = torchscope.gradient_flow(torchscope.examples.MLP(), torch.ones(2, 20))
    data = json.loads(torchscope.render(report, "json"))
    assert data["schema_version"] == torchscope.records.SCHEMA_VERSION
    assert [b["block"] for b in data["blocks"]] == ["hidden", "output"]
    text = torchscope.render(report, "text", params=True)
    assert "Gradient flow" in text and "hidden.weight" in text
    with pytest.raises(InputSpecError, match=r"depth = 0 must be at least 1"):
        torchscope.gradient_flow(torchscope.examples.MLP(), torch.ones(2, 20), depth=0)
    with pytest.raises(InputSpecError, match=r"meta or uninitialized \(lazy\) parameters"):
        torchscope.gradient_flow(torchscope.examples.LazyMLP(), torch.ones(2, 20))


def test_inputs_from_sizes_go_where_the_model_is_and_never_to_meta() -> None:
    # guards: device="meta" built meta inputs for a real step, which then failed with a
    # device error from inside the forward
    report = torchscope.gradient_flow(torchscope.examples.MLP(), input_size=[(2, 20)])
    assert report.none_grads == ()
    with pytest.raises(InputSpecError, match=r"gradient_flow: device = 'meta'"):
        torchscope.gradient_flow(torchscope.examples.MLP(), input_size=[(2, 20)],
                                 device="meta")
