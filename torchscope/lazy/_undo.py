"""Undo machinery for :func:`torchscope.materialize`: the lazy modules' state to roll back when
the dry forward raises, the side effects of a dry forward to put back, and where it raised.

>>> import torch
>>> rollback = _Rollback([torch.nn.LazyLinear(2)])
>>> len(rollback.tensors)
2
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.nn.parameter import is_lazy

from torchscope.records import Spec
from torchscope.trace import spec_of

__all__: list[str] = []


class _Rollback:
    """Everything materialization changes on the lazy modules, to undo it when the forward
    raises: each lazy module's class and ``__dict__`` (attributes such as ``in_features``, and
    the contents of its dicts: hooks, parameters, buffers) and each placeholder's class and
    data."""

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self.modules: list[tuple[nn.Module, type, dict[str, Any], list[tuple[dict[Any, Any],
                                                                               dict[Any, Any]]]]]
        self.modules = []
        self.tensors: list[tuple[torch.Tensor, type, torch.Tensor]] = []
        for m in modules:
            state = dict(m.__dict__)
            dicts = [(v, dict(v)) for v in state.values() if isinstance(v, dict)]
            self.modules.append((m, type(m), state, dicts))
            for group in (m._parameters, m._buffers):
                for t in group.values():
                    if t is not None and is_lazy(t):
                        self.tensors.append((t, type(t), t.data))

    def undo(self) -> None:
        for t, cls, data in self.tensors:
            if type(t) is not cls:
                t.data = data
                t.__class__ = cls
        for m, cls, state, dicts in self.modules:
            for d, saved in dicts:
                if not _same_items(d, saved):
                    d.clear()
                    d.update(saved)
            md = m.__dict__
            for key in [k for k in md if k not in state]:
                del md[key]
            for key, value in state.items():
                if md.get(key, _MISSING) is not value:
                    md[key] = value
            if type(m) is not cls:
                m.__class__ = cls


_MISSING = object()


def _same_items(current: dict[Any, Any], saved: dict[Any, Any]) -> bool:
    """Same keys, in order, holding the very same objects (``==`` on tensors would compare
    values, and raise on placeholders)."""
    return len(current) == len(saved) and all(
        k1 == k2 and v1 is v2 for (k1, v1), (k2, v2) in zip(current.items(), saved.items()))


class _SideEffects:
    """What a dry forward may change besides the placeholders: training flags, grad mode,
    values of initialized buffers (BatchNorm running statistics), values of the buffers that
    materialize (reset to their initial values), and — when the forward raises — the RNG."""

    def __init__(self, model: nn.Module, lazy_modules: Sequence[nn.Module]) -> None:
        self.modules = list(model.modules())
        self.flags = [m.training for m in self.modules]
        self.grad = torch.is_grad_enabled()
        self.rng = torch.get_rng_state()
        self.cuda_rng = (torch.cuda.get_rng_state_all()
                         if torch.cuda.is_available() and _cuda_initialized() else None)
        self.py_rng = random.getstate()
        # (buffer, copy): BatchNorm's native kernel updates running statistics in place
        # without bumping ``_version``, so every buffer is copied back, changed or not
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for m in self.modules:
            for b in m._buffers.values():
                if b is not None and not is_lazy(b) and not b.is_meta:
                    self.buffers.append((b, b.detach().clone()))
        # buffers that materialize: their values right after materializing (a pre-hook that
        # runs after the module's own materializing pre-hook records them)
        self.fresh: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handles = [m.register_forward_pre_hook(self._fresh_hook(m)) for m in lazy_modules
                        if any(b is not None and is_lazy(b) for b in m._buffers.values())]

    def _fresh_hook(self, module: nn.Module) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        lazy = [k for k, b in module._buffers.items() if b is not None and is_lazy(b)]
        done = [False]

        def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
            if done[0]:
                return
            for k in lazy:
                b = mod._buffers.get(k)
                if b is not None and not is_lazy(b):
                    self.fresh.append((b, b.detach().clone()))
                    done[0] = True

        return hook

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()

    def restore(self, *, rng: bool) -> None:
        self.remove_hooks()
        with torch.no_grad():
            for b, value in self.buffers:
                b.copy_(value)
            for b, value in self.fresh:
                if b.shape == value.shape:
                    b.copy_(value)
        for m, flag in zip(self.modules, self.flags):
            if m.training is not flag:
                m.training = flag
        torch.set_grad_enabled(self.grad)
        if rng:
            torch.set_rng_state(self.rng)
            if self.cuda_rng is not None:
                torch.cuda.set_rng_state_all(self.cuda_rng)
            random.setstate(self.py_rng)


def _cuda_initialized() -> bool:
    initialized: Callable[[], bool] = torch.cuda.is_initialized
    return initialized()


class _FailureSite:
    """Global hooks that note which module of the model raised first, with its input specs."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.where: tuple[str, tuple[Spec, ...]] | None = None
        self.outer = sys.exc_info()[1]

    def post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self.where is not None:
            return
        current = sys.exc_info()[1]
        if current is None or current is self.outer:
            return
        path = self.paths.get(id(module))
        if path is not None:
            self.where = (path, tuple(spec_of(a) for a in args))

    @contextmanager
    def watching(self) -> Iterator[None]:
        handle = _module_mod.register_module_forward_hook(self.post, always_call=True)
        try:
            yield
        finally:
            handle.remove()


