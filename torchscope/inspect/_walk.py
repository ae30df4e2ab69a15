"""The walk behind :mod:`torchscope.inspect`: one pass over a module tree that reads every
tensor once, finds tensors that share memory, adds tie-aware totals per block and builds the
frozen module and parameter records (through draft classes of the same slot layout, which is
several times cheaper than the frozen dataclass constructor).

>>> from torchscope.inspect._walk import _walk_nodes
>>> import torchscope
>>> len(_walk_nodes(torchscope.examples.MLP()).nodes)
4
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]

from torchscope._torch import device_name, dtensor_type, dtype_name, fsdp_module_type, is_lazy
from torchscope.records import Finding, ModuleRecord, ParamKind, ParamRecord, TiedGroup
from torchscope.tying import declares_ties, stored_bytes, tied_groups, ties_of, unique_size

__all__: list[str] = []

_PARAM, _BUF, _NPBUF = ParamKind.PARAMETER, ParamKind.BUFFER, ParamKind.BUFFER_NONPERSISTENT


class _Node:
    """Per-module scratch data while walking (turned into a frozen record at the end).

    ``s_*`` sum the module's own tensors that share memory with nothing else; ``t_*`` are the
    subtree totals (simple parts summed bottom-up, shared parts added tie-aware per node).
    Numbers and empty parts default to class attributes so that creating a node stays cheap.
    """

    __slots__ = (
        "aliases", "buffer_names", "children", "depth", "devices", "dtypes", "lazy", "module",
        "own_buffers", "own_lazy", "own_params", "param_names", "parent", "path", "s_bbytes",
        "s_buffers", "s_params", "s_pbytes", "s_trainable", "shared", "t_bbytes", "t_buffers",
        "t_params", "t_pbytes", "t_trainable",
    )

    def __init__(self, module: nn.Module, path: str, depth: int, parent: _Node | None) -> None:
        self.module = module
        self.path = path
        self.depth = depth
        self.parent = parent
        self.children: list[str] | None = None
        self.aliases: list[str] | None = None
        self.param_names: tuple[str, ...] = ()
        self.buffer_names: tuple[str, ...] = ()
        self.dtypes: tuple[str, ...] = ()
        self.devices: tuple[str, ...] = ()
        self.shared: list[tuple[torch.Tensor, ParamKind]] | None = None
        self.s_params = self.s_trainable = self.s_buffers = self.s_pbytes = self.s_bbytes = 0
        self.t_params = self.t_trainable = self.t_buffers = self.t_pbytes = self.t_bbytes = 0
        self.own_lazy = self.lazy = 0
        self.own_params = self.own_buffers = -1  # set only for nodes with shared tensors






def _local(t: torch.Tensor, dtensor: type | None) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself otherwise)."""
    if dtensor is not None and isinstance(t, dtensor):
        local: torch.Tensor = t._local_tensor  # type: ignore[attr-defined]
        return local
    return t


def _layout(t: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...], str]:
    """(global shape, local shape, placements, mesh) of a DTensor."""
    mesh = t.device_mesh  # type: ignore[attr-defined]
    placements = tuple(str(p) for p in t.placements)  # type: ignore[attr-defined]
    mesh_text = f"{mesh.device_type}{tuple(mesh.mesh.shape)}"
    names = getattr(mesh, "mesh_dim_names", None)
    if names:
        mesh_text += "[" + ",".join(names) + "]"
    return tuple(t.shape), tuple(t._local_tensor.shape), placements, mesh_text  # type: ignore[attr-defined]


# Records are built by the thousand: a frozen dataclass's generated __init__ sets each field
# through object.__setattr__ (~90 ns a field, 2 us for a ModuleRecord). A "draft" class with
# the record's exact slot layout takes plain attribute stores, and assigning ``__class__``
# then turns it into a genuine record (CPython allows it for identical layouts). _check_drafts
# proves it at import against the dataclass's own constructor; where it fails (another
# Python, a record field added without updating the builders) the records are built normally.
class _ModuleDraft:
    __slots__ = ModuleRecord.__slots__


class _ParamDraft:
    __slots__ = ParamRecord.__slots__


