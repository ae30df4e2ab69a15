"""Promises 1, 3 and 4 for the training-step analyses and initialization policies: module graphs
with a cycle, deep nesting, TorchScript, exotic dtypes and options of the wrong type each work
or give one clear line, and never change the model."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import torchscope
from torchscope import examples
from torchscope.errors import ArgumentError, InputSpecError, TorchscopeError

# ---------------------------------------------------------------------------------------------
# module graphs with a cycle


def _cyclic() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    model[0]._modules["back"] = model  # a child holding its parent
    return model


def _values(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


CYCLE_CALLS: dict[str, Callable[[nn.Module], tuple[str, ...]]] = {
    "apply_init": lambda m: torchscope.apply_init(m, {"*": "zeros"}, dry_run=True).notes,
    "init_stats": lambda m: torchscope.init_stats(m, {"*": "zeros"}).notes,
    "gradient_flow": lambda m: torchscope.gradient_flow(m, torch.randn(1, 2)).notes,
    "find_nonfinite": lambda m: torchscope.find_nonfinite(m, torch.randn(1, 2)).notes,
    "find_unused_parameters": lambda m: torchscope.find_unused_parameters(
        m, torch.randn(1, 2)).notes,
}


@pytest.mark.parametrize("name", CYCLE_CALLS)
def test_module_cycle_is_walked_once_and_named_in_a_note(name: str) -> None:
    # guards: torch's recursive named_modules(remove_duplicate=False) raised RecursionError
    # (find_unused_parameters blamed the forward); the back edge is now skipped and named
    model = _cyclic()
    before = _values(model)
    notes = CYCLE_CALLS[name](model)
    assert any(n.startswith("the module graph has a cycle: 0.back is the module at (root), its "
                            "own ancestor") for n in notes), notes
    assert all(torch.equal(a, b) for a, b in zip(before, _values(model)))
    assert model[0]._modules["back"] is model


def test_module_cycle_reports_name_each_parameter_once() -> None:
    # guards: the reports of a cyclic model must hold the same names as the acyclic one
    model = _cyclic()
    flow = torchscope.gradient_flow(model, torch.randn(1, 2))
    assert [p.name for p in flow.params] == ["0.weight", "0.bias"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert torchscope.check_optimizer(model, opt).findings == ()
    report = torchscope.apply_init(model, {"*": "zeros"})
    assert [e.name for e in report.entries] == ["0.weight", "0.bias"]
    assert not next(model.parameters()).detach().any()
    assert torchscope.find_unused_parameters(model, torch.randn(1, 2)).unused == ()


# ---------------------------------------------------------------------------------------------
# deep nesting


def _deep(levels: int) -> nn.Module:
    m: nn.Module = nn.Linear(2, 2)
    for _ in range(levels):
        s = nn.Sequential()
        s.add_module("a", m)
        m = s
    return m


def test_init_stats_copies_two_thousand_levels() -> None:
    # guards: init_stats's copy.deepcopy raised RecursionError from 300 levels of nesting
    limit = sys.getrecursionlimit()
    report = torchscope.init_stats(_deep(2000), {"*.weight": "ones", "*": "zeros"})
    assert [s[1:] for s in report.stats] == [(1.0, 0.0), (0.0, 0.0)]
    assert sys.getrecursionlimit() == limit


# ---------------------------------------------------------------------------------------------
# TorchScript


def _scripted(kind: str) -> nn.Module:
    model = examples.MLP()
    if kind == "script":
        return torch.jit.script(model)
    return torch.jit.trace(  # type: ignore[no-untyped-call,no-any-return,unused-ignore]
        model, torch.randn(2, 20))


TORCHSCRIPT_CALLS: dict[str, Callable[[nn.Module], object]] = {
    "gradient_flow": lambda m: [p.name for p in torchscope.gradient_flow(
        m, torch.randn(2, 20)).params],
    "check_optimizer": lambda m: torchscope.check_optimizer(
        m, torch.optim.SGD(m.parameters(), lr=0.1)).findings,
    "find_unused_parameters": lambda m: torchscope.find_unused_parameters(
        m, torch.randn(2, 20)).unused,
    "find_nonfinite": lambda m: torchscope.find_nonfinite(m, torch.randn(2, 20)).found,
    "init_stats": lambda m: [s[1:] for s in torchscope.init_stats(m, {"*": "zeros"}).stats],
    "apply_init": lambda m: len(torchscope.apply_init(m, {"*": "zeros"}, dry_run=True).entries),
}
TORCHSCRIPT_EXPECTED: dict[str, object] = {
    "gradient_flow": ["hidden.weight", "hidden.bias", "output.weight", "output.bias"],
    "check_optimizer": (),
    "find_unused_parameters": (),
    "find_nonfinite": False,
    "init_stats": [(0.0, 0.0)] * 4,
    "apply_init": 4,
}


@pytest.mark.parametrize("kind", ["script", "trace"])
@pytest.mark.parametrize("name", TORCHSCRIPT_CALLS)
def test_torchscript_modules_work(name: str, kind: str) -> None:
    # guards: "get_parameter/get_submodule is not supported on ScriptModules" raised raw (or
    # wrapped as a ForwardError blaming the forward)
    model = _scripted(kind)
    before = _values(model)
    assert TORCHSCRIPT_CALLS[name](model) == TORCHSCRIPT_EXPECTED[name]
    assert all(torch.equal(a, b) for a, b in zip(before, _values(model)))


@pytest.mark.parametrize("mode", ["meta", "fake"])
def test_torchscript_in_a_copy_mode_is_one_line(mode: str) -> None:
    # guards: a scripted copy keeps its real weights; meta/fake mode must say so, not fail
    with pytest.raises(InputSpecError, match=rf"^mode = '{mode}' cannot run a TorchScript "
                       "module .*pass the nn.Module before torch.jit.script"):
        torchscope.find_unused_parameters(_scripted("script"), torch.randn(2, 20),
                                          mode=mode)  # type: ignore[arg-type]


def test_torchscript_unused_parameter_is_found_by_the_graph() -> None:
    # guards: a scripted model's unused parameter must still be reported (autograd graph)
    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.main, self.aux = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.aux(x)
            return self.main(x)  # type: ignore[no-any-return]

    report = torchscope.find_unused_parameters(torch.jit.script(Aux()), torch.randn(1, 4))
    assert [u.name for u in report.unused] == ["aux.weight", "aux.bias"]
    assert report.mode == "real"


# ---------------------------------------------------------------------------------------------
# exotic dtypes

FLOAT8 = [torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
          torch.float8_e8m0fnu]


class _Stored(nn.Module):
    """A linear layer and a frozen parameter of another dtype, unused by the forward."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.w = nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)  # type: ignore[no-any-return]


