"""Host-device synchronization detector: which lines make the host wait for the device.

``with detect_syncs() as report:`` records every operation that forces the host to wait for an
accelerator — ``.item()``, ``float()``/``int()``/``bool()`` of a tensor, ``if tensor:``,
``.tolist()``, ``.cpu()``/``.to("cpu")``/``.numpy()``, printing a tensor, ``nonzero``,
boolean-mask indexing, ``masked_select``, ``unique``, ``repeat_interleave`` without
``output_size``, ``equal``, ``allclose`` — at the user's ``file:line`` and function, grouped by
site with counts, with the fix. :func:`no_syncs` raises :class:`~torchscope.errors.SyncError`
at the first one, for tests.

How (see DESIGN.md "Host-device synchronization"):

* A :class:`~torch.overrides.TorchFunctionMode` sees every public torch call and looks the
  function up in a small table (one dict lookup for the calls that never synchronize). Only a
  hit walks the Python frames (``sys._getframe``) to find the first frame outside torch and
  torchscope. Without an accelerator this reports what *would* synchronize on one: on CPU
  ``.cpu()`` is a no-op and ``.item()`` costs nothing, but the same line stalls a GPU.
* ``deep=True`` adds a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that also sees
  the scalar reads torch's C++ code makes (``torch.zeros(n)``/``torch.arange(n)`` with a tensor
  ``n``, sizes given as tensors). Everything else — ``int(t)``/``bool(t)`` in transformers'
  helpers included — is a Python-level call the function mode sees. The dispatch mode costs
  more, since every ATen op (backward and optimizer included) goes through Python:
  ``benchmarks/bench_syncs.py`` measured, on an Adam step of 4 x Linear(h, h), batch 64, on 2
  CPU threads, 1.02x (h=512) and 1.5x (h=64) for the default, 1.6x and 3.2x with ``deep=True``
  — so the dispatch mode is opt-in.
* On CUDA, ``torch.cuda.set_sync_debug_mode("warn")`` runs as well and its warnings become sites;
  tensors on the CPU are then not reported (reading them never waits for the GPU).

Known false positives on CPU, not reported: optimizer step counters (``torch.optim`` keeps
``step`` as a host tensor and reads it every step), the scalar read inside ``x[mask] = 0.0``
(a ``masked_fill`` on the device), and ``.to(device)`` where ``device`` only happens to be the
CPU (reported only when the line names ``cpu``).

>>> import torch, torchscope
>>> with torchscope.detect_syncs() as report:
...     loss = torch.ones(3).sum()
...     value = loss.item()
>>> [(site.op, site.count) for site in report.sites]
[('.item()', 1)]
"""

from __future__ import annotations

import contextlib
import enum
import json
import linecache
import os
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from torchscope.errors import SyncError
from torchscope.records import Finding, Severity

__all__ = ["SyncKind", "SyncReport", "SyncSite", "detect_syncs", "no_syncs"]


class SyncKind(str, enum.Enum):
    """Why an operation makes the host wait for the device."""

    SCALAR_READ = "scalar read"  # .item(), float(), int(), bool(), if t:
    HOST_COPY = "host copy"  # .cpu(), .to("cpu"), .numpy(), .tolist()
    PRINT = "print"  # repr(), print(), f"{t}"
    DATA_SHAPE = "data-dependent shape"  # nonzero, x[mask], masked_select, unique, ...
    COMPARE = "host comparison"  # equal, allclose
    CUDA = "cuda sync"  # reported by torch.cuda.set_sync_debug_mode


@dataclass(frozen=True, slots=True)
class SyncSite:
    """One line that synchronized, how often, and how to avoid it.

    ``file`` is the path as Python knows it, ``line`` the line number, ``function`` the
    qualified name of the function (``<module>`` at top level); ``op`` names the operation
    (``.item()``); ``via`` names the torch function that synchronized on the user's behalf when
    the operation ran inside torch (``torch/amp/grad_scaler.py:371 _maybe_opt_step``).
    """

    file: str
    line: int
    function: str
    op: str
    kind: SyncKind
    count: int
    fix: str
    via: str | None = None

    @property
    def location(self) -> str:
        """``file:line`` with the file shortened (relative to the working directory, or from the
        installed package's name)."""
        return f"{_short_path(self.file)}:{self.line}"


# -- fixes ---------------------------------------------------------------------------------------

_FIX_SCALAR = ("keep the value on the device (total += loss.detach()) and read it once, "
               "or every N steps")
