"""Static traversal: the module tree, every parameter and buffer with its aliases, and totals.

Totals count each unique byte range of storage once (DESIGN.md "Shared tensors"): a block's
total is tie-aware inside that block, the model's total over the model. Parameters and buffers,
trainable and frozen are counted separately. Uninitialized (lazy) tensors are counted apart
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
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]

from torchscope.records import (
    Finding,
    LazyRecord,
    ModuleRecord,
    ParamKind,
    ParamRecord,
    Report,
    Spec,
)
from torchscope.tying import find_tied, storage_key, unique_size

__all__ = ["list_parameters", "summarize", "unwrap_compiled", "walk"]

_PARAM, _BUF, _NPBUF = ParamKind.PARAMETER, ParamKind.BUFFER, ParamKind.BUFFER_NONPERSISTENT


def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module a ``torch.compile`` wrapper holds (names without ``_orig_mod.``), and whether
    it was one.

    >>> unwrap_compiled(torch.nn.Linear(2, 2))[1]
    False
    """
    compiled = False
    while type(model).__name__ == "OptimizedModule" and isinstance(
        getattr(model, "_orig_mod", None), nn.Module
    ):
        orig = model._orig_mod
        assert isinstance(orig, nn.Module)
        model = orig
        compiled = True
    return model, compiled


class _Node:
    """Mutable per-module scratch data while walking (turned into a frozen record at the end).

    ``s_*`` sum the module's own tensors that share memory with nothing else; ``t_*`` are the
    subtree totals (simple parts summed bottom-up, shared parts added tie-aware per node).
    """

    __slots__ = (
        "aliases", "buffer_names", "children", "depth", "devices", "dtypes", "lazy", "module",
        "own_buffers", "own_params", "param_names", "parent", "path", "s_bbytes", "s_buffers",
        "s_params", "s_pbytes", "s_trainable", "shared", "t_bbytes", "t_buffers", "t_params",
        "t_pbytes", "t_trainable",
    )

    def __init__(self, module: nn.Module, path: str, depth: int, parent: int | None) -> None:
        self.module = module
        self.path = path
        self.depth = depth
        self.parent = parent
        self.children: list[str] = []
        self.aliases: list[str] = []
        self.param_names: tuple[str, ...] = ()
        self.buffer_names: tuple[str, ...] = ()
        self.s_params = self.s_trainable = self.s_buffers = self.s_pbytes = self.s_bbytes = 0
        self.t_params = self.t_trainable = self.t_buffers = self.t_pbytes = self.t_bbytes = 0
        self.own_params = self.own_buffers = 0
        self.lazy = 0
        self.dtypes: set[str] = set()
        self.devices: set[str] = set()
        # own tensors that share memory with another tensor object or have several names
        self.shared: list[tuple[torch.Tensor, ParamKind]] | None = None


def _is_lazy(t: torch.Tensor) -> bool:
    return isinstance(t, UninitializedTensorMixin)


def _walk_nodes(model: nn.Module) -> tuple[list[_Node], dict[int, list[tuple[str, ParamKind]]]]:
    """Pre-order nodes (as named_modules() dedups them) and every name of every tensor."""
    nodes: list[_Node] = []
    seen: dict[int, int] = {}
    names: dict[int, list[tuple[str, ParamKind]]] = {}
    stack: list[tuple[nn.Module, str, int, int | None]] = [(model, "", 0, None)]
    while stack:
        module, path, depth, parent = stack.pop()
        index = seen.get(id(module))
        if index is not None:  # registered under a second name: an alias of that module
            nodes[index].aliases.append(path)
            _alias_names(module, path, names)
            continue
        index = len(nodes)
        seen[id(module)] = index
        node = _Node(module, path, depth, parent)
        nodes.append(node)
        if parent is not None:
            nodes[parent].children.append(path)
        prefix = path + "." if path else ""
        params = module._parameters
        if params:
            node.param_names = tuple(k for k, v in params.items() if v is not None)
            for k in node.param_names:
                names.setdefault(id(params[k]), []).append((prefix + k, _PARAM))
        buffers = module._buffers
        if buffers:
            node.buffer_names = tuple(k for k, v in buffers.items() if v is not None)
            nonpersistent = module._non_persistent_buffers_set
            for k in node.buffer_names:
                kind = _NPBUF if k in nonpersistent else _BUF
                names.setdefault(id(buffers[k]), []).append((prefix + k, kind))
        children = module._modules
        if children:
            for name, child in reversed(children.items()):
                if child is not None:
                    stack.append((child, prefix + name, depth + 1, index))
    return nodes, names


