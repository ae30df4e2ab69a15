"""The rendering of a :class:`~torchscope.records.CostReport`: the totals block (exact FLOP
counts, humanized beside them; peak memory of inference and of a training step), the table of
module calls, and the ``FLOPs`` and ``Saved act.`` columns of the module table.

>>> import torchscope
>>> cost = torchscope.estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)])
>>> cost_lines(cost)[0]
'forward 30,720 FLOPs (30.7 KFLOPs) · backward 40,960 FLOPs (41.0 KFLOPs)'
"""

from __future__ import annotations

from typing import Any

from torchscope._units import humanize_bytes
from torchscope.records import CallRecord, CostReport, ModuleRecord, Report, record_json
from torchscope.rendering._text import escape_markdown, escape_text, plain

__all__ = ["cost_block", "cost_lines", "cost_rows", "humanize_flops", "render_cost"]

_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD",
                    "sgd-momentum": "SGD with momentum"}


def humanize_flops(n: int) -> str:
    """``30720`` -> ``30.7 KFLOPs``; counts below 1,000 stay exact.

    >>> humanize_flops(30720), humanize_flops(1_234_000_000_000), humanize_flops(12)
    ('30.7 KFLOPs', '1.2 TFLOPs', '12 FLOPs')
    """
    for unit, scale in (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9),
                        ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}FLOPs"
    return f"{n} FLOPs"


def _exact(n: int) -> str:
    return f"{n:,} FLOPs" if abs(n) < 1000 else f"{n:,} FLOPs ({humanize_flops(n)})"


def cost_lines(cost: CostReport) -> list[str]:
    """The totals block: exact FLOPs (humanized beside), then the memory of a step.

    >>> import torchscope
    >>> c = torchscope.estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)],
    ...                              optimizer="adam")
    >>> cost_lines(c)[1].startswith("training step with Adam in float32: ")
    True
    """
    opt = _OPTIMIZER_NAMES.get(cost.optimizer or "", "no optimizer state")
    with_opt = f"with {opt}" if cost.optimizer else "without optimizer state"
    lines = [
        f"forward {_exact(cost.forward_flops)} · backward {_exact(cost.backward_flops)}",
        f"training step {with_opt} in {escape_text(cost.train_dtype)}: "
        f"{humanize_bytes(cost.training_peak_bytes)} peak",
        f"  params {humanize_bytes(cost.param_bytes)} · grads {humanize_bytes(cost.grad_bytes)}"
        f" · optimizer state {humanize_bytes(cost.optimizer_state_bytes)} · saved activations "
        f"{humanize_bytes(cost.saved_bytes)}",
        f"inference: {humanize_bytes(cost.inference_peak_bytes)} peak · "
        f"buffers {humanize_bytes(cost.buffer_bytes)} · inputs "
        f"{humanize_bytes(cost.input_bytes)} · outputs {humanize_bytes(cost.output_bytes)}",
        f"Cost: {escape_text(cost.mode)} forward and backward (exact FLOPs by torch's formulas; "
        "memory is an estimate)",
    ]
    return lines


