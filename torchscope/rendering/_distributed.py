"""The per-rank table of a gathered distributed report."""

from __future__ import annotations

from typing import Any

from torchscope._units import humanize_bytes, humanize_count
from torchscope.records import Report
from torchscope.rendering._text import escape_text, plain

__all__ = ["ranks_renderable", "ranks_rows"]


def ranks_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-rank table (empty rows when nothing was gathered).

    Columns: rank, device, local parameter count, parameter and buffer bytes on that rank,
    and the rank's share of all parameter bytes; a last ``all`` row sums the ranks.

    >>> import torchscope
    >>> ranks_rows(torchscope.summarize(torchscope.examples.MLP()))[1]
    []
    """

    header = ["Rank", "Device", "Local params", "Params size", "Buffers size", "Share"]
    if not report.ranks:
        return header, []
    total_bytes = sum(r.param_bytes for r in report.ranks)
    rows: list[list[str]] = []
    for r in report.ranks:
        share = f"{100 * r.param_bytes / total_bytes:.1f}%" if total_bytes else "?"
        rows.append([str(r.rank), escape_text(r.device), humanize_count(r.local_params),
                     humanize_bytes(r.param_bytes), humanize_bytes(r.buffer_bytes), share])
    rows.append(["all", "", humanize_count(sum(r.local_params for r in report.ranks)),
                 humanize_bytes(total_bytes),
                 humanize_bytes(sum(r.buffer_bytes for r in report.ranks)), "100%"])
    return header, rows


def ranks_renderable(report: Report, *, fmt: str = "rich") -> Any:
    """The per-rank table as a rich ``Table`` (``fmt="rich"``) or text/Markdown (a ``str``).

    >>> import torchscope
    >>> ranks_renderable(torchscope.summarize(torchscope.examples.MLP()), fmt="text")
    'Ranks: not gathered (run under torchrun with distributed=True)'
    """
    header, rows = ranks_rows(report)
    if not rows:
        return "Ranks: not gathered (run under torchrun with distributed=True)"
    n = len(report.ranks)
    title = f"Per-rank shares ({n} rank{'' if n == 1 else 's'})"
    if fmt in ("text", "markdown"):
        from tabulate import tabulate

        table = tabulate(rows, headers=header, disable_numparse=True,
                         tablefmt="github" if fmt == "markdown" else "simple")
        return f"{title}\n\n{table}"
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold")
    for name in header:
        t.add_column(name, justify="left" if name in ("Rank", "Device") else "right")
    for row in rows:
        t.add_row(*(plain(c) for c in row))
    return t
