"""Every output format of a :class:`~torchscope.records.Report`: rich, text, Markdown, JSON.

Renderers read records only, never a model. ``rich`` and ``tabulate`` are imported where used,
so ``import torchscope`` stays light. Numbers, shapes, qualified names and type names are never
cut: tables measure their cells and, in a terminal too narrow for them, hide low-priority
columns (and say so) or wrap long cells at separators; piped text is never wrapped. Numbers
are humanized in tables and exact in JSON; unknown sizes (lazy tensors) are shown as unknown,
never as 0. The columns come from :mod:`torchscope.rendering._columns`; names are escaped by
:mod:`torchscope.rendering._text`.

>>> import torchscope
>>> print(torchscope.render_text(torchscope.summarize(torchscope.examples.MLP())))
... # doctest: +ELLIPSIS
Module ...
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchscope._units import UNKNOWN, humanize_bytes, humanize_count
from torchscope.errors import TorchscopeError
from torchscope.records import (
    SCHEMA_VERSION,
    CallRecord,
    Finding,
    LazyRecord,
    ModuleRecord,
    ParamKind,
    ParamRecord,
    Report,
    Spec,
    TensorSpec,
    TiedGroup,
    record_dict,
    record_json,
)
from torchscope.rendering._args import (
    check_columns,
    check_depth,
    check_file,
    check_flag,
    check_record,
    check_width,
)
from torchscope.rendering._columns import (
    Column,
    choose_columns,
    mixed_dtypes,
    mixed_modes,
    spec_text,
)
from torchscope.rendering._text import (
    WIDTH,
    cell_width,
    escape_as,
    escape_markdown,
    escape_text,
    min_wrap_width,
    plain,
    terminal_width,
    widest_line,
    wrap_cell,
    wrap_words,
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



def spec_str(spec: Spec, *, limit: int | None = None) -> str:
    """The text of a spec: ``[2, 20]``, ``([2, 20], [2])``, ``{logits: [1, 8, 1000], …}``.

    Never shortened unless ``limit`` is given (then clipped with ``…``; tables and diagrams
    wrap instead, see :func:`torchscope.rendering._text.wrap_cell`).

    >>> spec_str(TensorSpec((2, 20), "float32", "cpu"))
    '[2, 20]'
    """
    text = escape_text(spec_text(spec))
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------
# rows shared by every format


def _visible(report: Report, depth: int | None) -> list[ModuleRecord]:
    return [m for m in report.modules if depth is None or m.depth <= depth]


def _alias_suffix(m: ModuleRecord) -> str:
    if not m.aliases:
        return ""
    return " (= " + ", ".join(escape_text(a.rsplit(".", 1)[-1]) for a in m.aliases) + ")"


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
            labels.append(escape_text(m.type_name if m.path == "" else m.path))
            continue
        parts: list[str] = []
        ancestor = by_path.get(m.parent)
        while ancestor is not None and ancestor.parent is not None:
            parts.append("   " if last_child.get(ancestor.path, True) else "│  ")
            ancestor = by_path.get(ancestor.parent)
        prefix = "".join(reversed(parts))
        glyph = "└─ " if last_child.get(m.path, True) else "├─ "
        labels.append(prefix + glyph + escape_text(m.name) + _alias_suffix(m))
    return labels


def _path_labels(modules: Sequence[ModuleRecord]) -> list[str]:
    """First-column labels as qualified paths (Markdown), aliases kept: ``2 (= 4)``."""
    return [(escape_text(m.path) if m.path else "(root)") + _alias_suffix(m) for m in modules]


def _traced(report: Report) -> bool:
    return report.mode is not None


def _uniform(report: Report) -> tuple[str, str] | None:
    """The one dtype and one device of the model's tensors, or ``None`` when they are mixed.

    Integer buffers (a BatchNorm's ``num_batches_tracked``) do not make a model mixed.
    """
    if not report.params:
        root = report.modules[0] if report.modules else None
        if root is None or len(root.dtypes) > 1 or len(root.devices) > 1:
            return None
        return (root.dtypes[0] if root.dtypes else "", root.devices[0] if root.devices else "")
    if mixed_dtypes(report):
        return None
    floats = [p.dtype for p in report.params if p.kind is ParamKind.PARAMETER]
    floats = floats or [p.dtype for p in report.params]
    return (floats[0], report.params[0].device)


def module_table(report: Report, *, depth: int | None = None, tree: bool = True,
                 columns: Sequence[str] | str | None = None
                 ) -> tuple[list[Column], list[list[str]]]:
    """The columns and cells of the module table, every cell whole and escaped.

    Args:
        report: the report.
        depth: modules down to this depth; deeper ones fold into their parent's totals.
        tree: tree glyphs in the first column (otherwise qualified paths).
        columns: column keys in order (see :data:`torchscope.rendering._columns.COLUMNS`);
            default: the columns that say something about this report.

    Raises:
        TorchscopeError: an unknown column or a traced column of a static report.
    """
    modules = _visible(report, depth)
    labels = _tree_labels(modules) if tree else _path_labels(modules)
    chosen = choose_columns(report, columns)
    rows: list[list[str]] = []
    for label, m in zip(labels, modules):
        call = m.calls[0] if m.calls else None
        rows.append([label if c.key == "module" else escape_text(c.cell(report, m, call))
                     for c in chosen])
    return chosen, rows


def tree_rows(report: Report, *, depth: int | None = None, tree: bool = True,
              columns: Sequence[str] | str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the module table (tree glyphs in the first column when ``tree``).

    The dtype and device columns appear only when the model mixes them (otherwise the totals
    say the one dtype and device); nothing is clipped.

    >>> import torchscope
    >>> tree_rows(torchscope.summarize(torchscope.examples.MLP()))[0]
    ['Module', 'Type', 'Own', 'Total', 'Size', 'Train']
    """
    chosen, rows = module_table(report, depth=depth, tree=tree, columns=columns)
    return [c.header for c in chosen], rows


def _nocell(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    return ""  # pragma: no cover - the per-parameter view fills its cells itself


def _pcol(key: str, header: str, *, numeric: bool = False, priority: int = 40,
          wrap: bool = False) -> Column:
    return Column(key, header, _nocell, numeric=numeric, priority=priority, wrap=wrap)


def params_table(report: Report) -> tuple[list[Column], list[list[str]]]:
    """Columns and cells of the per-parameter view (every qualified name, aliases marked).

    dtype and device columns appear only when the model mixes them; nothing is clipped.
    """
    mixed = _uniform(report) is None
    sharded = any(p.placements is not None for p in report.params)
    columns = [_pcol("name", "Name", priority=100, wrap=True),
               _pcol("shape", "Shape", priority=90, wrap=True),
               *([_pcol("local", "Local shard", priority=60, wrap=True)] if sharded else []),
               *([_pcol("dtype_device", "dtype@device", priority=50)] if mixed else []),
               _pcol("numel", "Numel", numeric=True, priority=85),
               _pcol("grad", "Grad", priority=45),
               _pcol("kind", "Kind", priority=55),
               _pcol("shared", "Shared with", priority=70, wrap=True)]
    rows: list[list[str]] = []
    for p in report.params:
        shape = _lazy_shape(report, p) if p.lazy else _shape_text(p)
        row = [escape_text(p.name), shape]
        if sharded:
            row.append(_local_text(p))
        if mixed:
            row.append(f"{p.dtype}@{p.device}")
        numel = humanize_count(p.numel)
        if p.lazy and shape.startswith("~["):
            dims = [int(d) for d in shape[2:-1].split(", ") if d]
            numel = "~" + humanize_count(math.prod(dims))
        row += [numel, "yes" if p.requires_grad else "no", _kind_text(p),
                escape_text(_shared_with(report, p))]
        rows.append(row)
    return columns, rows


def params_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-parameter view (every qualified name, aliases marked).

    >>> import torchscope
    >>> params_rows(torchscope.summarize(torchscope.examples.MLP()))[1][0][:2]
    ['hidden.weight', '[256, 20]']
    """
    columns, rows = params_table(report)
    return [c.header for c in columns], rows


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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def totals_lines(report: Report) -> list[str]:
    """The lines under the table: totals, lazy layers, modes, trace mode, notes."""
    lines: list[str] = []
    total = f"{report.total_params:,}"
    if report.lazy_tensors:
        total = f"≥ {report.total_params:,} + {_plural(len(report.lazy), 'lazy layer')}"
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
    if mixed_modes(report):
        in_eval = sum(1 for m in report.modules if not m.training)
        lines.append(f"Modes: {_plural(len(report.modules) - in_eval, 'module')} in train mode, "
                     f"{in_eval:,} in eval mode")
    elif report.modules and not report.modules[0].training:
        lines.append(f"Modes: all {_plural(len(report.modules), 'module')} in eval mode")
    if report.tied:
        names = sum(len(g.names) for g in report.tied)
        lines.append(f"Tied: {_plural(len(report.tied), 'group')} ({names} names), each "
                     "counted once")
    if report.lazy and not report.mode:
        lines.append("Lazy layers: " + ", ".join(escape_text(r.path) or "(root)"
                                                 for r in report.lazy)
                     + " — pass --input-size (Python: input_size=) to infer their shapes")
    if report.mode:
        inputs = [_spec_dtype_text(s) for s in report.inputs]
        inputs += [f"{escape_text(k)}={_spec_dtype_text(v)}" for k, v in report.input_kwargs
                   if v is not None]
        lines.append(f"Traced: {report.mode} forward, inputs {', '.join(inputs) or '(none)'}")
    lines.extend(escape_text(n) for n in report.notes)
    return lines


def _spec_dtype_text(spec: Spec) -> str:
    if isinstance(spec, TensorSpec):
        return f"{spec.shape_str()} {spec.dtype}"
    return escape_text(spec_text(spec))


# ------------------------------------------------------------------------------------------
# fitting a table to a width: hide low-priority columns, wrap long cells at separators


@dataclass(frozen=True, slots=True)
class Fitted:
    """A table fitted to a width: its columns, their widths, wrapped cells, hidden columns."""

    columns: tuple[Column, ...]
    widths: tuple[int, ...]
    rows: tuple[tuple[str, ...], ...]
    hidden: tuple[str, ...]


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None,
              overhead: Callable[[int], int], *, header_pad: int = 0) -> Fitted:
    """Fit a table to ``width`` terminal cells without cutting a digit, a shape or a name.

    Wrappable cells first wrap at separators down to a comfortable width (16 cells or their
    longest piece); then columns hide by rising priority; then wrappable cells wrap down to
    their longest piece; then more columns hide (never the first one). ``width=None``
    (piped text) keeps everything on one line.

    Args:
        columns: the table's columns.
        rows: whole cells, one list per row.
        width: the terminal width, or ``None`` for no limit.
        overhead: the table's own width (gaps, edges) for a number of columns.
        header_pad: cells a column needs beyond its header (tabulate pads headers by 2).

    Returns:
        The fitted table.

    >>> from torchscope.rendering._columns import COLUMNS
    >>> cols = [COLUMNS["module"], COLUMNS["output_size"]]
    >>> fitted = fit_table(cols, [["a", "[2, 8], [2, 8, 4096]"]], 22, lambda n: 2 * (n - 1))
    >>> print(fitted.rows[0][1])
    [2, 8],
    [2, 8, 4096]
    """
    keep = list(range(len(columns)))
    head = [cell_width(c.header) + header_pad for c in columns]
    natural = [max([head[i], *(cell_width(r[i]) for r in rows)]) for i in range(len(columns))]
    pieces = [max([head[i], *(min_wrap_width(r[i]) for r in rows)])
              if columns[i].wrap else natural[i] for i in range(len(columns))]

    def shrink(cols: list[int], floor: Callable[[int], int]) -> dict[int, int]:
        widths = {i: natural[i] for i in cols}
        if width is None:
            return widths
        while sum(widths.values()) + overhead(len(cols)) > width:
            over = sum(widths.values()) + overhead(len(cols)) - width
            candidates = [i for i in cols if columns[i].wrap and widths[i] > floor(i)]
            if not candidates:
                break
            i = max(candidates, key=lambda k: widths[k])
            target = max(floor(i), widths[i] - over)
            wrapped = max([head[i], *(widest_line(wrap_cell(r[i], target)) for r in rows)])
            widths[i] = wrapped if wrapped < widths[i] else target
            if wrapped >= natural[i] and target >= natural[i]:
                break
        return widths

    def fits(widths: dict[int, int]) -> bool:
        return width is None or sum(widths.values()) + overhead(len(widths)) <= width

    comfortable = lambda i: max(pieces[i], min(16, natural[i]))  # noqa: E731
    tightest = lambda i: pieces[i]  # noqa: E731
    widths = shrink(keep, comfortable)
    if not fits(widths):
        # add columns by falling priority while they fit (wrapped to a comfortable width);
        # a wide column that does not fit is hidden, narrower ones after it may still fit
        keep = [0]
        for i in sorted(range(1, len(columns)), key=lambda k: -columns[k].priority):
            trial = sorted([*keep, i])
            if fits(shrink(trial, comfortable)) or (
                    columns[i].priority >= 80 and fits(shrink(trial, tightest))):
                keep = trial
        widths = shrink(keep, comfortable)
        if not fits(widths):
            widths = shrink(keep, tightest)
    if width is not None:  # give the room left to the wrapped columns, widest need first
        for i in sorted((k for k in keep if columns[k].wrap), key=lambda k: -natural[k]):
            room = width - sum(widths.values()) - overhead(len(keep))
            if room > 0 and widths[i] < natural[i]:
                target = min(natural[i], widths[i] + room)
                widths[i] = max([head[i], *(widest_line(wrap_cell(r[i], target)) for r in rows)])
    hidden = [i for i in range(len(columns)) if i not in keep]
    out_rows = tuple(
        tuple("\n".join(wrap_cell(r[i], widths[i])) if columns[i].wrap else r[i] for i in keep)
        for r in rows
    )
    return Fitted(tuple(columns[i] for i in keep), tuple(widths[i] for i in keep), out_rows,
                  tuple(columns[i].header for i in sorted(hidden)))


def continue_tree(rows: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """Rows whose wrapped cells span several lines keep the tree of the first column drawn:
    its continuation lines repeat the vertical bars (``│``) of the levels still open.

    >>> continue_tree([("Net", "a"), ("└─ x", "b\\nc")])[1][0]
    '└─ x\\n'
    """
    out: list[tuple[str, ...]] = []
    for k, row in enumerate(rows):
        height = max(cell.count("\n") for cell in row) + 1
        label = row[0].split("\n")[0]
        if height == 1:
            out.append(tuple(row))
            continue
        glyph = max(label.find("├─ "), label.find("└─ "))
        stem = "" if glyph < 0 else (label[:glyph]
                                     + ("│  " if label[glyph] == "├" else "   "))
        following = rows[k + 1][0] if k + 1 < len(rows) else ""
        child = max(following.find("├─ "), following.find("└─ "))
        stem = (stem + "│") if child == len(stem) else stem.rstrip()
        out.append((label + "".join("\n" + stem for _ in range(height - 1)),
                    *row[1:]))
    return tuple(out)


def _text_overhead(n: int) -> int:
    return 2 * max(n - 1, 0)


def _hidden_note(hidden: Sequence[str]) -> list[str]:
    if not hidden:
        return []
    return [f"(hidden to fit the terminal: {', '.join(hidden)}; widen it, or choose columns "
            "with --columns / columns=)"]


def _resolve_width(width: int | str | None) -> int | None:
    if width == "terminal":
        return terminal_width()
    if width is None or isinstance(width, int):
        return width
    raise TorchscopeError(f"width = {width!r} is not a number of columns; use an int, "
                          "'terminal' or None (no limit)")


def _text_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    from tabulate import tabulate

    if not rows:
        return "  ".join(c.header for c in columns)
    # the tree's indentation is leading white space, which tabulate strips unless told not to
    return str(tabulate([list(r) for r in rows], headers=[c.header for c in columns],
                        tablefmt="simple", disable_numparse=True, preserve_whitespace=True,
                        colalign=["right" if c.numeric else "left" for c in columns]))


# ------------------------------------------------------------------------------------------
# formats


_SUMMARIZE = "what torchscope.summarize returns"


def _check_report_args(function: str, report: object, depth: object = None,
                       params: object = False, columns: object = None) -> None:
    check_record(function, "report", report, Report, _SUMMARIZE)
    check_depth(function, depth)
    check_flag(function, "params", params)
    check_columns(function, columns)


def _table_of(report: Report, depth: int | None, params: bool, tree: bool,
              columns: Sequence[str] | str | None) -> tuple[list[Column], list[list[str]]]:
    if params:
        return params_table(report)
    return module_table(report, depth=depth, tree=tree, columns=columns)


def render_text(report: Report, *, depth: int | None = None, params: bool = False,
                columns: Sequence[str] | str | None = None,
                width: int | str | None = None) -> str:
    """Plain text (tabulate ``simple``), tree glyphs in the first column, nothing clipped.

    Args:
        report: the report to render.
        depth: show modules down to this depth; deeper ones fold into their parent's totals.
        params: the per-parameter view instead of the module table.
        columns: column keys in order (``"input_size,output_size,num_params"``).
        width: fit this many columns (``"terminal"``: the terminal's width); ``None`` (piped
            output) never wraps or hides anything.

    Returns:
        The text, ending in a newline.

    Raises:
        ArgumentError: ``report`` is not a Report, or an option of the wrong type.
        TorchscopeError: an unknown column.

    >>> import torchscope
    >>> text = render_text(torchscope.summarize(torchscope.examples.MLP()))
    >>> text.splitlines()[0].split()
    ['Module', 'Type', 'Own', 'Total', 'Size', 'Train']
    """
    _check_report_args("render_text", report, depth, params, columns)
    check_width("render_text", width)
    limit = _resolve_width(width)
    cols, rows = _table_of(report, depth, params, True, columns)
    fitted = fit_table(cols, rows, limit, _text_overhead, header_pad=2)
    table = _text_table(fitted.columns, continue_tree(fitted.rows) if not params
                        else fitted.rows)
    lines = [*totals_lines(report), *_hidden_note(fitted.hidden)]
    if limit is not None:
        lines = [w for line in lines for w in wrap_words(line, limit, indent="  ")]
    parts = [table, "", *lines]
    if report.findings:
        parts += ["", findings_text(report.findings, width=limit or WIDTH)]  # at words
    return "\n".join(parts) + "\n"


def render_markdown(report: Report, *, depth: int | None = None, params: bool = False,
                    columns: Sequence[str] | str | None = None) -> str:
    """GitHub Markdown (tabulate ``github``), qualified paths in the first column.

    >>> import torchscope
    >>> "| 2 (= 4) " in render_markdown(torchscope.summarize(torchscope.examples.SharedMLP()))
    True
    """
    _check_report_args("render_markdown", report, depth, params, columns)
    from tabulate import tabulate

    cols, rows = _table_of(report, depth, params, False, columns)
    cells = [[escape_markdown(c) for c in row] for row in rows]
    table = tabulate(cells, headers=[c.header for c in cols], tablefmt="github",
                     disable_numparse=True,
                     colalign=["right" if c.numeric else "left" for c in cols])
    lines = [f"**{escape_markdown(report.root_type)}**", "", table, ""]
    lines += [f"- {line}" for line in totals_lines(report)]
    if report.findings:
        lines += ["", findings_table(report.findings, fmt="markdown")]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report as JSON (exact numbers; see :meth:`Report.to_dict`), ending in a newline.

    >>> import json, torchscope
    >>> json.loads(render_json(torchscope.summarize(torchscope.examples.MLP())))["total_params"]
    7946
    """
    check_record("render_json", "report", report, Report, _SUMMARIZE)
    return record_json(report) + "\n"


class _FittedTable:
    """A rich renderable that fits the module table to the console's width when printed."""

    def __init__(self, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]],
                 styles: Sequence[str | None], *, tree: bool = True) -> None:
        self.tree = tree
        self.title = title
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.styles = list(styles)

    def _table(self, widths: Sequence[int] | None, columns: Sequence[Column],
               rows: Sequence[Sequence[str]]) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=plain(self.title), title_justify="left", expand=False,
                      box=_box(), header_style="bold", pad_edge=False, collapse_padding=True,
                      show_edge=False)
        for i, c in enumerate(columns):
            table.add_column(plain(c.header), justify="right" if c.numeric else "left",
                             no_wrap=True, overflow="fold",
                             min_width=None if widths is None else widths[i])
        for row, style in zip(rows, self.styles):
            # cells are escaped already; Text never reads them as markup
            table.add_row(*(Text(cell) for cell in row), style=style)
        return table

    def _overhead(self, console: Any, options: Any) -> Callable[[int], int]:
        from rich.table import Table

        cache: dict[int, int] = {}

        def overhead(n: int) -> int:
            if n not in cache:
                t = Table(box=_box(), pad_edge=False, collapse_padding=True, show_edge=False)
                for _ in range(n):
                    t.add_column(no_wrap=True)
                t.add_row(*(["x"] * n))
                cache[n] = t.__rich_measure__(console, options).maximum - n
            return cache[n]

        return overhead

    def __rich_console__(self, console: Any, options: Any) -> Any:
        fitted = fit_table(self.columns, self.rows, options.max_width,
                           self._overhead(console, options))
        rows = continue_tree(fitted.rows) if self.tree else fitted.rows
        yield self._table(fitted.widths, fitted.columns, rows)
        from rich.text import Text

        yield Text("")

        for line in _hidden_note(fitted.hidden):
            yield Text(line, style="dim")


