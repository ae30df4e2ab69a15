"""Gradient flow after one backward: per parameter and per block, the gradient norm, its
ratio to the parameter's norm, the share of zeros and the parameters left without gradient."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from torchscope._torch import is_lazy, room_for_depth
from torchscope.errors import ArgumentError, ForwardError, InputSpecError, TorchscopeError
from torchscope.init._tree import as_float64, cycle_note, model_tree
from torchscope.records import BlockGradient, Finding, GradientReport, ParamGradient, Severity
from torchscope.trace import parse_device, state_guard
from torchscope.training._common import (
    LossFn,
    check_loss_fn,
    check_model,
    check_number,
    default_loss,
    grads_kept,
    owner_path,
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


def _norm(t: torch.Tensor) -> float | None:
    v = as_float64(t)
    return None if v is None else float(torch.linalg.vector_norm(v))


def _check_options(where: str, depth: object, vanishing: object,
                   exploding: object) -> tuple[int, float, float]:
    """The report options, or one error line naming the first bad one."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ArgumentError(
            f"{where}: depth = {depth!r:.40} ({type(depth).__name__}) is not an int; pass the "
            "number of path parts a block keeps, e.g. depth=2"
        )
    if depth < 1:
        raise InputSpecError(f"{where}: depth = {depth} must be at least 1")
    low = check_number(where, "vanishing", vanishing, example=f"{VANISHING:g}")
    high = check_number(where, "exploding", exploding, example=f"{EXPLODING:g}")
    return depth, low, high


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
    model = check_model(model, "gradient_report")
    check_number("gradient_report", "loss", 0.0 if loss is None else loss, example="0.5",
                 minimum=None)
    depth, vanishing, exploding = _check_options("gradient_report", depth, vanishing, exploding)
    tree = model_tree(model)
    notes = (*notes, *(n for n in cycle_note(tree) if n not in notes))
    rows: list[ParamGradient] = []
    blocks: dict[str, list[tuple[ParamGradient, float, float, int]]] = {}
    with torch.no_grad():
        for names in tree.aliases().values():
            p = tree.param(names[0])
            assert p is not None
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
            values = as_float64(g)
            if values is None:  # a gradient whose values cannot be read (a packed format)
                row = ParamGradient(name, _block(name, depth), shape, numel, True, None, pnorm,
                                    None, None, True)
                rows.append(row)
                blocks.setdefault(row.block, []).append((row, 0.0, 0.0, 0))
                continue
            finite = bool(torch.isfinite(values).all())
            gnorm = float(torch.linalg.vector_norm(values))
            zeros = int((values == 0).sum())
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


def watch_gradients(model: nn.Module, *, depth: int = 2, vanishing: float = VANISHING,
                    exploding: float = EXPLODING) -> AbstractContextManager[GradientWatch]:
    """Report the gradients of the user's own step: run the backward in the block; on exit
    the watch's ``report`` (and its attributes directly) hold the gradient flow of the
    ``.grad`` fields then. Nothing is changed: the user's gradients stay where the step put
    them (gradients accumulated before the block count too: zero them first). The options are
    checked when it is called, before the block runs.

    Raises:
        ArgumentError: ``depth`` is not an int, or a threshold is not a number.
        InputSpecError: ``model`` is not a module, ``depth`` is below 1 or a threshold is
            negative.

    >>> import torch, torchscope
    >>> model = torchscope.examples.MLP()
    >>> with watch_gradients(model) as g:
    ...     model(torch.ones(2, 20)).sum().backward()
    >>> [b.block for b in g.blocks]
    ['hidden', 'output']
    """
    model = check_model(model, "watch_gradients")
    depth, vanishing, exploding = _check_options("watch_gradients", depth, vanishing, exploding)
    return _watching(model, depth, vanishing, exploding)


@contextmanager
def _watching(model: nn.Module, depth: int, vanishing: float,
              exploding: float) -> Iterator[GradientWatch]:
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

    A model whose module graph has a cycle (a child holding its parent) runs as PyTorch runs
    it (its forward does not walk the tree); the edge back to the ancestor is not followed
    when naming parameters, and a note names it. TorchScript (scripted or traced) modules work:
    parameters are named without ``get_parameter``.

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
        ArgumentError: an option of the wrong type (``depth`` not an int, a threshold not a
            number, ``loss_fn`` not callable), before anything runs.
        InputSpecError: bad inputs, a model with meta or lazy parameters (checked before any
            input is built), or an output with nothing to backpropagate.
        ForwardError: the forward or backward raised.

    >>> import torch, torchscope
    >>> r = gradient_flow(torchscope.examples.MLP(), torch.ones(2, 20))
    >>> r.none_grads, r.findings
    ((), ())
    """
    model = check_model(model, "gradient_flow")
    depth, vanishing, exploding = _check_options("gradient_flow", depth, vanishing, exploding)
    check_loss_fn("gradient_flow", loss_fn)
    if device is not None:
        parse_device(device)
    tree = model_tree(model)
    params = tree.unique_params()
    if any(p.is_meta or is_lazy(p) for p in params):  # before any input is built
        raise InputSpecError(
            f"gradient_flow: {type(model).__name__} has meta or uninitialized (lazy) "
            "parameters: gradients need real values; materialize it first"
        )
    built = example_inputs is None and input_size is not None
    args, kwargs = resolve_inputs(
        "gradient_flow", example_inputs, example_kwargs, input_size, dtypes,
        step_device("gradient_flow", model, device) if built else None)
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
