"""Check a model for problems and exit 1 when any is an error (so it can gate CI): devices
(tensors over several devices, meta tensors, plain tensor attributes, mixed dtypes, inputs on
the wrong device), tied and lazy tensors, and — with --input-size — parameters the forward never
uses and the host-device synchronizations of one real forward. Exit 0 when nothing is an error,
2 on bad input."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from torchscope.cli import (
    add_format_argument,
    add_input_arguments,
    add_target_arguments,
    input_options,
    load_target,
    output_format,
)
from torchscope.devices import check_devices
from torchscope.lazy import check_lazy
from torchscope.records import Severity
from torchscope.rendering._report import emit, findings_table
from torchscope.syncs import detect_syncs
from torchscope.trace import build_inputs, trace_forward
from torchscope.tying import check_ties

if TYPE_CHECKING:
    from torch import nn

    from torchscope.records import Finding


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``check`` options: TARGET, example inputs, --format."""

    add_target_arguments(parser)
    add_input_arguments(parser)
    add_format_argument(parser)


def _static_checks(model: nn.Module, inputs: Any) -> list[Finding]:

    found = [*check_devices(model, inputs), *check_ties(model), *check_lazy(model)]
    return list(dict.fromkeys(found))  # check_devices repeats check_ties' tie-devices


def _traced_checks(model: nn.Module, inputs: tuple[Any, ...], mode: str,
                   notes: list[str]) -> list[Finding]:
    """One traced forward: unused parameters; in real mode under the sync detector."""

    model_meta = all(t.is_meta for t in model.parameters()) and any(True for _ in
                                                                   model.parameters())
    if mode == "auto":
        mode = "meta" if model_meta or all(t.is_meta for t in inputs) else "real"
    if mode != "real":
        result = trace_forward(model, inputs, mode=mode)
        notes.append(f"the forward ran in {mode} mode: syncs need a real forward (--mode real)")
        return list(result.findings)
    with detect_syncs() as syncs:
        result = trace_forward(model, inputs, mode="real")
    notes.append("syncs: one real forward under the detector"
                 + (" (no GPU: what would synchronize on one)" if syncs.include_cpu else ""))
    return [*result.findings, *syncs.findings()]


def _json(findings: list[Finding], notes: list[str], errors: int) -> str:
    import json

    rows = [{"code": f.code, "severity": f.severity.value, "message": f.message, "path": f.path,
             "hint": f.hint, "location": f.location} for f in findings]
    return json.dumps({"findings": rows, "notes": notes, "errors": errors,
                       "exit_code": 1 if errors else 0}, indent=2, ensure_ascii=False)


def run(args: argparse.Namespace) -> int:
    """Run the checks and print the findings; exit 1 when any is an error, else 0."""

    options = input_options(args)
    model = load_target(args)
    fmt = output_format(args)
    inputs = None
    if "input_size" in options:
        inputs = build_inputs(options["input_size"], options.get("dtypes"),
                              device=options.get("device"))
    findings = _static_checks(model, inputs)
    notes: list[str] = []
    if inputs is None:
        notes.append("no --input-size: no forward ran (no unused-parameter or sync checks)")
    elif any(f.code == "devices-input" for f in findings):
        notes.append("the forward stopped at a device mismatch: fix it to run the other checks")
    else:
        findings += _traced_checks(model, inputs, options.get("mode", "auto"), notes)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: order[f.severity])
    errors = sum(f.severity is Severity.ERROR for f in findings)
    if fmt == "json":
        emit(_json(findings, notes, errors), fmt="json")
        return 1 if errors else 0
    warnings = sum(f.severity is Severity.WARNING for f in findings)
    infos = len(findings) - errors - warnings
    name = type(model).__name__
    if findings:
        emit(findings_table(findings, fmt=fmt), fmt=fmt)
    summary = (f"{name}: {errors} error{'s' * (errors != 1)}, {warnings} warning"
               f"{'s' * (warnings != 1)}, {infos} info")
    emit("\n".join([*(f"note: {n}" for n in notes), summary]), fmt="text")
    return 1 if errors else 0
