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

import dataclasses
import enum
import io
import itertools
import json
import math
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchscope.errors import CheckpointError
from torchscope.records import Finding, Severity, TiedGroup, TieKind

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

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"
_MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
_SCALAR_REPR = 60

# safetensors dtype -> (torch dtype name, bits per element)
_ST_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8),
    "U8": ("uint8", 8),
    "I8": ("int8", 8),
    "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    "I16": ("int16", 16),
    "U16": ("uint16", 16),
    "F16": ("float16", 16),
    "BF16": ("bfloat16", 16),
    "I32": ("int32", 32),
    "U32": ("uint32", 32),
    "F32": ("float32", 32),
    "I64": ("int64", 64),
    "U64": ("uint64", 64),
    "F64": ("float64", 64),
    "C64": ("complex64", 64),
    "F4": ("float4_e2m1fn_x2", 4),
    "F6_E2M3": ("float6_e2m3", 6),
    "F6_E3M2": ("float6_e3m2", 6),
}

# prefix -> where it comes from and how to avoid it when saving
_KNOWN_PREFIXES: dict[str, tuple[str, str]] = {
    "module.": ("a DataParallel/DistributedDataParallel wrapper", "model.module.state_dict()"),
    "_orig_mod.": ("a torch.compile'd model", "model._orig_mod.state_dict()"),
    "model.": ("a wrapper that holds the network as .model (e.g. a Lightning module)",
               "model.model.state_dict()"),
}


# ------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """One tensor stored in a checkpoint.

    ``name`` is its dotted path inside the file (``model.hidden.weight``; ``""`` for a file that
    holds one tensor; list items by index). ``device`` is the device it was saved from, or
    ``None`` where the format does not record it (safetensors). ``stored_bytes`` is the size of
    the storage the file keeps for it: larger than ``nbytes`` for a view of a bigger tensor.
    ``shard`` names the shard file of a sharded checkpoint.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    stored_bytes: int
    device: str | None = None
    shard: str | None = None


