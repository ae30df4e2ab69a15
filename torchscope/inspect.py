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

import gc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]

from torchscope.distributed import fsdp_module_type, unwrap_wrappers
from torchscope.records import (
    Finding,
    LazyRecord,
    ModuleRecord,
    ParamKind,
    ParamRecord,
    Report,
    Spec,
    TiedGroup,
)
from torchscope.tying import check_ties, tied_groups, unique_size

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
    """Per-module scratch data while walking (turned into a frozen record at the end).

    ``s_*`` sum the module's own tensors that share memory with nothing else; ``t_*`` are the
    subtree totals (simple parts summed bottom-up, shared parts added tie-aware per node).
    Numbers default to class attributes so that creating a node stays cheap.
    """

    s_params = s_trainable = s_buffers = s_pbytes = s_bbytes = 0
    t_params = t_trainable = t_buffers = t_pbytes = t_bbytes = 0
    own_params = own_buffers = lazy = 0
    shared: list[tuple[torch.Tensor, ParamKind]] | None = None

    def __init__(self, module: nn.Module, path: str, depth: int, parent: int | None,
                 tensors: list[tuple[str, torch.Tensor, ParamKind]]) -> None:
        self.module = module
        self.path = path
        self.depth = depth
        self.parent = parent
        self.tensors = tensors  # own (local name, tensor, kind), parameters first
        self.children: list[str] = []
        self.aliases: list[str] = []
        self.dtypes: set[str] = set()
        self.devices: set[str] = set()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(k for k, _, kind in self.tensors if kind is _PARAM)

    @property
    def buffer_names(self) -> tuple[str, ...]:
        return tuple(k for k, _, kind in self.tensors if kind is not _PARAM)


def _is_lazy(t: torch.Tensor) -> bool:
    return isinstance(t, UninitializedTensorMixin)


def _dtensor_type() -> type | None:
    """``DTensor`` when torch.distributed.tensor was imported (no DTensor exists otherwise)."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def _local(t: torch.Tensor, dtensor: type | None) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself otherwise)."""
    if dtensor is not None and isinstance(t, dtensor):
        local: torch.Tensor = t._local_tensor  # type: ignore[attr-defined]
        return local
    return t


def _layout(t: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...], str]:
    """(global shape, local shape, placements, mesh) of a DTensor."""
    mesh = t.device_mesh  # type: ignore[attr-defined]
    placements = tuple(str(p) for p in t.placements)  # type: ignore[attr-defined]
    mesh_text = f"{mesh.device_type}{tuple(mesh.mesh.shape)}"
    names = getattr(mesh, "mesh_dim_names", None)
    if names:
        mesh_text += "[" + ",".join(names) + "]"
    return tuple(t.shape), tuple(t._local_tensor.shape), placements, mesh_text  # type: ignore[attr-defined]


Names = dict[int, list[tuple[str, ParamKind]]]


def _walk_nodes(model: nn.Module) -> tuple[list[_Node], Names, set[int]]:
    """Pre-order nodes (as named_modules() dedups them), every name of every tensor, and the
    ids of tensors that need the tie-aware path: several names, or memory shared with another
    tensor object (same device and storage pointer; on meta the storage implementation)."""
    nodes: list[_Node] = []
    seen: dict[int, int] = {}
    names: Names = {}
    shared: set[int] = set()
    first: dict[tuple[int, int, int], int] = {}
    stack: list[tuple[nn.Module, str, int, int | None]] = [(model, "", 0, None)]
    pop, push = stack.pop, stack.append
    lazy_cls = UninitializedTensorMixin
    dtensor = _dtensor_type()
    while stack:
        module, path, depth, parent = pop()
        index = seen.get(id(module))
        if index is not None:  # registered under a second name: an alias of that module
            nodes[index].aliases.append(path)
            _alias_names(module, path, names, shared)
            continue
        index = len(nodes)
        seen[id(module)] = index
        prefix = path + "." if path else ""
        tensors: list[tuple[str, torch.Tensor, ParamKind]] = []
        params = module._parameters
        buffers = module._buffers
        if params or buffers:
            nonpersistent = module._non_persistent_buffers_set
            for k, v, kind in _own_items(params, buffers, nonpersistent):
                tensors.append((k, v, kind))
                tid = id(v)
                known = names.get(tid)
                if known is not None:
                    known.append((prefix + k, kind))
                    shared.add(tid)
                    continue
                names[tid] = [(prefix + k, kind)]
                if isinstance(v, lazy_cls) or v.numel() == 0:
                    continue
                if dtensor is not None:
                    v = _local(v, dtensor)
                if not v.is_contiguous():  # strided or expanded: count its unique bytes
                    shared.add(tid)
                storage = v.untyped_storage()
                ptr = storage.data_ptr()
                key = (v.get_device(), ptr, 0) if ptr else (v.get_device(), 0, storage._cdata)
                other = first.setdefault(key, tid)
                if other != tid:
                    shared.add(tid)
                    shared.add(other)
        nodes.append(_Node(module, path, depth, parent, tensors))
        if parent is not None:
            nodes[parent].children.append(path)
        children = module._modules
        if children:
            for name, child in reversed(children.items()):
                if child is not None:
                    push((child, prefix + name, depth + 1, index))
    return nodes, names, shared