def _alias_names(module: nn.Module, path: str,
                 names: dict[int, list[tuple[str, ParamKind]]]) -> None:
    for name, p in module.named_parameters(prefix=path, remove_duplicate=False):
        names.setdefault(id(p), []).append((name, _PARAM))
    for mod_name, sub in module.named_modules(prefix=path, remove_duplicate=False):
        prefix = mod_name + "." if mod_name else ""
        for k, b in sub._buffers.items():
            if b is not None:
                kind = _NPBUF if k in sub._non_persistent_buffers_set else _BUF
                names.setdefault(id(b), []).append((prefix + k, kind))


def _own_tensors(node: _Node) -> Iterator[tuple[torch.Tensor, ParamKind]]:
    module = node.module
    for k in node.param_names:
        p = module._parameters[k]
        assert p is not None
        yield p, _PARAM
    for k in node.buffer_names:
        b = module._buffers[k]
        assert b is not None
        yield b, _NPBUF if k in module._non_persistent_buffers_set else _BUF


def _account(nodes: list[_Node], names: dict[int, list[tuple[str, ParamKind]]]) -> None:
    """Fill own and tie-aware subtree totals of every node."""
    # Tensors that take the tie-aware path: several names, or a storage shared with another
    # tensor object. Everything else is summed bottom-up.
    first_tensor: dict[tuple[str, int, int], int] = {}
    shared_ids: set[int] = set()
    for node in nodes:
        for t, _ in _own_tensors(node):
            tid = id(t)
            if len(names[tid]) > 1:
                shared_ids.add(tid)
            if _is_lazy(t) or t.numel() == 0:
                continue
            other = first_tensor.setdefault(storage_key(t), tid)
            if other != tid:
                shared_ids.add(tid)
                shared_ids.add(other)
    for node in nodes:
        for t, kind in _own_tensors(node):
            node.dtypes.add(str(t.dtype).removeprefix("torch."))
            node.devices.add(str(t.device))
            if _is_lazy(t):
                node.lazy += 1
                continue
            if id(t) in shared_ids:
                if node.shared is None:
                    node.shared = []
                node.shared.append((t, kind))
                continue
            n = t.numel()
            if kind is _PARAM:
                node.s_params += n
                node.s_pbytes += n * t.element_size()
                if t.requires_grad:
                    node.s_trainable += n
            else:
                node.s_buffers += n
                node.s_bbytes += n * t.element_size()
        node.own_params, node.own_buffers = node.s_params, node.s_buffers
        if node.shared:  # ties inside one module count once
            p_numel, _, _, b_numel, _ = _unique_parts(node.shared)
            node.own_params += p_numel
            node.own_buffers += b_numel
    # bottom-up sums of the simple parts (pre-order: children come after their parent)
    for node in reversed(nodes):
        node.t_params += node.s_params
        node.t_trainable += node.s_trainable
        node.t_buffers += node.s_buffers
        node.t_pbytes += node.s_pbytes
        node.t_bbytes += node.s_bbytes
        if node.parent is not None:
            parent = nodes[node.parent]
            parent.t_params += node.t_params
            parent.t_trainable += node.t_trainable
            parent.t_buffers += node.t_buffers
            parent.t_pbytes += node.t_pbytes
            parent.t_bbytes += node.t_bbytes
            parent.lazy += node.lazy
            parent.dtypes |= node.dtypes
            parent.devices |= node.devices
    # tie-aware part: every node adds the unique size of the shared tensors in its subtree
    subtree: dict[int, dict[int, tuple[torch.Tensor, ParamKind]]] = {}
    for i, node in enumerate(nodes):
        if not node.shared:
            continue
        j: int | None = i
        while j is not None:
            bucket = subtree.setdefault(j, {})
            for t, kind in node.shared:
                bucket[id(t)] = (t, kind)
            j = nodes[j].parent
    for j, bucket in subtree.items():
        p_numel, p_bytes, t_numel, b_numel, b_bytes = _unique_parts(list(bucket.values()))
        node = nodes[j]
        node.t_params += p_numel
        node.t_trainable += t_numel
        node.t_buffers += b_numel
        node.t_pbytes += p_bytes
        node.t_bbytes += b_bytes