def _stored(dtype: torch.dtype, value: float = 0.0) -> _Stored:
    if dtype == torch.float4_e2m1fn_x2:
        return _Stored(torch.zeros(2, 2, dtype=torch.uint8).view(dtype))
    if dtype.is_floating_point or dtype.is_complex:
        return _Stored(torch.full((2, 2), value).to(dtype))
    return _Stored(torch.zeros(2, 2, dtype=dtype))


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("dtype", [*FLOAT8, torch.float4_e2m1fn_x2, torch.complex32,
                                   torch.int8, torch.uint16, torch.bool, torch.bfloat16],
                         ids=str)
def test_nonfinite_search_reads_every_dtype(dtype: torch.dtype) -> None:
    # guards: NotImplementedError "sum_cpu" not implemented for 'Float8_e4m3fn' from the
    # finiteness check of parameters (find_nonfinite and check(nonfinite=True))
    model = _stored(dtype)
    assert not torchscope.find_nonfinite(model, input_size=[(1, 2)]).found
    assert torchscope.check(model, input_size=[(1, 2)], nonfinite=True).exit_code == 0
    assert torchscope.init_stats(model, {"*": "keep"}).stats[0][0] == "w"
    assert torchscope.gradient_flow(model, torch.randn(1, 2)).findings == ()


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.complex32],
                         ids=str)
def test_nan_in_an_exotic_dtype_is_found(dtype: torch.dtype) -> None:
    # guards: upcasting must keep NaN visible (float8 and complex32 have no sum kernel)
    report = torchscope.find_nonfinite(_stored(dtype, float("nan")), input_size=[(1, 2)])
    assert (report.phase, report.tensors) == ("parameters", ("w",))


