"""The first NaN or infinity of one training step: the module call and the op, with the user's
``file:line``, whose output (or, in backward, whose gradient) is non-finite while its inputs
were finite."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import _disable_current_modes

from torchscope._torch import is_lazy, room_for_depth
from torchscope.errors import ForwardError, InputSpecError
from torchscope.init._tree import ModelTree, cycle_note, model_tree
from torchscope.records import Finding, NonfiniteReport, Severity, TensorStats
from torchscope.trace import parse_device, shallow_copy, state_guard, tensors_in
from torchscope.training._common import (
    LossFn,
    check_flag,
    check_loss_fn,
    check_model,
    default_loss,
    grads_kept,
    resolve_inputs,
    stats_of,
    step_device,
    user_location,
)

__all__ = ["find_nonfinite"]


def _float_tensors(value: object) -> list[torch.Tensor]:
    return [t for t in tensors_in(value)
            if (t.is_floating_point() or t.is_complex()) and not t.is_meta]


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    if not tensors:
        return True
    # reads only: below any dispatch mode (the state guard's copy-on-write need not see them)
    with torch.no_grad(), _disable_current_modes():
        return all(_finite(t) for t in tensors)


#: dtypes whose ``sum`` and ``isfinite`` run everywhere; other floats are upcast first
_SUMMED = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64,
                     torch.complex64, torch.complex128})


def _finite(t: torch.Tensor) -> bool:
    """One reduction: NaN and Inf survive a sum; a sum that overflows is checked in full.

    Every dtype torch has is handled: integer and bool tensors cannot hold NaN or Inf; float8,
    ``complex32`` and other floats without a ``sum`` kernel are upcast to float32 (complex64)
    first; a packed format that cannot be converted (``float4_e2m1fn_x2``, which has no NaN or
    Inf) counts as finite.

    >>> _finite(torch.full((2,), float("nan")).to(torch.float8_e4m3fn))
    False
    """
    if t.numel() == 0 or not (t.is_floating_point() or t.is_complex()):
        return True
    if t.dtype not in _SUMMED:
        try:
            t = t.to(torch.complex64 if t.is_complex() else torch.float32)
        except (RuntimeError, NotImplementedError, TypeError):
            return True
    total = t.sum()
    if total.is_complex():
        total = total.abs()
    return math.isfinite(float(total)) or bool(torch.isfinite(t).all())


@dataclass
class _Site:
    phase: str
    module: str | None
    op: str
    location: str | None
    inputs: tuple[TensorStats, ...]
    outputs: tuple[TensorStats, ...]
    inputs_finite: bool
    call: int | None = None
    module_inputs: tuple[TensorStats, ...] = ()
    module_outputs: tuple[TensorStats, ...] = ()
    tensors: tuple[str, ...] = ()


@dataclass
class _State:
    paths: dict[int, str]
    stack: list[tuple[int, str, Any]] = field(default_factory=list)
    calls: int = 0
    site: _Site | None = None
    nodes: dict[int, tuple[str | None, str, str | None]] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    if name.startswith("__") and name.endswith("__"):
        name = name.strip("_")
    return name


class _Watch(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Checks the output of every torch function until the first non-finite one; records the
    autograd node each output was made by (for backward locations)."""

    def __init__(self, state: _State) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.state = state

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        state = self.state
        outs = _float_tensors(out)
        if not outs:
            return out
        where = state.stack[-1][1] if state.stack else None
        location: str | None = None
        for t in outs:
            node = t.grad_fn
            if node is not None and id(node) not in state.nodes:
                if location is None:
                    location = user_location()
                state.nodes[id(node)] = (where, _op_name(func), location)
                state.keep.append(node)
        if state.site is None and not _all_finite(outs):
            ins = _float_tensors((args, kwargs))
            state.site = _Site(
                phase="forward", module=where, op=_op_name(func),
                location=location or user_location(),
                inputs=tuple(stats_of(t) for t in ins),
                outputs=tuple(stats_of(t) for t in outs), inputs_finite=_all_finite(ins),
                call=state.stack[-1][0] if state.stack else None,
                module_inputs=tuple(stats_of(t) for t in _float_tensors(state.stack[-1][2]))
                if state.stack else (),
            )
        return out


@contextlib.contextmanager
def _module_stack(state: _State) -> Any:
    def pre(module: nn.Module, args: Any) -> None:
        path = state.paths.get(id(module))
        if path is not None:
            state.stack.append((state.calls, path, args))
            state.calls += 1

    def post(module: nn.Module, args: Any, output: Any) -> None:
        path = state.paths.get(id(module))
        if path is None or not state.stack:
            return
        while state.stack and state.stack[-1][1] != path:
            state.stack.pop()
        if not state.stack:
            return
        call = state.stack.pop()[0]
        site = state.site
        if site is not None and site.call == call and not site.module_outputs:
            site.module_outputs = tuple(stats_of(t) for t in _float_tensors(output))

    h1 = _module_mod.register_module_forward_pre_hook(pre)
    h2 = _module_mod.register_module_forward_hook(post)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