def _unique_parts(
    tensors: Sequence[tuple[torch.Tensor, ParamKind]],
) -> tuple[int, int, int, int, int]:
    """Unique (param numel, param bytes, trainable numel, buffer numel, buffer bytes)."""
    params = [t for t, kind in tensors if kind is _PARAM]
    p_numel, p_bytes = unique_size(params)
    t_numel, _ = unique_size([t for t in params if t.requires_grad])
    b_numel, b_bytes = unique_size([t for t, kind in tensors if kind is not _PARAM])
    return p_numel, p_bytes, t_numel, b_numel, b_bytes


def walk(model: nn.Module) -> Iterator[ModuleRecord]:
    """Yield a :class:`~torchscope.records.ModuleRecord` per module, in pre-order.

    Paths are exactly as ``model.named_modules()`` names them (the root is ``""``); a module
    registered under two names is one record whose ``aliases`` holds the other names.

    >>> import torchscope
    >>> root = next(torchscope.walk(torchscope.examples.MLP()))
    >>> root.type_name, root.total_params
    ('MLP', 7946)
    """
    yield from _module_records(*_walk_nodes(model))


def _module_records(nodes: list[_Node],
                    names: dict[int, list[tuple[str, ParamKind]]]) -> list[ModuleRecord]:
    _account(nodes, names)
    out: list[ModuleRecord] = []
    append = out.append
    for node in nodes:
        module = node.module
        tags: tuple[str, ...] = ()
        cls_name = type(module).__name__
        if cls_name.startswith("Parametrized") and hasattr(module, "parametrizations"):
            tags = ("parametrized",)
        elif cls_name == "OptimizedModule":
            tags = ("compiled",)
        # positional construction: keyword construction of a 22-field frozen record costs 2x
        append(ModuleRecord(
            node.path, cls_name, node.depth,
            None if node.parent is None else nodes[node.parent].path,
            tuple(node.children), tuple(node.aliases), node.param_names, node.buffer_names,
            node.own_params, node.own_buffers, node.t_params, node.t_trainable,
            node.t_buffers, node.t_pbytes, node.t_bbytes,
            node.lazy, tuple(sorted(node.dtypes)), tuple(sorted(node.devices)),
            module.training, tags,
        ))
    return out


def list_parameters(model: nn.Module) -> tuple[ParamRecord, ...]:
    """Every parameter and buffer once, with every name it is reachable under.

    A Parameter reachable under two names (a shared layer, tied embeddings) is one record
    whose ``aliases`` holds the other names; ``tie_group`` is set by :func:`summarize`.

    >>> import torchscope
    >>> recs = torchscope.list_parameters(torchscope.examples.SharedMLP())
    >>> [(r.name, r.aliases) for r in recs][2]
    ('2.weight', ('4.weight',))
    """
    nodes, names = _walk_nodes(model)
    return _param_records(nodes, names, ())