def _module_record(
    path: str, type_name: str, depth: int, parent: str | None, children: tuple[str, ...],
    aliases: tuple[str, ...], param_names: tuple[str, ...], buffer_names: tuple[str, ...],
    own_params: int, own_buffers: int, total_params: int, trainable_params: int,
    total_buffers: int, param_bytes: int, buffer_bytes: int, lazy_tensors: int,
    dtypes: tuple[str, ...], devices: tuple[str, ...], training: bool, tags: tuple[str, ...],
) -> ModuleRecord:
    """``ModuleRecord(...)`` (no calls traced), built through its draft class."""
    r: Any = _new(_ModuleDraft)
    r.path = path
    r.type_name = type_name
    r.depth = depth
    r.parent = parent
    r.children = children
    r.aliases = aliases
    r.param_names = param_names
    r.buffer_names = buffer_names
    r.own_params = own_params
    r.own_buffers = own_buffers
    r.total_params = total_params
    r.trainable_params = trainable_params
    r.total_buffers = total_buffers
    r.param_bytes = param_bytes
    r.buffer_bytes = buffer_bytes
    r.lazy_tensors = lazy_tensors
    r.dtypes = dtypes
    r.devices = devices
    r.training = training
    r.tags = tags
    r.calls = ()
    r.called = None
    r.__class__ = ModuleRecord
    return r  # type: ignore[no-any-return]


def _param_record(
    name: str, module_path: str, shape: tuple[int, ...] | None, dtype: str, device: str,
    numel: int | None, nbytes: int | None, requires_grad: bool, kind: ParamKind,
) -> ParamRecord:
    """``ParamRecord(...)`` of a plain tensor (no aliases, not lazy, no tie group, no DTensor
    layout), built through its draft class."""
    r: Any = _new(_ParamDraft)
    r.name = name
    r.aliases = ()
    r.module_path = module_path
    r.shape = shape
    r.dtype = dtype
    r.device = device
    r.numel = numel
    r.nbytes = nbytes
    r.requires_grad = requires_grad
    r.lazy = False
    r.tie_group = None
    r.kind = kind
    r.global_shape = None
    r.local_shape = None
    r.placements = None
    r.mesh = None
    r.__class__ = ParamRecord
    return r  # type: ignore[no-any-return]


_new = object.__new__


def _with_calls(m: ModuleRecord, calls: tuple[Any, ...], called: bool) -> ModuleRecord:
    """``replace(m, calls=calls, called=called)`` through the draft class (a traced summary
    copies every module record once; ``dataclasses.replace`` costs several times more)."""
    r: Any = _new(_ModuleDraft)
    r.path = m.path
    r.type_name = m.type_name
    r.depth = m.depth
    r.parent = m.parent
    r.children = m.children
    r.aliases = m.aliases
    r.param_names = m.param_names
    r.buffer_names = m.buffer_names
    r.own_params = m.own_params
    r.own_buffers = m.own_buffers
    r.total_params = m.total_params
    r.trainable_params = m.trainable_params
    r.total_buffers = m.total_buffers
    r.param_bytes = m.param_bytes
    r.buffer_bytes = m.buffer_bytes
    r.lazy_tensors = m.lazy_tensors
    r.dtypes = m.dtypes
    r.devices = m.devices
    r.training = m.training
    r.tags = m.tags
    r.calls = calls
    r.called = called
    r.__class__ = ModuleRecord
    return r  # type: ignore[no-any-return]


def _plain_module_record(*args: Any) -> ModuleRecord:
    return ModuleRecord(*args)


def _plain_param_record(name: str, module_path: str, shape: tuple[int, ...] | None, dtype: str,
                        device: str, numel: int | None, nbytes: int | None,
                        requires_grad: bool, kind: ParamKind) -> ParamRecord:
    return ParamRecord(name, (), module_path, shape, dtype, device, numel, nbytes,
                       requires_grad, False, None, kind)


def _plain_with_calls(m: ModuleRecord, calls: tuple[Any, ...], called: bool) -> ModuleRecord:
    return replace(m, calls=calls, called=called)