def _own_items(
    params: dict[str, nn.Parameter | None], buffers: dict[str, torch.Tensor | None],
    nonpersistent: set[str],
) -> Iterator[tuple[str, torch.Tensor, ParamKind]]:
    for k, v in params.items():
        if v is not None:
            yield k, v, _PARAM
    for k, b in buffers.items():
        if b is not None:
            yield k, b, _NPBUF if k in nonpersistent else _BUF


def _alias_names(module: nn.Module, path: str, names: Names, shared: set[int]) -> None:
    for mod_name, sub in module.named_modules(prefix=path, remove_duplicate=False):
        prefix = mod_name + "." if mod_name else ""
        for k, t, kind in _own_items(sub._parameters, sub._buffers,
                                     sub._non_persistent_buffers_set):
            names.setdefault(id(t), []).append((prefix + k, kind))
            shared.add(id(t))


_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def _device_name(device: torch.device) -> str:
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


def _account(nodes: list[_Node], shared_ids: set[int]) -> None:
    """Fill own and tie-aware subtree totals of every node (DTensor: global counts, local
    bytes)."""
    dtensor = _dtensor_type()
    for node in nodes:
        if not node.tensors:
            continue
        dtypes, devices = node.dtypes, node.devices
        for _, t, kind in node.tensors:
            dtypes.add(_dtype_name(t.dtype))
            devices.add(_device_name(t.device))
            if isinstance(t, UninitializedTensorMixin):
                node.lazy += 1
                continue
            if id(t) in shared_ids:
                if node.shared is None:
                    node.shared = []
                node.shared.append((t, kind))
                continue
            n = t.numel()
            nbytes = (n if dtensor is None else _local(t, dtensor).numel()) * t.element_size()
            if kind is _PARAM:
                node.s_params += n
                node.s_pbytes += nbytes
                if t.requires_grad:
                    node.s_trainable += n
            else:
                node.s_buffers += n
                node.s_bbytes += nbytes
        node.own_params, node.own_buffers = node.s_params, node.s_buffers
        if node.shared:  # ties inside one module count once
            p_numel, _, _, b_numel, _ = _unique_parts(node.shared)
            node.own_params += p_numel
            node.own_buffers += b_numel
    # bottom-up sums of the simple parts (pre-order: children come after their parent)
    for node in reversed(nodes):
        if node.tensors:
            node.t_params += node.s_params
            node.t_trainable += node.s_trainable
            node.t_buffers += node.s_buffers
            node.t_pbytes += node.s_pbytes
            node.t_bbytes += node.s_bbytes
        elif not node.children:
            continue  # a leaf without tensors adds nothing to its parent
        if node.parent is not None:
            parent = nodes[node.parent]
            parent.t_params += node.t_params
            parent.t_trainable += node.t_trainable
            parent.t_buffers += node.t_buffers
            parent.t_pbytes += node.t_pbytes
            parent.t_bbytes += node.t_bbytes
            if node.lazy:
                parent.lazy += node.lazy
            if node.dtypes:
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
    p_numel, p_bytes = _unique_size(params)
    t_numel, _ = _unique_size([t for t in params if t.requires_grad])
    b_numel, b_bytes = _unique_size([t for t, kind in tensors if kind is not _PARAM])
    return p_numel, p_bytes, t_numel, b_numel, b_bytes