def rich_renderable(report: Report, *, depth: int | None = None, params: bool = False,
                    columns: Sequence[str] | str | None = None) -> RenderableType:
    """A rich renderable: the tree-table (fitted to the console when printed), totals and
    findings; every name is shown as written (escaped, never read as markup).

    >>> import torchscope
    >>> type(rich_renderable(torchscope.summarize(torchscope.examples.MLP()))).__name__
    'Group'
    """
    _check_report_args("rich_renderable", report, depth, params, columns)
    from rich.console import Group
    from rich.text import Text

    cols, rows = _table_of(report, depth, params, True, columns)
    styles: list[str | None] = []
    for m in ([] if params else _visible(report, depth)):
        styles.append("yellow" if m.lazy_tensors else "dim" if m.frozen else None)
    if params:
        styles = [None] * len(rows)
    parts: list[RenderableType] = [_FittedTable(report.root_type, cols, rows, styles,
                                                tree=not params),
                                   Text("\n".join(totals_lines(report)))]
    if report.findings:
        parts.append(findings_table(report.findings, fmt="rich"))
    return Group(*parts)


def _box() -> Any:
    from rich import box

    return box.SIMPLE_HEAD


def findings_text(findings: Sequence[Finding], *, width: int | None = WIDTH) -> str:
    """Findings as plain text, wrapped at word boundaries (an identifier is never split):
    ``ERROR   code path: message`` and an indented ``fix:`` line.

    >>> from torchscope.records import Finding, Severity
    >>> print(findings_text([Finding("x", Severity.INFO, "a message", hint="do this")]))
    INFO    x a message
            fix: do this
    """
    limit = width or 10**6
    lines: list[str] = []
    for f in findings:
        where = f.location or f.path
        where_text = f" {escape_text(where)}:" if where else ""
        head = f"{f.severity.value.upper():7} {f.code}{where_text} {escape_text(f.message)}"
        lines.extend(wrap_words(head, limit, indent=" " * 8))
        if f.hint:
            lines.extend(wrap_words(f"fix: {escape_text(f.hint)}", limit, first=" " * 8,
                                    indent=" " * 13))
    return "\n".join(lines)


