"""Distributed models: torchrun set-up, per-rank reports gathered to rank 0, and sharding checks.

A model sharded with FSDP2's ``fully_shard`` or DTensor is summarized on every rank (records
carry global shapes, this rank's local shape and bytes); :func:`gather_report` collects every
rank's share with ``all_gather_object`` and adds findings about the ranks as a whole: ranks that
disagree on parameter names, global shapes or dtypes (the usual cause of hangs) and badly
uneven shards; :func:`check_fsdp_ties` finds tied parameters split across FSDP units.
:func:`setup_from_launcher` starts the default process group when ``torchrun`` launched the
process and nobody else did; :func:`teardown` ends only a group torchscope started.

``torch.distributed`` submodules (FSDP, DTensor) are never imported here unless the model
already uses them: checks look them up in ``sys.modules``.

>>> from torchscope.distributed import is_primary
>>> is_primary()  # not launched by torchrun: this process is the only one
True
"""

from __future__ import annotations

import datetime
import math
import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from torchscope._torch import fsdp_module_type
from torchscope._units import humanize_bytes, short_repr
from torchscope.errors import InputSpecError, TorchscopeError
from torchscope.records import Finding, ParamRecord, RankRecord, Report, Severity, TiedGroup

__all__ = [
    "SETUP_TIMEOUT",
    "UNEVEN_RATIO",
    "check_fsdp_ties",
    "distributed_session",
    "gather_report",
    "is_primary",
    "setup_from_launcher",
    "teardown",
]

#: Shards are "badly uneven" when the rank holding the most parameter bytes holds more than this
#: many times the mean over ranks (peak memory is set by the largest shard, so 10% above the
#: mean means every rank pays for memory that only one uses).
UNEVEN_RATIO = 1.10

#: What torchrun (and other launchers of the env:// kind) sets in every worker's environment.
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

#: Seconds the process group set-up waits for the master and every peer (environment variable
#: ``TORCHSCOPE_SETUP_TIMEOUT`` or ``setup_timeout=`` to change it).
SETUP_TIMEOUT = 60.0

#: Whether torchscope created the default process group (so that only it is destroyed).
_STATE = {"created": False}

_LIST_LIMIT = 5  # names listed in one finding before "+N more"


# ------------------------------------------------------------------------------------------
# process group set-up


def _dist() -> Any:
    """``torch.distributed`` when this torch build has it, else ``None``."""
    import torch.distributed as dist

    return dist if dist.is_available() else None


def _launched() -> bool:
    return bool(os.environ.get("RANK")) and bool(os.environ.get("WORLD_SIZE"))


