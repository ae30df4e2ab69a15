"""Trainable parameters that get no gradient, by DistributedDataParallel's own definition: the
parameters whose ``AccumulateGrad`` node the outputs' autograd graph does not reach."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.overrides import TorchFunctionMode

from torchscope._torch import is_lazy, room_for_depth
from torchscope.errors import ArgumentError, ForwardError, InputSpecError
from torchscope.init._tree import ModelTree, cycle_note, model_tree
from torchscope.records import Finding, Severity, UnusedParam, UnusedReason, UnusedReport
from torchscope.trace import (
    Mode,
    copy_to_meta,
    fake_copy,
    input_plan,
    map_tensors,
    shallow_copy,
    state_guard,
)
from torchscope.training._common import (
    LossFn,
    SizedInputs,
    check_loss_fn,
    check_model,
    output_tensors,
    owner_path,
    resolve_inputs,
)

__all__ = ["find_unused_parameters", "unused_in_forward"]

_MODES = ("auto", "meta", "fake", "real")

_DETACH = frozenset({torch.Tensor.detach, torch.detach, torch.Tensor.detach_})

_HINTS = {
    UnusedReason.NOT_CALLED: "remove the module, or freeze it (requires_grad_(False))",
    UnusedReason.NOT_USED: "remove the parameters, or freeze them (requires_grad_(False))",
    UnusedReason.OUTPUT_UNUSED: "use the module's output in the loss, remove the module, or "
    "freeze it (requires_grad_(False))",
    UnusedReason.DETACHED: "drop the .detach() if the branch should learn, else freeze it "
    "(requires_grad_(False))",
    UnusedReason.NO_GRAD: "it runs under torch.no_grad(): freeze it (requires_grad_(False)) or "
    "run it with gradients",
}
_DDP = ("; DistributedDataParallel(find_unused_parameters=False) fails at the second step "
        "otherwise (or pass find_unused_parameters=True)")


class _Usage(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Records which parameters each torch function saw (with or without grad mode) and the
    autograd nodes of tensors that were detached."""

    def __init__(self, params: set[int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.params = params
        self.with_grad: set[int] = set()
        self.without_grad: set[int] = set()
        self.detached: list[Any] = []

    def _see(self, value: object, grad: bool, depth: int = 0) -> None:
        if isinstance(value, torch.Tensor):
            if id(value) in self.params:
                (self.with_grad if grad else self.without_grad).add(id(value))
        elif isinstance(value, (list, tuple)) and depth < 2:
            for v in value:
                self._see(v, grad, depth + 1)

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        grad = torch.is_grad_enabled()
        for a in args:
            self._see(a, grad)
        for a in kwargs.values():
            self._see(a, grad)
        if func in _DETACH and args and isinstance(args[0], torch.Tensor):
            node = args[0].grad_fn
            if node is not None:
                self.detached.append(node)
        return func(*args, **kwargs)


def _reached(roots: list[Any]) -> set[int]:
    """``id`` of every leaf tensor whose ``AccumulateGrad`` node the graph from ``roots``
    reaches."""
    out: set[int] = set()
    seen: set[int] = set()
    stack = [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            out.add(id(variable))
        for nxt, _ in node.next_functions:
            if nxt is not None and id(nxt) not in seen:
                stack.append(nxt)
    return out


@contextlib.contextmanager
def _called_modules() -> Iterator[set[int]]:
    called: set[int] = set()

    def pre(module: nn.Module, args: Any) -> None:
        called.add(id(module))

    handle = _module_mod.register_module_forward_pre_hook(pre)
    try:
        yield called
    finally:
        handle.remove()


def _target(model: nn.Module, mode: str, args: tuple[Any, ...] | SizedInputs,
            kwargs: dict[str, Any], stack: contextlib.ExitStack
            ) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    """The module to run in ``mode`` and its inputs (sized inputs are built here, for the
    mode: on meta, as fake tensors, or with memory only for a real forward)."""
    if mode == "meta":
        def to_meta(t: torch.Tensor) -> torch.Tensor:
            return t if t.is_meta else t.to("meta")
        if isinstance(args, SizedInputs):
            args = args.build(torch.device("meta"))
        return copy_to_meta(model), map_tensors(args, to_meta), map_tensors(kwargs, to_meta)
    if mode == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode

        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        target = fake_copy(model, fake_mode)
        if isinstance(args, SizedInputs):
            device = args.where(model)
            with fake_mode:
                args = args.build(device)
        fargs = map_tensors(args, fake_mode.from_tensor)
        fkwargs = map_tensors(kwargs, fake_mode.from_tensor)
        stack.enter_context(fake_mode)
        return target, fargs, fkwargs
    if isinstance(args, SizedInputs):
        args = args.build(args.where(model))
    tree = model_tree(model)
    if any(is_lazy(t) for _, t in (*tree.params, *tree.buffers)):
        return shallow_copy(model), args, kwargs
    return model, args, kwargs


@dataclass
class _Seen:
    """What one forward with gradients showed (ids are of the tensors that ran)."""

    aliases: dict[int, list[str]]
    trainable: set[int]
    usage: _Usage
    reached: set[int]
    detached: set[int]
    called: set[str]
    module_types: dict[str, str]


def _run_mode(model: nn.Module, mode: str, args: tuple[Any, ...] | SizedInputs,
              kwargs: dict[str, Any],
              loss_fn: LossFn | None,
              ctx: AbstractContextManager[Any] | None) -> _Seen:
    with contextlib.ExitStack() as stack:
        target, targs, tkwargs = _target(model, mode, args, kwargs, stack)
        tree = model_tree(target)
        aliases = tree.aliases()
        trainable = {id(p) for p in tree.unique_params() if p.requires_grad}
        usage = _Usage(trainable)
        called = stack.enter_context(_called_modules())
        stack.enter_context(torch.enable_grad())
        with usage:
            with ctx if ctx is not None else contextlib.nullcontext():
                # the sync detector's mode above this one: it sees the user's frames
                output = target(*targs, **tkwargs)
            if loss_fn is not None:
                loss = loss_fn(output)
                tensors = [loss] if isinstance(loss, torch.Tensor) else output_tensors(loss)
            else:
                tensors = output_tensors(output)
        direct = {id(t) for t in tensors if t.grad_fn is None}
        reached = _reached([t.grad_fn for t in tensors if t.grad_fn is not None]) | direct
        detached = _reached(usage.detached)
        usage.detached = []
        del output, tensors
        modules = dict(tree.modules)
        return _Seen(aliases=aliases, trainable=trainable, usage=usage, reached=reached,
                     detached=detached,
                     called={p for p, m in modules.items() if id(m) in called},
                     module_types={p: type(m).__name__ for p, m in modules.items()})


def _verdict(tree: ModelTree, seen: _Seen) -> tuple[UnusedParam, ...]:
    out: list[UnusedParam] = []
    for pid, names in seen.aliases.items():
        if pid not in seen.trainable or pid in seen.reached:
            continue
        if pid in seen.usage.with_grad:
            reason = (UnusedReason.DETACHED if pid in seen.detached
                      else UnusedReason.OUTPUT_UNUSED)
        elif pid in seen.usage.without_grad:
            reason = UnusedReason.NO_GRAD
        elif any(owner_path(n) in seen.called for n in names):
            reason = UnusedReason.NOT_USED
        else:
            reason = UnusedReason.NOT_CALLED
        owner = owner_path(names[0])
        p = tree.param(names[0])
        assert p is not None
        shape = () if is_lazy(p) else tuple(int(d) for d in p.shape)
        numel = 0 if is_lazy(p) else p.numel()
        out.append(UnusedParam(names=tuple(names), module=owner,
                               module_type=seen.module_types.get(owner, "?"), shape=shape,
                               numel=numel, reason=reason))
    return tuple(out)


def _top_uncalled(unused: tuple[UnusedParam, ...], called: set[str] | None) -> dict[str, str]:
    """Module path -> its top-most never-called ancestor (a whole never-called block becomes
    one finding); without the called paths, the top-most one holding unused parameters."""
    uncalled = {u.module for u in unused if u.reason is UnusedReason.NOT_CALLED}
    out: dict[str, str] = {}
    for path in uncalled:
        parts = path.split(".")
        top = path
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            if (prefix not in called) if called is not None else (prefix in uncalled):
                top = prefix
            elif called is not None:
                break
        out[path] = top
    return out


def unused_findings(unused: tuple[UnusedParam, ...], *, severity: Severity = Severity.WARNING,
                    called: set[str] | None = None) -> tuple[Finding, ...]:
    """One ``unused-parameters`` finding per module and reason, naming the parameters, why
    they get no gradient and the fix."""
    top = _top_uncalled(unused, called)
    groups: dict[tuple[str, UnusedReason], list[UnusedParam]] = {}
    for u in unused:
        key = top.get(u.module, u.module) if u.reason is UnusedReason.NOT_CALLED else u.module
        groups.setdefault((key, u.reason), []).append(u)
    findings = []
    for (path, reason), items in groups.items():
        kinds = {i.module_type for i in items if i.module == path}
        kind = f" ({next(iter(kinds))})" if len(kinds) == 1 else ""
        names = [i.name for i in items]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        count = sum(i.numel for i in items)
        findings.append(Finding(
            code="unused-parameters",
            severity=severity,
            message=(f"{len(items)} trainable tensor{'s' * (len(items) != 1)} of "
                     f"{path or '(root)'}{kind} ({count:,} values) get no gradient — "
                     f"{reason.value}: {shown}"),
            path=path,
            hint=_HINTS[reason] + _DDP,
        ))
    return tuple(findings)


def unused_in_forward(model: nn.Module, args: tuple[Any, ...] | SizedInputs,
                      kwargs: dict[str, Any], *,
                      mode: Mode = "auto", loss_fn: LossFn | None = None,
                      wrap: Callable[[str], AbstractContextManager[Any] | None] | None = None,
                      severity: Severity = Severity.WARNING) -> UnusedReport:
    """:func:`find_unused_parameters` on resolved inputs (tensors, or sizes built for the mode
    that runs); ``wrap(mode)`` may return a context to run the forward in (the sync detector
    in real mode)."""
    if not isinstance(mode, str):
        raise ArgumentError(
            f"mode = {mode!r:.40} ({type(mode).__name__}) is not a str; pass one of "
            f"{', '.join(map(repr, _MODES))}"
        )
    if mode not in _MODES:
        raise InputSpecError(f"mode = {mode!r} is not one of {', '.join(_MODES)}")
    tree = model_tree(model)
    params = tree.unique_params()
    meta_model = bool(params) and all(p.is_meta for p in params)
    notes: list[str] = list(cycle_note(tree))
    scripted = isinstance(model, torch.jit.ScriptModule)
    if scripted and mode in ("meta", "fake"):
        raise InputSpecError(
            f"mode = {mode!r} cannot run a TorchScript module ({type(model).__name__}): a copy "
            "of it keeps its real weights; use mode='real' or 'auto', or pass the nn.Module "
            "before torch.jit.script/trace"
        )
    if scripted:
        notes.append("TorchScript module: one real forward (it cannot be copied to meta or "
                     "fake tensors); ops inside scripted code are not seen, so a parameter that "
                     "gets no gradient is reported by the autograd graph, with the reason of "
                     "its module's call")
    plan = (["real"] if scripted else ["meta", "fake", "real"]) if mode == "auto" else [mode]
    if meta_model:
        plan = [m for m in plan if m != "real"]
        if not plan:
            raise InputSpecError(
                "mode = 'real' cannot run a model whose parameters are on the meta device; use "
                "mode='meta' or mode='fake'"
            )
    errors: list[str] = []
    for current in plan:
        ctx = wrap(current) if wrap is not None else None
        try:
            with state_guard(model):
                seen = _run_mode(model, current, args, kwargs, loss_fn, ctx)
        except InputSpecError:
            raise
        except Exception as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            errors.append(f"{current}: {type(err).__name__}: {text[:160]}")
            if current == plan[-1]:
                raise ForwardError(
                    f"forward of {type(model).__name__} raised with gradients enabled "
                    f"({'; '.join(errors)}); check that the example inputs match what the model "
                    "expects (sizes, dtypes, keyword names)"
                ) from err
            notes.append(f"{current} forward failed ({errors[-1].split(': ', 1)[1]}), "
                         "tried the next mode")
            continue
        unused = _verdict(tree, seen)
        return UnusedReport(model_type=type(model).__name__, mode=current,
                            trainable=len(seen.trainable), unused=unused,
                            findings=unused_findings(unused, severity=severity,
                                                     called=seen.called),
                            notes=tuple(notes))
    raise AssertionError("unreachable")  # pragma: no cover


@room_for_depth
def find_unused_parameters(
    model: nn.Module,
    example_inputs: object = None,
    *,
    example_kwargs: object = None,
    input_size: object = None,
    dtypes: object = None,
    mode: Mode = "auto",
    loss_fn: LossFn | None = None,
) -> UnusedReport:
    """Trainable parameters that get no gradient: those whose ``AccumulateGrad`` node the
    autograd graph of the outputs (or of ``loss_fn(output)``) does not reach — what
    ``DistributedDataParallel(find_unused_parameters=False)`` fails on at the second step.

    One forward runs with gradients enabled and no backward: on a meta copy (no memory), else
    on fake tensors, else on the model itself under :func:`torchscope.state_guard` (``auto``;
    data-dependent control flow needs real values). Each unused parameter gets a reason: its
    module was never called, it was not used by its module's forward, its output was not used,
    it was ``.detach()``\\ ed, or it was used only under ``torch.no_grad()``. Functional use
    (``x @ self.embed.weight.T``, ``nn.MultiheadAttention``'s ``out_proj``) counts as use.

    A model whose module graph has a cycle (a child holding its parent) runs as PyTorch runs
    it (its forward does not walk the tree); the edge back to the ancestor is not followed
    when naming parameters, and a note names it. A TorchScript (scripted or traced) module
    runs one real forward in ``auto`` mode (a copy keeps its real weights); ops inside its
    scripted code are not seen, so reasons come from module calls only.

    Args:
        model: the module.
        example_inputs: a tensor or a tuple of positional inputs.
        example_kwargs: keyword inputs.
        input_size: instead of tensors, one shape per input (zeros).
        dtypes: one dtype per size (``"long"`` for token ids).
        mode: ``"auto"``, ``"meta"``, ``"fake"`` or ``"real"``.
        loss_fn: ``loss_fn(output)`` giving the loss; default: every output tensor.

    Returns:
        An :class:`~torchscope.records.UnusedReport` with one ``unused-parameters`` finding
        per module and reason.

    Raises:
        ArgumentError: ``mode`` is not a str or ``loss_fn`` is not callable.
        InputSpecError: bad inputs or mode (``meta``/``fake`` for a TorchScript module).
        ForwardError: the forward raised in every mode tried.

    >>> import torch
    >>> from torch import nn
    >>> class Aux(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.main, self.aux = nn.Linear(4, 2), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         self.aux(x)  # the output is discarded
    ...         return self.main(x)
    >>> report = find_unused_parameters(Aux(), input_size=[(1, 4)])
    >>> [(u.name, u.reason.value) for u in report.unused]
    [('aux.weight', 'output not used'), ('aux.bias', 'output not used')]
    """
    model = check_model(model, "find_unused_parameters")
    check_loss_fn("find_unused_parameters", loss_fn)
    if example_inputs is None and input_size is not None:  # built for the mode that runs
        _, kwargs = resolve_inputs("find_unused_parameters", None, example_kwargs, None, None,
                                   None) if example_kwargs else ((), {})
        sized = SizedInputs(input_plan(input_size, dtypes), None)
        return unused_in_forward(model, sized, kwargs, mode=mode, loss_fn=loss_fn)
    args, kwargs = resolve_inputs("find_unused_parameters", example_inputs, example_kwargs,
                                  input_size, dtypes, None)
    return unused_in_forward(model, args, kwargs, mode=mode, loss_fn=loss_fn)
