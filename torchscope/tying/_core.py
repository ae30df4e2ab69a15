"""Shared-tensor detection: one object under several names, shared storage, overlapping bytes.

Tensors are grouped by storage identity (device + storage pointer; on meta, where
``data_ptr()`` is 0, the storage implementation's identity), then each storage is split into
clusters of tensors that share at least one byte: the byte ranges of every tensor, sorted,
merged with a running maximum of the range end. A dense tensor (contiguous in some order of its
dimensions) is one range; a strided view (``w[:, ::2]``, ``expand``) is the exact set of ranges
its elements cover, so interleaved views that share no byte are not tied. A cluster of one tensor
object reachable under several names is an ``alias`` tie; several tensor objects over exactly the
same bytes with the same dtype, shape and strides are ``shared_storage``; anything else that
overlaps is ``overlap``.

>>> import torchscope
>>> [g.names for g in torchscope.find_tied(torchscope.examples.SharedMLP())]
[('2.weight', '4.weight'), ('2.bias', '4.bias')]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined,unused-ignore]

from torchscope._torch import gc_paused, plain_reads
from torchscope._units import short_repr
from torchscope.errors import InputSpecError
from torchscope.records import TiedGroup, TieKind

__all__ = [
    "declares_ties",
    "find_tied",
    "merge_ranges",
    "storage_key",
    "stored_bytes",
    "tensor_extent",
    "tied_groups",
    "unique_size",
]


StorageKey = tuple[str, int, int]


def storage_key(t: torch.Tensor) -> StorageKey:
    """Identity of the memory behind ``t``: ``(device, storage pointer, impl id)``.

    Off meta, two tensors share memory when their storages have the same device and data
    pointer (the impl id is then 0). On meta every ``data_ptr()`` is 0, so the storage
    implementation's identity tells them apart.

    >>> w = torch.zeros(4)
    >>> storage_key(w) == storage_key(w[1:])
    True
    """
    _require_tensor(t, "storage_key")
    try:
        storage = t.untyped_storage()  # (a DTensor's: its local shard's, through dispatch)
        ptr = storage.data_ptr()
    except RuntimeError:  # a wrapper subclass with no storage of its own: by identity
        return (str(t.device), 0, id(t))
    if ptr == 0:
        return (str(t.device), 0, storage._cdata)
    return (str(t.device), ptr, 0)


def _storageless(t: torch.Tensor) -> bool:
    """A wrapper subclass (``_make_wrapper_subclass``) whose storage has no data pointer."""
    try:
        t.untyped_storage().data_ptr()
    except RuntimeError:
        return True
    return False


def _unstrided(t: torch.Tensor) -> bool:
    """Sparse (COO, CSR, CSC, BSR, BSC) and nested tensors: no single strided storage."""
    return t.layout is not torch.strided or t.is_nested


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes ``t`` holds: a dense tensor ``numel * itemsize``; a sparse tensor its values and
    index tensors; a nested tensor its packed values (its per-component sizes not included).

    >>> stored_bytes(torch.eye(3).to_sparse())  # 3 values (4 B) + 2x3 int64 indices
    60
    """
    _require_tensor(t, "stored_bytes")
    layout = t.layout
    if layout is torch.sparse_coo:
        return stored_bytes(t._values()) + stored_bytes(t._indices())
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return (stored_bytes(t.values()) + stored_bytes(t.crow_indices())
                + stored_bytes(t.col_indices()))
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return (stored_bytes(t.values()) + stored_bytes(t.ccol_indices())
                + stored_bytes(t.row_indices()))
    return t.numel() * t.element_size()