@dataclass(frozen=True, slots=True)
class OptimizerState:
    """An optimizer ``state_dict()`` found in a training checkpoint (summarized, not listed).

    ``state_keys`` are the per-parameter state names (``exp_avg``, ``momentum_buffer``…);
    ``hyperparams`` the scalar options of the first parameter group (``lr``…), as reprs.
    """

    path: str
    params_with_state: int
    param_groups: int
    tensors: int
    nbytes: int
    state_keys: tuple[str, ...]
    hyperparams: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """What a checkpoint file holds, read without loading its tensor data.

    ``format`` is ``torch-zip``, ``torch-legacy``, ``safetensors``, ``sharded`` (an index JSON)
    or ``state-dict`` (an in-memory mapping). ``total_bytes`` counts each unique byte of tensor
    data once; ``stored_bytes`` is what the file spends on storages (more when it keeps views of
    bigger tensors). ``shared`` lists tensors stored over the same bytes (tied weights saved by
    ``torch.save`` stay shared). ``state_dicts`` are the dotted paths of the state dicts found
    (``""``: the whole file is one); ``optimizers`` summarize optimizer states; ``scalars`` are
    the other plain values (``("epoch", "3")``); ``metadata`` the safetensors/index metadata.
    """

    path: str
    format: str
    file_bytes: int
    entries: tuple[CheckpointEntry, ...]
    total_numel: int
    total_bytes: int
    stored_bytes: int
    shared: tuple[TiedGroup, ...] = ()
    state_dicts: tuple[str, ...] = ()
    optimizers: tuple[OptimizerState, ...] = ()
    scalars: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    shards: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    def entry(self, name: str) -> CheckpointEntry:
        """The entry stored under ``name``.

        Raises:
            KeyError: no tensor has that name.
        """
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no tensor named {name!r} in {self.path}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with exact numbers (enums as their values)."""
        return _as_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The info as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ShapeMismatch:
    """A key whose tensor has another shape in the file than in the model."""

    name: str
    file_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DtypeMismatch:
    """A key whose dtype differs (``load_state_dict`` converts it, possibly losing precision)."""

    name: str
    file_dtype: str
    model_dtype: str


@dataclass(frozen=True, slots=True)
class UntiedInFile:
    """Names the model ties (one tensor) that the file stores as separate tensors.

    ``values_differ`` is ``None`` when the values cannot be compared (shapes or dtypes differ).
    ``wins`` is the name whose value every name holds after ``load_state_dict`` (the last one
    loaded, in state-dict order).
    """

    names: tuple[str, ...]
    values_differ: bool | None
    wins: str


@dataclass(frozen=True, slots=True)
class CheckpointDiff:
    """A checkpoint compared with a model, without loading anything into the model.

    When the keys only match after removing or adding a prefix (``strip_prefix``/``add_prefix``,
    e.g. ``module.`` from DDP), ``missing``/``unexpected``/mismatches are computed *after* that
    fix, while ``would_load_strict`` is about the file as it is and ``would_load_after_fix``
    about the fixed keys. ``tied_missing`` pairs a missing key with the present key the model
    ties it to (a file saved by ``safetensors.torch.save_model`` keeps one copy); strict loading
    still fails on it, ``strict=False`` or ``safetensors.torch.load_model`` fill it through the
    tie. ``findings`` say all of it in words, with the fix.
    """

    source: str
    state_dict: str
    model_type: str
    matched: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape_mismatches: tuple[ShapeMismatch, ...]
    dtype_mismatches: tuple[DtypeMismatch, ...]
    tied_missing: tuple[tuple[str, str], ...]
    untied_in_file: tuple[UntiedInFile, ...]
    strip_prefix: str | None
    add_prefix: str | None
    would_load_strict: bool
    would_load_after_fix: bool
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when ``load_state_dict(strict=True)`` would succeed as the file is."""
        return self.would_load_strict

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their values)."""
        return _as_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The diff as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _as_dict(obj: Any) -> dict[str, Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [encode(v) for v in value]
        return value

    out = encode(obj)
    assert isinstance(out, dict)
    return out


# ------------------------------------------------------------------------------------------
# reading: an internal view of a checkpoint that keeps its tensors reachable (memory-mapped)


@dataclass(slots=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    stored_bytes: int
    device: str | None
    shard: str | None
    key: tuple[Any, ...] | None = None  # storage identity (None: not shareable)
    extent: tuple[int, int] = (0, 0)
    obj: int = 0  # id() of the tensor object (alias detection)
    same_layout: tuple[Any, ...] = ()


@dataclass(slots=True)
class _Scan:
    path: str
    format: str
    file_bytes: int
    tensors: list[_Tensor] = field(default_factory=list)
    state_dicts: dict[str, list[tuple[str, _Tensor]]] = field(default_factory=dict)
    composites: dict[str, list[tuple[str, _Tensor]]] = field(default_factory=dict)
    optimizers: list[OptimizerState] = field(default_factory=list)
    scalars: list[tuple[str, str]] = field(default_factory=list)
    metadata: list[tuple[str, str]] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fetch: Callable[[str], torch.Tensor] | None = None
    root_kind: str = "dict"
    keep: list[Any] = field(default_factory=list)  # loaded objects (their mmaps stay open)


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _is_tensor_tree(obj: Any) -> bool:
    """A non-empty dict with str keys whose leaves are all tensors (possibly nested dicts)."""
    import torch

    if not isinstance(obj, Mapping) or not obj:
        return False
    for k, v in obj.items():
        if not isinstance(k, str):
            return False
        if isinstance(v, torch.Tensor):
            continue
        if not _is_tensor_tree(v):
            return False
    return True


def _is_optimizer_state(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and "state" in obj
        and "param_groups" in obj
        and isinstance(obj["param_groups"], (list, tuple))
        and isinstance(obj["state"], Mapping)
    )


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > _SCALAR_REPR:
        text = text[: _SCALAR_REPR - 1] + "…"
    return text


class _Walker:
    """Turns a loaded object into tensors, state dicts, optimizer states and scalars."""

    def __init__(self, scan: _Scan, *, shard: str | None, locations: Mapping[int, str]) -> None:
        self.scan = scan
        self.shard = shard
        self.locations = locations
        self.by_name: dict[str, torch.Tensor] = {}

    def tensor(self, name: str, t: torch.Tensor) -> _Tensor:
        from torchscope.tying import storage_key, tensor_extent

        self.by_name[name] = t
        dtype = str(t.dtype).removeprefix("torch.")
        numel = t.numel()
        nbytes = numel * t.element_size()
        rec = _Tensor(name, tuple(t.shape), dtype, numel, nbytes, nbytes, None, self.shard,
                      obj=id(t))
        if t.layout == _strided():
            storage = t.untyped_storage()
            rec.stored_bytes = storage.nbytes()
            rec.device = self.locations.get(storage.data_ptr(), str(t.device))
            if storage.data_ptr() != 0 and storage.nbytes() > 0 and numel > 0:
                rec.key = (self.shard, *storage_key(t))
                rec.extent = tensor_extent(t)
                rec.same_layout = (dtype, rec.shape, tuple(t.stride()))
        else:
            rec.device = str(t.device)
        self.scan.tensors.append(rec)
        return rec

    def walk(self, obj: Any, path: str) -> None:
        import torch

        if isinstance(obj, torch.Tensor):
            self.tensor(path, obj)
            return
        if _is_optimizer_state(obj):
            self.optimizer(obj, path)
            return
        if _is_tensor_tree(obj) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            flat: list[tuple[str, _Tensor]] = []
            for k, v in obj.items():
                flat.append((k, self.tensor(_join(path, k), v)))
            self.scan.state_dicts.setdefault(path, []).extend(flat)  # shards add up
            return
        if _is_tensor_tree(obj):  # e.g. {"encoder": sd, "decoder": sd}: also one nested dict
            start = len(self.scan.tensors)
            for k, v in obj.items():
                self.walk(v, _join(path, k))
            cut = len(path) + 1 if path else 0
            self.scan.composites[path] = [(t.name[cut:], t) for t in self.scan.tensors[start:]]
            return
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                self.walk(v, _join(path, k))
            return
        if isinstance(obj, (list, tuple)):
            if obj and not any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in obj):
                self.scan.scalars.append((path, _short(obj)))
                return
            for i, v in enumerate(obj):
                self.walk(v, _join(path, i))
            return
        self.scan.scalars.append((path, _short(obj)))

    def optimizer(self, obj: Mapping[str, Any], path: str) -> None:
        import torch

        count = 0
        nbytes = 0
        keys: dict[str, None] = {}

        def visit(value: Any, where: str) -> None:
            nonlocal count, nbytes
            if isinstance(value, torch.Tensor):
                rec = self.tensor(where, value)
                count += 1
                nbytes += rec.nbytes
            elif isinstance(value, Mapping):
                for k, v in value.items():
                    visit(v, _join(where, k))
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    visit(v, _join(where, i))

        state = obj["state"]
        for pid, pstate in state.items():
            if isinstance(pstate, Mapping):
                keys.update(dict.fromkeys(str(k) for k in pstate))
            visit(pstate, _join(_join(path, "state"), pid))
        groups = obj["param_groups"]
        hyper: list[tuple[str, str]] = []
        if groups and isinstance(groups[0], Mapping):
            hyper = [(str(k), _short(v)) for k, v in groups[0].items() if k != "params"]
        for k, v in obj.items():  # anything else an optimizer wrapper saved
            if k not in ("state", "param_groups"):
                self.walk(v, _join(path, k))
        self.scan.optimizers.append(
            OptimizerState(path, len(state), len(groups), count, nbytes, tuple(keys),
                           tuple(hyper))
        )


def _strided() -> Any:
    import torch

    return torch.strided


# ------------------------------------------------------------------------------------------
# format detection and readers


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(os.fspath(path))
    if not p.exists():
        raise CheckpointError(
            f"checkpoint {str(p)!r} does not exist: check the path (it is resolved from "
            f"{os.getcwd()!r})"
        )
    if p.is_dir():
        indexes = sorted(q.name for q in p.glob("*.index.json"))
        hint = (f"pass its index file, e.g. {str(p / indexes[0])!r}" if indexes
                else "pass one checkpoint file inside it")
        raise CheckpointError(f"checkpoint {str(p)!r} is a directory, not a file: {hint}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} is not a regular file")
    return p


def _sniff(p: Path) -> str:
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is empty (0 bytes): the save was interrupted or the copy "
            "failed; save or download it again"
        )
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {str(p)!r}: {err.strerror}") from err
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(_PICKLE_MAGIC):
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 2**40:
        return "safetensors"  # (a JSON text's first 8 bytes read as a far larger length)
    if head.lstrip()[:1] == b"{":
        return "index"
    raise CheckpointError(
        f"{str(p)!r} is not a checkpoint torchscope can read (it starts with {head[:8]!r}): "
        "expected a torch.save file (zip or legacy pickle), a safetensors file or a sharded "
        "checkpoint's *.index.json"
    )


def _unsafe_message(p: Path, err: Exception) -> str:
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f" (it references {found.group(1)})" if found else ""
    return (
        f"{str(p)!r} contains code or objects that are not plain tensors{what}; torchscope "
        "reads checkpoints with torch.load(weights_only=True) and never unpickles arbitrary "
        "objects. If you trust the file, load it yourself and pass the state dict to "
        "diff_checkpoint, or re-save only tensors: torch.save(model.state_dict(), path)"
    )


def _torch_load(p: Path, fmt: str) -> tuple[Any, dict[int, str]]:
    import torch

    if fmt == "torch-zip":
        _check_zip(p)
    locations: dict[int, str] = {}

    def remember(storage: Any, location: str) -> Any:
        locations[storage.data_ptr()] = location
        return storage

    try:
        with warnings.catch_warnings(), p.open("rb") as handle:
            warnings.simplefilter("ignore")
            # torch.load treats a path ending in .safetensors as safetensors whatever its content:
            # hand it the open file (by /proc path where mmap needs a path) instead
            fd_path = f"/proc/self/fd/{handle.fileno()}"
            source: Any = p
            if p.name.endswith(".safetensors"):
                source = fd_path if os.path.exists(fd_path) else handle
            mmap = fmt == "torch-zip" and not isinstance(source, io.IOBase)
            obj = torch.load(source, map_location=remember, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_unsafe_message(p, err)) from err
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError,
            AttributeError, TypeError, struct.error, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read {str(p)!r} as a torch.save file ({type(err).__name__}: {first}); it "
            "is truncated or corrupt: save or download it again"
        ) from err
    return obj, locations


def _check_zip(p: Path) -> None:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{str(p)!r} starts like a zip archive (torch.save) but cannot be read as one "
            f"({err}); it is truncated or corrupt: save or download it again"
        ) from err
    if any(n.endswith("/constants.pkl") for n in names):
        raise CheckpointError(
            f"{str(p)!r} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint: "
            "torchscope does not execute TorchScript; inspect it with torch.jit.load if you "
            "trust it, or save model.state_dict() with torch.save"
        )
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise CheckpointError(
            f"{str(p)!r} is a zip archive but not a torch.save checkpoint (no data.pkl inside)"
        )


def _scan_torch(p: Path, fmt: str, scan: _Scan, shard: str | None) -> None:
    obj, locations = _torch_load(p, fmt)
    scan.keep.append(obj)
    walker = _Walker(scan, shard=shard, locations=locations)
    walker.walk(obj, "")
    scan.root_kind = _root_kind(obj)
    previous = scan.fetch
    tensors = walker.by_name

    def fetch(name: str) -> torch.Tensor:
        if name in tensors:
            return tensors[name]
        if previous is None:
            raise KeyError(name)
        return previous(name)

    scan.fetch = fetch


def _root_kind(obj: Any) -> str:
    import torch

    if isinstance(obj, torch.Tensor):
        return "tensor"
    if isinstance(obj, Mapping):
        return "dict"
    return type(obj).__name__


def _read_safetensors_header(p: Path) -> tuple[dict[str, Any], int]:
    """Parse and validate a safetensors header; returns it and the data section's offset."""
    size = p.stat().st_size
    bad = f"{str(p)!r} is not a valid safetensors file"
    if size < 8:
        raise CheckpointError(f"{bad}: {size} bytes is shorter than the 8-byte header length")
    with p.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _MAX_SAFETENSORS_HEADER:
            raise CheckpointError(f"{bad}: header length {n} is larger than the 100 MB limit")
        if 8 + n > size:
            raise CheckpointError(
                f"{bad}: its header claims {n} bytes but the file has only {size - 8} after the "
                "length; it is truncated or corrupt"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{bad}: its header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad}: its header is a JSON {type(header).__name__}, not an object")
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, spec in header.items():
        if name == "__metadata__":
            if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
                raise CheckpointError(f"{bad}: __metadata__ must map strings to strings")
            continue
        where = f"{bad}: tensor {name!r}"
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where} has no dtype/shape/data_offsets entry")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not isinstance(dtype, str):
            raise CheckpointError(f"{where} has no dtype (got {dtype!r})")
        if not (isinstance(shape, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in shape)):
            raise CheckpointError(f"{where} has shape {shape!r}, not a list of sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise CheckpointError(f"{where} has data_offsets {offsets!r}, not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise CheckpointError(f"{where} has data_offsets {offsets!r}: begin > end")
        if end > data_len:
            raise CheckpointError(
                f"{where} ends at byte {end} but the data section has only {data_len} bytes: "
                "the header lies or the file is truncated"
            )
        bits = _ST_DTYPES.get(dtype, ("", 0))[1]
        if bits:
            expected = math.prod(shape) * bits
            if expected != (end - begin) * 8:
                raise CheckpointError(
                    f"{where} has shape {shape} of {dtype} ({expected / 8:g} bytes) but "
                    f"data_offsets {offsets} span {end - begin} bytes: the header lies"
                )
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in itertools.pairwise(spans):
        if b1 < e0 and e1 > b1:
            raise CheckpointError(
                f"{bad}: tensors {n0!r} [{b0}, {e0}) and {n1!r} [{b1}, {e1}) overlap: the header "
                "lies (safetensors never shares bytes between tensors)"
            )
    return header, 8 + n


def _scan_safetensors(p: Path, scan: _Scan, shard: str | None) -> None:
    from safetensors import safe_open

    header, _ = _read_safetensors_header(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
            meta = f.metadata() or {}
            specs = {k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype()))
                     for k in keys}
    except Exception as err:  # SafetensorError is not importable as a type everywhere
        raise CheckpointError(
            f"{str(p)!r} is not a valid safetensors file: the safetensors library says: {err}"
        ) from err
    flat: list[tuple[str, _Tensor]] = []
    for k in sorted(keys, key=lambda k: header[k]["data_offsets"][0]):
        shape, st_dtype = specs[k]
        begin, end = header[k]["data_offsets"]
        name = _ST_DTYPES.get(st_dtype, (st_dtype.lower(), 0))[0]
        rec = _Tensor(k, shape, name, math.prod(shape), end - begin, end - begin, None, shard)
        scan.tensors.append(rec)
        flat.append((k, rec))
    scan.state_dicts.setdefault("", []).extend(flat)
    scan.metadata.extend((str(k), str(v)) for k, v in sorted(meta.items()))
    previous = scan.fetch
    names = set(keys)

    def fetch(name: str) -> torch.Tensor:
        if name in names:
            with safe_open(str(p), framework="pt") as f:
                t: torch.Tensor = f.get_tensor(name)
                return t
        if previous is None:
            raise KeyError(name)
        return previous(name)

    scan.fetch = fetch


