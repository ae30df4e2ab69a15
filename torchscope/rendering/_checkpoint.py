"""Rendering of a :class:`~torchscope.checkpoint.CheckpointInfo` and a ``CheckpointDiff``.

Plain text (whole names, sentences wrapped at words), Markdown, rich and JSON. Keys from the
file are escaped (:mod:`torchscope.rendering._text`): never read as rich markup or Markdown,
control characters shown as escapes. Renderers read only the records; they never open a file
or touch a model.

>>> import torch, tempfile, os
>>> from torchscope.checkpoint import inspect_checkpoint
>>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
>>> torch.save({"w": torch.zeros(2, 3)}, path)
>>> print(render_info(inspect_checkpoint(path), fmt="text").splitlines()[-1])
w       [2, 3]   float32  24 B
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchscope.records import record_json
from torchscope.rendering._report import WIDTH, findings_table, humanize_bytes, humanize_count
from torchscope.rendering._text import escape_markdown, escape_text, plain

if TYPE_CHECKING:
    from torchscope.records import CheckpointDiff, CheckpointEntry, CheckpointInfo

__all__ = ["render_diff", "render_info"]

_FORMATS = {
    "torch-zip": "torch.save file (zip)",
    "torch-legacy": "torch.save file (legacy pickle format)",
    "safetensors": "safetensors file",
    "sharded": "sharded checkpoint",
    "state-dict": "in-memory state dict",
}
_MAX_DIFF_ROWS = 40
_SHOWN_HYPERPARAMS = ("lr", "momentum", "betas", "weight_decay", "eps", "alpha", "nesterov")


@dataclass(frozen=True, slots=True)
class _Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


_Block = str | _Table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ------------------------------------------------------------------------------------------
# the blocks of a listing and of a diff


def _entry_rows(entries: Sequence[CheckpointEntry], prefix: str,
                columns: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    rows = []
    for e in entries:
        name = e.name[len(prefix):] if prefix and e.name.startswith(prefix) else e.name
        row = [name or "(the tensor)", _shape(e.shape), e.dtype, humanize_bytes(e.nbytes)]
        if "stored" in columns:
            row.append(humanize_bytes(e.stored_bytes) if e.stored_bytes != e.nbytes else "")
        if "device" in columns:
            row.append(e.device or "unknown")
        if "shard" in columns:
            row.append(e.shard or "")
        rows.append(tuple(row))
    return tuple(rows)


def _info_blocks(info: CheckpointInfo) -> list[_Block]:
    kind = _FORMATS.get(info.format, info.format)
    size = f" of {humanize_bytes(info.file_bytes)}" if info.file_bytes else ""
    blocks: list[_Block] = [
        f"{info.path}: {kind}{size}: {_plural(len(info.entries), 'tensor')}, "
        f"{humanize_count(info.total_numel)} elements, {humanize_bytes(info.total_bytes)} of data"
    ]
    if info.shards:
        blocks.append(f"shards: {', '.join(info.shards)}")
    columns: tuple[str, ...] = ("name", "shape", "dtype", "size")
    if any(e.stored_bytes != e.nbytes for e in info.entries):
        columns += ("stored",)
    if any(e.device not in (None, "cpu") for e in info.entries):
        columns += ("device",)
    if info.shards:
        columns += ("shard",)

    placed: set[int] = set()
    opt_prefixes = tuple(_join(o.path, "") for o in info.optimizers)
    for i, e in enumerate(info.entries):
        if opt_prefixes and e.name.startswith(opt_prefixes):
            placed.add(i)
    for sd in info.state_dicts:
        prefix = _join(sd, "")
        members = [(i, e) for i, e in enumerate(info.entries)
                   if i not in placed and (sd == "" or e.name.startswith(prefix))]
        placed.update(i for i, _ in members)
        entries = [e for _, e in members]
        where = "(the whole file)" if sd == "" else repr(sd)
        title = (f"state dict {where}: {_plural(len(entries), 'tensor')}, "
                 f"{humanize_bytes(_unique_bytes(entries, info))}")
        blocks.append(_Table(title, columns, _entry_rows(entries, prefix, columns)))
    rest = [e for i, e in enumerate(info.entries) if i not in placed]
    if rest:
        blocks.append(_Table(f"{_plural(len(rest), 'tensor')} outside state dicts", columns,
                             _entry_rows(rest, "", columns)))
    for o in info.optimizers:
        shown = [f"{k}={v}" for k, v in o.hyperparams if k in _SHOWN_HYPERPARAMS]
        keys = f" ({', '.join(o.state_keys)})" if o.state_keys else ""
        blocks.append(
            f"optimizer state {o.path!r}: {_plural(o.params_with_state, 'parameter')} with "
            f"state{keys}, {_plural(o.tensors, 'tensor')}, {humanize_bytes(o.nbytes)}; "
            f"{_plural(o.param_groups, 'param group')}"
            + (f" ({', '.join(shown)})" if shown else "")
        )
    if info.shared:
        rows = tuple((", ".join(g.names), g.kind.value.replace("_", " "),
                      humanize_bytes(g.nbytes)) for g in info.shared)
        blocks.append(_Table("tensors stored over the same bytes", ("names", "kind", "size"),
                             rows))
    if info.scalars:
        blocks.append(_Table("values", ("name", "value"),
                             tuple((k, v) for k, v in info.scalars)))
    if info.metadata:
        blocks.append(_Table("metadata", ("key", "value"),
                             tuple((k, v) for k, v in info.metadata)))
    return blocks


def _unique_bytes(entries: Sequence[CheckpointEntry], info: CheckpointInfo) -> int:
    """Bytes of ``entries`` counting memory that tensors share inside the file once."""
    total = sum(e.nbytes for e in entries)
    names = {e.name for e in entries}
    for g in info.shared:
        if set(g.names) <= names:
            total -= sum(info.entry(n).nbytes for n in g.names) - g.nbytes
    return total


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _diff_blocks(diff: CheckpointDiff) -> list[_Block]:
    verdict = "would succeed" if diff.would_load_strict else "would FAIL"
    where = "the whole file" if diff.state_dict == "" else f"state dict {diff.state_dict!r}"
    blocks: list[_Block] = [
        f"{diff.source} vs {diff.model_type}: load_state_dict(strict=True) {verdict}"]
    prefix = diff.strip_prefix or diff.add_prefix
    fixed = ""
    if prefix is not None:
        how = "removing" if diff.strip_prefix else "adding"
        after = "would succeed" if diff.would_load_after_fix else "would still fail"
        blocks.append(f"after {how} the prefix {prefix!r} on the file's keys, loading {after}")
        fixed = " (prefix removed)" if diff.strip_prefix else " (prefix added)"
    blocks.append(
        f"compared {where}{fixed}: {diff.matched} keys match, {len(diff.missing)} missing, "
        f"{len(diff.unexpected)} unexpected, {len(diff.shape_mismatches)} shape and "
        f"{len(diff.dtype_mismatches)} dtype mismatches")
    tied = dict(diff.tied_missing)
    rows: list[tuple[str, str, str]] = []
    rows += [(k, "missing", f"tied to {tied[k]}" if k in tied else "not in the file")
             for k in diff.missing]
    rows += [(k, "unexpected", "not in the model") for k in diff.unexpected]
    rows += [(s.name, "shape", f"file {_shape(s.file_shape)}, model {_shape(s.model_shape)}")
             for s in diff.shape_mismatches]
    rows += [(d.name, "dtype", f"file {d.file_dtype}, model {d.model_dtype}")
             for d in diff.dtype_mismatches]
    for u in diff.untied_in_file:
        state = {True: "values differ", False: "equal values", None: "not comparable"}
        rows += [(n, "untied copy", f"{state[u.values_differ]}; {u.wins} wins")
                 for n in u.names]
    if len(rows) > _MAX_DIFF_ROWS:
        more = len(rows) - _MAX_DIFF_ROWS + 1
        rows = [*rows[: _MAX_DIFF_ROWS - 1], ("…", f"{more} more", "all of them: --format json")]
    if rows:
        blocks.append(_Table("differences", ("key", "problem", "detail"), tuple(rows)))
    return blocks


# ------------------------------------------------------------------------------------------
# formats


def _text(blocks: list[_Block], findings_text: str, *, width: int) -> str:
    from tabulate import tabulate

    out: list[str] = []
    for block in blocks:
        if isinstance(block, str):
            out += textwrap.wrap(escape_text(block), width, subsequent_indent="  ",
                                 break_on_hyphens=False, break_long_words=False)
            continue
        rows = [[escape_text(c) for c in r] for r in block.rows]  # whole: never elided
        out += ["", escape_text(block.title)]
        out.append(tabulate(rows, headers=list(block.headers), tablefmt="simple",
                            disable_numparse=True))
    if findings_text:
        out.append("")
        for line in findings_text.splitlines():
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            out += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                 break_long_words=False)
    return "\n".join(out) + "\n"


def _markdown(blocks: list[_Block], findings_md: str) -> str:
    from tabulate import tabulate

    out: list[str] = []
    for block in blocks:
        if isinstance(block, str):
            out += [escape_markdown(block), ""]
            continue
        out += [f"**{escape_markdown(block.title)}**", ""]
        out.append(tabulate([[escape_markdown(c) for c in r] for r in block.rows],
                            headers=list(block.headers), tablefmt="github",
                            disable_numparse=True))
        out.append("")
    if findings_md:
        out += ["**Findings**", "", findings_md, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _rich(blocks: list[_Block], findings: Any) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(plain(block))
            continue
        parts.append(Text(""))
        table = Table(title=plain(block.title), title_justify="left", box=box.SIMPLE_HEAD,
                      header_style="bold")
        for i, h in enumerate(block.headers):
            table.add_column(h, overflow="fold", no_wrap=i > 0 and h != "detail")
        for row in block.rows:
            table.add_row(*(plain(c) for c in row))
        parts.append(table)
    if findings is not None:
        parts.append(findings)
    return Group(*parts)


def _render(blocks: list[_Block], findings: Sequence[Any], fmt: str, json_text: str,
            width: int) -> Any:
    if fmt == "json":
        return json_text
    if fmt == "markdown":
        return _markdown(blocks, findings_table(findings, fmt="markdown") if findings else "")
    if fmt == "rich":
        return _rich(blocks, findings_table(findings, fmt="rich") if findings else None)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use rich, text, markdown or json")
    return _text(blocks, findings_table(findings, fmt="text") if findings else "", width=width)


def render_info(info: CheckpointInfo, *, fmt: str = "text", width: int = WIDTH) -> Any:
    """A checkpoint listing: ``str`` for ``text``/``markdown``/``json``, a rich renderable for
    ``rich``.

    Args:
        info: what :func:`~torchscope.inspect_checkpoint` returned.
        fmt: ``rich``, ``text``, ``markdown`` or ``json``.
        width: the width sentences wrap at (names are never cut).

    Returns:
        The rendering, to be printed with :func:`torchscope.rendering.emit`.

    Raises:
        ValueError: an unknown ``fmt``.
    """
    return _render(_info_blocks(info), info.findings, fmt, record_json(info) + "\n", width)


def render_diff(diff: CheckpointDiff, *, fmt: str = "text", width: int = WIDTH) -> Any:
    """A checkpoint-vs-model diff, in the same formats as :func:`render_info`.

    Args:
        diff: what :func:`~torchscope.diff_checkpoint` returned.
        fmt: ``rich``, ``text``, ``markdown`` or ``json``.
        width: the width sentences wrap at (names are never cut).

    Returns:
        The rendering, to be printed with :func:`torchscope.rendering.emit`.

    Raises:
        ValueError: an unknown ``fmt``.
    """
    return _render(_diff_blocks(diff), diff.findings, fmt, record_json(diff) + "\n", width)
