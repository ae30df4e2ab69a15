"""Every output of torchscope: one :func:`render` for every record, in every format.

``render(obj, fmt)`` returns a ``str`` for ``text``, ``markdown`` and ``json`` and a rich
renderable for ``rich``; :func:`show` prints one. Renderers read records only, never a model;
``rich``, ``tabulate`` and ``graphviz`` are imported where used, so ``import torchscope`` stays
light. Each family of records has its private module here (``_report``, ``_init``, ``_syncs``,
``_checkpoint``, ``_distributed``, ``graph``); the text kit (widths, humanized numbers, spec
text) lives in ``_report`` and ``torchscope._units``.

>>> import torchscope
>>> text = torchscope.render(torchscope.summarize(torchscope.examples.MLP()), "text")
>>> "7,946" in text
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from torchscope._units import humanize_bytes as humanize_bytes, humanize_count as humanize_count
from torchscope.errors import ArgumentError, TorchscopeError
from torchscope.records import (
    ArchitectureDiff,
    CheckpointDiff,
    CheckpointInfo,
    CheckResult,
    CostReport,
    Finding,
    GradientReport,
    InitReport,
    LazyRecord,
    NonfiniteReport,
    OptimizerReport,
    Report,
    SyncReport,
    TiedGroup,
    UnusedReport,
    record_dict,
    record_json,
)
from torchscope.rendering import (
    _check,
    _checkpoint,
    _cost,
    _diff,
    _init,
    _report,
    _syncs,
    _training,
)
from torchscope.rendering._args import check_file, check_options
from torchscope.rendering._columns import COLUMNS as COLUMNS, register_column as register_column
from torchscope.rendering._report import (
    WIDTH as WIDTH,
    emit as emit,
    findings_table as findings_table,
    make_console as make_console,
    mimebundle as mimebundle,
    print_report as print_report,
    render_json as render_json,
    render_markdown as render_markdown,
    render_text as render_text,
    spec_str as spec_str,
)
from torchscope.rendering._text import terminal_width

__all__ = [
    "COLUMNS",
    "FORMATS",
    "WIDTH",
    "Format",
    "emit",
    "findings_table",
    "humanize_bytes",
    "humanize_count",
    "make_console",
    "mimebundle",
    "print_report",
    "register_column",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "show",
    "spec_str",
]

#: The output formats every record renders to.
Format = Literal["rich", "text", "markdown", "json"]
FORMATS: tuple[str, ...] = get_args(Format)

_Renderer = Callable[..., Any]


def _report_renderer(obj: Report, fmt: str, **options: Any) -> Any:
    if fmt == "json":
        return _report.render_json(obj)
    if fmt != "text":
        options.pop("width", None)  # only text fits a width; rich fits its console
    out: Any
    if fmt == "markdown":
        out = _report.render_markdown(obj, **options)
    elif fmt == "text":
        out = _report.render_text(obj, **options)
    else:
        out = _report.rich_renderable(obj, **options)
    return _cost.with_cost_block(out, obj, fmt)


def _sync_renderer(obj: SyncReport, fmt: str, **options: Any) -> Any:
    if fmt == "rich":
        return _syncs.rich_sync_report(obj)
    return _syncs.render_sync_report(obj, fmt=fmt)


def _findings_renderer(obj: tuple[Finding, ...], fmt: str, **options: Any) -> Any:
    return _report.findings_table(obj, fmt=fmt)


def _checkpoint_width(options: dict[str, Any]) -> dict[str, Any]:
    """``width`` for a checkpoint listing: an int (``None``: no wrapping, ``"terminal"``: the
    terminal's width)."""
    if "width" in options:
        width = options["width"]
        if width is None:
            options["width"] = 10**6
        elif width == "terminal":
            options["width"] = terminal_width() or WIDTH
    return options


def _ties_renderer(obj: tuple[TiedGroup, ...], fmt: str, **options: Any) -> Any:
    if fmt == "json":
        return _json({"tied": [_plain(g) for g in obj]})
    return _report.ties_table(obj, fmt=fmt)


def _lazy_renderer(obj: tuple[LazyRecord, ...], fmt: str, **options: Any) -> Any:
    if fmt == "json":
        return _json({"lazy": [_plain(r) for r in obj]})
    return _report.lazy_table(obj, fmt=fmt)


def _plain(record: Any) -> dict[str, Any]:
    out = record_dict(record)
    out.pop("schema_version")
    return out


def _json(payload: dict[str, Any]) -> str:
    from torchscope.records import SCHEMA_VERSION

    return record_json({"schema_version": SCHEMA_VERSION, **payload})


# record type -> renderer(obj, fmt, **options); a record type's subclasses use its renderer
_RENDERERS: dict[type, _Renderer] = {
    Report: _report_renderer,
    CostReport: lambda obj, fmt, **o: _cost.render_cost(obj, fmt=fmt, **o),
    InitReport: lambda obj, fmt, **o: _init.render_init(obj, fmt=fmt, **{
        "stats": _init.stats_of(obj), **o}),
    SyncReport: _sync_renderer,
    CheckpointInfo: lambda obj, fmt, **o: _checkpoint.render_info(obj, fmt=fmt,
                                                                  **_checkpoint_width(o)),
    CheckpointDiff: lambda obj, fmt, **o: _checkpoint.render_diff(obj, fmt=fmt,
                                                                  **_checkpoint_width(o)),
    ArchitectureDiff: lambda obj, fmt, **o: _diff.render_diff(obj, fmt=fmt, **o),
    CheckResult: lambda obj, fmt, **o: _check.render_check(obj, fmt=fmt, **o),
    UnusedReport: lambda obj, fmt, **o: _training.render_unused(obj, fmt=fmt, **o),
    NonfiniteReport: lambda obj, fmt, **o: _training.render_nonfinite(obj, fmt=fmt, **o),
    GradientReport: lambda obj, fmt, **o: _training.render_gradients(obj, fmt=fmt, **o),
    OptimizerReport: lambda obj, fmt, **o: _training.render_optimizer(obj, fmt=fmt, **o),
}
# the options each record type takes (in every format; one a format has no use for is ignored)
_OPTIONS: dict[type, tuple[str, ...]] = {
    Report: ("depth", "params", "columns", "width"),
    CostReport: ("depth",),
    InitReport: ("stats",),
    CheckpointInfo: ("width",),
    CheckpointDiff: ("width",),
    GradientReport: ("params",),
}
# tuples of records (what find_tied, find_lazy and check_* return), by their item type
_SEQUENCE_RENDERERS: dict[type, _Renderer] = {
    Finding: _findings_renderer,
    TiedGroup: _ties_renderer,
    LazyRecord: _lazy_renderer,
}


def _options_of(obj: object) -> tuple[str, ...]:
    if isinstance(obj, (tuple, list)):
        return ()
    for cls in type(obj).__mro__:
        if cls in _OPTIONS:
            return _OPTIONS[cls]
    return ()


def _renderer_of(obj: object) -> _Renderer | None:
    if isinstance(obj, (tuple, list)):
        if obj:
            first = type(obj[0])
            for cls, fn in _SEQUENCE_RENDERERS.items():
                if issubclass(first, cls) and all(isinstance(x, cls) for x in obj):
                    return fn
        return None
    for cls in type(obj).__mro__:
        found = _RENDERERS.get(cls)
        if found is not None:
            return found
    return None


def render(obj: object, fmt: Format = "text", **options: Any) -> Any:
    """Any torchscope result in one of the formats ``rich``, ``text``, ``markdown``, ``json``.

    Args:
        obj: a record (``Report``, ``InitReport``, ``SyncReport``, ``CheckpointInfo``,
            ``CheckpointDiff``, ``CheckResult``…) or a tuple of findings, tied groups or lazy
            records.
        fmt: the format; ``json`` always carries ``schema_version``.
        options: format options of that record (``depth=``, ``params=`` for a report).

    Returns:
        A ``str`` for ``text``, ``markdown`` and ``json``; a rich renderable for ``rich``.

    Raises:
        ArgumentError: an object torchscope did not make, an option that record does not
            take or a value of the wrong type (``depth='x'``, ``columns=3``).
        TorchscopeError: an unknown format or column.

    >>> import torchscope
    >>> render(torchscope.find_tied(torchscope.examples.SharedMLP()), "json")[:19]
    '{\\n  "schema_version'
    """
    if fmt not in FORMATS:
        raise TorchscopeError(
            f"fmt = {fmt!r} is not a format; use one of {', '.join(FORMATS)}"
        )
    return _render("render", obj, fmt, options)


def _render(function: str, obj: object, fmt: object, options: dict[str, Any]) -> Any:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise TorchscopeError(
            f"fmt = {fmt!r} is not a format; use one of {', '.join(FORMATS)}"
        )
    if isinstance(obj, (tuple, list)) and not obj:
        check_options(function, "empty tuple", options, ())
        if fmt == "json":
            return _json({"items": []})
        return _plain_text("(nothing)") if fmt == "rich" else "(nothing)"
    fn = _renderer_of(obj)
    if fn is None:
        raise ArgumentError(
            f"{function}() takes a torchscope record, not {type(obj).__name__}: pass what "
            "summarize, check, find_tied, apply_init, detect_syncs or inspect_checkpoint return"
        )
    check_options(function, type(obj).__name__, options, _options_of(obj))
    return fn(obj, fmt, **options)


def _plain_text(text: str) -> Any:
    from rich.text import Text

    return Text(text)


def show(obj: object, fmt: Format = "rich", *, file: Any = None, **options: Any) -> None:
    """Print :func:`render` of ``obj`` (rich only when ``file`` is a terminal-like stream).

    >>> import torchscope
    >>> show(torchscope.find_tied(torchscope.examples.MLP()), "text")
    (nothing)
    """
    check_file("show", file)
    emit(_render("show", obj, fmt, options), fmt=fmt, file=file)


def render_html(obj: object) -> str:
    """The rich rendering of ``obj`` as HTML, for Jupyter.

    >>> import torchscope
    >>> render_html(torchscope.summarize(torchscope.examples.MLP())).startswith("<")
    True
    """
    return _report.html_of(_render("render_html", obj, "rich", {}))
