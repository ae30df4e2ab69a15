"""Uninitialized (lazy) layers: find them, infer their shapes without memory, materialize them.

Lazy modules (``nn.LazyLinear``, ``nn.LazyConv2d``, ``nn.LazyBatchNorm1d``…) hold
``UninitializedParameter``/``UninitializedBuffer`` placeholders until their first forward; then
torch fills the placeholders in place and the module changes class (``LazyLinear`` becomes
``Linear``, via ``cls_to_become``).

* :func:`find_lazy` lists the modules that still hold placeholders (no forward runs).
* :func:`infer_lazy_shapes` finds the shape and dtype each placeholder will take by running a
  *copy* of the model on the meta device (fake tensors when meta cannot run the forward): no
  parameter or activation memory, and the model keeps its classes, its placeholders and the
  RNG state.
* :func:`materialize` is the one call in torchscope that changes the model: a real dry forward
  that fills the placeholders in place, as torch's own "dry run" does.
* :func:`check_lazy` says what uninitialized parameters break, and the fix.
* :func:`trace_lazy` traces one forward (:func:`torchscope.trace_forward`) and reads the lazy
  shapes from the copy that forward ran on, so a summary needs a single forward.

>>> import torchscope
>>> from torchscope.examples import LazyMLP
>>> [(r.path, r.inferred) for r in infer_lazy_shapes(LazyMLP(), input_size=[(2, 20)])][1]
('2', (('weight', (10, 256), 'float32'), ('bias', (10,), 'float32')))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.nn.parameter import is_lazy

from torchscope._torch import dtype_name, named_modules, unwrap_compiled
from torchscope.errors import ArgumentError, ForwardError, InputSpecError
from torchscope.lazy._undo import _FailureSite, _Rollback, _SideEffects
from torchscope.records import (
    Finding,
    LazyRecord,
    Severity,
    inferred_numel,
    spec_text,
)
from torchscope.trace import TraceResult, build_inputs, trace_forward

__all__ = [
    "check_lazy",
    "find_lazy",
    "infer_lazy_shapes",
    "inferred_numel",
    "known_attributes",
    "lazy_finding",
    "lazy_record",
    "materialize",
    "trace_lazy",
]

# constructor arguments worth showing while a module is lazy; the input-dependent ones are 0
# until the first forward (unknown, so not shown then)
_KNOWN_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size",
                "stride", "padding", "num_features", "groups")
_INPUT_DEPENDENT = frozenset({"in_features", "in_channels", "num_features"})


# ---------------------------------------------------------------------------------------------
# finding




def _lazy_names(module: nn.Module) -> tuple[str, ...]:
    """Local names of the module's uninitialized tensors: parameters first, then buffers."""
    names = [k for k, p in module._parameters.items() if p is not None and is_lazy(p)]
    names.extend(k for k, b in module._buffers.items() if b is not None and is_lazy(b))
    return tuple(names)


def known_attributes(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """What a lazy module already knows: ``(("out_features", "256"),)`` for ``LazyLinear(256)``.

    Constructor arguments (``out_features``, ``out_channels``, ``kernel_size``, ``stride``,
    ``padding``, ``groups``) as text; the ones the first input decides (``in_features``,
    ``in_channels``, ``num_features``) only once they are set (they are 0 before).

    Args:
        module: any module.

    Returns:
        ``(attribute, value)`` pairs, in a fixed order.

    >>> import torch
    >>> known_attributes(torch.nn.LazyConv2d(8, 3))
    (('out_channels', '8'), ('kernel_size', '(3, 3)'), ('stride', '(1, 1)'), \
('padding', '(0, 0)'), ('groups', '1'))
    """
    known: list[tuple[str, str]] = []
    for attr in _KNOWN_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, bool) or not isinstance(value, (int, tuple, str)):
            continue
        if attr in _INPUT_DEPENDENT and value == 0:
            continue
        known.append((attr, str(value)))
    return tuple(known)


