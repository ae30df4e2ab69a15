"""Tied tensors: groups and unique sizes against brute force, real models, findings, the guard."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from models import (
    TRANSFORMERS,
    assert_same_state,
    gpt2,
    llama,
    state_fingerprint,
    t5,
    unique_storage_numel,
)
from torch import nn

import torchscope
from torchscope import Severity, TiedGroup, TieKind
from torchscope.errors import TorchscopeError
from torchscope.examples import SharedMLP
from torchscope.tying import (
    TieSnapshot,
    check_ties,
    compare_ties,
    find_tied,
    snapshot_ties,
    tied_groups,
    unique_size,
    watch_ties,
)

# ---------------------------------------------------------------------------------------------
# brute force: every byte address of every tensor


def byte_set(t: torch.Tensor) -> set[int]:
    """Every byte offset (inside its storage) that ``t`` covers, from its layout alone."""
    if t.numel() == 0:
        return set()
    isz = t.element_size()
    cells = t.untyped_storage().nbytes() // isz + 1
    offsets = torch.as_strided(torch.arange(cells), t.shape, t.stride(), t.storage_offset())
    return {o * isz + k for o in offsets.flatten().tolist() for k in range(isz)}


@dataclass
class Brute:
    groups: set[frozenset[str]]
    kinds: dict[frozenset[str], TieKind]
    nbytes: dict[frozenset[str], int]


def brute_groups(entries: list[tuple[torch.Tensor, list[str], int]]) -> Brute:
    """Connected components of 'shares at least one byte of the same storage' over unique
    tensor objects (``storage`` tells storages apart), by pairwise byte-set intersection."""
    sets = [(storage, byte_set(t)) for t, _, storage in entries]
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(entries)):
        for j in range(i + 1, len(entries)):
            if sets[i][0] == sets[j][0] and sets[i][1] & sets[j][1]:
                parent[find(j)] = find(i)
    comps: dict[int, list[int]] = {}
    for i in range(len(entries)):
        comps.setdefault(find(i), []).append(i)
    out = Brute(set(), {}, {})
    for members in comps.values():
        names = frozenset(n for i in members for n in entries[i][1])
        if len(members) == 1 and len(entries[members[0]][1]) == 1:
            continue
        out.groups.add(names)
        out.nbytes[names] = len(set().union(*(sets[i][1] for i in members)))
        ts = [entries[i][0] for i in members]
        layouts = {(t.storage_offset(), t.dtype, t.shape, t.stride()) for t in ts}
        out.kinds[names] = (TieKind.ALIAS if len(members) == 1 else
                            TieKind.SHARED_STORAGE if len(layouts) == 1 else TieKind.OVERLAP)
    return out


DTYPES = [torch.float32, torch.float16, torch.int8, torch.float64]


@st.composite
def views_of_storages(draw: st.DrawFn) -> tuple[nn.Module, list[tuple[torch.Tensor, list[str],
                                                                       int]]]:
    """A module whose buffers (and some parameters) are random views of 1-3 storages: slices,
    as_strided (stride 0 too), reinterpreting .view(dtype), and the same object twice."""
    device = draw(st.sampled_from(["cpu", "meta"]))
    bases = []
    for _ in range(draw(st.integers(1, 3))):
        dtype = draw(st.sampled_from(DTYPES))
        bases.append(torch.zeros(draw(st.integers(1, 24)), dtype=dtype, device=device))
    module = nn.Module()
    objects: list[tuple[torch.Tensor, list[str], int]] = []
    for k in range(draw(st.integers(1, 6))):
        name = f"t{k}"
        how = draw(st.sampled_from(["slice", "strided", "reinterpret", "whole", "again"]))
        if how == "again" and objects:
            t, names, _ = objects[draw(st.integers(0, len(objects) - 1))]
            names.append(name)
            _register(module, name, t)
            continue
        b = draw(st.integers(0, len(bases) - 1))
        base = bases[b]
        n = base.numel()
        if how == "reinterpret":
            nbytes = n * base.element_size()
            choices = [d for d in DTYPES if nbytes % torch.empty(0, dtype=d).element_size() == 0]
            base = base.view(draw(st.sampled_from(choices)))
            n = base.numel()
            how = "slice"
        if how == "slice":
            start = draw(st.integers(0, n))
            stop = draw(st.integers(start, n))
            t = base[start:stop:draw(st.integers(1, 3))]
        elif how == "strided":
            offset = draw(st.integers(0, n - 1))
            sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
            strides = draw(st.lists(st.integers(0, 4), min_size=len(sizes),
                                    max_size=len(sizes)))
            while offset + sum((s - 1) * d for s, d in zip(sizes, strides)) >= n:
                sizes = [max(1, s - 1) for s in sizes]
                strides = [max(0, d - 1) for d in strides]
            t = base.as_strided(sizes, strides, offset)
        else:
            t = base
        if t.dtype.is_floating_point and draw(st.booleans()):
            t = nn.Parameter(t)
        same = [names for obj, names, _ in objects if obj is t]  # "whole" twice: one object
        if same:
            same[0].append(name)
        else:
            objects.append((t, [name], b))
        _register(module, name, t)
    return module, objects


def _register(module: nn.Module, name: str, t: torch.Tensor) -> None:
    if isinstance(t, nn.Parameter):
        module.register_parameter(name, t)
    else:
        module.register_buffer(name, t)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(views_of_storages())
def test_groups_and_unique_bytes_equal_brute_force(
    case: tuple[nn.Module, list[tuple[torch.Tensor, list[str], int]]],
) -> None:
    module, objects = case
    brute = brute_groups(objects)
    groups = find_tied(module)
    assert {frozenset(g.names) for g in groups} == brute.groups
    for g in groups:
        assert g.kind is brute.kinds[frozenset(g.names)], g
        assert g.nbytes == brute.nbytes[frozenset(g.names)], g
    # the entries API (used by the report) agrees with the model walk
    order = {n: i for i, n in enumerate(
        [n for n, _ in module.named_parameters(remove_duplicate=False)]
        + [n for n, _ in module.named_buffers(remove_duplicate=False)])}
    entries = [(t, sorted(names, key=order.__getitem__), min(order[n] for n in names))
               for t, names, _ in objects]
    assert tied_groups(entries) == groups
    # deterministic order: names in named_parameters-then-named_buffers order, groups by first
    for g in groups:
        positions = [order[n] for n in g.names]
        assert len(set(positions)) == len(positions)
    firsts = [order[g.names[0]] for g in groups]
    assert firsts == sorted(firsts)
    # unique bytes: the union of byte sets per storage
    expected = sum(len(set().union(*(byte_set(t) for t, _, s in objects if s == storage)))
                   for storage in {s for _, _, s in objects})
    numel, nbytes = unique_size([t for t, _, _ in objects])
    assert nbytes == expected
    by_storage: dict[int, set[torch.dtype]] = {}
    for t, _, s in objects:
        by_storage.setdefault(s, set()).add(t.dtype)
    if all(len(d) == 1 for d in by_storage.values()):
        expected_numel = sum(
            len(set().union(*(byte_set(t) for t, _, s in objects if s == storage)))
            // next(iter(dtypes)).itemsize for storage, dtypes in by_storage.items())
        assert numel == expected_numel


def test_interleaved_views_share_no_byte_and_are_not_tied() -> None:
    # regression: byte extents with a running maximum tied a[::2] and a[1::2], which share
    # no byte, and counted a[::2] as the whole extent (2n-1 elements instead of n)
    base = torch.zeros(8)
    m = nn.Module()
    m.register_buffer("even", base[::2])
    m.register_buffer("odd", base[1::2])
    assert find_tied(m) == ()
    assert unique_size([base[::2]]) == (4, 16)
    assert unique_size([base[::2], base[1::2]]) == (8, 32)
    assert unique_size([base[:1].expand(100)]) == (1, 4)


def test_touching_ranges_are_not_tied() -> None:
    base = torch.zeros(8)
    m = nn.Module()
    m.a = nn.Parameter(base[:4])
    m.b = nn.Parameter(base[4:])
    assert find_tied(m) == ()


def test_reinterpreting_view_is_an_overlap_counted_once() -> None:
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(4))
    m.register_buffer("bits", m.w.data.view(torch.int32))
    (g,) = find_tied(m)
    assert (g.names, g.kind, g.nbytes) == (("w", "bits"), TieKind.OVERLAP, 16)


# ---------------------------------------------------------------------------------------------
# real models


def declared_groups(model: nn.Module) -> set[frozenset[str]]:
    """The groups transformers itself declares (target -> source), joined by source."""
    mapping = model.get_expanded_tied_weights_keys(all_submodels=True)  # type: ignore[operator]
    by_source: dict[str, set[str]] = {}
    for target, source in mapping.items():
        by_source.setdefault(source, {source}).add(target)
    return {frozenset(g) for g in by_source.values()}


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformers_groups_are_the_declared_ties(name: str) -> None:
    model = TRANSFORMERS[name]()
    groups = find_tied(model)
    assert {frozenset(g.names) for g in groups} == declared_groups(model)
    assert all(g.kind is TieKind.ALIAS for g in groups)
    named = dict(model.named_parameters(remove_duplicate=False))
    for g in groups:
        assert g.nbytes == named[g.names[0]].nbytes
        assert g.devices == ("cpu",)


def test_untied_llama_and_gpt2_have_no_groups() -> None:
    assert find_tied(llama(tie=False)) == ()
    assert find_tied(gpt2(tie=False)) == ()
    assert [g.names for g in find_tied(llama(tie=True))] == [
        ("model.embed_tokens.weight", "lm_head.weight")]


def test_t5_one_group_of_four_names() -> None:
    (group,) = find_tied(t5())
    assert group.names == ("shared.weight", "encoder.embed_tokens.weight",
                           "decoder.embed_tokens.weight", "lm_head.weight")
    assert (group.kind, group.nbytes) == (TieKind.ALIAS, 1000 * 64 * 4)


def test_albert_ties_decoder_weight_and_bias() -> None:
    model = TRANSFORMERS["albert"]()
    assert [g.names for g in find_tied(model)] == [
        ("albert.embeddings.word_embeddings.weight", "predictions.decoder.weight"),
        ("predictions.bias", "predictions.decoder.bias"),
    ]


def test_shared_layer_of_the_chapter() -> None:
    groups = find_tied(SharedMLP())
    assert groups == (
        TiedGroup(("2.weight", "4.weight"), TieKind.ALIAS, 8 * 8 * 4, ("cpu",)),
        TiedGroup(("2.bias", "4.bias"), TieKind.ALIAS, 8 * 4, ("cpu",)),
    )


def test_meta_models_tie_by_storage_identity() -> None:
    with torch.device("meta"):
        meta = gpt2()
        views = _views_model()
    assert [(g.names, g.kind) for g in find_tied(meta)] == [
        (("transformer.wte.weight", "lm_head.weight"), TieKind.ALIAS)]
    cpu_groups = find_tied(_views_model())
    meta_groups = find_tied(views)
    assert [(g.names, g.kind, g.nbytes) for g in meta_groups] == [
        (g.names, g.kind, g.nbytes) for g in cpu_groups]
    assert meta_groups[0].devices == ("meta",)


def _views_model() -> nn.Module:
    """a.weight; b.weight over the same bytes (shared_storage); c.weight a slice (overlap)."""
    m = nn.Module()
    m.a = nn.Linear(4, 4)
    m.b = nn.Linear(4, 4)
    m.c = nn.Linear(4, 2)
    m.b.weight = nn.Parameter(m.a.weight.data)
    m.c.weight = nn.Parameter(m.a.weight.data[1:3])
    m.d = nn.Linear(4, 4)
    m.d.weight = nn.Parameter(m.a.weight.data)
    m.e = nn.Linear(4, 4)
    m.e.bias = nn.Parameter(m.e.weight.data[0], requires_grad=False)  # an overlap in e only
    return m


def test_lazy_tensors_tie_by_identity_with_unknown_size() -> None:
    m = nn.Sequential(nn.LazyLinear(3))
    m.add_module("again", m[0])
    assert [(g.names, g.kind, g.nbytes) for g in find_tied(m)] == [
        (("0.weight", "again.weight"), TieKind.ALIAS, 0),
        (("0.bias", "again.bias"), TieKind.ALIAS, 0),
    ]


def brute_numel_per_module(model: nn.Module) -> dict[str, int]:
    return {path: unique_storage_numel(sub) for path, sub in model.named_modules()}


@pytest.mark.parametrize("build", [SharedMLP, _views_model], ids=["shared-mlp", "views"])
def test_summarize_every_block_total_equals_brute_force(build: Callable[[], nn.Module]) -> None:
    model = build()
    report = torchscope.summarize(model)
    expected = brute_numel_per_module(model)
    assert {m.path: m.total_params for m in report.modules} == expected
    assert report.total_params == unique_storage_numel(model)
    assert report.param_bytes == unique_size(list(model.parameters()))[1]
    assert [g for g in report.tied] == list(find_tied(model))


def test_summarize_totals_with_reinterpreting_views() -> None:
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(6))
    m.v = nn.Parameter(m.w.data[2:])
    m.register_buffer("bits", m.w.data.view(torch.int16))
    report = torchscope.summarize(m)
    assert report.total_params == unique_storage_numel(m) == 6
    assert report.buffer_bytes == 24


# ---------------------------------------------------------------------------------------------
# findings


def codes(findings: tuple[torchscope.Finding, ...]) -> list[str]:
    return [f.code for f in findings]


def test_intact_transformers_only_note_safetensors() -> None:
    for name, build in TRANSFORMERS.items():
        model = build()
        found = check_ties(model)
        expected = ["tie-safetensors"] if find_tied(model) else []
        assert codes(found) == expected, name
        assert all(f.severity is Severity.INFO for f in found)


def test_declared_tie_on_different_devices_is_an_error() -> None:
    model = llama(tie=True)
    # what a hand-written device map does: the head lives elsewhere, no longer the same tensor
    model.lm_head.weight = nn.Parameter(model.model.embed_tokens.weight.detach().to("meta"))
    finding = check_ties(model)[0]
    assert finding.code == "tie-devices" and finding.severity is Severity.ERROR
    assert finding.path == "lm_head.weight"
    assert "model.embed_tokens.weight (cpu)" in finding.message
    assert "lm_head.weight (meta)" in finding.message
    assert "tie_weights()" in (finding.hint or "")
    model.lm_head.weight = model.model.embed_tokens.weight
    assert "tie-devices" not in codes(check_ties(model))


def test_declared_tie_broken_by_load_state_dict_assign() -> None:
    model = gpt2()
    copies = {k: v.clone() for k, v in model.state_dict().items()}  # what load_file returns
    model.load_state_dict(copies, assign=True)
    found = check_ties(model)
    assert codes(found) == ["tie-untied"]
    assert found[0].severity is Severity.WARNING
    assert "config.tie_word_embeddings=True" in found[0].message
    model.tie_weights()
    assert codes(check_ties(model)) == ["tie-safetensors"]


def test_untied_config_declares_nothing() -> None:
    model = llama(tie=False)
    assert check_ties(model) == ()


def test_shared_storage_finding_names_what_breaks_it() -> None:
    model = _views_model()
    found = check_ties(model)
    assert codes(found) == ["tie-overlap", "tie-overlap", "tie-requires-grad", "tie-safetensors"]
    assert [f.path for f in found] == ["a.weight", "e.weight", "e.bias", "a.weight"]
    message = found[0].message
    for op in ("deepcopy", ".to(dtype)", ".half()", "to('meta')", "to_empty()",
               "load_state_dict into a freshly built model"):
        assert op in message, op


def _shared_storage_model() -> nn.Module:
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    m[1].weight = nn.Parameter(m[0].weight.data)
    return m


def _alias_model() -> nn.Module:
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    m[1].weight = m[0].weight
    return m


def _kinds(model: nn.Module) -> list[TieKind]:
    return [g.kind for g in find_tied(model)]


def test_the_claims_of_the_shared_storage_message() -> None:
    (finding, _) = check_ties(_shared_storage_model())
    assert finding.code == "tie-shared-storage"
    assert "deepcopy" in finding.message and "survives deepcopy" in (finding.hint or "")
    # each operation the message names separates a shared_storage tie ...
    assert _kinds(copy.deepcopy(_shared_storage_model())) == []
    assert _kinds(_shared_storage_model().to(torch.float64)) == []
    assert _kinds(_shared_storage_model().half()) == []
    assert _kinds(_shared_storage_model().to("meta")) == []
    assert _kinds(_shared_storage_model().to("meta").to_empty(device="cpu")) == []
    fresh = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    fresh.load_state_dict(_shared_storage_model().state_dict())
    assert _kinds(fresh) == []
    # ... while an alias survives deepcopy and .to(dtype), as the hint says
    assert _kinds(copy.deepcopy(_alias_model())) == [TieKind.ALIAS]
    assert _kinds(_alias_model().to(torch.float64)) == [TieKind.ALIAS]
    assert _kinds(_alias_model().half()) == [TieKind.ALIAS]


def test_requires_grad_mismatch() -> None:
    model = _shared_storage_model()
    model[1].weight.requires_grad_(False)
    found = [f for f in check_ties(model) if f.code == "tie-requires-grad"]
    assert len(found) == 1 and found[0].path == "1.weight"
    assert "requires_grad=False" in found[0].message


def test_safetensors_finding_matches_what_safetensors_does(tmp_path: Path) -> None:
    from safetensors.torch import load_model, save_file, save_model

    shared = _shared_storage_model()
    (info,) = [f for f in check_ties(shared) if f.code == "tie-safetensors"]
    assert info.severity is Severity.INFO and "save_model" in (info.hint or "")
    with pytest.raises(RuntimeError, match="share memory"):
        save_file(shared.state_dict(), str(tmp_path / "a.safetensors"))
    save_model(shared, str(tmp_path / "a.safetensors"))  # the fix the hint gives
    again = _shared_storage_model()
    load_model(again, str(tmp_path / "a.safetensors"))
    assert torch.equal(again[1].weight, shared[1].weight)

    # two overlapping slices, neither covering the storage: save_model refuses too
    m = nn.Module()
    base = torch.zeros(10)
    m.a = nn.Parameter(base[0:6])
    m.b = nn.Parameter(base[4:10])
    m.register_buffer("pad", base[9:])  # keeps the storage larger than either slice... overlap
    (warn,) = [f for f in check_ties(m) if f.code == "tie-safetensors"]
    assert warn.severity is Severity.WARNING
    with pytest.raises(RuntimeError, match="None is covering the entire storage"):
        save_model(m, str(tmp_path / "b.safetensors"))

    # no finding: safetensors saves it
    plain = llama(tie=False)
    assert check_ties(plain) == ()
    save_file(plain.state_dict(), str(tmp_path / "c.safetensors"))


def test_nonpersistent_buffers_are_not_in_the_safetensors_finding() -> None:
    m = nn.Module()
    m.register_buffer("a", torch.zeros(4))
    m.register_buffer("b", m.a, persistent=False)
    assert codes(check_ties(m)) == []


def test_checks_and_guard_have_no_side_effects() -> None:
    for build in (gpt2, _views_model, SharedMLP):
        model = build()
        before = state_fingerprint(model)
        check_ties(model)
        find_tied(model)
        snap = snapshot_ties(model)
        compare_ties(snap, model)
        with watch_ties(model):
            pass
        assert_same_state(before, state_fingerprint(model))


# ---------------------------------------------------------------------------------------------
# the tie guard


def test_snapshot_is_plain_values_and_unchanged_model_has_no_findings() -> None:
    model = gpt2()
    snap = snapshot_ties(model)
    assert snap == TieSnapshot("GPT2LMHeadModel", find_tied(model))
    assert json.loads(json.dumps([list(g.names) for g in snap.groups]))
    assert compare_ties(snap, model) == ()


def test_to_meta_breaks_a_tie_across_modules() -> None:
    model = gpt2()
    snap = snapshot_ties(model)
    model.to("meta")
    (f,) = compare_ties(snap, model)
    assert (f.code, f.severity, f.path) == ("tie-broken", Severity.WARNING,
                                           "transformer.wte.weight")
    assert "transformer.wte.weight (meta) | lm_head.weight (meta)" in f.message


def test_to_empty_after_meta_construction_breaks_the_tie() -> None:
    with torch.device("meta"):
        model = gpt2()
    snap = snapshot_ties(model)
    with watch_ties(model) as found:
        model.to_empty(device="cpu")
    assert codes(tuple(found)) == ["tie-broken"]
    # tie_weights() restores it: compared with the broken state, the tie is created
    broken = snapshot_ties(model)
    model.tie_weights()
    assert codes(compare_ties(broken, model)) == ["tie-created"]
    assert compare_ties(snap, model) == ()


def test_load_state_dict_assign_breaks_or_changes_the_tie() -> None:
    model = gpt2()
    snap = snapshot_ties(model)
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    assert codes(compare_ties(snap, model)) == ["tie-broken"]
    model = gpt2()
    model.load_state_dict(model.state_dict(), assign=True)
    (f,) = compare_ties(snap, model)
    assert (f.code, f.severity) == ("tie-changed", Severity.WARNING)
    assert "from alias to shared_storage" in f.message


def test_plain_load_state_dict_keeps_ties() -> None:
    model = gpt2()
    with watch_ties(model) as found:
        model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    assert found == []


def test_shared_module_survives_to_meta() -> None:
    # one module at two places is moved once by _apply: its alias tie survives .to("meta")
    model = SharedMLP()
    with watch_ties(model) as found:
        model.to("meta")
    assert found == []


def test_wrapped_models_compare_by_unwrapped_names() -> None:
    model = gpt2()
    snap = snapshot_ties(model)
    assert compare_ties(snap, torch.compile(model)) == ()
    ddp_like = nn.Module()
    ddp_like.module = model  # DistributedDataParallel names everything module.*
    assert compare_ties(snap, ddp_like) == ()
    assert codes(compare_ties(snap, nn.Linear(2, 2))) == ["tie-gone"]


def test_watch_reports_also_when_the_block_raises() -> None:
    model = _alias_model()
    with pytest.raises(ValueError, match="boom"), watch_ties(model) as found:
        model.to("meta")
        raise ValueError("boom")
    assert codes(tuple(found)) == ["tie-broken"]


def test_guard_errors_name_the_value_and_fix() -> None:
    with pytest.raises(TorchscopeError, match=r"needs a TieSnapshot, got dict.*snapshot_ties"):
        compare_ties({}, gpt2())  # type: ignore[arg-type]
    with pytest.raises(TorchscopeError, match=r"needs an nn.Module, got 'gpt2' \(str\)"):
        snapshot_ties("gpt2")  # type: ignore[arg-type]


def test_public_names() -> None:
    assert torchscope.find_tied is find_tied
    assert torchscope.check_ties is check_ties
    assert torchscope.snapshot_ties is snapshot_ties
    assert torchscope.compare_ties is compare_ties
    assert torchscope.TieSnapshot is TieSnapshot


# ---------------------------------------------------------------------------------------------
# CLI


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchscope", *args], capture_output=True,
                          text=True, check=False, timeout=300)


def test_cli_summarize_lists_the_tied_groups(snapshot: Callable[[str, str], None]) -> None:
    out = _run("summarize", "torchscope.examples:SharedMLP", "--ties", "--format", "text")
    assert out.returncode == 0, out.stderr
    ties = out.stdout[out.stdout.index("Tied tensors"):]
    snapshot("tying_sharedmlp_ties.txt", ties)


def test_cli_check_includes_tie_findings(tmp_path: Path) -> None:
    source = tmp_path / "tiednet.py"
    source.write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Linear(4, 4), nn.Linear(4, 4))\n"
        "        self[1].weight = nn.Parameter(self[0].weight.data)\n",
        encoding="utf-8",
    )
    out = _run("check", f"{source}:Net", "--format", "json")
    found = json.loads(out.stdout)["findings"]
    assert {"tie-shared-storage", "tie-safetensors"} <= {f["code"] for f in found}
