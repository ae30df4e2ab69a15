"""Rendering of an :class:`~torchscope.init.InitReport`: plain text, Markdown, rich and JSON.

Renderers read only the report (and optional per-tensor statistics): they never touch a model.
``stats`` maps an entry's name to ``(mean, std)``, or ``None`` where they are unknown (lazy or
meta tensors).

>>> import torchscope
>>> r = torchscope.apply_init(torchscope.examples.MLP(), {"*": "keep"}, dry_run=True)
>>> print(render_init_text(r).splitlines()[0])
init plan (dry run): 4 tensors, 4 kept
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torchscope.records import record_json
from torchscope.rendering._text import WIDTH, escape_markdown, escape_text, plain

if TYPE_CHECKING:
    from torchscope.records import InitEntry, InitReport

__all__ = [
    "Stats",
    "stats_of",
    "render_init",
    "render_init_json",
    "render_init_markdown",
    "render_init_rich",
    "render_init_text",
]

#: entry name -> (mean, std) after applying the policy to a copy; ``None`` when unknown
Stats = Mapping[str, "tuple[float, float] | None"]

_STATUS_HELP = {
    "planned": "planned: would be initialized (dry run)",
    "deferred": "deferred: initialized right after the lazy layer's first forward materializes it",
    "meta": "meta: a meta tensor has no data to fill (plan only)",
    "unmatched": "unmatched: no rule matched; left as it was",
}


def _title(report: InitReport) -> str:
    counts: dict[str, int] = {}
    for e in report.entries:
        counts[e.status.value] = counts.get(e.status.value, 0) + 1
    what = "init plan (dry run)" if report.dry_run else "init"
    seed = f", seed {report.seed}" if report.seed is not None else ""
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    n = len(report.entries)
    return f"{what}{seed}: {n} tensor{'' if n == 1 else 's'}, {parts}"


def _shape(e: InitEntry) -> str:
    return "unknown (lazy)" if e.shape is None else "[" + ", ".join(map(str, e.shape)) + "]"


def _names(e: InitEntry) -> str:
    if not e.aliases:
        return escape_text(e.name)
    more = f" (+{len(e.aliases) - 1})" if len(e.aliases) > 1 else ""
    return f"{escape_text(e.name)} = {escape_text(e.aliases[0])}{more}"


def _num(value: float) -> str:
    return f"{value:.3g}"


def _rows(report: InitReport, stats: Stats | None) -> tuple[list[str], list[list[str]]]:
    headers = ["tensor", "shape", "rule", "init", "status"]
    if stats is not None:
        headers += ["mean", "std"]
    rows: list[list[str]] = []
    for e in report.entries:
        row = [
            _names(e),
            _shape(e),
            "-" if e.rule is None else f"#{e.rule}",
            "-" if e.init is None else escape_text(e.init.split("(", 1)[0]),
            e.status.value,
        ]
        if stats is not None:
            value = stats.get(e.name)
            row += ["unknown", "unknown"] if value is None else [_num(value[0]), _num(value[1])]
        rows.append(row)
    return headers, rows


def _rule_rows(report: InitReport) -> list[list[str]]:
    return [
        [
            f"#{r.index}",
            escape_text(r.selector),
            escape_text(r.init),
            f"{r.decided} tensor" + ("" if r.decided == 1 else "s")
            + ("  (matched nothing)" if r.matched == 0
               else "  (all taken by earlier rules)" if r.decided == 0 else ""),
        ]
        for r in report.rules
    ]


def _footer(report: InitReport, width: int = WIDTH) -> list[str]:
    import textwrap

    seen = {e.status.value for e in report.entries}
    texts = [text for status, text in _STATUS_HELP.items() if status in seen]
    texts += [f"note: {escape_text(n)}" for n in report.notes]
    lines: list[str] = []
    for text in texts:
        lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ",
                               break_long_words=False)
    return lines


def render_init_text(report: InitReport, *, stats: Stats | None = None,
                     width: int = WIDTH) -> str:
    """The report as plain-text tables; names, shapes and initializers are never cut (a long
    name makes the table wider, as piped text should be).

    Args:
        report: what :func:`~torchscope.apply_init` returned.
        stats: optional ``name -> (mean, std)`` columns.
        width: where the footer's prose wraps.

    Returns:
        The text, ending with a newline.
    """
    from tabulate import tabulate

    headers, rows = _rows(report, stats)
    out = [_title(report), ""]
    align = ["left"] * 5 + ["right"] * (len(headers) - 5)
    out.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True,
                        colalign=align))
    out += ["", "rules (first match wins):"]
    rule_rows = _rule_rows(report)
    out.append(tabulate(rule_rows, tablefmt="plain", disable_numparse=True))
    footer = _footer(report, width)
    if footer:
        out += ["", *footer]
    return "\n".join(out) + "\n"


def render_init_markdown(report: InitReport, *, stats: Stats | None = None) -> str:
    """The report as Markdown (GitHub tables), names in full."""
    from tabulate import tabulate

    headers, rows = _rows(report, stats)
    out = [f"**{_title(report)}**", ""]
    align = ["left"] * 5 + ["right"] * (len(headers) - 5)
    out.append(tabulate([[escape_markdown(c) for c in r] for r in rows], headers=headers,
                        tablefmt="github", disable_numparse=True, colalign=align))
    out += ["", "Rules (first match wins):", ""]
    out.append(tabulate([[escape_markdown(c) for c in r] for r in _rule_rows(report)],
                        headers=["rule", "selector", "init", "decided"],
                        tablefmt="github", disable_numparse=True))
    footer = _footer(report)
    if footer:
        out += [""] + [f"- {line.strip()}" for line in footer]
    return "\n".join(out) + "\n"


def render_init_rich(report: InitReport, *, stats: Stats | None = None) -> Any:
    """The report as a rich renderable (a group of two tables and notes)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    headers, rows = _rows(report, stats)
    table = Table(box=box.SIMPLE_HEAD)
    for i, h in enumerate(headers):
        table.add_column(h, overflow="fold", justify="right" if i >= 5 else "left",
                         no_wrap=i in (2, 4))
    styles = {"unmatched": "yellow", "deferred": "cyan", "applied": "green"}
    for row in rows:
        table.add_row(*(plain(c) for c in row), style=styles.get(row[4]))
    rules = Table(title="rules (first match wins)", box=box.SIMPLE_HEAD, title_justify="left",
                  show_header=False)
    for _ in range(4):
        rules.add_column(overflow="fold")
    for rule, r in zip(report.rules, _rule_rows(report)):
        rules.add_row(*(plain(c) for c in r), style="yellow" if rule.decided == 0 else None)
    parts: list[Any] = [plain(_title(report), style="bold"), table, rules]
    footer = _footer(report)
    if footer:
        parts.append(Text("\n".join(footer)))
    return Group(*parts)


def render_init_json(report: InitReport, *, stats: Stats | None = None) -> str:
    """The report as JSON (exact values); with ``stats``, each entry gains ``mean``/``std``."""
    data = report.to_dict()
    data.pop("stats", None)  # shown per entry below
    if stats is not None:
        for entry in data["entries"]:
            value = stats.get(entry["name"])
            entry["mean"], entry["std"] = (None, None) if value is None else value
    return record_json(data) + "\n"


def stats_of(report: InitReport) -> Stats | None:
    """The report's mean/std per tensor name, or ``None`` when it holds none."""
    if not report.stats:
        return None
    return {name: None if mean is None or std is None else (mean, std)
            for name, mean, std in report.stats}


def render_init(report: InitReport, *, fmt: str, stats: Stats | None = None) -> Any:
    """Dispatch on ``fmt`` (``rich``, ``text``, ``markdown``, ``json``).

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "rich":
        return render_init_rich(report, stats=stats)
    if fmt == "text":
        return render_init_text(report, stats=stats)
    if fmt == "markdown":
        return render_init_markdown(report, stats=stats)
    if fmt == "json":
        return render_init_json(report, stats=stats)
    raise ValueError(f"unknown format {fmt!r}; choose rich, text, markdown or json")
