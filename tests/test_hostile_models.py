"""Promise 3 under attack, every model PyTorch can build: TorchScript, sparse and nested tensors,
quantized weights, module cycles, deep nesting and forwards that call themselves are inspected
or refused in one line, never a raw error from inside."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from models import TRANSFORMERS
from torch import nn

import torchscope
from torchscope import examples
from torchscope._torch import named_modules
from torchscope.errors import InputSpecError
from torchscope.records import Severity
from torchscope.tying import stored_bytes

# ---------------------------------------------------------------------------------------------
# TorchScript


def _scripted() -> nn.Module:
    return torch.jit.script(examples.MLP())  # type: ignore[no-any-return]


def _traced() -> nn.Module:
    return torch.jit.trace(examples.MLP(), torch.zeros(2, 20))  # type: ignore[no-any-return]


TORCHSCRIPT = {"script": _scripted, "trace": _traced}


@pytest.mark.parametrize("kind", TORCHSCRIPT)
def test_torchscript_module_summarizes_like_the_eager_model(kind: str) -> None:
    # guards: the walk indexed TorchScript's parameter wrappers by position (raw TypeError)
    model = TORCHSCRIPT[kind]()
    eager = torchscope.summarize(examples.MLP())
    report = torchscope.summarize(model)
    assert (report.total_params, report.param_bytes) == (eager.total_params, eager.param_bytes)
    assert [m.path for m in report.modules] == ["", "hidden", "act", "output"]
    assert [p.name for p in report.params] == [p.name for p in eager.params]
    assert [r.path for r in torchscope.walk(model)] == ["", "hidden", "act", "output"]
    assert [m.type_name for m in report.modules] == ["MLP", "Linear", "ReLU", "Linear"]
    assert report.modules[0].tags == ("torchscript",)
    assert len(torchscope.list_parameters(model)) == 4
    assert torchscope.find_tied(model) == ()
    assert torchscope.check_ties(model) == ()
    assert "MLP" in torchscope.render(report, "text")


@pytest.mark.parametrize("kind", TORCHSCRIPT)
def test_torchscript_module_traced_summary_is_refused_in_one_line(kind: str) -> None:
    model = TORCHSCRIPT[kind]()
    with pytest.raises(InputSpecError, match=r"^\(root\) \(\w+\) is a TorchScript module: module "
                       r"hooks never run inside TorchScript, so its calls cannot be traced"):
        torchscope.summarize(model, torch.zeros(2, 20))


def test_torchscript_submodule_is_named_when_tracing() -> None:
    model = nn.Sequential(nn.Linear(4, 4), torch.jit.script(nn.Linear(4, 4)))
    report = torchscope.summarize(model)
    assert report.total_params == 40
    with pytest.raises(InputSpecError, match=r"^1 \(RecursiveScriptModule\) is a TorchScript"):
        torchscope.summarize(model, input_size=[(2, 4)], mode="meta")


# ---------------------------------------------------------------------------------------------
# sparse and nested tensors


def _odd_tensor(kind: str) -> torch.Tensor:
    dense = torch.eye(4)
    if kind == "coo":
        return dense.to_sparse()
    if kind == "csr":
        return dense.to_sparse_csr()
    if kind == "csc":
        return dense.to_sparse_csc()
    return torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])


class _Holder(nn.Module):
    def __init__(self, kind: str, as_param: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        t = _odd_tensor(kind)
        if as_param:
            self.w = nn.Parameter(t, requires_grad=False)
        else:
            self.register_buffer("w", t)
        self.again = nn.Module()
        if as_param:
            self.again.w = self.w  # the same tensor under a second name
        else:
            self.again.register_buffer("w", self.w)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse CSC tensor support is in beta:UserWarning")
@pytest.mark.parametrize("as_param", [True, False], ids=["parameter", "buffer"])
@pytest.mark.parametrize("kind", ["coo", "csr", "csc", "nested"])
def test_sparse_and_nested_tensors_count_their_stored_bytes_once(kind: str,
                                                                 as_param: bool) -> None:
    # guards: raw NotImplementedError / RuntimeError from storage and shape reads
    model = _Holder(kind, as_param)
    t = model.w
    report = torchscope.summarize(model)
    numel, nbytes = t.numel(), stored_bytes(t)
    if as_param:
        assert (report.total_params, report.param_bytes) == (6 + numel, 24 + nbytes)
        assert report.trainable_params == 6
    else:
        assert (report.buffer_numel, report.buffer_bytes) == (numel, nbytes)
    (rec,) = [p for p in report.params if p.name == "w"]
    assert rec.aliases == ("again.w",)
    assert (rec.numel, rec.nbytes) == (numel, nbytes)
    assert rec.shape == (None if kind == "nested" else (4, 4))
    assert [g.names for g in torchscope.find_tied(model)] == [("w", "again.w")]
    assert torchscope.check_ties(model) == ()
    assert torchscope.list_parameters(model) == report.params
    assert "again" in torchscope.render(report, "text")


def test_stored_bytes_of_sparse_layouts() -> None:
    coo = torch.eye(3).to_sparse()  # 3 float values + 2x3 int64 indices
    assert stored_bytes(coo) == 3 * 4 + 6 * 8
    csr = torch.eye(3).to_sparse_csr()  # values, 4 row pointers, 3 column indices
    assert stored_bytes(csr) == 3 * 4 + 4 * 8 + 3 * 8
    assert stored_bytes(torch.zeros(2, 3)) == 24


# ---------------------------------------------------------------------------------------------
# quantized weights


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dynamically_quantized_weights_are_named_in_a_note_not_silently_zero() -> None:
    # guards: "0 params, 0 B" with no word about the packed weights
    model = torch.ao.quantization.quantize_dynamic(examples.MLP(), {nn.Linear},
                                                   dtype=torch.qint8)
    report = torchscope.summarize(model)
    assert report.total_params == 0
    assert report.notes == (
        "quantized weights packed outside parameters and buffers (7,946 elements, 8.5 KiB, in "
        "2 modules: hidden._packed_params, output._packed_params) are not counted in the totals",
    )
    assert "quantized weights packed" in torchscope.render(report, "text")


# ---------------------------------------------------------------------------------------------
# cycles


def _cyclic() -> nn.Module:
    model = examples.NestMLP()
    model.net._modules["up"] = model  # a child holding its parent
    return model


def test_module_cycle_is_a_finding_and_the_rest_is_inspected() -> None:
    # guards: RecursionError from the walk, find_tied growing memory without end
    report = torchscope.summarize(_cyclic())
    plain = torchscope.summarize(examples.NestMLP())
    assert (report.total_params, [m.path for m in report.modules]) == (
        plain.total_params, [m.path for m in plain.modules])
    (finding,) = report.findings
    assert (finding.code, finding.severity, finding.path) == (
        "module-cycle", Severity.ERROR, "net.up")
    assert finding.message.startswith("net.up is the module at (root), its own ancestor: the "
                                      "module graph has a cycle")


@pytest.mark.parametrize("call", [
    lambda m: [r.path for r in torchscope.walk(m)],
    lambda m: [p.name for p in torchscope.list_parameters(m)],
    torchscope.find_tied,
    torchscope.check_ties,
    lambda m: torchscope.snapshot_ties(m).groups,
    torchscope.find_lazy,
    torchscope.device_map,
    torchscope.check_devices,
], ids=["walk", "list_parameters", "find_tied", "check_ties", "snapshot_ties", "find_lazy",
        "device_map", "check_devices"])
def test_every_static_function_ends_on_a_cycle(call: Callable[[nn.Module], object]) -> None:
    assert call(_cyclic()) == call(examples.NestMLP())


def test_cycle_below_a_shared_module_ends() -> None:
    # a module registered twice whose subtree leads back to an ancestor
    shared = nn.Sequential(nn.Linear(2, 2))
    model = nn.Sequential(shared, shared)
    shared._modules["back"] = model
    report = torchscope.summarize(model)
    assert report.total_params == 6
    assert [f.code for f in report.findings] == ["module-cycle", "tie-safetensors"]
    assert [g.names for g in torchscope.find_tied(model)] == [
        ("0.0.weight", "1.0.weight"), ("0.0.bias", "1.0.bias")]


# ---------------------------------------------------------------------------------------------
# deep nesting


def _deep(levels: int) -> nn.Module:
    m: nn.Module = nn.Linear(2, 2)
    for _ in range(levels):
        s = nn.Sequential()
        s.add_module("a", m)
        m = s
    return m


DEEP_CALLS: dict[str, Callable[[nn.Module], object]] = {
    "summarize": lambda m: torchscope.summarize(m).total_params,
    "walk": lambda m: len(list(torchscope.walk(m))),
    "list_parameters": lambda m: len(torchscope.list_parameters(m)),
    "find_tied": torchscope.find_tied,
    "check_ties": torchscope.check_ties,
    "compare_ties": lambda m: torchscope.compare_ties(torchscope.snapshot_ties(m), m),
    "find_lazy": torchscope.find_lazy,
    "check_lazy": torchscope.check_lazy,
    "check_devices": torchscope.check_devices,
    "device_map": torchscope.device_map,
    "check_devices_traced": lambda m: torchscope.check_devices(m, input_size=[(1, 2)]),
    "summarize_meta": lambda m: len(torchscope.summarize(m, input_size=[(1, 2)],
                                                         mode="meta").modules[-1].calls),
    "summarize_fake": lambda m: len(torchscope.summarize(m, input_size=[(1, 2)],
                                                         mode="fake").modules[-1].calls),
    "summarize_real": lambda m: len(torchscope.summarize(m, torch.zeros(1, 2)).modules[-1].calls),
    "trace_forward": lambda m: len(torchscope.trace_forward(m, input_size=[(1, 2)]).calls),
    "meta_copy": lambda m: next(torchscope.meta_copy(m).parameters(recurse=False), None) is None,
    "check": lambda m: torchscope.check(m, input_size=[(1, 2)]) is not None,
    "find_unused_parameters": lambda m: torchscope.find_unused_parameters(
        m, input_size=[(1, 2)]) is not None,
    "find_nonfinite": lambda m: torchscope.find_nonfinite(m, input_size=[(1, 2)]) is not None,
    "gradient_flow": lambda m: torchscope.gradient_flow(m, input_size=[(1, 2)]) is not None,
    "estimate_cost": lambda m: torchscope.estimate_cost(m, input_size=[(1, 2)]) is not None,
    "check_optimizer": lambda m: torchscope.check_optimizer(
        m, torch.optim.SGD([p for _, sub in named_modules(m) for p in sub._parameters.values()],
                           lr=0.1)) is not None,
    "apply_init": lambda m: torchscope.apply_init(
        m, [{"match": "*.weight", "init": "zeros"}], dry_run=True) is not None,
    "infer_lazy_shapes": lambda m: torchscope.infer_lazy_shapes(m, input_size=[(1, 2)]) == (),
    "to_dot": lambda m: torchscope.to_dot(torchscope.summarize(
        m, input_size=[(1, 2)], follow_functions=True)).startswith("digraph"),
    "render_text": lambda m: len(torchscope.render(torchscope.summarize(m), "text")) > 0,
    "render_json": lambda m: len(torchscope.render(torchscope.summarize(m), "json")) > 0,
}


@pytest.mark.parametrize("name", DEEP_CALLS)
def test_two_thousand_levels_of_nesting(name: str) -> None:
    # guards: RecursionError from recursive named_modules()
    limit = sys.getrecursionlimit()
    assert limit < 2000 * 3  # deeper than a recursive walk can go
    result = DEEP_CALLS[name](_deep(2000))
    expected = {"summarize": 6, "walk": 2001, "list_parameters": 2, "find_tied": (),
                "check_ties": (), "compare_ties": (), "find_lazy": (), "check_lazy": (),
                "check_devices": (), "device_map": {"cpu": ("(root)",)},
                "check_devices_traced": (),
                "summarize_meta": 1, "summarize_fake": 1, "summarize_real": 1,
                "trace_forward": 2001}
    assert result == expected.get(name, True)
    assert sys.getrecursionlimit() == limit


def test_deep_lazy_module_found_at_its_path() -> None:
    model = _deep(1500)
    model.get_submodule(".".join(["a"] * 1500))._modules["lazy"] = nn.LazyLinear(3)
    (rec,) = torchscope.find_lazy(model)
    assert rec.path == ".".join(["a"] * 1501).removesuffix("a") + "lazy"


# ---------------------------------------------------------------------------------------------
# forwards that call themselves


class _Recursive(nn.Module):
    """Flattens leading dimensions by calling itself."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            return self(x.flatten(0, 1))  # type: ignore[no-any-return]
        return self.lin(x)  # type: ignore[no-any-return]