def _check_drafts() -> bool:
    """Whether the draft builders make records equal to the dataclass constructor's."""
    margs: tuple[Any, ...] = ("a.b", "Linear", 2, "a", ("a.b.c",), ("x",), ("weight",),
                              ("running",), 1, 2, 3, 4, 5, 6, 7, 8, ("float32",), ("cpu",),
                              True, ("compiled",))
    pargs: tuple[Any, ...] = ("a.w", "a", (2, 3), "float32", "cpu", 6, 24, True,
                              ParamKind.BUFFER)
    try:
        fast_m, fast_p = _module_record(*margs), _param_record(*pargs)
        ok = (type(fast_m) is ModuleRecord and type(fast_p) is ParamRecord
              and fast_m == ModuleRecord(*margs) and fast_p == _plain_param_record(*pargs)
              and repr(fast_m) == repr(ModuleRecord(*margs))
              and _with_calls(fast_m, (), True) == replace(fast_m, calls=(), called=True))
    except (TypeError, AttributeError):
        return False
    return ok


if not _check_drafts():  # pragma: no cover - CPython with unchanged records takes the fast path
    _module_record = _plain_module_record  # type: ignore[assignment]
    _param_record = _plain_param_record
    _with_calls = _plain_with_calls



Names = dict[int, list[tuple[str, ParamKind]]]

_LAZY, _DTENSOR, _SPARSE = 1, 2, 3  # tensors that take the careful path (0: a plain tensor)
_STRIDED = torch.strided
Tags = tuple[str, ...]
NameSet = tuple[str, ...]


