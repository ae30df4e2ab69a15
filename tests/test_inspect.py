"""Static traversal: paths, aliases, tie-aware totals, edge-case modules, no side effects."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest
import torch
from models import TRANSFORMERS, assert_same_state, state_fingerprint, unique_storage_numel
from torch import nn
from torch.nn.utils import parametrize

import torchscope
from torchscope import examples
from torchscope.records import ParamKind, Report, TieKind

EXAMPLES: dict[str, Callable[[], nn.Module]] = {
    "MLP": examples.MLP,
    "MySequential": examples.MySequential,
    "FixedHiddenMLP": examples.FixedHiddenMLP,
    "NestMLP": examples.NestMLP,
    "SharedMLP": examples.SharedMLP,
    "LazyMLP": examples.LazyMLP,
    "CenteredLayer": examples.CenteredLayer,
    "MyLinear": examples.MyLinear,
}

ALL_MODELS = {**EXAMPLES, **TRANSFORMERS}


def brute_unique_params(model: nn.Module) -> int:
    """Unique parameter elements by address; lazy parameters are skipped."""
    seen: set[tuple[int, int]] = set()
    for _, p in model.named_parameters(remove_duplicate=False):
        if isinstance(p, nn.parameter.UninitializedParameter):
            continue
        base = p.untyped_storage().data_ptr()
        seen.update((base, (p.storage_offset() + i) * p.element_size()) for i in range(p.numel()))
    return len(seen)


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_walk_paths_match_named_modules(name: str) -> None:
    model = ALL_MODELS[name]()
    records = list(torchscope.walk(model))
    assert [r.path for r in records] == [n for n, _ in model.named_modules()]
    assert [r.type_name for r in records] == [type(m).__name__ for _, m in model.named_modules()]
    by_path = {r.path: r for r in records}
    for path, module in model.named_modules():
        rec = by_path[path]
        assert rec.depth == (0 if path == "" else path.count(".") + 1)
        assert rec.training == module.training
        expected_children = []
        for child_name, _child in module.named_children():
            child_path = f"{path}.{child_name}" if path else child_name
            if child_path in by_path:
                expected_children.append(child_path)
        assert list(rec.children) == expected_children


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_totals_equal_unique_storage(name: str) -> None:
    model = ALL_MODELS[name]()
    report = torchscope.summarize(model)
    assert report.total_params == brute_unique_params(model)
    trainable = sum(p.numel for p in report.params
                    if p.kind is ParamKind.PARAMETER and p.requires_grad and p.numel)
    assert report.trainable_params == trainable  # every tie here is an alias: one record
    # every named parameter and buffer appears exactly once, under all its names
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in model.named_buffers(remove_duplicate=False)]
    listed = [n for p in report.params for n in p.names]
    assert sorted(listed) == sorted(names)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformers_block_totals_are_tie_aware(name: str) -> None:
    model = TRANSFORMERS[name]()
    report = torchscope.summarize(model)
    assert report.total_params == unique_storage_numel(model)
    by_path = {r.path: r for r in report.modules}
    for path, module in model.named_modules():
        if path in by_path:
            assert by_path[path].total_params == unique_storage_numel(module), path


def test_gpt2_default_total_counts_tied_embedding_once() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config())
    report = torchscope.summarize(model)
    # torchinfo 1.8.0 reports 163,037,184: it counts lm_head.weight and wte.weight twice
    assert report.total_params == 124_439_808
    assert report.tied[0].names == ("transformer.wte.weight", "lm_head.weight")
    assert report.tied[0].kind is TieKind.ALIAS


def test_shared_layer_is_one_record_with_aliases() -> None:
    report = torchscope.summarize(examples.SharedMLP())
    weight = next(p for p in report.params if p.name == "2.weight")
    assert weight.aliases == ("4.weight",)
    assert weight.tie_group is not None
    assert report.module("2").aliases == ("4",)
    assert report.total_params == 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1


def test_module_registered_under_two_names_in_a_custom_module() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a

    report = torchscope.summarize(Twice())
    assert [m.path for m in report.modules] == ["", "a"]
    assert report.module("a").aliases == ("b",)
    assert report.total_params == 12
    assert {n for p in report.params for n in p.names} == {"a.weight", "a.bias", "b.weight",
                                                           "b.bias"}


def test_shared_storage_and_overlap_count_once() -> None:
    a = nn.Linear(4, 4, bias=False)
    b = nn.Linear(4, 4, bias=False)
    b.weight = nn.Parameter(a.weight.data)  # distinct Parameter objects, same bytes
    c = nn.Module()
    c.weight = nn.Parameter(a.weight.data[1:])  # a view into the same storage: overlap
    model = nn.ModuleDict({"a": a, "b": b, "c": c})
    report = torchscope.summarize(model)
    assert report.total_params == 16
    assert report.module("b").total_params == 16  # a block's own total is its own
    kinds = {g.kind for g in report.tied}
    assert kinds == {TieKind.OVERLAP}  # a, b and c's overlap merge into one cluster
    assert report.tied[0].names == ("a.weight", "b.weight", "c.weight")


def test_containers_and_parameter_containers() -> None:
    model = nn.Module()
    model.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    model.heads = nn.ModuleDict({"x": nn.Linear(2, 1), "y": nn.Linear(2, 1)})
    model.plist = nn.ParameterList([nn.Parameter(torch.zeros(5)), nn.Parameter(torch.zeros(2))])
    model.pdict = nn.ParameterDict({"scale": nn.Parameter(torch.ones(3))})
    report = torchscope.summarize(model)
    assert report.total_params == 3 * 6 + 2 * 3 + 7 + 3
    assert report.module("plist").param_names == ("0", "1")
    assert report.module("pdict").own_params == 3
    assert [p.name for p in report.params][-3:] == ["plist.0", "plist.1", "pdict.scale"]


def test_no_parameters_and_buffers() -> None:
    report = torchscope.summarize(examples.CenteredLayer())
    assert (report.total_params, report.param_bytes, len(report.modules)) == (0, 0, 1)
    bn = nn.BatchNorm1d(8)
    bn.register_buffer("scratch", torch.zeros(4), persistent=False)
    report = torchscope.summarize(bn)
    kinds = {p.name: p.kind for p in report.params}
    assert kinds["running_mean"] is ParamKind.BUFFER
    assert kinds["scratch"] is ParamKind.BUFFER_NONPERSISTENT
    assert report.buffer_numel == 8 + 8 + 1 + 4
    assert report.buffer_bytes == (8 + 8 + 4) * 4 + 8  # num_batches_tracked is int64
    assert report.total_params == 16


def test_frozen_parameters_counted_separately() -> None:
    model = examples.NestMLP()
    for p in model.net.parameters():
        p.requires_grad_(False)
    report = torchscope.summarize(model)
    assert report.trainable_params == 32 * 16 + 16
    assert report.non_trainable_params == report.total_params - report.trainable_params
    assert report.module("net").frozen
    assert not report.module("linear").frozen


def test_meta_model() -> None:
    with torch.device("meta"):
        model = examples.NestMLP()
    report = torchscope.summarize(model)
    assert report.total_params == 3952
    assert report.modules[0].devices == ("meta",)
    assert report.tied == ()  # distinct meta tensors all have data_ptr 0 and are not tied


def test_parametrized_module() -> None:
    class Symmetric(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.triu() + x.triu(1).transpose(-1, -2)

    layer = nn.Linear(3, 3)
    parametrize.register_parametrization(layer, "weight", Symmetric())
    report = torchscope.summarize(nn.Sequential(layer))
    names = [p.name for p in report.params]
    assert "0.parametrizations.weight.original" in names
    assert report.module("0").tags == ("parametrized",)
    assert report.total_params == 12


def test_compiled_module_shows_original_names() -> None:
    compiled = torch.compile(examples.MLP())
    report = torchscope.summarize(compiled)
    assert report.root_type == "MLP"
    assert report.params[0].name == "hidden.weight"
    assert any("torch.compile" in note for note in report.notes)


def test_lazy_sizes_are_unknown_not_zero() -> None:
    report = torchscope.summarize(examples.LazyMLP())
    assert report.lazy_tensors == 4
    assert [r.path for r in report.lazy] == ["0", "2"]
    assert all(p.numel is None and p.shape is None for p in report.params)
    assert report.lazy[0].known == (("out_features", "256"),)


def test_static_summary_has_no_side_effects() -> None:
    model = TRANSFORMERS["gpt2"]()
    model.transformer.h[0].eval()  # a mixed train/eval tree
    before = state_fingerprint(model)
    torchscope.summarize(model)
    list(torchscope.walk(model))
    torchscope.list_parameters(model)
    assert_same_state(before, state_fingerprint(model))


def test_report_keeps_nothing_alive() -> None:
    model = examples.NestMLP()
    ref = weakref.ref(model)
    report = torchscope.summarize(model)
    del model
    gc.collect()
    assert ref() is None
    assert report.total_params == 3952


@pytest.mark.parametrize("name", ["MLP", "SharedMLP", "LazyMLP", "gpt2", "t5"])
def test_json_round_trip(name: str) -> None:
    report = torchscope.summarize(ALL_MODELS[name]())
    again = Report.from_json(report.to_json())
    assert again == report
    assert report.to_dict()["schema_version"] == 1


def test_json_round_trip_of_a_traced_report() -> None:
    report = torchscope.summarize(examples.FixedHiddenMLP(), torch.zeros(2, 20))
    assert report.module("linear").calls
    assert Report.from_json(report.to_json()) == report


def test_json_rejects_another_schema_version() -> None:
    data = torchscope.summarize(examples.MLP()).to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99 is not supported"):
        Report.from_dict(data)


def test_report_module_lookup_error() -> None:
    report = torchscope.summarize(examples.MLP())
    with pytest.raises(KeyError, match="no module at path 'nope'"):
        report.module("nope")


def test_public_surface_is_importable() -> None:
    for name in torchscope.__all__:
        try:
            getattr(torchscope, name)
        except ImportError as err:  # a module of a feature still being built
            pytest.fail(f"torchscope.{name} does not import: {err}")
