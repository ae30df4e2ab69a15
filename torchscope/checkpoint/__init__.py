"""Checkpoints: read saved tensors and state dicts safely, and diff them against a model.

Files are recognized by their content, never by their name: a zip archive (``torch.save``), a
legacy pickle (``torch.save(..., _use_new_zipfile_serialization=False)``), a safetensors file
(8-byte little-endian header length, then a JSON header) or the JSON index of a sharded
checkpoint (``*.index.json`` with a ``weight_map``). ``torch.save`` files are read only with
``torch.load(weights_only=True)`` (memory-mapped for zip files, so no tensor data is read);
safetensors files only through their header. Nothing is ever loaded into a model.

>>> import torch, torchscope, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "mlp.params")
>>> torch.save(torchscope.examples.MLP().state_dict(), path)
>>> info = torchscope.inspect_checkpoint(path)
>>> info.format, len(info.entries), info.total_numel
('torch-zip', 4, 7946)
>>> torchscope.diff_checkpoint(torchscope.examples.MLP(), path).would_load_strict
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from torchscope._torch import room_for_depth
from torchscope.checkpoint._read import (
    _byte_totals,
    _Scan,
    _scan_mapping,
    _scan_path,
    _shared_groups,
    _Tensor,
    _Unchanged,
)
from torchscope.errors import ArgumentError, CheckpointError
from torchscope.records import (
    CheckpointDiff,
    CheckpointEntry,
    CheckpointInfo,
    DtypeMismatch,
    Finding,
    OptimizerState,
    Severity,
    ShapeMismatch,
    TieKind,
    UntiedInFile,
)
from torchscope.tying import find_tied

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CheckpointDiff",
    "CheckpointEntry",
    "CheckpointInfo",
    "DtypeMismatch",
    "OptimizerState",
    "ShapeMismatch",
    "UntiedInFile",
    "diff_checkpoint",
    "inspect_checkpoint",
]

# prefix -> where it comes from and how to avoid it when saving
_KNOWN_PREFIXES: dict[str, tuple[str, str]] = {
    "module.": ("a DataParallel/DistributedDataParallel wrapper", "model.module.state_dict()"),
    "_orig_mod.": ("a torch.compile'd model", "model._orig_mod.state_dict()"),
    "model.": ("a wrapper that holds the network as .model (e.g. a Lightning module)",
               "model.model.state_dict()"),
}



















def _some(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return shown + (f" … ({len(names)} in all)" if len(names) > 4 else "")


def _unlisted_findings(tensors: list[_Tensor]) -> Iterator[Finding]:
    """Tensors without one shape, which an entry cannot describe: said instead of listed."""
    lazy = [t.name for t in tensors if t.kind == "lazy"]
    nested = [t for t in tensors if t.kind == "nested"]
    if lazy:
        yield Finding(
            "checkpoint-uninitialized", Severity.WARNING,
            f"{len(lazy)} tensor(s) are uninitialized (lazy parameters or buffers): "
            f"{_some(lazy)}; their shapes and sizes are unknown, so they are not listed and not "
            "in the totals", path=lazy[0],
            hint="run one forward of the lazy model before taking its state dict")
    if nested:
        numel = sum(t.numel for t in nested)
        nbytes = sum(t.nbytes for t in nested)
        yield Finding(
            "checkpoint-nested-tensor", Severity.INFO,
            f"{len(nested)} nested tensor(s) (no single shape): "
            f"{_some([t.name for t in nested])}; not listed as entries, their {numel:,} "
            f"element(s) and {nbytes:,} bytes of data are in the totals", path=nested[0].name)


def _info_from_scan(scan: _Scan) -> CheckpointInfo:
    numel, unique, stored, findings = _byte_totals(scan)
    entries = tuple(
        CheckpointEntry(t.name, t.shape, t.dtype, t.numel, t.nbytes, t.stored_bytes, t.device,
                        t.shard)
        for t in scan.tensors if t.kind == "tensor"
    )
    findings.extend(_unlisted_findings(scan.tensors))
    return CheckpointInfo(
        path=scan.path,
        format=scan.format,
        file_bytes=scan.file_bytes,
        entries=entries,
        total_numel=numel,
        total_bytes=unique,
        stored_bytes=stored,
        shared=_shared_groups(scan.tensors),
        state_dicts=tuple(scan.state_dicts),
        optimizers=tuple(scan.optimizers),
        scalars=tuple(scan.scalars),
        metadata=tuple(scan.metadata),
        shards=tuple(scan.shards),
        findings=(*scan.findings, *findings),
    )


def _check_path_arg(function: str, name: str, value: object) -> None:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ArgumentError(
            f"{function}: {name} = {type(value).__name__} is not a file path; give the path of "
            "a checkpoint file as a str or pathlib.Path"
            + (" (or a state dict)" if name == "source" else "")
        )


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """List what a checkpoint file holds without loading its tensor data.

    Recognizes ``torch.save`` files of any name (zip or legacy), safetensors files and sharded
    checkpoints' ``*.index.json`` by their content; finds state dicts, optimizer states, plain
    scalars and tensors that share storage inside the file. Uninitialized (lazy) and nested
    tensors have no single shape: a finding names them instead of an entry (nested tensors'
    elements and bytes are in the totals, lazy ones' are unknown). Reads ``torch.save`` files
    only with ``torch.load(weights_only=True, mmap=True)`` and safetensors files only through
    their header; never writes to the file.

    Args:
        path: the checkpoint file (a sharded checkpoint: its index JSON).

    Returns:
        A :class:`CheckpointInfo` of plain values.

    Raises:
        CheckpointError: the path is missing, a directory, empty, truncated or corrupt, not a
            checkpoint, holds objects other than tensors and plain containers (a pickle that
            would run code), nests containers more than 100 levels deep, holds a container
            inside itself or more than 10,000,000 values to list, or is a safetensors file whose
            header lies.

    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.pt")
    >>> torch.save({"w": torch.zeros(2, 3), "epoch": 3}, path)
    >>> info = inspect_checkpoint(path)
    >>> info.entries[0].shape, info.scalars
    ((2, 3), (('epoch', '3'),))
    """
    _check_path_arg("inspect_checkpoint", "path", path)
    with _Unchanged(path):
        scan = _scan_path(path)
        info = _info_from_scan(scan)
        scan.keep.clear()
    return info


# ------------------------------------------------------------------------------------------
# diff against a model


def _model_ties(model: nn.Module) -> list[tuple[str, ...]]:

    return [g.names for g in find_tied(model) if g.kind in (TieKind.ALIAS, TieKind.SHARED_STORAGE)]


def _candidate_prefixes(file_keys: set[str], model_keys: set[str]) -> list[tuple[str, str]]:
    """(action, prefix) pairs worth trying: known wrapper prefixes and common first parts."""
    known = [*_KNOWN_PREFIXES, "module._orig_mod.", "_orig_mod.module."]
    out = [("strip", p) for p in known] + [("add", p) for p in known]
    for action, keys in (("strip", file_keys), ("add", model_keys)):
        firsts = {k.split(".", 1)[0] + "." for k in keys if "." in k}
        if len(firsts) == 1 and all("." in k for k in keys):
            prefix = next(iter(firsts))
            if (action, prefix) not in out:
                out.append((action, prefix))
    return out


def _rekey(keys: list[str], action: str, prefix: str) -> list[str]:
    if action == "strip":
        return [k[len(prefix):] if k.startswith(prefix) else k for k in keys]
    return [prefix + k for k in keys]


def _pick_state_dict(scan: _Scan, model_keys: set[str],
                     key: str | None) -> tuple[str, list[tuple[str, _Tensor]]]:
    candidates = {**scan.state_dicts}
    for path, flat in (*scan.composites.items(), *scan.mixed.items()):
        candidates.setdefault(path, flat)
    if key is not None:
        if key not in candidates:
            found = ", ".join(repr(k) for k in candidates) or "none"
            raise CheckpointError(
                f"{scan.path} has no state dict at key={key!r}; state dicts found: {found}"
            )
        return key, candidates[key]
    if not candidates:
        what = "one tensor" if scan.root_kind == "tensor" else (
            f"a {scan.root_kind} with {len(scan.tensors)} tensor(s) but no dict that maps names "
            "to tensors")
        raise CheckpointError(
            f"{scan.path} holds {what}: there is no state dict to compare with a model; save "
            "model.state_dict() to diff it"
        )

    def score(sd_path: str) -> int:
        keys = [k for k, _ in candidates[sd_path]]
        best = len(model_keys & set(keys))
        for action, prefix in _candidate_prefixes(set(keys), model_keys):
            best = max(best, len(model_keys & set(_rekey(keys, action, prefix))))
        return best

    best = max(candidates, key=lambda k: (score(k), len(candidates[k])))
    return best, candidates[best]


@room_for_depth
def diff_checkpoint(
    model: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    key: str | None = None,
) -> CheckpointDiff:
    """Compare a checkpoint with a model before loading it; never loads anything into the model.

    Finds missing and unexpected keys, shape mismatches (``load_state_dict`` raises on them even
    with ``strict=False``), dtype differences, entries the model ties that the file stores as
    separate tensors (and whether their values differ), a wrapper prefix that explains the
    mismatch (``module.`` from DataParallel/DDP, ``_orig_mod.`` from ``torch.compile``,
    ``model.``) with the fix, and whether ``model.load_state_dict(strict=True)`` would succeed.

    Args:
        model: the module the checkpoint is meant for (only read: its state dict's keys, shapes,
            dtypes and tied tensors).
        source: a checkpoint path (any format :func:`inspect_checkpoint` reads) or an in-memory
            state dict / training checkpoint dict.
        key: the dotted path of the state dict inside a training checkpoint (``"model"``);
            by default the state dict whose keys best match the model.

    Returns:
        A :class:`CheckpointDiff` of plain values, with findings that give the fix.

    Raises:
        CheckpointError: the file (or mapping) cannot be read safely (see
            :func:`inspect_checkpoint`), holds no state dict, or ``key`` names none.

    A state dict may hold values other than tensors (a quantized layer's packed parameters):
    they are matched by key, and a finding says their contents were not compared. Entries whose
    shape is unknown (uninitialized or nested tensors) are not compared by shape; a finding says
    whether ``load_state_dict`` can take them.

    >>> import torchscope
    >>> sd = {"module." + k: v for k, v in torchscope.examples.MLP().state_dict().items()}
    >>> d = diff_checkpoint(torchscope.examples.MLP(), sd)
    >>> d.would_load_strict, d.strip_prefix, d.would_load_after_fix
    (False, 'module.', True)
    """
    from torch import nn as torch_nn

    if not isinstance(model, torch_nn.Module):
        raise ArgumentError(
            f"diff_checkpoint: model = {type(model).__name__} is not a torch.nn.Module; pass "
            "the model the checkpoint is meant for"
        )
    if key is not None and not isinstance(key, str):
        raise ArgumentError(
            f"diff_checkpoint: key = {type(key).__name__} is not a str; give the dotted path "
            "of the state dict inside the file, e.g. key='model'"
        )
    if isinstance(source, Mapping):
        scan = _scan_mapping(source)
        return _diff(model, scan, key)
    _check_path_arg("diff_checkpoint", "source", source)
    with _Unchanged(source):
        scan = _scan_path(source)
        try:
            return _diff(model, scan, key)
        finally:
            scan.keep.clear()


def _diff(model: nn.Module, scan: _Scan, key: str | None) -> CheckpointDiff:
    import torch
    from torch.nn.parameter import is_lazy

    model_sd = model.state_dict(keep_vars=True)
    model_keys = list(model_sd)
    model_set = set(model_keys)
    sd_path, flat = _pick_state_dict(scan, model_set, key)
    file_keys = [k for k, _ in flat]
    findings: list[Finding] = []
    if len(scan.state_dicts) > 1 and sd_path in scan.state_dicts:
        others = ", ".join(repr(k) for k in scan.state_dicts if k != sd_path)
        findings.append(Finding(
            "checkpoint-state-dict", Severity.INFO,
            f"compared the state dict at {sd_path!r} with the model (the file also has {others})",
            hint="choose another with key=... (CLI: --key)"))

    direct = len(model_set & set(file_keys))

    strip_prefix: str | None = None
    add_prefix: str | None = None
    mapped = file_keys
    best = direct
    for action, prefix in _candidate_prefixes(set(file_keys), model_set):
        rekeyed = _rekey(file_keys, action, prefix)
        hits = len(model_set & set(rekeyed))
        if hits > best:
            best, mapped = hits, rekeyed
            strip_prefix, add_prefix = (prefix, None) if action == "strip" else (None, prefix)

    file_by_key: dict[str, _Tensor] = {}
    name_in_file: dict[str, str] = {}  # mapped key -> name in the file (for value fetches)
    for mk, (_, rec) in zip(mapped, flat):
        file_by_key[mk] = rec
        name_in_file[mk] = rec.name
    missing = [k for k in model_keys if k not in file_by_key]
    unexpected = [k for k in mapped if k not in model_set]

    shapes: list[ShapeMismatch] = []
    dtypes: list[DtypeMismatch] = []
    lazy: list[str] = []
    unknown = _Unknown()
    for k in model_keys:
        value = model_sd[k]
        if k not in file_by_key:
            continue
        rec = file_by_key[k]
        model_tensor = isinstance(value, torch.Tensor)
        if rec.kind != "tensor" or not model_tensor or is_lazy(value):
            if not unknown.add(k, rec, value if model_tensor else None):
                lazy.append(k)
            continue
        mshape = tuple(value.shape)
        if rec.shape != mshape:
            shapes.append(ShapeMismatch(k, rec.shape, mshape))
        mdtype = str(value.dtype).removeprefix("torch.")
        if rec.dtype != mdtype:
            dtypes.append(DtypeMismatch(k, rec.dtype, mdtype))

    # ties in the model vs the file
    tied_missing: list[tuple[str, str]] = []
    untied: list[UntiedInFile] = []
    model_tied_names: set[str] = set()
    load_order = {k: i for i, k in enumerate(model_keys)}  # load_state_dict copies in this order
    for names in _model_ties(model):
        in_sd = sorted((n for n in names if n in model_set), key=load_order.__getitem__)
        model_tied_names.update(in_sd)
        present = [n for n in in_sd if n in file_by_key]
        if not present:
            continue
        for n in in_sd:
            if n not in file_by_key:
                tied_missing.append((n, present[0]))
        if len(present) < 2:
            continue
        recs = [file_by_key[n] for n in present]
        one_copy = all(r.key is not None and r.key == recs[0].key and r.extent == recs[0].extent
                       for r in recs)
        if one_copy:
            continue
        untied.append(UntiedInFile(tuple(present), _values_differ(scan, present, name_in_file),
                                   wins=present[-1]))

    missing_untied = [k for k in missing if k not in {m for m, _ in tied_missing}]
    fixed_strict = not missing and not unexpected and not shapes and not unknown.fails
    prefixed = strip_prefix is not None or add_prefix is not None
    would_strict = fixed_strict and not prefixed

    findings.extend(_prefix_findings(model, strip_prefix, add_prefix, len(file_keys), best,
                                     fixed_strict))
    findings.extend(_key_findings(missing_untied, unexpected, shapes, dtypes, lazy))
    findings.extend(unknown.findings())
    for name, source_name in tied_missing:
        findings.append(Finding(
            "checkpoint-tied-missing", Severity.WARNING,
            f"{name} is missing from the file, but the model ties it to {source_name}, which the "
            "file has (saved once, e.g. by safetensors save_model): strict loading fails on it",
            path=name,
            hint="load with model.load_state_dict(sd, strict=False) (check that only tied keys "
                 "are missing) or safetensors.torch.load_model(model, path)"))
    for u in untied:
        tied_names = " and ".join(u.names)
        if u.values_differ:
            findings.append(Finding(
                "checkpoint-tie-conflict", Severity.ERROR,
                f"the model ties {tied_names} but the file stores them as different tensors with "
                f"different values: after loading, all hold {u.wins}'s values and the others' are "
                "lost", path=u.names[0],
                hint="the file comes from an untied model: build the model untied (e.g. "
                     "tie_word_embeddings=False) or decide which copy is right"))
        else:
            differ = "equal values" if u.values_differ is False else "values not comparable"
            findings.append(Finding(
                "checkpoint-tie-copies", Severity.WARNING if u.values_differ is None
                else Severity.INFO,
                f"the model ties {tied_names} but the file stores them as separate tensors "
                f"({differ}): loading works, the file holds a redundant copy", path=u.names[0],
                hint="save with torch.save(model.state_dict()) to keep one shared copy"))
    file_shared = _shared_groups([file_by_key[k] for k in file_by_key])
    for g in file_shared:
        names_m = [k for k in file_by_key if file_by_key[k].name in g.names and k in model_set]
        if len(names_m) > 1 and not any(n in model_tied_names for n in names_m):
            findings.append(Finding(
                "checkpoint-tie-lost", Severity.INFO,
                f"the file stores {' and '.join(names_m)} over the same bytes, but the model "
                "does not tie them: each gets its own copy of the values when loaded",
                path=names_m[0],
                hint="tie them in the model (e.g. tie_word_embeddings=True) if they should stay "
                     "one tensor"))

    return CheckpointDiff(
        source=scan.path,
        state_dict=sd_path,
        model_type=type(model).__name__,
        matched=len(model_set & set(file_by_key)),
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        shape_mismatches=tuple(shapes),
        dtype_mismatches=tuple(dtypes),
        tied_missing=tuple(tied_missing),
        untied_in_file=tuple(untied),
        strip_prefix=strip_prefix,
        add_prefix=add_prefix,
        would_load_strict=would_strict,
        would_load_after_fix=fixed_strict,
        findings=tuple(findings),
    )


class _Unknown:
    """Matched keys whose shapes cannot be compared: uninitialized (lazy) or nested tensors
    and values that are not tensors, on either side; what ``load_state_dict`` does with each."""

    def __init__(self) -> None:
        self.fails: list[tuple[str, str]] = []  # (key, why load_state_dict raises)
        self.both_lazy: list[str] = []
        self.values: list[str] = []  # not tensors on both sides: matched by key only
        self.model_values: list[str] = []  # a tensor in the file, another value in the model

    def add(self, key: str, rec: _Tensor, value: torch.Tensor | None) -> bool:
        """File the pair; False when it is the usual case of a lazy model and a file tensor."""
        from torch.nn.parameter import is_lazy

        model_lazy = value is not None and is_lazy(value)
        if rec.kind == "tensor" and model_lazy:
            return False
        if rec.kind == "lazy" and model_lazy:
            self.both_lazy.append(key)
        elif rec.kind == "value" and value is None:
            self.values.append(key)
        elif rec.kind == "tensor":
            self.model_values.append(key)
        elif rec.kind == "value":
            self.fails.append((key, f"the file holds a {rec.dtype}, the model a tensor"))
        elif rec.kind == "lazy":
            self.fails.append((key, "the file's tensor is uninitialized (lazy), the model's "
                                    "is not: load_state_dict cannot copy it"))
        else:
            self.fails.append((key, "the file holds a nested tensor (no single shape), the "
                                    "model an ordinary tensor or value"))
        return True

    def findings(self) -> Iterator[Finding]:
        for key, why in self.fails:
            yield Finding("checkpoint-not-comparable", Severity.ERROR,
                          f"{key}: {why}; load_state_dict raises on it", path=key,
                          hint="save the checkpoint from a model built like this one")
        if self.both_lazy:
            yield Finding("checkpoint-lazy", Severity.INFO,
                          f"{len(self.both_lazy)} tensor(s) are uninitialized (lazy) in the file "
                          f"and in the model: {_some(self.both_lazy)}; their shapes are unknown "
                          "and were not compared, they stay uninitialized after loading",
                          path=self.both_lazy[0],
                          hint="run one forward of the model before saving its state dict")
        if self.values:
            yield Finding("checkpoint-not-tensors", Severity.INFO,
                          f"{len(self.values)} state dict "
                          f"{'entry is' if len(self.values) == 1 else 'entries are'} not tensors "
                          "in the file nor in the model (packed parameters of quantized layers, "
                          f"extra state): {_some(self.values)}; matched by key only, their "
                          "contents were not compared and are not counted",
                          path=self.values[0])
        if self.model_values:
            yield Finding("checkpoint-not-tensors", Severity.INFO,
                          f"{len(self.model_values)} key(s) hold a tensor in the file but another "
                          f"value in the model: {_some(self.model_values)}; the model's "
                          "load_state_dict decides what to do with them (not compared)",
                          path=self.model_values[0])


def _values_differ(scan: _Scan, names: list[str], name_in_file: Mapping[str, str]) -> bool | None:
    import torch

    if scan.fetch is None:
        return None
    try:
        tensors = [scan.fetch(name_in_file[n]) for n in names]
    except KeyError:
        return None
    first = tensors[0]
    if any(t.shape != first.shape or t.dtype != first.dtype for t in tensors[1:]):
        return None
    return not all(torch.equal(first, t) for t in tensors[1:])


def _prefix_findings(model: nn.Module, strip: str | None, add: str | None, n_file: int,
                     hits: int, fixed_strict: bool) -> Iterator[Finding]:
    if strip is not None:
        origin, avoid = _KNOWN_PREFIXES.get(strip, ("a wrapper module", ""))
        for known, (text, how) in _KNOWN_PREFIXES.items():
            if strip.startswith(known) and strip != known:
                origin, avoid = text, how
        yield Finding(
            "checkpoint-prefix", Severity.ERROR,
            f"the file's keys start with {strip!r}, saved from {origin}; without it {hits} of "
            f"{n_file} keys match the model" + ("" if fixed_strict else
                                                 ", but other differences remain"),
            hint=f"torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(sd, "
                 f"{strip!r}) before model.load_state_dict(sd)"
                 + (f"; next time save {avoid}" if avoid else ""))
    if add is not None:
        owner = add[:-1]
        try:
            model.get_submodule(owner)
            fix = f"load into the wrapped module: model.{owner}.load_state_dict(sd)"
        except AttributeError:
            fix = f"sd = {{{add!r} + k: v for k, v in sd.items()}} before loading"
        yield Finding(
            "checkpoint-prefix", Severity.ERROR,
            f"the model's keys start with {add!r} but the file's do not (saved from the "
            f"unwrapped model); with it {hits} of {n_file} keys match",
            hint=fix)


def _key_findings(missing: list[str], unexpected: list[str], shapes: list[ShapeMismatch],
                  dtypes: list[DtypeMismatch], lazy: list[str]) -> Iterator[Finding]:
    some = _some
    if missing:
        yield Finding("checkpoint-missing", Severity.ERROR,
                      f"{len(missing)} key(s) of the model are not in the file: {some(missing)}",
                      path=missing[0],
                      hint="the file is for another architecture or config; strict=False would "
                           "leave these at their initial values")
    if unexpected:
        yield Finding("checkpoint-unexpected", Severity.ERROR,
                      f"{len(unexpected)} key(s) in the file are not in the model: "
                      f"{some(unexpected)}", path=unexpected[0],
                      hint="the file is for another architecture or config; strict=False "
                           "would ignore them")
    for s in shapes:
        yield Finding("checkpoint-shape", Severity.ERROR,
                      f"{s.name}: the file has shape {list(s.file_shape)}, the model "
                      f"{list(s.model_shape)}; load_state_dict raises even with strict=False",
                      path=s.name,
                      hint="build the model with the config the file was saved from")
    for d in dtypes:
        yield Finding("checkpoint-dtype", Severity.WARNING,
                      f"{d.name}: the file stores {d.file_dtype}, the model holds {d.model_dtype}; "
                      "load_state_dict converts it", path=d.name,
                      hint=f"model.to({d.file_dtype}) first if you need the file's precision")
    if lazy:
        yield Finding("checkpoint-lazy", Severity.INFO,
                      f"{len(lazy)} tensor(s) of the model are uninitialized (lazy): "
                      f"{some(lazy)}; load_state_dict materializes them with the file's shapes",
                      path=lazy[0])
