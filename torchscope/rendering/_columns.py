"""The columns of the module table: one registry used by rich, text and Markdown tables.

Each :class:`Column` has a key (``num_params``, ``input_size``…, torchinfo's ``col_names``
where torchinfo has one), a header, a function computing a cell from ``(report, module,
call)`` (``call`` is the module's first traced call, ``None`` when it was not called or nothing
was traced), and whether the table shows it by default. ``--columns`` on the command line,
``columns=`` of :func:`torchscope.render` and ``col_names=`` of :func:`torchscope.summary`
choose and order them. A new analysis adds its column with :func:`register_column`:

>>> from torchscope.rendering._columns import register_column, COLUMNS
>>> register_column("depth", "Depth", lambda report, m, call: str(m.depth), numeric=True)
>>> COLUMNS["depth"].header
'Depth'
>>> del COLUMNS["depth"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torchscope._units import UNKNOWN, humanize_bytes, humanize_count
from torchscope.errors import TorchscopeError
from torchscope.records import (
    CallRecord,
    MapSpec,
    ModuleRecord,
    ParamKind,
    Report,
    SeqSpec,
    Spec,
    TensorSpec,
    ValueSpec,
    inferred_numel,
)

__all__ = [
    "COLUMNS",
    "Cell",
    "Column",
    "call_inputs_text",
    "choose_columns",
    "column_keys",
    "mixed_dtypes",
    "mixed_modes",
    "register_column",
    "spec_text",
]

#: ``cell(report, module, call) -> str``; ``call`` is the module's first traced call or None
Cell = Callable[[Report, ModuleRecord, "CallRecord | None"], str]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the module table.

    Attributes:
        key: the name ``--columns``/``columns=`` use (``num_params``).
        header: the table header (``Total``).
        cell: computes the text of a cell from ``(report, module, first call or None)``.
        numeric: right-aligned.
        traced: needs a traced forward (shapes, costs); asking for it on a static report is an
            error that says how to trace.
        default: shown without ``columns=``: ``"always"``, ``"static"`` (only without a trace),
            ``"traced"`` (only with one), ``"never"``, or a predicate of the report.
        priority: when the terminal is too narrow, lower priorities are hidden first (the
            module name is 100 and never hidden; 80 and above are kept as long as possible).
        wrap: cells may wrap at separators (``.``, ``,``, space) in a narrow terminal.
    """

    key: str
    header: str
    cell: Cell
    numeric: bool = False
    traced: bool = False
    default: str | Callable[[Report], bool] = "never"
    priority: int = 40
    wrap: bool = False

    def shown_by_default(self, report: Report) -> bool:
        """Whether the table shows this column when no columns were chosen."""
        if callable(self.default):
            return bool(self.default(report))
        traced = report.mode is not None
        return (self.default == "always" or (self.default == "static" and not traced)
                or (self.default == "traced" and traced))


#: key -> column, in the default order of the table
COLUMNS: dict[str, Column] = {}


def register_column(key: str, header: str, cell: Cell, *, numeric: bool = False,
                    traced: bool = False, default: str | Callable[[Report], bool] = "never",
                    priority: int = 40, wrap: bool = False, before: str | None = None) -> None:
    """Add (or replace) a column of the module table.

    Args:
        key: the name users choose it by (``--columns flops``).
        header: the table header.
        cell: ``cell(report, module, call) -> str``; return ``""`` for nothing and
            ``"?"`` (:data:`torchscope._units.UNKNOWN`) for unknown, never a made-up 0.
        numeric: right-align the column.
        traced: the column needs a traced forward.
        default: when it is shown without ``columns=`` (see :class:`Column`).
        priority: how long it stays in a narrow terminal (higher stays longer).
        wrap: cells may wrap at separators.
        before: insert before this key in the default order (default: at the end).

    Raises:
        TorchscopeError: ``key`` is not a lowercase identifier, or ``before`` is unknown.

    >>> register_column("depth", "Depth", lambda r, m, c: str(m.depth), before="type")
    >>> list(COLUMNS)[:2]
    ['module', 'depth']
    >>> del COLUMNS["depth"]
    """
    if not key.isidentifier() or key != key.lower():
        raise TorchscopeError(
            f"column key {key!r} is not a lowercase identifier; use e.g. 'saved_act'"
        )
    column = Column(key, header, cell, numeric=numeric, traced=traced, default=default,
                    priority=priority, wrap=wrap)
    if before is None:
        COLUMNS[key] = column
        return
    if before not in COLUMNS:
        raise TorchscopeError(
            f"register_column(before={before!r}): no such column; use one of {', '.join(COLUMNS)}"
        )
    items = [(k, v) for k, v in COLUMNS.items() if k != key]
    COLUMNS.clear()
    for k, v in items:
        if k == before:
            COLUMNS[key] = column
        COLUMNS[k] = v