def lazy_record(module: nn.Module, path: str) -> LazyRecord | None:
    """The :class:`~torchscope.records.LazyRecord` of one module (``None`` when it holds no
    uninitialized tensor); ``inferred`` is empty.

    Args:
        module: the module.
        path: its path, as ``named_modules()`` names it.

    Returns:
        The record, or ``None``.

    >>> import torch
    >>> lazy_record(torch.nn.LazyLinear(4), "fc")
    LazyRecord(path='fc', type_name='LazyLinear', tensors=('weight', 'bias'), \
known=(('out_features', '4'),), inferred=())
    """
    names = _lazy_names(module)
    if not names:
        return None
    return LazyRecord(path, type(module).__name__, names, known_attributes(module))


def _check_model(model: object, where: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"{where}: model = {type(model).__name__} is not a torch.nn.Module; "
            "pass the model itself"
        )

    return unwrap_compiled(model)[0]


def find_lazy(model: nn.Module) -> tuple[LazyRecord, ...]:
    """A record per module that still holds uninitialized parameters or buffers.

    Nothing runs: each record names the module (path as ``named_modules()`` gives it, and type),
    its uninitialized tensors (local names, parameters first) and what is known already
    (``out_features`` of a ``LazyLinear``…). In a partly initialized model only the modules
    still holding placeholders are listed. A lazy module with nothing to infer (a
    ``LazyInstanceNorm1d(affine=False, track_running_stats=False)``) holds no placeholder and
    is not listed. A ``torch.compile`` wrapper is looked through.

    Args:
        model: any ``nn.Module``.

    Returns:
        The records, in pre-order; empty when nothing is lazy.

    Raises:
        InputSpecError: ``model`` is not a module.

    >>> import torchscope
    >>> [(r.path, r.tensors) for r in find_lazy(torchscope.examples.LazyMLP())]
    [('0', ('weight', 'bias')), ('2', ('weight', 'bias'))]
    """
    model = _check_model(model, "find_lazy")
    out: list[LazyRecord] = []
    for path, module in named_modules(model):
        record = lazy_record(module, path)
        if record is not None:
            out.append(record)
    return tuple(out)




# ---------------------------------------------------------------------------------------------
# inference on a copy


@contextmanager
def _root_calls() -> Iterator[list[nn.Module]]:
    """Collect every module called at the outermost level while the block runs.

    :func:`~torchscope.trace.trace_forward` runs the forward of a copy (meta, fake, or a
    shallow copy for a lazy model in real mode); the copy is the outermost module called, so
    the last one collected is the copy that the successful attempt ran on. The post-hook is
    ``always_call`` so that a forward that raises does not leave the depth count behind.
    """
    roots: list[nn.Module] = []
    depth = [0]

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        if depth[0] == 0:
            roots.append(module)
        depth[0] += 1

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        depth[0] = max(depth[0] - 1, 0)

    pre_handle = _module_mod.register_module_forward_pre_hook(pre)
    try:
        post_handle = _module_mod.register_module_forward_hook(post, always_call=True)
        try:
            yield roots
        finally:
            post_handle.remove()
    finally:
        pre_handle.remove()


def _fill(records: Sequence[LazyRecord], root: nn.Module) -> tuple[LazyRecord, ...]:
    """``records`` with ``inferred`` read from the (materialized) tensors under ``root``."""
    out: list[LazyRecord] = []
    for rec in records:
        try:
            module = root.get_submodule(rec.path)
        except AttributeError:
            out.append(rec)
            continue
        inferred: list[tuple[str, tuple[int, ...], str]] = []
        for name in rec.tensors:
            t: torch.Tensor | None = module._parameters.get(name)
            if t is None:
                t = module._buffers.get(name)
            if t is None or is_lazy(t):  # not reached by the forward: still unknown
                continue
            inferred.append((name, tuple(int(d) for d in t.shape), dtype_name(t.dtype)))
        out.append(replace(rec, inferred=tuple(inferred)))
    return tuple(out)


