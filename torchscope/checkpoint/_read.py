"""Reading checkpoints safely: format detection, readers, and the walk over what they hold.

The internal half of :mod:`torchscope.checkpoint`. Files are recognized by their content; a
``torch.save`` file is read only with ``torch.load(weights_only=True)`` (memory-mapped for zip
files, so tensor data stays on disk), a safetensors file only through its header (validated
here, then opened with ``safetensors.safe_open``). The result is a :class:`_Scan`: plain
per-tensor facts plus the loaded objects that keep the memory maps alive while a diff needs them.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchscope.errors import CheckpointError
from torchscope.records import Finding, OptimizerState, Severity, TiedGroup, TieKind
from torchscope.trace import load_json
from torchscope.tying import merge_ranges, storage_key, tensor_extent

if TYPE_CHECKING:
    import torch

    from torchscope.records import OptimizerState


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"
_MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
_MAX_INDEX_BYTES = 100_000_000  # a sharded index lists names: far below this
_MAX_CHECKPOINT_JSON_DEPTH = 16  # headers and indexes are 3 levels deep
_MAX_PICKLE_BYTES = 1 << 30  # the pickle inside a torch.save zip (tensor metadata only)
_MAX_LEGACY_BYTES = 1 << 30  # legacy files are read whole: at most this much
_MAX_NESTING = 100  # containers inside containers: training checkpoints nest a few levels
_MAX_WALK_ENTRIES = 10_000_000  # values walked, a shared container counted at each place
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
    # "tensor"; "lazy" (uninitialized: shape and size unknown, counted as 0); "nested" (a
    # nested tensor: no single shape, its elements and bytes counted); "value" (a state dict
    # entry that is not a tensor, e.g. a quantized layer's packed parameters: ``dtype`` holds
    # its type name, nothing counted)
    kind: str = "tensor"


@dataclass(slots=True)
class _Scan:
    path: str
    format: str
    file_bytes: int
    tensors: list[_Tensor] = field(default_factory=list)
    state_dicts: dict[str, list[tuple[str, _Tensor]]] = field(default_factory=dict)
    composites: dict[str, list[tuple[str, _Tensor]]] = field(default_factory=dict)
    # dicts of named tensors and other values (a quantized model's state dict): diffable
    mixed: dict[str, list[tuple[str, _Tensor]]] = field(default_factory=dict)
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


def _is_mixed_state_dict(obj: Mapping[Any, Any]) -> bool:
    """A dict with str keys, some tensor values and no dict values: what ``state_dict()`` of
    a model with quantized layers or extra state returns (packed parameters, dtypes)."""
    import torch

    return (all(isinstance(k, str) for k in obj)
            and any(isinstance(v, torch.Tensor) for v in obj.values())
            and not any(isinstance(v, Mapping) for v in obj.values()))


def _check_nesting(obj: Any, where: str) -> None:
    """Refuse, as one CheckpointError, an object the walk cannot finish: containers nested
    deeper than :data:`_MAX_NESTING`, a container inside itself, or more than
    :data:`_MAX_WALK_ENTRIES` values (a container shared at several places counts at each,
    as the walk visits it there). Iterative: any depth costs no stack."""
    import torch

    containers = (Mapping, list, tuple, set, frozenset)
    on_path: set[int] = set()
    entries = 0
    stack: list[tuple[Any, int, bool]] = [(obj, 1, False)] if isinstance(obj, containers) else []
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            raise CheckpointError(
                f"{where} holds a dict or list that contains itself: torchscope cannot list "
                "it; save or pass plain tensors and containers (torch.save(model.state_dict(), "
                "path))"
            )
        if depth > _MAX_NESTING:
            raise CheckpointError(
                f"{where} nests dicts, lists or tuples more than {_MAX_NESTING} levels deep: "
                "checkpoints nest a few levels; torchscope does not walk it: save a flat "
                "state dict (torch.save(model.state_dict(), path))"
            )
        on_path.add(id(node))
        stack.append((node, depth, True))
        children = [*node.keys(), *node.values()] if isinstance(node, Mapping) else node
        walked = isinstance(node, Mapping)
        for child in children:
            if isinstance(child, containers):
                stack.append((child, depth + 1, False))
                walked = True
            elif isinstance(child, torch.Tensor):
                walked = True
        entries += len(node) if walked and not isinstance(node, (set, frozenset)) else 1
        if entries > _MAX_WALK_ENTRIES:
            raise CheckpointError(
                f"{where} holds more than {_MAX_WALK_ENTRIES:,} values to list (a dict or list "
                "stored once but referenced at several places counts at each): torchscope "
                "lists at most that many; save a plain state dict"
            )


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
        from torch.nn.parameter import is_lazy

        dtype = str(t.dtype).removeprefix("torch.")
        if is_lazy(t):  # no shape, no size and no data yet
            rec = _Tensor(name, (), dtype, 0, 0, 0, str(t.device), self.shard, obj=id(t),
                          kind="lazy")
            self.scan.tensors.append(rec)
            return rec
        if t.is_nested:  # one tensor of several shapes: its elements are known, its shape not
            numel = t.numel()
            nbytes = numel * t.element_size()
            rec = _Tensor(name, (), dtype, numel, nbytes, nbytes, str(t.device), self.shard,
                          obj=id(t), kind="nested")
            try:
                rec.stored_bytes = t.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):
                pass
            self.scan.tensors.append(rec)
            return rec
        self.by_name[name] = t
        numel = t.numel()
        nbytes = numel * t.element_size()
        rec = _Tensor(name, tuple(t.shape), dtype, numel, nbytes, nbytes, None, self.shard,
                      obj=id(t))
        if t.layout == _strided():
            storage = t.untyped_storage()
            rec.stored_bytes = storage.nbytes()
            rec.device = self.locations.get(storage.data_ptr(), str(t.device))
            if storage.nbytes() > 0 and numel > 0:  # meta: told apart by storage identity
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
            if _is_mixed_state_dict(obj):  # tensors and other values, e.g. packed parameters
                flat = []
                for k, v in obj.items():
                    if isinstance(v, torch.Tensor):
                        flat.append((k, self.tensor(_join(path, k), v)))
                        continue
                    self.walk(v, _join(path, k))
                    flat.append((k, _Tensor(_join(path, k), (), type(v).__name__, 0, 0, 0, None,
                                            self.shard, kind="value")))
                self.scan.mixed.setdefault(path, []).extend(flat)
                return
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
    except Exception as err:  # corrupt bytes surface as any error type (AssertionError, too)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read {str(p)!r} as a torch.save file ({type(err).__name__}: {first}); it "
            "is truncated or corrupt: save or download it again"
        ) from err
    return obj, locations


def _check_zip(p: Path) -> None:
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
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
    # refused from the sizes the archive declares, before anything is inflated: torch.save
    # stores every entry uncompressed, and its pickle describes tensors, not their data
    size = p.stat().st_size
    for info in infos:
        inflated = info.file_size
        pickle_entry = info.filename.endswith(".pkl")
        if (pickle_entry and inflated > _MAX_PICKLE_BYTES) or (
                info.compress_type != zipfile.ZIP_STORED
                and inflated > max(1 << 24, 100 * info.compress_size)) or (
                info.compress_type == zipfile.ZIP_STORED and inflated > size):
            raise CheckpointError(
                f"{str(p)!r}: its entry {info.filename[-60:]!r} declares {inflated:,} bytes "
                f"({info.compress_size:,} stored) — more than a torch.save file holds (a "
                f"pickle of at most {_MAX_PICKLE_BYTES:,} bytes, data stored uncompressed); "
                "torchscope does not inflate it: re-save the checkpoint with torch.save"
            )


def _scan_torch(p: Path, fmt: str, scan: _Scan, shard: str | None) -> None:
    if fmt == "torch-legacy":
        size = p.stat().st_size
        if size > _MAX_LEGACY_BYTES:
            raise CheckpointError(
                f"{str(p)!r} is a legacy (non-zip) torch.save file of {size:,} bytes: torch can "
                "list it only by reading all of it into memory (no memory map for this "
                f"format), and torchscope reads at most {_MAX_LEGACY_BYTES:,} bytes that way; "
                "re-save it in the zip format (torch.save(torch.load(path, "
                "weights_only=True), new_path)) where memory allows"
            )
        scan.findings.append(Finding(
            "checkpoint-legacy-format", Severity.INFO,
            f"{p.name} is a legacy (non-zip) torch.save file: listing it read all "
            f"{size:,} bytes into memory (the zip format is memory-mapped instead)",
            path=shard, hint="re-save it with a current torch.save (zip format)"))
    obj, locations = _torch_load(p, fmt)
    scan.keep.append(obj)
    _check_nesting(obj, repr(str(p)))
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
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{bad}: its header is not JSON ({err})") from None
    header = load_json(text, what=f"{bad}: its header", max_bytes=_MAX_SAFETENSORS_HEADER,
                       max_depth=_MAX_CHECKPOINT_JSON_DEPTH, error=CheckpointError)
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
    size = p.stat().st_size
    if size > _MAX_INDEX_BYTES:
        raise CheckpointError(
            f"{bad}: {size:,} bytes is more than an index holds (at most {_MAX_INDEX_BYTES:,}); "
            "pass the index file of the sharded checkpoint"
        )
    with p.open("rb") as f:
        raw = f.read(_MAX_INDEX_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{bad}: not valid JSON ({err})") from None
    index = load_json(text, what=bad + ": its JSON", max_bytes=_MAX_INDEX_BYTES,
                      max_depth=_MAX_CHECKPOINT_JSON_DEPTH, error=CheckpointError)
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
        # the index's folder, or the folder the index itself links into (a hub cache links
        # every file of a snapshot into one blobs folder)
        folders = {p.parent.resolve(), p.resolve().parent}
        try:
            real: Path | None = shard.resolve(strict=True)
        except (OSError, RuntimeError):  # a dangling link or a link loop
            real = None if shard.is_symlink() else shard
        if real is None or not any(real.is_relative_to(f) for f in folders):
            raise CheckpointError(
                f"{bad}: shard {name!r} is a link to a file outside the checkpoint's folder; "
                "torchscope reads only shards inside it: copy the shard into the folder"
            )
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
    if total is not None and (not total.isdigit() or len(total) > 30):
        shown = total if len(total) <= 40 else f"{total[:20]}… ({len(total):,} characters)"
        scan.findings.append(Finding(
            "checkpoint-index-size", Severity.INFO,
            f"the index's total_size {shown} is not a byte count; its shards hold "
            f"{tensor_bytes} bytes of tensors",
            hint="harmless unless a loader checks it; regenerate the index"))
    elif total is not None and int(total) != tensor_bytes:
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
    _check_nesting(obj, "the state dict")
    walker = _Walker(scan, shard=None, locations={})
    walker.walk(obj, "")
    scan.fetch = walker.by_name.__getitem__
    return scan


# ------------------------------------------------------------------------------------------
# shared storage inside a file


def _shared_groups(tensors: list[_Tensor]) -> tuple[TiedGroup, ...]:

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
