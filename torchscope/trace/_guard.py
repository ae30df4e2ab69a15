"""The state guard and the model copies used by meta and fake tracing (for
:mod:`torchscope.trace`, which re-exports :func:`state_guard` and :func:`meta_copy`)."""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.utils.hooks import RemovableHandle

__all__ = ["meta_copy", "state_guard"]

# ---------------------------------------------------------------------------------------------
# module tree
from torchscope._torch import is_lazy


def _tree(model: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """Every module once, pre-order, with the path ``named_modules()`` gives it."""
    modules: list[nn.Module] = []
    paths: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        path, mod = stack.pop()
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        modules.append(mod)
        paths.append(path)
        children = mod._modules
        if children:
            prefix = path + "." if path else ""
            stack.extend((prefix + name, child)
                         for name, child in reversed(children.items()) if child is not None)
    return modules, paths




# ---------------------------------------------------------------------------------------------
# the state guard

_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
    "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks", "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called", "_global_forward_pre_hooks",
    "_global_backward_hooks", "_global_backward_pre_hooks", "_global_is_full_backward_hook",
    "_global_buffer_registration_hooks", "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
)


def _is_data_tensor(t: torch.Tensor) -> bool:
    """True for a tensor holding real data (not meta, fake or uninitialized)."""
    if t.is_meta or is_lazy(t):
        return False
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # no import: it is slow to load
    return fake is None or not isinstance(t, fake.FakeTensor)


class _Guard:
    """Saves what a forward may change and restores it (see :func:`state_guard`)."""

    __slots__ = ("buffers", "cuda_rng", "flags", "global_dicts", "grad", "hook_dicts", "hook_id",
                 "modules", "py_rng", "rng", "tensor_dicts", "tensor_marks")

    def __init__(self, modules: list[nn.Module], *, clone_buffers: bool) -> None:
        self.modules = modules
        self.hook_id = RemovableHandle.next_id
        self.flags = list(map(_TRAINING, modules))
        self.grad = torch.is_grad_enabled()
        self.rng = torch.get_rng_state()
        self.cuda_rng = (torch.cuda.get_rng_state_all()
                         if torch.cuda.is_available() and _cuda_initialized() else None)
        self.py_rng = random.getstate()
        # (dict, shallow copy) of every non-empty hook dict, to put back hooks a forward removed
        self.hook_dicts: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        # (tensor dict, shallow copy) to undo reassigned, added or deleted parameters/buffers
        self.tensor_dicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        dicts: list[dict[str, Any]] = []  # the tensor dicts, copied below in one pass
        # (buffer, clone) to undo in-place updates (BatchNorm running statistics)
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        hook_dicts = self.hook_dicts
        tensor_dicts = self.tensor_dicts
        for m in modules:
            md = m.__dict__  # (item lookups: faster than attribute reads on a Module)
            try:
                hooked = (md["_forward_hooks"] or md["_forward_pre_hooks"]
                          or md["_backward_hooks"] or md["_backward_pre_hooks"]
                          or md["_state_dict_hooks"] or md["_state_dict_pre_hooks"]
                          or md["_load_state_dict_pre_hooks"]
                          or md["_load_state_dict_post_hooks"])
                params = md["_parameters"]
                bufs = md["_buffers"]
            except KeyError:  # a module missing some of torch's attributes (an old pickle)
                hooked = True
                params = getattr(m, "_parameters", None)
                bufs = getattr(m, "_buffers", None)
            if hooked:
                for name in _HOOK_DICTS:
                    d = md.get(name)
                    if d:
                        hook_dicts.append((d, dict(d)))
            if params:
                dicts.append(params)
            if bufs:
                dicts.append(bufs)
                if clone_buffers:
                    for b in bufs.values():
                        if b is not None and _is_data_tensor(b):
                            self.buffers.append((b, b.detach().clone()))
        tensor_dicts.extend(zip(dicts, map(dict, dicts)))
        self.tensor_marks = _tensor_marks(dicts)
        self.global_dicts = [(d, dict(d)) for d in _global_dicts() if d]

    def restore(self, *, own_hooks: int = 0) -> None:
        """Undo what happened since entry; ``own_hooks`` handles were registered (and removed)
        by torchscope itself in between, so they need no search."""
        start = self.hook_id
        if RemovableHandle.next_id > start + own_hooks:
            # someone registered hooks: drop every hook added since entry, wherever it is
            for m in self.modules:
                md = m.__dict__
                for name in _HOOK_DICTS:
                    d = md.get(name)
                    if d:
                        for key in [k for k in d if isinstance(k, int) and k >= start]:
                            del d[key]
            for d in _global_dicts():
                if d:
                    for key in [k for k in d if isinstance(k, int) and k >= start]:
                        del d[key]
        for d, saved in (*self.hook_dicts, *self.global_dicts):
            if len(d) != len(saved):  # a hook was removed: put the dict back as it was
                d.clear()
                d.update(saved)
        # parameters and buffers: the same objects under the same names (checked for all dicts
        # at once first: the common case, nothing changed)
        tensor_dicts = self.tensor_dicts
        if _tensor_marks([d for d, _ in tensor_dicts]) != self.tensor_marks:
            for current, saved in tensor_dicts:
                if not _same_items(current, saved):
                    current.clear()
                    current.update(saved)
        if self.buffers:  # ... with the same values (always copied back: batch_norm updates
            # its running statistics in place without bumping the tensor's version counter)
            with torch.no_grad():
                for b, saved_value in self.buffers:
                    b.copy_(saved_value)
        if list(map(_TRAINING, self.modules)) != self.flags:
            for m, flag in zip(self.modules, self.flags):
                if m.training is not flag:
                    m.training = flag
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        random.setstate(self.py_rng)
        torch.set_grad_enabled(self.grad)


