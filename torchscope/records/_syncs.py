"""Records of host-device synchronizations: the kind of each, the sites, and the report."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

from torchscope.records._core import SCHEMA_VERSION, Finding, Severity, record_json

__all__ = ["SyncKind", "SyncReport", "SyncSite", "UnobservedThread", "short_path"]


class SyncKind(str, enum.Enum):
    """Why an operation makes the host wait for the device."""

    SCALAR_READ = "scalar read"  # .item(), float(), int(), bool(), if t:
    HOST_COPY = "host copy"  # .cpu(), .to("cpu"), .numpy(), .tolist()
    PRINT = "print"  # repr(), print(), f"{t}"
    DATA_SHAPE = "data-dependent shape"  # nonzero, x[mask], masked_select, unique, ...
    COMPARE = "host comparison"  # equal, allclose
    CUDA = "cuda sync"  # reported by torch.cuda.set_sync_debug_mode


def short_path(path: str) -> str:
    """A path relative to the working directory, or from the installed package's name."""
    if path.startswith("<"):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        rel = path
    if not rel.startswith(".."):
        return rel
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


@dataclass(frozen=True, slots=True)
class SyncSite:
    """One line that synchronized, how often, and how to avoid it.

    ``file`` is the path as Python knows it, ``line`` the line number, ``function`` the
    qualified name of the function (``<module>`` at top level); ``op`` names the operation
    (``.item()``); ``via`` names the torch function that synchronized on the user's behalf when
    the operation ran inside torch (``torch/amp/grad_scaler.py:371 _maybe_opt_step``).
    """

    file: str
    line: int
    function: str
    op: str
    kind: SyncKind
    count: int
    fix: str
    via: str | None = None

    @property
    def location(self) -> str:
        """``file:line`` with the file shortened (relative to the working directory, or from the
        installed package's name)."""
        return f"{short_path(self.file)}:{self.line}"


@dataclass(frozen=True, slots=True)
class UnobservedThread:
    """A Python thread that was already running when recording started: torch's modes belong to
    each thread, so the synchronizations it made were not seen and are not counted.

    ``name`` is the thread's name when recording started; ``running_at_end`` whether it was
    still running when recording stopped (``None`` while recording goes on).

    >>> UnobservedThread(name="loader", running_at_end=False).status
    'ended before recording stopped'
    """

    name: str
    running_at_end: bool | None = None

    @property
    def status(self) -> str | None:
        """Whether it outlived the recording, in words (``None`` while recording goes on)."""
        if self.running_at_end is None:
            return None
        return ("still running when recording stopped" if self.running_at_end
                else "ended before recording stopped")


