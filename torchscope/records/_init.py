"""Records of an initialization policy applied (or planned) by ``apply_init``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from torchscope.records._core import Displayed, record_dict

__all__ = ["InitEntry", "InitReport", "InitRule", "InitStatus"]


class InitStatus(str, enum.Enum):
    """What happened to one tensor."""

    APPLIED = "applied"  # filled by its rule's initializer
    PLANNED = "planned"  # dry run: would be filled
    DEFERRED = "deferred"  # lazy: filled right after it materializes (a self-removing hook)
    META = "meta"  # on the meta device: nothing to fill, plan only
    KEPT = "kept"  # its rule says "keep"
    UNMATCHED = "unmatched"  # no rule matched it: left as it was


@dataclass(frozen=True, slots=True)
class InitRule:
    """One rule of a policy as :func:`apply_init` understood it.

    ``selector`` is the rule as written (``"*.weight"``, ``"re:^enc"``, ``"type:Linear:bias"``),
    ``kind`` is ``glob``, ``regex`` or ``type``; ``init`` the initializer in canonical form
    (``"normal(std=0.02)"``, ``"callable my_init"``). ``matched`` counts the tensors the selector
    matches, ``decided`` those this rule decided (not taken by an earlier rule).
    """

    index: int
    selector: str
    kind: str
    init: str
    matched: int
    decided: int


@dataclass(frozen=True, slots=True)
class InitEntry:
    """One tensor (counted once however many names it has) and how it was initialized.

    ``name`` is the name its rule matched (the first name when no rule did), ``aliases`` its
    other names (a tied tensor). ``shape`` is ``None`` while lazy. ``rule`` indexes
    :attr:`InitReport.rules`; ``init`` is that rule's initializer.
    """

    name: str
    aliases: tuple[str, ...]
    module_type: str
    shape: tuple[int, ...] | None
    dtype: str
    device: str
    lazy: bool
    rule: int | None
    init: str | None
    status: InitStatus


@dataclass(frozen=True, slots=True, repr=False)
class InitReport(Displayed):
    """What :func:`apply_init` did (or, in a dry run, would do) to every parameter.

    ``print(report)`` shows a table; ``report.to_dict()`` is JSON-ready.

    >>> import torchscope
    >>> r = torchscope.apply_init(torchscope.examples.MLP(), {"*": "keep"}, dry_run=True)
    >>> r.unmatched, len(r.entries)
    ((), 4)
    """

    entries: tuple[InitEntry, ...]
    rules: tuple[InitRule, ...]
    seed: int | None
    dry_run: bool
    notes: tuple[str, ...] = field(default=())
    #: ``(name, mean, population std)`` per entry after applying the policy to a copy
    #: (:func:`torchscope.init_stats`); ``None`` values where the tensor holds no data yet
    stats: tuple[tuple[str, float | None, float | None], ...] = field(default=())

    @property
    def unmatched(self) -> tuple[str, ...]:
        """Names of the tensors no rule matched."""
        return tuple(e.name for e in self.entries if e.status is InitStatus.UNMATCHED)

    @property
    def unused_rules(self) -> tuple[InitRule, ...]:
        """Rules that decided no tensor (each was also warned about)."""
        return tuple(r for r in self.rules if r.decided == 0)

    @property
    def deferred(self) -> tuple[str, ...]:
        """Names of lazy tensors that will be initialized right after they materialize."""
        return tuple(e.name for e in self.entries if e.status is InitStatus.DEFERRED)

    def entry(self, name: str) -> InitEntry:
        """The entry of the tensor reachable as ``name`` (any of its aliases).

        Raises:
            KeyError: no parameter has that name.
        """
        for e in self.entries:
            if name == e.name or name in e.aliases:
                return e
        raise KeyError(f"no parameter named {name!r}; names are as named_parameters() gives them")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: exact values, enums as strings, tuples as lists."""
        out = record_dict(self)
        out["unmatched"] = list(self.unmatched)
        out["unused_rules"] = [r.index for r in self.unused_rules]
        return out

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.status.value] = counts.get(e.status.value, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        return f"<InitReport {len(self.entries)} tensors ({parts}), {len(self.rules)} rules>"

