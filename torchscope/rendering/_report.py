"""Every output format of a :class:`~torchscope.records.Report`: rich, text, Markdown, JSON.

Renderers read records only, never a model. ``rich`` and ``tabulate`` are imported where used,
so ``import torchscope`` stays light. Tables fit 100 columns; numbers are humanized in tables
and exact in JSON; unknown sizes (lazy tensors) are shown as unknown, never as 0.

>>> import torchscope
>>> print(torchscope.render_text(torchscope.summarize(torchscope.examples.MLP())))
... # doctest: +ELLIPSIS
Module ...
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torchscope._units import UNKNOWN, humanize_bytes, humanize_count
from torchscope.errors import TorchscopeError
from torchscope.records import (
    SCHEMA_VERSION,
    CallRecord,
    Finding,
    LazyRecord,
    MapSpec,
    ModuleRecord,
    ParamRecord,
    Report,
    SeqSpec,
    Spec,
    TensorSpec,
    TiedGroup,
    ValueSpec,
    inferred_numel,
    record_dict,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "WIDTH",
    "emit",
    "findings_table",
    "humanize_bytes",
    "humanize_count",
    "make_console",
    "params_rows",
    "print_report",
    "render_html",
    "render_json",
    "render_markdown",
    "render_rich_text",
    "render_text",
    "rich_renderable",
    "spec_str",
    "tree_rows",
]

#: The width every table is made to fit.
WIDTH = 100


def spec_str(spec: Spec, *, limit: int = 28) -> str:
    """A short text of a spec: ``[2, 20]``, ``([2, 20], [2])``, ``{logits: [1, 8, 1000], …}``.

    >>> spec_str(TensorSpec((2, 20), "float32", "cpu"))
    '[2, 20]'
    """
    text = _spec_text(spec)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _spec_text(spec: Spec) -> str:
    if spec is None:
        return "None"
    if isinstance(spec, TensorSpec):
        return spec.shape_str()
    if isinstance(spec, SeqSpec):
        inner = ", ".join(_spec_text(s) for s in spec.items)
        return f"[{inner}]" if spec.type_name == "list" else f"({inner})"
    if isinstance(spec, MapSpec):
        items = [(k, v) for k, v in spec.items if v is not None]
        return "{" + ", ".join(f"{k}: {_spec_text(v)}" for k, v in items) + "}"
    if isinstance(spec, ValueSpec):
        return spec.repr
    return str(spec)  # pragma: no cover


def _call_inputs(call: CallRecord) -> str:
    specs: list[str] = [_spec_text(s) for s in call.inputs]
    specs.extend(f"{k}={_spec_text(v)}" for k, v in call.kwargs if v is not None)
    if len(specs) == 1:
        return specs[0]
    return ", ".join(specs)


# ------------------------------------------------------------------------------------------
# rows shared by every format


def _train_marker(m: ModuleRecord) -> str:
    if m.total_params == 0:
        return "lazy" if m.lazy_tensors else ""
    if m.trainable_params == m.total_params:
        return "yes"
    if m.trainable_params == 0:
        return "frozen"
    return "partial"


def _visible(report: Report, depth: int | None) -> list[ModuleRecord]:
    return [m for m in report.modules if depth is None or m.depth <= depth]


def _tree_labels(modules: Sequence[ModuleRecord]) -> list[str]:
    """First-column labels with tree glyphs (``├─ hidden``) for modules in pre-order."""
    visible = {m.path for m in modules}
    labels: list[str] = []
    # for each module: is it the last visible child of its parent?
    last_child: dict[str, bool] = {}
    by_path = {m.path: m for m in modules}
    for m in modules:
        kids = [c for c in m.children if c in visible]
        for i, c in enumerate(kids):
            last_child[c] = i == len(kids) - 1
    for m in modules:
        if m.parent is None:
            labels.append(m.type_name if m.path == "" else m.path)
            continue
        parts: list[str] = []
        ancestor = by_path.get(m.parent)
        while ancestor is not None and ancestor.parent is not None:
            parts.append("   " if last_child.get(ancestor.path, True) else "│  ")
            ancestor = by_path.get(ancestor.parent)
        prefix = "".join(reversed(parts))
        glyph = "└─ " if last_child.get(m.path, True) else "├─ "
        name = m.name
        if m.aliases:
            name += " (= " + ", ".join(a.rsplit(".", 1)[-1] for a in m.aliases) + ")"
        labels.append(prefix + glyph + name)
    return labels


def _traced(report: Report) -> bool:
    return report.mode is not None


def _uniform(report: Report) -> tuple[str, str] | None:
    """The one dtype and one device of every tensor, or ``None`` when they are mixed."""
    root = report.modules[0] if report.modules else None
    if root is None or len(root.dtypes) > 1 or len(root.devices) > 1:
        return None
    return (root.dtypes[0] if root.dtypes else "", root.devices[0] if root.devices else "")


# column widths that keep every table within WIDTH (100) columns with 2-space gaps
_STATIC_WIDTHS = {"Module": 38, "Type": 20, "dtype@device": 14}
_TRACED_WIDTHS = {"Module": 30, "Type": 16, "Input": 18, "Output": 18}


def tree_rows(report: Report, *, depth: int | None = None,
              tree: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the module table (tree glyphs in the first column when ``tree``).

    The dtype and device columns appear only when the model mixes them (otherwise the totals
    say the one dtype and device); long names and shapes are clipped with ``…`` so that the
    table fits 100 columns.
    """
    modules = _visible(report, depth)
    labels = _tree_labels(modules) if tree else [m.path or "(root)" for m in modules]
    traced = _traced(report)
    mixed = _uniform(report) is None
    if traced:
        header = ["Module", "Type", "Input", "Output", "Params"]
        widths = dict(_TRACED_WIDTHS)
    else:
        header = ["Module", "Type", "Own", "Total", "Size", *(["dtype@device"] if mixed else []),
                  "Train"]
        widths = dict(_STATIC_WIDTHS)
        if mixed:
            widths["Module"] -= 14
    rows: list[list[str]] = []
    for label, m in zip(labels, modules):
        total = humanize_count(m.total_params)
        if m.lazy_tensors:
            inferred = _inferred_in(report, m.path)
            if inferred is not None:
                total = "~" + humanize_count(m.total_params + inferred)
            else:
                total = f"{total}+lazy" if m.total_params else "lazy"
        label = _clip(label, widths["Module"]) if tree else _clip_middle(label, widths["Module"])
        type_name = _clip(m.type_name, widths["Type"])
        if traced:
            if m.calls:
                first = m.calls[0]
                inputs = _call_inputs(first)
                output = _spec_text(first.outputs)
                if len(m.calls) > 1:
                    output = f"×{len(m.calls)} {output}"
            else:
                inputs, output = "(not called)", ""
            rows.append([label, type_name, _clip(inputs, widths["Input"]),
                         _clip(output, widths["Output"]), total])
        else:
            own = ""
            if m.param_names:
                own = "lazy" if m.lazy_tensors and not m.own_params else humanize_count(
                    m.own_params)
            row = [label, type_name, own, total, _size_text(m)]
            if mixed:
                where = ",".join(m.dtypes) + ("@" + ",".join(m.devices) if m.devices else "")
                row.append(_clip(where, widths["dtype@device"]))
            row.append(_train_marker(m))
            rows.append(row)
    return header, rows


