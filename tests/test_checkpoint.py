"""Checkpoints: every format, safe reading, shared storage, training checkpoints, diffs, CLI."""

from __future__ import annotations

import copy
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import load_file, save_file, save_model
from torch import nn

import torchscope
from tests.models import TRANSFORMERS, assert_same_state, bert, gpt2, state_fingerprint
from torchscope import examples
from torchscope.cli import main
from torchscope.errors import CheckpointError
from torchscope.records import CheckpointDiff, CheckpointInfo, Severity, TieKind

# ------------------------------------------------------------------------------------------
# helpers


def _codes(obj: CheckpointInfo | CheckpointDiff) -> list[str]:
    return [f.code for f in obj.findings]


def _strict_load_works(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> bool:
    """What really happens: load into a copy with strict=True."""
    try:
        copy.deepcopy(model).load_state_dict(sd, strict=True)
    except RuntimeError:
        return False
    return True


def _file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@contextmanager
def _unchanged(path: Path) -> Iterator[None]:
    before = _file_state(path) if path.is_file() else None
    yield
    if before is not None:
        assert _file_state(path) == before, f"{path} was modified"


def _compile(model: nn.Module) -> nn.Module:
    """``torch.compile`` (lazy: compiles nothing until called); its imports warn on 3.11."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = torch.compile(model)
    assert isinstance(compiled, nn.Module)
    return compiled


class Wrapper(nn.Module):
    """Holds the network as ``.model`` (like a Lightning module): keys start with ``model.``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = examples.MLP()


class WideMLP(nn.Module):
    """The MLP's key names with another hidden width: every weight's shape differs."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(20, 128)
        self.act = nn.ReLU()
        self.output = nn.Linear(128, 10)


# ------------------------------------------------------------------------------------------
# the chapter: a tensor, a list, a dict, a model's parameters


def test_chapter_tensor_list_dict(tmp_path: Path) -> None:
    x = torch.arange(4)
    y = torch.zeros(4)
    torch.save(x, tmp_path / "x-file")
    torch.save([x, y], tmp_path / "x-files")
    torch.save({"x": x, "y": y}, tmp_path / "mydict")

    one = torchscope.inspect_checkpoint(tmp_path / "x-file")
    assert [(e.name, e.shape, e.dtype) for e in one.entries] == [("", (4,), "int64")]
    assert one.state_dicts == ()
    pair = torchscope.inspect_checkpoint(tmp_path / "x-files")
    assert [(e.name, e.dtype) for e in pair.entries] == [("0", "int64"), ("1", "float32")]
    assert pair.total_bytes == x.nbytes + y.nbytes
    mydict = torchscope.inspect_checkpoint(tmp_path / "mydict")
    assert [e.name for e in mydict.entries] == ["x", "y"]
    assert mydict.state_dicts == ("",)


def test_chapter_round_trip(tmp_path: Path) -> None:
    net = examples.MLP()
    X = torch.randn(2, 20)
    path = tmp_path / "mlp.params"
    torch.save(net.state_dict(), path)

    info = torchscope.inspect_checkpoint(path)
    sd = net.state_dict()
    assert [(e.name, e.shape, e.dtype) for e in info.entries] == [
        (k, tuple(v.shape), "float32") for k, v in sd.items()
    ]
    assert info.total_numel == sum(v.numel() for v in sd.values()) == 7946
    assert info.total_bytes == info.stored_bytes == sum(v.nbytes for v in sd.values())
    assert info.file_bytes == path.stat().st_size
    assert info.format == "torch-zip"

    clone = examples.MLP()
    diff = torchscope.diff_checkpoint(clone, path)
    assert diff.would_load_strict and diff.matched == 4
    assert (diff.missing, diff.unexpected, diff.findings) == ((), (), ())
    # what the diff promised: the chapter's load works and the clone computes the same
    clone.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(clone(X), net(X))


@pytest.mark.parametrize("name", ["mlp.pt", "mlp.pth", "mlp.bin", "mlp.params", "mlp"])
def test_torch_save_any_suffix(tmp_path: Path, name: str) -> None:
    torch.save(examples.MLP().state_dict(), tmp_path / name)
    info = torchscope.inspect_checkpoint(tmp_path / name)
    assert info.format == "torch-zip"
    assert [e.name for e in info.entries] == list(examples.MLP().state_dict())


def test_recognized_by_content_not_suffix(tmp_path: Path) -> None:
    sd = examples.MLP().state_dict()
    save_file(sd, tmp_path / "weights.pt")
    torch.save(sd, tmp_path / "weights.safetensors")
    assert torchscope.inspect_checkpoint(tmp_path / "weights.pt").format == "safetensors"
    assert torchscope.inspect_checkpoint(tmp_path / "weights.safetensors").format == "torch-zip"


def test_legacy_format(tmp_path: Path) -> None:
    net = examples.MLP()
    path = tmp_path / "old.pt"
    torch.save({"model": net.state_dict(), "step": 7}, path,
               _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    info = torchscope.inspect_checkpoint(path)
    assert info.format == "torch-legacy"
    assert info.state_dicts == ("model",)
    assert info.scalars == (("step", "7"),)
    assert torchscope.diff_checkpoint(examples.MLP(), path).would_load_strict


def test_safetensors(tmp_path: Path) -> None:
    tensors = {"emb": torch.zeros(10, 4, dtype=torch.bfloat16), "w": torch.ones(3, 5),
               "ids": torch.arange(6, dtype=torch.int32), "flag": torch.ones(2, dtype=torch.bool)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, path, metadata={"format": "pt", "note": "hello"})
    info = torchscope.inspect_checkpoint(path)
    assert info.format == "safetensors"
    got = {e.name: (e.shape, e.dtype, e.nbytes, e.device) for e in info.entries}
    assert got == {k: (tuple(v.shape), str(v.dtype).removeprefix("torch."), v.nbytes, None)
                   for k, v in tensors.items()}
    assert dict(info.metadata) == {"format": "pt", "note": "hello"}
    assert info.total_bytes == sum(v.nbytes for v in tensors.values())


def _write_sharded(folder: Path, sd: Mapping[str, torch.Tensor], *, torch_shards: bool) -> Path:
    keys = list(sd)
    half = len(keys) // 2
    parts = [keys[:half], keys[half:]]
    suffix = "bin" if torch_shards else "safetensors"
    weight_map = {}
    for i, part in enumerate(parts, 1):
        name = f"model-{i:05d}-of-00002.{suffix}"
        chunk = {k: sd[k].contiguous() for k in part}
        if torch_shards:
            torch.save(chunk, folder / name)
        else:
            save_file(chunk, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = folder / f"model.{suffix}.index.json"
    total = sum(v.nbytes for v in sd.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("torch_shards", [False, True], ids=["safetensors", "torch"])
def test_sharded_checkpoint(tmp_path: Path, torch_shards: bool) -> None:
    net = examples.NestMLP()
    index = _write_sharded(tmp_path, net.state_dict(), torch_shards=torch_shards)
    info = torchscope.inspect_checkpoint(index)
    assert info.format == "sharded"
    assert len(info.shards) == 2
    assert sorted(e.name for e in info.entries) == sorted(net.state_dict())
    assert {e.shard for e in info.entries} == set(info.shards)
    assert info.file_bytes == sum((tmp_path / s).stat().st_size for s in info.shards)
    assert "checkpoint-index-size" not in _codes(info)
    assert torchscope.diff_checkpoint(examples.NestMLP(), index).would_load_strict
    assert not torchscope.diff_checkpoint(examples.MLP(), index).would_load_strict


def test_sharded_missing_shard_and_lying_index(tmp_path: Path) -> None:
    index = _write_sharded(tmp_path, examples.NestMLP().state_dict(), torch_shards=False)
    data = json.loads(index.read_text())
    data["weight_map"]["net.0.weight"] = data["weight_map"]["linear.bias"]  # wrong shard
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"lacks 1 tensor.*'net.0.weight'"):
        torchscope.inspect_checkpoint(index)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.unlink()
    with pytest.raises(CheckpointError, match=r"shard 'model-00002-of-00002.safetensors'.*does "
                       r"not exist"):
        torchscope.inspect_checkpoint(index)


def test_directory_names_its_index(tmp_path: Path) -> None:
    _write_sharded(tmp_path, examples.MLP().state_dict(), torch_shards=False)
    with pytest.raises(CheckpointError, match=r"is a directory.*model.safetensors.index.json"):
        torchscope.inspect_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------
# training checkpoints


def _train_checkpoint(path: Path) -> tuple[nn.Module, torch.optim.Optimizer]:
    net = examples.MLP()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 20)).sum().backward()
    opt.step()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "best": 0.25, "history": [1.0, 0.5]}, path)
    return net, opt


def test_training_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    _, opt = _train_checkpoint(path)
    info = torchscope.inspect_checkpoint(path)
    assert info.state_dicts == ("model",)
    assert dict(info.scalars) == {"epoch": "3", "best": "0.25", "history": "[1.0, 0.5]"}
    (o,) = info.optimizers
    state = opt.state_dict()["state"]
    tensors = [t for s in state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    assert (o.path, o.params_with_state, o.param_groups) == ("optimizer", 4, 1)
    assert o.tensors == len(tensors) == 12
    assert o.nbytes == sum(t.nbytes for t in tensors)
    assert set(o.state_keys) == {"step", "exp_avg", "exp_avg_sq"}
    assert ("lr", "0.001") in o.hyperparams

    diff = torchscope.diff_checkpoint(examples.MLP(), path)
    assert diff.state_dict == "model" and diff.would_load_strict
    assert torchscope.diff_checkpoint(examples.MLP(), path, key="model").would_load_strict
    with pytest.raises(CheckpointError, match=r"no state dict at key='ema'.*'model'"):
        torchscope.diff_checkpoint(examples.MLP(), path, key="ema")


def test_picks_the_matching_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    torch.save({"encoder": examples.NestMLP().state_dict(),
                "decoder": examples.MLP().state_dict()}, path)
    info = torchscope.inspect_checkpoint(path)
    assert info.state_dicts == ("encoder", "decoder")
    diff = torchscope.diff_checkpoint(examples.MLP(), path)
    assert diff.state_dict == "decoder" and diff.would_load_strict
    assert "checkpoint-state-dict" in _codes(diff)


def test_no_state_dict_to_diff(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=r"holds one tensor: there is no state dict"):
        torchscope.diff_checkpoint(examples.MLP(), tmp_path / "t.pt")


# ------------------------------------------------------------------------------------------
# shared storage inside a file


def test_tied_embeddings_torch_save_keeps_shared_storage(tmp_path: Path) -> None:
    model = gpt2()
    path = tmp_path / "gpt2.pt"
    torch.save(model.state_dict(), path)
    info = torchscope.inspect_checkpoint(path)
    (group,) = info.shared
    assert group.names == ("transformer.wte.weight", "lm_head.weight")
    assert group.kind == TieKind.SHARED_STORAGE
    wte = model.get_parameter("transformer.wte.weight")
    assert group.nbytes == wte.nbytes
    entries = {e.name: e for e in info.entries}
    assert info.total_bytes == sum(e.nbytes for e in info.entries) - wte.nbytes
    assert entries["lm_head.weight"].nbytes == wte.nbytes
    diff = torchscope.diff_checkpoint(gpt2(), path)
    assert diff.would_load_strict and diff.untied_in_file == ()
    assert diff.would_load_strict == _strict_load_works(gpt2(), torch.load(path,
                                                                           weights_only=True))


def test_alias_overlap_and_saved_views(tmp_path: Path) -> None:
    w = torch.randn(100, 10)
    path = tmp_path / "views.pt"
    torch.save({"w": w, "same": w, "row": w[3], "small": torch.randn(1000)[:5]}, path)
    info = torchscope.inspect_checkpoint(path)
    kinds = {g.names: g.kind for g in info.shared}
    assert kinds == {("w", "same", "row"): TieKind.OVERLAP}
    alias_path = tmp_path / "alias.pt"
    torch.save({"w": w, "same": w}, alias_path)
    (g,) = torchscope.inspect_checkpoint(alias_path).shared
    assert (g.names, g.kind, g.nbytes) == (("w", "same"), TieKind.ALIAS, w.nbytes)
    small = info.entry("small")
    assert (small.nbytes, small.stored_bytes) == (20, 4000)
    assert info.stored_bytes == w.nbytes + 4000
    assert info.total_bytes == w.nbytes + 20
    assert "checkpoint-view-storage" in _codes(info)


def test_safetensors_save_model_keeps_one_copy(tmp_path: Path) -> None:
    model = gpt2()
    path = tmp_path / "gpt2.safetensors"
    save_model(model, str(path))
    info = torchscope.inspect_checkpoint(path)
    names = {e.name for e in info.entries}
    assert len({"transformer.wte.weight", "lm_head.weight"} & names) == 1
    assert info.shared == ()

    target = gpt2()
    diff = torchscope.diff_checkpoint(target, path)
    ((missing, present),) = diff.tied_missing
    assert {missing, present} == {"transformer.wte.weight", "lm_head.weight"}
    assert diff.missing == (missing,)
    assert not diff.would_load_strict
    assert "checkpoint-tied-missing" in _codes(diff)
    sd = load_file(path)
    assert diff.would_load_strict == _strict_load_works(target, sd) is False
    # the fix the finding gives works: strict=False leaves only the tied key missing
    twin = copy.deepcopy(target)
    result = twin.load_state_dict(sd, strict=False)
    assert result.missing_keys == [missing] and result.unexpected_keys == []
    assert torch.equal(twin.get_parameter("lm_head.weight"), sd[present])


# ------------------------------------------------------------------------------------------
# diffs


def test_mismatched_model(tmp_path: Path) -> None:
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    diff = torchscope.diff_checkpoint(examples.NestMLP(), path)
    assert not diff.would_load_strict
    assert set(diff.missing) == set(examples.NestMLP().state_dict())
    assert set(diff.unexpected) == set(examples.MLP().state_dict())
    assert {"checkpoint-missing", "checkpoint-unexpected"} <= set(_codes(diff))
    assert diff.strip_prefix is None and diff.add_prefix is None


def test_shape_mismatch_fails_even_non_strict(tmp_path: Path) -> None:
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    model = WideMLP()
    diff = torchscope.diff_checkpoint(model, path)
    assert {s.name: (s.file_shape, s.model_shape) for s in diff.shape_mismatches} == {
        "hidden.weight": ((256, 20), (128, 20)),
        "hidden.bias": ((256,), (128,)),
        "output.weight": ((10, 256), (10, 128)),
    }
    assert not diff.would_load_strict and not diff.would_load_after_fix
    with pytest.raises(RuntimeError, match="size mismatch"):
        copy.deepcopy(model).load_state_dict(torch.load(path, weights_only=True), strict=False)


def test_dtype_difference_loads_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    model = examples.MLP().half()
    diff = torchscope.diff_checkpoint(model, path)
    assert diff.would_load_strict
    first = diff.dtype_mismatches[0]
    assert (first.name, first.file_dtype, first.model_dtype) == (
        "hidden.weight", "float32", "float16")
    dtype_findings = [f for f in diff.findings if f.code == "checkpoint-dtype"]
    assert len(dtype_findings) == 4 and dtype_findings[0].severity == Severity.WARNING
    assert _strict_load_works(model, torch.load(path, weights_only=True))


def _prefixed(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


@pytest.mark.parametrize(
    ("saved", "prefix"),
    [
        (lambda m: nn.DataParallel(m).state_dict(), "module."),
        (lambda m: _compile(m).state_dict(), "_orig_mod."),
        (lambda m: _compile(nn.DataParallel(m)).state_dict(), "_orig_mod.module."),
        (lambda m: _prefixed(m.state_dict(), "model."), "model."),
    ],
    ids=["ddp", "compile", "compile-ddp", "model"],
)
def test_wrapper_prefix_in_file(tmp_path: Path, saved: Callable[[nn.Module], Any],
                                prefix: str) -> None:
    net = examples.MLP()
    sd = saved(net)
    assert all(k.startswith(prefix) for k in sd)
    path = tmp_path / "wrapped.pt"
    torch.save(sd, path)
    model = examples.MLP()
    diff = torchscope.diff_checkpoint(model, path)
    assert diff.strip_prefix == prefix and diff.add_prefix is None
    assert not diff.would_load_strict and diff.would_load_after_fix
    assert diff.matched == 4 and diff.missing == () and diff.unexpected == ()
    (finding,) = [f for f in diff.findings if f.code == "checkpoint-prefix"]
    assert finding.hint is not None and prefix in finding.hint
    assert not _strict_load_works(model, sd)
    # the fix in the hint works
    loaded = torch.load(path, weights_only=True)
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(loaded, prefix)
    assert _strict_load_works(model, loaded)


def test_model_wrapped_file_plain(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(examples.MLP().state_dict(), path)
    compiled = _compile(examples.MLP())
    diff = torchscope.diff_checkpoint(compiled, path)
    assert diff.add_prefix == "_orig_mod." and diff.strip_prefix is None
    assert not diff.would_load_strict and diff.would_load_after_fix
    (finding,) = [f for f in diff.findings if f.code == "checkpoint-prefix"]
    assert finding.hint == "load into the wrapped module: model._orig_mod.load_state_dict(sd)"
    inner = compiled._orig_mod
    assert isinstance(inner, nn.Module)
    assert _strict_load_works(inner, torch.load(path, weights_only=True))
    wrapper_diff = torchscope.diff_checkpoint(Wrapper(), path)
    assert wrapper_diff.add_prefix == "model." and wrapper_diff.would_load_after_fix


def _untied_file(path: Path, *, equal: bool) -> dict[str, torch.Tensor]:
    src = gpt2(tie=False)
    with torch.no_grad():
        if equal:
            src.get_parameter("lm_head.weight").copy_(src.get_parameter("transformer.wte.weight"))
        else:
            src.get_parameter("lm_head.weight").add_(1.0)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("equal", [False, True], ids=["values-differ", "equal-values"])
def test_model_ties_file_stores_two_tensors(tmp_path: Path, equal: bool) -> None:
    path = tmp_path / "untied.pt"
    sd = _untied_file(path, equal=equal)
    model = gpt2()
    diff = torchscope.diff_checkpoint(model, path)
    (u,) = diff.untied_in_file
    assert set(u.names) == {"transformer.wte.weight", "lm_head.weight"}
    assert u.values_differ is (not equal)
    assert diff.would_load_strict
    code = "checkpoint-tie-copies" if equal else "checkpoint-tie-conflict"
    (finding,) = [f for f in diff.findings if f.code == code]
    assert finding.severity == (Severity.INFO if equal else Severity.ERROR)
    # what the finding says happens: every tied name ends up with the winner's values
    twin = copy.deepcopy(model)
    twin.load_state_dict(sd)
    wte = twin.get_parameter("transformer.wte.weight")
    assert torch.equal(wte, sd[u.wins])
    assert wte is twin.get_parameter("lm_head.weight")


def test_file_ties_model_does_not(tmp_path: Path) -> None:
    path = tmp_path / "tied.pt"
    torch.save(gpt2().state_dict(), path)
    diff = torchscope.diff_checkpoint(gpt2(tie=False), path)
    assert diff.would_load_strict
    assert "checkpoint-tie-lost" in _codes(diff)


def test_lazy_model(tmp_path: Path) -> None:
    done = examples.LazyMLP()
    done(torch.zeros(2, 20))
    path = tmp_path / "lazy.pt"
    torch.save(done.state_dict(), path)
    model = examples.LazyMLP()
    diff = torchscope.diff_checkpoint(model, path)
    assert diff.would_load_strict and diff.shape_mismatches == ()
    assert "checkpoint-lazy" in _codes(diff)
    assert _strict_load_works(model, torch.load(path, weights_only=True))


def test_diff_in_memory_state_dict() -> None:
    sd = nn.DataParallel(examples.MLP()).state_dict()
    diff = torchscope.diff_checkpoint(examples.MLP(), sd)
    assert diff.source == "<state_dict>" and diff.strip_prefix == "module."
    assert torchscope.diff_checkpoint(examples.MLP(), examples.MLP().state_dict()).ok


@pytest.mark.parametrize("case", ["plain", "prefixed", "untied", "evil"])
def test_diff_never_touches_the_model(tmp_path: Path, case: str) -> None:
    model = gpt2()
    model.eval()
    path = tmp_path / "f.pt"
    if case == "plain":
        torch.save(gpt2().state_dict(), path)
    elif case == "prefixed":
        torch.save(nn.DataParallel(gpt2()).state_dict(), path)
    elif case == "untied":
        _untied_file(path, equal=False)
    else:
        _evil_file(path, tmp_path / "marker", legacy=False)
    before = state_fingerprint(model)
    if case == "evil":
        with pytest.raises(CheckpointError, match="not plain tensors"):
            torchscope.diff_checkpoint(model, path)
    else:
        torchscope.diff_checkpoint(model, path)
    assert_same_state(before, state_fingerprint(model))
    assert model.get_parameter("lm_head.weight") is model.get_parameter("transformer.wte.weight")


def test_records_hold_plain_values_and_json(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    _train_checkpoint(path)
    info = torchscope.inspect_checkpoint(path)
    data = json.loads(info.to_json())
    assert data["total_numel"] == info.total_numel
    assert data["optimizers"][0]["tensors"] == 12
    diff = torchscope.diff_checkpoint(examples.NestMLP(), path)
    ddata = json.loads(diff.to_json())
    assert ddata["would_load_strict"] is False
    assert ddata["findings"][0]["severity"] in ("error", "warning", "info")

    def plain(value: Any) -> None:
        assert not isinstance(value, (torch.Tensor, nn.Module))
        if isinstance(value, tuple):
            for v in value:
                plain(v)
        elif hasattr(value, "__slots__") and hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                plain(getattr(value, name))

    plain(info)
    plain(diff)
    with pytest.raises(AttributeError):
        info.path = "x"


# ------------------------------------------------------------------------------------------
# bad input: one clear error, nothing run, nothing modified


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _evil_file(path: Path, marker: Path, *, legacy: bool) -> None:
    obj = {"weight": torch.zeros(2), "payload": _Payload(marker)}
    if legacy == "raw":  # type: ignore[comparison-overlap]
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=2)
        return
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [False, True, "raw"], ids=["zip", "legacy", "raw-pickle"])
def test_malicious_pickle_does_not_run(tmp_path: Path, legacy: Any) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    _evil_file(path, marker, legacy=legacy)
    # the payload is real: plain unpickling would create the marker
    assert not marker.exists()
    with _unchanged(path):
        with pytest.raises(CheckpointError, match=r"contains code or objects that are not plain "
                           r"tensors \(it references [\w.]+\).*never unpickles arbitrary"):
            torchscope.inspect_checkpoint(path)
        with pytest.raises(CheckpointError, match="not plain tensors"):
            torchscope.diff_checkpoint(examples.MLP(), path)
    assert not marker.exists()
    assert main(["checkpoint", str(path)]) == 2
    assert not marker.exists()


def test_payload_is_real_when_unpickled_unsafely(tmp_path: Path) -> None:
    # guards the test above: the same file does run code under plain pickle
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    _evil_file(path, marker, legacy="raw")  # type: ignore[arg-type]
    with path.open("rb") as f:
        pickle.load(f)  # deliberately unsafe, on our own file
    assert marker.exists()


def test_non_tensor_objects_named(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "args.pt"
    torch.save({"model": examples.MLP().state_dict(), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match=r"references argparse.Namespace"):
        torchscope.inspect_checkpoint(path)


def _corrupt_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.pt"
    torch.save(examples.MLP().state_dict(), good)
    data = good.read_bytes()
    legacy = tmp_path / "legacy_src.pt"
    torch.save(examples.MLP().state_dict(), legacy, _use_new_zipfile_serialization=False)
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", r"is empty \(0 bytes\)"),
        "truncated-zip": (data[: len(data) // 2], r"starts like a zip archive.*truncated or "
                                                  r"corrupt"),
        "truncated-legacy": (legacy.read_bytes()[:-100], r"cannot read .* as a torch.save file"
                                                         r".*truncated or corrupt"),
        "garbage": (b"hello world, not a checkpoint", r"not a checkpoint torchscope can read"),
        "json-not-index": (b'{"a": 1}', r"not a sharded checkpoint index"),
        "zip-not-torch": (b"", r"zip archive but not a torch.save checkpoint"),
    }
    out = {}
    for name, (raw, pattern) in cases.items():
        path = tmp_path / name
        if name == "zip-not-torch":
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("readme.txt", "hi")
        else:
            path.write_bytes(raw)
        out[name] = (path, pattern)
    return out


def test_missing_directory_empty_truncated_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'.*nope.pt' does not exist"):
        torchscope.inspect_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match=r"is a directory, not a file"):
        torchscope.inspect_checkpoint(tmp_path)
    for name, (path, pattern) in _corrupt_cases(tmp_path).items():
        with _unchanged(path), pytest.raises(CheckpointError, match=pattern):
            torchscope.inspect_checkpoint(path)
        assert main(["checkpoint", str(path), "--format", "text"]) == 2, name


def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with _unchanged(path), pytest.raises(CheckpointError, match="TorchScript archive"):
        torchscope.inspect_checkpoint(path)


def _safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


_LIES: dict[str, tuple[dict[str, Any], int, str]] = {
    "offsets-beyond-file": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8,
                            r"ends at byte 16 but the data section has only 8 bytes"),
    "size-not-shape": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, 16,
                       r"shape \[3\] of F32 \(12 bytes\).*span 16 bytes: the header lies"),
    "overlap": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16, r"overlap"),
    "bad-shape": ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4,
                  r"shape \[-1\], not a list of sizes"),
    "reversed": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, 8,
                 r"begin > end"),
    "bad-metadata": ({"__metadata__": {"n": 1}}, 0, r"__metadata__ must map strings"),
}


@pytest.mark.parametrize("case", list(_LIES))
def test_safetensors_lying_header(tmp_path: Path, case: str) -> None:
    header, size, pattern = _LIES[case]
    path = tmp_path / "lie.safetensors"
    path.write_bytes(_safetensors_bytes(header, bytes(size)))
    with _unchanged(path), pytest.raises(CheckpointError, match=pattern):
        torchscope.inspect_checkpoint(path)


def test_safetensors_header_length_beyond_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path.write_bytes(struct.pack("<Q", 10_000) + raw + bytes(4))
    with _unchanged(path), pytest.raises(CheckpointError,
                                         match=r"header claims 10000 bytes but the file has only"):
        torchscope.inspect_checkpoint(path)


def test_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.pt"
    torch.save(examples.MLP().state_dict(), path)
    path.chmod(0o444)
    try:
        with _unchanged(path):
            assert len(torchscope.inspect_checkpoint(path).entries) == 4
            assert torchscope.diff_checkpoint(examples.MLP(), path).ok
    finally:
        path.chmod(0o644)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=10_000),
       flip=st.integers(min_value=0, max_value=255))
def test_damaged_files_give_checkpoint_error_or_info(tmp_path: Path, cut: int, flip: int) -> None:
    # robustness: any truncation or one flipped byte gives a CheckpointError or a valid listing,
    # never another exception type
    sources = {}
    sd = {"a": torch.arange(6.0), "b": torch.ones(2, 2)}
    save_file(sd, tmp_path / "src.safetensors")
    torch.save(sd, tmp_path / "src.pt")
    for name in ("src.safetensors", "src.pt"):
        sources[name] = (tmp_path / name).read_bytes()
    for name, data in sources.items():
        for variant in (data[: cut % len(data)],
                        data[: cut % len(data)] + bytes([flip]) + data[cut % len(data) + 1:]):
            path = tmp_path / f"damaged-{name}"
            path.write_bytes(variant)
            try:
                info = torchscope.inspect_checkpoint(path)
            except CheckpointError:
                continue
            assert all(e.numel >= 0 for e in info.entries)


# ------------------------------------------------------------------------------------------
# CLI and rendering


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    assert main(["checkpoint", str(path), "--format", "text"]) == 0
    assert "hidden.weight" in capsys.readouterr().out
    assert main(["checkpoint", str(path), "--model", "torchscope.examples:MLP"]) == 0
    assert "would succeed" in capsys.readouterr().out
    assert main(["checkpoint", str(path), "--model", "torchscope.examples:NestMLP"]) == 1
    assert "would FAIL" in capsys.readouterr().out
    assert main(["checkpoint", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["checkpoint", str(path), "--key", "model"]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "last.ckpt"
    _train_checkpoint(path)
    assert main(["checkpoint", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state_dicts"] == ["model"] and data["total_bytes"] > 0
    assert main(["checkpoint", str(path), "--model", "torchscope.examples:MLP",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["would_load_strict"] is True


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   snapshot: Callable[[str, str], None], fmt: str) -> None:
    from torchscope.rendering._checkpoint import render_diff, render_info

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    _train_checkpoint(Path("last.ckpt"))
    torch.save(nn.DataParallel(examples.MLP()).state_dict(), "ddp.pt")
    torch.save(gpt2().state_dict(), "gpt2.pt")
    ext = "md" if fmt == "markdown" else "txt"
    listing = render_info(torchscope.inspect_checkpoint("last.ckpt"), fmt=fmt)
    snapshot(f"checkpoint_training.{ext}", listing)
    snapshot(f"checkpoint_gpt2.{ext}", render_info(torchscope.inspect_checkpoint("gpt2.pt"),
                                                   fmt=fmt))
    diff = torchscope.diff_checkpoint(examples.NestMLP(), "ddp.pt")
    snapshot(f"checkpoint_diff_nest.{ext}", render_diff(diff, fmt=fmt))
    prefixed = torchscope.diff_checkpoint(examples.MLP(), "ddp.pt")
    snapshot(f"checkpoint_diff_ddp.{ext}", render_diff(prefixed, fmt=fmt))
    if fmt == "text":
        for text in (listing, render_diff(diff, fmt=fmt), render_diff(prefixed, fmt=fmt)):
            assert max(len(line) for line in text.splitlines()) <= 100


def test_rich_rendering(tmp_path: Path) -> None:
    from torchscope.rendering._checkpoint import render_diff, render_info
    from torchscope.rendering._report import _to_text

    path = tmp_path / "last.ckpt"
    _train_checkpoint(path)
    text = _to_text(render_info(torchscope.inspect_checkpoint(path), fmt="rich"))
    assert "hidden.weight" in text and "optimizer state 'optimizer'" in text
    diff_text = _to_text(render_diff(torchscope.diff_checkpoint(examples.NestMLP(), path),
                                     fmt="rich"))
    assert "would FAIL" in diff_text and "checkpoint-missing" in diff_text


def test_acceptance_command_runs_as_a_module(tmp_path: Path) -> None:
    # one real `python -m torchscope` run (the others go through main() in-process)
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    bad = subprocess.run(
        [sys.executable, "-m", "torchscope", "checkpoint", str(path), "--model",
         "torchscope.examples:NestMLP"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"}, check=False)
    assert bad.returncode == 1, bad.stderr
    assert "would FAIL" in bad.stdout and "checkpoint-missing" in bad.stdout


class EncoderDecoder(nn.Module):
    """Two sub-networks; its state dict's keys start with ``encoder.`` and ``decoder.``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = examples.NestMLP()
        self.decoder = examples.MLP()


def test_dict_of_state_dicts_matches_a_composite_model(tmp_path: Path) -> None:
    path = tmp_path / "parts.pt"
    model = EncoderDecoder()
    torch.save({"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict()},
               path)
    diff = torchscope.diff_checkpoint(EncoderDecoder(), path)
    assert diff.state_dict == "" and diff.would_load_strict and diff.matched == 10


def test_meta_state_dict_in_memory_keeps_sharing() -> None:
    with torch.device("meta"):
        model = gpt2()
    info_diff = torchscope.diff_checkpoint(gpt2(), model.state_dict())
    assert info_diff.would_load_strict and info_diff.untied_in_file == ()


def test_index_findings(tmp_path: Path) -> None:
    index = _write_sharded(tmp_path, examples.NestMLP().state_dict(), torch_shards=False)
    data = json.loads(index.read_text())
    data["metadata"]["total_size"] = 123
    dropped = next(iter(data["weight_map"]))
    del data["weight_map"][dropped]
    index.write_text(json.dumps(data))
    info = torchscope.inspect_checkpoint(index)
    by_code = {f.code: f for f in info.findings}
    assert by_code["checkpoint-index-size"].severity == Severity.INFO
    unindexed = by_code["checkpoint-unindexed"]
    assert unindexed.severity == Severity.WARNING and dropped in unindexed.message


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
@pytest.mark.parametrize("fmt", ["torch-zip", "safetensors"])
def test_inspect_reads_no_tensor_data(tmp_path: Path, fmt: str) -> None:
    # 64 MiB of tensors: inspecting must read (syscalls) only headers and the pickle, well under
    # a tenth of the file, and never page the memory-mapped data in (RSS checked by the benchmark)
    sd = {f"w{i}": torch.ones(1024, 1024) for i in range(16)}
    path = tmp_path / "big"
    if fmt == "torch-zip":
        torch.save(sd, path)
    else:
        save_file(sd, path)
    size = path.stat().st_size
    before = _bytes_read()
    info = torchscope.inspect_checkpoint(path)
    read = _bytes_read() - before
    assert info.format == fmt and info.total_bytes == 64 << 20
    assert read < size // 10, f"read {read} bytes of a {size}-byte file"


def test_saved_on_cuda_reads_without_cuda(tmp_path: Path) -> None:
    # a file saved from CUDA tensors: torch.load without map_location fails on a CPU-only machine;
    # inspect reports the saved device and reads it anyway. The CUDA file is made by rewriting
    # the storage location string inside a legacy-format pickle.
    path = tmp_path / "cuda.pt"
    torch.save({"w": torch.ones(2, 3), "b": torch.zeros(3)}, path,
               _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    cpu = b"X\x03\x00\x00\x00cpu"  # BINUNICODE 'cpu' (pickled once, memoized)
    assert raw.count(cpu) == 1
    path.write_bytes(raw.replace(cpu, b"X\x06\x00\x00\x00cuda:0"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    info = torchscope.inspect_checkpoint(path)
    assert [(e.name, e.device) for e in info.entries] == [("w", "cuda:0"), ("b", "cuda:0")]
    from torchscope.rendering._checkpoint import render_info

    assert "cuda:0" in render_info(info, fmt="text")


_leaf = st.one_of(
    st.builds(lambda shape: torch.zeros(tuple(shape)),
              st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=3)),
    st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.none(),
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3),
                                            inner, max_size=4)),
    max_leaves=12,
)


def tensors_in(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_in(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in tensors_in(v)]
    return []


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=_tree)
def test_any_nesting_of_tensors_and_values(tmp_path: Path, obj: Any) -> None:
    path = tmp_path / "nested.pt"
    torch.save(obj, path)
    info = torchscope.inspect_checkpoint(path)
    tensors = tensors_in(obj)
    assert len(info.entries) == len(tensors)
    assert sorted(e.shape for e in info.entries) == sorted(tuple(t.shape) for t in tensors)
    assert info.total_numel == sum(t.numel() for t in tensors)
    assert info.shared == ()


def test_long_diff_is_capped_in_text_not_in_json(tmp_path: Path) -> None:
    from torchscope.rendering._checkpoint import render_diff

    path = tmp_path / "bert.pt"
    sd = bert().state_dict()
    torch.save(sd, path)
    diff = torchscope.diff_checkpoint(examples.MLP(), path)
    assert len(diff.unexpected) == len(sd) > 40 and len(diff.missing) == 4
    # the file's tied embeddings are not in the model at all: no tie finding about them
    assert "checkpoint-tie-lost" not in _codes(diff)
    text = render_diff(diff, fmt="text")
    assert f"{len(sd) + 4 - 39} more" in text and "all of them: --format json" in text
    assert len(json.loads(render_diff(diff, fmt="json"))["unexpected"]) == len(sd)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformers_round_trips_match_real_loads(tmp_path: Path, name: str) -> None:
    build = TRANSFORMERS[name]
    torch.manual_seed(0)
    source = build()
    # torch.save keeps every key (tied ones share storage): a strict load works
    pt = tmp_path / "model.pt"
    torch.save(source.state_dict(), pt)
    target = build()
    diff = torchscope.diff_checkpoint(target, pt)
    assert diff.would_load_strict is _strict_load_works(target, torch.load(pt, weights_only=True))
    assert diff.would_load_strict and diff.untied_in_file == ()
    # safetensors save_model keeps one copy of tied tensors: the diff names exactly the keys a
    # real non-strict load reports missing, each filled through a tie
    st_path = tmp_path / "model.safetensors"
    save_model(source, str(st_path))
    sd = load_file(st_path)
    diff = torchscope.diff_checkpoint(target, st_path)
    result = copy.deepcopy(target).load_state_dict(sd, strict=False)
    assert set(diff.missing) == set(result.missing_keys)
    assert set(diff.unexpected) == set(result.unexpected_keys) == set()
    assert {m for m, _ in diff.tied_missing} == set(diff.missing)
    assert diff.would_load_strict is _strict_load_works(target, sd)


def test_checkpoint_records_have_a_short_repr(tmp_path: Path) -> None:
    # guards: at a prompt, inspect_checkpoint() and diff_checkpoint() echoed the raw dataclass
    # repr of every entry (thousands of characters for a real model)
    path = tmp_path / "mlp.params"
    torch.save(examples.MLP().state_dict(), path)
    info = torchscope.inspect_checkpoint(path)
    assert repr(info) == (f"<CheckpointInfo {str(path)!r}: torch-zip, 4 tensors, 7,946 values, "
                          "0 findings>")
    diff = torchscope.diff_checkpoint(examples.NestMLP(), path)
    assert repr(diff).startswith(f"<CheckpointDiff {str(path)!r} vs NestMLP: does not load")