# ------------------------------------------------------------------------------------------
# the text of specs


def spec_text(spec: Spec) -> str:
    """The whole text of a spec, never shortened: ``[2, 20]``, ``{logits: [1, 8, 100], …}``.

    >>> spec_text(TensorSpec((2, 20), "float32", "cpu"))
    '[2, 20]'
    """
    if spec is None:
        return "None"
    if isinstance(spec, TensorSpec):
        return spec.shape_str()
    if isinstance(spec, SeqSpec):
        inner = ", ".join(spec_text(s) for s in spec.items)
        return f"[{inner}]" if spec.type_name == "list" else f"({inner})"
    if isinstance(spec, MapSpec):
        items = [(k, v) for k, v in spec.items if v is not None]
        return "{" + ", ".join(f"{k}: {spec_text(v)}" for k, v in items) + "}"
    if isinstance(spec, ValueSpec):
        return spec.repr
    return str(spec)  # pragma: no cover


def call_inputs_text(call: CallRecord) -> str:
    """The positional and keyword inputs of a call: ``[2, 20]``, ``[1, 8], mask=[1, 8]``.

    >>> call_inputs_text(CallRecord(0, (TensorSpec((2, 20), "float32", "cpu"),), (), None))
    '[2, 20]'
    """
    specs: list[str] = [spec_text(s) for s in call.inputs]
    specs.extend(f"{k}={spec_text(v)}" for k, v in call.kwargs if v is not None)
    return ", ".join(specs)


# ------------------------------------------------------------------------------------------
# when optional columns appear


def mixed_dtypes(report: Report) -> bool:
    """Whether parameters and floating buffers mix dtypes or devices.

    A BatchNorm's int64 ``num_batches_tracked`` counter does not make a model mixed: integer
    buffers are counters and indices, not weights.

    >>> import torch, torchscope
    >>> mixed_dtypes(torchscope.summarize(torch.nn.BatchNorm1d(4)))
    False
    """
    dtypes: set[str] = set()
    devices: set[str] = set()
    for p in report.params:
        devices.add(p.device)
        if p.kind is ParamKind.PARAMETER or not _is_integer(p.dtype):
            dtypes.add(p.dtype)
    return len(dtypes) > 1 or len(devices) > 1


def _is_integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint")) or dtype == "bool"


def mixed_modes(report: Report) -> bool:
    """Whether some modules are in training mode and others in eval mode.

    >>> import torchscope
    >>> mixed_modes(torchscope.summarize(torchscope.examples.MLP()))
    False
    """
    return len({m.training for m in report.modules}) > 1


# ------------------------------------------------------------------------------------------
# the cells


def _inferred_in(report: Report, path: str) -> int | None:
    """Inferred elements of the lazy parameters under ``path`` (``None`` while unknown)."""
    if not any(r.inferred for r in report.lazy):
        return None
    prefix = path + "." if path else ""
    inside = [r for r in report.lazy if not path or r.path == path or r.path.startswith(prefix)]
    return inferred_numel(inside, params=report.params)


