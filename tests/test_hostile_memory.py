"""Promise 2 under attack: no memory the question does not need. Example inputs for meta, fake
and auto traces are built on meta or as fake tensors (sizes no machine could hold still
trace), ``check_devices`` in meta/fake mode runs no real forward, and strided meta views are
copied without materializing anything. (File bounds: tests/test_hostile_files.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import torchscope
import torchscope.cost
import torchscope.devices
import torchscope.trace._inputs
import torchscope.training._common
from torchscope import examples, trace

#: 40 TB of float32: a real allocation of these inputs can only fail
HUGE = (10**6, 10**6, 10)


@pytest.fixture
def built_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kind of every example-input tensor torchscope builds from sizes."""
    kinds: list[str] = []
    make = trace.make_inputs

    def spy(plan: Any, device: torch.device) -> tuple[torch.Tensor, ...]:
        out = make(plan, device)
        for t in out:
            fake = type(t).__name__ == "FakeTensor"
            kinds.append("fake" if fake else t.device.type)
        return out

    # every module that builds inputs from sizes holds the name: each one is watched
    for module in (trace, trace._inputs, torchscope.devices, torchscope.training._common,
                   torchscope.cost):
        monkeypatch.setattr(module, "make_inputs", spy)
    return kinds


@pytest.mark.parametrize(("mode", "kind"), [("meta", "meta"), ("fake", "fake"),
                                            ("auto", "meta")])
def test_inputs_from_sizes_take_no_memory(mode: str, kind: str, built_on: list[str]) -> None:
    # guards the bug: --input-size 250,1000,1000 --mode meta allocated 1 GB of real zeros
    report = torchscope.summarize(nn.Linear(10, 8), input_size=[HUGE], mode=mode)
    assert built_on == [kind]
    assert report.outputs == torchscope.TensorSpec((*HUGE[:-1], 8), "float32", kind
                                                   if kind == "meta" else "cpu")


def test_fake_inputs_follow_a_meta_model(built_on: list[str]) -> None:
    model = nn.Linear(10, 8, device="meta")
    result = torchscope.trace_forward(model, input_size=[HUGE], mode="fake")
    assert built_on == ["fake"]
    assert result.outputs == torchscope.TensorSpec((*HUGE[:-1], 8), "float32", "meta")


def test_real_mode_builds_real_inputs_only_when_it_runs(built_on: list[str]) -> None:
    torchscope.summarize(examples.MLP(), input_size=[(2, 20)], mode="real")
    assert built_on == ["cpu"]


def test_auto_builds_real_inputs_only_for_the_real_attempt(built_on: list[str]) -> None:
    class NeedsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if int(x.sum()) > 0:  # meta and fake tensors have no values
                return x
            return self.fc(x)

    report = torchscope.summarize(NeedsValues(), input_size=[(3, 4)])
    assert report.mode == "real"
    assert built_on == ["meta", "fake", "cpu"]  # one build per attempt, real memory last


def test_a_strided_meta_view_is_traced_without_materializing() -> None:
    # guards the bug: a strided view of a 4*10**8-element meta tensor was materialized
    model = nn.Linear(2, 2, device="meta")
    model.weight = nn.Parameter(torch.empty(4 * 10**8, device="meta")[::2].view(2, 10**8))
    copy = torchscope.meta_copy(model)
    assert (copy.weight.shape, copy.weight.stride()) == ((2, 10**8), (2 * 10**8, 2))
    for mode in ("meta", "fake"):
        result = torchscope.trace_forward(model, input_size=[(3, 10**8)], mode=mode)
        assert result.outputs == torchscope.TensorSpec((3, 2), "float32", "meta")