_FIXES: dict[str, str] = {
    ".item()": _FIX_SCALAR,
    "float()": _FIX_SCALAR,
    "int()": _FIX_SCALAR + "; use a Python int when the value is a size",
    "complex()": _FIX_SCALAR,
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
_Hit = tuple[str, SyncKind, Any]
_Rule = Callable[[tuple[Any, ...], dict[str, Any]], "_Hit | None"]
_MASK_DTYPES = (torch.bool, torch.uint8)


def _always(op: str, kind: SyncKind, arg: int = 0) -> _Rule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
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


def _getitem(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    if len(args) < 2 or isinstance(args[1], (int, slice)) or args[1] is None:
        return None
    return _index_hit(args[1])


def _setitem(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
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


def _to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    device = kwargs.get("device")
    if device is None and len(args) > 1 and isinstance(args[1], (str, torch.device)):
        device = args[1]
    if device is None or kwargs.get("non_blocking") or (len(args) > 3 and args[3] is True):
        return None
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    return ('.to("cpu")', SyncKind.HOST_COPY, args[0]) if kind == "cpu" else None


def _where(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    if len(args) == 1 and not kwargs:
        return ("torch.where(cond)", SyncKind.DATA_SHAPE, args[0])
    return None


def _repeat_interleave(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0] if args else None)
    if isinstance(repeats, Tensor) and kwargs.get("output_size") is None:
        return ("repeat_interleave()", SyncKind.DATA_SHAPE, repeats)
    return None


def _function_rules() -> dict[Any, _Rule]:
    T = torch.Tensor
    S, H, D, C = SyncKind.SCALAR_READ, SyncKind.HOST_COPY, SyncKind.DATA_SHAPE, SyncKind.COMPARE
    rules: dict[Any, _Rule] = {
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


_FUNCTION_RULES = _function_rules()


def _aten_index(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
    for item in indices:
        if isinstance(item, Tensor) and item.dtype in _MASK_DTYPES:
            return ("x[mask]", SyncKind.DATA_SHAPE, item)
    return None


def _aten_index_put(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    value = args[2] if len(args) > 2 else kwargs.get("values")
    hit = _aten_index(args, kwargs)
    if hit is None or not isinstance(value, Tensor) or value.numel() == 1:
        return None  # a single value: masked_fill_ on the device (the scalar index_put_ case)
    return ("x[mask] = tensor", SyncKind.DATA_SHAPE, hit[2])


def _aten_repeat_interleave(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Hit | None:
    if kwargs.get("output_size") is None:
        return ("repeat_interleave()", SyncKind.DATA_SHAPE, args[0])
    return None


def _dispatch_rules() -> dict[Any, _Rule]:
    aten = torch.ops.aten
    S, D, C = SyncKind.SCALAR_READ, SyncKind.DATA_SHAPE, SyncKind.COMPARE
    rules: dict[Any, _Rule] = {
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


_DISPATCH_RULES = _dispatch_rules()
_HOST_COPIES = frozenset({".cpu()", '.to("cpu")'})

# -- frames ----------------------------------------------------------------------------------------

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_PARENT = os.path.dirname(os.path.dirname(torch.__file__)) + os.sep
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_THIS_FILE = os.path.abspath(__file__)
# torch files that only route a call to its implementation: never "where torch synchronized"
_PLUMBING = tuple(
    _TORCH_DIR + p.replace("/", os.sep)
    for p in ("overrides.py", "_tensor.py", "functional.py", "_jit_internal.py", "_compile.py",
              "_dynamo/", "utils/_python_dispatch", "_ops.py", "utils/_contextlib.py")
)
# torch.optim reads these on purpose: step counters live on the host (false positives)
_OPTIM_DIR = _TORCH_DIR + "optim" + os.sep
_OPTIM_REAL = tuple(_OPTIM_DIR + f for f in ("lr_scheduler.py", "lbfgs.py"))

# frame categories
_USER, _TORCH, _PLUMB, _DETECTOR, _OWN = range(5)


def _category(filename: str) -> int:
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    if path == _THIS_FILE:
        return _DETECTOR
    if path.startswith(_HERE):
        if path == _HERE + "examples.py":
            return _USER  # the chapter's models are user code as far as syncs go
        if os.path.basename(path).startswith("_cmd_syncs"):
            return _PLUMB
        return _OWN
    if path.startswith(_PLUMBING):
        return _PLUMB
    if path.startswith(_TORCH_DIR):
        return _TORCH
    if path.startswith("<frozen "):
        return _PLUMB  # runpy, importlib
    return _USER


def _short_path(path: str) -> str:
    """A path relative to the working directory, or from the installed package's name."""
    if path.startswith("<"):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        rel = path
    if not rel.startswith(".."):
        return rel
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- the recorder ----------------------------------------------------------------------------------


class SyncReport:
    """What :func:`detect_syncs` recorded: sites with counts, the fix for each, and findings.

    The report is also the context manager that records: enter it again to record more (the
    counts add up); entering it while it is already active changes nothing. It holds plain
    values only, never a tensor.

    Attributes:
        include_cpu: whether operations on CPU tensors count (they would synchronize on an
            accelerator); ``False`` on a CUDA machine, where only device tensors count.
        deep: whether the dispatch-level mode also ran.
        cuda: whether ``torch.cuda.set_sync_debug_mode`` ran as well.

    >>> import torch, torchscope
    >>> report = torchscope.detect_syncs()
    >>> with report:
    ...     flag = bool(torch.zeros(1))
    >>> report.total
    1
    """

    def __init__(self, *, include_cpu: bool | None = None, deep: bool = False,
                 cuda: bool | None = None, strict: bool = False) -> None:
        available = torch.cuda.is_available()
        self.include_cpu = (not available) if include_cpu is None else bool(include_cpu)
        self.deep = bool(deep)
        self.cuda = available if cuda is None else bool(cuda and available)
        self._strict = strict
        self._sites: dict[tuple[str, int, str], list[Any]] = {}
        self._codes: dict[types.CodeType, int] = {}
        self._quiet = 0  # > 0 while a reported (or knowingly skipped) call runs: no double count
        self._depth = 0
        self._stack: contextlib.ExitStack | None = None
        # id -> (result of .cpu(), (code, line) of the call when .cpu() returned its input)
        self._host: dict[int, tuple[weakref.ref[Tensor], tuple[types.CodeType, int] | None]] = {}
        self._cuda_log: list[warnings.WarningMessage] | None = None

    # -- results ---------------------------------------------------------------------------
    @property
    def sites(self) -> tuple[SyncSite, ...]:
        """The sites, most frequent first (then in the order first seen)."""
        rows = sorted(self._sites.values(), key=lambda r: (-r[0], r[1]))
        return tuple(
            SyncSite(file=r[2], line=r[3], function=r[4], op=r[5], kind=r[6], count=r[0],
                     fix=_FIXES.get(r[5], _FIX_SCALAR), via=r[7])
            for r in rows
        )

    @property
    def total(self) -> int:
        """How many synchronizations were recorded, all sites together."""
        return sum(r[0] for r in self._sites.values())

    def findings(self) -> tuple[Finding, ...]:
        """One ``sync`` WARNING finding per site, with its location and the fix."""
        out = []
        for s in self.sites:
            via = f" (inside {s.via})" if s.via else ""
            times = "once" if s.count == 1 else f"{s.count} times"
            out.append(Finding(
                code="sync", severity=Severity.WARNING,
                message=f"{s.op} ({s.kind.value}) in {s.function}{via}: {times}",
                path=None, hint=s.fix, location=s.location,
            ))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: exact counts, full file paths."""
        return {
            "total": self.total,
            "include_cpu": self.include_cpu,
            "deep": self.deep,
            "cuda": self.cuda,
            "sites": [
                {"file": s.file, "line": s.line, "location": s.location, "function": s.function,
                 "op": s.op, "kind": s.kind.value, "count": s.count, "fix": s.fix, "via": s.via}
                for s in self.sites
            ],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def render(self, *, fmt: str = "text") -> str:
        """The report as ``text``, ``markdown`` or ``json`` text."""
        from torchscope._render_syncs import render_sync_report

        return render_sync_report(self, fmt=fmt)

    def __str__(self) -> str:
        return self.render(fmt="text")

    def __repr__(self) -> str:
        return f"<SyncReport: {self.total} synchronizations at {len(self._sites)} sites>"

    def __rich__(self) -> Any:
        from torchscope._render_syncs import rich_sync_report

        return rich_sync_report(self)

    # -- recording ---------------------------------------------------------------------------
    def __enter__(self) -> SyncReport:
        self._depth += 1
        if self._depth > 1:
            return self
        stack = contextlib.ExitStack()
        try:
            if self.cuda:
                stack.enter_context(self._cuda_debug())
            stack.enter_context(_FunctionMode(self))
            if self.deep:
                stack.enter_context(_DispatchMode(self))
        except BaseException:
            self._depth -= 1
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def _category(self, code: types.CodeType) -> int:
        cat = self._codes.get(code)
        if cat is None:
            cat = self._codes[code] = _category(code.co_filename)
        return cat

    def _on_host(self, op: str, tensor: Any, frame: types.FrameType | None) -> bool:
        if not isinstance(tensor, Tensor):
            return False
        if not self.include_cpu and tensor.device.type in ("cpu", "meta"):
            return True  # reading a host tensor never waits for the device
        entry = self._host.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return False
        if entry[1] is None:
            return True  # a copy made by .cpu(): it lives on the host, reading it is free
        # On CPU .cpu() returns the tensor itself: only the next read on that same line
        # (x.cpu().numpy()) is reading the copy.
        if (op not in _HOST_COPIES and frame is not None
                and entry[1] == (frame.f_code, frame.f_lineno)):
            del self._host[id(tensor)]
            return True
        return False

    def _on_call(self, hit: _Hit, func: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], frame: types.FrameType | None) -> Any:
        op, kind, tensor = hit
        site = None
        if not self._on_host(op, tensor, frame):
            site = self._record(op, kind, frame, tensor)
        self._quiet += 1  # the dispatch level must not count this call again
        try:
            result = func(*args, **kwargs)
        finally:
            self._quiet -= 1
        if op in _HOST_COPIES and isinstance(result, Tensor):
            if len(self._host) > 1024:
                self._host = {k: e for k, e in self._host.items() if e[0]() is not None}
            if result is not tensor:
                self._host[id(result)] = (weakref.ref(result), None)
            elif site is not None and frame is not None:
                self._host[id(result)] = (weakref.ref(result), (frame.f_code, frame.f_lineno))
        return result

    def _record(self, op: str, kind: SyncKind, frame: types.FrameType | None,
                tensor: Any) -> types.FrameType | None:
        """Count one synchronization at the first user frame, unless it is a known false
        positive or torchscope's own doing; raise SyncError instead when strict.

        Returns the frame of the site that was counted, or ``None``.
        """
        inner: types.FrameType | None = None  # innermost torch frame that is not plumbing
        site: types.FrameType | None = None
        first = True
        while frame is not None:
            cat = self._category(frame.f_code)
            if cat == _DETECTOR or cat == _PLUMB:
                frame = frame.f_back
                continue
            if cat == _OWN and first:
                return None  # torchscope's own machinery read it, not the user's code
            first = False
            if cat == _USER:
                site = frame
                break
            if cat == _TORCH and inner is None:
                inner = frame
            frame = frame.f_back
        if inner is not None:
            path = inner.f_code.co_filename
            if (kind is SyncKind.SCALAR_READ and path.startswith(_OPTIM_DIR)
                    and not path.startswith(_OPTIM_REAL)):
                return None  # optimizer step counter: a host tensor (known false positive)
        where = site if site is not None else inner
        if where is None:
            return None
        file, line = where.f_code.co_filename, where.f_lineno
        if (op == '.to("cpu")' and isinstance(tensor, Tensor) and tensor.device.type == "cpu"
                and "cpu" not in linecache.getline(file, line).lower()):
            return None  # .to(device) where device only happens to be the CPU: not a device sync
        via = None
        if inner is not None and site is not None:
            via = (f"{os.path.relpath(inner.f_code.co_filename, _TORCH_PARENT)}:{inner.f_lineno}"
                   f" {inner.f_code.co_name}")
        function = getattr(where.f_code, "co_qualname", where.f_code.co_name)
        if self._strict:
            raise SyncError(
                f"host-device synchronization inside no_syncs(): {op} ({kind.value}) at "
                f"{_short_path(file)}:{line} in {function}"
                + (f" (inside {via})" if via else "")
                + f"; fix: {_FIXES.get(op, _FIX_SCALAR)}"
            )
        key = (file, line, op)
        row = self._sites.get(key)
        if row is None:
            self._sites[key] = [1, len(self._sites), file, line, function, op, kind, via]
        else:
            row[0] += 1
        return where

    @contextlib.contextmanager
    def _cuda_debug(self) -> Iterator[None]:  # pragma: no cover - needs a CUDA device
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as log:
            warnings.filterwarnings("always", message=".*synchronizing CUDA operation.*")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        for w in log:
            if "synchronizing CUDA operation" in str(w.message):
                key = (w.filename, w.lineno, "synchronizing CUDA op")
                row = self._sites.get(key)
                if row is None:
                    self._sites[key] = [1, len(self._sites), w.filename, w.lineno, "?",
                                        "synchronizing CUDA op", SyncKind.CUDA, None]
                else:
                    row[0] += 1
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


class _FunctionMode(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Sees public torch calls; one dict lookup for the calls that never synchronize."""

    def __init__(self, report: SyncReport) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._report = report

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        try:
            rule = _FUNCTION_RULES.get(func)
        except TypeError:  # an unhashable callable: never one of ours
            rule = None
        if rule is None:
            return func(*args, **kwargs)
        try:
            hit = rule(args, kwargs)
        except Exception:  # odd arguments: let torch raise its own error
            hit = None
        if hit is None:
            return func(*args, **kwargs)
        report = self._report
        if report._quiet:
            return func(*args, **kwargs)
        if report.cuda:  # pragma: no cover - needs a CUDA device
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(0)  # this one is reported here, not as a warning
            try:
                return report._on_call(hit, func, args, kwargs, sys._getframe(1))
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        return report._on_call(hit, func, args, kwargs, sys._getframe(1))


class _DispatchMode(TorchDispatchMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Sees every ATen op, also those torch's C++ code calls (``deep=True``)."""

    def __init__(self, report: SyncReport) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._report = report

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        rule = _DISPATCH_RULES.get(func)
        if rule is None or self._report._quiet:
            return func(*args, **kwargs)
        try:
            hit = rule(args, kwargs)
        except Exception:  # odd arguments: let torch raise its own error
            hit = None
        if hit is None:
            return func(*args, **kwargs)
        return self._report._on_call(hit, func, args, kwargs, sys._getframe(1))


def detect_syncs(*, include_cpu: bool | None = None, deep: bool = False,
                 cuda: bool | None = None) -> SyncReport:
    """Record the host-device synchronizations of a block of code, by line.

    Args:
        include_cpu: count operations on CPU tensors, which synchronize only on an accelerator
            (default: ``True`` without CUDA, so a CPU run reports what would stall a GPU;
            ``False`` with CUDA, where reading a CPU tensor costs no synchronization).
        deep: also watch ATen ops at the dispatch level, which sees the scalar reads torch's
            C++ code makes (``torch.zeros(n)`` with a tensor ``n``); slower (every op, backward
            included, goes through Python).
        cuda: use ``torch.cuda.set_sync_debug_mode("warn")`` as well (default: when CUDA is
            available); its warnings become sites of kind ``cuda sync``.

    Returns:
        A :class:`SyncReport`: use it as a context manager (``with detect_syncs() as report:``);
        it fills while the block runs and can be entered again to record more.

    Raises:
        SyncError: never; see :func:`no_syncs` to fail on the first synchronization.

    >>> import torch, torchscope
    >>> with torchscope.detect_syncs() as report:
    ...     for step in range(3):
    ...         value = float(torch.ones(2).sum())
    >>> report.sites[0].count
    3
    """
    return SyncReport(include_cpu=include_cpu, deep=deep, cuda=cuda)


class _NoSyncs(contextlib.ContextDecorator):
    def __init__(self, include_cpu: bool | None, deep: bool) -> None:
        self._args = (include_cpu, deep)
        self._reports: list[SyncReport] = []

    def __enter__(self) -> None:
        include_cpu, deep = self._args
        report = SyncReport(include_cpu=include_cpu, deep=deep, cuda=False, strict=True)
        report.__enter__()
        self._reports.append(report)

    def __exit__(self, *exc: object) -> None:
        self._reports.pop().__exit__(*exc)


def no_syncs(*, include_cpu: bool | None = None, deep: bool = False) -> _NoSyncs:
    """Fail at the first host-device synchronization (a context manager or decorator).

    Args:
        include_cpu: count operations on CPU tensors (default: ``True`` without CUDA).
        deep: also watch ATen ops at the dispatch level (see :func:`detect_syncs`).

    Returns:
        A context manager, also usable as a decorator.

    Raises:
        SyncError: at the first synchronization inside the block, naming the operation, the
            ``file:line`` and the fix; the operation does not run.

    >>> import torch, torchscope
    >>> with torchscope.no_syncs():
    ...     y = torch.ones(3) * 2          # fine: stays on the device
    >>> try:
    ...     with torchscope.no_syncs():
    ...         torch.ones(3).sum().item()
    ... except torchscope.SyncError as err:
    ...     print(str(err).split(" at ")[0])
    host-device synchronization inside no_syncs(): .item() (scalar read)
    """
    return _NoSyncs(include_cpu, deep)