def _total(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    total = humanize_count(m.total_params)
    if m.lazy_tensors:
        inferred = _inferred_in(report, m.path)
        if inferred is not None:
            return "~" + humanize_count(m.total_params + inferred)
        return f"{total}+lazy" if m.total_params else "lazy"
    return total


def _own(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    if not m.param_names:
        return ""
    if m.lazy_tensors and not m.own_params:
        return "lazy"
    return humanize_count(m.own_params)


def _size(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    size = humanize_bytes(m.param_bytes + m.buffer_bytes)
    if not m.lazy_tensors:
        return size
    return UNKNOWN if m.param_bytes + m.buffer_bytes == 0 else f"≥ {size}"


def _percent(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    if m.lazy_tensors or report.lazy_tensors:
        return UNKNOWN
    if report.total_params == 0:
        return ""
    share = 100 * m.total_params / report.total_params
    if m.total_params == 0:
        return "0%"
    if share < 0.1:
        return "<0.1%"
    return f"{share:.1f}%"


def _train(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    if m.total_params == 0:
        return "lazy" if m.lazy_tensors else ""
    if m.trainable_params == m.total_params:
        return "yes"
    if m.trainable_params == 0:
        return "frozen"
    return "partial"


def _mode(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    return "train" if m.training else "eval"


def _where(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    return ",".join(m.dtypes) + ("@" + ",".join(m.devices) if m.devices else "")


def _input(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    if call is None:  # a container whose children ran (a ModuleList) has no forward of its own
        return "" if _ran_inside(report, m) else "(not called)"
    return call_inputs_text(call)


def _ran_inside(report: Report, m: ModuleRecord) -> bool:
    """Whether some module inside ``m`` ran (a ModuleList holds blocks but has no forward)."""
    prefix = m.path + "." if m.path else ""
    return any(o.calls for o in report.modules if o.path.startswith(prefix) and o is not m)


def _output(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    if call is None:
        return ""
    out = spec_text(call.outputs)
    return f"×{len(m.calls)} {out}" if len(m.calls) > 1 else out


def _kernel(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    name = f"{m.path}.weight" if m.path else "weight"
    if "weight" not in m.param_names:
        return ""
    for p in report.params:
        if p.name == name or name in p.aliases:
            if p.shape is not None and len(p.shape) >= 3:
                return "[" + ", ".join(str(d) for d in p.shape[2:]) + "]"
            return ""
    return ""


def _type(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    return m.type_name


def _module(report: Report, m: ModuleRecord, call: CallRecord | None) -> str:
    return m.path or "(root)"


register_column("module", "Module", _module, default="always", priority=100)
register_column("type", "Type", _type, default="always", priority=80)
register_column("input_size", "Input", _input, traced=True, default="traced", priority=85,
                wrap=True)
register_column("output_size", "Output", _output, traced=True, default="traced", priority=90,
                wrap=True)
register_column("own_params", "Own", _own, numeric=True, default="always", priority=60)
register_column("num_params", "Total", _total, numeric=True, default="always", priority=95)
register_column("params_percent", "% params", _percent, numeric=True, default="traced",
                priority=50)
register_column("size", "Size", _size, numeric=True, default="always", priority=55)
register_column("dtype_device", "dtype@device", _where, default=mixed_dtypes, priority=35,
                wrap=True)
register_column("trainable", "Train", _train, default="always", priority=45)
register_column("mode", "Mode", _mode, default=mixed_modes, priority=40)
register_column("kernel_size", "Kernel", _kernel, priority=30)

#: other names of columns (torchinfo's, the old headers)
ALIASES: dict[str, str] = {"params": "num_params", "total": "num_params", "own": "own_params",
                           "input": "input_size", "output": "output_size", "train": "trainable",
                           "percent": "params_percent", "dtype": "dtype_device",
                           "kernel": "kernel_size", "name": "module", "layer": "module"}


def column_keys(keys: Sequence[str] | str) -> list[str]:
    """The canonical keys of ``keys`` (a list or a comma-separated string), checked.

    Raises:
        TorchscopeError: an unknown key, with the closest one.

    >>> column_keys("params,input")
    ['num_params', 'input_size']
    """
    if isinstance(keys, str):
        keys = [k for k in keys.replace(" ", "").split(",") if k]
    out: list[str] = []
    for key in keys:
        canonical = ALIASES.get(key.lower(), key.lower())
        if canonical not in COLUMNS:
            import difflib

            close = difflib.get_close_matches(key, [*COLUMNS, *ALIASES], n=1)
            hint = f"did you mean {ALIASES.get(close[0], close[0])}? " if close else ""
            raise TorchscopeError(
                f"columns: {key!r} is not a column; {hint}choose from {', '.join(COLUMNS)}"
            )
        out.append(canonical)
    return out


def choose_columns(report: Report, keys: Sequence[str] | str | None = None) -> list[Column]:
    """The columns of ``report``'s table: the defaults, or ``keys`` in their order.

    The module column always comes first. ``keys`` may be a comma-separated string.

    Raises:
        TorchscopeError: an unknown key (with the closest one), or a traced column asked of a
            report without a traced forward.

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP())
    >>> [c.key for c in choose_columns(r, "num_params,type")]
    ['module', 'num_params', 'type']
    """
    if keys is None:
        return [c for c in COLUMNS.values() if c.shown_by_default(report)]
    chosen: list[Column] = [COLUMNS["module"]]
    for key in column_keys(keys):
        column = COLUMNS[key]
        if column.traced and report.mode is None:
            raise TorchscopeError(
                f"columns: {key!r} needs a traced forward, and this summary has none; give "
                "example inputs (--input-size 2,20 or input_size=[(2, 20)])"
            )
        if column not in chosen:
            chosen.append(column)
    return chosen