def tensor_extent(t: torch.Tensor) -> tuple[int, int]:
    """Byte range ``[start, end)`` of ``t`` inside its storage (strided views included).

    The range spans from the first to the last byte ``t`` can touch; a strided view may leave
    gaps inside it (see :func:`unique_size` for exact counts).

    >>> tensor_extent(torch.zeros(4, 4)[1:3])
    (16, 48)
    """
    _require_tensor(t, "tensor_extent")
    itemsize = t.element_size()
    start = int(t.storage_offset()) * itemsize
    if t.numel() == 0:
        return (start, start)
    span = 1 + sum((int(size) - 1) * abs(int(stride))
                   for size, stride in zip(t.shape, t.stride()))
    return (start, start + span * itemsize)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge byte ranges into disjoint ones (sort, then a running maximum of the end).

    >>> merge_ranges([(0, 4), (8, 12), (2, 6)])
    [(0, 6), (8, 12)]
    """
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


# ---------------------------------------------------------------------------------------------
# exact byte sets of one storage


def _memory(t: torch.Tensor) -> torch.Tensor:
    """The tensor whose storage holds ``t``'s bytes on this process (a DTensor's local shard)."""
    module = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(module, "DTensor", None) if module is not None else None
    if dtensor is not None and isinstance(t, dtensor):
        local: torch.Tensor = t._local_tensor  # type: ignore[attr-defined,unused-ignore]
        return local
    return t


def _is_dense(t: torch.Tensor) -> bool:
    """True when ``t``'s elements cover ``[offset, offset + numel)`` exactly once (contiguous
    in some order of its dimensions)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _never_overlaps(t: torch.Tensor) -> bool:
    """True when no two elements of ``t`` share a byte: each stride, in increasing order, steps
    past the whole extent of the smaller ones (``a[::2]``, ``w[:, ::3]``, a transpose).

    >>> _never_overlaps(torch.zeros(10)[::2]), _never_overlaps(torch.zeros(3).expand(2, 3))
    (True, False)
    """
    extent = 1
    for stride, size in sorted((int(st), int(sz)) for sz, st in zip(t.shape, t.stride())
                               if sz != 1):
        if stride < extent:
            return False
        extent = stride * (size - 1) + extent
    return True


