"""Rendering of the training-step records: unused parameters, the first non-finite value,
gradient flow and optimizer groups. Names (parameters, modules, classes, files) are escaped for
each format (:mod:`torchscope.rendering._text`); rich shows them as ``Text``, never as markup."""

from __future__ import annotations

from typing import Any

from torchscope._units import humanize_count
from torchscope.records import (
    GradientReport,
    NonfiniteReport,
    OptimizerReport,
    TensorStats,
    UnusedReport,
    record_json,
)
from torchscope.rendering._report import _simple_table, findings_table
from torchscope.rendering._text import escape_as, plain

__all__ = [
    "render_gradients",
    "render_nonfinite",
    "render_optimizer",
    "render_unused",
    "stats_text",
]


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.1f}%"


def stats_text(s: TensorStats) -> str:
    """``[2, 8] float32 min -1 max 2 mean 0.3`` with NaN/Inf counts when there are any."""
    shape = "[" + ", ".join(map(str, s.shape)) + "]"
    bad = (f" nan {s.nan}" if s.nan else "") + (f" inf {s.inf}" if s.inf else "")
    return f"{shape} {s.dtype} min {_num(s.min)} max {_num(s.max)} mean {_num(s.mean)}{bad}"


def _line(text: str, fmt: str) -> Any:
    """A line of prose holding names: escaped text, or a rich ``Text`` (never markup)."""
    return plain(text) if fmt == "rich" else escape_as(text, fmt)


def _join(parts: list[Any], fmt: str) -> Any:
    if fmt == "rich":
        from rich.console import Group

        return Group(*(_line(p, fmt) if isinstance(p, str) else p for p in parts))
    return "\n\n".join(str(p) for p in parts if p != "")


def _notes(notes: tuple[str, ...], fmt: str) -> list[Any]:
    return [_line(f"note: {n}", fmt) for n in notes]


def _findings(findings: Any, fmt: str) -> list[Any]:
    return [findings_table(findings, fmt=fmt)] if findings else []


def render_unused(report: UnusedReport, *, fmt: str = "text") -> Any:
    """Parameters without gradient: a table (name, module, shape, values, reason)."""
    if fmt == "json":
        return record_json(report)
    head = (f"{report.model_type}: {len(report.unused)} of {report.trainable} trainable tensors "
            f"get no gradient ({report.mode} forward, autograd graph of the outputs)")
    parts: list[Any] = [_line(head, fmt)]
    if report.unused:
        rows = [[u.name, u.module or "(root)", u.module_type,
                 "[" + ", ".join(map(str, u.shape)) + "]", f"{u.numel:,}", u.reason.value]
                for u in report.unused]
        parts.append(_simple_table("Parameters without gradient",
                                   ["Parameter", "Module", "Type", "Shape", "Values", "Why"],
                                   rows, fmt, right=("Values",)))
        parts += _findings(report.findings, fmt)
    parts += _notes(report.notes, fmt)
    return _join(parts, fmt)


def render_nonfinite(report: NonfiniteReport, *, fmt: str = "text") -> Any:
    """Where the first NaN/Inf appeared, with statistics of the op's and the module call's
    inputs and outputs."""
    if fmt == "json":
        return record_json(report)
    if not report.found:
        what = "forward and backward" if report.backward else "forward"
        parts: list[Any] = [_line(f"{report.model_type}: every value finite in one {what}",
                                  fmt)]
    else:
        parts = _findings(report.findings, fmt)
        rows: list[list[str]] = []
        label_in, label_out = (("grad in", "grad out") if report.phase == "backward"
                               else ("input", "output"))
        for i, s in enumerate(report.inputs):
            rows.append([f"op {label_in} {i}", stats_text(s)])
        for i, s in enumerate(report.outputs):
            rows.append([f"op {label_out} {i}", stats_text(s)])
        for i, s in enumerate(report.module_inputs):
            rows.append([f"module input {i}", stats_text(s)])
        for i, s in enumerate(report.module_outputs):
            rows.append([f"module output {i}", stats_text(s)])
        if rows:
            where = report.module or "(root)" if report.module is not None else "-"
            title = (f"First non-finite ({report.phase}): {report.op} in {where}"
                     f" ({report.module_type}) at {report.location}")
            parts.append(_simple_table(title, ["Tensor", "Values"], rows, fmt))
    parts += _notes(report.notes, fmt)
    return _join(parts, fmt)


def render_gradients(report: GradientReport, *, fmt: str = "text", params: bool = False) -> Any:
    """Gradient flow per block (and per parameter with ``params=True``)."""
    if fmt == "json":
        return record_json(report)
    rows = [[b.block, str(b.params), str(b.none_grads), _num(b.grad_norm), _num(b.param_norm),
             _num(b.ratio), _pct(b.zero_share),
             "-" if b.grad_norm is None else "yes" if b.finite else "NO"]
            for b in report.blocks]
    loss = f", loss {report.loss:.4g}" if report.loss is not None else ""
    parts: list[Any] = [_simple_table(
        f"Gradient flow{loss} (vanishing below {report.vanishing:g}, exploding above "
        f"{report.exploding:g})",
        ["Block", "Params", "No grad", "Grad norm", "Param norm", "Ratio", "Zeros", "Finite"],
        rows, fmt, right=("Params", "No grad", "Grad norm", "Param norm", "Ratio", "Zeros"))]
    if params:
        prow = [[p.name, "[" + ", ".join(map(str, p.shape)) + "]", humanize_count(p.numel),
                 _num(p.grad_norm) if p.has_grad else "None", _num(p.ratio),
                 _pct(p.zero_share)] for p in report.params]
        parts.append(_simple_table("Gradients per parameter",
                                   ["Parameter", "Shape", "Values", "Grad norm", "Ratio",
                                    "Zeros"], prow, fmt,
                                   right=("Values", "Grad norm", "Ratio", "Zeros")))
    parts += _findings(report.findings, fmt)
    parts += _notes(report.notes, fmt)
    return _join(parts, fmt)


def render_optimizer(report: OptimizerReport, *, fmt: str = "text") -> Any:
    """The optimizer's groups (lr, weight decay, tensors, values, blocks) and findings."""
    if fmt == "json":
        return record_json(report)
    rows = [[str(g.index), _num(g.lr), _num(g.weight_decay), str(g.params), f"{g.numel:,}",
             ", ".join(g.blocks)] for g in report.groups]
    parts: list[Any] = [_simple_table(
        f"{report.optimizer_type} on {report.model_type}: parameter groups",
        ["Group", "LR", "Weight decay", "Tensors", "Values", "Blocks"], rows, fmt,
        right=("Group", "LR", "Weight decay", "Tensors", "Values"))]
    parts += _findings(report.findings, fmt)
    return _join(parts, fmt)
