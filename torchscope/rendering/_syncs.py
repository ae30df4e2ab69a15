"""Rendering of a :class:`~torchscope.syncs.SyncReport`: text, Markdown, JSON and rich.

Sites and functions are shown whole (a long path is never clipped); fixes are listed once per
operation below the table and wrapped at words; file and function names are escaped
(:mod:`torchscope.rendering._text`) and never read as rich markup. Threads that were already
running when recording started, and so were not observed, are named below the headline in every
format (the first few in text, Markdown and rich; all of them in JSON).

>>> import torch, torchscope
>>> with torchscope.detect_syncs() as report:
...     _ = torch.ones(2).tolist()
>>> print(str(report).splitlines()[0])
1 host-device synchronization at 1 site
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from torchscope.records import record_json
from torchscope.rendering._text import WIDTH, escape_markdown, escape_text, plain

if TYPE_CHECKING:
    from torchscope.records import SyncReport

__all__ = ["render_sync_report", "rich_sync_report"]



def _headline(report: SyncReport) -> str:
    total, n = report.total, len(report.sites)
    if total == 0:
        return "no host-device synchronizations"
    line = f"{_plural(total, 'host-device synchronization')} at {_plural(n, 'site')}"
    return line


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _note(report: SyncReport) -> str | None:
    if report.total and report.include_cpu and not report.cuda:
        return ("(no accelerator: these are the operations that would make the host wait for "
                "a GPU)")
    return None


#: how many unobserved threads the text, Markdown and rich renderings name (JSON names all)
_THREAD_NAMES = 8


def _threads_note(report: SyncReport) -> str | None:
    note = report.threads_note(limit=_THREAD_NAMES)
    if note is not None and len(report.unobserved_threads) > _THREAD_NAMES:
        note += " (the JSON output names them all)"
    return note


def _rows(report: SyncReport) -> tuple[list[str], list[list[Any]]]:
    headers = ["count", "site", "function", "op"]
    rows: list[list[Any]] = []
    for s in report.sites:
        rows.append([f"{s.count:,}", escape_text(s.location), escape_text(s.function),
                     escape_text(s.op)])
    return headers, rows


def _fixes(report: SyncReport) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for s in report.sites:
        seen.setdefault(s.op, f"({s.kind.value}) {s.fix}")
    return [(escape_text(op), escape_text(fix)) for op, fix in seen.items()]


def _vias(report: SyncReport) -> list[tuple[str, str]]:
    return [(escape_text(s.location), escape_text(s.via)) for s in report.sites if s.via]


def _wrapped(pairs: list[tuple[str, str]]) -> list[str]:
    width = max(len(key) for key, _ in pairs)
    lines = []
    for key, text in pairs:
        wrapped = textwrap.wrap(text, max(WIDTH - width - 4, 40), break_long_words=False,
                                break_on_hyphens=False) or [""]
        lines.append(f"  {key.ljust(width)}  {wrapped[0]}")
        lines += [" " * (width + 4) + more for more in wrapped[1:]]
    return lines


def render_sync_report(report: SyncReport, *, fmt: str = "text") -> str:
    """The report as ``text`` (a plain table), ``markdown`` or ``json``.

    Args:
        report: what :func:`torchscope.detect_syncs` recorded.
        fmt: ``text``, ``markdown`` or ``json`` (``rich`` renders as text here).

    Returns:
        The rendered text, ending with a newline.

    Raises:
        ValueError: an unknown ``fmt``.
    """
    if fmt == "json":
        return record_json(report.to_dict()) + "\n"
    if fmt not in ("text", "markdown", "rich"):
        raise ValueError(f"unknown format {fmt!r}; use text, markdown or json")
    from tabulate import tabulate

    lines = [_headline(report)]
    note = _note(report)
    if note:
        lines.append(note)
    threads = _threads_note(report)
    if threads:
        threads = escape_markdown(threads) if fmt == "markdown" else escape_text(threads)
        lines += ["", *textwrap.wrap(threads, WIDTH, break_long_words=False,
                                     break_on_hyphens=False)]
    if report.total:
        headers, rows = _rows(report)
        if fmt == "markdown":
            rows = [[escape_markdown(c) for c in row] for row in rows]
        table_fmt = "github" if fmt == "markdown" else "simple"
        lines += ["", tabulate(rows, headers=headers, tablefmt=table_fmt,
                               colalign=("right",) + ("left",) * (len(headers) - 1))]
        vias = _vias(report)
        if vias:
            lines += ["", "synchronized inside torch, called from the site:"]
            lines += _wrapped([(site, f"in {via}") for site, via in vias])
        lines += ["", "fixes:"]
        lines += _wrapped(_fixes(report))
    return "\n".join(lines) + "\n"


def rich_sync_report(report: SyncReport) -> Any:
    """A rich renderable of the report (a table with the fixes below it)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(_headline(report), style="bold")]
    note = _note(report)
    if note:
        parts.append(Text(note, style="dim"))
    threads = _threads_note(report)
    if threads:
        parts += [Text(""), plain(threads, style="yellow")]
    if report.total:
        headers, rows = _rows(report)
        table = Table(*headers, box=None, pad_edge=False, header_style="bold")
        table.columns[0].justify = "right"
        for row in rows:
            table.add_row(*(plain(c) for c in row))
        parts += [Text(""), table]
        vias = _vias(report)
        if vias:
            inside = Table("site", "via", box=None, pad_edge=False, show_header=False)
            for site, via in vias:
                inside.add_row(plain(site), plain(f"in {via}"))
            parts += [Text(""), Text("synchronized inside torch, called from the site:",
                                     style="bold"), inside]
        fixes = Table("op", "fix", box=None, pad_edge=False, show_header=False)
        for op, fix in _fixes(report):
            fixes.add_row(plain(op), plain(fix))
        parts += [Text(""), Text("fixes:", style="bold"), fixes]
    return Group(*parts)
