"""The machinery of a cost run: a dispatch mode counting FLOPs with torch's formulas and
tracking live storage, module hooks numbering the calls, and the saved-tensor hooks.

FLOPs follow ``torch.utils.flop_counter.FlopCounterMode`` exactly (same skipped metadata ops,
same decomposition of composite ops, same formula registry), so totals are equal to it.
Forward FLOPs go to the innermost module call running; backward FLOPs to the call whose
forward created the autograd node running (found by the node's sequence number, which falls
in the range of sequence numbers handed out while that call ran).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch._C import DispatchKey
from torch.nn.modules import module as _module_mod
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["FREE_OPS", "CostMode", "DeviceAttention", "Tally"]

_aten = torch.ops.aten

# metadata queries FlopCounterMode leaves alone (it returns NotImplemented for them)
_SKIP = frozenset({
    _aten.sym_is_contiguous.default, _aten.is_contiguous.default,
    _aten.is_contiguous.memory_format, _aten.is_strides_like_format.default,
    _aten.is_non_overlapping_and_dense.default, _aten.size.default, _aten.sym_size.default,
    _aten.stride.default, _aten.sym_stride.default, _aten.storage_offset.default,
    _aten.sym_storage_offset.default, _aten.numel.default, _aten.sym_numel.default,
    _aten.dim.default, torch.ops.prim.layout.default,
})
_DEVICE = torch.ops.prim.device.default

#: Ops that only create, copy, view or select data: no arithmetic, so no FLOPs to miss.
FREE_OPS = frozenset({
    "aten.detach", "aten.clone", "aten.copy_", "aten._to_copy", "aten.empty", "aten.empty_like",
    "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided", "aten.zeros",
    "aten.zeros_like", "aten.new_zeros", "aten.ones", "aten.ones_like", "aten.new_ones",
    "aten.full", "aten.full_like", "aten.new_full", "aten.fill_", "aten.fill", "aten.zero_",
    "aten.scalar_tensor", "aten.arange", "aten.lift_fresh", "aten.lift_fresh_copy",
    "aten.cat", "aten.stack", "aten.index_select", "aten.gather", "aten.embedding",
    "aten.index", "aten.repeat", "aten.constant_pad_nd", "aten.masked_fill", "aten.masked_fill_",
    "aten.where", "aten._local_scalar_dense", "aten.contiguous", "aten.slice_scatter",
    "aten.select_scatter", "aten.roll", "aten.flip", "aten.tril", "aten.triu", "aten.tril_",
    "aten.triu_", "aten.bernoulli_", "aten.bernoulli", "aten.rand_like", "aten.randn_like",
    "aten.native_dropout", "aten.eq", "aten.ne", "aten.lt", "aten.le", "aten.gt", "aten.ge",
    "aten.logical_not", "aten.logical_and", "aten.logical_or", "aten.bitwise_not",
    "aten.bitwise_and", "aten.bitwise_or", "aten.nonzero", "aten.max_pool2d_with_indices",
    "aten.randint", "aten.rand", "aten.randn", "aten.set_", "aten.resize_", "aten.linspace",
    "aten.is_same_size", "aten.expand_copy", "aten.permute_copy", "aten.view_copy",
    "aten._unsafe_index", "aten.any", "aten.all", "aten.argmax", "aten._unsafe_view",
    "aten.slice_backward", "aten.select_backward", "aten.expand_backward", "aten.unfold_backward",
    "aten.as_strided_scatter", "aten._reshape_alias", "aten.view", "aten.reshape",
    "aten.max_pool2d_with_indices_backward", "aten.scatter", "aten.sort",
    "aten.topk", "aten.clamp_min_",
})

_DATA_DEPENDENT = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_CIA = DispatchKey.CompositeImplicitAutograd
_decomposable: dict[Any, bool] = {}
_next_seq: Callable[[], int] = torch._C._autograd._get_sequence_nr
_current_node: Callable[[], Any] = torch._C._current_autograd_node


def _can_decompose(func: Any) -> bool:
    """What ``OpOverload.decompose`` checks before it decomposes (cached per op)."""
    found = _decomposable.get(func)
    if found is None:
        found = _CIA in func.py_kernels or bool(
            torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), _CIA))
        _decomposable[func] = found
    return found


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a storage, with its key and size (for the death callback)."""

    __slots__ = ("key", "nbytes")
    key: int
    nbytes: int


