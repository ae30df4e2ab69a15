"""Lazy layers: find them, infer their shapes on a copy (no memory, model untouched), and
materialize them in place on request."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from itertools import chain
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parameter import is_lazy

import torchscope
from torchscope import examples
from torchscope.errors import ForwardError, InputSpecError
from torchscope.lazy import (
    check_lazy,
    find_lazy,
    infer_lazy_shapes,
    inferred_numel,
    known_attributes,
    lazy_record,
    materialize,
    trace_lazy,
)
from torchscope.records import LazyRecord, ParamKind, Severity

# --------------------------------------------------------------------------------------------
# every lazy module family of torch.nn, with an input it accepts

FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "LazyLinear": (lambda: nn.LazyLinear(5), (2, 7)),
    "LazyConv1d": (lambda: nn.LazyConv1d(4, 3), (2, 3, 10)),
    "LazyConv2d": (lambda: nn.LazyConv2d(4, 3, padding=1), (2, 3, 8, 8)),
    "LazyConv3d": (lambda: nn.LazyConv3d(4, 3), (2, 3, 5, 5, 5)),
    "LazyConvTranspose1d": (lambda: nn.LazyConvTranspose1d(4, 3), (2, 3, 10)),
    "LazyConvTranspose2d": (lambda: nn.LazyConvTranspose2d(4, 3, groups=3, bias=False),
                            (2, 6, 8, 8)),
    "LazyConvTranspose3d": (lambda: nn.LazyConvTranspose3d(4, 3), (2, 3, 5, 5, 5)),
    "LazyBatchNorm1d": (lambda: nn.LazyBatchNorm1d(), (4, 6)),
    "LazyBatchNorm2d": (lambda: nn.LazyBatchNorm2d(), (4, 6, 3, 3)),
    "LazyBatchNorm3d": (lambda: nn.LazyBatchNorm3d(), (4, 6, 2, 3, 3)),
    # LazyInstanceNorm defaults to affine=True, track_running_stats=True (unlike InstanceNorm)
    "LazyInstanceNorm1d": (lambda: nn.LazyInstanceNorm1d(), (2, 6, 10)),
    "LazyInstanceNorm2d": (lambda: nn.LazyInstanceNorm2d(), (2, 6, 4, 4)),
    "LazyInstanceNorm3d": (lambda: nn.LazyInstanceNorm3d(), (2, 6, 3, 3, 3)),
}

NORMS = ("weight", "bias", "running_mean", "running_var")
EXPECTED_TENSORS: dict[str, tuple[str, ...]] = {
    name: NORMS if "Norm" in name else ("weight",) if name == "LazyConvTranspose2d"
    else ("weight", "bias")
    for name in FAMILIES
}


class Block(nn.Module):
    """A custom block holding its layer two levels down (path ``body.1``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.pre = nn.Identity()
        self.body = nn.Sequential(nn.Identity(), layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(self.pre(x))
        return out


class Net(nn.Module):
    """A custom model: a fixed layer, then a block with the lazy layer inside."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.scale = nn.Identity()
        self.block = Block(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(self.scale(x))
        return out


def build(family: str, nested: bool) -> tuple[nn.Module, str, tuple[int, ...]]:
    """(model, path of the lazy layer, input size)."""
    make, size = FAMILIES[family]
    if nested:
        return Net(make()), "block.body.1", size
    return make(), "", size


# --------------------------------------------------------------------------------------------
# what "unchanged" means for a model that may hold placeholders (state_dict values cannot be
# cloned while uninitialized, so tensors are compared one by one)


def fingerprint(model: nn.Module) -> dict[str, Any]:
    tensors = chain(model.named_parameters(remove_duplicate=False),
                    model.named_buffers(remove_duplicate=False))
    return {
        "classes": [(n, type(m)) for n, m in model.named_modules()],
        "tensors": [(n, type(t), t.dtype, t.device, id(t),
                     None if is_lazy(t) else t.detach().clone()) for n, t in tensors],
        "attrs": [(n, {k: v for k, v in vars(m).items() if isinstance(v, (int, tuple, str))})
                  for n, m in model.named_modules()],
        "hooks": [(n, list(m._forward_pre_hooks), list(m._forward_hooks),
                   list(m._load_state_dict_pre_hooks)) for n, m in model.named_modules()],
        "training": [(n, m.training) for n, m in model.named_modules()],
        "rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "grad": torch.is_grad_enabled(),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("classes", "attrs", "hooks", "training", "py_rng", "grad"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"]), "RNG state changed"
    assert len(before["tensors"]) == len(after["tensors"])
    for b, a in zip(before["tensors"], after["tensors"]):
        assert b[:5] == a[:5], b[0]
        if b[5] is None:
            assert a[5] is None, f"{b[0]} was materialized"
        else:
            assert a[5] is not None and torch.equal(b[5], a[5]), f"{b[0]} changed"


def real_dry_run(model: nn.Module, *inputs: torch.Tensor) -> None:
    with torch.no_grad():
        model(*inputs)


# --------------------------------------------------------------------------------------------
# find_lazy


@pytest.mark.parametrize("nested", [False, True], ids=["alone", "nested"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_find_lazy_names_every_family(family: str, nested: bool) -> None:
    model, path, _ = build(family, nested)
    before = fingerprint(model)
    records = find_lazy(model)
    assert [(r.path, r.type_name, r.tensors) for r in records] == [
        (path, family, EXPECTED_TENSORS[family])]
    assert records[0].inferred == ()
    assert_unchanged(before, fingerprint(model))


def test_known_attributes_skip_input_dependent_zeros() -> None:
    # regression: a lazy norm's num_features is 0 until the first forward, which read as "0
    # features known" instead of unknown
    assert known_attributes(nn.LazyBatchNorm2d()) == ()
    assert known_attributes(nn.LazyLinear(256)) == (("out_features", "256"),)
    assert dict(known_attributes(nn.LazyConv1d(8, 5, stride=2, padding=1))
                ) == {"out_channels": "8", "kernel_size": "(5,)", "stride": "(2,)",
                      "padding": "(1,)", "groups": "1"}
    linear = nn.Linear(3, 4)
    assert dict(known_attributes(linear)) == {"in_features": "3", "out_features": "4"}


def test_lazy_instance_norm_without_affine_or_stats_holds_no_placeholder() -> None:
    model = Net(nn.LazyInstanceNorm1d(affine=False, track_running_stats=False))
    assert find_lazy(model) == ()
    assert check_lazy(model) == ()
    assert infer_lazy_shapes(model, input_size=[(2, 6, 10)]) == ()
    assert materialize(model, input_size=[(2, 6, 10)]) == ()
    assert type(model.block.body[1]) is nn.LazyInstanceNorm1d  # nothing ran


def test_find_lazy_on_a_partly_initialized_model() -> None:
    model = examples.LazyMLP()
    real_dry_run(model[0], torch.zeros(2, 20))  # only the first layer materializes
    assert type(model[0]) is nn.Linear
    records = find_lazy(model)
    assert [(r.path, r.type_name) for r in records] == [("2", "LazyLinear")]
    inferred = infer_lazy_shapes(model, input_size=[(2, 20)])
    assert inferred[0].inferred == (("weight", (10, 256), "float32"), ("bias", (10,), "float32"))


def test_find_lazy_reports_the_placeholders_left_in_one_module() -> None:
    # a LazyLinear whose weight was loaded but whose bias was not (strict=False)
    layer = nn.LazyLinear(3)
    layer.load_state_dict({"weight": torch.ones(3, 4)}, strict=False)
    assert not is_lazy(layer.weight) and is_lazy(layer.bias)
    assert find_lazy(nn.Sequential(layer))[0].tensors == ("bias",)
    assert [f.message.split(":")[0] for f in check_lazy(nn.Sequential(layer))] == [
        "0 (LazyLinear) has uninitialized parameter bias"]


def test_find_lazy_looks_through_torch_compile_and_rejects_non_modules() -> None:
    compiled: Any = torch.compile(examples.LazyMLP())
    assert [r.path for r in find_lazy(compiled)] == ["0", "2"]
    with pytest.raises(InputSpecError, match=r"find_lazy: model = str is not a torch.nn.Module"):
        find_lazy("model")  # type: ignore[arg-type]


def test_lazy_record_matches_find_lazy_and_none_when_initialized() -> None:
    model = examples.LazyMLP()
    assert lazy_record(model[0], "0") == find_lazy(model)[0]
    assert lazy_record(nn.Linear(2, 2), "x") is None


def test_find_lazy_records_equal_summarize_records() -> None:
    for model in (examples.LazyMLP(), Net(nn.LazyConv2d(3, 2)), examples.MLP()):
        assert torchscope.summarize(model).lazy == find_lazy(model)


# --------------------------------------------------------------------------------------------
# infer_lazy_shapes


@pytest.mark.parametrize("nested", [False, True], ids=["alone", "nested"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_inferred_shapes_equal_a_real_materialization(family: str, nested: bool) -> None:
    torch.manual_seed(0)
    model, path, size = build(family, nested)
    torch.manual_seed(0)
    twin, _, _ = build(family, nested)
    before = fingerprint(model)
    records = infer_lazy_shapes(model, input_size=[size])
    assert_unchanged(before, fingerprint(model))
    assert type(model.get_submodule(path)).__name__ == family  # still lazy

    real_dry_run(twin, torch.randn(size))
    layer = twin.get_submodule(path)
    assert type(layer).__name__ != family  # the twin did materialize
    expected = tuple((name, tuple(getattr(layer, name).shape), "float32")
                     for name in EXPECTED_TENSORS[family])
    assert [(r.path, r.inferred) for r in records] == [(path, expected)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_inferred_dtype_is_the_placeholder_dtype(dtype: torch.dtype) -> None:
    model = nn.Sequential(nn.LazyLinear(3, dtype=dtype))
    inferred = infer_lazy_shapes(model, torch.zeros(2, 5, dtype=dtype))[0].inferred
    assert inferred == (("weight", (3, 5), str(dtype)[6:]), ("bias", (3,), str(dtype)[6:]))


def test_infer_with_example_tensors_kwargs_and_eval_mode() -> None:
    class KwNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.LazyLinear(4)
            self.b = nn.LazyConv1d(2, 1)

        def forward(self, x: torch.Tensor, *, seq: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.b(seq) .sum() + self.a(x).sum()
            return out

    model = KwNet().eval()
    before = fingerprint(model)
    records = infer_lazy_shapes(model, torch.ones(3, 9), example_kwargs={"seq": torch.ones(
        1, 6, 5)})
    assert [r.inferred[0] for r in records] == [("weight", (4, 9), "float32"),
                                                ("weight", (2, 6, 1), "float32")]
    assert_unchanged(before, fingerprint(model))


def test_a_lazy_module_the_forward_never_reaches_stays_unknown() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.LazyLinear(3)
            self.unused = nn.LazyLinear(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x)
            return out

    records = infer_lazy_shapes(Branchy(), input_size=[(2, 8)])
    assert [(r.path, len(r.inferred)) for r in records] == [("used", 2), ("unused", 0)]
    assert inferred_numel(records) is None  # unknown, never a silent 0
    assert inferred_numel(records[:1]) == 3 * 8 + 3


def test_a_shared_lazy_module_is_one_record_and_counted_once() -> None:
    shared = nn.LazyLinear(6)
    model = nn.Sequential(shared, nn.ReLU(), nn.Linear(6, 6), shared)
    records = infer_lazy_shapes(model, input_size=[(2, 6)])
    assert [r.path for r in records] == ["0"]
    assert inferred_numel(records, params=torchscope.summarize(model).params) == 6 * 6 + 6


def test_inferred_numel_counts_parameters_not_buffers_with_params() -> None:
    model = Net(nn.LazyBatchNorm2d())
    records = infer_lazy_shapes(model, input_size=[(4, 6, 3, 3)])
    params = torchscope.summarize(model).params
    assert {p.name: p.kind for p in params if p.lazy}["block.body.1.running_mean"] is (
        ParamKind.BUFFER)
    assert inferred_numel(records, params=params) == 12  # weight + bias
    assert inferred_numel(records) == 24  # and the running statistics


def test_infer_75_gb_lazy_linear_without_memory() -> None:
    # a LazyLinear(100000) on (1, 200000) would hold 100000 * 200000 * 4 bytes = 80 GB (75 GiB)
    code = textwrap.dedent("""
        import resource, torch, torchscope
        small = torch.nn.Sequential(torch.nn.LazyLinear(10))
        torchscope.infer_lazy_shapes(small, input_size=[(1, 20)])  # imports, warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        m = torch.nn.Sequential(torch.nn.LazyLinear(100000))
        records = torchscope.infer_lazy_shapes(m, input_size=[(1, 200000)])
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(records[0].inferred[0][1], growth, type(m[0]).__name__, bool(torchscope.find_lazy(m)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    shape, growth_kib, cls, still_lazy = out[0] + out[1], int(out[2]), out[3], out[4]
    assert shape == "(100000,200000)"
    assert growth_kib < 64 * 1024, f"peak RSS grew by {growth_kib} KiB"
    assert (cls, still_lazy) == ("LazyLinear", "True")


def test_infer_leaves_the_rng_and_python_random_alone_on_a_real_initialized_mix() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.LazyLinear(2), nn.LazyBatchNorm1d())
    model.train()
    x = torch.randn(5, 4)
    before = fingerprint(model)
    records = infer_lazy_shapes(model, x)
    assert [r.inferred[0][1] for r in records] == [(2, 8), (2,)]
    assert_unchanged(before, fingerprint(model))


def test_infer_needs_inputs_and_reports_a_failing_forward() -> None:
    model = Net(nn.LazyConv2d(4, 3))
    with pytest.raises(InputSpecError, match="infer_lazy_shapes needs example inputs"):
        infer_lazy_shapes(model)
    with pytest.raises(InputSpecError, match="input_size"):
        infer_lazy_shapes(model, input_size="two by three")
    before = fingerprint(model)
    with pytest.raises(ForwardError, match=r"infer_lazy_shapes: .*module 'block.body.1'.*"
                                           r"\[2, 7\] float32.*torchscope.materialize"):
        infer_lazy_shapes(model, input_size=[(2, 7)])  # Conv2d needs 3 or 4 dimensions
    assert_unchanged(before, fingerprint(model))


# --------------------------------------------------------------------------------------------
# trace_lazy: one forward for the trace and the lazy shapes


CALLS: list[str] = []


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS.append(x.device.type)
        out: torch.Tensor = self.fc(x)
        return out


@pytest.mark.parametrize("mode", ["auto", "meta", "real"])
def test_trace_lazy_runs_one_forward(mode: str) -> None:
    model = Counting()
    before = fingerprint(model)
    CALLS.clear()
    result, records = trace_lazy(model, torch.zeros(2, 5), mode=mode)
    assert len(CALLS) == 1
    assert result.mode == ("real" if mode == "auto" else mode)
    assert result.calls_of("fc")[0].outputs.shape == (2, 3)  # type: ignore[union-attr]
    assert records[0].inferred == (("weight", (3, 5), "float32"), ("bias", (3,), "float32"))
    assert_unchanged(before, fingerprint(model))
    CALLS.clear()
    assert trace_lazy(examples.MLP(), input_size=[(2, 20)])[1] == ()


class ItemSlice(nn.Module):
    """Slices its input by a value read from the data: meta and fake cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = int(x.sum().item()) + 4  # 4 for the zeros built from input_size
        out: torch.Tensor = self.fc(x[:, :k])
        return out


def test_trace_lazy_reads_the_copy_of_the_attempt_that_ran() -> None:
    # auto with sizes tries meta, then fake, then real (each on its own copy): the shapes come
    # from the real attempt's copy, and the failed attempts leave no trace
    model = ItemSlice()
    before = fingerprint(model)
    result, records = trace_lazy(model, input_size=[(2, 6)])
    assert result.mode == "real"
    assert records[0].inferred == (("weight", (3, 4), "float32"), ("bias", (3,), "float32"))
    assert_unchanged(before, fingerprint(model))
    with pytest.raises(ForwardError, match=r"infer_lazy_shapes: the forward raised on meta and "
                                           r"on fake tensors.*torchscope.materialize"):
        infer_lazy_shapes(model, input_size=[(2, 6)])  # never real: that would take memory
    assert_unchanged(before, fingerprint(model))
    assert materialize(model, input_size=[(2, 6)])[0].inferred == records[0].inferred


def test_trace_lazy_uses_given_records() -> None:
    model = examples.LazyMLP()
    given = (LazyRecord("2", "LazyLinear", ("weight",)),)
    _, records = trace_lazy(model, input_size=[(2, 20)], lazy=given)
    assert records == (LazyRecord("2", "LazyLinear", ("weight",),
                                  inferred=(("weight", (10, 256), "float32"),)),)


# --------------------------------------------------------------------------------------------
# materialize


@pytest.mark.parametrize("nested", [False, True], ids=["alone", "nested"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_materialize_equals_a_plain_dry_run(family: str, nested: bool) -> None:
    torch.manual_seed(0)
    model, path, size = build(family, nested)
    torch.manual_seed(0)
    twin, _, _ = build(family, nested)
    x = torch.randn(size)
    model.eval()
    twin.eval()  # a dry run in eval mode leaves running statistics at their initial values
    rng = torch.get_rng_state()
    records = materialize(model, x)
    rng_model = torch.get_rng_state()
    torch.set_rng_state(rng)
    real_dry_run(twin, x)
    assert torch.equal(rng_model, torch.get_rng_state())  # the RNG advanced the same way
    assert [type(m) for m in model.modules()] == [type(m) for m in twin.modules()]
    assert not find_lazy(model)
    mine, theirs = model.state_dict(), twin.state_dict()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.equal(mine[k], theirs[k]), k
    assert [(r.path, r.type_name) for r in records] == [(path, family)]
    assert records[0].inferred == tuple(
        (n, tuple(mine[f"{path}.{n}" if path else n].shape), "float32")
        for n in EXPECTED_TENSORS[family])


def test_materialize_in_train_mode_keeps_statistics_and_flags() -> None:
    model = Net(nn.LazyBatchNorm1d())
    model.train()
    model.block.pre.eval()  # a mixed tree; the norm layer stays in train mode
    flags = [m.training for m in model.modules()]
    with torch.enable_grad():
        materialize(model, torch.randn(8, 3) * 5 + 2)
        assert torch.is_grad_enabled()
    bn = model.block.body[1]
    assert isinstance(bn, nn.BatchNorm1d) and type(bn) is nn.BatchNorm1d and bn.training
    assert bn.running_mean is not None and bn.running_var is not None
    assert bn.num_batches_tracked is not None
    assert torch.equal(bn.running_mean, torch.zeros(3))  # not updated by the dry batch
    assert torch.equal(bn.running_var, torch.ones(3))
    assert int(bn.num_batches_tracked) == 0
    assert [m.training for m in model.modules()] == flags
    assert model.block.body[1].weight.grad is None


def test_materialize_keeps_statistics_of_initialized_batchnorm() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4), nn.LazyLinear(2)).train()
    materialize(model, torch.randn(6, 4) + 3)
    bn = model[0]
    assert isinstance(bn, nn.BatchNorm1d)
    assert bn.running_mean is not None and bn.num_batches_tracked is not None
    assert torch.equal(bn.running_mean, torch.zeros(4))
    assert int(bn.num_batches_tracked) == 0


def test_materialize_builds_inputs_and_does_nothing_without_lazy_layers() -> None:
    model = examples.LazyMLP()
    records = materialize(model, input_size=[(2, 20)])
    assert inferred_numel(records) == sum(p.numel() for p in model.parameters()) == 7946
    before = fingerprint(model)
    assert materialize(model, input_size=[(2, 20)]) == ()
    assert_unchanged(before, fingerprint(model))


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")


def test_materialize_rolls_back_when_the_forward_raises_midway() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), Boom(), nn.LazyLinear(2))
    before = fingerprint(model)
    with pytest.raises(ForwardError, match=r"materialize: the forward of Sequential raised in "
                                           r"module '2' called with \(\[2, 4\] float32\): "
                                           r"ValueError: boom; the model was left as it was"):
        materialize(model, torch.zeros(2, 3))
    assert_unchanged(before, fingerprint(model))  # layers 0 and 1 had materialized
    assert [r.path for r in find_lazy(model)] == ["0", "1", "3"]
    # and it still works as a lazy model: the same values as a fresh one with the same seed
    model[2] = nn.Identity()
    twin = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.Identity(), nn.LazyLinear(2))
    torch.manual_seed(1)
    materialize(model, torch.zeros(2, 3))
    torch.manual_seed(1)
    real_dry_run(twin.eval(), torch.zeros(2, 3))
    for (k, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), k


class ReassignThenRaise(nn.LazyLinear):
    cls_to_become = None  # type: ignore[assignment]  # keep this forward once materialized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.register_parameter("bias", nn.Parameter(torch.zeros(self.out_features)))
        raise ValueError("after reassigning")


def test_materialize_rollback_restores_a_reassigned_parameter() -> None:
    # regression: the rollback compared parameter dicts with ==, which compares tensor values
    # (and raises on placeholders) instead of identities
    model = nn.Sequential(ReassignThenRaise(3))
    before = fingerprint(model)
    with pytest.raises(ForwardError, match="after reassigning"):
        materialize(model, torch.zeros(2, 4))
    assert_unchanged(before, fingerprint(model))
    bias = model[0]._parameters["bias"]
    assert bias is not None and is_lazy(bias)


def test_materialize_errors_are_clear() -> None:
    model = examples.LazyMLP()
    before = fingerprint(model)
    with pytest.raises(InputSpecError, match="materialize needs example inputs"):
        materialize(model)
    with pytest.raises(InputSpecError, match="both example_inputs and input_size"):
        materialize(model, torch.zeros(2, 20), input_size=[(2, 20)])
    with pytest.raises(InputSpecError, match="dtypes applies to input_size only"):
        materialize(model, torch.zeros(2, 20), dtypes=["long"])
    with pytest.raises(InputSpecError, match="example_inputs is a dict"):
        materialize(model, {"x": torch.zeros(2, 20)})
    with pytest.raises(ForwardError, match=r"raised in module '0' called with \(\[2, 20\] int64\)"):
        materialize(model, input_size=[(2, 20)], dtypes=["long"])
    assert_unchanged(before, fingerprint(model))


# --------------------------------------------------------------------------------------------
# check_lazy


def test_check_lazy_findings_name_the_tensors_and_the_fix() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm1d(affine=False))
    before = fingerprint(model)
    findings = check_lazy(model)
    assert_unchanged(before, fingerprint(model))
    assert [(f.code, f.severity, f.path) for f in findings] == [
        ("lazy-uninitialized", Severity.WARNING, "0"),
        ("lazy-uninitialized", Severity.WARNING, "1")]
    assert findings[0].message == (
        "0 (LazyLinear) has uninitialized parameters weight, bias: an optimizer built now "
        "holds placeholders; DDP refuses them")
    assert "buffers running_mean, running_var" in findings[1].message
    assert "optimizer" not in findings[1].message
    assert findings[0].hint is not None and "torchscope.materialize" in findings[0].hint
    materialize(model, input_size=[(4, 5)])
    assert check_lazy(model) == ()


def test_check_lazy_on_a_lazy_root() -> None:
    assert check_lazy(nn.LazyLinear(2))[0].message.startswith("(root) (LazyLinear)")


# --------------------------------------------------------------------------------------------
# the public surface and the CLI


def test_public_names_resolve_to_this_module() -> None:
    assert torchscope.find_lazy is find_lazy
    assert torchscope.infer_lazy_shapes is infer_lazy_shapes
    assert torchscope.materialize is materialize
    assert torchscope.check_lazy is check_lazy


def run_cli(*argv: str) -> str:
    import contextlib
    import io

    from torchscope.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    assert code == 0
    return buf.getvalue()


def test_cli_summarize_lazy_mlp_says_which_layers_are_lazy() -> None:
    text = run_cli("summarize", "torchscope.examples:LazyMLP", "--format", "text")
    assert "≥ 0 + 2 lazy layers" in text
    assert "Lazy layers: 0, 2" in text and "--input-size" in text


def test_cli_summarize_lazy_mlp_with_input_size_json() -> None:
    data = json.loads(run_cli("summarize", "torchscope.examples:LazyMLP",
                              "--input-size", "2,20", "--format", "json"))
    assert [(r["path"], r["tensors"]) for r in data["lazy"]] == [
        ("0", ["weight", "bias"]), ("2", ["weight", "bias"])]
    assert data["lazy_tensors"] == 4
    assert data["total_params"] == 0  # nothing materialized: still unknown, not counted


# --------------------------------------------------------------------------------------------
# golden files


def test_golden_summary_of_lazy_mlp_without_inputs(snapshot: Callable[[str, str], None]) -> None:
    snapshot("lazy_summary.txt", run_cli("summarize", "torchscope.examples:LazyMLP",
                                         "--format", "text"))


def test_golden_check_lazy_findings(snapshot: Callable[[str, str], None]) -> None:
    from torchscope.rendering import findings_table

    model = Net(nn.LazyBatchNorm2d(affine=False))
    model.block.body.append(nn.LazyConv2d(8, 3))
    text = findings_table(check_lazy(model), fmt="text")
    assert isinstance(text, str)
    snapshot("lazy_check.txt", text)


def test_docstring_examples_run() -> None:
    import doctest

    import torchscope.lazy

    result = doctest.testmod(torchscope.lazy)
    assert result.attempted >= 10
    assert result.failed == 0


# --------------------------------------------------------------------------------------------
# summarize with example inputs: the lazy records carry inferred shapes (one forward)


def test_summarize_with_inputs_infers_lazy_shapes_in_one_forward() -> None:
    model = Counting()
    x = torch.zeros(2, 5)
    before = fingerprint(model)
    CALLS.clear()
    report = torchscope.summarize(model, x)
    assert len(CALLS) == 1
    assert_unchanged(before, fingerprint(model))
    assert report.lazy[0].inferred == (("weight", (3, 5), "float32"), ("bias", (3,), "float32"))
    assert (report.total_params, report.lazy_tensors, report.inferred_params) == (0, 2, 18)
    assert report.lazy == infer_lazy_shapes(model, x)


def test_summarize_inferred_params_count_parameters_not_buffers() -> None:
    model = Net(nn.LazyBatchNorm2d())
    report = torchscope.summarize(model, input_size=[(4, 6, 3, 3)])
    assert report.inferred_params == 12
    assert report.lazy[0].inferred[2] == ("running_mean", (6,), "float32")
    assert torchscope.summarize(model).inferred_params is None  # no inputs: unknown


def test_summarize_with_an_unreached_lazy_module_leaves_the_total_unknown() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.LazyLinear(3)
            self.unused = nn.LazyLinear(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x)
            return out

    report = torchscope.summarize(Branchy(), input_size=[(2, 8)])
    assert [len(r.inferred) for r in report.lazy] == [2, 0]
    assert report.inferred_params is None
    assert "≥ 0 + 2 lazy layers" in str(report)


def test_cli_summarize_lazy_mlp_with_input_size_shows_inferred_shapes() -> None:
    data = json.loads(run_cli("summarize", "torchscope.examples:LazyMLP",
                              "--input-size", "2,20", "--format", "json"))
    assert [r["inferred"] for r in data["lazy"]] == [
        [["weight", [256, 20], "float32"], ["bias", [256], "float32"]],
        [["weight", [10, 256], "float32"], ["bias", [10], "float32"]]]
    assert (data["total_params"], data["inferred_params"]) == (0, 7946)


def test_golden_summary_of_lazy_mlp_with_input_size(snapshot: Callable[[str, str], None]) -> None:
    argv = ("summarize", "torchscope.examples:LazyMLP", "--input-size", "2,20", "--format", "text")
    snapshot("lazy_summary_inferred.txt", run_cli(*argv))
    snapshot("lazy_params_inferred.txt", run_cli(*argv, "--params"))


def test_fake_mode_infers_lazy_linear_shapes() -> None:
    # regression: materializing under FakeTensorMode left Parameters on meta holding fake data,
    # so every lazy model failed in fake mode (FakeTensorDeviceMismatchError cpu vs meta)
    model = torchscope.examples.LazyMLP()
    report = torchscope.summarize(model, input_size=[(2, 20)], mode="fake")
    assert report.mode == "fake"
    assert report.inferred_params == 20 * 256 + 256 + 256 * 10 + 10
    assert torchscope.find_lazy(model)  # still lazy