def _size_text(m: ModuleRecord) -> str:
    size = humanize_bytes(m.param_bytes + m.buffer_bytes)
    if not m.lazy_tensors:
        return size
    return UNKNOWN if m.param_bytes + m.buffer_bytes == 0 else f"≥ {size}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def params_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-parameter view (every qualified name, aliases marked).

    dtype and device columns appear only when the model mixes them; long names are clipped
    in the middle (``decoder.block.1…bias.weight``) to fit 100 columns.
    """
    mixed = _uniform(report) is None
    sharded = any(p.placements is not None for p in report.params)
    header = ["Name", "Shape", *(["Local shard"] if sharded else []),
              *(["dtype@device"] if mixed else []), "Numel", "Grad", "Kind", "Shared with"]
    name_width = (28 if mixed else 40) - (18 if sharded else 0)
    rows: list[list[str]] = []
    for p in report.params:
        shape = _lazy_shape(report, p) if p.lazy else _shape_text(p)
        row = [_clip_middle(p.name, name_width), _clip(shape, 16)]
        if sharded:
            row.append(_clip(_local_text(p), 16))
        if mixed:
            row.append(_clip(f"{p.dtype}@{p.device}", 14))
        numel = humanize_count(p.numel)
        if p.lazy and shape.startswith("~["):
            dims = [int(d) for d in shape[2:-1].split(", ") if d]
            numel = "~" + humanize_count(math.prod(dims))
        row += [numel, "yes" if p.requires_grad else "no", _kind_text(p),
                _clip(_shared_with(report, p), 14)]
        rows.append(row)
    return header, rows


def _inferred_in(report: Report, path: str) -> int | None:
    """Inferred elements of the lazy parameters under ``path`` (``None`` while unknown)."""
    if not any(r.inferred for r in report.lazy):
        return None

    prefix = path + "." if path else ""
    inside = [r for r in report.lazy if not path or r.path == path or r.path.startswith(prefix)]
    return inferred_numel(inside, params=report.params)


def _lazy_shape(report: Report, p: ParamRecord) -> str:
    local = p.name[len(p.module_path) + 1:] if p.module_path else p.name
    for r in report.lazy:
        if r.path == p.module_path:
            for name, shape, _ in r.inferred:
                if name == local:
                    return "~[" + ", ".join(str(d) for d in shape) + "]"
    return "uninitialized"


def _shape_text(p: ParamRecord) -> str:
    if p.shape is None:
        return UNKNOWN
    return "[" + ", ".join(str(d) for d in p.shape) + "]"


def _local_text(p: ParamRecord) -> str:
    """This rank's shard of a DTensor and its placements: ``[128, 20] S(0)``."""
    if p.local_shape is None:
        return ""
    shape = "[" + ", ".join(str(d) for d in p.local_shape) + "]"
    return f"{shape} {','.join(p.placements or ())}".strip()