def trace_lazy(
    model: nn.Module,
    example_inputs: object = None,
    *,
    lazy: Sequence[LazyRecord] | None = None,
    **options: Any,
) -> tuple[TraceResult, tuple[LazyRecord, ...]]:
    """Trace one forward and read the inferred lazy shapes from the copy it ran on.

    :func:`~torchscope.trace.trace_forward` never runs a lazy model itself: in meta and fake
    mode it runs a copy, in real mode a copy sharing the initialized tensors; the lazy layers
    of that copy materialize during the traced forward. This reads their shapes before the copy
    is dropped, so a summary of a lazy model needs one forward, not two. The model stays as it
    was (classes, placeholders, state, RNG). In real mode the copy's materialized tensors take
    real memory for the duration of the call (as the real forward needs anyway).

    Args:
        model: the module to trace.
        example_inputs: as for :func:`~torchscope.trace.trace_forward`.
        lazy: the model's :func:`find_lazy` records when the caller has them already.
        **options: the keyword options of :func:`~torchscope.trace.trace_forward`
            (``example_kwargs``, ``input_size``, ``dtypes``, ``device``, ``mode``…).

    Returns:
        The trace result and the lazy records with ``inferred`` filled (a record keeps an
        empty ``inferred`` for a module the forward did not reach).

    Raises:
        InputSpecError: bad inputs, sizes, dtypes, device or mode.
        ForwardError: the forward raised (see :func:`~torchscope.trace.trace_forward`).

    >>> from torchscope.examples import LazyMLP
    >>> result, lazy = trace_lazy(LazyMLP(), input_size=[(2, 20)])
    >>> result.mode, lazy[0].inferred[0]
    ('meta', ('weight', (256, 20), 'float32'))
    """
    if lazy is not None and (not isinstance(lazy, (tuple, list))
                             or not all(isinstance(r, LazyRecord) for r in lazy)):
        raise ArgumentError(
            f"trace_lazy: lazy = {type(lazy).__name__} is not a list of LazyRecord; pass "
            "find_lazy(model), or leave it out"
        )
    records = find_lazy(model) if lazy is None else tuple(lazy)
    if not records:
        return trace_forward(model, example_inputs, **options), ()
    target = _check_model(model, "trace_lazy")
    with _root_calls() as roots:
        result = trace_forward(target, example_inputs, **options)
    copies = [r for r in roots if r is not target]
    if not copies:  # nothing ran on a copy (cannot happen while the model is lazy)
        return result, records
    filled = _fill(records, copies[-1])
    del roots, copies
    return result, filled


def _require_inputs(where: str, example_inputs: object, input_size: object,
                    example_kwargs: object) -> None:
    if example_inputs is None and input_size is None and not example_kwargs:
        raise InputSpecError(
            f"{where} needs example inputs to run the forward: pass example_inputs, "
            "input_size=[(2, 20)] (CLI: --input-size 2,20) or example_kwargs"
        )


def infer_lazy_shapes(
    model: nn.Module,
    example_inputs: object = None,
    *,
    input_size: object = None,
    dtypes: object = None,
    example_kwargs: Mapping[str, object] | None = None,
    device: object = None,
) -> tuple[LazyRecord, ...]:
    """The shape and dtype every uninitialized tensor will take, without allocating it.

    Runs the forward of a copy of the model on the meta device (under fake tensors when the
    forward cannot run on meta, e.g. it calls ``.item()``); the copy's lazy layers
    materialize there, and their shapes are mapped back by module path. Example tensors are
    only looked at (moved to meta). The model is not changed: it keeps its classes (still
    ``LazyLinear``), its placeholders, its state, hooks, training flags and the RNG state. A
    ``LazyLinear`` that would hold 75 GB is inferred with no memory growth.

    Args:
        model: the module (nothing runs when it holds no uninitialized tensor).
        example_inputs: a tensor or a tuple of positional inputs.
        input_size: instead of ``example_inputs``: one shape per input (zeros are built).
        dtypes: one dtype per size (default ``float32``; ``"long"`` for token ids).
        example_kwargs: keyword inputs.
        device: where built inputs would live (the copy runs on meta anyway).

    Returns:
        :func:`find_lazy`'s records with ``inferred`` filled: ``(name, shape, dtype)`` per
        tensor. A module the forward did not reach keeps an empty ``inferred``.

    Raises:
        InputSpecError: no inputs, or inputs, sizes or dtypes that cannot be used.
        ForwardError: the forward raised on meta and on fake tensors (names the module and its
            input specs; the original error is chained).

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.LazyLinear(100_000))
    >>> infer_lazy_shapes(m, input_size=[(1, 200_000)])[0].inferred[0]
    ('weight', (100000, 200000), 'float32')
    >>> type(m[0]).__name__
    'LazyLinear'
    """
    model = _check_model(model, "infer_lazy_shapes")
    records = find_lazy(model)
    if not records:
        return ()
    _require_inputs("infer_lazy_shapes", example_inputs, input_size, example_kwargs)
    failures: list[ForwardError] = []
    for mode in ("meta", "fake"):
        try:
            _, filled = trace_lazy(model, example_inputs, example_kwargs=example_kwargs,
                                   input_size=input_size, dtypes=dtypes, device=device,
                                   mode=mode, lazy=records)
        except ForwardError as err:
            failures.append(err)
            continue
        return filled
    last = failures[-1]
    detail = str(last).removesuffix(", or trace with mode='real'")
    raise ForwardError(
        "infer_lazy_shapes: the forward raised on meta and on fake tensors, so the shapes "
        f"cannot be inferred without memory: {detail}; if only a real forward works, "
        "torchscope.materialize(model, example_inputs) initializes the model in place"
    ) from last


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:159] + "…"