def _unique_size(tensors: Sequence[torch.Tensor]) -> tuple[int, int]:
    """:func:`unique_size` with DTensors counted by their global elements (bytes stay local,
    as everywhere in a report): tied DTensors otherwise count only this rank's shard."""
    dtensor = _dtensor_type()
    sharded = [] if dtensor is None else [t for t in tensors if isinstance(t, dtensor)]
    if dtensor is None or not sharded:
        return unique_size(tensors)
    _, nbytes = unique_size(tensors)
    plain_numel, _ = unique_size([t for t in tensors if not isinstance(t, dtensor)])
    return plain_numel + sum({id(t): t.numel() for t in sharded}.values()), nbytes


def walk(model: nn.Module) -> Iterator[ModuleRecord]:
    """Yield a :class:`~torchscope.records.ModuleRecord` per module, in pre-order.

    Paths are exactly as ``model.named_modules()`` names them (the root is ``""``); a module
    registered under two names is one record whose ``aliases`` holds the other names.

    >>> import torchscope
    >>> root = next(torchscope.walk(torchscope.examples.MLP()))
    >>> root.type_name, root.total_params
    ('MLP', 7946)
    """
    with _no_gc():
        nodes, _, shared_ids = _walk_nodes(model)
        records = _module_records(nodes, shared_ids)
    yield from records


def _module_records(nodes: list[_Node], shared_ids: set[int]) -> list[ModuleRecord]:
    _account(nodes, shared_ids)
    fsdp = fsdp_module_type()  # None unless FSDP was imported: no module can be one then
    out: list[ModuleRecord] = []
    append = out.append
    empty: tuple[str, ...] = ()
    for node in nodes:
        module = node.module
        tags = empty
        cls_name = type(module).__name__
        if cls_name.startswith("Parametrized") and hasattr(module, "parametrizations"):
            tags = ("parametrized",)
        elif cls_name == "OptimizedModule":
            tags = ("compiled",)
        elif fsdp is not None and isinstance(module, fsdp):
            tags = ("fsdp",)
        if node.tensors:
            param_names, buffer_names = node.param_names, node.buffer_names
            dtypes, devices = tuple(sorted(node.dtypes)), tuple(sorted(node.devices))
        else:
            param_names = buffer_names = empty
            dtypes = tuple(sorted(node.dtypes)) if node.dtypes else empty
            devices = tuple(sorted(node.devices)) if node.devices else empty
        # positional construction: keyword construction of a 22-field frozen record costs 2x
        append(ModuleRecord(
            node.path, cls_name, node.depth,
            None if node.parent is None else nodes[node.parent].path,
            tuple(node.children), tuple(node.aliases) if node.aliases else empty,
            param_names, buffer_names,
            node.own_params, node.own_buffers, node.t_params, node.t_trainable,
            node.t_buffers, node.t_pbytes, node.t_bbytes,
            node.lazy, dtypes, devices, module.training, tags,
        ))
    return out


def list_parameters(model: nn.Module) -> tuple[ParamRecord, ...]:
    """Every parameter and buffer once, with every name it is reachable under.

    A Parameter reachable under two names (a shared layer, tied embeddings) is one record
    whose ``aliases`` holds the other names; ``tie_group`` indexes :func:`find_tied`'s groups.

    >>> import torchscope
    >>> recs = torchscope.list_parameters(torchscope.examples.SharedMLP())
    >>> [(r.name, r.aliases) for r in recs][2]
    ('2.weight', ('4.weight',))
    """
    with _no_gc():
        nodes, names, shared_ids = _walk_nodes(model)
        params, _ = _params_and_ties(nodes, names, shared_ids)
    return params


