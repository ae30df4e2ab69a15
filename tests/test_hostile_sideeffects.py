"""Promise 1 under attack: no side effect on the model or on global state, whatever the forward
does, in every mode (real, meta, fake), also when the forward raises.

Each hostile forward below does one thing a real-world forward does (writes a parameter in
place, flips requires_grad, caches an activation, registers a parameter, runs a backward,
changes a global default); every case asserts the exact state afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import torchscope
from torchscope import examples
from torchscope.errors import ForwardError, InitPolicyError
from torchscope.trace import _guard

MODES = ("real", "meta", "fake")


def _bytes(model: nn.Module) -> dict[str, bytes]:
    """The state dict as raw bytes: bit-identical means equal here (NaNs included)."""
    # (a copy first: a storage shared with NumPy can no longer be resized)
    return {k: v.detach().cpu().clone().reshape(-1).view(torch.uint8).numpy().tobytes()
            for k, v in model.state_dict().items()}


def _versions(model: nn.Module) -> dict[str, int]:
    return {k: v._version for k, v in model.state_dict(keep_vars=True).items()}


def _flags(model: nn.Module) -> dict[str, Any]:
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: None if p.grad is None else id(p.grad) for n, p in model.named_parameters()},
        "attrs": {n: sorted(m.__dict__) for n, m in model.named_modules()},
        "params": {n: id(p) for n, p in model.named_parameters()},
        "modules": {n: id(m) for n, m in model.named_modules()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks))
                  for n, m in model.named_modules()},
    }


def _globals() -> dict[str, Any]:
    return {
        "dtype": torch.get_default_dtype(),
        "device": torch.get_default_device(),
        "grad": torch.is_grad_enabled(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
        "anomaly": (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        "autocast": (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")),
        "function_modes": torch._C._len_torch_function_stack(),
        "dispatch_modes": torch._C._len_torch_dispatch_stack(),  # type: ignore[attr-defined]
        "torch_rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "np_rng": np.random.get_state()[1].tobytes(),  # type: ignore[index]
        "matmul": torch.get_float32_matmul_precision(),
    }


def _assert_same_globals(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in before:
        if isinstance(before[key], torch.Tensor):
            assert torch.equal(before[key], after[key]), key
        else:
            assert before[key] == after[key], key


# ---------------------------------------------------------------------------------------------
# hostile forwards


class _Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.ones(4))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x)) * self.scale


class ClampsWeight(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data.clamp_(0.0, 0.01)  # .data: no version bump, invisible to autograd
        return self.body(x)


class WritesBuffer(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.scale.mul_(2.0)
        return self.body(x)


class FlipsRequiresGrad(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.bias.requires_grad_(False)
        return self.body(x)


class CachesActivation(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.last = y  # keeps an activation alive
        self.calls = getattr(self, "calls", 0) + 1
        return y


class RegistersThings(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.extra = nn.Parameter(torch.zeros(1, device=x.device))
        self.register_buffer("seen", torch.zeros(1, device=x.device))
        self.fc = nn.Linear(4, 4, device=x.device)  # a submodule replaced
        self.head = nn.Identity()  # a submodule added
        return self.body(x)


class BackwardInside(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            self.fc(x.detach().float()).sum().backward()
        return self.body(x)


class ChangesGlobals(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.set_anomaly_enabled(True)
        torch.set_autocast_enabled("cpu", True)
        torch.set_float32_matmul_precision("medium")
        torch.manual_seed(123)
        random.seed(5)
        np.random.seed(5)
        torch.set_default_device("meta")
        _Leaked().__enter__()  # a dispatch mode pushed and never popped
        return self.body(x)


class _Leaked(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class Raises(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data.zero_()
        self.scale.add_(1.0)
        self.last = x
        torch.set_default_dtype(torch.float64)
        raise RuntimeError("boom in the user's forward")


class RenormEmbedding(nn.Module):
    """A stock Embedding with max_norm renormalizes the rows it looks up, in place."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4, max_norm=0.1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.emb(ids)


