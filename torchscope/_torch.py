"""Torch helpers shared by every layer: names of dtypes and devices, lazy and DTensor detection,
unwrapping of ``torch.compile``/DDP/FSDP, the one dtype parser, and pausing the collector.

Nothing here imports a torchscope module above the ground layer.

>>> dtype_name(torch.bfloat16), parse_dtype("bf16")
('bfloat16', torch.bfloat16)
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined,unused-ignore]

from torchscope.errors import ArgumentError, InputSpecError

__all__ = [
    "plain_reads",
    "require_module",
    "DTYPE_ALIASES",
    "device_name",
    "dtensor_type",
    "dtype_name",
    "fsdp_module_type",
    "fsdp_resharded",
    "gc_paused",
    "is_lazy",
    "named_modules",
    "parse_dtype",
    "model_depth",
    "recursion_room",
    "room_for_depth",
    "unwrap_compiled",
    "unwrap_wrappers",
]


def plain_reads() -> Any:
    """A context in which reading tensors' metadata (dtype, shape, storage) skips tensor
    subclasses' ``__torch_function__``: a subclass whose override raises, logs or counts is
    inspected like the plain tensor it is. Only for walks that read; forwards keep it.

    >>> class Loud(torch.Tensor):
    ...     @classmethod
    ...     def __torch_function__(cls, *args, **kwargs):
    ...         raise RuntimeError("no")
    >>> with plain_reads():
    ...     torch.zeros(2).as_subclass(Loud).dtype
    torch.float32
    """
    return torch._C.DisableTorchFunctionSubclass()


def require_module(model: object, where: str) -> nn.Module:
    """``model`` itself, or an :class:`~torchscope.errors.ArgumentError` naming what was passed.

    >>> require_module(None, "meta_copy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    torchscope.errors.ArgumentError: meta_copy: model = NoneType is not a torch.nn.Module; ...
    """
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            f"{where}: model = {type(model).__name__} is not a torch.nn.Module; pass the model "
            "itself"
        )
    return model


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a walk over a model.

    Allocating many small records while walking otherwise triggers full collections over the
    model's many objects, which makes walks quadratic in the model's size. Reference counting
    still frees everything as usual; the previous state is restored on exit.

    >>> with gc_paused():
    ...     pass
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def named_modules(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """``model.named_modules()`` without recursion: the same pre-order paths, each module once.

    Torch's own generator recurses once per level (2,000 nested blocks raise RecursionError);
    this one keeps an explicit stack, so depth costs nothing and a module graph with a cycle
    (a child holding its parent) ends, as every module is visited once.

    >>> [p for p, _ in named_modules(torch.nn.Sequential(torch.nn.Linear(1, 1)))]
    ['', '0']
    """
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [(prefix, model)]
    while stack:
        path, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        yield path, module
        children = module._modules
        if children:
            base = path + "." if path else ""
            for name, child in reversed(list(children.items())):
                if child is not None and id(child) not in seen:
                    stack.append((base + name, child))


#: Deepest module nesting :func:`recursion_room` makes room for (deeper, CPython's C stack runs
#: out: 10,000 nested Sequential calls crash the interpreter with the limit raised).
MAX_ROOM_DEPTH = 4000


@contextmanager
def recursion_room(depth: int) -> Iterator[None]:
    """Raise the recursion limit, while the block runs, so that a forward or a deepcopy through
    ``depth`` nested modules fits (each level takes about ten Python frames).

    Torch runs nested modules recursively: 2,000 levels exceed the default limit of 1,000
    frames although the C stack has room for them. Up to :data:`MAX_ROOM_DEPTH` levels; the
    limit is only ever raised, and restored on exit.

    >>> import sys
    >>> before = sys.getrecursionlimit()
    >>> with recursion_room(2000):
    ...     sys.getrecursionlimit() > 20000
    True
    >>> sys.getrecursionlimit() == before
    True
    """
    before = sys.getrecursionlimit()
    need = 1000 + 12 * min(max(int(depth), 0), MAX_ROOM_DEPTH)
    if need > before:
        sys.setrecursionlimit(need)
    try:
        yield
    finally:
        if need > before:
            sys.setrecursionlimit(before)


def model_depth(model: nn.Module) -> int:
    """How many levels of submodules ``model`` nests (0: no children), found without
    recursion; each module is visited once.

    >>> model_depth(torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(1, 1))))
    2
    """
    deepest = 0
    seen: set[int] = set()
    stack: list[tuple[nn.Module, int]] = [(model, 0)]
    while stack:
        module, depth = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        deepest = max(deepest, depth)
        children = module._modules
        if children:
            stack.extend((child, depth + 1) for child in children.values()
                         if child is not None and id(child) not in seen)
    return deepest


_P = ParamSpec("_P")
_R = TypeVar("_R")


def room_for_depth(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a public function that takes a model, so that torch's recursive calls
    (``named_parameters()``, ``state_dict()``, ``deepcopy``, nested forwards) fit for models
    nested up to :data:`MAX_ROOM_DEPTH` levels (see :func:`recursion_room`). The model is the
    first ``nn.Module`` argument; shallow models (under 50 levels) run as they are.

    >>> @room_for_depth
    ... def count(model):
    ...     return len(list(model.parameters()))
    >>> count(torch.nn.Linear(1, 1))
    2
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        model = next((a for a in (*args, *kwargs.values()) if isinstance(a, nn.Module)), None)
        depth = model_depth(model) if model is not None else 0
        if depth < 50:
            return fn(*args, **kwargs)
        with recursion_room(depth):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------
# names

_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (cached: called once per tensor).

    >>> dtype_name(torch.int64)
    'int64'
    """
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def device_name(device: torch.device) -> str:
    """``torch.device("cuda", 0)`` -> ``"cuda:0"`` (cached).

    >>> device_name(torch.device("cpu"))
    'cpu'
    """
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