_TRAINING = attrgetter("training")


def _tensor_marks(dicts: list[dict[str, Any]]) -> tuple[list[int], list[str], list[int]]:
    """The sizes, keys and value ids of ``dicts``, flattened (C-level passes). Equal marks
    mean the same objects under the same names in every dict, as long as the values of the
    first marks are kept alive (the guard's copies keep them): no other object can take their
    ids."""
    return (list(map(len, dicts)), list(chain.from_iterable(dicts)),
            list(map(id, chain.from_iterable(map(dict.values, dicts)))))


def _same_items(current: dict[str, Any], saved: dict[str, Any]) -> bool:
    if len(current) != len(saved):
        return False
    for (k1, v1), (k2, v2) in zip(current.items(), saved.items()):
        if k1 != k2 or v1 is not v2:
            return False
    return True


def _cuda_initialized() -> bool:
    initialized: Callable[[], bool] = torch.cuda.is_initialized
    return initialized()


def _global_dicts() -> list[dict[Any, Any]]:
    return [getattr(_module_mod, name) for name in _GLOBAL_HOOK_DICTS
            if isinstance(getattr(_module_mod, name, None), dict)]


@contextmanager
def state_guard(model: nn.Module) -> Iterator[None]:
    """Run a block with no lasting side effect on ``model``, also when the block raises.

    On exit: every hook added since entry is removed (each module's hook dicts and the global
    ones in ``torch.nn.modules.module``) and every hook removed is put back; every module's
    ``training`` flag is restored (mixed trees included); parameters and buffers are the same
    objects under the same names; buffers updated in place (BatchNorm running statistics in
    train mode) get their values back, bit for bit, from a copy taken on entry (buffers are
    small; parameters are not copied: a forward that writes into its own parameters is not
    undone); the global torch (and CUDA, if initialized) RNG state, Python's ``random`` state
    and grad mode are restored. The guard never moves the model and keeps no reference to it
    after exit.

    Args:
        model: the module whose state to protect.

    Returns:
        A context manager.

    >>> import torch
    >>> from torch import nn
    >>> bn = nn.BatchNorm1d(3).train()
    >>> with state_guard(bn):
    ...     _ = bn(torch.randn(4, 3))
    >>> int(bn.num_batches_tracked)
    0
    """
    modules, _ = _tree(model)
    guard = _Guard(modules, clone_buffers=True)
    try:
        yield
    finally:
        guard.restore()


# ---------------------------------------------------------------------------------------------
# copies for meta and fake mode


