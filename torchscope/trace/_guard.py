"""The state guard and the model copies used by meta and fake tracing (for
:mod:`torchscope.trace`, which re-exports :func:`state_guard` and :func:`meta_copy`)."""

from __future__ import annotations

import bisect
import collections
import copy
import ctypes
import mmap
import random
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import accumulate, chain, repeat
from operator import add, attrgetter, is_, itemgetter, methodcaller
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.hooks import RemovableHandle

__all__ = ["copy_to_meta", "meta_copy", "own_copy", "state_guard"]

from torchscope._torch import (
    is_lazy,
    named_modules,
    plain_reads,
    require_module,
    room_for_depth,
)
from torchscope.errors import InputSpecError
from torchscope.trace._inputs import tensors_in

# ---------------------------------------------------------------------------------------------
# module tree


def module_tree(model: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """Every module once, pre-order, and the path ``named_modules()`` gives it.

    >>> module_tree(torch.nn.Sequential(torch.nn.Linear(1, 1)))[1]
    ['', '0']
    """
    pairs = list(named_modules(model))
    return [m for _, m in pairs], [p for p, _ in pairs]




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




# ---------------------------------------------------------------------------------------------
# global state: modes, defaults, flags, RNGs


def _function_stack() -> list[Any]:
    return [torch._C._get_function_stack_at(i)
            for i in range(torch._C._len_torch_function_stack())]


def _dispatch_stack() -> list[Any]:
    c: Any = torch._C
    return [c._get_dispatch_stack_at(i) for i in range(c._len_torch_dispatch_stack())]


def _set_function_stack(modes: list[Any]) -> None:
    for _ in range(torch._C._len_torch_function_stack()):
        torch._C._pop_torch_function_stack()
    for m in modes:
        torch._C._push_on_torch_function_stack(m)


def _set_dispatch_stack(modes: list[Any]) -> None:
    c: Any = torch._C
    for _ in range(c._len_torch_dispatch_stack()):
        c._pop_torch_dispatch_stack(None)
    for m in modes:
        c._push_on_torch_dispatch_stack(m)


_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


class _GlobalState:
    """Process-wide state a forward may change: mode stacks, default dtype and device, grad,
    determinism, anomaly and autocast flags (and autocast's nesting count, which decides when
    its weight cache is cleared), the saved-tensor hooks stack, matmul precision, thread count,
    the flags of :data:`_FLAGS` (forward grad, torch functions, backend switches, print
    options...) and the RNGs of torch (CPU and, when initialized, CUDA), Python and NumPy (when
    imported)."""

    __slots__ = ("anomaly", "autocast", "autocast_cache", "autocast_nesting", "cuda_rng",
                 "default_device", "determinism", "dispatch_stack", "dtype", "flags",
                 "function_stack", "grad", "matmul", "np_rng", "print_options", "py_rng", "rng",
                 "saved_hooks", "threads")

    def __init__(self) -> None:
        from torch.utils import _device

        self.function_stack = _function_stack()
        self.dispatch_stack = _dispatch_stack()
        ctx = getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None)
        self.default_device = (getattr(ctx, "device_context", None), _device.CURRENT_DEVICE)
        self.dtype = torch.get_default_dtype()
        self.grad = torch.is_grad_enabled()
        self.determinism = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
        self.anomaly = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
        self.autocast = _autocast_state()
        self.autocast_cache = torch.is_autocast_cache_enabled()
        self.matmul: str | None = _read(torch.get_float32_matmul_precision)
        if self.matmul is _UNREADABLE:  # the new per-backend settings are in use: in _flags
            self.matmul = None
        self.threads = torch.get_num_threads()
        self.autocast_nesting = _autocast_nesting()
        self.saved_hooks = _saved_hooks_stack()
        self.flags = [_read(get) for _, get, _ in _flags()]
        self.print_options = dict(vars(torch._tensor_str.PRINT_OPTS))
        self.rng = torch.get_rng_state()
        self.cuda_rng = (torch.cuda.get_rng_state_all()
                         if torch.cuda.is_available() and _cuda_initialized() else None)
        self.py_rng = random.getstate()
        np = sys.modules.get("numpy")
        self.np_rng = np.random.get_state() if np is not None else None

    def restore(self) -> None:
        """Put every part back; a part that cannot be put back (a torch setting that refuses
        its old value) does not stop the others: it is named in one warning at the end."""
        failed: list[str] = []
        for name, step in (
            ("mode stacks", self._stacks), ("default device and dtype", self._defaults),
            ("grad, determinism and anomaly flags", self._autograd),
            ("autocast", self._autocast), ("backend switches", self._switches),
            ("float32 matmul precision", self._matmul), ("backend switches", self._switches),
            ("thread count", self._threads), ("saved-tensor hooks", self._saved_hooks),
            ("print options", self._print_options), ("random number generators", self._rngs),
        ):
            try:
                step()
            except Exception as err:  # every other part is still put back
                failed.append(f"{name} ({type(err).__name__}: {str(err).strip()[:80]})")
        if failed:
            warnings.warn(
                "torchscope could not put back what the forward changed in: "
                + "; ".join(dict.fromkeys(failed)), RuntimeWarning, stacklevel=4)

    def _stacks(self) -> None:
        if _dispatch_stack() != self.dispatch_stack:
            _set_dispatch_stack(self.dispatch_stack)
        if _function_stack() != self.function_stack:
            _set_function_stack(self.function_stack)

    def _defaults(self) -> None:
        from torch.utils import _device

        ctx = getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None)
        if ctx is not None and getattr(ctx, "device_context", None) is not self.default_device[0]:
            ctx.device_context = self.default_device[0]
        _device.CURRENT_DEVICE = self.default_device[1]
        if torch.get_default_dtype() is not self.dtype:
            torch.set_default_dtype(self.dtype)

    def _autograd(self) -> None:
        torch.set_grad_enabled(self.grad)
        if (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled()) != self.determinism:
            torch.use_deterministic_algorithms(self.determinism[0],
                                               warn_only=self.determinism[1])
        if (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()) != self.anomaly:
            torch.set_anomaly_enabled(*self.anomaly)

    def _autocast(self) -> None:
        if _autocast_state() != self.autocast:
            for device, enabled, dtype in self.autocast:
                torch.set_autocast_enabled(device, enabled)
                torch.set_autocast_dtype(device, dtype)
        if torch.is_autocast_cache_enabled() is not self.autocast_cache:
            torch.set_autocast_cache_enabled(self.autocast_cache)
        nesting = _autocast_nesting()
        while nesting > self.autocast_nesting:  # autocast blocks entered and never left
            nesting = torch.autocast_decrement_nesting()
            if nesting == 0:
                torch.clear_autocast_cache()
        while nesting < self.autocast_nesting:
            nesting = torch.autocast_increment_nesting()

    def _switches(self) -> None:
        for (_, get, set_), value in zip(_flags(), self.flags):
            if value is _UNREADABLE:
                continue
            try:
                same = get() == value
            except Exception:  # unreadable now: set it anyway
                same = False
            if not same:
                set_(value)

    def _matmul(self) -> None:
        if self.matmul is not None and torch.get_float32_matmul_precision() != self.matmul:
            torch.set_float32_matmul_precision(self.matmul)

    def _threads(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _saved_hooks(self) -> None:
        if _saved_hooks_stack() != self.saved_hooks:
            _set_saved_hooks_stack(self.saved_hooks)

    def _print_options(self) -> None:
        options = torch._tensor_str.PRINT_OPTS
        if vars(options) != self.print_options:
            vars(options).update(self.print_options)

    def _rngs(self) -> None:
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        random.setstate(self.py_rng)
        np = sys.modules.get("numpy")
        if self.np_rng is not None and np is not None:
            np.random.set_state(self.np_rng)


_UNREADABLE = object()


def _read(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # a switch this process cannot read now
        return _UNREADABLE


def _autocast_nesting() -> int:
    """How many autocast blocks are open (torch clears autocast's cache when it drops to 0)."""
    nesting: int = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return nesting


def _saved_hooks_stack() -> list[Any]:
    """The whole saved-tensor hooks stack, bottom first (read by popping and pushing back:
    torch shows only its top)."""
    autograd: Any = torch._C._autograd
    popped: list[Any] = []
    for _ in range(10_000):  # (a bound: no real stack is that deep)
        top = autograd._top_saved_tensors_default_hooks(True)
        if top is None:
            break
        popped.append(top)
        autograd._pop_saved_tensors_default_hooks()
    for hooks in reversed(popped):
        autograd._push_saved_tensors_default_hooks(*hooks)
    return popped[::-1]


def _set_saved_hooks_stack(stack: list[Any]) -> None:
    autograd: Any = torch._C._autograd
    for _ in range(10_000):
        if autograd._top_saved_tensors_default_hooks(True) is None:
            break
        autograd._pop_saved_tensors_default_hooks()
    for hooks in stack:
        autograd._push_saved_tensors_default_hooks(*hooks)


def _readable(owner: Any, name: str) -> bool:
    try:
        getattr(owner, name)
    except Exception:  # absent or unreadable in this build
        return False
    return True


_FLAG_TABLE: list[tuple[str, Callable[[], Any], Callable[[Any], None]]] | None = None


def _flags() -> list[tuple[str, Callable[[], Any], Callable[[Any], None]]]:
    """(name, getter, setter) of process-wide switches a forward may flip and never flip back:
    forward-mode grad, torch functions disabled, autograd multithreading, warn-always, flushing
    denormals, the backend switches of cuDNN, oneDNN, CUDA matmul reductions and attention
    kernels (settable without a GPU). Built once; a switch this build lacks is left out."""
    global _FLAG_TABLE
    if _FLAG_TABLE is not None:
        return _FLAG_TABLE
    c: Any = torch._C
    backends: Any = torch.backends
    table: list[tuple[str, Callable[[], Any], Callable[[Any], None]]] = []

    def attr(owner: Any, name: str) -> None:
        if owner is not None and _readable(owner, name):
            table.append((name, lambda: getattr(owner, name),
                          lambda value: setattr(owner, name, value)))

    candidates = [
        ("fwd_grad", "_is_fwd_grad_enabled", "_set_fwd_grad_enabled"),
        ("torch_function", "_get_torch_function_state", "_set_torch_function_state"),
        ("multithreading", "_is_multithreading_enabled", "_set_multithreading_enabled"),
    ]
    for name, get, set_ in candidates:
        if hasattr(c, get) and hasattr(c, set_):
            table.append((name, getattr(c, get), getattr(c, set_)))
    table.append(("warn_always", torch.is_warn_always_enabled, torch.set_warn_always))
    table.append(("flush_denormal", lambda: _flushes_denormals(), _set_flush_denormal))
    for name in ("enabled", "benchmark", "deterministic", "allow_tf32"):
        attr(backends.cudnn, name)
    attr(backends.mkldnn, "enabled")
    for name in ("allow_tf32", "allow_fp16_reduced_precision_reduction",
                 "allow_bf16_reduced_precision_reduction"):
        attr(backends.cuda.matmul, name)
    attr(backends.mkldnn, "deterministic")
    attr(getattr(backends, "opt_einsum", None), "enabled")
    attr(getattr(backends, "opt_einsum", None), "strategy")
    attr(getattr(torch.utils, "deterministic", None), "fill_uninitialized_memory")
    # the per-backend float32 precision settings (torch refuses to mix them with the legacy
    # torch.set_float32_matmul_precision, so both are put back)
    attr(backends, "fp32_precision")
    for owner in (backends.cuda.matmul, backends.cudnn, getattr(backends.cudnn, "conv", None),
                  getattr(backends.cudnn, "rnn", None), backends.mkldnn,
                  getattr(backends.mkldnn, "matmul", None),
                  getattr(backends.mkldnn, "conv", None), getattr(backends.mkldnn, "rnn", None)):
        attr(owner, "fp32_precision")
    linalg = getattr(backends.cuda, "preferred_linalg_library", None)
    if linalg is not None:
        table.append(("preferred_linalg_library", lambda: linalg(), lambda value: linalg(value)))
    for kind in ("flash", "mem_efficient", "math", "cudnn"):
        sdp_get = getattr(backends.cuda, f"{kind}_sdp_enabled", None)
        sdp_set = getattr(backends.cuda, f"enable_{kind}_sdp", None)
        if sdp_get is not None and sdp_set is not None:
            table.append((f"{kind}_sdp", sdp_get, sdp_set))
    _FLAG_TABLE = table
    return table


def _flushes_denormals(tiny: float = sys.float_info.min / 4) -> bool:
    """Whether ``torch.set_flush_denormal(True)`` is in effect (torch has no getter: the same
    CPU flag makes this thread's float arithmetic read a denormal as zero; no tensor op)."""
    return tiny * 1.0 == 0.0


def _set_flush_denormal(value: Any) -> None:
    torch.set_flush_denormal(bool(value))


def _autocast_state() -> list[tuple[str, bool, torch.dtype]]:
    out: list[tuple[str, bool, torch.dtype]] = []
    for device in _AUTOCAST_DEVICES:
        try:
            out.append((device, torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device)))
        except (RuntimeError, TypeError, ValueError):  # a device type this build lacks
            continue
    return out


# ---------------------------------------------------------------------------------------------
# copy on write: the values of the model's tensors


#: per operator, the positions/names of the arguments it writes (schema ``Tensor(a!)``, and the
#: running statistics that batch norm kernels update without saying so in their schema)
_WRITES: dict[Any, tuple[tuple[int, str], ...]] = {}
_UNDECLARED_WRITES = frozenset({"running_mean", "running_var"})


def _written_args(func: Any) -> tuple[tuple[int, str], ...]:
    found = _WRITES.get(func)
    if found is None:
        try:
            arguments = func._schema.arguments
        except AttributeError:
            arguments = []
        found = tuple(
            (i, a.name) for i, a in enumerate(arguments)
            if (a.alias_info is not None and a.alias_info.is_write)
            or a.name in _UNDECLARED_WRITES
        )
        _WRITES[func] = found
    return found


def _storage_of(t: object) -> tuple[Any, int] | None:
    """``(storage, address)`` of a tensor with data of its own; ``None`` for other values,
    sparse tensors, wrapper subclasses (DTensor), storages freed or resized to nothing (FSDP
    between forwards)."""
    if not isinstance(t, torch.Tensor):
        return None
    try:
        storage = t.untyped_storage()
        ptr: int = storage.data_ptr()
        return (storage, ptr) if ptr and storage.nbytes() else None
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _patch(cls: Any, name: str, before: Callable[..., None]) -> tuple[Any, str, Any, Any]:
    """Make ``cls.name`` call ``before(self, *args)`` first; returns what undoes it."""
    own = cls.__dict__.get(name)
    original = getattr(cls, name)

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        before(self, *args)
        return original(self, *args, **kwargs)

    setattr(cls, name, patched)
    return cls, name, own, patched


class _CopyOnWrite(TorchDispatchMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Keeps a copy of a watched storage right before the first operator writes into it, so
    the guard can put its bytes back (only what was written is copied, and the bytes go back
    through the storage: no version counter moves)."""

    def __init__(self, watched: dict[int, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.watched = watched  # data_ptr -> storage
        self.saved: dict[int, tuple[Any, Any]] = {}
        # (class, method name, the class's own attribute or None, the patched one)
        self._patches: list[tuple[Any, str, Any, Any]] = []

    def _save(self, value: object) -> None:
        if isinstance(value, (list, tuple)):
            for v in value:
                self._save(v)
            return
        found = _storage_of(value)
        if found is None:
            return
        storage, ptr = found
        if ptr in self.watched and ptr not in self.saved:
            self.saved[ptr] = (storage, storage.clone())

    def watch_resizes(self) -> None:
        """Also save a watched storage before ``UntypedStorage.resize_`` frees or resizes it
        (a sharding wrapper's way to free parameters: a storage method, which no dispatch mode
        sees) and before ``Tensor.numpy`` hands out a NumPy view of it (NumPy writes go to the
        bytes without any operator). Undone by :meth:`unwatch_resizes`."""
        cow = self

        def before_resize(storage: Any, *args: Any) -> None:
            cow._save(torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage))

        def before_numpy(tensor: Any, *args: Any) -> None:
            cow._save(tensor)

        self._patches = [_patch(torch.UntypedStorage, "resize_", before_resize),
                         _patch(torch.Tensor, "numpy", before_numpy)]

    def unwatch_resizes(self) -> None:
        for cls, name, own, patched in reversed(self._patches):
            if cls.__dict__.get(name) is patched:
                if own is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, own)
        self._patches = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        writes = _WRITES.get(func)
        if writes is None:
            writes = _written_args(func)
        for i, name in writes:
            self._save(args[i] if i < len(args) else kwargs.get(name))
        return func(*args, **kwargs)


class _Snapshot:
    """A copy of the storages taken up front, for models whose tensors are small: compared
    byte for byte on restore (cheaper than watching every operator); bytes go back into the
    storages themselves, so no version counter moves. CPU storages are read and written by
    address (``ctypes``), merged into a few address regions first: storages allocated one
    after another lie side by side, and two of them merge when no whole page lies between
    them, so every byte read is on a page the storages themselves occupy. Other devices go
    through one concatenated copy per device."""

    __slots__ = ("cpu", "cpu_storages", "groups", "keep", "regions", "store")

    def __init__(self, storages: list[Any]) -> None:
        by_device: dict[Any, list[torch.Tensor]] = {}
        self.keep = storages  # the addresses below stay valid while these live
        self.cpu: list[tuple[int, int]] = []  # (address, bytes) of CPU storages
        self.cpu_storages: list[Any] = []
        for st in storages:
            if st.device.type == "cpu":
                self.cpu.append((st.data_ptr(), st.nbytes()))
                self.cpu_storages.append(st)
            else:
                view = torch.empty(0, dtype=torch.uint8, device=st.device).set_(st)
                by_device.setdefault(st.device, []).append(view)
        # (start, end, address of the saved bytes, member storages) of each merged region,
        # saved in one store
        spans = _regions(list(zip(self.cpu, self.cpu_storages)))
        self.store = _store(sum(end - start for start, end, _ in spans))
        self.regions: list[tuple[int, int, int, list[tuple[int, int, Any]]]] = []
        at = ctypes.addressof(self.store)
        for start, end, members in spans:
            ctypes.memmove(at, start, end - start)
            self.regions.append((start, end, at, members))
            at += end - start
        self.groups = [(views, torch.cat(views)) for views in by_device.values()]

    def restore(self) -> None:
        if self.cpu:
            storages = self.cpu_storages
            try:
                moved = (list(zip(map(_DATA_PTR, storages), map(_NBYTES, storages)))
                         != self.cpu)
            except RuntimeError:
                moved = True
            if moved:  # freed or resized: every storage is looked at
                self._restore_cpu(self.regions)
            else:
                # a region also holds the bytes between its storages (allocator bookkeeping,
                # other objects), which may change: a differing region is halved until the
                # differing pieces are small, and only the storages they touch are looked at
                for region in self.regions:
                    if _differs(region[0], region[1], region[2]):
                        self._restore_cpu([_touched(region)])
        with torch.no_grad():
            for views, saved_t in self.groups:
                try:
                    if torch.equal(torch.cat(views), saved_t):
                        continue
                except RuntimeError:  # a storage resized in between: compare one by one
                    pass
                offset = 0
                for view in views:
                    n = view.numel()
                    part_t = saved_t[offset:offset + n]
                    offset += n
                    if view.numel() == n and not torch.equal(view, part_t):
                        view.copy_(part_t)

    @staticmethod
    def _restore_cpu(regions: list[tuple[int, int, int, list[tuple[int, int, Any]]]]) -> None:
        """Put back the bytes of every CPU storage of ``regions`` that differs (a storage
        freed or resized by the forward gets its size back first)."""
        memcmp = _libc("memcmp")
        for start, _, saved, members in regions:
            for address, n, st in members:
                now = _where(st)
                if now[1] != n:
                    try:
                        st.resize_(n)
                    except RuntimeError:  # a storage that cannot be resized: left as it is
                        continue
                    now = _where(st)
                if now[1] != n:
                    continue
                saved_at = saved + address - start
                if (memcmp(now[0], saved_at, n) if memcmp
                        else ctypes.string_at(now[0], n) != ctypes.string_at(saved_at, n)):
                    ctypes.memmove(now[0], saved_at, n)


_LEAF = 16 << 10  # bytes: below this a differing piece is not halved further


def _touched(region: tuple[int, int, int, list[tuple[int, int, Any]]]
             ) -> tuple[int, int, int, list[tuple[int, int, Any]]]:
    """``region`` with only the members that overlap a differing piece of it (found by
    halving: a few ``memcmp`` calls per differing piece, whatever the region's size)."""
    start, end, saved, members = region
    pieces: list[tuple[int, int]] = []
    todo = [(start, end)]
    while todo:
        a, b = todo.pop()
        if b - a <= _LEAF:
            pieces.append((a, b))
            continue
        mid = (a + b) // 2
        for lo, hi in ((a, mid), (mid, b)):
            if _differs(lo, hi, saved + lo - start):
                todo.append((lo, hi))
    if not pieces:
        return (start, end, saved, [])
    # members are sorted by address; reach[i]: the furthest end among members 0..i (members
    # may overlap: views of one buffer), so the walk back from a piece can stop exactly
    starts = list(map(_FIRST, members))
    reach = list(accumulate(map(add, starts, map(_SECOND, members)), max))
    hit: dict[int, None] = {}
    for a, b in pieces:
        i = bisect.bisect_left(starts, b) - 1
        while i >= 0 and reach[i] > a:
            if starts[i] + members[i][1] > a:
                hit[i] = None
            i -= 1
    return (start, end, saved, [members[i] for i in sorted(hit)])


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


def _regions(spans: list[tuple[tuple[int, int], Any]]
             ) -> list[tuple[int, int, list[tuple[int, int, Any]]]]:
    """``((address, bytes), storage)`` pairs merged into ``(start, end, members)`` regions
    wherever no whole page lies between two of them (so every byte of a region is on a page a
    member occupies)."""
    shift = _PAGE_SHIFT
    merged: list[tuple[list[int], list[tuple[int, int, Any]]]] = []
    for (address, n), st in sorted(spans, key=_SPAN_START):
        if merged and (address >> shift) - ((merged[-1][0][1] - 1) >> shift) <= 1:
            bounds = merged[-1][0]
            if address + n > bounds[1]:
                bounds[1] = address + n
            merged[-1][1].append((address, n, st))
        else:
            merged.append(([address, address + n], [(address, n, st)]))
    return [(bounds[0], bounds[1], members) for bounds, members in merged]


_SPAN_START = itemgetter(0)
_DATA_PTR = methodcaller("data_ptr")
_NBYTES = methodcaller("nbytes")
_PAGE_SHIFT = (mmap.PAGESIZE - 1).bit_length()

_LIBC: dict[str, Any] = {}


def _libc(name: str) -> Any:
    """The C library's ``memcmp`` (``(void*, void*, size_t) -> int``), or ``None`` where
    there is no C library to load by name."""
    if name not in _LIBC:
        try:
            fn: Any = getattr(ctypes.CDLL(None), name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            _LIBC[name] = fn
        except (OSError, AttributeError, TypeError):
            _LIBC[name] = None
    return _LIBC[name]


def _differs(start: int, end: int, saved: int) -> bool:
    """Whether the bytes at ``start:end`` differ from those at ``saved`` (libc ``memcmp``
    where it can be found, else two copies and a comparison)."""
    memcmp = _libc("memcmp")
    if memcmp:
        return bool(memcmp(start, saved, end - start))
    return ctypes.string_at(start, end - start) != ctypes.string_at(saved, end - start)


def _store(n: int) -> Any:
    """A writable buffer of ``n`` bytes for a snapshot: from a private anonymous map asking
    for huge pages when large (a few page faults instead of one per 4 KiB page: the copy costs
    about half), else from ``ctypes``."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if n >= 2 << 20 and advice is not None:
        try:
            mapped = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            mapped.madvise(advice)
            return (ctypes.c_char * n).from_buffer(mapped)
        except (OSError, ValueError):
            pass
    return ctypes.create_string_buffer(max(n, 1))


def _where(storage: Any) -> tuple[int, int]:
    """(address, bytes) of a storage now; (0, 0) once it was freed."""
    try:
        return storage.data_ptr(), storage.nbytes()
    except RuntimeError:
        return 0, 0


#: The two ways to keep the values: one copy up front (its cost grows with the bytes: about
#: 0.7 ms per MB copied and compared, on 2 cores) or a copy on first write (its cost grows with
#: the operators: a Python dispatch mode costs about 8 us on every one, some 25 us per module
#: call). Models whose watched tensors hold at most ``_SNAPSHOT_FLOOR`` bytes, or at most
#: ``_SNAPSHOT_PER_MODULE`` bytes per module, are copied up front, never more than
#: ``_SNAPSHOT_BYTES`` (the memory a copy may take); others are copied on write.
_SNAPSHOT_BYTES = 256 << 20
_SNAPSHOT_FLOOR = 32 << 20
_SNAPSHOT_PER_MODULE = 32 << 10


def _snapshot_limit(modules: int) -> int:
    """The most bytes copied up front for a model of ``modules`` modules (see above).

    >>> _snapshot_limit(10) >> 20, _snapshot_limit(5_000) >> 20, _snapshot_limit(10**6) >> 20
    (32, 156, 256)
    """
    return min(_SNAPSHOT_BYTES, max(_SNAPSHOT_FLOOR, _SNAPSHOT_PER_MODULE * modules))


class _Guard:
    """Saves what a forward may change and restores it (see :func:`state_guard`).

    ``watch``: the forward runs on the modules' own tensors, so their values, versions,
    ``requires_grad`` flags, gradients and the modules' attributes are watched too; without it
    (a copy of the model runs) only hooks, training flags, the tensor dicts and the global
    state are. Every check on restore is first a comparison of flat lists built by C-level
    passes (the common case: nothing changed); only a difference costs a closer look.
    """

    __slots__ = (
        "attr_dicts",
        "attr_marks",
        "containers",
        "cow",
        "flags",
        "generators",
        "global_dicts",
        "global_state",
        "grads",
        "hook_dicts",
        "hook_id",
        "layouts",
        "lazy",
        "modules",
        "placed",
        "places",
        "requires",
        "sets",
        "snapshot",
        "tensor_dicts",
        "tensor_hooks",
        "tensor_marks",
        "tensors",
        "types",
        "versions",
    )

    def __init__(self, modules: list[nn.Module], *, watch: bool) -> None:
        with plain_reads():  # a subclass's __torch_function__ is not asked for metadata
            self._setup(modules, watch=watch)

    def _setup(self, modules: list[nn.Module], *, watch: bool) -> None:
        self.modules = modules
        self.hook_id = RemovableHandle.next_id
        self.flags = list(map(_TRAINING, modules))
        self.global_state = _GlobalState()
        # (dict, shallow copy) of every non-empty hook dict, to put back hooks a forward removed
        self.hook_dicts: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        # (dict, shallow copy) to undo reassigned, added or deleted parameters/buffers/children
        self.tensor_dicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        # (module __dict__, shallow copy): plain attributes set, replaced or deleted
        self.attr_dicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.attr_marks: tuple[list[int], list[int]] | None = None
        # (set, copy): non-persistent buffer names
        self.sets: list[tuple[set[str], set[str]]] = []
        # every parameter and buffer once, with its version, requires_grad and .grad (watch)
        self.tensors: list[torch.Tensor] = []
        self.versions: list[int] = []
        self.requires: list[bool] = []
        self.grads: list[Any] = []
        self.cow: _CopyOnWrite | None = None
        self.snapshot: _Snapshot | None = None
        self.types: list[type] = []
        self.tensor_hooks: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        self.lazy: list[tuple[torch.Tensor, type, torch.dtype, torch.device]] = []
        self.containers: list[tuple[Any, Any]] = []  # (list or dict attribute, its items)
        self.generators: list[tuple[torch.Generator, torch.Tensor]] = []
        self.placed: list[torch.Tensor] = []
        self.places: list[tuple[Any, ...]] = []
        # (storage, its bytes, offset, shape, strides, dtype) of each placed tensor
        self.layouts: list[tuple[Any, int, int, torch.Size, tuple[int, ...], torch.dtype]] = []
        dicts: list[dict[str, Any]] = []  # the tensor dicts, copied below in one pass
        hook_dicts = self.hook_dicts
        for m in modules:
            md = m.__dict__  # (item lookups: faster than attribute reads on a Module)
            try:
                hooked = (md["_forward_hooks"] or md["_forward_pre_hooks"]
                          or md["_backward_hooks"] or md["_backward_pre_hooks"]
                          or md["_state_dict_hooks"] or md["_state_dict_pre_hooks"]
                          or md["_load_state_dict_pre_hooks"]
                          or md["_load_state_dict_post_hooks"])
                own = (md["_parameters"], md["_buffers"], md["_modules"])
                if type(own[0]) is dict and type(own[1]) is dict and type(own[2]) is dict:
                    dicts.extend(own)
                else:  # TorchScript keeps them in the C++ module, behind wrappers
                    dicts.extend(d for d in own if isinstance(d, dict))
            except KeyError:  # a module missing some of torch's attributes (an old pickle)
                hooked = True
                for name in ("_parameters", "_buffers", "_modules"):
                    d = md.get(name)
                    if isinstance(d, dict):
                        dicts.append(d)
            if hooked:
                for name in _HOOK_DICTS:
                    d = md.get(name)
                    if d:
                        hook_dicts.append((d, dict(d)))
        self.tensor_dicts.extend(zip(dicts, map(dict, dicts)))
        self.tensor_marks = _tensor_marks(dicts)
        self.global_dicts = [(d, dict(d)) for d in _global_dicts() if d]
        if watch:
            self._watch(modules)

    def _watch(self, modules: list[nn.Module]) -> None:
        mds = [m.__dict__ for m in modules]
        self.types = list(map(type, modules))  # a parametrization swaps the class
        self.sets = [(ps, set(ps)) for ps in (md.get("_non_persistent_buffers_set")
                                               for md in mds) if isinstance(ps, set)]
        seen: dict[int, torch.Tensor] = {}
        scripted = torch.jit.ScriptModule
        internal = _internal_keys()
        containers: list[tuple[Any, Any]] = []
        generators: list[tuple[torch.Generator, torch.Tensor]] = []
        tensor_type = torch.Tensor
        for m, md in zip(modules, mds):
            for name in ("_parameters", "_buffers"):
                d = md.get(name)
                if d is None and isinstance(m, scripted):  # a traced module: on its class
                    d = getattr(m, name, None)
                if d:  # (a TorchScript wrapper has items() only)
                    for t in (d.values() if isinstance(d, dict) else [v for _, v in d.items()]):
                        if isinstance(t, tensor_type):
                            seen[id(t)] = t
            # plain attributes (the few names torch does not set): tensors (rotary caches
            # written in place) are watched like buffers, lists and dicts keep their items,
            # generators their state
            for key in md.keys() - internal:
                value = md[key]
                if isinstance(value, tensor_type):
                    seen.setdefault(id(value), value)
                elif isinstance(value, _CONTAINER_TYPES):
                    _note_containers(value, containers)
                else:
                    state = _generator_state(value)
                    if state is not None:
                        generators.append((value, state))
        tensors = list(seen.values())
        for d in map(vars, tensors):  # containers set on a Parameter (weight.tags = [...])
            if d:
                for value in d.values():
                    if isinstance(value, _CONTAINER_TYPES):
                        _note_containers(value, containers)
        self.containers, self.generators = containers, generators
        self.tensors = tensors
        # hook dicts on the tensors themselves, to put back hooks a forward removed
        self.tensor_hooks = [(d, dict(d)) for name in _TENSOR_HOOKS
                             for d in map(attrgetter(name), tensors) if d]
        # uninitialized (lazy) tensors: a forward materializes them in place (class and data)
        self.lazy = ([(t, type(t), t.dtype, t.device) for t in tensors
                      if isinstance(t, UninitializedTensorMixin)
                      and _FRESH_LAZY.get(id(t)) is not t]
                     if any(issubclass(k, UninitializedTensorMixin)
                            for k in set(map(type, tensors))) else [])
        # the modules' and the tensors' own __dict__ (attributes set on a Parameter)
        attr_owners = mds + list(map(vars, tensors))
        self.attr_dicts = list(zip(attr_owners, map(dict, attr_owners)))
        self.attr_marks = _attr_marks(attr_owners)
        self.versions = list(map(_VERSION, tensors))
        self.requires = list(map(_REQUIRES_GRAD, tensors))
        self.grads = (list(map(_GRAD, tensors)) if all(map(_IS_LEAF, tensors))
                      else [t.grad if t.is_leaf else None for t in tensors])
        placed, watched = _placed(tensors, self.grads)
        # where each tensor's data is: ``.data = ...``, ``.to()``, ``swap_tensors`` re-point it
        ts = self.placed = [t for t, _ in placed]
        self.places = _places(ts)
        storages = [st for _, st in placed]
        self.layouts = list(zip(storages, map(_NBYTES, storages), map(_OFFSET, ts),
                                map(_SHAPE, ts), map(_STRIDE, ts), map(_DTYPE, ts)))
        if watched:
            if sum(map(_NBYTES, watched.values())) <= _snapshot_limit(len(modules)):
                self.snapshot = _Snapshot(list(watched.values()))
            else:
                self.cow = _CopyOnWrite(watched)

    def start(self) -> None:
        """Begin copying on write (the mode goes on the dispatch stack until restore)."""
        if self.cow is not None:
            c: Any = torch._C
            c._push_on_torch_dispatch_stack(self.cow)
            self.cow.watch_resizes()

    def restore(self, *, own_hooks: int = 0) -> None:
        """Undo what happened since entry; ``own_hooks`` handles were registered (and removed)
        by torchscope itself in between, so they need no search."""
        if self.cow is not None:
            self.cow.unwatch_resizes()
        self.global_state.restore()  # first: takes the copy-on-write mode off the stack
        with plain_reads():  # (as on entry)
            self._restore(own_hooks)

    def _restore(self, own_hooks: int) -> None:
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
            for t in self.tensors:  # hooks on the tensors themselves (``register_hook``)
                for name in ("_backward_hooks", "_post_accumulate_grad_hooks"):
                    d = getattr(t, name, None)
                    if d:
                        for key in [k for k in d if isinstance(k, int) and k >= start]:
                            del d[key]
        for d, saved in (*self.hook_dicts, *self.global_dicts):
            if len(d) != len(saved):  # a hook was removed: put the dict back as it was
                d.clear()
                d.update(saved)
        if self.types and list(map(type, self.modules)) != self.types:
            for m, cls in zip(self.modules, self.types):
                if type(m) is not cls:  # a parametrization made it ParametrizedLinear
                    try:
                        m.__class__ = cls
                    except TypeError:  # a layout Python refuses to swap back: left as it is
                        continue
        # parameters, buffers and children: the same objects under the same names (checked for
        # all dicts at once first: the common case, nothing changed)
        tensor_dicts = self.tensor_dicts
        if _tensor_marks([d for d, _ in tensor_dicts]) != self.tensor_marks:
            for current, saved in tensor_dicts:
                if not _same_items(current, saved):
                    current.clear()
                    current.update(saved)
        if self.attr_marks is not None and _attr_marks(
                [md for md, _ in self.attr_dicts]) != self.attr_marks:
            for md, saved in self.attr_dicts:  # plain attributes set, replaced or deleted
                if not _same_items(md, saved):
                    for attr in [k for k in md if k not in saved]:
                        del md[attr]
                    for attr, value in saved.items():
                        if md.get(attr, _MISSING) is not value:
                            md[attr] = value
        for current_set, saved_set in self.sets:
            if current_set != saved_set:
                current_set.clear()
                current_set.update(saved_set)
        if self.snapshot is not None:  # values written in place: bytes back
            self.snapshot.restore()
        restored: set[int] | None = None  # copy on write: the storages whose bytes came back
        if self.cow is not None:
            restored = set()
            with torch.no_grad():
                for ptr, (storage, copy_) in self.cow.saved.items():
                    try:
                        if storage.nbytes() != copy_.nbytes():  # freed or resized since
                            storage.resize_(copy_.nbytes())
                        storage.copy_(copy_)
                        restored.add(ptr)
                    except RuntimeError:  # a storage that cannot be resized: left as it is
                        continue
            self.cow.saved.clear()
        for d, saved in self.tensor_hooks:
            if len(d) != len(saved) or list(d) != list(saved):  # a hook removed (or swapped)
                d.clear()
                d.update(saved)
        for t, cls, dtype, device in self.lazy:
            if type(t) is not cls:  # materialized: uninitialized again
                with torch.no_grad():
                    t.data = torch.empty(0, dtype=dtype, device=device)
                t.__class__ = cls
        if self.placed:
            self._repoint()
        for container, items in self.containers:  # lists, dicts, sets filled in place
            if _items(container)[0] != items[0]:  # (by identity: never an item's __eq__)
                _put_items(container, items)
        for generator, state in self.generators:
            if not _same_state(_generator_state(generator), state):
                _set_generator_state(generator, state)
        tensors = self.tensors
        if tensors:
            if list(map(_REQUIRES_GRAD, tensors)) != self.requires:
                for t, flag in zip(tensors, self.requires):
                    if t.requires_grad is not flag and t.is_leaf:
                        t.requires_grad_(flag)
            for t, grad in zip(tensors, self.grads):
                if t.is_leaf and t.grad is not grad:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t.grad = grad
            if list(map(_VERSION, tensors)) != self.versions:
                moved = [(t, v) for t, v in zip(tensors, self.versions) if t._version != v]
                if restored is not None:
                    # copy on write sees only writes made by operators in this thread: a
                    # tensor written otherwise (another thread, DLPack, ctypes) keeps its new
                    # version, so a backward that saved it fails loudly instead of computing
                    # with the new values
                    moved = [(t, v) for t, v in moved if _storage_ptr(t) in restored]
                # written and put back: autograd sees the tensor it saved
                autograd: Any = torch._C._autograd
                autograd._unsafe_set_version_counter(tuple(t for t, _ in moved),
                                                     tuple(v for _, v in moved))
        if list(map(_TRAINING, self.modules)) != self.flags:
            for m, flag in zip(self.modules, self.flags):
                if m.training is not flag:
                    m.training = flag


    def _repoint(self) -> None:
        """Tensors whose data was re-pointed (``.data = ...``, ``module.to(dtype)``,
        ``swap_tensors``) get their storage, offset, shape, strides and dtype back."""
        try:
            if _places(self.placed) == self.places:
                return
        except RuntimeError:  # a tensor whose storage was freed: looked at one by one
            pass
        for t, place, (storage, nbytes, offset, size, stride, dtype) in zip(
                self.placed, self.places, self.layouts):
            try:
                if _places([t]) == [place]:
                    continue
            except RuntimeError:
                pass
            try:
                if storage.nbytes() != nbytes:  # resized in place (``resize_``) and not watched
                    storage.resize_(nbytes)
                with torch.no_grad():
                    t.data = torch.empty(0, dtype=dtype, device=storage.device).set_(
                        storage, offset, size, stride)
            except (RuntimeError, TypeError):  # a storage that cannot hold it any more
                continue


def _placed(tensors: list[torch.Tensor], grads: list[Any]
            ) -> tuple[list[tuple[torch.Tensor, Any]], dict[int, Any]]:
    """(tensor, storage) of every tensor with data a forward could re-point, and the storages
    to keep the values of (address -> storage, gradients' too). The common case (plain dense
    tensors, no lazy, meta or fake one) goes through C-level passes; others one by one."""
    fake = sys.modules.get("torch._subclasses.fake_tensor")
    fake_type: Any = fake.FakeTensor if fake is not None else ()
    odd = (UninitializedTensorMixin, fake_type)
    if not any(issubclass(kind, odd) for kind in set(map(type, tensors))):
        try:
            if (not any(map(_IS_META, tensors)) and not any(map(_IS_NESTED, tensors))
                    and all(map(is_, map(_LAYOUT, tensors), repeat(torch.strided)))):
                storages = list(map(_UNTYPED_STORAGE, tensors))
                ptrs = list(map(_DATA_PTR, storages))
                sizes = list(map(_NBYTES, storages))
                placed = list(zip(tensors, storages))
                watched = {p: st for p, st, n in zip(ptrs, storages, sizes) if p and n}
                for g in grads:
                    if g is not None:
                        found = _storage_of(g)
                        if found is not None and not g.is_meta:
                            watched[found[1]] = found[0]
                return placed, watched
        except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, subclasses
            pass
    watched = {}
    placed = []
    for i, x in enumerate(chain(tensors, grads)):
        if x is None or x.is_meta or isinstance(x, odd):
            continue
        found = _storage_of(x)
        if found is not None:
            watched[found[1]] = found[0]
        if i < len(tensors):
            if found is not None:
                placed.append((x, found[0]))
            elif x.layout is torch.strided and not x.is_nested:
                try:  # an empty storage (an observer's min_val): it may be resized
                    placed.append((x, x.untyped_storage()))
                except (RuntimeError, NotImplementedError, TypeError):
                    pass
    return placed, watched


_INTERNAL: list[frozenset[str]] = []


def _internal_keys() -> frozenset[str]:
    """The ``__dict__`` names every ``nn.Module`` gets from torch (hook dicts, ``training``,
    the tensor dicts): the guard looks at the others, the user's own attributes."""
    if not _INTERNAL:
        _INTERNAL.append(frozenset(nn.Module().__dict__))
    return _INTERNAL[0]


_IS_META = attrgetter("is_meta")
_IS_LEAF = attrgetter("is_leaf")
_GRAD = attrgetter("grad")
_IS_NESTED = attrgetter("is_nested")
_LAYOUT = attrgetter("layout")
_UNTYPED_STORAGE = methodcaller("untyped_storage")
def own_copy(t: torch.Tensor) -> torch.Tensor:
    """Mark an uninitialized tensor made for one of torchscope's own copies of a model: a state
    guard leaves its materialization alone (the copy's forward is run to infer its shape).

    >>> own_copy(torch.nn.parameter.UninitializedParameter()).__class__.__name__
    'UninitializedParameter'
    """
    _FRESH_LAZY[id(t)] = t
    return t


#: lazy tensors of torchscope's own copies (a guard leaves their materialization alone)
_FRESH_LAZY: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
_MISSING = object()
_TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")
_CONTAINER_TYPES = (list, dict, set, collections.deque)


def _note_containers(value: Any, out: list[tuple[Any, Any]], depth: int = 0) -> None:
    """``value`` and the containers inside it (a few levels: ``cfg['a'].append(x)``), each
    with its items."""
    out.append((value, _items(value)))
    if depth < 3:
        for item in (value.values() if isinstance(value, dict) else value):
            if isinstance(item, _CONTAINER_TYPES):
                _note_containers(item, out, depth + 1)


def _items(container: Any) -> tuple[Any, ...]:
    """What a container holds, by identity: (key, id) pairs of a dict, ids of the others."""
    if isinstance(container, dict):
        return tuple(zip(container, map(id, container.values()))), tuple(container.values())
    return tuple(map(id, container)), tuple(container)


def _put_items(container: Any, items: tuple[Any, ...]) -> None:
    keys_ids, values = items
    if isinstance(container, dict):
        container.clear()
        container.update(zip((k for k, _ in keys_ids), values))
    elif isinstance(container, list):
        container[:] = values
    else:  # set, deque
        container.clear()
        (container.update if isinstance(container, set) else container.extend)(values)


def _generator_state(value: object) -> Any:
    """The state of a random number generator held as an attribute (torch, Python, NumPy), or
    ``None`` for anything else."""
    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, random.Random):
        return value.getstate()
    kind = type(value)
    if kind.__module__.startswith("numpy.random"):
        if kind.__name__ == "Generator":
            return copy.deepcopy(value.bit_generator.state)  # type: ignore[attr-defined]
        if kind.__name__ == "RandomState":
            return value.get_state()  # type: ignore[attr-defined]
    return None


def _set_generator_state(value: Any, state: Any) -> None:
    if isinstance(value, torch.Generator):
        value.set_state(state)
    elif isinstance(value, random.Random):
        value.setstate(state)
    elif type(value).__name__ == "Generator":
        value.bit_generator.state = state
    else:
        value.set_state(state)


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # NumPy arrays inside: compare as text
        return repr(a) == repr(b)
_OFFSET = methodcaller("storage_offset")
_SHAPE = attrgetter("shape")
_STRIDE = methodcaller("stride")
_DTYPE = attrgetter("dtype")
_TENSOR_PTR = methodcaller("data_ptr")


def _places(tensors: list[torch.Tensor]) -> list[tuple[Any, ...]]:
    """Where and how each tensor's data is laid out: (address, shape, strides, offset, dtype),
    by C-level passes (``t_()`` or ``as_strided_`` change only strides)."""
    return list(zip(map(_TENSOR_PTR, tensors), map(_SHAPE, tensors), map(_STRIDE, tensors),
                    map(_OFFSET, tensors), map(_DTYPE, tensors)))


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        ptr: int = t.untyped_storage().data_ptr()
        return ptr
    except RuntimeError:
        return 0


_TRAINING = attrgetter("training")
_VERSION = attrgetter("_version")
_REQUIRES_GRAD = attrgetter("requires_grad")


def _tensor_marks(dicts: list[dict[str, Any]]) -> tuple[list[int], list[str], list[int]]:
    """The sizes, keys and value ids of ``dicts``, flattened (C-level passes). Equal marks
    mean the same objects under the same names in every dict, as long as the values of the
    first marks are kept alive (the guard's copies keep them): no other object can take their
    ids."""
    return (list(map(len, dicts)), list(chain.from_iterable(dicts)),
            list(map(id, chain.from_iterable(map(dict.values, dicts)))))


def _attr_marks(dicts: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """The sizes and value ids of module ``__dict__``\\ s (C-level passes): an attribute set,
    replaced or deleted changes them (the guard's copies keep the old values alive)."""
    return (list(map(len, dicts)), list(map(id, chain.from_iterable(map(dict.values, dicts)))))


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
    ``training`` flag is restored (mixed trees included); parameters, buffers and submodules
    are the same objects under the same names, plain attributes set in the block are removed
    (replaced ones put back); tensors written in place (BatchNorm running statistics,
    ``weight.data.clamp_()``, an ``Embedding`` renormalizing its weight, a gradient
    accumulated) get their bytes back from a copy taken right before the first write — only
    written tensors are copied, and untouched tensors keep their version counters, so a
    backward pending outside the block still runs; ``requires_grad`` flags and ``.grad``
    attributes are put back. Global state comes back too: torch function and dispatch mode
    stacks, default dtype and device, grad mode, deterministic-algorithms, anomaly and autocast
    flags, float32 matmul precision, thread count, and the torch (and CUDA, if initialized),
    Python ``random`` and NumPy RNGs. The guard never moves the model and keeps no reference to
    it after exit.

    Args:
        model: the module whose state to protect.

    Returns:
        A context manager.

    Raises:
        InputSpecError: ``model`` is not an ``nn.Module``.

    >>> import torch
    >>> from torch import nn
    >>> bn = nn.BatchNorm1d(3).train()
    >>> version = bn.running_mean._version
    >>> with state_guard(bn):
    ...     _ = bn(torch.randn(4, 3))
    >>> int(bn.num_batches_tracked), bn.running_mean._version == version
    (0, True)
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"state_guard: model = {type(model).__name__} is not a torch.nn.Module; pass the "
            "model whose state to protect"
        )
    modules, _ = module_tree(model)
    guard = _Guard(modules, watch=True)
    guard.start()
    try:
        yield
    finally:
        guard.restore()


# ---------------------------------------------------------------------------------------------
# copies for meta and fake mode


def copy_with(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor], *,
               lazy_device: torch.device | None = None) -> nn.Module:
    """``deepcopy(model)`` with each parameter, buffer and tensor attribute replaced by
    ``convert(tensor)`` (once per tensor object, so ties survive); uninitialized (lazy) tensors
    become fresh uninitialized ones of the same kind (on ``lazy_device`` when given)."""
    memo: dict[int, Any] = {}

    def fresh_lazy(t: torch.Tensor) -> torch.Tensor:
        kind: Any = type(t)
        new: torch.Tensor = kind(requires_grad=t.requires_grad, device=lazy_device or t.device,
                                 dtype=t.dtype)
        return own_copy(new)  # a copy's: its forward materializes it for its shapes

    for mod in model.modules():
        for p in mod._parameters.values():
            if p is None or id(p) in memo:
                continue
            if is_lazy(p):
                memo[id(p)] = fresh_lazy(p)
            else:
                new = nn.Parameter(convert(p.detach()), requires_grad=p.requires_grad)
                if p.__dict__:  # (containers copied: the copy's forward may fill them)
                    new.__dict__.update({k: copy.copy(v) if isinstance(v, (list, dict, set))
                                         else v for k, v in p.__dict__.items()})
                memo[id(p)] = new
        for b in mod._buffers.values():
            if b is None or id(b) in memo:
                continue
            memo[id(b)] = fresh_lazy(b) if is_lazy(b) else convert(b)
        for value in mod.__dict__.values():  # plain tensor attributes (constants)
            if isinstance(value, torch.Tensor):
                if id(value) not in memo:
                    memo[id(value)] = convert(value)
            elif isinstance(value, (list, tuple, dict)):  # tables kept in a list or a dict
                for t in tensors_in(value):
                    if id(t) not in memo and not isinstance(t, nn.Parameter):
                        memo[id(t)] = convert(t)
    return copy.deepcopy(model, memo)


@room_for_depth
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
        InputSpecError: ``copy.deepcopy`` cannot copy the model (an attribute, or a
            ``__getattr__`` that raises other than ``AttributeError``).

    >>> from torchscope.examples import SharedMLP
    >>> copy = meta_copy(SharedMLP())
    >>> copy[2].weight.device.type, copy[2] is copy[4]
    ('meta', True)
    """
    model = require_module(model, "meta_copy")
    try:
        return copy_to_meta(model)
    except RecursionError:
        raise
    except Exception as err:  # deepcopy of an attribute that refuses it (or a __getattr__)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputSpecError(
            f"meta_copy: copying {type(model).__name__} raised {type(err).__name__}: "
            f"{first[:160]} — copy.deepcopy must work on the model (an attribute it holds, or a "
            "__getattr__ that raises other than AttributeError, prevents it)"
        ) from err


@room_for_depth
def copy_to_meta(model: nn.Module) -> nn.Module:
    """:func:`meta_copy` for torchscope's own traces: no argument check, and a copy that fails
    raises what ``copy.deepcopy`` raised (the caller then tries another mode).

    >>> copy_to_meta(torch.nn.Linear(2, 2)).weight.is_meta
    True
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

    return copy_with(model, to_meta, lazy_device=torch.device("meta"))


def fake_copy(model: nn.Module, fake_mode: Any) -> nn.Module:
    """A copy over fake tensors. Lazy layers of the copy get a pre-hook that runs after their
    own materialization: materializing under FakeTensorMode leaves real-device Parameters on
    meta, so they are replaced by fresh tensors on the placeholder's device (the fake mode
    turns those into fake tensors)."""
    copied = copy_with(model, fake_mode.from_tensor)
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


def shallow_copy(model: nn.Module) -> nn.Module:
    """A copy sharing every initialized tensor (no memory); lazy tensors are fresh."""
    return copy_with(model, lambda t: t)
