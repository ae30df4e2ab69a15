"""Static traversal: the module tree, every parameter and buffer with its aliases, and totals.

Totals count each unique byte range of storage once (docs/architecture.md, "Shared tensors"):
a block's total is tie-aware inside that block, the model's total over the model. Parameters and
buffers, trainable and frozen are counted separately. Uninitialized (lazy) tensors are counted apart
(``lazy_tensors``): their size is unknown, never 0.

>>> import torchscope
>>> [r.path for r in torchscope.walk(torchscope.examples.NestMLP())][:3]
['', 'net', 'net.0']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from torchscope._torch import gc_paused, plain_reads, recursion_room, unwrap_wrappers
from torchscope._units import humanize_bytes, short_repr
from torchscope.cost import estimate_cost
from torchscope.distributed import gather_report
from torchscope.errors import InputSpecError
from torchscope.inspect._walk import (
    _module_records,
    _Node,
    _params_and_ties,
    _walk_nodes,
    _with_calls,
)
from torchscope.lazy import inferred_numel, lazy_finding, lazy_record, trace_lazy
from torchscope.records import (
    Finding,
    LazyRecord,
    ModuleRecord,
    ParamKind,
    ParamRecord,
    Report,
    Severity,
    Spec,
)
from torchscope.trace import Mode, trace_forward

__all__ = ["list_parameters", "summarize", "walk"]

_MODES = ("auto", "real", "meta", "fake")

_PARAM, _BUF, _NPBUF = ParamKind.PARAMETER, ParamKind.BUFFER, ParamKind.BUFFER_NONPERSISTENT


def walk(model: nn.Module) -> Iterator[ModuleRecord]:
    """Yield a :class:`~torchscope.records.ModuleRecord` per module, in pre-order.

    Paths are exactly as ``model.named_modules()`` names them (the root is ``""``); a module
    registered under two names is one record whose ``aliases`` holds the other names.

    >>> import torchscope
    >>> root = next(torchscope.walk(torchscope.examples.MLP()))
    >>> root.type_name, root.total_params
    ('MLP', 7946)
    """
    with gc_paused(), plain_reads():
        records = _module_records(_walk_nodes(_check_model(model, "walk")))
    return iter(records)


def list_parameters(model: nn.Module) -> tuple[ParamRecord, ...]:
    """Every parameter and buffer once, with every name it is reachable under.

    A Parameter reachable under two names (a shared layer, tied embeddings) is one record
    whose ``aliases`` holds the other names; ``tie_group`` indexes :func:`find_tied`'s groups.

    >>> import torchscope
    >>> recs = torchscope.list_parameters(torchscope.examples.SharedMLP())
    >>> [(r.name, r.aliases) for r in recs][2]
    ('2.weight', ('4.weight',))
    """
    with gc_paused(), plain_reads():
        params, _, _ = _params_and_ties(_walk_nodes(_check_model(model, "list_parameters")))
    return params


def summarize(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    example_kwargs: dict[str, Any] | None = None,
    input_size: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
    device: torch.device | str | None = None,
    mode: Mode = "auto",
    distributed: bool = False,
    follow_functions: bool = False,
    cost: bool = False,
    optimizer: str | None = None,
    train_dtype: str | torch.dtype | None = None,
) -> Report:
    """Summarize a model: modules, parameters and buffers, ties, lazy layers and totals.

    Without example inputs nothing runs: the summary is static. With ``example_inputs`` (a
    tensor or a tuple of inputs), ``example_kwargs`` or ``input_size`` (shapes; ``dtypes`` per
    input, zeros are built), one forward is traced (see :func:`torchscope.trace_forward`) and
    every module record carries its calls with input and output specs. The model is left
    exactly as it was (state, training flags, hooks, RNG, device).

    Args:
        model: any ``nn.Module``; a ``torch.compile`` wrapper is unwrapped (and noted).
        example_inputs: positional inputs for one traced forward call.
        example_kwargs: keyword inputs for that call.
        input_size: shapes of positional inputs to build instead of ``example_inputs``.
        dtypes: dtype per built input (default float32).
        device: device for built inputs (the model is never moved).
        mode: ``auto``, ``real``, ``meta`` or ``fake`` execution of the traced forward.
        distributed: a collective: every rank of the default process group summarizes its
            share and the reports are gathered (:func:`torchscope.distributed.gather_report`):
            ``ranks`` holds each rank's local sizes, and findings say where ranks disagree or
            shards are uneven. Without a process group the report is the local one.
        follow_functions: the traced flow also follows tensors through torch functions, so
            residual connections are edges (see :func:`torchscope.trace_forward`); block
            diagrams want it.
        cost: also count FLOPs and memory of one forward and backward (meta by default;
            see :func:`torchscope.estimate_cost`) into ``report.cost``; needs example inputs.
        optimizer: with ``cost``: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"sgd-momentum"``
            or ``None``, for the optimizer state of the training step.
        train_dtype: with ``cost``: the dtype of a training step (``"bf16"``).

    Returns:
        A :class:`~torchscope.records.Report` of plain records (no tensors, no modules).

    Raises:
        ForwardError: the traced forward raised (names the module and its input specs).
        InputSpecError: example inputs or sizes that cannot be used.

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.SharedMLP())
    >>> r.total_params, sum(p.numel for p in r.params)
    (121, 121)
    """
    _check_model(model, "summarize")
    if not isinstance(mode, str) or mode not in _MODES:
        raise InputSpecError(
            f"summarize: mode = {short_repr(mode)} is not one of {', '.join(_MODES)}")
    for name, flag in (("distributed", distributed), ("follow_functions", follow_functions),
                       ("cost", cost)):
        if not isinstance(flag, bool):
            raise InputSpecError(
                f"summarize: {name} = {short_repr(flag)} is not True or False; pass a bool")
    if distributed:
        try:
            local = summarize(model, example_inputs, example_kwargs=example_kwargs,
                              input_size=input_size, dtypes=dtypes, device=device, mode=mode,
                              follow_functions=follow_functions, cost=cost, optimizer=optimizer,
                              train_dtype=train_dtype)
        except Exception as err:
            gather_report(err)  # every rank raises, naming the failed ranks: nobody waits
            raise
        return gather_report(local)
    model, unwrapped = unwrap_wrappers(model)  # torch.compile, DDP, DataParallel
    # the one walk of the module tree: records, ties and their findings, lazy layers
    with gc_paused(), plain_reads():
        w = _walk_nodes(model)
        modules = _module_records(w)
        params, tied, tie_findings = _params_and_ties(w, findings=True)
        root = modules[0]
        lazy, lazy_findings = _lazy_records(w.nodes)  # before the trace: it infers shapes
        cycles, packed = w.cycles, w.packed
        depth = max(node.depth for node in w.nodes)
        traced = (example_inputs is not None or example_kwargs is not None
                  or input_size is not None)
        # the trace runs over the same modules: it reuses the tree instead of reading it again
        tree = ([n.module for n in w.nodes], [n.path for n in w.nodes]) if traced else None
        del w
    # the collector, running again, visits every record built above at the next allocation
    # (building the report below): its cost is part of this call, as it is in the benchmark
    notes: list[str] = list(unwrapped)
    findings: list[Finding] = [_cycle_finding(edge, ancestor) for edge, ancestor in cycles]
    if packed:
        notes.append(_packed_note(packed))
    report = Report(
        root_type=root.type_name,
        modules=tuple(modules),
        params=params,
        tied=tied,
        lazy=lazy,
        findings=(),
        total_params=root.total_params,
        trainable_params=root.trainable_params,
        non_trainable_params=root.total_params - root.trainable_params,
        param_bytes=root.param_bytes,
        buffer_numel=root.total_buffers,
        buffer_bytes=root.buffer_bytes,
        lazy_tensors=root.lazy_tensors,
    )
    if traced:
        with recursion_room(depth):  # torch calls nested modules recursively
            report = _with_trace(report, model, example_inputs, tree, example_kwargs=example_kwargs,
                                 input_size=input_size, dtypes=dtypes, device=device, mode=mode,
                                 follow_functions=follow_functions)
        findings.extend(report.findings)
        notes.extend(report.notes)
        if cost:
            report = replace(report, cost=estimate_cost(
                model, example_inputs, example_kwargs=example_kwargs, input_size=input_size,
                dtypes=dtypes, device=device, mode=mode, optimizer=optimizer,
                train_dtype=train_dtype))
    elif cost:
        raise InputSpecError(
            "summarize(cost=True) needs example inputs to count FLOPs and activations: pass "
            "example_inputs or input_size=[(2, 20)] (CLI: --input-size 2,20)")
    findings.extend(tie_findings)
    findings.extend(lazy_findings)
    return replace(report, findings=tuple(findings), notes=tuple(notes))


def _check_model(model: object, where: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"{where}: model = {short_repr(model)} ({type(model).__name__}) is not a "
            "torch.nn.Module; pass the model itself (an nn.Module instance)"
        )
    return model



def _cycle_finding(edge: str, ancestor: str) -> Finding:
    return Finding(
        code="module-cycle", severity=Severity.ERROR,
        message=(f"{edge} is the module at {ancestor or '(root)'}, its own ancestor: the module "
                 "graph has a cycle, so state_dict(), named_parameters(remove_duplicate=False), "
                 "deepcopy and to() recurse forever; everything else was inspected once"),
        path=edge,
        hint=(f"keep a back-reference out of the module tree: object.__setattr__(module, name, "
              f"value) or a weakref instead of registering {ancestor or 'the root'} as a child"),
    )


def _packed_note(packed: list[tuple[str, int, int]]) -> str:
    known = [(p, n, b) for p, n, b in packed if n >= 0]
    where = ", ".join(p or "(root)" for p, _, _ in packed[:3]) + (
        f" and {len(packed) - 3} more" if len(packed) > 3 else "")
    if len(known) < len(packed):
        size = "of unknown size"
    else:
        numel = sum(n for _, n, _ in known)
        size = f"{numel:,} elements, {humanize_bytes(sum(b for _, _, b in known))},"
    return (f"quantized weights packed outside parameters and buffers ({size} in "
            f"{len(packed)} module{'s' if len(packed) > 1 else ''}: {where}) are not counted "
            "in the totals")


def _lazy_records(nodes: list[_Node]) -> tuple[tuple[LazyRecord, ...], tuple[Finding, ...]]:
    if not any(node.lazy for node in nodes[:1]):  # the root's count covers the whole tree
        return (), ()
    records: list[LazyRecord] = []
    findings: list[Finding] = []
    for node in nodes:
        if node.own_lazy:
            record = lazy_record(node.module, node.path)
            if record is not None:
                records.append(record)
                findings.append(lazy_finding(record, node.module))
    return tuple(records), tuple(findings)


def _with_trace(report: Report, model: nn.Module, example_inputs: Any,
                tree: tuple[list[nn.Module], list[str]] | None, **options: Any) -> Report:
    """The report with the calls of one traced forward; lazy tensors get their inferred shapes
    from the same forward (it runs on a copy whose lazy layers materialize)."""

    if report.lazy:

        result, lazy = trace_lazy(model, example_inputs, lazy=report.lazy, **options)
        inferred = inferred_numel(lazy, params=report.params)
        report = replace(
            report, lazy=lazy,
            inferred_params=None if inferred is None else report.total_params + inferred,
        )
    else:
        result = trace_forward(model, example_inputs, _tree=tree, **options)
    calls: dict[str, list[Any]] = {}
    for path, call in result.calls:
        calls.setdefault(path, []).append(call)
    modules = tuple(_with_calls(m, tuple(calls.get(m.path, ())), m.path in calls)
                    for m in report.modules)
    inputs: tuple[Spec, ...] = result.inputs
    return replace(
        report,
        modules=modules,
        mode=result.mode,
        inputs=inputs,
        input_kwargs=result.input_kwargs,
        outputs=result.outputs,
        flow=result.flow,
        findings=tuple(result.findings),
        notes=tuple(result.notes),
    )