# ---------------------------------------------------------------------------------------------
# materializing in place


def _model_device(model: nn.Module) -> torch.device | None:
    """The device of the first parameter or buffer (placeholders have one too)."""
    for t in chain(model.parameters(), model.buffers()):
        return t.device
    return None


def _materialize_inputs(model: nn.Module, example_inputs: object, input_size: object,
                        dtypes: object, device: object) -> tuple[Any, ...]:
    if example_inputs is not None and input_size is not None:
        raise InputSpecError("materialize: both example_inputs and input_size were given; "
                             "pass one of them")
    if example_inputs is None:
        if input_size is None:
            return ()
        dev = device if device is not None else _model_device(model)
        return build_inputs(input_size, dtypes, device=dev)
    if dtypes is not None:
        raise InputSpecError("materialize: dtypes applies to input_size only; give "
                             "example_inputs the dtype they need")
    if isinstance(example_inputs, Mapping):
        raise InputSpecError("materialize: example_inputs is a dict; pass keyword inputs as "
                             "example_kwargs=...")
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def materialize(
    model: nn.Module,
    example_inputs: object = None,
    *,
    input_size: object = None,
    dtypes: object = None,
    example_kwargs: Mapping[str, object] | None = None,
    device: object = None,
) -> tuple[LazyRecord, ...]:
    """Initialize the model's lazy layers in place: the one torchscope call that mutates.

    Runs one real forward of the model itself under ``torch.no_grad()`` (torch's "dry run"),
    on the model's device (inputs built from ``input_size`` go there; the model is never
    moved). Its lazy layers materialize exactly as in a plain dry run: same classes after
    (``LazyLinear`` becomes ``Linear``), same values for the same seed, the global RNG advanced
    the same way. What the dry forward would change besides that is put back: training flags,
    grad mode, buffers that were initialized already (BatchNorm running statistics) and the
    buffers that materialize (left at their initial values, not updated by the dry batch).
    When the forward raises, the model is left as it was (still lazy) and the RNG too.

    Args:
        model: the module to initialize.
        example_inputs: a tensor or a tuple of positional inputs, on the model's device.
        input_size: instead of ``example_inputs``: one shape per input (zeros are built).
        dtypes: one dtype per size (default ``float32``).
        example_kwargs: keyword inputs.
        device: where to build inputs from ``input_size`` (default: the model's device);
            given tensors are used where they are.

    Returns:
        A record per module that was lazy, with ``inferred`` the shapes and dtypes now created
        (``type_name`` is the class before materializing). A module the forward did not reach
        keeps an empty ``inferred`` and stays lazy. Empty when nothing was lazy (then nothing
        runs).

    Raises:
        InputSpecError: no inputs, or inputs, sizes or dtypes that cannot be used.
        ForwardError: the forward raised (names the module and its input specs; the original
            error is chained); the model is unchanged.

    >>> import torch, torchscope
    >>> model = torchscope.examples.LazyMLP()
    >>> [r.inferred[0] for r in materialize(model, torch.zeros(2, 20))]
    [('weight', (256, 20), 'float32'), ('weight', (10, 256), 'float32')]
    >>> type(model[0]).__name__, model[0].weight.shape
    ('Linear', torch.Size([256, 20]))
    """
    model = _check_model(model, "materialize")
    records = find_lazy(model)
    if not records:
        return ()
    _require_inputs("materialize", example_inputs, input_size, example_kwargs)
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise InputSpecError(
            f"materialize: example_kwargs = {type(example_kwargs).__name__} is not a dict of "
            "keyword inputs; pass e.g. {'attention_mask': mask}"
        )
    args = _materialize_inputs(model, example_inputs, input_size, dtypes, device)
    kwargs = dict(example_kwargs or {})
    paths = {id(m): p for p, m in model.named_modules()}
    lazy_modules = [model.get_submodule(r.path) for r in records]
    rollback = _Rollback(lazy_modules)
    effects = _SideEffects(model, lazy_modules)
    site = _FailureSite(paths)
    try:
        with site.watching(), torch.no_grad():
            model(*args, **kwargs)
    except Exception as err:
        effects.restore(rng=True)
        rollback.undo()
        raise _materialize_error(model, err, site) from err
    except BaseException:  # KeyboardInterrupt: leave the model as it was, too
        effects.restore(rng=True)
        rollback.undo()
        raise
    effects.restore(rng=False)
    return _fill(records, model)