class _Walk:
    """The result of one walk: pre-order nodes, every name of every tensor, the ids of tensors
    that need the tie-aware path, and (in the common case) the parameter records."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        # (number of nodes before it, module, path) of every second registration of a module
        self.alias_events: list[tuple[int, nn.Module, str]] = []
        # several names, memory shared with another tensor object, or strided: tie-aware path
        self.shared: set[int] = set()
        self.maybe_tied = False  # several names, or one storage under several tensor objects
        self.declares_ties = False  # a module declares transformers-style tied weights
        self.params: list[ParamRecord] = []  # first sight of every parameter, in order
        self.buffers: list[ParamRecord] = []  # ... and of every buffer
        self.merged: dict[tuple[NameSet, NameSet], NameSet] = {}
        # (path of the edge, path of the ancestor it leads back to) for every cycle
        self.cycles: list[tuple[str, str]] = []
        # (module path, numel, nbytes) of quantized weights packed outside parameters
        self.packed: list[tuple[str, int, int]] = []


def _walk_nodes(model: nn.Module) -> _Walk:
    """Pre-order nodes (as named_modules() dedups them) with their own simple sums, dtypes and
    devices; every name of every tensor; the tensors that need the tie-aware path (several
    names, or memory shared with another tensor object: same storage pointer, on meta the
    storage implementation; strided tensors count their unique bytes); a parameter record
    per tensor at its first sight. Every tensor attribute is read once."""
    w = _Walk()
    nodes, shared, merged = w.nodes, w.shared, w.merged
    odd_seen: set[int] = set()  # lazy, empty and DTensors: seen by identity
    append_node = nodes.append
    p_recs, b_recs = w.params, w.buffers
    seen: dict[int, _Node] = {}
    first: dict[object, int] = {}
    stack: list[tuple[nn.Module, str, int, _Node | None]] = [(model, "", 0, None)]
    pop, push = stack.pop, stack.append
    dtensor = dtensor_type()
    type_kinds: dict[type, int] = {}
    dtype_info: dict[torch.dtype, tuple[str, int, NameSet]] = {}
    device_info: dict[torch.device, tuple[str, NameSet]] = {}
    declares: dict[type, int] = {}
    shapes: dict[torch.Size, tuple[int, ...]] = {}
    local_names: dict[tuple[str, ...], tuple[str, ...]] = {}
    param_kind, buffer_kind, nonpersistent_kind = _PARAM, _BUF, _NPBUF
    make_param = _param_record
    while stack:
        module, path, depth, parent = pop()
        node = seen.get(id(module))
        if node is not None and _is_ancestor(node, parent):  # a cycle: not followed
            w.cycles.append((path, node.path))
            continue
        if node is not None:  # registered under a second name: an alias of that module
            if node.aliases is None:
                node.aliases = []
            node.aliases.append(path)
            w.alias_events.append((len(nodes), module, path))
            names: Names = {}
            _alias_names(module, path, names, shared)
            w.maybe_tied = True
            continue
        node = _Node(module, path, depth, parent)
        seen[id(module)] = node
        cls = type(module)
        tied = declares.get(cls)
        if tied is None:  # 1: declares tied weights, 2: may hold packed quantized weights
            tied = declares[cls] = (1 if declares_ties(cls)
                                    else 2 if _QUANTIZED in cls.__module__ else 0)
        if tied:
            if tied == 1:
                w.declares_ties = True
            else:
                _note_packed(w, module, path)
        prefix = path + "." if path else ""
        params = module._parameters
        buffers = module._buffers
        if type(params) is not dict or type(buffers) is not dict:  # TorchScript wrappers
            params, buffers = dict(params.items()), dict(buffers.items())
        if params or buffers:
            nonpersistent = module._non_persistent_buffers_set
            dtypes: NameSet = ()
            devices: NameSet = ()
            holes = False
            for own, is_param in ((params, True), (buffers, False)):
                for k, v in own.items():
                    if v is None:
                        holes = True
                        continue
                    if is_param:
                        kind = param_kind
                    else:
                        kind = nonpersistent_kind if k in nonpersistent else buffer_kind
                    full = prefix + k
                    dt = v.dtype
                    dinfo = dtype_info.get(dt)
                    if dinfo is None:
                        text = dtype_name(dt)
                        dinfo = dtype_info[dt] = (text, dt.itemsize, (text,))
                    dev = v.device
                    vinfo = device_info.get(dev)
                    if vinfo is None:
                        text = device_name(dev)
                        vinfo = device_info[dev] = (text, (text,))
                    if dtypes is not dinfo[2]:
                        dtypes = _merge(dtypes, dinfo[2], merged)
                    if devices is not vinfo[1]:
                        devices = _merge(devices, vinfo[1], merged)
                    tcls = type(v)
                    special = type_kinds.get(tcls)
                    if special is None:
                        special = type_kinds[tcls] = (
                            _LAZY if issubclass(tcls, UninitializedTensorMixin)
                            else _DTENSOR if dtensor is not None and issubclass(tcls, dtensor)
                            else 0)
                    if special == _LAZY:
                        node.own_lazy += 1
                    elif v.layout is not _STRIDED or v.is_nested:
                        special = _SPARSE
                    tid = id(v)
                    if special:
                        if tid in odd_seen:  # another name of a tensor seen before
                            shared.add(tid)
                            w.maybe_tied = True
                            if special != _LAZY:
                                _add_simple(node, v, kind, dtensor)
                            continue
                        odd_seen.add(tid)
                        (p_recs if is_param else b_recs).append(
                            _special_record(v, full, path, kind, special, dtensor))
                        if special == _DTENSOR:
                            _add_simple(node, v, kind, dtensor)
                            _note_storage(w, _local(v, dtensor), tid, first)
                        elif special == _SPARSE:
                            _add_simple(node, v, kind, dtensor)
                        continue
                    n = v.numel()
                    nbytes = n * dinfo[1]
                    size = v.shape
                    shape = shapes.get(size)  # one tuple per distinct shape: fewer objects
                    if shape is None:
                        shape = shapes[size] = tuple(size)
                    if is_param:
                        grad = v.requires_grad
                        node.s_params += n
                        node.s_pbytes += nbytes
                        if grad:
                            node.s_trainable += n
                        p_recs.append(make_param(full, path, shape, dinfo[0],
                                                 vinfo[0], n, nbytes, grad, kind))
                    else:
                        node.s_buffers += n
                        node.s_bbytes += nbytes
                        b_recs.append(make_param(full, path, shape, dinfo[0],
                                                 vinfo[0], n, nbytes, v.requires_grad, kind))
                    # Memory seen before: the same tensor under another name, or another
                    # tensor over it (the same pointer on two devices is sorted out later).
                    # Either way the tie-aware path recounts everything it touches.
                    if n:
                        if not v.is_contiguous():  # strided or expanded: its unique bytes
                            shared.add(tid)
                        key: object
                        try:
                            storage = v.untyped_storage()
                            key = storage.data_ptr() or (dev, storage._cdata)
                        except RuntimeError:  # a wrapper subclass with no storage: identity
                            key = ("id", tid)
                        other = first.get(key)
                        if other is None:
                            first[key] = tid
                        else:
                            shared.add(tid)
                            shared.add(other)
                            w.maybe_tied = True
                    elif tid in odd_seen:
                        shared.add(tid)
                        w.maybe_tied = True
                    else:
                        odd_seen.add(tid)
            if holes:  # None entries are not tensors
                node.param_names = tuple(k for k, v in params.items() if v is not None)
                node.buffer_names = tuple(k for k, v in buffers.items() if v is not None)
            else:
                if params:
                    local = tuple(params)
                    node.param_names = local_names.setdefault(local, local)
                if buffers:
                    local = tuple(buffers)
                    node.buffer_names = local_names.setdefault(local, local)
            node.dtypes = dtypes
            node.devices = devices
        append_node(node)
        if parent is not None:
            siblings = parent.children
            if siblings is None:
                parent.children = [path]
            else:
                siblings.append(path)
        children = module._modules
        if children:
            depth += 1
            for name, child in reversed(children.items()):
                if child is not None:
                    push((child, prefix + name, depth, node))
    return w


def _merge(a: NameSet, b: NameSet, cache: dict[tuple[NameSet, NameSet], NameSet]) -> NameSet:
    """The sorted union of two sorted name tuples, interned: the same union is one object,
    so that most merges end at an identity check."""
    if not a:
        return b
    out = cache.get((a, b))
    if out is None:
        union = tuple(sorted({*a, *b}))
        out = cache[(a, b)] = cache.setdefault((union, union), union)
    return out


def _special_record(t: torch.Tensor, name: str, path: str, kind: ParamKind, special: int,
                    dtensor: type | None) -> ParamRecord:
    """The parameter record of a lazy tensor, a DTensor, a sparse or a nested tensor (sizes
    unknown / global layout / stored bytes; a nested tensor has no single shape)."""
    if special == _LAZY:
        return ParamRecord(
            name, (), path, None, dtype_name(t.dtype), device_name(t.device),
            None, None, bool(t.requires_grad), True, None, kind,
        )
    if special == _SPARSE:
        shape = None if t.is_nested else tuple(t.shape)
        return ParamRecord(
            name, (), path, shape, dtype_name(t.dtype), device_name(t.device),
            t.numel(), stored_bytes(t), bool(t.requires_grad), False, None, kind,
        )
    global_shape, local_shape, placements, mesh = _layout(t)
    local = _local(t, dtensor)
    return ParamRecord(
        name, (), path, global_shape, dtype_name(t.dtype), device_name(local.device),
        t.numel(), local.numel() * t.element_size(), t.requires_grad, False, None, kind,
        global_shape, local_shape, placements, mesh,
    )


def _note_storage(w: _Walk, v: torch.Tensor, tid: int, first: dict[object, int]) -> None:
    """Mark ``v`` for the tie-aware path when it is strided or its storage was seen before."""
    if v.numel() == 0:
        return
    if not v.is_contiguous():
        w.shared.add(tid)
    key: object
    try:
        storage = v.untyped_storage()
        key = storage.data_ptr() or (v.device, storage._cdata)
    except RuntimeError:  # a wrapper subclass with no storage: by identity
        key = ("id", tid)
    other = first.setdefault(key, tid)
    if other != tid:
        w.shared.add(tid)
        w.shared.add(other)
        w.maybe_tied = True


def _add_simple(node: _Node, t: torch.Tensor, kind: ParamKind, dtensor: type | None,
                sign: int = 1) -> None:
    """Add (or with ``sign=-1`` take back) one tensor to the node's simple sums."""
    n = t.numel()
    if t.layout is not _STRIDED or t.is_nested:
        nbytes = stored_bytes(t)
    else:
        nbytes = (n if dtensor is None else _local(t, dtensor).numel()) * t.element_size()
    if kind is _PARAM:
        node.s_params += sign * n
        node.s_pbytes += sign * nbytes
        if t.requires_grad:
            node.s_trainable += sign * n
    else:
        node.s_buffers += sign * n
        node.s_bbytes += sign * nbytes


