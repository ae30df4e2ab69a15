"""The record of ``torchscope.check``: every finding of one check run and what ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torchscope.records._core import (
    SCHEMA_VERSION,
    Displayed,
    Finding,
    Severity,
    record_dict,
    record_json,
)
from torchscope.records._training import GradientReport, NonfiniteReport

__all__ = ["CheckResult"]


@dataclass(frozen=True, slots=True, repr=False)
class CheckResult(Displayed):
    """The findings of :func:`torchscope.check`, errors first, and what ran.

    ``mode`` is the mode of the forward that ran (``real``, ``meta`` or ``fake``), or ``None``
    when no forward ran (no example inputs, or a device mismatch stopped it). ``gradients`` is
    the gradient flow of the real backward (``backward=True``), ``nonfinite`` the search for
    the first NaN/Inf (``nonfinite=True``); ``None`` when not asked for.

    >>> import torchscope
    >>> result = torchscope.check(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> result.ok, result.errors
    (True, 0)
    """

    model_type: str
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]
    mode: str | None
    backward: bool = False
    gradients: GradientReport | None = None
    nonfinite: NonfiniteReport | None = None
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.severity is Severity.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        """How many findings are warnings."""
        return sum(f.severity is Severity.WARNING for f in self.findings)

    @property
    def ok(self) -> bool:
        """No finding is an error (``torchscope check`` exits 0)."""
        return self.errors == 0

    @property
    def exit_code(self) -> int:
        """What ``torchscope check`` exits with: 1 when any finding is an error, else 0."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, ``errors`` (a count) and ``exit_code``."""
        out = record_dict(self)
        out["errors"] = self.errors
        out["exit_code"] = self.exit_code
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return record_json(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        return (f"<CheckResult {self.model_type}: {self.errors} errors, {self.warnings} "
                f"warnings, {len(self.findings) - self.errors - self.warnings} info>")