def _copy_with(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor], *,
               lazy_device: torch.device | None = None) -> nn.Module:
    """``deepcopy(model)`` with each parameter, buffer and tensor attribute replaced by
    ``convert(tensor)`` (once per tensor object, so ties survive); uninitialized (lazy) tensors
    become fresh uninitialized ones of the same kind (on ``lazy_device`` when given)."""
    memo: dict[int, Any] = {}

    def fresh_lazy(t: torch.Tensor) -> torch.Tensor:
        kind: Any = type(t)
        new: torch.Tensor = kind(requires_grad=t.requires_grad, device=lazy_device or t.device,
                                 dtype=t.dtype)
        return new

    for mod in model.modules():
        for p in mod._parameters.values():
            if p is None or id(p) in memo:
                continue
            if is_lazy(p):
                memo[id(p)] = fresh_lazy(p)
            else:
                new = nn.Parameter(convert(p.detach()), requires_grad=p.requires_grad)
                if p.__dict__:
                    new.__dict__.update(p.__dict__)
                memo[id(p)] = new
        for b in mod._buffers.values():
            if b is None or id(b) in memo:
                continue
            memo[id(b)] = fresh_lazy(b) if is_lazy(b) else convert(b)
        for value in mod.__dict__.values():  # plain tensor attributes (constants)
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = convert(value)
    return copy.deepcopy(model, memo)


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters, buffers and tensor attributes live on ``meta``.

    Ties survive: one tensor object under several names stays one object, and distinct tensors
    over the same storage (views) share one meta storage, with their offsets and strides. Lazy
    modules keep uninitialized parameters/buffers (fresh ones, on ``meta``), so a forward of the
    copy infers their shapes without touching ``model``. No parameter memory is allocated and
    ``model`` is not modified.

    Args:
        model: the module to copy (any device; lazy modules allowed).

    Returns:
        The meta copy.

    Raises:
        TypeError: ``copy.deepcopy`` cannot copy some attribute of the model.

    >>> from torchscope.examples import SharedMLP
    >>> copy = meta_copy(SharedMLP())
    >>> copy[2].weight.device.type, copy[2] is copy[4]
    ('meta', True)
    """
    storages: dict[Any, torch.UntypedStorage] = {}

    def to_meta(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            key: Any = (t.device, ptr) if ptr else ("id", id(storage) if t.is_meta else id(t))
            meta_storage = storages.get(key)
            if meta_storage is None:
                untyped_storage: Any = torch.UntypedStorage
                meta_storage = untyped_storage(storage.nbytes(), device="meta")
                storages[key] = meta_storage
            out = torch.empty(0, dtype=t.dtype, device="meta")
            out.set_(meta_storage, t.storage_offset(), t.size(), t.stride())
            return out
        except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses
            return torch.empty_like(t, device="meta")

    return _copy_with(model, to_meta, lazy_device=torch.device("meta"))


def _fake_copy(model: nn.Module, fake_mode: Any) -> nn.Module:
    """A copy over fake tensors. Lazy layers of the copy get a pre-hook that runs after their
    own materialization: materializing under FakeTensorMode leaves real-device Parameters on
    meta, so they are replaced by fresh tensors on the placeholder's device (the fake mode
    turns those into fake tensors)."""
    copied = _copy_with(model, fake_mode.from_tensor)
    for m in copied.modules():
        devices = {k: t.device for k, t in (*m._parameters.items(), *m._buffers.items())
                   if t is not None and is_lazy(t)}
        if devices:
            m.register_forward_pre_hook(_refake_hook(devices))
    return copied


def _refake_hook(devices: dict[str, torch.device]) -> Callable[[nn.Module, Any], None]:
    def fresh(t: torch.Tensor | None, name: str) -> torch.Tensor | None:
        if name not in devices or t is None or is_lazy(t) or not t.is_meta:
            return None
        return torch.empty(t.shape, dtype=t.dtype, device=devices[name])

    def hook(module: nn.Module, args: Any) -> None:
        for k, p in list(module._parameters.items()):
            new = fresh(p, k)
            if new is not None and p is not None:
                module._parameters[k] = nn.Parameter(new, requires_grad=p.requires_grad)
        for k, b in list(module._buffers.items()):
            new = fresh(b, k)
            if new is not None:
                module._buffers[k] = new

    return hook


def _shallow_copy(model: nn.Module) -> nn.Module:
    """A copy sharing every initialized tensor (no memory); lazy tensors are fresh."""
    return _copy_with(model, lambda t: t)