def _backward_hooks(state: _State, root: Any) -> list[Any]:
    handles = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(n for n, _ in node.next_functions)
        if hasattr(node, "variable"):
            continue

        def hook(grad_inputs: Any, grad_outputs: Any, node: Any = node) -> None:
            if state.site is not None:
                return
            gin = [g for g in grad_inputs if isinstance(g, torch.Tensor)]
            if _all_finite(gin):
                return
            gout = [g for g in grad_outputs if isinstance(g, torch.Tensor)]
            module, op, location = state.nodes.get(id(node), (None, "", None))
            state.site = _Site(
                phase="backward", module=module, op=node.name(), location=location,
                inputs=tuple(stats_of(g) for g in gout),
                outputs=tuple(stats_of(g) for g in gin), inputs_finite=_all_finite(gout),
                tensors=(f"gradient of {op}",) if op else (),
            )

        handles.append(node.register_hook(hook))
    return handles


def _bad_tensors(tree: ModelTree) -> tuple[str, ...]:
    out = []
    with torch.no_grad():
        for name, t in (*tree.params, *tree.buffers):
            if (t.is_floating_point() or t.is_complex()) and not t.is_meta and not is_lazy(t) \
                    and not _finite(t):
                out.append(name)
    return tuple(out)


def _finding(site: _Site, model_type: str, module_type: str | None) -> Finding:
    if site.phase == "parameters":
        names = ", ".join(site.tensors[:6]) + (" …" if len(site.tensors) > 6 else "")
        return Finding(
            code="nonfinite", severity=Severity.ERROR,
            message=f"{len(site.tensors)} parameter/buffer tensors of {model_type} already hold "
                    f"NaN or Inf before any step: {names}",
            path=site.tensors[0] if site.tensors else None,
            hint="re-initialize or reload them; find the step that wrote them with "
                 "find_nonfinite on the inputs of that step")
    stats = site.outputs
    kind = "NaN" if any(s.nan for s in stats) else "Inf"
    where = site.module if site.module is not None else None
    mod = f"{where or '(root)'} ({module_type})" if where is not None else "outside any module"
    if site.phase == "forward":
        what = (f"first {kind} of the forward: {site.op} in {mod} made {kind} from "
                + ("finite inputs" if site.inputs_finite else "inputs that already held "
                   "NaN/Inf (made where torch functions are not seen)"))
        hint = ("guard the operation (clamp the denominator, add an eps, use log1p/"
                "logsumexp, check the input range), or lower the learning rate if the "
                "inputs grew")
    else:
        what = (f"forward finite; first {kind} gradient in the backward: {site.op} "
                f"(of {mod}) made {kind} in a gradient from finite incoming gradients")
        hint = ("the op's derivative is infinite at these values (sqrt or pow at 0, log at 0, "
                "division by ~0): add an eps or clamp before it")
    return Finding(code="nonfinite", severity=Severity.ERROR, message=what, path=where,
                   hint=hint, location=site.location)