def test_init_stats_measures_float8() -> None:
    # guards: statistics of float8 tensors must be read, not crash
    report = torchscope.init_stats(_stored(torch.float8_e4m3fn), {"w": "ones", "*": "keep"})
    assert report.stats[0] == ("w", 1.0, 0.0)


def test_initializer_without_a_cpu_kernel_is_refused_before_any_change() -> None:
    # guards: normal_ on a float8 CPU tensor raised half-way, after other tensors were filled
    model = _stored(torch.float8_e4m3fn)
    before = _values(model.lin)
    with pytest.raises(TorchscopeError, match=r"normal cannot initialize w \(float8_e4m3fn on "
                       r"the CPU\): .*; initialize it in another dtype and convert"):
        torchscope.apply_init(model, [("lin.*", "normal"), ("w", "normal")])
    assert all(torch.equal(a, b) for a, b in zip(before, _values(model.lin)))


# ---------------------------------------------------------------------------------------------
# options of the wrong type

X = torch.ones(2, 20)

BAD_OPTIONS: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "gradient_flow(depth='x')": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, depth="x"),  # type: ignore[arg-type]
        ArgumentError, r"^gradient_flow: depth = 'x' \(str\) is not an int; pass"),
    "gradient_flow(depth=True)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, depth=True),
        ArgumentError, r"^gradient_flow: depth = True \(bool\) is not an int"),
    "gradient_flow(vanishing='x')": (
        lambda: torchscope.gradient_flow(examples.MLP(), X,
                                         vanishing="x"),  # type: ignore[arg-type]
        ArgumentError, r"^gradient_flow: vanishing = 'x' \(str\) is not a number; pass a "
        r"number such as vanishing=1e-07$"),
    "gradient_flow(exploding=None)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X,
                                         exploding=None),  # type: ignore[arg-type]
        ArgumentError, r"^gradient_flow: exploding = None \(NoneType\) is not a number"),
    "gradient_flow(exploding=nan)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, exploding=float("nan")),
        ArgumentError, r"^gradient_flow: exploding = nan \(float\) is not a number"),
    "gradient_flow(vanishing=-1)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, vanishing=-1),
        InputSpecError, r"^gradient_flow: vanishing = -1 is below 0"),
    "gradient_flow(loss_fn=3)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, loss_fn=3),  # type: ignore[arg-type]
        ArgumentError, r"^gradient_flow: loss_fn = 3 \(int\) is not callable"),
    "gradient_flow(device=3)": (
        lambda: torchscope.gradient_flow(examples.MLP(), X, device=3),
        InputSpecError, r"^device = int is not a torch device"),
    "watch_gradients(depth='x')": (
        lambda: torchscope.watch_gradients(examples.MLP(), depth="x"),  # type: ignore[arg-type]
        ArgumentError, r"^watch_gradients: depth = 'x' \(str\) is not an int"),
    "watch_gradients(vanishing='x')": (
        lambda: torchscope.watch_gradients(examples.MLP(),
                                           vanishing="x"),  # type: ignore[arg-type]
        ArgumentError, r"^watch_gradients: vanishing = 'x' \(str\) is not a number"),
    "watch_gradients(exploding=None)": (
        lambda: torchscope.watch_gradients(examples.MLP(),
                                           exploding=None),  # type: ignore[arg-type]
        ArgumentError, r"^watch_gradients: exploding = None \(NoneType\) is not a number"),
    "find_nonfinite(backward='yes')": (
        lambda: torchscope.find_nonfinite(examples.MLP(), X,
                                          backward="yes"),  # type: ignore[arg-type]
        ArgumentError, r"^find_nonfinite: backward = 'yes' \(str\) is not a bool; pass "
        r"backward=True or backward=False$"),
    "find_nonfinite(loss_fn='sum')": (
        lambda: torchscope.find_nonfinite(examples.MLP(), X,
                                          loss_fn="sum"),  # type: ignore[arg-type]
        ArgumentError, r"^find_nonfinite: loss_fn = 'sum' \(str\) is not callable"),
    "find_nonfinite(device=[1])": (
        lambda: torchscope.find_nonfinite(examples.MLP(), X, device=[1]),
        InputSpecError, r"^device = list is not a torch device"),
    "find_unused_parameters(mode=3)": (
        lambda: torchscope.find_unused_parameters(examples.MLP(), X,
                                                  mode=3),  # type: ignore[arg-type]
        ArgumentError, r"^mode = 3 \(int\) is not a str; pass one of 'auto', 'meta', 'fake', "
        r"'real'$"),
    "find_unused_parameters(loss_fn=1)": (
        lambda: torchscope.find_unused_parameters(examples.MLP(), X,
                                                  loss_fn=1),  # type: ignore[arg-type]
        ArgumentError, r"^find_unused_parameters: loss_fn = 1 \(int\) is not callable"),
    "check_optimizer(param_groups=[3])": (
        lambda: torchscope.check_optimizer(examples.MLP(), type(
            "Opt", (), {"param_groups": [3]})()),
        InputSpecError, r"^check_optimizer: optimizer\.param_groups\[0\] = int is not a dict "
        "with a 'params' list"),
    "check_optimizer(params=None)": (
        lambda: torchscope.check_optimizer(examples.MLP(), type(
            "Opt", (), {"param_groups": [{"params": None}]})()),
        InputSpecError, r"^check_optimizer: optimizer\.param_groups\[0\]\['params'\] = "
        "NoneType is not a list of tensors"),
    "check_optimizer(params=['a'])": (
        lambda: torchscope.check_optimizer(examples.MLP(), type(
            "Opt", (), {"param_groups": [{"params": ["a"]}]})()),
        InputSpecError, r"^check_optimizer: optimizer\.param_groups\[0\]\['params'\] holds a "
        "str, not a tensor"),
    "init_stats(None)": (
        lambda: torchscope.init_stats(None, {"*": "zeros"}),  # type: ignore[arg-type]
        ArgumentError, r"^init_stats: model = NoneType is not a torch\.nn\.Module"),
    "init_stats(input_size='x')": (
        lambda: torchscope.init_stats(examples.MLP(), {"*": "zeros"},
                                      input_size="x"),  # type: ignore[arg-type]
        InputSpecError, r"^input_size = 'x' is not a shape"),
    "init_stats(dtypes=3)": (
        lambda: torchscope.init_stats(examples.LazyMLP(), {"*": "zeros"}, input_size=[(2, 20)],
                                      dtypes=3),  # type: ignore[arg-type]
        InputSpecError, r"^dtypes = 3 is not a list of dtypes"),
    "init_stats(seed='x')": (
        lambda: torchscope.init_stats(examples.MLP(), {"*": "zeros"},
                                      seed="x"),  # type: ignore[arg-type]
        TorchscopeError, r"^seed='x' is not an integer"),
    "apply_init(strict='y')": (
        lambda: torchscope.apply_init(examples.MLP(), {"*": "zeros"},
                                      strict="y"),  # type: ignore[arg-type]
        TorchscopeError, r"^apply_init: strict = 'y' is not a bool"),
    "load_policy(3)": (
        lambda: torchscope.load_policy(3),  # type: ignore[arg-type]
        TorchscopeError, r"^load_policy: path = int is not a file path"),
}


@pytest.mark.parametrize("name", BAD_OPTIONS)
def test_option_of_the_wrong_type_is_one_line_before_any_forward(name: str) -> None:
    # guards: raw TypeErrors from deep inside (depth='x' compared with an int, exploding=None
    # compared with a float, watch_gradients failing only on exit) and options never checked
    call, error, pattern = BAD_OPTIONS[name]
    calls: list[str] = []
    handle = nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: calls.append(type(module).__name__))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(error, match=pattern) as info:
                call()
    finally:
        handle.remove()
    assert isinstance(info.value, TorchscopeError)
    assert "\n" not in str(info.value)
    assert calls == []  # before any forward


def test_watch_gradients_checks_options_when_called() -> None:
    # guards: watch_gradients raised only on exit, after the user's step had run
    with pytest.raises(ArgumentError):
        torchscope.watch_gradients(examples.MLP(), depth="x")  # type: ignore[arg-type]