def _scan_file(p: Path, fmt: str, scan: _Scan, shard: str | None) -> None:
    if fmt == "safetensors":
        _scan_safetensors(p, scan, shard)
    elif fmt in ("torch-zip", "torch-legacy"):
        _scan_torch(p, fmt, scan, shard)
    else:
        raise CheckpointError(
            f"shard {str(p)!r} is itself an index; a shard must be a safetensors or torch.save "
            "file"
        )


def _scan_index(p: Path, scan: _Scan) -> None:
    bad = f"{str(p)!r} is not a sharded checkpoint index"
    try:
        index = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{bad}: not valid JSON ({err})") from err
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointError(
            f"{bad}: it has no \"weight_map\" object mapping tensor names to shard files"
        )
    meta = index.get("metadata") or {}
    if isinstance(meta, dict):
        scan.metadata.extend((str(k), str(v)) for k, v in sorted(meta.items()))
    shard_names = list(dict.fromkeys(weight_map.values()))
    for name in shard_names:
        shard = p.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{bad}: shard {name!r} is not a file next to the index")
        if not shard.is_file():
            raise CheckpointError(
                f"shard {name!r} listed in {str(p)!r} does not exist next to it: download every "
                "shard into the same folder"
            )
        fmt = _sniff(shard)
        scan.file_bytes += shard.stat().st_size
        before = len(scan.tensors)
        _scan_file(shard, fmt, scan, name)
        have = {t.name for t in scan.tensors[before:]}
        listed = {k for k, v in weight_map.items() if v == name}
        missing = sorted(listed - have)
        extra = sorted(have - listed)
        if missing:
            raise CheckpointError(
                f"{bad}: shard {name!r} lacks {len(missing)} tensor(s) the index lists there "
                f"(first: {missing[0]!r}); the shard or the index is from another save"
            )
        if extra:
            scan.findings.append(Finding(
                "checkpoint-unindexed", Severity.WARNING,
                f"shard {name} holds {len(extra)} tensor(s) the index does not list "
                f"(first: {extra[0]}); loaders that follow the index skip them",
                path=name, hint="regenerate the index from the shards"))
    # every shard's top-level state dict is one state dict of the whole checkpoint
    merged: list[tuple[str, _Tensor]] = []
    for sd_path, flat in list(scan.state_dicts.items()):
        if sd_path == "":
            merged.extend(flat)
    scan.state_dicts = {"": merged} if merged else scan.state_dicts
    scan.shards = shard_names
    total = dict(scan.metadata).get("total_size")
    tensor_bytes = sum(t.nbytes for t in scan.tensors)
    if total is not None and total.isdigit() and int(total) != tensor_bytes:
        scan.findings.append(Finding(
            "checkpoint-index-size", Severity.INFO,
            f"the index says total_size {total} bytes; its shards hold {tensor_bytes} bytes of "
            "tensors", hint="harmless unless a loader checks it; regenerate the index"))


