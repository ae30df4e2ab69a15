"""Specs of forward inputs and outputs, and example inputs built from sizes (for
:mod:`torchscope.trace`, which re-exports :func:`spec_of` and :func:`build_inputs`)."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch

from torchscope._torch import dtype_name, parse_dtype
from torchscope.errors import InputSpecError
from torchscope.records import MapSpec, SeqSpec, Spec, TensorSpec, ValueSpec

__all__ = ["MAX_JSON_DEPTH", "build_inputs", "load_json", "spec_of"]

_MAX_DEPTH = 8  # nesting depth of input/output structures before a spec becomes "..."
_REPR_LIMIT = 40  # characters of a ValueSpec repr

# ---------------------------------------------------------------------------------------------
# specs





def _short_repr(value: object) -> str:
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 1] + "…"
    return text


_PLAIN = (int, float, bool, complex, str, bytes, torch.dtype, torch.device, torch.Size,
          enum.Enum, slice, range, type(Ellipsis))


def _build_spec(value: object, on_tensor: Callable[[torch.Tensor], TensorSpec],
                depth: int = 0) -> Spec:
    """The spec of ``value``; every tensor inside goes through ``on_tensor``."""
    if isinstance(value, torch.Tensor):
        return on_tensor(value)
    if value is None:
        return None
    if isinstance(value, _PLAIN):
        return ValueSpec(_short_repr(value))
    if depth >= _MAX_DEPTH:
        return ValueSpec("...")
    depth += 1
    tp = type(value)
    if isinstance(value, (tuple, list)):  # namedtuples keep their name
        return SeqSpec(tp.__name__, tuple(_build_spec(v, on_tensor, depth) for v in value))
    if isinstance(value, Mapping):  # dicts, OrderedDicts, transformers ModelOutput
        return MapSpec(tp.__name__, tuple((str(k), _build_spec(v, on_tensor, depth))
                                          for k, v in value.items()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return MapSpec(tp.__name__, tuple((f.name, _build_spec(getattr(value, f.name), on_tensor,
                                                                depth))
                                          for f in dataclasses.fields(value)))
    # Other objects (caches, configs, modules): the type name only — their repr can be long,
    # expensive, or hold an address that changes from run to run.
    return ValueSpec(f"<{tp.__name__}>")


class _TensorSpecs:
    """Interned :class:`TensorSpec`\\ s: one object per (shape, dtype, device) in one trace."""

    __slots__ = ("cache",)

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], TensorSpec] = {}

    def __call__(self, t: torch.Tensor) -> TensorSpec:
        key = (t.shape, t.dtype, t.device)
        spec = self.cache.get(key)
        if spec is None:
            spec = TensorSpec(tuple(int(d) for d in t.shape), dtype_name(t.dtype), str(t.device))
            self.cache[key] = spec
        return spec


def spec_of(value: object) -> Spec:
    """The spec of a forward input or output, keeping its structure.

    Tensors become :class:`TensorSpec`; tuples, lists and namedtuples :class:`SeqSpec`; dicts,
    dataclasses and transformers ``ModelOutput``\\ s :class:`MapSpec`; ``None`` stays ``None``;
    numbers, strings, dtypes and devices a :class:`ValueSpec` of their (short) repr; any other
    object a :class:`ValueSpec` of its type name, like ``<DynamicCache>``.

    Args:
        value: any Python value.

    Returns:
        The spec (plain values only: it keeps no tensor alive).

    >>> import torch
    >>> spec_of((torch.zeros(2, 3), None, 4))
    SeqSpec(type_name='tuple', items=(TensorSpec(shape=(2, 3), dtype='float32', device='cpu'), \
None, ValueSpec(repr='4')))
    """
    return _build_spec(value, _TensorSpecs())


def tensors_in(value: object, depth: int = 0) -> Iterator[torch.Tensor]:
    """Every tensor inside ``value``, at any depth (tuples, lists, mappings, dataclasses; a
    container that holds itself is visited once), in order.

    >>> import torch
    >>> deep = [torch.zeros(1)]
    >>> for _ in range(20):
    ...     deep = [deep, torch.ones(1)]
    >>> len(list(tensors_in(deep)))
    21
    """
    seen: set[int] = set()
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
            continue
        if item is None or isinstance(item, _PLAIN) or id(item) in seen:
            continue
        if isinstance(item, (tuple, list)):
            children: list[object] = list(item)
        elif isinstance(item, Mapping):
            children = list(item.values())
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [getattr(item, f.name) for f in dataclasses.fields(item)]
        else:
            continue
        seen.add(id(item))
        stack.extend(reversed(children))


#: how deep :func:`map_tensors` follows containers (a deeper tensor is an error, not skipped)
MAP_DEPTH = 200


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor], depth: int = 0) -> Any:
    """``value`` with every tensor replaced by ``fn(tensor)`` (tuples, lists, dicts).

    Raises:
        InputSpecError: containers nested deeper than :data:`MAP_DEPTH`.
    """
    if isinstance(value, torch.Tensor):
        return fn(value)
    if depth >= MAP_DEPTH:
        if any(True for _ in tensors_in(value)):
            raise InputSpecError(
                f"example inputs nest containers more than {MAP_DEPTH} levels deep; pass "
                "flatter inputs (tuples or dicts of tensors)"
            )
        return value
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return type(value)(*(map_tensors(v, fn, depth + 1) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn, depth + 1) for v in value)
    if isinstance(value, dict):
        out = copy.copy(value)
        for k, v in value.items():
            out[k] = map_tensors(v, fn, depth + 1)
        return out
    return value


# ---------------------------------------------------------------------------------------------
# inputs





def _parse_shape(value: object, where: str) -> tuple[int, ...]:
    items: Sequence[object]
    if isinstance(value, str):
        text = value.strip().strip("()[]").replace("x", ",").replace(" ", "")
        items = [p for p in text.split(",") if p != ""]
    elif isinstance(value, (tuple, list, torch.Size)):
        items = value
    else:
        items = ()
    shape: list[int] = []
    for item in items:
        if isinstance(item, bool):
            break
        try:
            dim = int(cast(Any, item))
        except (TypeError, ValueError):
            break
        if dim < 0 or (not isinstance(item, str) and dim != item):
            break
        shape.append(dim)
    else:
        if shape or (isinstance(value, (tuple, list)) and not value):
            return tuple(shape)
    raise InputSpecError(
        f"{where} = {value!r} is not a shape; give non-negative integers, "
        "e.g. (2, 20) or '1,3,224,224'"
    )


def parse_device(device: object) -> torch.device:
    """``device`` as a ``torch.device`` this build of torch and this machine have."""
    if not isinstance(device, (str, torch.device)) or (isinstance(device, str)
                                                       and len(device) > 64):
        shown = repr(device) if isinstance(device, str) and len(device) <= 64 else (
            type(device).__name__)
        raise InputSpecError(
            f"device = {shown} is not a torch device; use e.g. 'cpu', 'cuda:0' or 'meta'"
        )
    try:
        parsed: torch.device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputSpecError(
            f"device = {device!r} is not a torch device; use e.g. 'cpu', 'cuda:0' or 'meta'"
        ) from None
    kind = parsed.type
    if kind in ("cpu", "meta"):
        return parsed
    available, count = _device_count(kind)
    if not available:
        raise InputSpecError(
            f"device = {str(device)!r}: this torch build ({torch.__version__}) or machine has no "
            f"{kind} device; use 'cpu' or 'meta', or run where {kind} is available"
        )
    if parsed.index is not None and parsed.index >= count:
        raise InputSpecError(
            f"device = {str(device)!r}: this machine has {count} {kind} device(s) "
            f"({kind}:0 to {kind}:{count - 1}); use one of them"
        )
    return parsed


def _device_count(kind: str) -> tuple[bool, int]:
    """Whether devices of type ``kind`` are usable here, and how many (no device is
    initialized for the question)."""
    try:
        if kind == "mps":
            mps_ok = bool(torch.backends.mps.is_available())
            return mps_ok, 1 if mps_ok else 0
        module: Any = getattr(torch, kind, None)
        if module is None:
            return False, 0
        available = getattr(module, "is_available", None)
        if available is None or not available():
            return False, 0
        counter = getattr(module, "device_count", None)
        count = int(counter()) if counter is not None else 1
        return count > 0, count
    except Exception:  # a backend that fails to answer is not usable either
        return False, 0


_QUANTIZED = frozenset(getattr(torch, n) for n in ("qint8", "quint8", "qint32", "quint4x2",
                                                    "quint2x4") if hasattr(torch, n))

#: The largest byte count torch can address (numel * element size must stay below it).
_MAX_BYTES = 2**63 - 1


def _check_buildable(sizes: list[tuple[int, ...]], types: list[torch.dtype]) -> None:
    """Refuse sizes that overflow and dtypes torch cannot make zeros of, before any memory."""
    for i, (size, dt) in enumerate(zip(sizes, types)):
        numel = 1
        for d in size:
            numel *= d
        itemsize = dt.itemsize
        if numel * itemsize > _MAX_BYTES or any(d > _MAX_BYTES for d in size):
            shown = ",".join(map(str, size))
            if len(shown) > 80:
                shown = shown[:79] + "…"
            raise InputSpecError(
                f"input_size[{i}] = ({shown}) overflows: more than 2**63 bytes of "
                f"{dtype_name(dt)}; give sizes whose product fits, e.g. (2, 20)"
            )
        try:
            if dt in _QUANTIZED:
                raise TypeError("quantized")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.zeros(size, dtype=dt, device="meta")
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            raise InputSpecError(
                f"dtypes[{i}] = {dtype_name(dt)!r}: torch cannot build example inputs of this "
                "dtype from sizes; use a plain dtype (float32, bfloat16, long, bool) or pass "
                "example_inputs"
            ) from None


def input_plan(input_size: object, dtypes: object) -> list[tuple[tuple[int, ...], torch.dtype]]:
    """The checked (shape, dtype) of each input to build; nothing is allocated."""
    sizes = _parse_sizes(input_size)
    types = _parse_dtypes(dtypes, len(sizes))
    _check_buildable(sizes, types)
    return list(zip(sizes, types))


def make_inputs(plan: list[tuple[tuple[int, ...], torch.dtype]],
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """Zeros of the planned shapes and dtypes on ``device`` (under a fake mode: fake ones)."""
    try:
        return tuple(torch.zeros(size, dtype=dt, device=device) for size, dt in plan)
    except (RuntimeError, TypeError, MemoryError) as err:  # out of memory on a real device
        nbytes = sum(math.prod(size) * dt.itemsize for size, dt in plan)
        raise InputSpecError(
            f"cannot build inputs of sizes {[list(s) for s, _ in plan]} on device "
            f"{str(device)!r}: {nbytes:,} bytes could not be allocated "
            f"({type(err).__name__}); use smaller sizes or mode='meta'"
        ) from None


def _parse_sizes(input_size: object) -> list[tuple[int, ...]]:
    if isinstance(input_size, (str, torch.Size)) or (
        isinstance(input_size, (tuple, list)) and input_size
        and all(isinstance(d, int) and not isinstance(d, bool) for d in input_size)
    ):
        return [_parse_shape(input_size, "input_size")]  # one shape for one input
    if not isinstance(input_size, (tuple, list)) or not input_size:
        raise InputSpecError(
            f"input_size = {input_size!r} is not a list of shapes; give one shape per input, "
            "e.g. input_size=[(2, 20)] (CLI: --input-size 2,20)"
        )
    return [_parse_shape(s, f"input_size[{i}]") for i, s in enumerate(input_size)]


def _parse_dtypes(dtypes: object, n: int) -> list[torch.dtype]:
    if dtypes is None:
        return [torch.float32] * n
    if isinstance(dtypes, (str, torch.dtype)):
        dtypes = [dtypes]
    if not isinstance(dtypes, (tuple, list)):
        raise InputSpecError(
            f"dtypes = {dtypes!r} is not a list of dtypes; give one per input, e.g. ['long']"
        )
    parsed = [parse_dtype(d, where=f"dtypes[{i}]") for i, d in enumerate(dtypes)]
    if len(parsed) == 1 and n > 1:
        return parsed * n
    if len(parsed) != n:
        raise InputSpecError(
            f"dtypes = {list(dtypes)!r} has {len(parsed)} entries for {n} input sizes; "
            "give one dtype per --input-size (or one for all)"
        )
    return parsed


def build_inputs(input_size: object, dtypes: object = None, *,
                 device: object = None) -> tuple[torch.Tensor, ...]:
    """Example inputs built from sizes: zeros, of every dtype (integer zeros are valid token ids
    and indices; boolean zeros are ``False``).

    Args:
        input_size: one shape per input (``[(2, 20)]``, ``[(1, 128), (1, 128)]``); a single
            shape (``(2, 20)``, ``"1,3,224,224"``) is one input.
        dtypes: one dtype per input (torch dtypes or names: ``"long"``, ``"float32"``,
            ``"bool"``…), or one for all; default ``float32``.
        device: where to build them (default CPU).

    Returns:
        The input tensors, in order.

    Raises:
        InputSpecError: a size, dtype or device that cannot be used.

    >>> [tuple(t.shape) for t in build_inputs([(2, 20), (2,)], ["float32", "long"])]
    [(2, 20), (2,)]
    """
    plan = input_plan(input_size, dtypes)
    dev = parse_device(device) if device is not None else torch.device("cpu")
    return make_inputs(plan, dev)


# ---------------------------------------------------------------------------------------------
# JSON with bounds

#: the deepest nesting of arrays and objects :func:`load_json` accepts
MAX_JSON_DEPTH = 64


def load_json(text: str | bytes, *, what: str, max_bytes: int = 10_000_000,
              max_depth: int = MAX_JSON_DEPTH,
              error: type[Exception] = InputSpecError) -> Any:
    """Parse JSON with a size and a nesting limit: one ``error`` line instead of a
    ``RecursionError`` or ``MemoryError`` (for ``--kwargs``, safetensors headers, shard
    indexes).

    Args:
        text: the JSON text.
        what: what it is, for the message (``"--kwargs"``, ``"safetensors header of 'x'"``).
        max_bytes: the longest text accepted.
        max_depth: the deepest nesting of arrays and objects accepted.
        error: the exception class to raise (a :class:`~torchscope.errors.TorchscopeError`).

    Returns:
        The parsed value.

    Raises:
        InputSpecError: (or ``error``) text too long, nested too deeply or not JSON.

    >>> load_json('{"n_layer": 2}', what="--kwargs")
    {'n_layer': 2}
    """
    if len(text) > max_bytes:
        raise error(f"{what} is {len(text):,} bytes long (at most {max_bytes:,}); give a "
                    "smaller JSON text")
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{what} nests arrays or objects more than {max_depth} levels deep; "
                    "flatten it") from None
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        msg = getattr(err, "msg", None) or str(err).splitlines()[0][:120]
        col = getattr(err, "colno", None)
        where = f" at column {col}" if col is not None else ""
        raise error(f"{what} is not valid JSON ({msg}{where}); fix the text") from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > max_depth:
                raise error(f"{what} nests arrays or objects more than {max_depth} levels "
                            "deep; flatten it")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return value