class SyncReport:
    """What :func:`detect_syncs` recorded: sites with counts, the fix for each, and findings.

    The report is also the context manager that records: enter it again to record more (the
    counts add up); entering it while it is already active changes nothing. It holds plain
    values only, never a tensor.

    Attributes:
        include_cpu: whether operations on CPU tensors count (they would synchronize on an
            accelerator); ``False`` on a CUDA machine, where only device tensors count.
        deep: whether the dispatch-level mode also ran.
        cuda: whether ``torch.cuda.set_sync_debug_mode`` ran as well.

    Threads that were already running when recording started are not observed;
    :attr:`unobserved_threads` names them and every rendering says so.

    >>> import torch, torchscope
    >>> report = torchscope.detect_syncs()
    >>> with report:
    ...     flag = bool(torch.zeros(1))
    >>> report.total
    1
    """

    def __init__(self, *, include_cpu: bool, deep: bool, cuda: bool) -> None:
        self.include_cpu = include_cpu
        self.deep = deep
        self.cuda = cuda
        # (file, line, op) -> [count, order, file, line, function, op, kind, via, fix]
        self._sites: dict[tuple[str, int, str], list[Any]] = {}
        # threads running, unobserved, when recording started: [name, running_at_end], in order
        self._threads: list[list[Any]] = []

    # -- results ---------------------------------------------------------------------------
    @property
    def sites(self) -> tuple[SyncSite, ...]:
        """The sites, most frequent first (then in the order first seen)."""
        rows = sorted(self._sites.values(), key=lambda r: (-r[0], r[1]))
        return tuple(
            SyncSite(file=r[2], line=r[3], function=r[4], op=r[5], kind=r[6], count=r[0],
                     fix=r[8], via=r[7])
            for r in rows
        )

    @property
    def total(self) -> int:
        """How many synchronizations were recorded, all sites together."""
        return sum(r[0] for r in self._sites.values())

    @property
    def unobserved_threads(self) -> tuple[UnobservedThread, ...]:
        """The other Python threads that were already running when recording started, in the
        order found: their synchronizations are not counted (empty when there were none)."""
        return tuple(UnobservedThread(name=r[0], running_at_end=r[1]) for r in self._threads)

    def threads_note(self, *, limit: int | None = None) -> str | None:
        """One sentence naming the threads that were already running when recording started,
        which were not observed.

        Args:
            limit: name at most this many and count the rest (default: name all).

        Returns:
            The sentence, or ``None`` when no other thread was running.

        >>> import threading, torchscope
        >>> stop = threading.Event()
        >>> loader = threading.Thread(target=stop.wait, name="loader")
        >>> loader.start()
        >>> with torchscope.detect_syncs() as report:
        ...     pass
        >>> stop.set(); loader.join()
        >>> report.threads_note().split(": ", 1)[1]
        "'loader' (still running when recording stopped)"
        """
        threads = self.unobserved_threads
        if not threads:
            return None
        shown = threads if limit is None else threads[:max(limit, 0)]
        names = [repr(t.name) + (f" ({t.status})" if t.status else "") for t in shown]
        if len(shown) < len(threads):
            names.append(f"and {len(threads) - len(shown):,} more")
        if len(threads) == 1:
            head = ("1 other Python thread was already running when recording started and was "
                    "not observed (its synchronizations are not counted)")
        else:
            head = (f"{len(threads):,} other Python threads were already running when recording "
                    "started and were not observed (their synchronizations are not counted)")
        return f"{head}: {', '.join(names)}"

    @property
    def notes(self) -> tuple[str, ...]:
        """What the counts leave out, as sentences: the unobserved threads, all named."""
        note = self.threads_note()
        return () if note is None else (note,)

    def findings(self) -> tuple[Finding, ...]:
        """One ``sync`` WARNING finding per site, with its location and the fix."""
        out = []
        for s in self.sites:
            via = f" (inside {s.via})" if s.via else ""
            times = "once" if s.count == 1 else f"{s.count} times"
            out.append(Finding(
                code="sync", severity=Severity.WARNING,
                message=f"{s.op} ({s.kind.value}) in {s.function}{via}: {times}",
                path=None, hint=s.fix, location=s.location,
            ))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: exact counts, full file paths."""
        return {
            "schema_version": SCHEMA_VERSION,
            "total": self.total,
            "include_cpu": self.include_cpu,
            "deep": self.deep,
            "cuda": self.cuda,
            "unobserved_threads": [{"name": t.name, "running_at_end": t.running_at_end}
                                   for t in self.unobserved_threads],
            "notes": list(self.notes),
            "sites": [
                {"file": s.file, "line": s.line, "location": s.location, "function": s.function,
                 "op": s.op, "kind": s.kind.value, "count": s.count, "fix": s.fix, "via": s.via}
                for s in self.sites
            ],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return record_json(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        from torchscope.rendering import render

        return str(render(self, "text"))

    def __repr__(self) -> str:
        return f"<SyncReport: {self.total} synchronizations at {len(self._sites)} sites>"

    def __rich__(self) -> Any:
        from torchscope.rendering import render

        return render(self, "rich")
