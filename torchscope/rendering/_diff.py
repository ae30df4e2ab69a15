"""Rendering of an :class:`~torchscope.records.ArchitectureDiff`: text, Markdown, rich, JSON.

A headline (equal, or the parameter totals before → after), then one table per kind of change:
modules, parameters and buffers, per-block counts, ties and call shapes. Markers: ``+`` added,
``-`` removed, ``~`` changed, ``→`` renamed. Renderers read the record only; every name and
type is escaped (:mod:`torchscope.rendering._text`), never read as markup.

>>> from torchscope.records import ArchitectureDiff
>>> render_diff(ArchitectureDiff("MLP", "MLP", 7946, 7946), fmt="text")
'No architecture differences: MLP and MLP match (7,946 parameters).'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchscope.records import record_json
from torchscope.rendering._text import escape_markdown, escape_text, plain

if TYPE_CHECKING:
    from torchscope.records import ArchitectureDiff, TensorChange

__all__ = ["render_diff"]

_MAX_ROWS = 60
_MARK = {"added": "+", "removed": "-", "changed": "~", "renamed": "→"}
_Section = tuple[str, list[str], list[list[str]]]
_NONE = "—"


def _n(value: int | None) -> str:
    return _NONE if value is None else f"{value:,}"


def _delta(before: int | None, after: int | None) -> str:
    d = (after or 0) - (before or 0)
    return f"{d:+,}" if d else "0"


def _name(path: str) -> str:
    return escape_text(path) or "(root)"


def _e(text: object) -> str:
    return escape_text(str(text))


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown (lazy)" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _tensor_row(t: TensorChange) -> list[str]:
    kind = t.kind.value
    name = _e(t.name) if t.old_name is None else f"{_e(t.name)} (was {_e(t.old_name)})"
    if kind in ("added", "removed"):
        what = f"{t.tensor_kind.value} {_shape(t.shape)} {_e(t.dtype)}"
    else:
        what = "; ".join(f"{_e(f.field)} {_e(f.before)} → {_e(f.after)}" for f in t.fields)
    return [_MARK[kind], name, what]


def _headline(d: ArchitectureDiff) -> str:
    if d.equal:
        return (f"No architecture differences: {_e(d.before)} and {_e(d.after)} match "
                f"({d.after_params:,} parameters).")
    delta = d.after_params - d.before_params
    change = f" ({delta:+,})" if delta else " (same total)"
    return (f"Architecture diff: {_e(d.before)} → {_e(d.after)}\n"
            f"Parameters: {d.before_params:,} → {d.after_params:,}{change}")


def _sections(d: ArchitectureDiff) -> list[_Section]:
    out: list[_Section] = []
    if d.modules:
        rows = []
        for m in d.modules:
            if m.kind.value == "changed":
                what = f"type {_e(m.old_type)} → {_e(m.new_type)}"
            elif m.kind.value == "renamed":
                what = f"{_e(m.new_type)}, renamed from {_e(m.old_path)}"
            else:
                what = _e(m.new_type or m.old_type)
            rows.append([_MARK[m.kind.value], _name(m.path), what])
        out.append((f"Modules ({len(rows)} changed)", ["", "Module", "Change"], rows))
    if d.tensors:
        rows = [_tensor_row(t) for t in d.tensors]
        out.append((f"Parameters and buffers ({len(rows)} changed)", ["", "Name", "Change"],
                    rows))
    if d.counts:
        rows = []
        for c in d.counts:
            name = _name(c.path) + (f" (was {_e(c.old_path)})" if c.old_path is not None else "")
            lazy = " (≥, lazy)" if c.lazy else ""
            rows.append([name, _n(c.before_params), _n(c.after_params),
                         _delta(c.before_params, c.after_params) + lazy,
                         _n(c.before_buffers), _n(c.after_buffers)])
        out.append(("Counts per block (tie-aware)",
                    ["Module", "Params before", "after", "Δ", "Buffers before", "after"], rows))
    if d.ties:
        rows = [["+" if t.kind == "made" else "-", _e(t.kind), " ↔ ".join(map(_e, t.names))]
                for t in d.ties]
        out.append(("Tied tensors", ["", "Tie", "Names"], rows))
    if d.calls:
        rows = [[_name(c.path), str(c.call), _e(c.what), _e(c.before), _e(c.after)]
                for c in d.calls]
        out.append(("Call shapes", ["Module", "Call", "What", "Before", "After"], rows))
    return out


def _clip_rows(rows: list[list[str]], width: int) -> list[list[str]]:
    if len(rows) <= _MAX_ROWS:
        return rows
    more = len(rows) - _MAX_ROWS
    return [*rows[:_MAX_ROWS], ["…", f"and {more:,} more (--format json lists all)",
                                *[""] * (width - 2)]]


def _plain(d: ArchitectureDiff, *, markdown: bool) -> str:
    from tabulate import tabulate

    head = _headline(d)  # names escaped: a newline in it is the break between its lines
    parts = ["  \n".join(map(escape_markdown, head.split("\n"))) if markdown else head]
    for title, header, rows in _sections(d):
        cells = _clip_rows(rows, len(header))
        if markdown:
            cells = [[escape_markdown(c) for c in row] for row in cells]
        table = tabulate(cells, headers=header, disable_numparse=True,
                         tablefmt="github" if markdown else "simple")
        parts.append(f"### {title}\n\n{table}" if markdown else f"{title}\n{table}")
    parts.extend(f"Note: {escape_markdown(n) if markdown else _e(n)}" for n in d.notes)
    return "\n\n".join(parts)


def _rich(d: ArchitectureDiff) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = {"+": "green", "-": "red", "~": "yellow", "→": "cyan"}
    # every string below is escaped already; Text shows it as written, never as markup
    items: list[Any] = [Text(_headline(d), style="bold green" if d.equal else "bold")]
    for title, header, rows in _sections(d):
        table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD,
                      header_style="bold")
        for col in header:
            table.add_column(Text(col), overflow="fold")
        for row in _clip_rows(rows, len(header)):
            table.add_row(*(Text(cell) for cell in row), style=style.get(row[0]))
        items.append(table)
    items.extend(plain(f"Note: {n}", style="dim") for n in d.notes)
    return Group(*items)


def render_diff(d: ArchitectureDiff, *, fmt: str = "text") -> Any:
    """The diff as text, Markdown or JSON (``str``), or a rich renderable (``fmt="rich"``).

    >>> from torchscope.records import ArchitectureDiff
    >>> render_diff(ArchitectureDiff("A", "B", 10, 12), fmt="markdown").splitlines()[0]
    'Architecture diff: A → B  '
    """
    if fmt == "json":
        return record_json(d.to_dict())  # with its "equal" flag
    if fmt == "rich":
        return _rich(d)
    return _plain(d, markdown=fmt == "markdown")