class _Findings:
    """Findings for rich: severity-coloured lines wrapped at words to the console's width."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = list(findings)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        styles = {"error": "bold red", "warning": "yellow", "info": "cyan"}
        yield Text("\nFindings", style="italic")
        for f in self.findings:
            text = findings_text([f], width=options.max_width)
            yield Text(text, style=styles.get(f.severity.value, ""))


def findings_table(findings: Sequence[Finding], *, fmt: str = "rich") -> Any:
    """Findings as a rich renderable (``fmt="rich"``), Markdown, JSON or plain text (a ``str``).

    >>> from torchscope.records import Finding, Severity
    >>> print(findings_table([Finding("x", Severity.INFO, "a|b")], fmt="markdown"))
    ... # doctest: +NORMALIZE_WHITESPACE
    | Severity | Code | Where | Message | Fix |
    |------------|--------|---------|-----------|-------|
    | info | x | | a\\|b | |
    """
    if fmt == "json":
        items = [{k: v for k, v in record_dict(f).items() if k != "schema_version"}
                 for f in findings]
        return record_json({"schema_version": SCHEMA_VERSION, "findings": items})
    if fmt == "markdown":
        from tabulate import tabulate

        rows = [[f.severity.value, escape_markdown(f.code),
                 escape_markdown(f.location or f.path or ""), escape_markdown(f.message),
                 escape_markdown(f.hint or "")] for f in findings]
        return tabulate(rows, headers=["Severity", "Code", "Where", "Message", "Fix"],
                        tablefmt="github", disable_numparse=True)
    if fmt == "text":
        return findings_text(findings)
    return _Findings(findings)


# ------------------------------------------------------------------------------------------
# consoles and printing


def make_console(*, file: Any = None, width: int | None = None, color: bool | None = None,
                 record: bool = False) -> Console:
    """A rich console that writes to ``file`` (never to a notebook behind the caller's back);
    ``color=False`` gives the colorless fixed-width one used for snapshots.

    >>> make_console(width=80, color=False).width
    80
    """
    from rich.console import Console

    if color is False:
        return Console(file=file, width=width or WIDTH, color_system=None, force_terminal=False,
                       force_jupyter=False, no_color=True, highlight=False, record=record,
                       emoji=False, legacy_windows=False, markup=False)
    return Console(file=file, width=width, record=record, highlight=False, force_jupyter=False,
                   emoji=False, markup=False)


def render_rich_text(report: Report, *, depth: int | None = None, params: bool = False,
                     width: int = WIDTH, columns: Sequence[str] | str | None = None) -> str:
    """The rich rendering as colorless text of a fixed width (what a terminal shows).

    >>> import torchscope
    >>> out = render_rich_text(torchscope.summarize(torchscope.examples.MLP()), width=60)
    >>> max(len(line) for line in out.splitlines()) <= 60
    True
    """
    import io

    _check_report_args("render_rich_text", report, depth, params, columns)

    buf = io.StringIO()
    console = make_console(file=buf, width=width, color=False)
    console.print(rich_renderable(report, depth=depth, params=params, columns=columns))
    return buf.getvalue()


def render_html(report: Report) -> str:
    """HTML of the rich rendering, for Jupyter."""
    return html_of(rich_renderable(report))


def emit(renderable: Any, *, fmt: str = "text", file: Any = None) -> None:
    """Print text, or a rich renderable when ``fmt == "rich"`` (to stdout by default).

    >>> emit("hello")
    hello
    """
    check_file("emit", file)
    out = file or sys.stdout
    if fmt == "rich" and not isinstance(renderable, str):
        console = make_console(file=out, width=terminal_width(out) or WIDTH)
        console.print(renderable)
        return
    text = renderable if isinstance(renderable, str) else _to_text(renderable)
    out.write(text if text.endswith("\n") else text + "\n")


def _to_text(renderable: Any, width: int = WIDTH) -> str:
    import io

    buf = io.StringIO()
    make_console(file=buf, width=width, color=False).print(renderable)
    return buf.getvalue()


def print_report(report: Report, *, fmt: str = "rich", depth: int | None = None,
                 params: bool = False, file: Any = None,
                 columns: Sequence[str] | str | None = None) -> None:
    """Print a report in one of the formats ``rich``, ``text``, ``markdown``, ``json``.

    >>> import torchscope
    >>> torchscope.print_report(torchscope.summarize(torchscope.examples.MLP()), fmt="json")
    ... # doctest: +ELLIPSIS
    {...
    """
    _check_report_args("print_report", report, depth, params, columns)
    check_file("print_report", file)
    if fmt not in ("rich", "text", "markdown", "json"):
        raise TorchscopeError(f"print_report: fmt: unknown format {fmt!r}; use rich, text, "
                              "markdown or json")
    if fmt == "json":
        emit(render_json(report), fmt="text", file=file)
    elif fmt == "markdown":
        emit(render_markdown(report, depth=depth, params=params, columns=columns), fmt="text",
             file=file)
    elif fmt == "text":
        emit(render_text(report, depth=depth, params=params, columns=columns), fmt="text",
             file=file)
    else:
        emit(rich_renderable(report, depth=depth, params=params, columns=columns), fmt="rich",
             file=file)


def ties_rows(groups: Sequence[TiedGroup]) -> tuple[list[str], list[list[str]]]:
    """Header and rows listing tied groups: kind, unique size, devices and names."""
    header = ["#", "Kind", "Size", "Device", "Names"]
    rows = [
        [str(i), g.kind.value, humanize_bytes(g.nbytes), ",".join(g.devices),
         " ↔ ".join(escape_text(n) for n in g.names)]
        for i, g in enumerate(groups)
    ]
    return header, rows


def _simple_table(title: str, header: list[str], rows: list[list[str]], fmt: str,
                  *, right: tuple[str, ...] = ()) -> Any:
    if fmt in ("text", "markdown"):
        from tabulate import tabulate

        # cells hold names from user code: escaped here (escaping escaped text changes nothing)
        rows = [[escape_as(c, fmt) for c in row] for row in rows]
        table = tabulate(rows, headers=[escape_as(h, fmt) for h in header],
                         disable_numparse=True,
                         tablefmt="github" if fmt == "markdown" else "simple",
                         colalign=["right" if h in right else "left" for h in header])
        return f"{escape_as(title, fmt)}\n\n{table}"
    from rich.table import Table

    t = Table(title=plain(title), title_justify="left", box=_box(), header_style="bold")
    for name in header:
        t.add_column(plain(name), overflow="fold", justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*(plain(c) for c in row))
    return t


def ties_table(groups: Sequence[TiedGroup], *, fmt: str = "rich") -> Any:
    """Tied groups as a rich table (``fmt="rich"``) or text/Markdown (a ``str``).

    >>> import torchscope
    >>> print(ties_table(torchscope.find_tied(torchscope.examples.SharedMLP()), fmt="text"))
    ... # doctest: +ELLIPSIS
    Tied tensors (2 groups, each counted once in the totals)
    ...
      0  alias    256 B  cpu       2.weight ↔ 4.weight
      1  alias     32 B  cpu       2.bias ↔ 4.bias
    """
    header, rows = ties_rows(groups)
    if not rows:
        return "Tied tensors: none (every parameter and buffer has its own memory)"
    return _simple_table(f"Tied tensors ({_plural(len(rows), 'group')}, each counted once in "
                         "the totals)", header, rows, fmt, right=("#", "Size"))


def ties_renderable(report: Report, *, fmt: str = "rich") -> Any:
    """The report's tied groups as a rich table (``fmt="rich"``) or text/Markdown."""
    return ties_table(report.tied, fmt=fmt)


def lazy_table(records: Sequence[LazyRecord], *, fmt: str = "rich") -> Any:
    """Lazy modules: path, type, uninitialized tensors and what they will become."""
    header = ["Module", "Type", "Lazy tensors", "Known", "Inferred"]
    rows = []
    for r in records:
        inferred = ", ".join(f"{escape_text(n)} {list(shape)}"
                             for n, shape, _ in r.inferred) or UNKNOWN
        known = ", ".join(f"{k}={v}" for k, v in r.known)
        rows.append([escape_text(r.path) or "(root)", escape_text(r.type_name),
                     escape_text(", ".join(r.tensors)), escape_text(known), inferred])
    return _simple_table(f"Lazy modules ({len(records)})", header, rows, fmt)


def html_of(renderable: Any) -> str:
    """HTML of a rich renderable (or text), for Jupyter.

    >>> html_of("a<b")
    '<pre>a&lt;b</pre>'
    """
    import html
    import io

    if isinstance(renderable, str):
        return f"<pre>{html.escape(renderable)}</pre>"
    console = make_console(file=io.StringIO(), width=WIDTH, record=True)
    console.print(renderable)
    return console.export_html(inline_styles=True)


def mimebundle(obj: Any) -> dict[str, str]:
    """What a notebook shows for a record: ``text/plain`` (the text rendering) and
    ``text/html`` (the rich rendering), computed once, displayed once.

    >>> import torchscope
    >>> sorted(mimebundle(torchscope.summarize(torchscope.examples.MLP())))
    ['text/html', 'text/plain']
    """
    from torchscope.rendering import render

    text = render(obj, "text")
    return {"text/plain": str(text), "text/html": html_of(render(obj, "rich"))}


__all__ += ["Fitted", "findings_text", "fit_table", "html_of", "lazy_table", "mimebundle",
            "module_table", "params_table", "ties_renderable", "ties_rows", "ties_table",
            "totals_lines"]