def _scan_path(path: str | os.PathLike[str]) -> _Scan:
    p = _check_path(path)
    fmt = _sniff(p)
    stat = p.stat()
    scan = _Scan(str(p), "sharded" if fmt == "index" else fmt, stat.st_size)
    if fmt == "index":
        scan.file_bytes = 0
        _scan_index(p, scan)
    else:
        _scan_file(p, fmt, scan, None)
    return scan


def _scan_mapping(obj: Mapping[str, Any]) -> _Scan:
    scan = _Scan("<state_dict>", "state-dict", 0)
    walker = _Walker(scan, shard=None, locations={})
    walker.walk(obj, "")
    scan.fetch = walker.by_name.__getitem__
    return scan


# ------------------------------------------------------------------------------------------
# shared storage inside a file


def _shared_groups(tensors: list[_Tensor]) -> tuple[TiedGroup, ...]:
    from torchscope.tying import merge_ranges

    by_key: dict[tuple[Any, ...], list[_Tensor]] = {}
    for t in tensors:
        if t.key is not None:
            by_key.setdefault(t.key, []).append(t)
    groups: list[tuple[int, TiedGroup]] = []
    order = {id(t): i for i, t in enumerate(tensors)}
    for items in by_key.values():
        if len(items) < 2:
            continue
        items.sort(key=lambda t: (t.extent, order[id(t)]))
        clusters: list[list[_Tensor]] = [[items[0]]]
        end = items[0].extent[1]
        for t in items[1:]:
            if t.extent[0] < end:
                clusters[-1].append(t)
                end = max(end, t.extent[1])
            else:
                clusters.append([t])
                end = t.extent[1]
        for cluster in clusters:
            if len(cluster) < 2:
                continue
            cluster.sort(key=lambda t: order[id(t)])
            first = cluster[0]
            if all(t.obj == first.obj for t in cluster):
                kind = TieKind.ALIAS
            elif all(t.extent == first.extent and t.same_layout == first.same_layout
                     for t in cluster):
                kind = TieKind.SHARED_STORAGE
            else:
                kind = TieKind.OVERLAP
            nbytes = sum(e - s for s, e in merge_ranges(t.extent for t in cluster))
            devices = tuple(sorted({t.device for t in cluster if t.device}))
            groups.append((order[id(first)],
                           TiedGroup(tuple(t.name for t in cluster), kind, nbytes, devices)))
    groups.sort(key=lambda g: g[0])
    return tuple(g for _, g in groups)