def _all_names(w: _Walk) -> Names:
    """Every name of every tensor, in walk order (read again: only the tie-aware path needs
    them)."""
    names: Names = {}
    events = w.alias_events
    e = 0
    for i, node in enumerate(w.nodes):
        while e < len(events) and events[e][0] == i:
            _alias_names(events[e][1], events[e][2], names, w.shared)
            e += 1
        prefix = node.path + "." if node.path else ""
        for k, t, kind in _node_tensors(node):
            names.setdefault(id(t), []).append((prefix + k, kind))
    for _, module, path in events[e:]:
        _alias_names(module, path, names, w.shared)
    return names


def _node_tensors(node: _Node) -> Iterator[tuple[str, torch.Tensor, ParamKind]]:
    """The module's own (name, tensor, kind), parameters first (read again: the walk keeps
    them only in the common case's records)."""
    module = node.module
    return _own_items(module._parameters, module._buffers, module._non_persistent_buffers_set)


def _alias_names(module: nn.Module, path: str, names: Names, shared: set[int]) -> None:
    """Every name under a second registration of ``module`` (as ``named_parameters(
    remove_duplicate=False)`` lists them), iteratively; edges back to an ancestor (a cycle)
    are not followed."""
    for mod_name, sub in _all_paths(module, path):
        prefix = mod_name + "." if mod_name else ""
        for k, t, kind in _own_items(sub._parameters, sub._buffers,
                                     sub._non_persistent_buffers_set):
            names.setdefault(id(t), []).append((prefix + k, kind))
            shared.add(id(t))


