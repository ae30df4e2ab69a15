"""Rendering of a :class:`~torchscope.records.CheckResult`: the findings, the gradient flow
and the first non-finite value when they ran, the notes and a one-line summary."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from torchscope.records import CheckResult
from torchscope.rendering._report import findings_table
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
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    parts: list[Any] = []
    if result.findings:
        parts.append(findings_table(result.findings, fmt=fmt))
    if result.gradients is not None:
        parts.append(render_gradients(replace(result.gradients, findings=(), notes=()), fmt=fmt))
    if result.nonfinite is not None and result.nonfinite.found:
        parts.append(render_nonfinite(replace(result.nonfinite, findings=(), notes=()), fmt=fmt))
    tail = "\n".join([*(f"note: {n}" for n in result.notes), summary_line(result)])
    if fmt == "rich":
        from rich.console import Group
        from rich.text import Text

        return Group(*parts, Text(tail))
    return "\n\n".join([*(str(p) for p in parts), tail])