def _byte_totals(scan: _Scan) -> tuple[int, int, int, list[Finding]]:
    """(unique numel, unique bytes, stored bytes, view findings)."""
    from torchscope.tying import merge_ranges

    numel = 0
    unique = 0
    stored = 0
    by_key: dict[tuple[Any, ...], list[_Tensor]] = {}
    for t in scan.tensors:
        if t.key is None:
            numel += t.numel
            unique += t.nbytes
            stored += t.stored_bytes
        else:
            by_key.setdefault(t.key, []).append(t)
    findings: list[Finding] = []
    for items in by_key.values():
        merged = merge_ranges(t.extent for t in items)
        used = sum(e - s for s, e in merged)
        item = max(1, min(t.nbytes // max(t.numel, 1) for t in items))
        numel += used // item
        unique += used
        stored += items[0].stored_bytes
        if items[0].stored_bytes > used:
            names = ", ".join(t.name for t in items[:3]) + (" …" if len(items) > 3 else "")
            findings.append(Finding(
                "checkpoint-view-storage", Severity.INFO,
                f"{names}: the file keeps the whole {items[0].stored_bytes}-byte storage of a "
                f"bigger tensor for {used} bytes of data (saved views)",
                path=items[0].name, hint="save t.clone() instead of a view to store only its data"))
    return numel, unique, stored, findings


def _info_from_scan(scan: _Scan) -> CheckpointInfo:
    numel, unique, stored, findings = _byte_totals(scan)
    entries = tuple(
        CheckpointEntry(t.name, t.shape, t.dtype, t.numel, t.nbytes, t.stored_bytes, t.device,
                        t.shard)
        for t in scan.tensors
    )
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


class _Unchanged:
    """Asserts (as a CheckpointError) that reading left the file's size and mtime as they were."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self.before: tuple[int, int] | None = None

    def __enter__(self) -> _Unchanged:
        try:
            st = self.path.stat()
            self.before = (st.st_size, st.st_mtime_ns)
        except OSError:
            self.before = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.before is None or exc[0] is not None:
            return
        st = self.path.stat()
        if (st.st_size, st.st_mtime_ns) != self.before:  # pragma: no cover - a bug, not input
            raise CheckpointError(f"{str(self.path)!r} changed while torchscope read it")


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """List what a checkpoint file holds without loading its tensor data.

    Recognizes ``torch.save`` files of any name (zip or legacy), safetensors files and sharded
    checkpoints' ``*.index.json`` by their content; finds state dicts, optimizer states, plain
    scalars and tensors that share storage inside the file. Reads ``torch.save`` files only with
    ``torch.load(weights_only=True, mmap=True)`` and safetensors files only through their
    header; never writes to the file.

    Args:
        path: the checkpoint file (a sharded checkpoint: its index JSON).

    Returns:
        A :class:`CheckpointInfo` of plain values.

    Raises:
        CheckpointError: the path is missing, a directory, empty, truncated or corrupt, not a
            checkpoint, holds objects other than tensors and plain containers (a pickle that
            would run code), or is a safetensors file whose header lies.

    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.pt")
    >>> torch.save({"w": torch.zeros(2, 3), "epoch": 3}, path)
    >>> info = inspect_checkpoint(path)
    >>> info.entries[0].shape, info.scalars
    ((2, 3), (('epoch', '3'),))
    """
    with _Unchanged(path):
        scan = _scan_path(path)
        info = _info_from_scan(scan)
        scan.keep.clear()
    return info


# ------------------------------------------------------------------------------------------
# diff against a model


def _model_ties(model: nn.Module) -> list[tuple[str, ...]]:
    from torchscope.tying import find_tied

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
    for path, flat in scan.composites.items():
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
            f"a {scan.root_kind} with {len(scan.tensors)} tensor(s) but no dict of named tensors")
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
        CheckpointError: the file cannot be read safely (see :func:`inspect_checkpoint`), holds
            no state dict, or ``key`` names none.

    >>> import torchscope
    >>> sd = {"module." + k: v for k, v in torchscope.examples.MLP().state_dict().items()}
    >>> d = diff_checkpoint(torchscope.examples.MLP(), sd)
    >>> d.would_load_strict, d.strip_prefix, d.would_load_after_fix
    (False, 'module.', True)
    """
    if isinstance(source, Mapping):
        scan = _scan_mapping(source)
        return _diff(model, scan, key)
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
    for k in model_keys:
        value = model_sd[k]
        if k not in file_by_key or not isinstance(value, torch.Tensor):
            continue
        rec = file_by_key[k]
        if is_lazy(value):
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
    for names in _model_ties(model):
        in_sd = [n for n in names if n in model_set]
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
    fixed_strict = not missing and not unexpected and not shapes
    prefixed = strip_prefix is not None or add_prefix is not None
    would_strict = fixed_strict and not prefixed

    findings.extend(_prefix_findings(model, strip_prefix, add_prefix, len(file_keys), best,
                                     fixed_strict))
    findings.extend(_key_findings(missing_untied, unexpected, shapes, dtypes, lazy))
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
        names_m = [k for k in file_by_key if file_by_key[k].name in g.names]
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
    def some(names: list[str]) -> str:
        shown = ", ".join(names[:4])
        return shown + (f" … ({len(names)} in all)" if len(names) > 4 else "")

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