def _params_and_ties(nodes: list[_Node], names: Names, shared_ids: set[int],
                     ) -> tuple[tuple[ParamRecord, ...], tuple[TiedGroup, ...]]:
    """Parameter records (parameters first, then buffers, in traversal order, as
    ``named_parameters``/``named_buffers`` list them) and the tied groups among them."""
    records: list[ParamRecord] = []
    seen: set[int] = set()
    dtensor = _dtensor_type()
    shared_entries: list[tuple[torch.Tensor, list[str], int]] = []
    for want_param in (True, False):
        for node in nodes:
            path = node.path
            for _, t, kind in node.tensors:
                if (kind is _PARAM) is not want_param:
                    continue
                tid = id(t)
                if tid in seen:
                    continue
                seen.add(tid)
                all_names = names[tid]
                name = all_names[0][0]
                aliases = tuple(n for n, _ in all_names[1:]) if len(all_names) > 1 else ()
                if tid in shared_ids:
                    shared_entries.append((t, [n for n, _ in all_names], len(records)))
                if isinstance(t, UninitializedTensorMixin):
                    records.append(ParamRecord(
                        name, aliases, path, None, _dtype_name(t.dtype), _device_name(t.device),
                        None, None, bool(t.requires_grad), True, None, kind,
                    ))
                    continue
                n = t.numel()
                if dtensor is not None and isinstance(t, dtensor):
                    global_shape, local_shape, placements, mesh = _layout(t)
                    local = _local(t, dtensor)
                    records.append(ParamRecord(
                        name, aliases, path, global_shape, _dtype_name(t.dtype),
                        _device_name(local.device), n, local.numel() * t.element_size(),
                        t.requires_grad, False, None, kind, global_shape, local_shape,
                        placements, mesh,
                    ))
                    continue
                records.append(ParamRecord(
                    name, aliases, path, tuple(t.shape), _dtype_name(t.dtype),
                    _device_name(t.device), n, n * t.element_size(), t.requires_grad, False,
                    None, kind,
                ))
    tied = tied_groups(shared_entries)
    position_of = {entry_names[0]: position for _t, entry_names, position in shared_entries}
    for index, group in enumerate(tied):
        for name in group.names:
            position = position_of.get(name)
            if position is not None:
                records[position] = replace(records[position], tie_group=index)
    return tuple(records), tied


def summarize(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    example_kwargs: dict[str, Any] | None = None,
    input_size: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
    device: torch.device | str | None = None,
    mode: str = "auto",
    distributed: bool = False,
    follow_functions: bool = False,
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
    if distributed:
        from torchscope.distributed import gather_report

        try:
            local = summarize(model, example_inputs, example_kwargs=example_kwargs,
                              input_size=input_size, dtypes=dtypes, device=device, mode=mode,
                              follow_functions=follow_functions)
        except Exception as err:
            gather_report(err)  # every rank raises, naming the failed ranks: nobody waits
            raise
        return gather_report(local)
    model, unwrapped = unwrap_wrappers(model)  # torch.compile, DDP, DataParallel
    with _no_gc():
        nodes, names, shared_ids = _walk_nodes(model)
        modules = _module_records(nodes, shared_ids)
        params, tied = _params_and_ties(nodes, names, shared_ids)
    root = modules[0]
    notes: list[str] = list(unwrapped)
    findings: list[Finding] = []
    lazy = _lazy_records(nodes)  # before the trace: inferred shapes come from it
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
                             input_size=input_size, dtypes=dtypes, device=device, mode=mode,
                             follow_functions=follow_functions)
        findings.extend(report.findings)
        notes.extend(report.notes)
    findings.extend(check_ties(model))
    if report.lazy:
        from torchscope.lazy import check_lazy

        findings.extend(check_lazy(model))
    return replace(report, findings=tuple(findings), notes=tuple(notes))


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building many small records otherwise triggers
    full collections over the model's objects, which makes the walk quadratic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _lazy_records(nodes: list[_Node]) -> tuple[LazyRecord, ...]:
    if not any(node.lazy for node in nodes[:1]):  # the root's count covers the whole tree
        return ()
    from torchscope.lazy import lazy_record

    records = (lazy_record(node.module, node.path) for node in nodes
               if any(_is_lazy(t) for _, t, _ in node.tensors))
    return tuple(r for r in records if r is not None)


def _with_trace(report: Report, model: nn.Module, example_inputs: Any, **options: Any) -> Report:
    """The report with the calls of one traced forward; lazy tensors get their inferred shapes
    from the same forward (it runs on a copy whose lazy layers materialize)."""
    from torchscope.trace import trace_forward

    if report.lazy:
        from torchscope.lazy import inferred_numel, trace_lazy

        result, lazy = trace_lazy(model, example_inputs, lazy=report.lazy, **options)
        inferred = inferred_numel(lazy, params=report.params)
        report = replace(
            report, lazy=lazy,
            inferred_params=None if inferred is None else report.total_params + inferred,
        )
    else:
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