class _Split(nn.Module):
    """Calls itself once per row."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            return torch.cat([self(x[:1]), self(x[1:])])
        return self.lin(x)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["real", "meta", "fake", "auto"])
@pytest.mark.parametrize("cls", [_Recursive, _Split])
def test_forward_calling_itself_is_traced_per_call(cls: type[nn.Module], mode: str) -> None:
    report = torchscope.summarize(cls(), input_size=[(2, 3, 4)] if cls is _Recursive
                                  else [(2, 4)], mode=mode)
    calls = {m.path: len(m.calls) for m in report.modules}
    assert calls == ({"": 2, "lin": 1} if cls is _Recursive else {"": 3, "lin": 2})
    root = report.modules[0].calls
    assert [c.index for c in root] == sorted(c.index for c in root)


# ---------------------------------------------------------------------------------------------
# one walk


@pytest.mark.parametrize("name", [*TRANSFORMERS, "SharedMLP", "LazyMLP"])
def test_summary_ties_and_lazy_findings_equal_the_standalone_checks(name: str) -> None:
    builders: dict[str, Callable[[], nn.Module]] = {
        **TRANSFORMERS, "SharedMLP": examples.SharedMLP, "LazyMLP": examples.LazyMLP}
    model = builders[name]()
    report = torchscope.summarize(model)
    assert report.tied == torchscope.find_tied(model)
    expected = (*torchscope.check_ties(model), *torchscope.check_lazy(model))
    assert report.findings == expected


def test_summary_reports_a_broken_declared_tie_from_its_one_walk() -> None:
    model = TRANSFORMERS["gpt2"]()
    model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
    report = torchscope.summarize(model)
    assert [f.code for f in report.findings] == ["tie-untied"]
    assert report.tied == ()


class _Wrapper(torch.Tensor):
    """A wrapper tensor subclass (as DTensor-like libraries make them): no storage of its own."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> _Wrapper:
        made: _Wrapper = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, inner.shape, dtype=inner.dtype)
        return made

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        def unwrap(a: Any) -> Any:
            return a.inner if isinstance(a, _Wrapper) else a

        out = func(*map(unwrap, args), **{k: unwrap(v) for k, v in (kwargs or {}).items()})
        return _Wrapper(out) if isinstance(out, torch.Tensor) else out