def _materialize_error(model: nn.Module, err: Exception, site: _FailureSite) -> ForwardError:
    where = f"the root module ({type(model).__name__})"
    inputs = ""
    if site.where is not None:
        path, specs = site.where
        if path:
            where = f"module {path!r}"
        inputs = f" called with ({', '.join(spec_text(s) for s in specs)})"
    return ForwardError(
        f"materialize: the forward of {type(model).__name__} raised in {where}{inputs}: "
        f"{type(err).__name__}: {_first_line(err)}; the model was left as it was (still "
        "uninitialized); check that the example inputs match what the model expects (sizes, "
        "dtypes, keyword names)"
    )


# ---------------------------------------------------------------------------------------------
# checks


def check_lazy(model: nn.Module) -> tuple[Finding, ...]:
    """A warning per module that still holds uninitialized parameters or buffers, with the fix.

    Until the first forward their sizes are unknown: ``sum(p.numel() for p in
    model.parameters())`` raises, an optimizer built now holds the placeholders (it works only
    if they are materialized in place before its first step, never replaced or moved),
    ``DistributedDataParallel`` refuses them, and a ``state_dict`` saved now holds no values.

    Args:
        model: any ``nn.Module``.

    Returns:
        One ``lazy-uninitialized`` finding (severity warning) per lazy module; empty when
        nothing is lazy.

    >>> import torchscope
    >>> [f.path for f in check_lazy(torchscope.examples.LazyMLP())]
    ['0', '2']
    """
    model = _check_model(model, "check_lazy")
    return tuple(lazy_finding(rec, model.get_submodule(rec.path)) for rec in find_lazy(model))


def lazy_finding(rec: LazyRecord, module: nn.Module) -> Finding:
    """:func:`check_lazy`'s finding for one record of :func:`find_lazy` and its module.

    >>> import torchscope
    >>> m = torchscope.examples.LazyMLP()
    >>> lazy_finding(find_lazy(m)[0], m[0]).code
    'lazy-uninitialized'
    """
    params = [n for n in rec.tensors if n in module._parameters]
    buffers = [n for n in rec.tensors if n not in module._parameters]
    what: list[str] = []
    if params:
        what.append(f"parameter{'s' if len(params) > 1 else ''} {', '.join(params)}")
    if buffers:
        what.append(f"buffer{'s' if len(buffers) > 1 else ''} {', '.join(buffers)}")
    where = rec.path or "(root)"
    consequence = ("an optimizer built now holds placeholders; DDP refuses them" if params
                   else "a state_dict saved now holds no values for them")
    return Finding(
        code="lazy-uninitialized",
        severity=Severity.WARNING,
        message=f"{where} ({rec.type_name}) has uninitialized {' and '.join(what)}: "
                f"{consequence}",
        path=rec.path,
        hint=("run one dry forward first: torchscope.materialize(model, example_inputs) "
              "(or model(x) under torch.no_grad())"),
    )