def _byte_runs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact byte ranges ``(starts, ends)`` (int64, unsorted, may repeat) covered by ``t``.

    Dimensions of stride 0 add no bytes and are dropped; the innermost contiguous dimensions
    collapse into one run, so ``w[:, :k]`` is one run per row and ``a[::2]`` one per element.
    """
    itemsize = t.element_size()
    dims = sorted((int(st), int(sz)) for sz, st in zip(t.shape, t.stride()) if sz != 1 and st)
    run = 1
    rest: list[tuple[int, int]] = []
    for stride, size in dims:
        if not rest and stride == run:
            run *= size
        else:
            rest.append((stride, size))
    starts = torch.tensor([int(t.storage_offset())], dtype=torch.int64)
    for stride, size in rest:
        starts = (starts[:, None] + torch.arange(size, dtype=torch.int64) * stride).reshape(-1)
    starts = starts * itemsize
    return starts, starts + run * itemsize


@dataclass(slots=True)
class _Cluster:
    """Members (indices into the caller's list) that share bytes, with their unique size."""

    members: list[int]
    nbytes: int
    numel: int


def _clusters(tensors: Sequence[torch.Tensor]) -> list[_Cluster]:
    """Split tensors over one storage into clusters that share at least one byte.

    Every tensor becomes its exact byte ranges; ranges sorted by start are merged with a running
    maximum of the end (touching ranges do not merge). Tensors with ranges in one merged segment
    are connected; clusters are the connected components. Unique elements are counted in the
    item size of the range that opens each segment. Tensors must be non-empty.
    """
    if all(_is_dense(t) for t in tensors):
        return _dense_clusters(tensors)
    if len(tensors) == 1 and _never_overlaps(tensors[0]):
        # one view whose elements never share a byte (``a[::2]``): its size needs no byte
        # ranges, which would take memory in proportion to its elements
        t = tensors[0]
        return [_Cluster([0], t.numel() * t.element_size(), t.numel())]
    return _strided_clusters(tensors)


def _dense_clusters(tensors: Sequence[torch.Tensor]) -> list[_Cluster]:
    items = []
    for i, t in enumerate(tensors):
        itemsize = t.element_size()
        start = int(t.storage_offset()) * itemsize
        items.append((start, start + t.numel() * itemsize, i, itemsize))
    items.sort()
    out: list[_Cluster] = []
    cur_start, cur_end, first, cur_item = items[0]
    members = [first]
    for start, end, i, itemsize in items[1:]:
        if start < cur_end:
            members.append(i)
            if end > cur_end:
                cur_end = end
        else:
            out.append(_Cluster(sorted(members), cur_end - cur_start,
                                (cur_end - cur_start) // cur_item))
            cur_start, cur_end, cur_item, members = start, end, itemsize, [i]
    out.append(_Cluster(sorted(members), cur_end - cur_start, (cur_end - cur_start) // cur_item))
    return out


def _strided_clusters(tensors: Sequence[torch.Tensor]) -> list[_Cluster]:
    n = len(tensors)
    parts = [_byte_runs(t) if not _is_dense(t) else _dense_run(t) for t in tensors]
    starts = torch.cat([s for s, _ in parts])
    ends = torch.cat([e for _, e in parts])
    labels = torch.cat([torch.full((len(s),), i, dtype=torch.int64)
                        for i, (s, _) in enumerate(parts)])
    itemsizes = torch.tensor([t.element_size() for t in tensors], dtype=torch.int64)
    order = torch.argsort(starts, stable=True)
    starts, ends, labels = starts[order], ends[order], labels[order]
    reach = torch.cummax(ends, 0).values
    opens = torch.ones_like(starts, dtype=torch.bool)
    opens[1:] = starts[1:] >= reach[:-1]
    segment = torch.cumsum(opens, 0) - 1
    first = torch.nonzero(opens).flatten()
    last = torch.cat([first[1:] - 1, torch.tensor([len(starts) - 1])])
    seg_bytes = reach[last] - starts[first]
    seg_numel = seg_bytes // itemsizes[labels[first]]
    # union the labels that meet in a segment (each with the segment's smallest label)
    pairs = torch.unique(segment * n + labels)
    pair_seg, pair_label = pairs // n, pairs % n
    pair_first = torch.ones_like(pair_seg, dtype=torch.bool)
    pair_first[1:] = pair_seg[1:] != pair_seg[:-1]
    seg_min = torch.empty(len(first), dtype=torch.int64)
    seg_min[pair_seg[pair_first]] = pair_label[pair_first]
    edges = torch.unique(pair_label * n + seg_min[pair_seg]).tolist()
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for code in edges:
        a, b = find(code // n), find(code % n)
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = torch.tensor([find(i) for i in range(n)], dtype=torch.int64)
    seg_root = roots[seg_min]
    nbytes = torch.zeros(n, dtype=torch.int64).index_add_(0, seg_root, seg_bytes).tolist()
    numel = torch.zeros(n, dtype=torch.int64).index_add_(0, seg_root, seg_numel).tolist()
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return [_Cluster(m, int(nbytes[r]), int(numel[r])) for r, m in sorted(members.items())]


def _dense_run(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    itemsize = t.element_size()
    start = int(t.storage_offset()) * itemsize
    return (torch.tensor([start], dtype=torch.int64),
            torch.tensor([start + t.numel() * itemsize], dtype=torch.int64))


def _by_storage(tensors: Iterable[tuple[int, torch.Tensor]]) -> dict[object, list[int]]:
    """Indices grouped by the storage holding their bytes (lazy and empty tensors left out)."""
    out: dict[object, list[int]] = {}
    for i, t in tensors:
        if (isinstance(t, UninitializedTensorMixin) or _unstrided(t)
                or _storageless(_memory(t))):
            continue  # sparse, nested and storage-less tensors tie by identity only
        m = _memory(t)
        if m.numel() == 0:
            continue
        storage = m.untyped_storage()
        try:
            ptr = storage.data_ptr()
        except RuntimeError:  # fake tensors have no data pointer
            ptr = 0
        key = (str(m.device), ptr) if ptr else (str(m.device), 0, storage._cdata)
        out.setdefault(key, []).append(i)
    return out


def unique_size(tensors: Sequence[torch.Tensor]) -> tuple[int, int]:
    """``(numel, nbytes)`` of ``tensors`` counting each unique byte of storage once.

    Exact for strided views too (``a[::2]`` counts half of ``a``, an expanded tensor its
    storage once). Elements are counted in the item size of the tensor whose range opens each
    merged segment (the dtype of the tensors, when they agree). Uninitialized (lazy) tensors
    are skipped. A DTensor counts its local shard.

    >>> w = torch.zeros(10)
    >>> unique_size([w, w[2:5], torch.zeros(3)])
    (13, 52)
    """
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
        raise InputSpecError(
            f"unique_size needs a sequence of tensors, got {type(tensors).__name__}: pass a "
            "list such as [model.weight, model.bias]")
    for t in tensors:
        _require_tensor(t, "unique_size")
    numel = 0
    nbytes = 0
    odd = {id(t): t for t in tensors if not isinstance(t, UninitializedTensorMixin)
           and _unstrided(t)}  # sparse and nested: each tensor object once
    for t in odd.values():
        numel += t.numel()
        nbytes += stored_bytes(t)
    for indices in _by_storage(enumerate(tensors)).values():
        for cluster in _clusters([_memory(tensors[i]) for i in indices]):
            numel += cluster.numel
            nbytes += cluster.nbytes
    return numel, nbytes


# ---------------------------------------------------------------------------------------------
# every tensor of a model, walked once


@dataclass(slots=True)
class _Walk:
    """The unique tensors of a model in ``named_parameters`` then ``named_buffers`` order.

    ``extra`` holds the second and later names of a tensor (by index); ``kinds`` is ``p``
    (parameter), ``b`` (persistent buffer) or ``n`` (non-persistent buffer) per name; ``owners``
    the modules (with their path prefix) that declare transformers-style tied weights.
    """

    tensors: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    extra: dict[int, list[str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    owners: list[tuple[str, nn.Module]] = field(default_factory=list)

    def all_names(self, i: int) -> list[str]:
        more = self.extra.get(i)
        return [self.names[i], *more] if more else [self.names[i]]


_Link = tuple[nn.Module, "_Link | None"]


def _require_tensor(t: object, where: str) -> None:
    if not isinstance(t, torch.Tensor):
        shown = short_repr(t)
        raise InputSpecError(
            f"{where} needs a torch.Tensor, got {shown} ({type(t).__name__}): pass a tensor")


def require_module(model: object, where: str) -> None:
    """Raise :class:`~torchscope.errors.InputSpecError` unless ``model`` is an ``nn.Module``.

    >>> require_module(torch.nn.Linear(1, 1), "find_tied")
    """
    if not isinstance(model, nn.Module):
        shown = short_repr(model)
        raise InputSpecError(
            f"{where} needs an nn.Module, got {shown} ({type(model).__name__}): pass the model"
        )

_DECLARES: dict[type, bool] = {}


def declares_ties(cls: type) -> bool:
    found = _DECLARES.get(cls)
    if found is None:
        found = _DECLARES[cls] = hasattr(cls, "_tied_weights_keys")
    return found


def _walk(model: nn.Module, *, details: bool = False) -> _Walk:
    """Every parameter and buffer once with all its names, in the order of
    ``named_parameters(remove_duplicate=False)`` then ``named_buffers(remove_duplicate=False)``
    (pre-order; a module registered under two names is visited under both). With ``details``,
    also the kind of every name and the modules that declare tied weights."""
    walk = _Walk()
    ids: dict[int, int] = {}
    tensors, names, extra, kinds = walk.tensors, walk.names, walk.extra, walk.kinds
    with_buffers: list[tuple[nn.Module, str]] = []
    # (module, name prefix, (module, parent link) chain): the chain finds cycles
    stack: list[tuple[nn.Module, str, _Link]] = [(model, "", (model, None))]
    pop, push = stack.pop, stack.append
    seen: set[int] = set()
    while stack:
        module, prefix, link = pop()
        if id(module) in seen:  # a second registration: a cycle when it is its own ancestor
            up = link[1]
            while up is not None and up[0] is not module:
                up = up[1]
            if up is not None:
                continue
        else:
            seen.add(id(module))
        if details and declares_ties(type(module)):
            walk.owners.append((prefix, module))
        params = module._parameters
        if params:
            for k, v in params.items():
                if v is None:
                    continue
                name = prefix + k
                i = ids.get(id(v))
                if i is None:
                    ids[id(v)] = len(tensors)
                    tensors.append(v)
                    names.append(name)
                else:
                    extra.setdefault(i, []).append(name)
                if details:
                    kinds[name] = "p"
        if module._buffers:
            with_buffers.append((module, prefix))
        children = module._modules
        if children:
            for name, child in reversed(children.items()):
                if child is not None:
                    push((child, prefix + name + ".", (child, link)))
    for module, prefix in with_buffers:
        nonpersistent = module._non_persistent_buffers_set
        for k, b in module._buffers.items():
            if b is None:
                continue
            name = prefix + k
            i = ids.get(id(b))
            if i is None:
                ids[id(b)] = len(tensors)
                tensors.append(b)
                names.append(name)
            else:
                extra.setdefault(i, []).append(name)
            if details:
                kinds[name] = "n" if k in nonpersistent else "b"
    return walk


def _candidates(tensors: list[torch.Tensor], extra: dict[int, list[str]]) -> list[list[int]]:
    """Lists of indices that may be tied: tensors over one storage (more than one), and tensors
    alone on their storage but reachable under several names."""
    first: dict[int, int] = {}
    shared: dict[int, list[int]] = {}
    odd: list[tuple[int, torch.Tensor]] = []  # lazy, empty, meta, DTensor: the careful path
    for i, t in enumerate(tensors):
        try:
            ptr = t.untyped_storage().data_ptr()
        except (ValueError, RuntimeError, NotImplementedError):  # lazy, DTensor, wrappers
            ptr = 0
        if ptr == 0:
            odd.append((i, t))
            continue
        j = first.setdefault(ptr, i)
        if j != i:
            group = shared.get(ptr)
            if group is None:
                shared[ptr] = [j, i]
            else:
                group.append(i)
    out: list[list[int]] = []
    in_group: set[int] = set()
    for group in shared.values():
        # the same pointer on two devices is two storages
        by_device: dict[str, list[int]] = {}
        for i in group:
            by_device.setdefault(str(tensors[i].device), []).append(i)
        out.extend(by_device.values())
        in_group.update(group)
    for group in _by_storage(odd).values():
        if len(group) > 1:
            out.append(group)
            in_group.update(group)
    for i in extra:
        if i not in in_group:
            out.append([i])
    return out


def _group_of(tensors: Sequence[torch.Tensor], members: list[int],
              names: Callable[[int], list[str]], nbytes: int) -> TiedGroup:
    """The record of one cluster (``members`` index ``tensors``, in order)."""
    all_names = tuple(n for i in members for n in names(i))
    if len(members) == 1:
        return TiedGroup(all_names, TieKind.ALIAS, nbytes, (str(tensors[members[0]].device),))
    devices = tuple(sorted({str(tensors[i].device) for i in members}))
    head = _memory(tensors[members[0]])
    layout = (head.storage_offset(), head.dtype, head.shape, head.stride())
    same = all((m.storage_offset(), m.dtype, m.shape, m.stride()) == layout
               for m in (_memory(tensors[i]) for i in members[1:]))
    kind = TieKind.SHARED_STORAGE if same else TieKind.OVERLAP
    return TiedGroup(all_names, kind, nbytes, devices)


def _groups(tensors: Sequence[torch.Tensor], names: Callable[[int], list[str]],
            candidates: list[list[int]]) -> list[tuple[int, TiedGroup]]:
    """``(first member, group)`` for every tie among the candidate lists (``names(i)``: every
    name of tensor ``i``)."""
    groups: list[tuple[int, TiedGroup]] = []
    for cand in candidates:
        if len(cand) == 1:
            i = cand[0]
            if len(names(i)) > 1:
                groups.append((i, _group_of(tensors, cand, names, _alias_bytes(tensors[i]))))
            continue
        mem = [_memory(tensors[i]) for i in cand]
        live = [i for i, m in zip(cand, mem) if m.numel() > 0]
        if len(live) < len(cand):
            for i, m in zip(cand, mem):
                if len(names(i)) > 1 and m.numel() == 0:
                    groups.append((i, _group_of(tensors, [i], names, 0)))
            if not live:
                continue
            mem = [m for m in mem if m.numel() > 0]
        for cluster in _clusters(mem):
            members = [live[k] for k in cluster.members]  # already sorted
            if len(members) == 1 and len(names(members[0])) == 1:
                continue
            groups.append((members[0], _group_of(tensors, members, names, cluster.nbytes)))
    groups.sort(key=lambda g: g[0])
    return groups


def _alias_bytes(t: torch.Tensor) -> int:
    if isinstance(t, UninitializedTensorMixin):
        return 0  # size unknown until materialized
    if _unstrided(t):
        return stored_bytes(t)
    m = _memory(t)
    if m.is_contiguous():
        return m.numel() * m.element_size()
    return unique_size([m])[1]


def find_tied(model: nn.Module) -> tuple[TiedGroup, ...]:
    """Every group of parameters/buffers that share memory, in a deterministic order.

    One walk over the module tree, one storage pointer per tensor; only tensors that share a
    storage (or a name) go on to the byte-range comparison, so the cost is O(n) plus
    O(k log k) for the k tensors that share memory.

    Args:
        model: any module; meta tensors work (storage identity instead of pointers),
            uninitialized (lazy) tensors only tie by identity, DTensors by their local shard.

    Returns:
        One :class:`~torchscope.records.TiedGroup` per cluster of shared memory, names in
        ``named_parameters`` then ``named_buffers`` order, groups ordered by their first name.
        ``nbytes`` counts the group's unique bytes (0 for an uninitialized tensor: unknown).

    >>> import torchscope
    >>> g = torchscope.find_tied(torchscope.examples.SharedMLP())
    >>> g[0].kind.value, g[0].nbytes
    ('alias', 256)
    """
    require_module(model, "find_tied")
    with gc_paused(), plain_reads():
        walk = _walk(model)
        groups = _groups(walk.tensors, walk.all_names, _candidates(walk.tensors, walk.extra))
    return tuple(g for _, g in groups)


def tied_groups(
    entries: Sequence[tuple[torch.Tensor, Sequence[str], int]],
) -> tuple[TiedGroup, ...]:
    """Tied groups among ``(tensor, names, order)`` entries: one entry per tensor object with
    every name it has, ``order`` its position in traversal order (groups sort by it).

    >>> w = torch.zeros(4)
    >>> [g.kind.value for g in tied_groups([(w, ["a"], 0), (w[1:], ["b"], 1)])]
    ['overlap']
    """
    ordered = sorted(entries, key=lambda e: e[2])
    tensors = [t for t, _, _ in ordered]
    names = [list(n) for _, n, _ in ordered]
    extra = {i: n[1:] for i, n in enumerate(names) if len(n) > 1}
    return tuple(g for _, g in _groups(tensors, names.__getitem__, _candidates(tensors, extra)))