#: Short names accepted wherever a dtype is parsed (CLI ``--dtype``, ``dtypes=``, policies).
DTYPE_ALIASES: dict[str, torch.dtype] = {
    "float": torch.float32, "fp32": torch.float32, "double": torch.float64,
    "fp64": torch.float64, "half": torch.float16, "fp16": torch.float16,
    "bf16": torch.bfloat16, "long": torch.int64, "int": torch.int32, "short": torch.int16,
    "bool": torch.bool, "uint8": torch.uint8, "byte": torch.uint8,
}


def parse_dtype(value: object, *, where: str = "dtype") -> torch.dtype:
    """The one dtype parser: a ``torch.dtype``, a torch name (``"float16"``,
    ``"torch.bfloat16"``, ``"int64"``) or a short name (``"bf16"``, ``"fp16"``, ``"half"``,
    ``"long"``).

    Args:
        value: what the user gave.
        where: how the user gave it, for the error (``"--dtype"``, ``"dtypes[0]"``).

    Raises:
        InputSpecError: not a dtype.

    >>> parse_dtype("long"), parse_dtype("torch.float16")
    (torch.int64, torch.float16)
    """
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and len(value) <= 64:
        name = value.strip().lower().removeprefix("torch.")
        dtype = DTYPE_ALIASES.get(name)
        if dtype is None:
            candidate = getattr(torch, name, None)
            if isinstance(candidate, torch.dtype):
                dtype = candidate
        if dtype is not None:
            return dtype
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise InputSpecError(
        f"{where} = {shown} is not a dtype; use a torch dtype or a name such as "
        "'float32', 'bf16', 'fp16', 'long', 'int32' or 'bool'"
    )


# ---------------------------------------------------------------------------------------------
# tensors


def is_lazy(t: object) -> bool:
    """Whether ``t`` is an uninitialized lazy parameter or buffer (no shape yet).

    >>> is_lazy(torch.nn.LazyLinear(3).weight), is_lazy(torch.zeros(1))
    (True, False)
    """
    return isinstance(t, UninitializedTensorMixin)


def dtensor_type() -> type | None:
    """``DTensor`` when torch.distributed.tensor was imported (no DTensor exists otherwise).

    >>> dtensor_type() is None or dtensor_type().__name__ == "DTensor"
    True
    """
    module = sys.modules.get("torch.distributed.tensor")
    cls = getattr(module, "DTensor", None) if module is not None else None
    return cls if isinstance(cls, type) else None


# ---------------------------------------------------------------------------------------------
# wrappers

def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module a ``torch.compile`` wrapper holds (names without ``_orig_mod.``), and whether
    it was one.

    >>> unwrap_compiled(torch.nn.Linear(2, 2))[1]
    False
    """
    compiled = False
    while type(model).__name__ == "OptimizedModule" and isinstance(
        getattr(model, "_orig_mod", None), nn.Module
    ):
        orig = model._orig_mod
        assert isinstance(orig, nn.Module)
        model = orig
        compiled = True
    return model, compiled


# FSDP helpers (cheap: nothing is imported that the model did not import already)


def fsdp_module_type() -> type | None:
    """FSDP2's ``FSDPModule`` class, or ``None`` when FSDP was never imported (so no module
    can be one).

    >>> fsdp_module_type() is None or fsdp_module_type().__name__ == "FSDPModule"
    True
    """
    module = sys.modules.get("torch.distributed.fsdp")
    cls = getattr(module, "FSDPModule", None) if module is not None else None
    return cls if isinstance(cls, type) else None


def _sharded_before(module: nn.Module) -> bool:
    """Whether an FSDP unit's parameters are sharded now (private state, guarded; when it
    cannot be read, assume sharded: the normal state between steps)."""
    try:
        state = module._get_fsdp_state()  # type: ignore[operator]
        return all(bool(g.is_sharded) for g in state._fsdp_param_groups)
    except Exception:
        return True


@contextmanager
def fsdp_resharded(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put every FSDP unit among ``modules`` that was sharded on entry back to sharded on exit.

    FSDP2 keeps the root unit's parameters unsharded after a forward (it expects a backward);
    an inspection forward must leave the model as it found it, or the next training step mixes
    plain tensors and DTensors. Does nothing when FSDP is not in use.

    >>> with fsdp_resharded([torch.nn.Linear(2, 2)]):
    ...     pass
    """
    fsdp = fsdp_module_type()
    units = [m for m in modules if fsdp is not None and isinstance(m, fsdp)]
    sharded = [m for m in units if _sharded_before(m)]
    try:
        yield
    finally:
        for m in sharded:
            m.reshard()  # type: ignore[operator]


def unwrap_wrappers(model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """Strip ``torch.compile`` (``_orig_mod.``) and DistributedDataParallel / DataParallel
    (``module.``) wrappers around the root, with a note for each.

    FSDP2 keeps the model's own names (it swaps the class, not the module), so it needs no
    unwrapping.

    >>> inner = torch.nn.Linear(2, 2)
    >>> unwrap_wrappers(torch.nn.DataParallel(inner))[0] is inner
    True
    """
    notes: list[str] = []
    while True:
        cls_name = type(model).__name__
        inner = getattr(model, "_orig_mod", None) if cls_name == "OptimizedModule" else None
        if inner is None and cls_name in ("DistributedDataParallel", "DataParallel"):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model, tuple(notes)
        if cls_name == "OptimizedModule":  # the wording of inspect.summarize's note
            notes.append("compiled with torch.compile: names are shown without the _orig_mod. "
                         "prefix")
        else:
            notes.append(f"wrapped by {cls_name}: names are shown without the module. prefix")
        model = inner