def test_a_strided_meta_view_is_counted_without_byte_ranges(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the bug: summarize() built one byte range per element of a strided view (1.6 GB
    # for a 4*10**8-element meta tensor, then a raw RuntimeError)
    from torchscope.tying import _core

    def refuse(tensors: object) -> object:
        raise AssertionError("a view that never overlaps needs no byte ranges")

    monkeypatch.setattr(_core, "_strided_clusters", refuse)
    model = nn.Linear(2, 2, device="meta")
    model.weight = nn.Parameter(torch.empty(4 * 10**8, device="meta")[::2].view(2, 10**8))
    report = torchscope.summarize(model)
    assert report.total_params == 2 * 10**8 + 2
    assert report.module("").total_params == 2 * 10**8 + 2
    assert torchscope.find_tied(model) == ()


def test_check_devices_meta_mode_never_runs_the_model() -> None:
    ran: list[int] = []

    class Watched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(20, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ran.append(id(self))
            return self.fc(x)

    model = Watched()
    findings = torchscope.check_devices(model, input_size=[(HUGE[0], 20)], mode="meta")
    assert findings == ()
    assert len(ran) == 1  # one forward ran...
    assert ran != [id(model)]  # ...on a fake copy, not on the model


def test_check_meta_mode_runs_no_real_forward() -> None:
    # guards the bug: check --mode meta ran the device check as a real forward of the model
    seen: list[str] = []
    model = examples.MLP()
    model.register_forward_pre_hook(lambda m, a: seen.append(type(m.hidden.weight).__name__
                                                             + ":" + m.hidden.weight.device.type))
    report = torchscope.check(model, input_size=[(2, 20)], mode="meta")
    assert report.mode == "meta"
    assert "Parameter:cpu" not in seen  # only copies ran (fake, then meta)
    assert seen == ["FakeTensor:cpu", "Parameter:meta"]


def test_check_builds_inputs_where_a_meta_model_is() -> None:
    # guards the bug: a meta model got a devices-input error about inputs check built on cpu
    report = torchscope.check(examples.MLP().to("meta"), input_size=[(2, 20)])
    assert [f.code for f in report.findings] == ["devices-meta"]
    assert report.mode == "meta"


def test_check_meta_mode_builds_no_real_inputs(built_on: list[str]) -> None:
    report = torchscope.check(nn.Linear(10, 8), input_size=[HUGE], mode="meta")
    assert report.mode == "meta"
    assert built_on and "cpu" not in built_on  # built on meta and as fake tensors only


def test_check_fake_mode_builds_no_real_inputs(built_on: list[str]) -> None:
    # guards the bug: check --mode fake built its inputs from sizes as real CPU zeros
    report = torchscope.check(nn.Linear(10, 8), input_size=[HUGE], mode="fake")
    assert report.mode == "fake"
    assert built_on and set(built_on) == {"fake"}


@pytest.mark.parametrize(("mode", "kinds"), [("meta", {"meta"}), ("fake", {"fake"}),
                                             ("auto", {"meta"})])
def test_unused_parameters_from_sizes_take_no_memory(mode: str, kinds: set[str],
                                                     built_on: list[str]) -> None:
    # guards the bug: find_unused_parameters built its inputs from sizes as real CPU zeros
    # before it knew which mode would run
    report = torchscope.find_unused_parameters(nn.Linear(10, 8), input_size=[HUGE], mode=mode)
    assert report.mode == ("meta" if mode == "auto" else mode)
    assert set(built_on) == kinds


def test_unused_parameters_real_mode_builds_on_the_model_device(built_on: list[str]) -> None:
    # real inputs from sizes go where the model is (a meta model's inputs go to meta)
    report = torchscope.find_unused_parameters(nn.Linear(10, 8).to("meta"), input_size=[(2, 10)],
                                               mode="fake")
    assert report.mode == "fake" and built_on == ["fake"]
    report = torchscope.find_unused_parameters(nn.Linear(10, 8), input_size=[(2, 10)],
                                               mode="real")
    assert report.mode == "real" and built_on[-1] == "cpu"


@pytest.mark.parametrize(("mode", "kinds"), [("meta", {"meta"}), ("fake", {"fake"}),
                                             ("auto", {"meta"})])
def test_cost_from_sizes_takes_no_memory(mode: str, kinds: set[str],
                                         built_on: list[str]) -> None:
    # guards: estimate_cost built its inputs from sizes as real CPU zeros before it knew which
    # mode would run (HUGE could not even be allocated)
    report = torchscope.estimate_cost(nn.Linear(10, 8), input_size=[HUGE], mode=mode)
    assert report.mode == ("meta" if mode == "auto" else mode)
    assert report.forward_flops == 2 * HUGE[0] * HUGE[1] * 10 * 8
    assert set(built_on) == kinds


def test_summarize_cost_from_sizes_takes_no_memory(built_on: list[str]) -> None:
    # guards: summarize(cost=True) went through the eager build of estimate_cost
    report = torchscope.summarize(nn.Linear(10, 8), input_size=[HUGE], mode="meta", cost=True)
    assert report.cost is not None and report.cost.mode == "meta"
    assert built_on == ["meta", "meta"]  # the trace's inputs, then the cost's


def test_cost_real_mode_builds_where_the_model_is(built_on: list[str]) -> None:
    # real inputs from sizes are built only for the real run
    report = torchscope.estimate_cost(nn.Linear(10, 8), input_size=[(2, 10)], mode="real")
    assert report.mode == "real" and built_on == ["cpu"]


@pytest.mark.parametrize(("call", "message"), [
    ("gradient_flow", r"Linear has meta or uninitialized \(lazy\) parameters"),
    ("find_nonfinite", r"Linear has 2 parameter/buffer tensors on the meta device"),
])
def test_a_meta_model_is_refused_before_any_input_is_built(call: str, message: str,
                                                           built_on: list[str]) -> None:
    # guards: the real step's inputs were built from sizes (real memory, or an allocation
    # error for HUGE) before the meta model was rejected
    with pytest.raises(torchscope.errors.InputSpecError, match=message):
        getattr(torchscope, call)(nn.Linear(10, 8, device="meta"), input_size=[HUGE])
    assert built_on == []
