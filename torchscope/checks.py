"""``torchscope.check``: every check torchscope has, on one model, as one
:class:`~torchscope.records.CheckResult` — exactly what ``python -m torchscope check`` prints.

Static checks always run (devices, ties, lazy layers). With example inputs one forward runs
with gradients enabled and no backward: the parameters the outputs' autograd graph does not
reach (DistributedDataParallel's definition of unused), and in real mode the host-device
synchronizations of that forward. ``backward=True`` adds one real backward and its gradient
flow; ``nonfinite=True`` the search for the first NaN/Inf of one step.

>>> import torchscope
>>> [f.code for f in torchscope.check(torchscope.examples.SharedMLP()).findings]
['tie-safetensors']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from torch import nn

from torchscope._torch import room_for_depth
from torchscope.devices import check_devices
from torchscope.errors import ArgumentError, ForwardError, InputSpecError
from torchscope.inspect import summarize
from torchscope.records import CheckResult, Finding, Severity
from torchscope.syncs import detect_syncs
from torchscope.trace import MODES, Mode, input_plan, parse_device, tensors_in
from torchscope.training import find_nonfinite, gradient_flow, unused_in_forward
from torchscope.training._common import LossFn, SizedInputs, check_model, resolve_inputs

__all__ = ["check"]

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _static(model: nn.Module, inputs: Any, mode: str = "real",
            sizes: tuple[Any, Any, Any] | None = None,
            kwargs: dict[str, Any] | None = None) -> list[Finding]:
    # meta/fake: the input check runs on a fake copy that keeps each tensor's device (no real
    # forward of the model); ``sizes``: (input_size, dtypes, device) to build fake inputs from
    device_mode = "fake" if mode in ("meta", "fake") else "real"
    if sizes is not None:
        devices = check_devices(model, input_size=sizes[0], dtypes=sizes[1], device=sizes[2],
                                mode=device_mode, example_kwargs=kwargs or None)
    else:
        devices = check_devices(model, inputs, mode=device_mode, example_kwargs=kwargs or None)
    # ties, lazy layers and module cycles from the one walk of a static summary
    found = [*devices, *summarize(model).findings]
    return list(dict.fromkeys(found))  # check_devices repeats the tie-devices finding


@room_for_depth
def check(
    model: nn.Module,
    example_inputs: object = None,
    *,
    example_kwargs: object = None,
    input_size: object = None,
    dtypes: object = None,
    device: object = None,
    mode: Mode = "auto",
    backward: bool = False,
    nonfinite: bool = False,
    loss_fn: LossFn | None = None,
) -> CheckResult:
    """Run every check on ``model`` and return the findings, errors first.

    Without inputs: devices, tied tensors, lazy layers. With inputs (tensors or
    ``input_size``): one forward with gradients enabled and no backward finds the trainable
    parameters that get no gradient (``unused-parameters``); when that forward is real it runs
    under the sync detector (``sync``). ``mode="auto"`` runs real for given or built tensors
    (meta for a model on meta); ``meta``/``fake`` need no memory but cannot see syncs. A
    device mismatch between inputs and model stops before the forward.

    Args:
        model: the module.
        example_inputs: a tensor or a tuple of positional inputs.
        example_kwargs: keyword inputs.
        input_size: instead of tensors, one shape per input (zeros).
        dtypes: one dtype per size (``"long"`` for token ids).
        device: where built inputs go (the model is never moved).
        mode: ``"auto"``, ``"real"``, ``"meta"`` or ``"fake"`` for the forward.
        backward: one real backward too: gradient flow findings, and parameters without
            gradient become errors (a training step under DistributedDataParallel would fail).
        nonfinite: search one real step for the first NaN/Inf.
        loss_fn: ``loss_fn(output) -> scalar`` for the backward; default: every output.

    Returns:
        A :class:`~torchscope.records.CheckResult`.

    Raises:
        InputSpecError: bad inputs or mode.
        ForwardError: the forward raised.

    >>> import torchscope
    >>> r = torchscope.check(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> r.mode, r.ok, [f.code for f in r.findings]
    ('real', True, [])
    """
    model = check_model(model, "check")
    if mode not in MODES:
        raise InputSpecError(f"check: mode = {mode!r} is not one of {', '.join(MODES)}")
    for name, flag in (("backward", backward), ("nonfinite", nonfinite)):
        if not isinstance(flag, bool):
            raise ArgumentError(f"check: {name} = {flag!r} is not True or False; pass a bool")
    inputs: tuple[Any, ...] | SizedInputs | None = None
    kwargs: dict[str, Any] = {}
    sized = example_inputs is None and input_size is not None
    if sized:  # built for each forward as its mode needs: on meta, fake, or real for real
        if example_kwargs:
            _, kwargs = resolve_inputs("check", None, example_kwargs, None, None, None)
        inputs = SizedInputs(input_plan(input_size, dtypes),
                             parse_device(device) if device is not None else None)
    elif example_inputs is not None or example_kwargs:
        inputs, kwargs = resolve_inputs("check", example_inputs, example_kwargs, None, None,
                                        device)
    notes: list[str] = []
    try:
        on_meta = isinstance(inputs, SizedInputs) and inputs.where(model).type == "meta"
        findings = _static(model, None if sized else inputs, "fake" if on_meta else mode,
                           sizes=(input_size, dtypes, device) if sized else None, kwargs=kwargs)
    except ForwardError as err:  # the model cannot run these inputs: that is what check found
        findings = [*_static(model, None), _forward_failed(err)]
        inputs = None
        notes.append("the forward raised, so no other check that needs a forward ran")
    ran: str | None = None
    gradients = None
    nonfinite_report = None
    if inputs is None and not any(f.code == "forward-failed" for f in findings):
        notes.append("no --input-size: no forward ran (no unused-parameter or sync checks)")
        if backward or nonfinite:
            notes.append("--backward and --nonfinite need example inputs")
    elif any(f.code == "devices-input" for f in findings):
        notes.append("the forward stopped at a device mismatch: fix it to run the other checks")
    elif inputs is not None:
        try:
            ran, traced = _forward_checks(model, inputs, kwargs, mode, backward, loss_fn, notes)
        except ForwardError as err:
            findings.append(_forward_failed(err))
            findings.sort(key=lambda f: _ORDER[f.severity])
            return CheckResult(model_type=type(model).__name__, findings=tuple(findings),
                               notes=(*notes, "the forward raised, so no other check that "
                                      "needs a forward ran"), mode=None, backward=backward)
        findings += traced
        if (backward or nonfinite) and isinstance(inputs, SizedInputs):
            inputs = inputs.build(inputs.where(model))  # a real backward needs real inputs
        if backward:
            gradients = gradient_flow(model, inputs, example_kwargs=kwargs, loss_fn=loss_fn)
            unused = any(f.code == "unused-parameters" for f in findings)
            findings += [f for f in gradients.findings
                         if not (unused and f.code == "gradients-none")]
            notes.append("one real backward: gradient flow (the model's .grad fields were put "
                         "back)" + ("; the inputs are zeros, so weights that multiply them get "
                                    "zero gradients: pass real inputs for meaningful norms"
                                    if example_inputs is None else ""))
        if nonfinite:
            nonfinite_report = find_nonfinite(model, inputs, example_kwargs=kwargs,
                                              loss_fn=loss_fn)
            findings += nonfinite_report.findings
            if not nonfinite_report.found:
                notes.append("no NaN or Inf in one real forward and backward")
    findings.sort(key=lambda f: _ORDER[f.severity])
    return CheckResult(model_type=type(model).__name__, findings=tuple(findings),
                       notes=tuple(notes), mode=ran, backward=backward, gradients=gradients,
                       nonfinite=nonfinite_report)


def _forward_checks(model: nn.Module, inputs: tuple[Any, ...] | SizedInputs,
                    kwargs: dict[str, Any],
                    mode: Mode, backward: bool, loss_fn: LossFn | None,
                    notes: list[str]) -> tuple[str, list[Finding]]:
    """The forward with gradients: unused parameters, and syncs when it is real."""
    params = list(model.parameters())
    model_meta = bool(params) and all(t.is_meta for t in params)
    if mode == "auto":
        tensors = list(tensors_in((inputs, kwargs)))
        mode = "meta" if model_meta or (tensors and all(t.is_meta for t in tensors)) else "real"
    syncs = detect_syncs()

    def wrap(current: str) -> AbstractContextManager[Any] | None:
        return _entered(syncs) if current == "real" else None

    severity = Severity.ERROR if backward else Severity.WARNING
    report = unused_in_forward(model, inputs, kwargs, mode=mode, loss_fn=loss_fn, wrap=wrap,
                               severity=severity)
    notes.extend(report.notes)
    if report.mode != "real":
        notes.append(f"the forward ran in {report.mode} mode: syncs need a real forward "
                     "(--mode real)")
        return report.mode, list(report.findings)
    notes.append("syncs: one real forward under the detector"
                 + (" (no GPU: what would synchronize on one)" if syncs.include_cpu else ""))
    return "real", [*report.findings, *syncs.findings()]


def _forward_failed(err: ForwardError) -> Finding:
    """The forward raised on the example inputs: an error finding (exit 1), not a usage error."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return Finding(
        code="forward-failed", severity=Severity.ERROR, message=first, path=None,
        hint="fix the model or the example inputs (shapes, dtypes, devices); every check that "
        "needs a forward runs once it succeeds",
    )


@contextmanager
def _entered(syncs: Any) -> Iterator[None]:
    with syncs:
        yield