def _kind_text(p: ParamRecord) -> str:
    return {"parameter": "param", "buffer": "buffer",
            "buffer_nonpersistent": "buf (np)"}[p.kind.value]


def _shared_with(report: Report, p: ParamRecord) -> str:
    others: list[str] = list(p.aliases)
    if p.tie_group is not None and p.tie_group < len(report.tied):
        group = report.tied[p.tie_group]
        others = [n for n in group.names if n != p.name]
        if group.kind.value != "alias":
            return "↔ " + ", ".join(others) + f" ({group.kind.value})"
    return ("↔ " + ", ".join(others)) if others else ""


def totals_lines(report: Report) -> list[str]:
    """The lines under the table: totals, lazy layers, trace mode, notes."""
    lines: list[str] = []
    total = f"{report.total_params:,}"
    if report.lazy_tensors:
        layers = len(report.lazy)
        total = f"≥ {report.total_params:,} + {layers} lazy layer{'s' if layers != 1 else ''}"
        if report.inferred_params is not None:
            total += f" → {report.inferred_params:,} inferred"
            lines.append(f"Lazy: {report.lazy_tensors} uninitialized tensors; shapes inferred "
                         "from the traced forward (~), nothing was materialized")
        else:
            lines.append(f"Lazy: {report.lazy_tensors} uninitialized tensors, size unknown until "
                         "the first forward")
    at_least = "≥ " if report.lazy_tensors else ""  # lazy sizes are unknown, not 0
    lines.insert(0,
        f"Total params: {total}    Trainable: {at_least}{report.trainable_params:,}    "
        f"Non-trainable: {at_least}{report.non_trainable_params:,}"
    )
    buffers = f"{at_least}{report.buffer_numel:,} ({humanize_bytes(report.buffer_bytes)})"
    label = ("Params size (this rank)" if any(p.placements is not None for p in report.params)
             else "Params size")
    line = f"{label}: {at_least}{humanize_bytes(report.param_bytes)}    Buffers: {buffers}"
    uniform = _uniform(report)
    if uniform is not None and uniform[0]:
        line += f"    All tensors: {uniform[0]} on {uniform[1]}"
    lines.append(line)
    if report.tied:
        names = sum(len(g.names) for g in report.tied)
        lines.append(f"Tied: {len(report.tied)} group{'s' if len(report.tied) != 1 else ''} "
                     f"({names} names), each counted once")
    if report.lazy and not report.mode:
        lines.append("Lazy layers: " + ", ".join(r.path or "(root)" for r in report.lazy)
                     + " — pass --input-size (Python: input_size=) to infer their shapes")
    if report.mode:
        inputs = ", ".join(_spec_dtype_text(s) for s in report.inputs)
        lines.append(f"Traced: {report.mode} forward, inputs {inputs or '(keywords only)'}")
    lines.extend(report.notes)
    return lines


