"""Gradient flow after one backward: per parameter and per block, the gradient norm, its
ratio to the parameter's norm, the share of zeros and the parameters left without gradient."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from torchscope._torch import is_lazy, room_for_depth
from torchscope.errors import ForwardError, InputSpecError, TorchscopeError
from torchscope.records import BlockGradient, Finding, GradientReport, ParamGradient, Severity
from torchscope.trace import state_guard
from torchscope.training._common import (
    LossFn,
    check_model,
    default_loss,
    grads_kept,
    owner_path,
    param_aliases,
    resolve_inputs,
    step_device,
)

__all__ = ["GradientWatch", "gradient_flow", "gradient_report", "watch_gradients"]

#: Default thresholds on a block's gradient norm (all its values together).
VANISHING = 1e-7
EXPLODING = 1e3


def _block(name: str, depth: int) -> str:
    path = owner_path(name)
    if not path:
        return "(root)"
    return ".".join(path.split(".")[:depth])


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.detach().double()))


def gradient_report(model: nn.Module, *, depth: int = 2, vanishing: float = VANISHING,
                    exploding: float = EXPLODING, loss: float | None = None,
                    notes: tuple[str, ...] = ()) -> GradientReport:
    """The :class:`~torchscope.records.GradientReport` of the ``.grad`` fields ``model`` holds
    now (read only: nothing is changed).

    >>> import torch, torchscope
    >>> model = torchscope.examples.MLP()
    >>> model(torch.ones(2, 20)).sum().backward()
    >>> gradient_report(model).none_grads
    ()
    """
    aliases = param_aliases(model)
    rows: list[ParamGradient] = []
    blocks: dict[str, list[tuple[ParamGradient, float, float, int]]] = {}
    with torch.no_grad():
        for _, names in aliases.items():
            p = model.get_parameter(names[0])
            if not p.requires_grad:
                continue
            name = names[0]
            unknown = p.is_meta or is_lazy(p)
            shape = () if is_lazy(p) else tuple(int(d) for d in p.shape)
            numel = 0 if is_lazy(p) else p.numel()
            g = p.grad
            pnorm = None if unknown else _norm(p)
            if g is None or g.is_meta:
                row = ParamGradient(name, _block(name, depth), shape, numel, g is not None,
                                    None, pnorm, None, None, True)
                rows.append(row)
                blocks.setdefault(row.block, []).append((row, 0.0, 0.0, 0))
                continue
            finite = bool(torch.isfinite(g).all())
            gnorm = _norm(g)
            zeros = int((g == 0).sum())
            row = ParamGradient(
                name, _block(name, depth), shape, numel, True, gnorm, pnorm,
                gnorm / pnorm if pnorm else None, zeros / numel if numel else None, finite)
            rows.append(row)
            blocks.setdefault(row.block, []).append((row, gnorm ** 2, (pnorm or 0.0) ** 2,
                                                     zeros))
    block_rows = []
    for block, items in blocks.items():
        with_grad = [i for i in items if i[0].grad_norm is not None]
        none = len(items) - len(with_grad)
        if with_grad:
            gn = math.sqrt(sum(i[1] for i in with_grad))
            pn = math.sqrt(sum(i[2] for i in with_grad))
            n = sum(i[0].numel for i in with_grad)
            zs = sum(i[3] for i in with_grad) / n if n else None
            block_rows.append(BlockGradient(block, len(items), none, gn, pn,
                                            gn / pn if pn else None, zs,
                                            all(i[0].finite for i in with_grad)))
        else:
            block_rows.append(BlockGradient(block, len(items), none, None, None, None, None,
                                            True))
    findings = _findings(rows, block_rows, vanishing, exploding)
    return GradientReport(model_type=type(model).__name__, params=tuple(rows),
                          blocks=tuple(block_rows), findings=findings, vanishing=vanishing,
                          exploding=exploding, loss=loss, notes=notes)


def _findings(rows: list[ParamGradient], blocks: list[BlockGradient], vanishing: float,
              exploding: float) -> tuple[Finding, ...]:
    out: list[Finding] = []
    bad = [r.name for r in rows if r.has_grad and not r.finite]
    if bad:
        out.append(Finding(
            code="gradients-nonfinite", severity=Severity.ERROR,
            message=f"{len(bad)} gradients hold NaN or Inf: {', '.join(bad[:6])}"
                    + (" …" if len(bad) > 6 else ""),
            path=bad[0],
            hint="find the first one with torchscope.find_nonfinite(model, inputs) (CLI: check "
                 "--nonfinite)"))
    for b in blocks:
        if b.grad_norm is None or not b.finite:
            continue
        if b.grad_norm < vanishing:
            out.append(Finding(
                code="gradients-vanishing", severity=Severity.WARNING,
                message=f"{b.block}: gradient norm {b.grad_norm:.3g} is below {vanishing:g}"
                        + (" (all zero)" if b.grad_norm == 0 else "")
                        + ": its parameters will barely change",
                path=b.block,
                hint="check for saturated activations (sigmoid/tanh), dead ReLUs, a too deep "
                     "stack without residuals or normalization, or a detached loss term"))
        elif b.grad_norm > exploding:
            out.append(Finding(
                code="gradients-exploding", severity=Severity.WARNING,
                message=f"{b.block}: gradient norm {b.grad_norm:.3g} is above {exploding:g}",
                path=b.block,
                hint="clip gradients (torch.nn.utils.clip_grad_norm_), lower the learning "
                     "rate, or normalize the inputs"))
    none = [r.name for r in rows if not r.has_grad]
    if none:
        out.append(Finding(
            code="gradients-none", severity=Severity.WARNING,
            message=f"{len(none)} trainable parameters have no gradient (.grad is None): "
                    + ", ".join(none[:6]) + (" …" if len(none) > 6 else ""),
            path=owner_path(none[0]),
            hint="see torchscope.find_unused_parameters for why; remove or freeze them"))
    return tuple(out)


class GradientWatch:
    """What :func:`watch_gradients` yields: ``report`` is set when the block exits."""

    def __init__(self) -> None:
        self.report: GradientReport | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "report":  # pragma: no cover - set in __init__
            raise AttributeError(name)
        if self.report is None:
            raise TorchscopeError(
                f"watch_gradients: .{name} is read after the with-block ends; run the backward "
                "inside the block and read the report after it"
            )
        return getattr(self.report, name)


@contextmanager
def watch_gradients(model: nn.Module, *, depth: int = 2, vanishing: float = VANISHING,
                    exploding: float = EXPLODING) -> Iterator[GradientWatch]:
    """Report the gradients of the user's own step: run the backward in the block; on exit
    the watch's ``report`` (and its attributes directly) hold the gradient flow of the
    ``.grad`` fields then. Nothing is changed: the user's gradients stay where the step put
    them (gradients accumulated before the block count too: zero them first).

    >>> import torch, torchscope
    >>> model = torchscope.examples.MLP()
    >>> with watch_gradients(model) as g:
    ...     model(torch.ones(2, 20)).sum().backward()
    >>> [b.block for b in g.blocks]
    ['hidden', 'output']
    """
    model = check_model(model, "watch_gradients")
    watch = GradientWatch()
    yield watch
    watch.report = gradient_report(model, depth=depth, vanishing=vanishing, exploding=exploding)


@room_for_depth
def gradient_flow(
    model: nn.Module,
    example_inputs: object = None,
    *,
    example_kwargs: object = None,
    input_size: object = None,
    dtypes: object = None,
    device: object = None,
    loss_fn: LossFn | None = None,
    depth: int = 2,
    vanishing: float = VANISHING,
    exploding: float = EXPLODING,
) -> GradientReport:
    """One real forward and backward of ``model`` and the gradient flow it gave.

    The step runs on the model itself under :func:`torchscope.state_guard`; each
    parameter's ``.grad`` is set aside first and the same object put back after, so the
    model's gradients are as they were.

    Args:
        model: the module.
        example_inputs: a tensor or a tuple of positional inputs.
        example_kwargs: keyword inputs.
        input_size: instead of tensors, one shape per input (zeros).
        dtypes: one dtype per size.
        device: where built inputs go (default: where the model is).
        loss_fn: ``loss_fn(output) -> scalar``; default: the sum of every output tensor.
        depth: blocks are module paths cut to this many parts (``transformer.h``).
        vanishing: a block whose gradient norm is below this is reported.
        exploding: a block whose gradient norm is above this is reported.

    Returns:
        A :class:`~torchscope.records.GradientReport`.

    Raises:
        InputSpecError: bad inputs, a model with meta or lazy parameters (checked before any
            input is built), or an output with nothing to backpropagate.
        ForwardError: the forward or backward raised.

    >>> import torch, torchscope
    >>> r = gradient_flow(torchscope.examples.MLP(), torch.ones(2, 20))
    >>> r.none_grads, r.findings
    ((), ())
    """
    model = check_model(model, "gradient_flow")
    if depth < 1:
        raise InputSpecError(f"gradient_flow: depth = {depth} must be at least 1")
    if any(p.is_meta or is_lazy(p) for p in model.parameters()):  # before any input is built
        raise InputSpecError(
            f"gradient_flow: {type(model).__name__} has meta or uninitialized (lazy) "
            "parameters: gradients need real values; materialize it first"
        )
    built = example_inputs is None and input_size is not None
    args, kwargs = resolve_inputs(
        "gradient_flow", example_inputs, example_kwargs, input_size, dtypes,
        step_device("gradient_flow", model, device) if built else None)
    params = list({id(p): p for p in model.parameters()}.values())
    with state_guard(model), grads_kept(params):
        try:
            with torch.enable_grad():
                output = model(*args, **kwargs)
                loss = loss_fn(output) if loss_fn is not None else default_loss(output)
                del output
                loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        except TorchscopeError:
            raise
        except Exception as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ForwardError(
                f"the step of {type(model).__name__} raised {type(err).__name__}: {text[:160]}"
                "; check that the example inputs match what the model expects, or pass a "
                "loss_fn"
            ) from err
        value = float(loss.detach())
        return gradient_report(model, depth=depth, vanishing=vanishing, exploding=exploding,
                               loss=value,
                               notes=("one real forward and backward on the model; its .grad "
                                      "fields were put back",))
