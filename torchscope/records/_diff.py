"""Records of an architecture diff: what changed between two models (or saved reports).

Every record holds plain values only. :class:`ArchitectureDiff` is what
:func:`torchscope.diff` returns; it renders through :func:`torchscope.render` and serializes
with the one JSON codec (``to_dict()`` carries ``schema_version``).

>>> d = ArchitectureDiff(before="MLP", after="MLP", before_params=7946, after_params=7946)
>>> d.equal
True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from torchscope.records._core import SCHEMA_VERSION, Displayed, ParamKind, record_dict

__all__ = [
    "ArchitectureDiff",
    "CallChange",
    "ChangeKind",
    "CountDelta",
    "FieldChange",
    "ModuleChange",
    "TensorChange",
    "TieChange",
]


class ChangeKind(str, enum.Enum):
    """How a module or tensor differs between the two sides."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    RENAMED = "renamed"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One attribute that differs: its name and both values as text (``"[20, 256]"``)."""

    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ModuleChange:
    """A module added, removed, renamed or whose type changed.

    ``path`` is the name on the side where the module exists (the new name for a rename, the
    old one for a removal); ``old_path`` is the name before a rename. ``old_type``/``new_type``
    are ``None`` on the side where the module does not exist.
    """

    kind: ChangeKind
    path: str
    old_type: str | None
    new_type: str | None
    old_path: str | None = None


@dataclass(frozen=True, slots=True)
class TensorChange:
    """A parameter or buffer added, removed or changed (shape, dtype, requires_grad, ties, kind).

    ``name`` is the qualified name on the side where the tensor exists (after a module rename,
    the new name); ``old_name`` the name before a rename, when it differs. ``shape`` and
    ``dtype`` describe the tensor on that side (``None`` shape: uninitialized, unknown).
    """

    kind: ChangeKind
    name: str
    tensor_kind: ParamKind
    shape: tuple[int, ...] | None
    dtype: str
    fields: tuple[FieldChange, ...] = ()
    old_name: str | None = None


@dataclass(frozen=True, slots=True)
class CountDelta:
    """A module whose tie-aware parameter or buffer count differs (``None``: absent on a side).

    ``lazy`` is true when either side holds uninitialized tensors in that subtree, whose size is
    not in the counts (so a count is a lower bound there).
    """

    path: str
    before_params: int | None
    after_params: int | None
    before_buffers: int | None
    after_buffers: int | None
    lazy: bool = False
    old_path: str | None = None

    @property
    def params_delta(self) -> int:
        """``after - before`` parameters (an absent side counts as 0)."""
        return (self.after_params or 0) - (self.before_params or 0)


@dataclass(frozen=True, slots=True)
class TieChange:
    """A group of tensors that became tied (``made``) or stopped sharing memory (``broken``).

    ``names`` are the group's names on the side where the tie exists (after renames, the new
    names for a made tie).
    """

    kind: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallChange:
    """A traced call whose shapes changed, or a call made on one side only.

    ``call`` counts the calls of that module from 0; ``what`` is ``inputs``, ``outputs`` or
    ``calls`` (the number of calls); ``before``/``after`` are the spec texts
    (``"[2, 20] float32"``), ``"—"`` where the call did not happen.
    """

    path: str
    call: int
    what: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ArchitectureDiff(Displayed):
    """The architecture of two models compared: modules, tensors, counts, ties and call shapes.

    ``before``/``after`` name the two sides (the root type, or the file a report came from).
    Modules are matched by qualified name; a block that moved to a new name with the same type
    and parameter shapes is one ``renamed`` change, not a removal plus an addition. ``calls``
    is only filled when both sides were traced (``call_shapes_compared``). ``notes`` say what
    could not be compared.

    >>> import torchscope
    >>> d = torchscope.diff(torchscope.examples.MLP(), torchscope.examples.MLP())
    >>> d.equal, d.before_params
    (True, 7946)
    """

    before: str
    after: str
    before_params: int
    after_params: int
    modules: tuple[ModuleChange, ...] = ()
    tensors: tuple[TensorChange, ...] = ()
    counts: tuple[CountDelta, ...] = ()
    ties: tuple[TieChange, ...] = ()
    calls: tuple[CallChange, ...] = ()
    call_shapes_compared: bool = False
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def equal(self) -> bool:
        """True when nothing differs: no module, tensor, count, tie or call-shape change."""
        return not (self.modules or self.tensors or self.counts or self.ties or self.calls
                    or self.before_params != self.after_params)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``schema_version`` (enums as their values)."""
        out = record_dict(self)
        out["equal"] = self.equal
        return out