class FreesStorage(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.fc.weight.untyped_storage().resize_(0)  # what a sharding wrapper does between calls
        return y


HOSTILE: dict[str, Callable[[], nn.Module]] = {
    "clamps-weight": ClampsWeight,
    "writes-buffer": WritesBuffer,
    "flips-requires-grad": FlipsRequiresGrad,
    "caches-activation": CachesActivation,
    "registers-things": RegistersThings,
    "backward-inside": BackwardInside,
    "changes-globals": ChangesGlobals,
}


@pytest.fixture
def clean_globals() -> Iterator[None]:
    """Put global state back even when torchscope failed to (so one failure stays one)."""
    state = _globals()
    yield
    torch.set_default_dtype(state["dtype"])
    torch.set_default_device(None)
    torch.use_deterministic_algorithms(False)
    torch.set_anomaly_enabled(False)
    torch.set_autocast_enabled("cpu", False)
    torch.set_float32_matmul_precision(state["matmul"])
    while torch._C._len_torch_dispatch_stack() > state["dispatch_modes"]:  # type: ignore[attr-defined]
        torch._C._pop_torch_dispatch_stack(None)  # type: ignore[attr-defined]


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = HOSTILE[name]()
    model.train()
    return model


@pytest.fixture(params=["snapshot", "copy-on-write"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the guard keeps values: one copy up front (small models) or a copy of each
    tensor right before its first write (large ones: forced here with a zero threshold)."""
    if request.param == "copy-on-write":
        monkeypatch.setattr(_guard, "_SNAPSHOT_BYTES", 0)
    return str(request.param)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_summarize_undoes_what_the_forward_did(name: str, mode: str, strategy: str,
                                               clean_globals: None) -> None:
    model = _model(name)
    x = torch.randn(3, 4)
    before, versions, flags, glob = _bytes(model), _versions(model), _flags(model), _globals()
    torchscope.summarize(model, x, mode=mode)
    assert _bytes(model) == before
    assert _versions(model) == versions
    assert _flags(model) == flags
    _assert_same_globals(glob, _globals())


@pytest.mark.parametrize("mode", MODES)
def test_a_raising_forward_leaves_everything_as_it_was(mode: str, strategy: str,
                                                       clean_globals: None) -> None:
    model = Raises().train()
    x = torch.randn(3, 4)
    before, versions, flags, glob = _bytes(model), _versions(model), _flags(model), _globals()
    with pytest.raises(ForwardError, match=rf"forward of Raises raised .* in {mode} mode.*"
                                           r"RuntimeError: boom in the user's forward"):
        torchscope.summarize(model, x, mode=mode)
    assert _bytes(model) == before
    assert _versions(model) == versions
    assert _flags(model) == flags
    _assert_same_globals(glob, _globals())


@pytest.mark.parametrize("mode", MODES)
def test_embedding_max_norm_renormalization_is_undone(mode: str, strategy: str) -> None:
    torch.manual_seed(0)
    model = RenormEmbedding()
    with torch.no_grad():
        model.emb.weight.mul_(10.0)  # rows far above max_norm: a lookup rewrites them
    before, versions = _bytes(model), _versions(model)
    torchscope.summarize(model, torch.tensor([[1, 2, 3]]), mode=mode)
    assert _bytes(model) == before
    assert _versions(model) == versions


# ---------------------------------------------------------------------------------------------
# a backward pending outside the call


class UsesBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.full((4,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x) * self.scale)


CALLS: dict[str, Callable[[nn.Module, torch.Tensor], object]] = {
    "summarize-real": lambda m, x: torchscope.summarize(m, x, mode="real"),
    "summarize-meta": lambda m, x: torchscope.summarize(m, x, mode="meta"),
    "summarize-fake": lambda m, x: torchscope.summarize(m, x, mode="fake"),
    "trace-real": lambda m, x: torchscope.trace_forward(m, x, mode="real"),
    "check-devices": lambda m, x: torchscope.check_devices(m, x),
    "check-devices-fake": lambda m, x: torchscope.check_devices(m, x, mode="fake"),
    "empty-state-guard": lambda m, x: _empty_guard(m),
    "apply-init-dry-run": lambda m, x: torchscope.apply_init(m, {"*": "zeros"}, dry_run=True),
}


def _empty_guard(model: nn.Module) -> None:
    with torchscope.state_guard(model):
        pass


@pytest.mark.parametrize("call", list(CALLS))
def test_a_pending_backward_survives_the_call(call: str, strategy: str) -> None:
    # guards the bug: restoring state wrote into every buffer, bumping its version counter, so
    # a backward pending outside raised "modified by an inplace operation"
    torch.manual_seed(0)
    model = UsesBuffer().train()
    out = model(torch.randn(3, 4)).sum()
    versions = _versions(model)
    CALLS[call](model, torch.randn(3, 4))
    assert _versions(model) == versions
    out.backward()
    assert model.fc.weight.grad is not None


def test_a_written_buffer_gets_its_version_back_too(strategy: str) -> None:
    # the forward's own in-place write is undone bytes and version both: autograd sees what
    # it saved
    torch.manual_seed(0)
    model = WritesBuffer().train()
    out = (model.fc(torch.randn(3, 4)) * model.scale).sum()
    before, versions = _bytes(model), _versions(model)
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert (_bytes(model), _versions(model)) == (before, versions)
    out.backward()
    assert model.fc.weight.grad is not None


def test_a_parameter_storage_freed_by_the_forward_comes_back(strategy: str) -> None:
    # guards the bugs: the guard read and wrote a freed storage by its old address (snapshot);
    # copy-on-write never saw the storage method that freed it (no dispatch mode sees it)
    torch.manual_seed(0)
    model = FreesStorage().train()
    before, versions = _bytes(model), _versions(model)
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert model.fc.weight.untyped_storage().nbytes() == 64
    assert (_bytes(model), _versions(model)) == (before, versions)


def test_a_grad_accumulated_inside_the_forward_is_undone(strategy: str) -> None:
    torch.manual_seed(0)
    model = BackwardInside()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    grad_before = model.fc.weight.grad.clone()
    grad_id = id(model.fc.weight.grad)
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert id(model.fc.weight.grad) == grad_id
    assert torch.equal(model.fc.weight.grad, grad_before)
    assert model.fc.bias.grad is None


@pytest.mark.parametrize(("strategy", "modes_inside"), [("snapshot", 0), ("copy-on-write", 1)])
def test_state_guard_leaves_no_mode_behind(strategy: str, modes_inside: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if strategy == "copy-on-write":
        monkeypatch.setattr(_guard, "_SNAPSHOT_BYTES", 0)
    model = WritesBuffer().train()
    before, versions = _bytes(model), _versions(model)
    with torchscope.state_guard(model):
        inside = torch._C._len_torch_dispatch_stack()  # type: ignore[attr-defined]
        model(torch.randn(3, 4))
    assert inside == modes_inside  # the copy-on-write watcher only for large models
    assert torch._C._len_torch_dispatch_stack() == 0  # type: ignore[attr-defined]
    assert (_bytes(model), _versions(model)) == (before, versions)


def test_state_guard_refuses_what_is_not_a_module() -> None:
    with pytest.raises(torchscope.InputSpecError,
                       match=r"^state_guard: model = NoneType is not a torch.nn.Module"), \
            torchscope.state_guard(None):  # type: ignore[arg-type]
        pass


# ---------------------------------------------------------------------------------------------
# apply_init: all or nothing


@pytest.mark.parametrize(
    ("initializer", "message"),
    [
        ("uniform(5.0, -5.0)", r"has a=5\.0 > b=-5\.0; give a < b"),
        ("uniform(-1e999, 1e999)", r"has a=-inf; give a finite number"),
        ("normal(std=-1.0)", r"has std=-1\.0; std cannot be negative"),
        ("normal(mean=1e999)", r"has mean=inf; give a finite number"),
        ("trunc_normal(a=2.0, b=-2.0)", r"has a=2\.0 > b=-2\.0"),
        ("sparse(sparsity=1.5)", r"has sparsity=1\.5; give a fraction in \[0, 1\]"),
        ("xavier_uniform(gain=-1.0)", r"has gain=-1\.0; gain cannot be negative"),
        ("uniform(5.0)", r"has a=5\.0 > b=1\.0"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_apply_init_checks_every_initializer_before_any_change(
        initializer: str, message: str, dry_run: bool) -> None:
    model = examples.MLP()
    before = _bytes(model)
    with pytest.raises(InitPolicyError, match=rf"^policy rule #1 \('\*\.bias'\): initializer "
                                              rf".*{message}"):
        torchscope.apply_init(model, {"*.weight": "zeros", "*.bias": initializer},
                              dry_run=dry_run)
    assert _bytes(model) == before


def test_apply_init_puts_everything_back_when_a_callable_raises() -> None:
    model = examples.MLP()
    before = _bytes(model)

    def half_way(t: torch.Tensor) -> None:
        t.fill_(7.0)
        raise ValueError("broken initializer")

    with pytest.raises(InitPolicyError, match=r"raised ValueError on output\.bias: broken "
                                              r"initializer; every tensor was put back"):
        torchscope.apply_init(model, [("hidden.*", "zeros"), ("output.weight", "ones"),
                                      ("output.bias", half_way)])
    assert _bytes(model) == before


class WritesOneOfMany(nn.Module):
    """Many small layers side by side in memory (the snapshot merges them into a few address
    regions); the forward writes through ``.data`` into one layer in the middle."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(300))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layers[150].weight.data[3, 4] = 7.0
        for layer in self.layers:
            x = layer(x)
        return x


class OverlappingStorages(nn.Module):
    """Two parameters whose distinct storages cover the same bytes (``frombuffer`` twice on
    one buffer); the forward writes into the longer one, past the end of the shorter."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = bytearray(4 * 8192)
        self.long = nn.Parameter(torch.frombuffer(self.memory, dtype=torch.float32),
                                 requires_grad=False)
        self.short = nn.Parameter(torch.frombuffer(self.memory, dtype=torch.float32, count=4,
                                                   offset=16), requires_grad=False)
        with torch.no_grad():
            self.long.uniform_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.long.data[-1] = -1.0
        return x * self.short.sum()


@pytest.mark.parametrize("model_type", [WritesOneOfMany, OverlappingStorages])
def test_a_write_anywhere_in_a_merged_region_comes_back(model_type: type[nn.Module],
                                                        strategy: str) -> None:
    # guards the snapshot's region compare: storages are copied as merged address regions and
    # a differing region is halved down to the storages it touches; a write in one storage of
    # hundreds, or in a storage another one overlaps, must still be found and put back
    torch.manual_seed(0)
    model = model_type()
    before, versions = _bytes(model), _versions(model)
    torchscope.summarize(model, torch.randn(2, 8), mode="real")
    assert _bytes(model) == before
    assert _versions(model) == versions


def test_init_stats_leaves_every_random_state_as_it_was() -> None:
    # guards: init_stats measures a copy; an initializer drawing from torch's, Python's or
    # NumPy's global generator must not move the caller's
    def draws_everywhere(t: torch.Tensor) -> None:
        with torch.no_grad():
            t.normal_().add_(random.random() + float(np.random.rand()))

    model = examples.MLP()  # building it draws from torch's RNG: before the snapshot
    before = _globals()
    report = torchscope.init_stats(model, {"*": draws_everywhere})
    assert all(mean is not None for _, mean, _ in report.stats)
    _assert_same_globals(before, _globals())


# -- the model's tensors re-pointed, hooked, re-classed; containers and generators -----------


class RepointsData(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.fc.bias.data = torch.zeros(7)  # Tensor.set_data: another storage, shape
        return y


class ConvertsItself(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.double()  # Module._apply: every parameter and buffer re-pointed to float64 data
        return y


class HooksAParameter(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.register_hook(lambda g: g * 0)
        self.fc.bias.register_post_accumulate_grad_hook(lambda p: None)
        return self.body(x)


class ParametrizesItself(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.nn.utils import parametrize

        if not parametrize.is_parametrized(self.fc):
            parametrize.register_parametrization(self.fc, "weight", _Symmetric())
        return self.body(x)


class _Symmetric(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (w + w.T) / 2


class FillsContainers(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.cache: dict[str, torch.Tensor] = {}
        self.cos_cache = torch.zeros(4)  # a plain tensor attribute, not a buffer
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        self.cache["last"] = x
        self.cos_cache += 1
        self.fc.weight.calls = 1  # an attribute set on the Parameter itself
        return self.body(x) + torch.rand(4, generator=self.gen)


REPOINTING: dict[str, Callable[[], nn.Module]] = {
    "repoints-data": RepointsData,
    "converts-itself": ConvertsItself,
    "hooks-a-parameter": HooksAParameter,
    "parametrizes-itself": ParametrizesItself,
    "fills-containers": FillsContainers,
}


def _layout(model: nn.Module) -> dict[str, Any]:
    """Everything a re-pointing, hooking or re-classing forward could change."""
    return {
        "tensors": {k: (v.data_ptr(), tuple(v.shape), v.dtype, v.stride())
                    for k, v in model.state_dict(keep_vars=True).items()},
        "classes": {n: type(m) for n, m in model.named_modules()},
        "tensor hooks": {n: (len(p._backward_hooks or {}),
                             len(getattr(p, "_post_accumulate_grad_hooks", None) or {}))
                         for n, p in model.named_parameters()},
        "tensor attributes": {n: dict(vars(p)) for n, p in model.named_parameters()},
        "plain": {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict)
                      else v.clone() if isinstance(v, torch.Tensor)
                      else v.get_state() if isinstance(v, torch.Generator) else v)
                  for k, v in vars(model).items() if not k.startswith("_")},
    }


def _same_layout(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["tensors"] == b["tensors"]
    assert a["classes"] == b["classes"]
    assert a["tensor hooks"] == b["tensor hooks"]
    assert a["tensor attributes"] == b["tensor attributes"]
    assert a["plain"].keys() == b["plain"].keys()
    for key, before in a["plain"].items():
        after = b["plain"][key]
        if isinstance(before, torch.Tensor):
            assert torch.equal(before, after), key
        elif isinstance(before, list):
            assert [id(v) for v in before] == [id(v) for v in after], key
        elif isinstance(before, dict):
            assert {k: id(v) for k, v in before.items()} == {k: id(v) for k, v in after.items()}
        else:
            assert before == after, key


@pytest.mark.parametrize("name", list(REPOINTING))
def test_repointed_hooked_or_reclassed_tensors_come_back(name: str, strategy: str) -> None:
    # guards the bugs: `.data = ...` and `module.double()` in a forward left parameters of
    # another shape and dtype; hooks registered on a parameter stayed (zeroing every later
    # gradient); a parametrization left the module's class swapped (its next forward raised);
    # lists, dicts, tensor attributes and generators filled in place kept activations alive
    torch.manual_seed(0)
    model = REPOINTING[name]().train()
    before, versions, layout = _bytes(model), _versions(model), _layout(model)
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert _bytes(model) == before
    assert _versions(model) == versions
    _same_layout(layout, _layout(model))
    torchscope.summarize(model, torch.randn(3, 4), mode="real")  # still runs, as it did
    _same_layout(layout, _layout(model))
    out = torch.nn.functional.linear(torch.randn(2, 4), model.fc.weight, model.fc.bias)
    out.sum().backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


class NumpyWrite(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.detach().numpy()[0, :2] = 42.0  # no torch operator sees this write
        np.asarray(self.scale)[1] = -1.0  # through __array__
        return self.body(x)


def test_a_write_through_numpy_comes_back(strategy: str) -> None:
    # guards the bug: copy on write (large models) saw only writes through torch operators,
    # so a write into a NumPy view of a parameter stayed
    torch.manual_seed(0)
    model = NumpyWrite().train()
    before, versions = _bytes(model), _versions(model)
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert _bytes(model) == before
    assert _versions(model) == versions


def _flip_autocast() -> None:
    torch.autocast("cpu", dtype=torch.bfloat16).__enter__()


def _push_saved_hooks() -> None:
    torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t).__enter__()


def _autocast_nesting() -> int:
    nesting = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return nesting


PROCESS_STATE: dict[str, tuple[Callable[[], Any], Callable[[], None]]] = {
    "autocast nesting": (_autocast_nesting, _flip_autocast),
    "saved-tensor hooks": (
        lambda: torch._C._autograd._top_saved_tensors_default_hooks(True),  # type: ignore[attr-defined]
        _push_saved_hooks),
    "forward grad": (torch._C._is_fwd_grad_enabled,
                     lambda: torch._C._set_fwd_grad_enabled(False)),
    "torch functions": (torch._C._is_torch_function_enabled,
                        lambda: torch._C.DisableTorchFunction().__enter__()),
    "warn always": (torch.is_warn_always_enabled, lambda: torch.set_warn_always(True)),
    "flush denormal": (lambda: (2.2250738585072014e-308 / 4) * 1.0 == 0.0,
                       lambda: torch.set_flush_denormal(True) and None),
    "cudnn deterministic": (lambda: torch.backends.cudnn.deterministic,
                            lambda: setattr(torch.backends.cudnn, "deterministic", True)),
    "mkldnn": (lambda: torch.backends.mkldnn.enabled,
               lambda: setattr(torch.backends.mkldnn, "enabled", False)),
    "math attention": (torch.backends.cuda.math_sdp_enabled,
                       lambda: torch.backends.cuda.enable_math_sdp(False)),
    "print options": (lambda: torch._tensor_str.PRINT_OPTS.precision,
                      lambda: torch.set_printoptions(precision=1)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("what", list(PROCESS_STATE))
def test_process_state_a_forward_leaves_behind_is_put_back(what: str, mode: str) -> None:
    # guards the bugs: autocast entered and never left kept its nesting count (the user's
    # later autocast steps reused stale cached weights); saved-tensor hooks pushed in a
    # forward stayed (estimate_cost then left its own counter installed); forward grad, torch
    # functions, flush-denormal and backend switches stayed flipped
    get, flip = PROCESS_STATE[what]

    class Flips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flip()
            return self.fc(x)

    before = get()
    state = _guard._GlobalState()  # one failure stays one: put back by hand at the end
    try:
        torchscope.summarize(Flips(), torch.randn(2, 4), mode=mode)
        assert get() == before
        torchscope.estimate_cost(Flips(), torch.randn(2, 4), mode=mode)
        assert get() == before
    finally:
        state.restore()


# -- the guard's own robustness, and what a second look found ------------------------------


def test_a_setting_that_refuses_to_be_read_does_not_stop_the_restore() -> None:
    # guards the bug: a forward switching to torch's per-backend float32 precision made the
    # legacy getter raise inside the restore, and nothing after it (BatchNorm statistics,
    # hooks, RNG) was put back
    class NewPrecisionApi(_Base):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # type: ignore[attr-defined]
            return self.body(x)

    model = NewPrecisionApi().train()
    before = _bytes(model)
    setting = torch.backends.mkldnn.matmul.fp32_precision  # type: ignore[attr-defined]
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert _bytes(model) == before
    assert torch.backends.mkldnn.matmul.fp32_precision == setting  # type: ignore[attr-defined]
    torch.get_float32_matmul_precision()  # readable again


@pytest.mark.parametrize("change", ["pop", "pop-two", "push-the-same"])
def test_the_whole_saved_tensor_hooks_stack_comes_back(change: str) -> None:
    # guards the bug: only the top of the stack was compared, so a forward popping the user's
    # hooks (or pushing the top one again) left the stack short or long
    autograd: Any = torch._C._autograd  # type: ignore[attr-defined]
    outer = (lambda t: t, lambda t: t)
    inner = (lambda t: t, lambda t: t)

    class Pops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if change == "push-the-same":
                autograd._push_saved_tensors_default_hooks(*inner)
            else:
                for _ in range(1 if change == "pop" else 2):
                    autograd._pop_saved_tensors_default_hooks()
            return self.fc(x)

    with torch.autograd.graph.saved_tensors_hooks(*outer):
        with torch.autograd.graph.saved_tensors_hooks(*inner):
            torchscope.summarize(Pops(), torch.randn(2, 4), mode="real")
            assert _guard._saved_hooks_stack() == [outer, inner]


class WritesFromAThread(_Base):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import threading

        def write() -> None:
            with torch.no_grad():
                self.scale.mul_(2)

        worker = threading.Thread(target=write)
        worker.start()
        worker.join()
        return self.body(x)


def test_a_write_no_dispatch_mode_sees_is_never_hidden_from_autograd(strategy: str) -> None:
    # guards the bug: copy on write missed a write made in another thread, yet reset the
    # tensor's version counter, so a pending backward silently used the new values; now the
    # snapshot puts the bytes back, and copy on write leaves the version moved (backward raises)
    torch.manual_seed(0)
    model = WritesFromAThread().train()
    x = torch.randn(3, 4, requires_grad=True)
    pending = (model.bn(model.fc(x)) * model.scale).sum()  # saves scale for backward
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    if strategy == "snapshot":
        assert torch.equal(model.scale, torch.ones(4))
        pending.backward()
    else:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            pending.backward()


@pytest.mark.parametrize("change", ["t_", "as_strided_"])
def test_a_layout_changed_in_place_comes_back(change: str) -> None:
    # guards the bug: only address, shape and dtype were compared, so a transposed or
    # re-strided buffer or weight stayed so
    class Restrides(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.register_buffer("b", torch.arange(9.0).reshape(3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                if change == "t_":
                    self.b.t_()
                    self.fc.weight.t_()
                else:
                    self.b.as_strided_((3, 3), (1, 3))
            return self.fc(x)

    model = Restrides()
    layout = {k: (v.stride(), v.storage_offset()) for k, v in model.state_dict().items()}
    before = _bytes(model)
    torchscope.summarize(model, torch.randn(2, 3), mode="real")
    assert {k: (v.stride(), v.storage_offset()) for k, v in model.state_dict().items()} == layout
    assert _bytes(model) == before


def test_tensors_kept_in_list_and_dict_attributes_are_copied_to_meta() -> None:
    # guards the bug: a meta or fake copy deep-copied tensors held in list or dict attributes
    # with their memory (457 MB for two tables)
    model = nn.Linear(4, 4)
    model.tables = [torch.zeros(1000)]  # type: ignore[assignment]
    model.extra = {"mask": torch.ones(1000)}  # type: ignore[assignment]
    copied = torchscope.trace.copy_to_meta(model)
    assert copied.tables[0].is_meta and copied.extra["mask"].is_meta  # type: ignore[index]


class FillsEveryKind(_Base):
    def __init__(self) -> None:
        super().__init__()
        import collections

        self.ordered: collections.OrderedDict[str, int] = collections.OrderedDict(a=1)
        self.counts: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.names: set[str] = {"a"}
        self.recent: collections.deque[int] = collections.deque([1], maxlen=4)
        self.cfg: dict[str, Any] = {"a": [], "b": {"c": 1}}
        self._kv_cache: dict[int, torch.Tensor] = {}
        self.py_rng = random.Random(0)
        self.np_rng = np.random.default_rng(0)
        self.fc.weight.tags = ["w"]  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ordered["b"] = 2
        self.counts["x"] += 1
        self.names.add("b")
        self.recent.append(2)
        self.cfg["a"].append(x)
        self.cfg["b"]["c"] = 2
        self._kv_cache[0] = x
        self.py_rng.random()
        self.np_rng.random()
        self.fc.weight.tags.append("seen")  # type: ignore[attr-defined]
        return self.body(x)


def test_every_kind_of_container_and_generator_attribute_comes_back() -> None:
    # guards the bugs: only exact lists and dicts with public names were kept, one level deep;
    # OrderedDict, defaultdict, set, deque, nested containers, private caches, Python and
    # NumPy generators and containers set on a Parameter kept what the forward put there
    model = FillsEveryKind().train()
    py_state, np_state = model.py_rng.getstate(), model.np_rng.bit_generator.state
    torchscope.summarize(model, torch.randn(3, 4), mode="real")
    assert dict(model.ordered) == {"a": 1} and dict(model.counts) == {}
    assert model.names == {"a"} and list(model.recent) == [1]
    assert model.cfg == {"a": [], "b": {"c": 1}} and model._kv_cache == {}
    assert model.py_rng.getstate() == py_state
    assert model.np_rng.bit_generator.state == np_state
    assert model.fc.weight.tags == ["w"]  # type: ignore[attr-defined]


def test_state_guard_leaves_a_lazy_module_uninitialized() -> None:
    # guards the bug: a forward under state_guard materialized a lazy layer; the module's
    # class came back but its parameter stayed a (3, 4) Parameter, so a later forward with
    # another input size failed
    model = nn.LazyLinear(3)
    with torchscope.trace.state_guard(model):
        model(torch.randn(2, 4))
    assert type(model).__name__ == "LazyLinear"
    assert type(model.weight).__name__ == "UninitializedParameter"
    assert model(torch.randn(2, 5)).shape == (2, 3)  # infers its shape from this input


def test_a_tensor_hook_removed_by_the_forward_comes_back() -> None:
    # guards the bug: only hooks added to the model's tensors were undone, not removed ones
    model = nn.Linear(4, 4)
    seen: list[int] = []
    handle = model.weight.register_hook(lambda g: seen.append(1))

    class Removes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            handle.remove()
            return self.inner(x)

    torchscope.summarize(Removes(), torch.randn(2, 4), mode="real")
    model(torch.randn(2, 4)).sum().backward()
    assert seen == [1]
