"""Rendering of a :class:`~torchscope.records.CheckResult`: the findings, the gradient flow
and the first non-finite value when they ran, the notes and a one-line summary. The model's
class name and the notes are escaped (:mod:`torchscope.rendering._text`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torchscope.records import CheckResult, record_json
from torchscope.rendering._report import findings_table
from torchscope.rendering._text import escape_as
from torchscope.rendering._training import render_gradients, render_nonfinite

__all__ = ["render_check", "summary_line"]


def summary_line(result: CheckResult) -> str:
    """``MLP: 0 errors, 1 warning, 0 info``."""
    errors, warnings = result.errors, result.warnings
    infos = len(result.findings) - errors - warnings
    return (f"{result.model_type}: {errors} error{'s' * (errors != 1)}, {warnings} warning"
            f"{'s' * (warnings != 1)}, {infos} info")


def render_check(result: CheckResult, *, fmt: str = "text") -> Any:
    """The result in ``rich``, ``text``, ``markdown`` or ``json`` (with ``schema_version``,
    an ``errors`` count and the ``exit_code``)."""
    if fmt == "json":
        return record_json(result.to_dict())
    parts: list[Any] = []
    if result.findings:
        parts.append(findings_table(result.findings, fmt=fmt))
    if result.gradients is not None:
        parts.append(render_gradients(replace(result.gradients, findings=(), notes=()), fmt=fmt))
    if result.nonfinite is not None and result.nonfinite.found:
        parts.append(render_nonfinite(replace(result.nonfinite, findings=(), notes=()), fmt=fmt))
    # each line escaped on its own: a newline in a name shows as "\\n", never breaks a line
    tail = "\n".join(escape_as(line, fmt) for line in [*(f"note: {n}" for n in result.notes),
                                                       summary_line(result)])
    if fmt == "rich":
        from rich.console import Group
        from rich.text import Text

        return Group(*parts, Text(tail))
    return "\n\n".join([*(str(p) for p in parts), tail])