def cost_rows(cost: CostReport, *, depth: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table of module calls (a module called twice has two rows);
    module paths are escaped (:func:`~torchscope.rendering._text.escape_text`).

    >>> import torchscope
    >>> c = torchscope.estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> cost_rows(c)[1][1][:3]
    ['hidden', '1', '20.5 KFLOPs']
    """
    header = ["Module", "Call", "Forward", "Backward", "Saved act.", "Output"]
    rows = []
    for c in cost.calls:
        level = c.path.count(".") + 1 if c.path else 0
        if depth is not None and level > depth:
            continue
        rows.append([escape_text(c.path) or "(root)", str(c.index),
                     humanize_flops(c.forward_flops), humanize_flops(c.backward_flops),
                     humanize_bytes(c.saved_bytes), humanize_bytes(c.output_bytes)])
    return header, rows


def render_cost(cost: CostReport, *, fmt: str = "text", depth: int | None = None) -> Any:
    """A cost report in ``rich``, ``text``, ``markdown`` or ``json``.

    >>> import torchscope
    >>> c = torchscope.estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> render_cost(c, fmt="json").startswith('{\\n  "schema_version"')
    True
    """
    if fmt == "json":
        return record_json(cost) + "\n"
    header, rows = cost_rows(cost, depth=depth)
    if fmt == "rich":
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text("Cost per module call"), title_justify="left",
                      box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                      collapse_padding=True)
        for name in header:
            table.add_column(Text(name), justify="left" if name == "Module" else "right",
                             no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*(plain(cell) for cell in row))
        return Group(table, Text("\n".join(cost_lines(cost) + _note_lines(cost))))
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "simple"
    if fmt == "markdown":
        rows = [[escape_markdown(cell) for cell in row] for row in rows]
    text = tabulate(rows, headers=header, tablefmt=tablefmt, disable_numparse=True,
                    colalign=("left", *["right"] * (len(header) - 1)))
    lines = cost_lines(cost) + _note_lines(cost)
    if fmt == "markdown":
        return "\n".join([text, "", _bullets(lines)])
    return "\n".join([text, "", *lines]) + "\n"


def _note_lines(cost: CostReport) -> list[str]:
    import textwrap

    lines: list[str] = []
    for n in cost.notes:
        lines += textwrap.wrap(f"note: {escape_text(n)}", width=100, subsequent_indent="  ",
                               break_long_words=False)
    return lines


def cost_block(report: Report, *, fmt: str = "text", table: bool = False) -> Any:
    """What a summary shows under its module table when it has a cost: the totals block
    and the notes (and the table of calls with ``table=True``).

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP(), input_size=[(2, 20)], cost=True)
    >>> cost_block(r).splitlines()[0]
    'forward 30,720 FLOPs (30.7 KFLOPs) · backward 40,960 FLOPs (41.0 KFLOPs)'
    """
    cost = report.cost
    if cost is None:
        return "" if fmt != "rich" else None
    if table:
        return render_cost(cost, fmt=fmt)
    lines = cost_lines(cost) + _note_lines(cost)
    if fmt == "rich":
        from rich.text import Text

        return Text("\n".join(lines))
    if fmt == "markdown":
        return _bullets(lines)
    return "\n".join(lines) + "\n"


def _bullets(lines: list[str]) -> str:
    """Markdown bullets; an indented line continues the bullet above it."""
    items: list[str] = []
    for line in lines:
        if line.startswith("  ") and items:
            items[-1] += (": " if items[-1].endswith(" peak") else " ") + line.strip()
        else:
            items.append(line)
    return "\n".join(f"- {escape_markdown(item)}" for item in items) + "\n"


# ------------------------------------------------------------------------------------------
# the FLOPs and Saved act. columns of the module table


def _module_calls(report: Report, m: ModuleRecord) -> list[Any]:
    """The calls of ``m``; for a container that has no forward of its own (a ``ModuleList``),
    the top-most calls inside it."""
    cost = report.cost
    if cost is None:
        return []
    own = [c for c in cost.calls if c.path == m.path]
    if own or not m.path:
        return own
    prefix = m.path + "."
    inside = [c for c in cost.calls if c.path.startswith(prefix)]
    called = {c.path for c in inside}

    def top(path: str) -> bool:
        parts = path.split(".")
        return not any(".".join(parts[:i]) in called
                       for i in range(prefix.count(".") + 1, len(parts)))

    return [c for c in inside if top(c.path)]


def _flops_cell(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    calls = _module_calls(report, m)
    if not calls:
        return ""
    return humanize_flops(sum(c.forward_flops for c in calls)).removesuffix("FLOPs").strip()


def _saved_cell(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    calls = _module_calls(report, m)
    if not calls:
        return ""
    return humanize_bytes(sum(c.saved_bytes for c in calls))


def _has_cost(report: Report) -> bool:
    return report.cost is not None


def register_columns() -> bool:
    """Register ``flops`` (forward FLOPs of the module's calls) and ``saved_act`` (bytes its
    calls saved for backward) with the module table; False when there is no column registry.

    >>> register_columns()
    True
    """
    try:
        from torchscope.rendering._columns import register_column
    except ImportError:  # pragma: no cover - a table without a column registry
        return False
    register_column("flops", "FLOPs", _flops_cell, numeric=True, traced=True,
                    default=_has_cost, priority=58)
    register_column("saved_act", "Saved act.", _saved_cell, numeric=True, traced=True,
                    default=_has_cost, priority=52)
    return True


COLUMNS_REGISTERED = register_columns()


def with_cost_block(rendered: Any, report: Report, fmt: str) -> Any:
    """A rendered summary followed by its cost block (text, Markdown or a rich group).

    Without a column registry (no ``FLOPs`` column in the module table) the block includes
    the table of module calls.

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP(), input_size=[(2, 20)], cost=True)
    >>> "forward 30,720 FLOPs" in with_cost_block("", r, "text")
    True
    """
    if report.cost is None or fmt == "json":
        return rendered
    block = cost_block(report, fmt=fmt, table=not COLUMNS_REGISTERED)
    if fmt == "rich":
        from rich.console import Group

        return Group(rendered, block)
    return f"{rendered}\n{block}"
