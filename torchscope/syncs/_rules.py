"""Which torch calls make the host wait for the device, and how to avoid each one.

The tables of :mod:`torchscope.syncs`: a rule per torch function (function mode) and per ATen op
(dispatch mode) that looks at the call's arguments and says whether it synchronizes, which
operation that is (``.item()``, ``x[mask]`` …), its kind, and the tensor whose device matters;
and the fix for each operation.

>>> import torch

from torchscope.records import SyncKind
>>> from torchscope.syncs._rules import FUNCTION_RULES
>>> FUNCTION_RULES[torch.Tensor.item]((torch.ones(()),), {})[:2]
('.item()', <SyncKind.SCALAR_READ: 'scalar read'>)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torchscope.records import SyncKind

__all__ = ["DISPATCH_RULES", "FIXES", "FIX_SCALAR", "FUNCTION_RULES", "HOST_COPIES", "Hit",
           "Rule"]

# -- fixes ---------------------------------------------------------------------------------------

FIX_SCALAR = ("keep the value on the device (total += loss.detach()) and read it once, "
               "or every N steps")
FIXES: dict[str, str] = {
    ".item()": FIX_SCALAR,
    "float()": FIX_SCALAR,
    "int()": FIX_SCALAR + "; use a Python int when the value is a size",
    "complex()": FIX_SCALAR,
    "__index__": "index with a Python int; a tensor used as an index or size is read on the host",
    "bool()": ("branch on the device with torch.where(cond, a, b), or check every N steps "
               "(torch._assert_async for assertions)"),
    ".is_nonzero()": "branch on the device with torch.where(cond, a, b)",
    "in (contains)": "compare on the device ((t == value).any()) and read the result rarely",
    "x[tensor scalar]": "index with a Python int, or use index_select/gather with the tensor",
    ".tolist()": "collect results on the device and convert once, after the loop",
    ".cpu()": "move results to the host once, after the loop (or non_blocking into pinned memory)",
    '.to("cpu")': ("move results to the host once, after the loop "
                   "(or .to('cpu', non_blocking=True) into pinned memory)"),
    ".numpy()": "collect results on the device and convert once, after the loop",
    "numpy.asarray()": "collect results on the device and convert once, after the loop",
    "print()/repr()": "log every N steps; printing a tensor copies it to the host",
    "format()": "log every N steps; formatting a tensor reads it on the host",
    "nonzero()": "use nonzero_static(size=...) or keep the mask and use torch.where(mask, a, b)",
    "argwhere()": "use nonzero_static(size=...) or keep the mask and use torch.where(mask, a, b)",
    "torch.where(cond)": ("use torch.where(cond, a, b) (three arguments) or "
                          "nonzero_static(size=...)"),
    "x[mask]": ("keep the shape static: torch.where(mask, x, 0) or masked_fill; "
                "the result size depends on the mask"),
    "x[mask] = tensor": "use torch.where(mask, value, x) or masked_scatter_ (no host round trip)",
    "masked_select()": "keep the shape static: torch.where(mask, x, 0) or masked_fill",
    "unique()": ("its output size depends on the data: compute it once outside the step, "
                 "or count with bincount/scatter_add into a fixed number of bins"),
    "unique_consecutive()": "its output size depends on the data: compute it outside the step",
    "repeat_interleave()": "pass output_size= (the known total), or repeat by a Python int",
    "bincount()": "use zeros(n).scatter_add_(0, idx, ones) with a known number of bins",
    "equal()": "compare on the device ((a == b).all()) and read the result rarely",
    "allclose()": "compare on the device (torch.isclose(a, b).all()) and read the result rarely",
    ".item() (in C++)": ("a tensor was read as a Python number inside torch (a size or scalar "
                         "argument given as a tensor): pass a Python number"),
    "synchronizing CUDA op": "see the operation on that line; keep values on the device",
}

# -- which torch calls synchronize ----------------------------------------------------------------

Tensor = torch.Tensor
# a rule looks at (args, kwargs) and returns (op, kind, tensor whose device matters) or None
Hit = tuple[str, SyncKind, Any]
Rule = Callable[[tuple[Any, ...], dict[str, Any]], "Hit | None"]
_MASK_DTYPES = (torch.bool, torch.uint8)


def _always(op: str, kind: SyncKind, arg: int = 0) -> Rule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
        return (op, kind, args[arg] if len(args) > arg else None)

    return rule


def _index_hit(index: Any) -> tuple[str, SyncKind, Tensor] | None:
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if isinstance(item, Tensor):
            if item.dtype in _MASK_DTYPES:
                return ("x[mask]", SyncKind.DATA_SHAPE, item)
            if item.dim() == 0 and not item.is_floating_point() and not item.is_complex():
                return ("x[tensor scalar]", SyncKind.SCALAR_READ, item)
    return None


def _getitem(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    if len(args) < 2 or isinstance(args[1], (int, slice)) or args[1] is None:
        return None
    return _index_hit(args[1])


def _setitem(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    if len(args) < 3 or isinstance(args[1], (int, slice)) or args[1] is None:
        return None
    hit = _index_hit(args[1])
    if hit is None:
        return None
    value = args[2]
    if hit[0] == "x[mask]":
        # x[mask] = 0.0 (one value) becomes masked_fill_ on the device: no synchronization
        if not isinstance(value, Tensor) or value.numel() == 1:
            return None
        return ("x[mask] = tensor", SyncKind.DATA_SHAPE, hit[2])
    return hit


def _to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    device = kwargs.get("device")
    if device is None and len(args) > 1 and isinstance(args[1], (str, torch.device)):
        device = args[1]
    if device is None or kwargs.get("non_blocking") or (len(args) > 3 and args[3] is True):
        return None
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    return ('.to("cpu")', SyncKind.HOST_COPY, args[0]) if kind == "cpu" else None


def _where(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    if len(args) == 1 and not kwargs:
        return ("torch.where(cond)", SyncKind.DATA_SHAPE, args[0])
    return None


def _repeat_interleave(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0] if args else None)
    if isinstance(repeats, Tensor) and kwargs.get("output_size") is None:
        return ("repeat_interleave()", SyncKind.DATA_SHAPE, repeats)
    return None


def _function_rules() -> dict[Any, Rule]:
    T = torch.Tensor
    S, H, D, C = SyncKind.SCALAR_READ, SyncKind.HOST_COPY, SyncKind.DATA_SHAPE, SyncKind.COMPARE
    rules: dict[Any, Rule] = {
        T.item: _always(".item()", S),
        T.__float__: _always("float()", S),
        T.__int__: _always("int()", S),
        T.__complex__: _always("complex()", S),
        T.__index__: _always("__index__", S),
        T.__bool__: _always("bool()", S),
        T.is_nonzero: _always(".is_nonzero()", S),
        T.__contains__: _always("in (contains)", S),
        T.tolist: _always(".tolist()", H),
        T.cpu: _always(".cpu()", H),
        T.numpy: _always(".numpy()", H),
        T.__array__: _always("numpy.asarray()", H),
        T.to: _to,
        T.__repr__: _always("print()/repr()", SyncKind.PRINT),
        T.__format__: _always("format()", SyncKind.PRINT),
        T.__getitem__: _getitem,
        T.__setitem__: _setitem,
        torch.where: _where,
        torch.repeat_interleave: _repeat_interleave,
        T.repeat_interleave: _repeat_interleave,
    }
    for name, op, kind in [("nonzero", "nonzero()", D), ("argwhere", "argwhere()", D),
                           ("masked_select", "masked_select()", D), ("unique", "unique()", D),
                           ("unique_consecutive", "unique_consecutive()", D),
                           ("bincount", "bincount()", D), ("equal", "equal()", C),
                           ("allclose", "allclose()", C)]:
        rules[getattr(torch, name)] = _always(op, kind)
        rules[getattr(T, name)] = _always(op, kind)
    for name in ("_unique", "_unique2"):
        if hasattr(torch, name):
            rules[getattr(torch, name)] = _always("unique()", D)
    return rules


FUNCTION_RULES = _function_rules()


def _aten_index(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
    for item in indices:
        if isinstance(item, Tensor) and item.dtype in _MASK_DTYPES:
            return ("x[mask]", SyncKind.DATA_SHAPE, item)
    return None


def _aten_index_put(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    value = args[2] if len(args) > 2 else kwargs.get("values")
    hit = _aten_index(args, kwargs)
    if hit is None or not isinstance(value, Tensor) or value.numel() == 1:
        return None  # a single value: masked_fill_ on the device (the scalar index_put_ case)
    return ("x[mask] = tensor", SyncKind.DATA_SHAPE, hit[2])


def _aten_repeat_interleave(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hit | None:
    if kwargs.get("output_size") is None:
        return ("repeat_interleave()", SyncKind.DATA_SHAPE, args[0])
    return None


def _dispatch_rules() -> dict[Any, Rule]:
    aten = torch.ops.aten
    S, D, C = SyncKind.SCALAR_READ, SyncKind.DATA_SHAPE, SyncKind.COMPARE
    rules: dict[Any, Rule] = {
        aten._local_scalar_dense.default: _always(".item() (in C++)", S),
        aten.is_nonzero.default: _always(".is_nonzero()", S),
        aten.nonzero.default: _always("nonzero()", D),
        aten.masked_select.default: _always("masked_select()", D),
        aten._unique2.default: _always("unique()", D),
        aten._unique.default: _always("unique()", D),
        aten.unique_dim.default: _always("unique()", D),
        aten.unique_consecutive.default: _always("unique_consecutive()", D),
        aten.bincount.default: _always("bincount()", D),
        aten.repeat_interleave.Tensor: _aten_repeat_interleave,
        aten.index.Tensor: _aten_index,
        aten.index_put.default: _aten_index_put,
        aten.index_put_.default: _aten_index_put,
        aten.equal.default: _always("equal()", C),
        aten.allclose.default: _always("allclose()", C),
    }
    return rules


DISPATCH_RULES = _dispatch_rules()
HOST_COPIES = frozenset({".cpu()", '.to("cpu")'})