def _spec_dtype_text(spec: Spec) -> str:
    if isinstance(spec, TensorSpec):
        return f"{spec.shape_str()} {spec.dtype}"
    return _spec_text(spec)


# ------------------------------------------------------------------------------------------
# formats


def render_text(report: Report, *, depth: int | None = None, params: bool = False) -> str:
    """Plain text (tabulate ``simple``), tree glyphs in the first column.

    Args:
        report: the report to render.
        depth: show modules down to this depth; deeper ones fold into their parent's totals.
        params: the per-parameter view instead of the module table.

    >>> import torchscope
    >>> render_text(torchscope.summarize(torchscope.examples.MLP())).splitlines()[0].split()
    ['Module', 'Type', 'Own', 'Total', 'Size', 'Train']
    """
    from tabulate import tabulate

    header, rows = params_rows(report) if params else tree_rows(report, depth=depth)
    table = tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True)
    parts = [table, "", *totals_lines(report)]
    if report.findings:
        parts += ["", findings_text(report.findings)]
    return "\n".join(parts) + "\n"


def render_markdown(report: Report, *, depth: int | None = None, params: bool = False) -> str:
    """GitHub Markdown (tabulate ``github``), qualified paths in the first column.

    >>> import torchscope
    >>> render_markdown(torchscope.summarize(torchscope.examples.MLP())).startswith("**MLP**")
    True
    """
    from tabulate import tabulate

    if params:
        header, rows = params_rows(report)
    else:
        header, rows = tree_rows(report, depth=depth, tree=False)
    rows = [[c.replace("|", "\\|") for c in row] for row in rows]
    table = tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
    lines = [f"**{report.root_type}**", "", table, ""]
    lines += [f"- {line}" for line in totals_lines(report)]
    if report.findings:
        lines += ["", "| Severity | Code | Where | Message |", "|---|---|---|---|"]
        for f in report.findings:
            lines.append(f"| {f.severity.value} | {f.code} | {f.path or f.location or ''} | "
                         f"{f.message.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report as JSON (exact numbers; see :meth:`Report.to_dict`).

    >>> import json, torchscope
    >>> json.loads(render_json(torchscope.summarize(torchscope.examples.MLP())))["total_params"]
    7946
    """
    return report.to_json() + "\n"


def rich_renderable(report: Report, *, depth: int | None = None,
                    params: bool = False) -> RenderableType:
    """A rich renderable: the tree-table, totals and findings."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header, rows = params_rows(report) if params else tree_rows(report, depth=depth)
    table = Table(title=f"{report.root_type}", title_justify="left", expand=False,
                  box=_box(), header_style="bold", pad_edge=False, collapse_padding=True)
    numeric = {"Own", "Total", "Size", "Params", "Numel"}
    for name in header:
        table.add_column(name, justify="right" if name in numeric else "left",
                         no_wrap=True, overflow="ellipsis")
    modules = _visible(report, depth)
    for i, row in enumerate(rows):
        style = None
        if not params:
            m = modules[i]
            if m.lazy_tensors:
                style = "yellow"
            elif m.frozen:
                style = "dim"
        table.add_row(*row, style=style)
    parts: list[RenderableType] = [table, Text("\n".join(totals_lines(report)))]
    if report.findings:
        parts.append(findings_table(report.findings, fmt="rich"))
    return Group(*parts)


def _box() -> Any:
    from rich import box

    return box.SIMPLE_HEAD


def findings_text(findings: Sequence[Finding]) -> str:
    """Findings as plain text, wrapped at 100 columns: ``ERROR   code path: message`` and an
    indented ``fix:`` line."""
    import textwrap

    lines: list[str] = []
    for f in findings:
        where = f.location or f.path
        where_text = f" {where}:" if where else ""
        head = f"{f.severity.value.upper():7} {f.code}{where_text} {f.message}"
        lines.extend(textwrap.wrap(head, WIDTH, subsequent_indent=" " * 8,
                                   break_on_hyphens=False))
        if f.hint:
            lines.extend(textwrap.wrap(f"fix: {f.hint}", WIDTH, initial_indent=" " * 8,
                                       subsequent_indent=" " * 13, break_on_hyphens=False))
    return "\n".join(lines)


def findings_table(findings: Sequence[Finding], *, fmt: str = "rich") -> Any:
    """Findings as a rich ``Table`` (``fmt="rich"``), Markdown or plain text (a ``str``)."""
    if fmt == "json":
        import json

        items = [{k: v for k, v in record_dict(f).items() if k != "schema_version"}
                 for f in findings]
        return json.dumps({"schema_version": SCHEMA_VERSION, "findings": items}, indent=2,
                          ensure_ascii=False)
    if fmt == "markdown":
        from tabulate import tabulate

        rows = [[f.severity.value, f.code, f.location or f.path or "", f.message, f.hint or ""]
                for f in findings]
        return tabulate(rows, headers=["Severity", "Code", "Where", "Message", "Fix"],
                        tablefmt="github", disable_numparse=True)
    if fmt == "text":
        return findings_text(findings)
    from rich.table import Table

    table = Table(title="Findings", title_justify="left", box=_box(), header_style="bold")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Code", no_wrap=True)
    table.add_column("Where", overflow="fold")
    table.add_column("Message", overflow="fold")
    styles = {"error": "bold red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        message = f.message + (f"\nfix: {f.hint}" if f.hint else "")
        table.add_row(f.severity.value, f.code, f.location or f.path or "", message,
                      style=styles.get(f.severity.value))
    return table


# ------------------------------------------------------------------------------------------
# consoles and printing


def make_console(*, file: Any = None, width: int | None = None, color: bool | None = None,
                 record: bool = False) -> Console:
    """A rich console; ``color=False`` gives the colorless fixed-width one used for snapshots."""
    from rich.console import Console

    if color is False:
        return Console(file=file, width=width or WIDTH, color_system=None, force_terminal=False,
                       no_color=True, highlight=False, record=record, emoji=False,
                       legacy_windows=False)
    return Console(file=file, width=width, record=record, highlight=False)


def render_rich_text(report: Report, *, depth: int | None = None, params: bool = False,
                     width: int = WIDTH) -> str:
    """The rich rendering as colorless text of a fixed width (what a terminal shows)."""
    import io

    buf = io.StringIO()
    console = make_console(file=buf, width=width, color=False)
    console.print(rich_renderable(report, depth=depth, params=params))
    return buf.getvalue()


def render_html(report: Report) -> str:
    """HTML of the rich rendering, for Jupyter."""
    import io

    console = make_console(file=io.StringIO(), width=WIDTH, record=True)
    console.print(rich_renderable(report))
    return console.export_html(inline_styles=True)


def emit(renderable: Any, *, fmt: str = "text", file: Any = None) -> None:
    """Print text, or a rich renderable when ``fmt == "rich"`` (to stdout by default)."""
    out = file or sys.stdout
    if fmt == "rich" and not isinstance(renderable, str):
        console = make_console(file=out, width=min(WIDTH, _terminal_width()))
        console.print(renderable)
        return
    text = renderable if isinstance(renderable, str) else _to_text(renderable)
    out.write(text if text.endswith("\n") else text + "\n")


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((WIDTH, 24)).columns


def _to_text(renderable: Any) -> str:
    import io

    buf = io.StringIO()
    make_console(file=buf, width=WIDTH, color=False).print(renderable)
    return buf.getvalue()


def print_report(report: Report, *, fmt: str = "rich", depth: int | None = None,
                 params: bool = False, file: Any = None) -> None:
    """Print a report in one of the formats ``rich``, ``text``, ``markdown``, ``json``.

    >>> import torchscope
    >>> torchscope.print_report(torchscope.summarize(torchscope.examples.MLP()), fmt="json")
    ... # doctest: +ELLIPSIS
    {...
    """
    if fmt == "json":
        emit(render_json(report), fmt="text", file=file)
    elif fmt == "markdown":
        emit(render_markdown(report, depth=depth, params=params), fmt="text", file=file)
    elif fmt == "text":
        emit(render_text(report, depth=depth, params=params), fmt="text", file=file)
    elif fmt == "rich":
        emit(rich_renderable(report, depth=depth, params=params), fmt="rich", file=file)
    else:

        raise TorchscopeError(f"unknown format {fmt!r}: use rich, text, markdown or json")


def ties_rows(groups: Sequence[TiedGroup]) -> tuple[list[str], list[list[str]]]:
    """Header and rows listing tied groups: kind, unique size, devices and names."""
    header = ["#", "Kind", "Size", "Device", "Names"]
    rows = [
        [str(i), g.kind.value, humanize_bytes(g.nbytes), ",".join(g.devices), " ↔ ".join(g.names)]
        for i, g in enumerate(groups)
    ]
    return header, rows


def _simple_table(title: str, header: list[str], rows: list[list[str]], fmt: str,
                  *, right: tuple[str, ...] = ()) -> Any:
    if fmt in ("text", "markdown"):
        from tabulate import tabulate

        table = tabulate(rows, headers=header, disable_numparse=True,
                         tablefmt="github" if fmt == "markdown" else "simple")
        return f"{title}\n\n{table}"
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=_box(), header_style="bold")
    for name in header:
        t.add_column(name, overflow="fold", justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*row)
    return t


def ties_table(groups: Sequence[TiedGroup], *, fmt: str = "rich") -> Any:
    """Tied groups as a rich table (``fmt="rich"``) or text/Markdown (a ``str``)."""
    header, rows = ties_rows(groups)
    if not rows:
        return "Tied tensors: none (every parameter and buffer has its own memory)"
    return _simple_table("Tied tensors (each group counted once in the totals)", header, rows,
                         fmt, right=("#", "Size"))


def ties_renderable(report: Report, *, fmt: str = "rich") -> Any:
    """The report's tied groups as a rich table (``fmt="rich"``) or text/Markdown."""
    return ties_table(report.tied, fmt=fmt)


def lazy_table(records: Sequence[LazyRecord], *, fmt: str = "rich") -> Any:
    """Lazy modules: path, type, uninitialized tensors and what they will become."""
    header = ["Module", "Type", "Lazy tensors", "Known", "Inferred"]
    rows = []
    for r in records:
        inferred = ", ".join(f"{n} {list(shape)}" for n, shape, _ in r.inferred) or UNKNOWN
        known = ", ".join(f"{k}={v}" for k, v in r.known)
        rows.append([r.path or "(root)", r.type_name, ", ".join(r.tensors), known, inferred])
    return _simple_table(f"Lazy modules ({len(records)})", header, rows, fmt)


def html_of(renderable: Any) -> str:
    """HTML of a rich renderable (or text), for Jupyter."""
    import html
    import io

    if isinstance(renderable, str):
        return f"<pre>{html.escape(renderable)}</pre>"
    console = make_console(file=io.StringIO(), width=WIDTH, record=True)
    console.print(renderable)
    return console.export_html(inline_styles=True)


__all__ += ["findings_text", "html_of", "lazy_table", "ties_renderable", "ties_rows",
            "ties_table", "totals_lines"]