def _all_paths(module: nn.Module, path: str) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules(prefix=path, remove_duplicate=False)`` without recursion, stopping at
    edges that lead back to an ancestor."""
    stack: list[tuple[str, nn.Module, frozenset[int]]] = [(path, module, frozenset())]
    while stack:
        here, sub, above = stack.pop()
        yield here, sub
        above = above | {id(sub)}
        base = here + "." if here else ""
        for name, child in reversed(list(sub._modules.items())):
            if child is not None and id(child) not in above:
                stack.append((base + name, child, above))


def _is_ancestor(node: _Node, parent: _Node | None) -> bool:
    """Whether ``node`` is ``parent`` or one of its ancestors."""
    while parent is not None:
        if parent is node:
            return True
        parent = parent.parent
    return False


_QUANTIZED = ".quantized"  # torch.ao.nn.quantized(.dynamic) modules pack their weights


def _note_packed(w: _Walk, module: nn.Module, path: str) -> None:
    """Record the weights a quantized module holds packed (a ``torch.ScriptObject``, neither
    parameter nor buffer), read through the module's own ``_weight_bias()``."""
    packed = module.__dict__.get("_packed_params")
    getter = getattr(module, "_weight_bias", None)
    if not isinstance(packed, torch.ScriptObject) or not callable(getter):
        return
    try:
        tensors = [t for t in getter() if isinstance(t, torch.Tensor)]
    except (RuntimeError, TypeError, ValueError):
        w.packed.append((path, -1, -1))  # present but unreadable: unknown, never 0
        return
    w.packed.append((path, sum(t.numel() for t in tensors),
                     sum(t.numel() * t.element_size() for t in tensors)))


def _own_items(
    params: dict[str, nn.Parameter | None], buffers: dict[str, torch.Tensor | None],
    nonpersistent: set[str],
) -> Iterator[tuple[str, torch.Tensor, ParamKind]]:
    for k, v in params.items():
        if v is not None:
            yield k, v, _PARAM
    for k, b in buffers.items():
        if b is not None:
            yield k, b, _NPBUF if k in nonpersistent else _BUF








