"""Shared-tensor detection: one object under several names, shared storage, overlapping bytes.

Tensors are grouped by storage identity (device + storage pointer; on meta, where
``data_ptr()`` is 0, the storage implementation's identity), then each group is split into
clusters of overlapping byte ranges with a running maximum of the range end. A cluster of one
tensor object reachable under several names is an ``alias`` tie; several tensor objects over
exactly the same bytes are ``shared_storage``; anything else that overlaps is ``overlap``.

>>> import torchscope
>>> [g.names for g in torchscope.find_tied(torchscope.examples.SharedMLP())]
[('2.weight', '4.weight'), ('2.bias', '4.bias')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]

from torchscope.records import TiedGroup, TieKind

__all__ = [
    "find_tied",
    "merge_ranges",
    "storage_key",
    "tied_groups",
    "tensor_extent",
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
    storage = t.untyped_storage()
    ptr = storage.data_ptr()
    if ptr == 0:
        return (str(t.device), 0, storage._cdata)
    return (str(t.device), ptr, 0)


def tensor_extent(t: torch.Tensor) -> tuple[int, int]:
    """Byte range ``[start, end)`` of ``t`` inside its storage (strided views included)."""
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


def unique_size(tensors: Sequence[torch.Tensor]) -> tuple[int, int]:
    """``(numel, nbytes)`` of ``tensors`` counting each unique byte of storage once.

    Elements are counted in the dtype of the tensors covering each merged range (the first
    one's item size where dtypes differ). Uninitialized (lazy) tensors are skipped.

    >>> w = torch.zeros(10)
    >>> unique_size([w, w[2:5], torch.zeros(3)])
    (13, 52)
    """
    numel = 0
    nbytes = 0
    by_key: dict[StorageKey, list[tuple[int, int, int]]] = {}
    for t in tensors:
        if isinstance(t, UninitializedTensorMixin):
            continue
        start, end = tensor_extent(t)
        by_key.setdefault(storage_key(t), []).append((start, end, t.element_size()))
    for items in by_key.values():
        if len(items) == 1:
            start, end, itemsize = items[0]
            nbytes += end - start
            numel += (end - start) // itemsize
            continue
        items.sort()
        cur_start, cur_end, cur_item = items[0][0], items[0][1], items[0][2]
        for start, end, itemsize in items[1:]:
            if start < cur_end:
                cur_end = max(cur_end, end)
            else:
                nbytes += cur_end - cur_start
                numel += (cur_end - cur_start) // cur_item
                cur_start, cur_end, cur_item = start, end, itemsize
        nbytes += cur_end - cur_start
        numel += (cur_end - cur_start) // cur_item
    return numel, nbytes


@dataclass(slots=True)
class _Entry:
    tensor: torch.Tensor
    names: list[str]
    order: int


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    out: list[tuple[str, torch.Tensor]] = list(model.named_parameters(remove_duplicate=False))
    out.extend(model.named_buffers(remove_duplicate=False))
    return out


def find_tied(model: nn.Module) -> tuple[TiedGroup, ...]:
    """Every group of parameters/buffers that share memory, in a deterministic order.

    Args:
        model: any module; meta tensors work, uninitialized (lazy) tensors only tie by identity.

    Returns:
        One :class:`~torchscope.records.TiedGroup` per cluster of shared memory, names in
        ``named_parameters`` then ``named_buffers`` order, groups ordered by their first name.

    >>> import torchscope
    >>> g = torchscope.find_tied(torchscope.examples.SharedMLP())
    >>> g[0].kind.value, g[0].nbytes
    ('alias', 256)
    """
    entries: dict[int, _Entry] = {}
    for order, (name, t) in enumerate(_named_tensors(model)):
        entry = entries.get(id(t))
        if entry is None:
            entries[id(t)] = _Entry(t, [name], order)
        else:
            entry.names.append(name)
    return _groups_of(list(entries.values()))


def tied_groups(
    entries: Sequence[tuple[torch.Tensor, Sequence[str], int]],
) -> tuple[TiedGroup, ...]:
    """Tied groups among ``(tensor, names, order)`` entries: one entry per tensor object with
    every name it has, ``order`` its position in traversal order (groups sort by it).

    >>> w = torch.zeros(4)
    >>> [g.kind.value for g in tied_groups([(w, ["a"], 0), (w[1:], ["b"], 1)])]
    ['overlap']
    """
    return _groups_of([_Entry(t, list(names), order) for t, names, order in entries])


def _groups_of(entries: list[_Entry]) -> tuple[TiedGroup, ...]:
    by_key: dict[StorageKey, list[tuple[int, int, _Entry]]] = {}
    singles: list[_Entry] = []
    for entry in entries:
        t = entry.tensor
        if isinstance(t, UninitializedTensorMixin) or t.numel() == 0:
            singles.append(entry)
            continue
        start, end = tensor_extent(t)
        by_key.setdefault(storage_key(t), []).append((start, end, entry))
    clusters: list[list[tuple[int, int, _Entry]]] = []
    for items in by_key.values():
        if len(items) == 1:
            clusters.append(items)
            continue
        items.sort(key=lambda it: (it[0], it[1], it[2].order))
        current = [items[0]]
        cur_end = items[0][1]
        for item in items[1:]:
            if item[0] < cur_end:
                current.append(item)
                cur_end = max(cur_end, item[1])
            else:
                clusters.append(current)
                current = [item]
                cur_end = item[1]
        clusters.append(current)
    groups: list[tuple[int, TiedGroup]] = []
    for cluster in clusters:
        members = [it[2] for it in cluster]
        if len(members) == 1 and len(members[0].names) == 1:
            continue
        if len(members) == 1:
            kind = TieKind.ALIAS
        else:
            first = members[0].tensor
            same = all(
                it[0] == cluster[0][0] and it[1] == cluster[0][1]
                and it[2].tensor.dtype == first.dtype
                and it[2].tensor.shape == first.shape
                and it[2].tensor.stride() == first.stride()
                for it in cluster
            )
            kind = TieKind.SHARED_STORAGE if same else TieKind.OVERLAP
        members.sort(key=lambda e: e.order)
        names = tuple(n for e in members for n in e.names)
        nbytes = sum(e - s for s, e in merge_ranges((it[0], it[1]) for it in cluster))
        devices = tuple(sorted({str(e.tensor.device) for e in members}))
        groups.append((members[0].order, TiedGroup(names, kind, nbytes, devices)))
    for entry in singles:  # lazy or empty tensors: ties by identity only
        if len(entry.names) > 1:
            t = entry.tensor
            nbytes = 0 if isinstance(t, UninitializedTensorMixin) else t.nbytes
            groups.append(
                (entry.order, TiedGroup(tuple(entry.names), TieKind.ALIAS, nbytes,
                                        (str(t.device),)))
            )
    groups.sort(key=lambda g: g[0])
    return tuple(g for _, g in groups)