class Tally:
    """Everything one cost run counts; one per run.

    Calls are numbered in the order their forward starts (as the trace numbers them);
    ``parent[i]`` is the call running when call ``i`` started (``-1`` for none).
    """

    def __init__(self, paths: dict[int, str], static_keys: set[int], known_keys: set[int]) -> None:
        self.paths = paths
        self.static_keys = static_keys  # parameter and buffer storages: never activations
        self.known_keys = known_keys  # storages alive before the run (inputs): not tracked
        self.call_path: list[str] = []
        self.call_module: list[int] = []
        self.parent: list[int] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.fwd: list[int] = []
        self.bwd: list[int] = []
        self.saved: list[int] = []
        self.out_bytes: list[int] = []
        self.stack: list[int] = []
        self.backward = False
        self.counting = True
        self.outside_fwd = 0
        self.outside_bwd = 0
        self.outside_saved = 0
        self.by_op: dict[str, list[int]] = {}
        self.unsupported: dict[str, int] = {}
        self.data_dependent: dict[str, int] = {}
        self.higher_order: dict[str, int] = {}
        self.owner: list[int] = []
        self.seq_base = 0
        # live storage: key -> weak reference (with its size); the running sum and its peak
        self.live: dict[int, _Ref] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        self.saved_live: dict[int, int] = {}
        self.saved_total = 0
        self.saved_live_bytes = 0
        self.saved_peak = 0
        self.closed = False
        # the forward's timeline, for the inference live set: op clock, when each storage was
        # made, last read and freed (forward only)
        self.clock = 0
        self.in_forward = True
        # one entry per storage made in the forward: [made, bytes, freed, last read, kept]
        # (kept: saved for backward or an output); ``entry`` the entry of each live key
        self.born: list[list[Any]] = []
        self.entry: dict[int, list[Any]] = {}

    # -- module calls ---------------------------------------------------------------------
    def hooks(self) -> tuple[Callable[..., None], Callable[..., None]]:
        paths_get = self.paths.get
        paths = self.paths
        stack = self.stack
        call_module = self.call_module
        ends = self.ends

        def pre(module: nn.Module, args: Any) -> None:
            mid = id(module)
            path = paths_get(mid)
            if path is None:
                return
            idx = len(call_module)
            self.call_path.append(path)
            call_module.append(mid)
            self.parent.append(stack[-1] if stack else -1)
            self.starts.append(_next_seq())
            ends.append(-1)
            self.fwd.append(0)
            self.bwd.append(0)
            self.saved.append(0)
            self.out_bytes.append(0)
            stack.append(idx)

        def post(module: nn.Module, args: Any, output: Any) -> None:
            if not stack:
                return
            mid = id(module)
            if call_module[stack[-1]] != mid:
                if mid not in paths:  # a module outside the tree
                    return
                # calls that raised and were caught inside a forward never got here
                while stack and call_module[stack[-1]] != mid:
                    ends[stack.pop()] = _next_seq()
                if not stack:
                    return
            idx = stack.pop()
            ends[idx] = _next_seq()
            self.out_bytes[idx] = storage_bytes(output)

        return pre, post

    @contextmanager
    def hooked(self) -> Iterator[None]:
        pre, post = self.hooks()
        pre_handle = _module_mod.register_module_forward_pre_hook(pre)
        try:
            post_handle = _module_mod.register_module_forward_hook(post)
            try:
                yield
            finally:
                post_handle.remove()
        finally:
            pre_handle.remove()

    def forward_done(self) -> None:
        """Close calls left open (a forward that raised inside and caught it) and map every
        autograd sequence number to the innermost call that created it."""
        end = _next_seq()
        for i, e in enumerate(self.ends):
            if e < 0:
                self.ends[i] = end
        self.stack.clear()
        if not self.starts:
            return
        base = self.seq_base = self.starts[0]
        owner = [-1] * (end - base)
        for i, (s, e) in enumerate(zip(self.starts, self.ends)):  # parents before children
            if e > s:
                owner[s - base:e - base] = [i] * (e - s)
        self.owner = owner

    # -- saved tensors ----------------------------------------------------------------------
    def pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):  # sparse, odd subclasses
            return t
        key = st._cdata
        if key in self.static_keys or key in self.saved_live:
            return t
        n = st.nbytes()
        self.saved_live[key] = n
        entry = self.entry.get(key)
        if entry is not None:
            entry[4] = entry[4] or True
        self.saved_total += n
        self.saved_live_bytes += n
        if self.saved_live_bytes > self.saved_peak:
            self.saved_peak = self.saved_live_bytes
        if self.stack:
            self.saved[self.stack[-1]] += n
        else:
            self.outside_saved += n
        if key not in self.live and key not in self.known_keys:
            self.track(t)  # made outside the mode (a tensor attribute): watch it die
        return t

    # -- FLOPs ------------------------------------------------------------------------------
    def count(self, name: str, flops: int) -> None:
        entry = self.by_op.get(name)
        if entry is None:
            entry = self.by_op[name] = [0, 0]
        if self.backward:
            entry[1] += flops
            node = _current_node()
            idx = -1
            if node is not None:
                seq = node._sequence_nr() - self.seq_base
                if 0 <= seq < len(self.owner):
                    idx = self.owner[seq]
            if idx >= 0:
                self.bwd[idx] += flops
            else:
                self.outside_bwd += flops
        else:
            entry[0] += flops
            if self.stack:
                self.fwd[self.stack[-1]] += flops
            else:
                self.outside_fwd += flops

    # -- live storage ---------------------------------------------------------------------
    def track(self, t: torch.Tensor) -> None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):
            return
        key = st._cdata
        if key in self.live or key in self.static_keys or key in self.known_keys:
            return
        n = st.nbytes()
        ref = _Ref(st, self._dead)
        ref.key = key
        ref.nbytes = n
        self.live[key] = ref
        if self.in_forward:
            entry = [self.clock, n, None, self.clock, False]
            self.born.append(entry)
            self.entry[key] = entry
        self.live_bytes += n
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes

    def _dead(self, ref: Any) -> None:
        if self.closed:
            return
        key: int = ref.key
        entry = self.entry.pop(key, None)
        if entry is not None and self.in_forward:
            entry[2] = self.clock
        found = self.live.get(key)
        if found is ref:
            del self.live[key]
            self.live_bytes -= found.nbytes
        n = self.saved_live.pop(key, None)
        if n is not None:
            self.saved_live_bytes -= n

    def read(self, args: tuple[Any, ...]) -> None:
        """Note the storages an op of the forward reads (their last read so far)."""
        clock = self.clock
        get = self.entry.get
        for a in args:
            if isinstance(a, torch.Tensor):
                try:
                    entry = get(a.untyped_storage()._cdata)
                except (RuntimeError, NotImplementedError, TypeError):
                    continue
                if entry is not None:
                    entry[3] = clock
            elif isinstance(a, (list, tuple)):
                self.read(tuple(a))

    def keep(self, t: torch.Tensor, *, output: bool = False) -> None:
        """Mark the storage of ``t`` as kept by autograd (or, ``output``, as an output)."""
        try:
            entry = self.entry.get(t.untyped_storage()._cdata)
        except (RuntimeError, NotImplementedError, TypeError):
            return
        if entry is not None:
            entry[4] = "output" if output else (entry[4] or True)

    def inference_peak(self) -> int:
        """The largest live set the forward would have without gradients: a storage lives
        from the op that made it until it died, or, when autograd kept it for backward (or it
        outlived the forward), until the last op that read it; the outputs until the end."""
        events: list[tuple[float, int]] = []
        end = self.clock + 1
        for born, n, freed, last, kept in self.born:
            if kept == "output":
                dies: float = end
            elif freed is not None and not kept:
                dies = freed + 0.5  # freed after the op the clock shows had run
            else:  # kept for backward, or alive when the forward ended: freed after its last read
                dies = last + 0.5
            events.append((born, n))
            events.append((dies, -n))
        events.sort()
        live = peak = 0
        for _, n in events:
            live += n
            if live > peak:
                peak = live
        return peak

    def reset_live(self) -> None:
        """Start a new live-set measurement (the storages alive now stay tracked)."""
        self.peak_bytes = self.live_bytes

    def close(self) -> None:
        self.closed = True
        self.live.clear()
        self.saved_live.clear()