class _RaisingTorchFunction(torch.Tensor):
    """A subclass whose __torch_function__ raises on everything (metadata reads included)."""

    @classmethod
    def __torch_function__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this tensor refuses every torch function")


def _odd_tensor_model(kind: str) -> nn.Module:
    model = nn.Module()
    model.fc = nn.Linear(3, 3)
    if kind == "wrapper":
        model.p = nn.Parameter(_Wrapper(torch.randn(4, 4)))
    else:
        model.register_buffer("b", torch.zeros(3).as_subclass(_RaisingTorchFunction))
    return model


@pytest.mark.parametrize("kind", ["wrapper", "raising-torch-function"])
@pytest.mark.parametrize("call", ["summarize", "find_tied", "check_ties", "check", "check_devices",
                                  "device_map", "list_parameters", "to_dot"])
def test_tensor_subclasses_are_inspected_as_tensors(kind: str, call: str) -> None:
    # guards the bugs: a wrapper subclass (no storage) raised "invalid python storage" from the
    # walk and the tie search; a buffer whose __torch_function__ raises made every static
    # analysis raise it, although metadata needs no torch function
    model = _odd_tensor_model(kind)
    if call == "to_dot":
        assert "fc" in torchscope.to_dot(torchscope.summarize(model))
    else:
        getattr(torchscope, call)(model)
    report = torchscope.summarize(model)
    assert report.total_params == 12 + (16 if kind == "wrapper" else 0)
    assert report.buffer_numel == (0 if kind == "wrapper" else 3)