@room_for_depth
def find_nonfinite(
    model: nn.Module,
    example_inputs: object = None,
    *,
    example_kwargs: object = None,
    input_size: object = None,
    dtypes: object = None,
    device: object = None,
    backward: bool = True,
    loss_fn: LossFn | None = None,
) -> NonfiniteReport:
    """Run one real step and report where the first NaN or infinity appeared.

    The forward runs under a ``TorchFunctionMode`` that checks the output of every torch
    function (``F.linear``, ``x / y``, ``torch.log``…) until the first non-finite one, and
    names the innermost module call running it and the user's ``file:line``. With
    ``backward=True`` and a finite forward, ``loss_fn(output)`` (default: the sum of every
    output tensor) is backpropagated with a hook on every autograd node: the first node whose
    outgoing gradient is non-finite while its incoming gradient was finite is reported with
    the line of its forward op. Parameters or buffers already non-finite are reported first.

    The step runs on the model itself (no copy, no extra parameter memory) under
    :func:`torchscope.state_guard` (hooks, training flags, buffers, RNG, grad mode restored);
    each parameter's ``.grad`` is set aside and the very same object put back afterwards. A
    lazy model runs as a copy sharing its initialized tensors.

    Every dtype is checked: integer and bool tensors cannot hold NaN, float8 and other floats
    without a ``sum`` kernel are upcast to float32 for the check. A model whose module graph
    has a cycle (a child holding its parent) runs as PyTorch runs it: its forward does not walk
    the tree; the edge back to the ancestor is not followed when naming modules and tensors,
    and a note names it. TorchScript modules run too (ops inside scripted code are not seen
    one by one: the first non-finite value is reported at the scripted call).

    Args:
        model: the module.
        example_inputs: a tensor or a tuple of positional inputs (real values).
        example_kwargs: keyword inputs.
        input_size: instead of tensors, one shape per input (zeros).
        dtypes: one dtype per size.
        device: where built inputs go (default: where the model is).
        backward: also search the backward.
        loss_fn: ``loss_fn(output) -> scalar``; default: the sum of every output tensor.

    Returns:
        A :class:`~torchscope.records.NonfiniteReport` (``found`` false when all was finite).

    Raises:
        ArgumentError: ``backward`` is not a bool or ``loss_fn`` is not callable.
        InputSpecError: bad inputs, or a model with tensors on the meta device (checked before
            any input is built).
        ForwardError: the forward or backward raised.

    >>> import torch
    >>> from torch import nn
    >>> class Norm(nn.Module):
    ...     def forward(self, x):
    ...         return x / x.norm()
    >>> r = find_nonfinite(nn.Sequential(nn.Linear(4, 4), Norm()), torch.zeros(1, 4),
    ...                    backward=False)
    >>> r.found
    False
    >>> r = find_nonfinite(nn.Sequential(Norm(), nn.Linear(4, 4)), torch.zeros(1, 4))
    >>> r.phase, r.module, r.op
    ('forward', '0', 'div')
    """
    model = check_model(model, "find_nonfinite")
    check_flag("find_nonfinite", "backward", backward)
    check_loss_fn("find_nonfinite", loss_fn)
    if device is not None:
        parse_device(device)
    model_type = type(model).__name__
    tree = model_tree(model)
    on_meta: dict[int, str] = {}
    for name, t in (*tree.params, *tree.buffers):
        if t.is_meta and not is_lazy(t):
            on_meta.setdefault(id(t), name)
    meta = list(on_meta.values())
    if meta:  # before any input is built
        raise InputSpecError(
            f"find_nonfinite: {model_type} has {len(meta)} parameter/buffer tensors on the meta "
            f"device ({', '.join(meta[:3])}{' …' if len(meta) > 3 else ''}): one real step needs "
            "their values; materialize it first (model.to_empty(device=...) and initialize, or "
            "load its weights)"
        )
    built = example_inputs is None and input_size is not None
    args, kwargs = resolve_inputs(
        "find_nonfinite", example_inputs, example_kwargs, input_size, dtypes,
        step_device("find_nonfinite", model, device) if built else None)
    notes = ["ran one real step on the model itself; .grad fields, buffers, hooks, training "
             "flags, RNG and grad mode restored" if backward else
             "ran one real forward on the model itself; buffers, hooks, training flags, RNG "
             "and grad mode restored", *cycle_note(tree)]
    bad = _bad_tensors(tree)
    if bad:
        site = _Site(phase="parameters", module=None, op="", location=None, inputs=(),
                     outputs=(), inputs_finite=False, tensors=bad)
        return _report(tree, model_type, site, backward, notes)
    bad_inputs = [t for t in _float_tensors((args, kwargs)) if not _all_finite([t])]
    if bad_inputs:
        notes.append(f"{len(bad_inputs)} example input tensor(s) already hold NaN/Inf")
    target, target_tree = model, tree
    if any(is_lazy(t) for _, t in (*tree.params, *tree.buffers)):
        target = shallow_copy(model)
        target_tree = model_tree(target)
    state = _State(paths={id(m): p for p, m in target_tree.modules})
    params = tree.unique_params()
    try:
        with state_guard(model), grads_kept(params), contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad() if backward else torch.no_grad())
            stack.enter_context(_module_stack(state))
            with _Watch(state):
                output = target(*args, **kwargs)
                loss = None
                if backward and state.site is None:
                    loss = loss_fn(output) if loss_fn is not None else default_loss(output)
            del output
            if loss is not None and state.site is None and loss.grad_fn is not None:
                handles = _backward_hooks(state, loss.grad_fn)
                try:
                    loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
                finally:
                    for h in handles:
                        h.remove()
            elif loss is not None and state.site is None:
                notes.append("the loss does not depend on any parameter: no backward ran")
            state.keep.clear()
            state.nodes.clear()
    except ForwardError:
        raise
    except Exception as err:
        if isinstance(err, (TypeError, ValueError)) and "InputSpec" in type(err).__name__:
            raise
        from torchscope.errors import TorchscopeError

        if isinstance(err, TorchscopeError):
            raise
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ForwardError(
            f"the step of {model_type} raised {type(err).__name__}: {text[:160]}; check that "
            "the example inputs match what the model expects, or pass a loss_fn"
        ) from err
    return _report(target_tree, model_type, state.site, backward, notes)


def _report(tree: ModelTree, model_type: str, site: _Site | None, backward: bool,
            notes: list[str]) -> NonfiniteReport:
    if site is None:
        return NonfiniteReport(model_type=model_type, phase=None, module=None,
                               module_type=None, op=None, location=None, inputs=(),
                               outputs=(), module_inputs=(), module_outputs=(), tensors=(),
                               backward=backward, findings=(), notes=tuple(notes))
    module_type = None
    if site.module is not None:
        owner = tree.module(site.module)
        module_type = type(owner).__name__ if owner is not None else None
    return NonfiniteReport(
        model_type=model_type, phase=site.phase, module=site.module, module_type=module_type,
        op=site.op or None, location=site.location, inputs=site.inputs, outputs=site.outputs,
        module_inputs=site.module_inputs, module_outputs=site.module_outputs,
        tensors=site.tensors, backward=backward,
        findings=(_finding(site, model_type, module_type),), notes=tuple(notes))
