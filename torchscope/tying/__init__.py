"""Shared (tied) tensors: which names share bytes, what breaks a tie, and a tie guard.

Tensors are grouped by storage identity (device + storage pointer; on meta, where
``data_ptr()`` is 0, the storage implementation's identity), then each storage is split into
clusters of tensors that share at least one byte. A cluster of one tensor object reachable
under several names is an ``alias`` tie; several tensor objects over exactly the same bytes with
the same dtype, shape and strides are ``shared_storage``; anything else that overlaps is
``overlap``. Detection lives in ``_core``; findings and the tie guard in ``_checks``.

>>> import torchscope
>>> [g.names for g in torchscope.find_tied(torchscope.examples.SharedMLP())]
[('2.weight', '4.weight'), ('2.bias', '4.bias')]
"""

from __future__ import annotations

from torchscope.tying._checks import (
    TieSnapshot as TieSnapshot,
    check_ties as check_ties,
    compare_ties as compare_ties,
    snapshot_ties as snapshot_ties,
    ties_of as ties_of,
    watch_ties as watch_ties,
)
from torchscope.tying._core import (
    StorageKey as StorageKey,
    declares_ties as declares_ties,
    find_tied as find_tied,
    merge_ranges as merge_ranges,
    storage_key as storage_key,
    stored_bytes as stored_bytes,
    tensor_extent as tensor_extent,
    tied_groups as tied_groups,
    unique_size as unique_size,
)

__all__ = [
    "StorageKey",
    "TieSnapshot",
    "check_ties",
    "compare_ties",
    "declares_ties",
    "find_tied",
    "merge_ranges",
    "snapshot_ties",
    "storage_key",
    "stored_bytes",
    "tensor_extent",
    "tied_groups",
    "ties_of",
    "unique_size",
    "watch_ties",
]