def _account(w: _Walk) -> None:
    """Fill own and tie-aware subtree totals of every node (DTensor: global counts, local
    bytes). The walk summed every tensor into its module; tensors on the tie-aware path are
    taken back out of those simple sums and counted once per subtree here."""
    nodes, merged = w.nodes, w.merged
    if w.shared:
        dtensor = dtensor_type()
        shared_ids = w.shared
        for node in nodes:
            if not node.dtypes:  # no tensors
                continue
            for _, t, kind in _node_tensors(node):
                if id(t) in shared_ids and not is_lazy(t):
                    _add_simple(node, t, kind, dtensor, -1)
                    if node.shared is None:
                        node.shared = []
                    node.shared.append((t, kind))
    # bottom-up sums of the simple parts (pre-order: children come after their parent)
    for node in reversed(nodes):
        if node.dtypes:  # it has tensors
            node.t_params += node.s_params
            node.t_trainable += node.s_trainable
            node.t_buffers += node.s_buffers
            node.t_pbytes += node.s_pbytes
            node.t_bbytes += node.s_bbytes
            node.lazy += node.own_lazy
        elif node.children is None:
            continue  # a leaf without tensors adds nothing to its parent
        parent = node.parent
        if parent is not None:
            parent.t_params += node.t_params
            parent.t_trainable += node.t_trainable
            parent.t_buffers += node.t_buffers
            parent.t_pbytes += node.t_pbytes
            parent.t_bbytes += node.t_bbytes
            if node.lazy:
                parent.lazy += node.lazy
            dtypes = node.dtypes
            if dtypes and dtypes is not parent.dtypes:
                parent.dtypes = _merge(parent.dtypes, dtypes, merged)
                parent.devices = _merge(parent.devices, node.devices, merged)
            elif node.devices is not parent.devices:
                parent.devices = _merge(parent.devices, node.devices, merged)
    if not w.shared:
        return
    # tie-aware part: every node adds the unique size of the shared tensors in its subtree
    subtree: dict[_Node, dict[int, tuple[torch.Tensor, ParamKind]]] = {}
    for node in nodes:
        if not node.shared:
            continue
        p_numel, _, _, b_numel, _ = _unique_parts(node.shared)  # ties inside one module
        node.own_params = node.s_params + p_numel
        node.own_buffers = node.s_buffers + b_numel
        up: _Node | None = node
        while up is not None:
            bucket = subtree.setdefault(up, {})
            for t, kind in node.shared:
                if kind is _PARAM or id(t) not in bucket:  # a parameter anywhere counts as one
                    bucket[id(t)] = (t, kind)
            up = up.parent
    for node, bucket in subtree.items():
        p_numel, p_bytes, t_numel, b_numel, b_bytes = _unique_parts(list(bucket.values()))
        node.t_params += p_numel
        node.t_trainable += t_numel
        node.t_buffers += b_numel
        node.t_pbytes += p_bytes
        node.t_bbytes += b_bytes


def _unique_parts(
    tensors: Sequence[tuple[torch.Tensor, ParamKind]],
) -> tuple[int, int, int, int, int]:
    """Unique (param numel, param bytes, trainable numel, buffer numel, buffer bytes)."""
    params = [t for t, kind in tensors if kind is _PARAM]
    p_numel, p_bytes = _unique_size(params)
    t_numel, _ = _unique_size([t for t in params if t.requires_grad])
    b_numel, b_bytes = _unique_size([t for t, kind in tensors if kind is not _PARAM])
    return p_numel, p_bytes, t_numel, b_numel, b_bytes


def _unique_size(tensors: Sequence[torch.Tensor]) -> tuple[int, int]:
    """:func:`unique_size` with DTensors counted by their global elements (bytes stay local,
    as everywhere in a report): tied DTensors otherwise count only this rank's shard."""
    dtensor = dtensor_type()
    sharded = [] if dtensor is None else [t for t in tensors if isinstance(t, dtensor)]
    if dtensor is None or not sharded:
        return unique_size(tensors)
    _, nbytes = unique_size(tensors)
    plain_numel, _ = unique_size([t for t in tensors if not isinstance(t, dtensor)])
    return plain_numel + sum({id(t): t.numel() for t in sharded}.values()), nbytes


_SCRIPTED = ("torchscript",)


def _module_records(w: _Walk) -> list[ModuleRecord]:
    _account(w)
    fsdp = fsdp_module_type()  # None unless FSDP was imported: no module can be one then
    out: list[ModuleRecord] = []
    append = out.append
    make = _module_record
    empty: tuple[str, ...] = ()
    type_info: dict[type, tuple[str, bool, Tags]] = {}
    for node in w.nodes:
        module = node.module
        cls = type(module)
        info = type_info.get(cls)
        if info is None:
            cls_name = cls.__name__
            info = type_info[cls] = (
                cls_name, cls_name.startswith("Parametrized"),
                ("compiled",) if cls_name == "OptimizedModule"
                else ("fsdp",) if fsdp is not None and issubclass(cls, fsdp)
                else _SCRIPTED if issubclass(cls, torch.jit.ScriptModule) else empty,
            )
        cls_name, maybe_parametrized, tags = info
        if tags is _SCRIPTED:  # TorchScript: the class it was made from
            cls_name = str(getattr(module, "original_name", cls_name))
        if maybe_parametrized and hasattr(module, "parametrizations"):
            tags = ("parametrized",)
        parent = node.parent
        children, aliases = node.children, node.aliases
        if node.own_params < 0:
            own_params, own_buffers = node.s_params, node.s_buffers
        else:
            own_params, own_buffers = node.own_params, node.own_buffers
        append(make(
            node.path, cls_name, node.depth, None if parent is None else parent.path,
            empty if children is None else tuple(children),
            empty if aliases is None else tuple(aliases),
            node.param_names, node.buffer_names, own_params, own_buffers,
            node.t_params, node.t_trainable, node.t_buffers, node.t_pbytes, node.t_bbytes,
            node.lazy, node.dtypes, node.devices, module.training, tags,
        ))
    return out