def _setup_timeout(value: float | None) -> float:
    """The set-up timeout: the argument, else ``TORCHSCOPE_SETUP_TIMEOUT``, else 60 s."""
    where = "setup_timeout"
    raw: object = value
    if value is None:
        raw = os.environ.get("TORCHSCOPE_SETUP_TIMEOUT")
        where = "TORCHSCOPE_SETUP_TIMEOUT"
        if raw is None or raw == "":
            return SETUP_TIMEOUT
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (0 < seconds < 86400 * 7):  # also refuses nan
        raise TorchscopeError(
            f"{where} = {raw!r} is not a number of seconds; give a positive number such as 60"
        )
    return seconds


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence stderr at the file-descriptor level (c10d logs each failed connection attempt
    with a C++ stack); the error raised afterwards says what went wrong in one line."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover - no stderr to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def setup_from_launcher(*, timeout: float = 600.0, setup_timeout: float | None = None) -> bool:
    """Start the default process group when a launcher's environment is present.

    Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set) and with
    no default process group yet, one is initialized: ``gloo`` on CPU, ``cpu:gloo,cuda:nccl``
    with this process's ``LOCAL_RANK`` GPU selected when CUDA is available. torchscope
    remembers that it created the group, so that :func:`teardown` destroys only that one.

    The set-up fails within ``setup_timeout`` seconds (default 60, or the environment variable
    ``TORCHSCOPE_SETUP_TIMEOUT``) with one line when the master address does not resolve, the
    master cannot be reached or a peer never joins, instead of blocking for ``timeout``.

    Args:
        timeout: seconds a collective may wait for the other ranks before failing.
        setup_timeout: seconds the set-up may wait for the master and every peer.

    Returns:
        Whether this process runs distributed (a default process group exists now).

    Raises:
        TorchscopeError: launched by torchrun but ``torch.distributed`` is missing, the
            environment is incomplete, or the group could not be initialized.

    >>> setup_from_launcher()  # plain python: no launcher, no group
    False
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise TorchscopeError(
            f"timeout = {timeout!r} is not a positive number of seconds; give e.g. 600")
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return True
    if not _launched():
        return False
    if dist is None:
        raise TorchscopeError(
            f"launched by torchrun (RANK={os.environ.get('RANK')}) but this torch build has no "
            "torch.distributed: install a torch build with distributed support, or run without "
            "torchrun"
        )
    missing = [v for v in _LAUNCHER_VARS if not os.environ.get(v)]
    if missing:
        raise TorchscopeError(
            f"launcher environment incomplete: {', '.join(missing)} not set (RANK="
            f"{os.environ.get('RANK')}, WORLD_SIZE={os.environ.get('WORLD_SIZE')}); start with "
            "torchrun --nproc-per-node N, which sets all of them"
        )
    wait = min(_setup_timeout(setup_timeout), float(timeout))
    host, port_text = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    rank_text, world_text = os.environ["RANK"], os.environ["WORLD_SIZE"]
    where = f"{host}:{port_text}"
    try:
        rank, world, port = int(rank_text), int(world_text), int(port_text)
    except ValueError:
        raise TorchscopeError(
            f"launcher environment not numeric: RANK={rank_text!r}, WORLD_SIZE={world_text!r}, "
            f"MASTER_PORT={port_text!r}; start with torchrun, which sets them"
        ) from None
    try:
        socket.getaddrinfo(host, port)
    except (OSError, UnicodeError) as err:
        raise TorchscopeError(
            f"MASTER_ADDR = {host!r} does not resolve ({err}); give the master's host name or "
            "IP address (torchrun --master-addr)"
        ) from None
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    try:
        with _quiet_stderr():
            store = dist.TCPStore(host, port, world, is_master=rank == 0,
                                  timeout=datetime.timedelta(seconds=wait))
            dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                                    timeout=datetime.timedelta(seconds=timeout))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise TorchscopeError(
            f"could not start the {backend} process group within {wait:g} s (rank {rank} of "
            f"{world}, master {where}): {type(err).__name__}: {first} — check that every rank "
            "was started and the master port is free; TORCHSCOPE_SETUP_TIMEOUT=seconds waits "
            "longer"
        ) from None
    _STATE["created"] = True
    return True


def teardown() -> None:
    """Destroy the default process group if :func:`setup_from_launcher` created it.

    A group the user created is left alone. Safe to call twice, and when nothing was set up.

    >>> teardown()
    """
    if not _STATE["created"]:
        return
    _STATE["created"] = False
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(*, timeout: float = 600.0,
                        setup_timeout: float | None = None) -> Iterator[bool]:
    """:func:`setup_from_launcher` on entry, :func:`teardown` on exit (also on failure).

    Yields whether the process runs distributed.

    >>> with distributed_session() as distributed:
    ...     distributed
    False
    """
    distributed = setup_from_launcher(timeout=timeout, setup_timeout=setup_timeout)
    try:
        yield distributed
    finally:
        teardown()


def _rank_world() -> tuple[int, int] | None:
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def is_primary() -> bool:
    """True on rank 0, or when not running distributed (the process that prints).

    >>> is_primary()
    True
    """
    rw = _rank_world()
    return rw is None or rw[0] == 0


def _unit_of(model: nn.Module, name: str, fsdp: type) -> tuple[int, str] | None:
    """(id, path) of the FSDP unit that manages the tensor ``name``: its nearest FSDP ancestor."""
    parts = name.split(".")[:-1]
    for n in range(len(parts), -1, -1):
        path = ".".join(parts[:n])
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, fsdp):
            return id(module), path
    return None


def check_fsdp_ties(tied: Sequence[TiedGroup] | Any, model: nn.Module) -> tuple[Finding, ...]:
    """Tied groups found before wrapping whose names now belong to different FSDP units.

    FSDP shards each unit's parameters on their own: a parameter shared by two units is
    sharded twice and the copies drift apart. Take the groups before ``fully_shard`` (from
    :func:`torchscope.find_tied` or :func:`torchscope.snapshot_ties`), then check after.

    Args:
        tied: tied groups (``TiedGroup`` records), or an object with a ``groups`` attribute
            holding them (a tie snapshot).
        model: the model after wrapping.

    Returns:
        One ``distributed-tie-split`` error per split group (empty when FSDP is not in use).

    >>> check_fsdp_ties((), torch.nn.Linear(2, 2))
    ()
    """
    groups = getattr(tied, "groups", tied)
    if not isinstance(groups, (tuple, list)) or not all(
            isinstance(g, TiedGroup) for g in groups):
        raise InputSpecError(
            f"check_fsdp_ties: tied = {_shown(tied)} is not a sequence of TiedGroup records; "
            "pass torchscope.find_tied(model) or torchscope.snapshot_ties(model) taken before "
            "wrapping")
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"check_fsdp_ties: model = {_shown(model)} is not an nn.Module; pass the model "
            "after wrapping")
    fsdp = fsdp_module_type()
    if fsdp is None:
        return ()
    out: list[Finding] = []
    for group in groups:
        units: dict[int, str] = {}
        where: list[str] = []
        for name in group.names:
            unit = _unit_of(model, name, fsdp)
            key, path = unit if unit is not None else (0, "(no FSDP unit)")
            units.setdefault(key, path or "(root)")
            where.append(f"{name} in {path or '(root)'}" if unit else f"{name} unsharded")
        if len(units) > 1:
            out.append(Finding(
                "distributed-tie-split", Severity.ERROR,
                f"tied parameters are split across FSDP units: {'; '.join(where)} — each unit "
                "shards its own copy, so the tie is broken",
                path=group.names[0],
                hint="apply fully_shard to a module that contains every tied name (e.g. the "
                f"common parent of {', '.join(sorted(set(units.values())))}) and not to the "
                "submodules holding them; re-tie the weights before wrapping",
            ))
    return tuple(out)


# ------------------------------------------------------------------------------------------
# gathering per-rank reports

# One rank's share, as plain values (cheap to pickle):
# (rank, error or None, local params, param bytes, buffer bytes, device,
#  ((name, global shape, dtype, local numel), ...), FSDP unit paths)
_Payload = tuple[int, str | None, int, int, int, str,
                 tuple[tuple[str, tuple[int, ...] | None, str, int], ...], tuple[str, ...]]


def _shown(value: object) -> str:
    return short_repr(value) + f" ({type(value).__name__})"


def _local_numel(p: ParamRecord) -> int:
    if p.local_shape is not None:
        return math.prod(p.local_shape)
    return p.numel or 0


def _payload(report: Report, rank: int) -> _Payload:
    local_params = 0
    seen_groups: dict[int, int] = {}
    devices: set[str] = set()
    entries: list[tuple[str, tuple[int, ...] | None, str, int]] = []
    for p in report.params:
        n = _local_numel(p)
        entries.append((p.name, p.shape, p.dtype, n))
        devices.add(p.device)
        if p.kind.value != "parameter":
            continue
        if p.tie_group is None:
            local_params += n
        else:  # tensors of one tied group share memory: count the largest once
            seen_groups[p.tie_group] = max(seen_groups.get(p.tie_group, 0), n)
    local_params += sum(seen_groups.values())
    units = tuple(m.path for m in report.modules if "fsdp" in m.tags)
    return (rank, None, local_params, report.param_bytes, report.buffer_bytes,
            ",".join(sorted(devices)) or "none", tuple(entries), units)


def _error_payload(err: BaseException, rank: int) -> _Payload:
    return (rank, f"{type(err).__name__}: {err}", 0, 0, 0, "", (), ())


def gather_report(report: Report | BaseException, *, group: Any = None,
                  uneven_ratio: float = UNEVEN_RATIO) -> Report:
    """Gather every rank's share of the model and add findings about the ranks together.

    A collective: every rank of ``group`` must call it. Each rank sends a few plain values
    (names, global shapes, dtypes, local sizes; never tensors); every rank gets the same
    result, with :attr:`Report.ranks` filled and these findings added:

    * ``distributed-rank-mismatch`` (error): ranks disagree on parameter or buffer names, their
      order, global shapes or dtypes, or on which modules are FSDP units — FSDP's collectives
      then hang or mix up tensors;
    * ``distributed-uneven-shards`` (warning): the rank holding the most parameter bytes holds
      more than ``uneven_ratio`` times the mean.

    Ties split across FSDP units cannot be seen here: FSDP2 gives each unit its own copy, so
    after wrapping the names no longer share memory; :func:`check_fsdp_ties` compares the ties
    found before wrapping with the units after.

    Not running distributed, the report comes back unchanged.

    Args:
        report: this rank's report; or the exception this rank hit instead, so that the other
            ranks do not wait for it forever.
        group: the process group (default: the default group).
        uneven_ratio: the threshold of the uneven-shards finding (see :data:`UNEVEN_RATIO`).

    Returns:
        The report with ``ranks``, findings and a note about the gather.

    Raises:
        TorchscopeError: some rank passed an exception (every rank raises, naming them).

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP())
    >>> gather_report(r) is r  # not distributed
    True
    """
    if not isinstance(report, (Report, BaseException)):
        raise InputSpecError(
            f"gather_report: report = {_shown(report)} is not a Report; pass what "
            "torchscope.summarize returned on this rank (or the exception it raised)")
    if isinstance(uneven_ratio, bool) or not isinstance(uneven_ratio, (int, float)) or not (
            uneven_ratio >= 1):
        raise InputSpecError(
            f"gather_report: uneven_ratio = {_shown(uneven_ratio)} is not a number >= 1; "
            f"give e.g. {UNEVEN_RATIO}")
    rw = _rank_world()
    if rw is None:
        if isinstance(report, BaseException):
            raise report
        return report
    dist = _dist()
    rank = int(dist.get_rank(group))
    world = int(dist.get_world_size(group))
    mine = _error_payload(report, rank) if isinstance(report, BaseException) else _payload(
        report, rank)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, mine, group=group)
    payloads: list[_Payload] = sorted(gathered, key=lambda p: p[0])
    failed = [p for p in payloads if p[1] is not None]
    if failed:
        text = "; ".join(f"rank {p[0]}: {p[1]}" for p in failed)
        err = TorchscopeError(f"summarize failed on {len(failed)} of {world} ranks — {text}")
        if isinstance(report, BaseException):
            raise err from report
        raise err
    assert isinstance(report, Report)
    ranks = tuple(RankRecord(p[0], p[2], p[3], p[4], p[5]) for p in payloads)
    findings = [*_mismatch(payloads), *_uneven(payloads, uneven_ratio)]
    backend = str(dist.get_backend(group))
    note = f"gathered from {world} ranks ({backend}): counts are global, sizes per rank"
    return replace(report, ranks=ranks, findings=(*report.findings, *findings),
                   notes=(*report.notes, note))


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _listed(items: Sequence[str]) -> str:
    more = len(items) - _LIST_LIMIT
    return "; ".join(items[:_LIST_LIMIT]) + (f"; +{more} more" if more > 0 else "")


def _mismatch(payloads: Sequence[_Payload]) -> list[Finding]:
    """Differences of every rank against rank 0 (names, order, shapes, dtypes, FSDP units)."""
    ref = payloads[0]
    ref_entries = {e[0]: e for e in ref[6]}
    problems: list[str] = []
    first_name: str | None = None
    for p in payloads[1:]:
        entries = {e[0]: e for e in p[6]}
        rank = p[0]
        missing = [n for n in ref_entries if n not in entries]
        extra = [n for n in entries if n not in ref_entries]
        for n in missing:
            problems.append(f"{n!r} is on rank {ref[0]} but not on rank {rank}")
        for n in extra:
            problems.append(f"{n!r} is on rank {rank} but not on rank {ref[0]}")
        first_name = first_name or next(iter(missing + extra), None)
        for name, (_, shape, dtype, _) in ref_entries.items():
            other = entries.get(name)
            if other is None or (other[1], other[2]) == (shape, dtype):
                continue
            problems.append(f"{name!r} is {_fmt_shape(shape)} {dtype} on rank {ref[0]} but "
                            f"{_fmt_shape(other[1])} {other[2]} on rank {rank}")
            first_name = first_name or name
        if not missing and not extra and list(entries) != list(ref_entries):
            problems.append(f"rank {rank} registers the same names in another order than "
                            f"rank {ref[0]}")
        if set(p[7]) != set(ref[7]):
            only_ref = sorted(set(ref[7]) - set(p[7]))
            only_p = sorted(set(p[7]) - set(ref[7]))
            problems.append(f"FSDP units differ: only rank {ref[0]} shards "
                            f"{[u or '(root)' for u in only_ref]}, only rank {rank} shards "
                            f"{[u or '(root)' for u in only_p]}")
    if not problems:
        return []
    return [Finding(
        "distributed-rank-mismatch", Severity.ERROR,
        f"ranks disagree on the model: {_listed(problems)}",
        path=first_name,
        hint="build the same model on every rank (same config and code path, same wrapping) "
        "before sharding: FSDP's collectives hang or mix up tensors otherwise",
    )]


def _uneven(payloads: Sequence[_Payload], ratio: float) -> list[Finding]:
    sizes = [p[3] for p in payloads]
    if len(sizes) < 2 or not any(sizes):
        return []
    mean = sum(sizes) / len(sizes)
    largest = max(range(len(sizes)), key=lambda i: sizes[i])
    if sizes[largest] <= ratio * mean:
        return []

    # the tensors whose shards differ most between ranks
    per_name: dict[str, list[int]] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    for p in payloads:
        for name, shape, _, n in p[6]:
            per_name.setdefault(name, []).append(n)
            shapes.setdefault(name, shape)
    spread = sorted(
        ((max(v) - min(v), name) for name, v in per_name.items()
         if len(v) == len(payloads) and max(v) != min(v)),
        reverse=True,
    )
    worst = [f"{name} {_fmt_shape(shapes[name])} split "
             f"{'/'.join(str(n) for n in per_name[name])}" for _, name in spread[:3]]
    split = ", ".join(f"rank {p[0]} {humanize_bytes(p[3])}" for p in payloads)
    above = 100 * (sizes[largest] / mean - 1)
    detail = f"; most uneven (elements per rank): {', '.join(worst)}" if worst else ""
    return [Finding(
        "distributed-uneven-shards", Severity.WARNING,
        f"parameter shards are uneven: {split}; rank {payloads[largest][0]} holds "
        f"{above:.0f}% more than the mean, and peak memory follows the largest shard{detail}",
        path=spread[0][1] if spread else None,
        hint="make sharded dimensions divisible by the world size (pad vocabulary or hidden "
        "sizes), or shard large odd-sized tensors on another dim (fully_shard's "
        "shard_placement_fn)",
    )]