def _param_records(nodes: list[_Node], names: dict[int, list[tuple[str, ParamKind]]],
                   tied: Sequence[Any]) -> tuple[ParamRecord, ...]:
    group_of: dict[str, int] = {}
    for index, group in enumerate(tied):
        for name in group.names:
            group_of[name] = index
    records: list[ParamRecord] = []
    seen: set[int] = set()
    # parameters first, then buffers, each in traversal order (as named_parameters does)
    for want_param in (True, False):
        for node in nodes:
            for t, kind in _own_tensors(node):
                if (kind is _PARAM) is not want_param or id(t) in seen:
                    continue
                seen.add(id(t))
                all_names = [n for n, _ in names[id(t)]]
                name = all_names[0]
                lazy = _is_lazy(t)
                shape = None if lazy else tuple(t.shape)
                numel = None if lazy else t.numel()
                nbytes = None if lazy else t.numel() * t.element_size()
                records.append(ParamRecord(
                    name, tuple(all_names[1:]), node.path, shape,
                    str(t.dtype).removeprefix("torch."), str(t.device), numel, nbytes,
                    bool(t.requires_grad), lazy, group_of.get(name), kind,
                ))
    return tuple(records)


def summarize(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    example_kwargs: dict[str, Any] | None = None,
    input_size: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
    device: torch.device | str | None = None,
    mode: str = "auto",
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
    model, compiled = unwrap_compiled(model)
    nodes, names = _walk_nodes(model)
    modules = _module_records(nodes, names)
    tied = find_tied(model) if _has_possible_ties(names) else ()
    params = _param_records(nodes, names, tied)
    root = modules[0]
    notes: list[str] = []
    findings: list[Finding] = []
    if compiled:
        notes.append("compiled with torch.compile: names are shown without the _orig_mod. prefix")
    lazy = _lazy_records(nodes)
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
    if example_inputs is not None or example_kwargs is not None or input_size is not None:
        report = _with_trace(report, model, example_inputs, example_kwargs=example_kwargs,
                             input_size=input_size, dtypes=dtypes, device=device, mode=mode)
        findings.extend(report.findings)
        notes.extend(report.notes)
    return replace(report, findings=tuple(findings), notes=tuple(notes))


def _has_possible_ties(names: dict[int, list[tuple[str, ParamKind]]]) -> bool:
    # find_tied walks every tensor again; skip it when nothing can be shared. Distinct tensor
    # objects may still share storage, so only a model with no tensors at all is skipped.
    return bool(names)


def _lazy_records(nodes: list[_Node]) -> tuple[LazyRecord, ...]:
    out: list[LazyRecord] = []
    for node in nodes:
        module = node.module
        lazy_names = tuple(
            k for k in node.param_names if _is_lazy(module._parameters[k])  # type: ignore[arg-type]
        ) + tuple(k for k in node.buffer_names if _is_lazy(module._buffers[k]))  # type: ignore[arg-type]
        if lazy_names:
            out.append(LazyRecord(node.path, type(module).__name__, lazy_names,
                                  _known_attributes(module)))
    return tuple(out)


_KNOWN_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size",
                "stride", "padding", "num_features", "groups", "bias")


def _known_attributes(module: nn.Module) -> tuple[tuple[str, str], ...]:
    known: list[tuple[str, str]] = []
    for attr in _KNOWN_ATTRS:
        if attr == "bias":
            continue
        value = getattr(module, attr, None)
        if isinstance(value, (int, tuple)) and not (attr.startswith("in_") and value == 0):
            known.append((attr, str(value)))
    return tuple(known)


def _with_trace(report: Report, model: nn.Module, example_inputs: Any, **options: Any) -> Report:
    from torchscope.trace import trace_forward

    result = trace_forward(model, example_inputs, **options)
    calls: dict[str, list[Any]] = {}
    for path, call in result.calls:
        calls.setdefault(path, []).append(call)
    modules = tuple(
        replace(m, calls=tuple(calls.get(m.path, ())), called=m.path in calls)
        for m in report.modules
    )
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