def _params_and_ties(
    w: _Walk, *, findings: bool = False,
) -> tuple[tuple[ParamRecord, ...], tuple[TiedGroup, ...], tuple[Finding, ...]]:
    """Parameter records (parameters first, then buffers, in traversal order, as
    ``named_parameters``/``named_buffers`` list them), the tied groups among them and, with
    ``findings``, :func:`~torchscope.check_ties`'s findings, all from the one walk."""
    with_findings = findings and (w.maybe_tied or w.declares_ties)
    if not w.shared and not with_findings:  # every tensor has one name and its own memory
        return (*w.params, *w.buffers), (), ()
    nodes, shared_ids = w.nodes, w.shared
    names = _all_names(w)
    records: list[ParamRecord] = []
    tensors: list[torch.Tensor] = []
    seen: set[int] = set()
    dtensor = dtensor_type()
    shared_entries: list[tuple[torch.Tensor, list[str], int]] = []
    for want_param in (True, False):
        for node in nodes:
            if not node.dtypes:
                continue
            path = node.path
            for _, t, kind in _node_tensors(node):
                if (kind is _PARAM) is not want_param:
                    continue
                tid = id(t)
                if tid in seen:
                    continue
                seen.add(tid)
                tensors.append(t)
                all_names = names[tid]
                name = all_names[0][0]
                aliases = tuple(n for n, _ in all_names[1:]) if len(all_names) > 1 else ()
                if tid in shared_ids:
                    shared_entries.append((t, [n for n, _ in all_names], len(records)))
                if isinstance(t, UninitializedTensorMixin):
                    records.append(ParamRecord(
                        name, aliases, path, None, dtype_name(t.dtype), device_name(t.device),
                        None, None, bool(t.requires_grad), True, None, kind,
                    ))
                    continue
                n = t.numel()
                if dtensor is not None and isinstance(t, dtensor):
                    global_shape, local_shape, placements, mesh = _layout(t)
                    local = _local(t, dtensor)
                    records.append(ParamRecord(
                        name, aliases, path, global_shape, dtype_name(t.dtype),
                        device_name(local.device), n, local.numel() * t.element_size(),
                        t.requires_grad, False, None, kind, global_shape, local_shape,
                        placements, mesh,
                    ))
                    continue
                if t.layout is not _STRIDED or t.is_nested:
                    records.append(replace(
                        _special_record(t, name, path, kind, _SPARSE, dtensor), aliases=aliases))
                    continue
                records.append(ParamRecord(
                    name, aliases, path, tuple(t.shape), dtype_name(t.dtype),
                    device_name(t.device), n, n * t.element_size(), t.requires_grad, False,
                    None, kind,
                ))
    tie_findings: tuple[Finding, ...] = ()
    if with_findings:
        owners = [(n.path + "." if n.path else "", n.module) for n in nodes
                  if declares_ties(type(n.module)) is True]
        letter = {_PARAM: "p", _BUF: "b", _NPBUF: "n"}
        tied, tie_findings = ties_of(
            tensors, [[(n, letter[k]) for n, k in names[id(t)]] for t in tensors], owners)
        position_of = {r.name: i for i, r in enumerate(records)}
    else:
        tied = tied_groups(shared_entries)
        position_of = {entry_names[0]: pos for _t, entry_names, pos in shared_entries}
    for index, group in enumerate(tied):
        for name in group.names:
            position = position_of.get(name)
            if position is not None:
                records[position] = replace(records[position], tie_group=index)
    return tuple(records), tied, tie_findings