def storage_bytes(value: Any) -> int:
    """The bytes of the distinct storages of the tensors in ``value``."""
    from torchscope.trace import tensors_in

    seen: set[int] = set()
    total = 0
    for t in tensors_in(value):
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):
            continue
        if st._cdata not in seen:
            seen.add(st._cdata)
            total += st.nbytes()
    return total


class CostMode(TorchDispatchMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Counts FLOPs as ``FlopCounterMode`` does and tracks every storage ops create."""

    supports_higher_order_operators = True

    def __init__(self, tally: Tally) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.tally = tally

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs if kwargs else {}
        info = _INFO.get(func)
        if info is None:
            if func in _SKIP:
                return NotImplemented
            if isinstance(func, torch._ops.HigherOrderOperator):
                name = str(func.name())  # type: ignore[no-untyped-call,unused-ignore]
                tally = self.tally
                tally.higher_order[name] = tally.higher_order.get(name, 0) + 1
                return NotImplemented
            info = _info(func)
        decompose, name, formula, kind = info
        if decompose:
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        tally = self.tally
        tally.clock += 1
        if tally.in_forward:
            tally.read(args)
            if kwargs:
                tally.read(tuple(kwargs.values()))
        if tally.counting:
            if formula is not None:
                tally.count(name, formula(*args, **kwargs, out_val=out))
            elif kind & 1:
                tally.unsupported[name] = tally.unsupported.get(name, 0) + 1
            if kind & 2:
                tally.data_dependent[name] = tally.data_dependent.get(name, 0) + 1
        if isinstance(out, torch.Tensor):
            tally.track(out)
        elif isinstance(out, (tuple, list)):
            for o in out:
                if isinstance(o, torch.Tensor):
                    tally.track(o)
        return out


# op -> (decompose first, name, FLOP formula or None, kind: 1 uncounted arithmetic, 2 data
# dependent); built at an op's first sight
_INFO: dict[Any, tuple[bool, str, Any, int]] = {}


def _info(func: Any) -> tuple[bool, str, Any, int]:
    packet = func._overloadpacket
    name = str(packet)
    formula = flop_registry.get(packet)
    kind = 0
    if formula is None and name not in FREE_OPS and not func.is_view:
        kind |= 1
    tags = func.tags
    if _DATA_DEPENDENT[0] in tags or _DATA_DEPENDENT[1] in tags:
        kind |= 2
    info = (func is not _DEVICE and _can_decompose(func), name, formula, kind)
    _INFO[func] = info
    return info


_SDPA = torch.nn.functional.scaled_dot_product_attention
_FLASH_CPU = _aten._scaled_dot_product_flash_attention_for_cpu.default
_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
               "enable_gqa")
_SDPA_DEFAULTS: dict[str, Any] = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False,
                                  "scale": None, "enable_gqa": False}


class DeviceAttention(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """On meta tensors, scaled dot product attention takes the math path (meta has no fused
    kernel), while a CPU model runs the fused CPU kernel, which counts differently. This mode
    asks the model's device which kernel it would pick (``torch._fused_sdp_choice`` on
    one-row stand-ins) and runs the fused CPU kernel on meta when that is the choice."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.device = device

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is _SDPA and self.device.type == "cpu":
            out = self._flash(args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)

    def _flash(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
        bound = dict(_SDPA_DEFAULTS)
        bound.update(zip(_SDPA_NAMES, args))
        bound.update(kwargs)
        q, k, v, mask = bound["query"], bound["key"], bound["value"], bound["attn_mask"]
        if not (isinstance(q, torch.Tensor) and q.is_meta):
            return None
        dev = self.device

        def proxy(t: Any) -> Any:
            if not isinstance(t, torch.Tensor):
                return t
            if t.dim() == 0 or t.shape[-1] == 0:
                return torch.empty(t.shape, dtype=t.dtype, device=dev)
            return torch.empty(t.shape[-1], dtype=t.dtype, device=dev).expand(t.shape)

        try:
            choice = torch._fused_sdp_choice(
                proxy(q), proxy(k), proxy(v), proxy(mask), bound["dropout_p"],
                bound["is_causal"], scale=bound["scale"], enable_gqa=bool(bound["enable_gqa"]))
        except (RuntimeError, TypeError):
            return None
        if int(choice) != 1:  # not the fused (flash) CPU kernel: the math path, as on meta
            return None
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            mask = torch.where(mask.logical_not(), float("-inf"), 0.0).to(q.dtype)
        out: torch.Tensor = _FLASH_CPU(q, k, v, bound["dropout_p"], bound["is_causal"],
                                       attn_mask=mask, scale=bound["scale"])[0]
        return out
