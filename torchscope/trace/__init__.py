"""Forward tracing with hooks: the specs that flow through every module call, on real, meta or
fake tensors, under a guard that leaves the model exactly as it was.

One pair of *global* module hooks (``register_module_forward_pre_hook`` /
``register_module_forward_hook``) records every call of a module of the traced tree: its global
call order, input/keyword/output specs (shape, dtype, device, keeping the structure of tuples,
lists, dicts, dataclasses and transformers ``ModelOutput``\\ s) and the data flow between calls.

Three execution modes:

* ``real``: the given tensors on the model as it is (under :func:`state_guard`, ``no_grad``).
* ``meta``: a :func:`meta_copy` of the model (no parameter or activation memory; ties kept),
  also when the model already lives on ``meta``.
* ``fake``: a copy whose tensors are ``FakeTensor``\\ s (``FakeTensorMode``): runs what meta
  cannot, e.g. the ``.item()`` calls of transformers attention masks.

>>> import torchscope
>>> from torchscope.examples import MLP
>>> result = torchscope.trace_forward(MLP(), input_size=[(2, 20)])
>>> result.mode, result.outputs.shape
('meta', (2, 10))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.nn.modules import module as _module_mod
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]
from torch.overrides import TorchFunctionMode

from torchscope._torch import (
    fsdp_module_type,
    fsdp_resharded,
    gc_paused,
    is_lazy,
    recursion_room,
    unwrap_compiled,
)
from torchscope.errors import ForwardError, InputSpecError
from torchscope.records import (
    CallRecord,
    Finding,
    FlowEdge,
    Spec,
    TensorSpec,
    ValueSpec,
    spec_text,
)
from torchscope.trace._guard import (
    _Guard,
    copy_to_meta,
    copy_with,
    fake_copy,
    meta_copy,
    module_tree,
    own_copy,
    shallow_copy,
    state_guard,
)
from torchscope.trace._inputs import (
    _build_spec,
    _TensorSpecs,
    build_inputs,
    input_plan,
    load_json,
    make_inputs,
    map_tensors,
    parse_device,
    spec_of,
    tensors_in,
)

__all__ = [
    "MODES",
    "Mode",
    "TraceResult",
    "build_inputs",
    "copy_with",
    "fake_copy",
    "input_plan",
    "load_json",
    "make_inputs",
    "map_tensors",
    "copy_to_meta",
    "meta_copy",
    "module_tree",
    "own_copy",
    "parse_device",
    "shallow_copy",
    "spec_of",
    "state_guard",
    "tensors_in",
    "trace_forward",
]

#: How a forward runs: on meta tensors, fake tensors, real memory, or the first that works.
Mode = Literal["auto", "real", "meta", "fake"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True, slots=True)
class TraceResult:
    """What one traced forward saw.

    ``mode`` is the mode that actually ran (``real``/``meta``/``fake``); ``calls`` pairs each
    module path (as ``named_modules()`` names it; a module reachable under several names gets
    its first name) with one :class:`~torchscope.records.CallRecord`, in call order;
    ``uncalled`` lists the paths never called; ``flow`` the data flow between calls (see
    :func:`trace_forward` for the rule); ``findings`` (none yet: parameters without
    gradient are :func:`torchscope.find_unused_parameters`' job); ``notes`` say
    which mode ran and why.
    """

    mode: str
    calls: tuple[tuple[str, CallRecord], ...]
    uncalled: tuple[str, ...]
    inputs: tuple[Spec, ...]
    input_kwargs: tuple[tuple[str, Spec], ...]
    outputs: Spec
    flow: tuple[FlowEdge, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]

    def calls_of(self, path: str) -> tuple[CallRecord, ...]:
        """The calls of the module at ``path``, in order (empty when it was never called)."""
        return tuple(call for p, call in self.calls if p == path)


# ---------------------------------------------------------------------------------------------
# the recorder


class _Recorder:
    """The pair of global hooks and what they record; one per traced forward.

    ``calls[i]`` is ``[path, input specs, kwarg specs, output spec, id(module)]``; ``stack``
    the indices of the active calls; ``producers`` maps ``id(tensor)`` to ``(weakref, call
    indices, spec)`` — the calls that output that very tensor object, innermost first (``None``
    for a graph input), and its spec; ``edges`` the raw flow ``(src, dst, spec)``.
    """

    __slots__ = ("calls", "edges", "many", "paths", "post", "pre", "producers", "specs",
                 "stack")

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.calls: list[list[Any]] = []
        self.stack: list[int] = []
        self.producers: dict[int, tuple[Any, tuple[int | None, ...], TensorSpec | None]] = {}
        self.edges: list[tuple[int | None, int | None, TensorSpec]] = []
        self.specs = _TensorSpecs()
        self.many = [False]  # True once some edge may be recorded twice (see _result)
        self.pre, self.post = self._hooks()

    def _hooks(self) -> tuple[Callable[..., None], Callable[..., None]]:
        paths_get = self.paths.get
        calls = self.calls
        stack = self.stack
        producers = self.producers
        producers_get = producers.get
        edges_append = self.edges.append
        specs = self.specs
        cache_get = specs.cache.get
        tensor_t = torch.Tensor
        ref = weakref.ref
        build = _build_spec

        many = self.many

        def tensor_in(t: torch.Tensor, idx: int) -> TensorSpec:
            many[0] = True  # several tensors into one call: the same edge may come twice
            entry = producers_get(id(t))
            if entry is not None and entry[0]() is t:
                # the spec it was returned with: a tensor reshaped in place (unsqueeze_) between
                # two module calls would keep its old spec; reading the shape again here would
                # cost as much as the rest of the hook
                spec = entry[2] or specs(t)  # None: made by a torch function (follow_functions)
                for src in entry[1]:
                    edges_append((src, idx, spec))
                return spec
            return cache_get((t.shape, t.dtype, t.device)) or specs(t)

        def tensor_out(t: torch.Tensor, idx: int) -> TensorSpec:
            key = id(t)
            entry = producers_get(key)
            if entry is not None and entry[0]() is t:
                spec = entry[2]
                if spec is None or t.shape != spec.shape:
                    spec = specs(t)
                # Producers made inside this call (indices after it) stay: this call wraps
                # them (a container returning its last child's output, or with
                # follow_functions a sum of its children's outputs); producers from outside
                # (a tensor given to this call and returned as is, or the skip of a residual
                # sum) are replaced by this call. The outermost call keeps the graph inputs of
                # such a sum: a residual around the whole model reaches the output node.
                srcs = entry[1]
                inner = tuple([s for s in srcs if s is not None and s > idx])
                if not inner:
                    producers[key] = (entry[0], (idx,), spec)
                elif not stack and None in srcs:
                    producers[key] = (entry[0], (*inner, None, idx), spec)
                else:
                    producers[key] = (entry[0], (*inner, idx), spec)
                return spec
            spec = cache_get((t.shape, t.dtype, t.device)) or specs(t)
            producers[key] = (ref(t), (idx,), spec)
            return spec

        def pre(module: nn.Module, args: tuple[Any, ...],
                kwargs: dict[str, Any] | None = None) -> None:
            mid = id(module)
            path = paths_get(mid)
            if path is None:
                return
            idx = len(calls)
            stack.append(idx)
            if len(args) == 1 and type(args[0]) is tensor_t:  # the common case, inlined
                t = args[0]
                entry = producers_get(id(t))
                if entry is not None and entry[0]() is t:
                    spec = entry[2] or specs(t)  # the spec it was returned with (tensor_in)
                    for src in entry[1]:
                        edges_append((src, idx, spec))
                else:
                    spec = cache_get((t.shape, t.dtype, t.device)) or specs(t)
                ins: tuple[Spec, ...] = (spec,)
            else:
                ins = tuple(build(a, lambda t: tensor_in(t, idx)) for a in args)
            if kwargs:
                kws: tuple[tuple[str, Spec], ...] = tuple(
                    (k, build(v, lambda t: tensor_in(t, idx))) for k, v in kwargs.items())
            else:
                kws = ()
            calls.append([path, ins, kws, _RAISED, mid])

        def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not stack:
                return
            mid = id(module)
            idx = stack[-1]
            call = calls[idx]
            if call[4] != mid:
                if mid not in paths:  # a module outside the traced tree
                    return
                # calls that raised and were caught inside a forward never got here: skip them
                while stack and calls[stack[-1]][4] != mid:
                    stack.pop()
                if not stack:
                    return
                idx = stack[-1]
                call = calls[idx]
            stack.pop()
            if type(output) is tensor_t:  # the common case, inlined (see tensor_out)
                key = id(output)
                entry = producers_get(key)
                if entry is None or entry[0]() is not output:
                    spec = cache_get((output.shape, output.dtype, output.device)) or specs(output)
                    producers[key] = (ref(output), (idx,), spec)
                    call[3] = spec
                else:
                    call[3] = tensor_out(output, idx)
            else:
                call[3] = build(output, lambda t: tensor_out(t, idx))

        paths = self.paths
        return pre, post

    def add_graph_input(self, value: object) -> None:
        for t in tensors_in(value):
            self.producers[id(t)] = (weakref.ref(t), (None,), self.specs(t))

    def graph_output(self, value: object) -> Spec:
        if not isinstance(value, torch.Tensor):
            self.many[0] = True  # the same tensor may be returned twice

        def on_tensor(t: torch.Tensor) -> TensorSpec:
            spec = self.specs(t)
            entry = self.producers.get(id(t))
            if entry is not None and entry[0]() is t:
                for src in entry[1]:
                    self.edges.append((src, None, spec))
            return spec

        return _build_spec(value, on_tensor)

    @contextmanager
    def hooked(self, modules: list[nn.Module]) -> Iterator[None]:
        pre_handle = _module_mod.register_module_forward_pre_hook(self.pre)
        hid = pre_handle.id
        marked: list[dict[int, bool]] = []
        try:
            # The global pre-hook gets keyword inputs for the modules whose
            # _forward_pre_hooks_with_kwargs holds its id (that is how Module._call_impl
            # decides): one dict entry per module instead of one hook registration each.
            for m in modules:
                d = m.__dict__.get("_forward_pre_hooks_with_kwargs")
                if d is not None:
                    d[hid] = True
                    marked.append(d)
            post_handle = _module_mod.register_module_forward_hook(self.post)
            try:
                yield
            finally:
                post_handle.remove()
        finally:
            pre_handle.remove()
            for d in marked:
                d.pop(hid, None)


_RAISED = ValueSpec("<raised>")  # the output of a call whose forward raised


#: Torch functions whose result does not depend on the values of their tensor arguments.
_SHAPE_ONLY = frozenset({
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
    torch.randn_like, torch.randint_like, torch.Tensor.new_zeros, torch.Tensor.new_ones,
    torch.Tensor.new_empty, torch.Tensor.new_full,
})


_SETITEM = torch.Tensor.__setitem__


class _FollowFunctions(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """A tensor made by torch functions (``x + y``, ``view``, ``torch.cat``) gets the
    producers of the tensors it was made from, so data flow crosses functional code.

    An output that already has producers (an in-place op returns its input) gets the union.
    The spec of such a tensor is read only when a module call consumes it.
    """

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.producers = recorder.producers

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **kwargs) if kwargs else func(*args)
        if func in _SHAPE_ONLY:  # zeros_like(x) reads x's shape, not its values
            return out
        if isinstance(out, torch.Tensor):
            outs: Any = (out,)
        elif func is _SETITEM:  # t[i] = v changes t in place and returns None
            outs = args[:1]
        elif isinstance(out, (tuple, list)):
            outs = [t for t in out if isinstance(t, torch.Tensor)]
            if not outs:
                return out
        else:  # attribute reads (t.shape), scalars, None: nothing to follow
            return out
        producers = self.producers
        get = producers.get
        srcs: dict[int | None, None] = {}
        for t in tensors_in(args) if not kwargs else tensors_in((args, kwargs)):
            entry = get(id(t))
            if entry is not None and entry[0]() is t:
                srcs.update(dict.fromkeys(entry[1]))
        if not srcs:
            return out
        merged = tuple(srcs)
        for t in outs:
            key = id(t)
            entry = get(key)
            if entry is None or entry[0]() is not t:
                producers[key] = (weakref.ref(t), merged, None)
            elif entry[1] != merged:  # in place (x += y, x.add_(y)): both histories
                union = tuple(dict.fromkeys((*entry[1], *merged)))
                producers[key] = (entry[0], union, None)
        return out


@contextmanager
def _following(recorder: _Recorder) -> Iterator[None]:
    """Follow tensors through torch functions while the block runs (see
    :class:`_FollowFunctions`). The mode goes *below* the torch function modes already active
    (the sync detector's): they keep seeing the model's own frames, not this mode's."""
    mode = _FollowFunctions(recorder)
    above = [torch._C._pop_torch_function_stack()
             for _ in range(torch._C._len_torch_function_stack())]
    torch._C._push_on_torch_function_stack(mode)
    for m in reversed(above):
        torch._C._push_on_torch_function_stack(m)
    try:
        yield
    finally:
        rest = [torch._C._pop_torch_function_stack()
                for _ in range(torch._C._len_torch_function_stack())]
        for m in reversed(rest):
            if m is not mode:
                torch._C._push_on_torch_function_stack(m)


# ---------------------------------------------------------------------------------------------
# tracing


class _ModeFailed(Exception):
    """A forward (or the copy it needs) raised in one mode; ``stage`` says which."""

    def __init__(self, mode: str, error: BaseException, recorder: _Recorder | None,
                 model_type: str, *, stage: str = "forward") -> None:
        super().__init__(str(error))
        self.stage = stage
        self.mode = mode
        self.error = error
        self.recorder = recorder
        self.model_type = model_type


@dataclass(slots=True)
class _Scan:
    """One pass over a module tree: modules and paths (pre-order), where its tensors live."""

    modules: list[nn.Module]
    paths: list[str]
    all_meta: bool  # every parameter and buffer initialized and on meta (at least one)
    has_lazy: bool  # some parameter or buffer is uninitialized
    device: torch.device | None  # the device of the first initialized tensor


def _scan(model: nn.Module,
          tree: tuple[list[nn.Module], list[str]] | None = None) -> _Scan:
    """The scan of ``model``; ``tree``: its modules and paths when the caller has read them
    already (in ``named_modules()`` order)."""
    modules, paths = tree if tree is not None else module_tree(model)
    all_meta = True
    found = has_lazy = False  # found: an initialized tensor
    device: torch.device | None = None
    for m in modules:
        for group in (m._parameters, m._buffers):
            if not group:
                continue
            for t in group.values():
                if t is None:
                    continue
                if isinstance(t, UninitializedTensorMixin):
                    has_lazy = True
                    continue
                found = True
                if device is None:
                    device = t.device
                if all_meta and not t.is_meta:
                    all_meta = False
    return _Scan(modules, paths, found and all_meta and not has_lazy, has_lazy, device)


def _run(model: nn.Module, scan: _Scan, mode: str, args: tuple[Any, ...],
         kwargs: dict[str, Any], plan: list[tuple[tuple[int, ...], torch.dtype]] | None,
         device: torch.device | None, notes: list[str],
         follow_functions: bool = False) -> TraceResult:
    """Trace one forward in ``mode``; raises :class:`_ModeFailed` when the forward raises.

    ``plan``: the (shape, dtype) of inputs to build, made here for the mode that runs: on
    meta, as fake tensors, or (real mode only) with memory on the device given or the
    model's."""
    fake_mode: Any = None
    target = model
    model_dev = scan.device if scan.device is not None and scan.device.type != "meta" else None
    here = device if device is not None and device.type != "meta" else model_dev
    try:
        if mode == "meta":
            # a copy also when the model is on meta already: a forward may cache things in
            # plain attributes (rotary tables, masks), which the state guard does not cover
            target = copy_to_meta(model)
            if plan is not None:
                args = make_inputs(plan, torch.device("meta"))
            args = map_tensors(args, _to_meta)
            kwargs = map_tensors(kwargs, _to_meta)
        elif mode == "fake":
            from torch._subclasses.fake_tensor import FakeTensorMode

            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            target = fake_copy(model, fake_mode)
            if plan is not None:  # on the model's device, meta included (fake meta tensors)
                with fake_mode:
                    args = make_inputs(plan, device or scan.device or torch.device("cpu"))
            args = map_tensors(args, fake_mode.from_tensor)
            kwargs = map_tensors(kwargs, fake_mode.from_tensor)
        else:
            if plan is not None:
                args = make_inputs(plan, here or torch.device("cpu"))
            if scan.has_lazy:
                target = shallow_copy(model)
                notes.append("the model has uninitialized (lazy) tensors: traced a copy sharing "
                             "its initialized tensors, so the model stays uninitialized")
    except InputSpecError:
        raise
    except Exception as err:  # the copy could not be made (deepcopy of an odd attribute)
        raise _ModeFailed(mode, err, None, type(model).__name__, stage="copy") from err

    if target is not model:
        scan = _scan(target)
    modules, path_list = scan.modules, scan.paths
    paths = dict(zip(map(id, modules), path_list))
    recorder = _Recorder(paths)
    guard = _Guard(modules, watch=mode == "real")
    try:
        guard.start()
        recorder.add_graph_input(args)
        recorder.add_graph_input(kwargs)
        with contextlib.ExitStack() as stack:
            stack.enter_context(recorder.hooked(modules))
            if follow_functions:
                stack.enter_context(_following(recorder))
            if target is model:  # FSDP2 leaves the root unit unsharded after a forward

                if fsdp_module_type() is not None:  # else no module can be an FSDP unit
                    stack.enter_context(fsdp_resharded(modules))
            stack.enter_context(torch.no_grad())
            if fake_mode is not None:
                stack.enter_context(_quiet_logger("torch._subclasses.fake_tensor"))
                stack.enter_context(fake_mode)
            try:
                output = target(*args, **kwargs)
            except Exception as err:
                raise _ModeFailed(mode, err, recorder, type(model).__name__) from err
        outputs = recorder.graph_output(output)
        del output
        input_specs = tuple(_build_spec(a, recorder.specs) for a in args)
        kw_specs = tuple((k, _build_spec(v, recorder.specs)) for k, v in kwargs.items())
    finally:
        guard.restore(own_hooks=2)
    if mode != "real":
        notes.extend(_blind_spots(mode, modules, recorder))
    return _result(mode, target, modules, path_list, recorder, input_specs, kw_specs, outputs,
                   notes)


def _blind_spots(mode: str, modules: list[nn.Module], recorder: _Recorder) -> list[str]:
    """What a meta or fake forward could not check and a real one would: inputs whose
    floating dtype differs from the module's own parameters (a real Linear raises on bfloat16
    inputs into float32 weights; meta kernels do not check), and indices (token ids,
    positions) into embeddings, whose values meta and fake tensors do not have."""
    by_id = {id(m): m for m in modules}
    mismatched: list[str] = []
    indexed: list[str] = []
    seen: set[str] = set()
    for path, ins, kws, _, mid in recorder.calls:
        if path in seen:
            continue
        seen.add(path)
        module = by_id.get(mid)
        if module is None:
            continue
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            indexed.append(path or "<root>")
            continue
        own = {p.dtype for p in module._parameters.values()
               if p is not None and not is_lazy(p) and p.is_floating_point()}
        if not own:
            continue
        given = {s.dtype for s in (*ins, *(v for _, v in kws))
                 if isinstance(s, TensorSpec) and s.dtype.startswith(("float", "bfloat"))}
        wrong = sorted(given - {str(d).removeprefix("torch.") for d in own})
        if wrong:
            mismatched.append(f"{path or '<root>'} ({'/'.join(wrong)} into "
                              f"{'/'.join(sorted(str(d).removeprefix('torch.') for d in own))})")
    notes: list[str] = []
    if mismatched:
        shown = ", ".join(mismatched[:3]) + (f" and {len(mismatched) - 3} more"
                                             if len(mismatched) > 3 else "")
        notes.append(f"{mode} tensors do not check dtypes: {shown} got inputs of another dtype "
                     "than their parameters, which a real forward may refuse; run mode='real' "
                     "to be sure")
    if indexed:
        shown = ", ".join(indexed[:3]) + (f" and {len(indexed) - 3} more"
                                          if len(indexed) > 3 else "")
        notes.append(f"{mode} tensors have no values: the indices into {shown} (token ids, "
                     "positions) were not checked against their sizes; a real forward raises "
                     "on an index out of range (run mode='real' to be sure)")
    return notes


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger for a while (FakeTensorMode logs a traceback for every failing op,
    which torchscope reports itself as one ForwardError)."""
    logger = logging.getLogger(name)
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


def _to_meta(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_meta else t.to("meta")


def _result(mode: str, target: nn.Module, modules: list[nn.Module], path_list: list[str],
            recorder: _Recorder, input_specs: tuple[Spec, ...],
            kw_specs: tuple[tuple[str, Spec], ...], outputs: Spec,
            notes: list[str]) -> TraceResult:
    raw = recorder.calls
    calls = [(c[0], CallRecord(i, c[1], c[2], c[3])) for i, c in enumerate(raw)]
    called = {c[0] for c in raw}
    uncalled = tuple([p for p in path_list if p not in called])
    edges = recorder.edges
    if recorder.many[0]:  # drop repeats, keeping the first of each
        edges = list({(src, dst, id(spec)): (src, dst, spec)
                      for src, dst, spec in edges}.values())
    flow = [FlowEdge(src, dst, None if src is None else raw[src][0],
                     None if dst is None else raw[dst][0], spec)
            for src, dst, spec in edges]
    findings: tuple[Finding, ...] = ()  # parameters without gradient: torchscope.training
    return TraceResult(mode=mode, calls=tuple(calls), uncalled=uncalled, inputs=input_specs,
                       input_kwargs=kw_specs, outputs=outputs, flow=tuple(flow), findings=findings,
                       notes=tuple(notes))


def _short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if len(text) > 160:
        text = text[:159] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__




def _forward_error(failed: _ModeFailed, notes: list[str]) -> ForwardError:
    rec = failed.recorder
    where = f"the root module ({failed.model_type})"
    inputs = ""
    ran = ""
    if rec is not None:
        if rec.stack:
            path, ins, kws = rec.calls[rec.stack[-1]][:3]
            if path:
                where = f"module {path!r}"
            parts = [spec_text(s) for s in ins] + [f"{k}={spec_text(s)}" for k, s in kws]
            inputs = f" called with ({', '.join(parts)})"
        finished = [c[0] or "<root>" for c in rec.calls if c[3] is not _RAISED]
        if finished:
            shown = finished[-5:]
            more = f"{len(finished) - len(shown)} more, then " if len(finished) > 5 else ""
            ran = f"; modules that had run: {more}{', '.join(shown)}"
        else:
            ran = "; no module had finished"
    failed_before = [n.split(" ", 1)[0] for n in notes if " failed (" in n]
    tried = f" (auto tried {', '.join(failed_before)} first)" if failed_before else ""
    return ForwardError(
        f"forward of {failed.model_type} raised in {where}{inputs} in {failed.mode} mode"
        f"{ran}: {_short_error(failed.error)}{tried}; check that the example inputs match what "
        "the model expects (sizes, dtypes, keyword names)"
        + ("" if failed.mode == "real" else ", or trace with mode='real'")
    )


def trace_forward(
    model: nn.Module,
    example_inputs: object = None,
    *,
    example_kwargs: Mapping[str, object] | None = None,
    input_size: object = None,
    dtypes: object = None,
    device: object = None,
    mode: Mode = "auto",
    follow_functions: bool = False,
    _tree: tuple[list[nn.Module], list[str]] | None = None,
) -> TraceResult:
    """Run one forward of ``model`` and record every module call, leaving the model unchanged.

    Each call of a module of the tree gets a :class:`~torchscope.records.CallRecord` (global
    call order, input, keyword and output specs); a module called twice gets two. The forward
    runs under ``torch.no_grad()`` and :func:`state_guard`.

    Data flow (``flow``): tensors are followed by identity. A module call that *outputs* a
    tensor object is its producer; a call that outputs a tensor made inside it (a container
    returning its last child's output) is added to the producers, while a call that returns a
    tensor it was given (``nn.Identity``, in-place ``ReLU``) replaces them. There is one
    :class:`~torchscope.records.FlowEdge` for every (producer call, consumer call, spec) where
    the consumer received that tensor as a positional or keyword input: so a container and its
    first child both consume the same tensor, and a container and its last child both produce
    it — the renderer picks the edges of the depth it draws. Graph inputs have ``src=None``;
    the model's outputs give edges with ``dst=None``. Tensors made by functional code (``x +
    y``, ``torch.cat``) between module calls have no producer, so they give no edge — unless
    ``follow_functions=True``: then a tensor made by torch functions gets the producers of the
    tensors it was made from (``y = x + f(x)`` passed to ``g`` gives the edges ``input → g``
    and ``f → g``, the residual connection), and a call that returns such a tensor keeps the
    producers made inside it and replaces those from outside (the outermost call also keeps
    the graph inputs, so a residual around the whole model gives an ``input → output`` edge).

    Modes: ``real`` runs the given tensors on the model (a lazy model runs as a copy sharing its
    initialized tensors, so it stays uninitialized); ``meta`` runs a :func:`meta_copy` (also of
    a model already on meta: the model itself is never run) with inputs moved to ``meta``;
    ``fake`` runs a copy made of ``FakeTensor``\\ s under ``FakeTensorMode``. ``auto`` with
    sizes only tries meta, then fake, then real, and says in ``notes`` which ran and why; with
    tensors given, auto means real (meta when the model is on meta).

    Args:
        model: the module to trace.
        example_inputs: a tensor, or a tuple/list of positional inputs (any Python values;
            to pass one list as the only input, wrap it: ``([a, b],)``).
        example_kwargs: keyword inputs (``{"decoder_input_ids": ids}``).
        input_size: instead of ``example_inputs``: one shape per input; see
            :func:`build_inputs` (zeros, also for integer dtypes).
        dtypes: one dtype per size (``"long"`` for token ids), default ``float32``.
        device: where built inputs go in real mode (default: the model's device); the model is
            never moved.
        mode: ``"auto"``, ``"real"``, ``"meta"`` or ``"fake"``.
        follow_functions: follow tensors through torch functions too (a
            ``TorchFunctionMode``, below any mode already active such as the sync detector's),
            so the flow shows residual connections; costs a little per torch function call.
            Off by default; block diagrams (``torchscope graph``) turn it on.
        _tree: for torchscope's own callers (``summarize``): the model's modules and their
            paths in ``named_modules()`` order, already read, so the tree is read once.

    Returns:
        A :class:`TraceResult` of plain records (it keeps no tensor or module alive).

    Raises:
        InputSpecError: bad inputs, sizes, dtypes, device or mode.
        ForwardError: the forward raised: names the module path where, that call's input
            specs, the modules that had run; the original error is chained.

    >>> from torchscope.examples import FixedHiddenMLP
    >>> result = trace_forward(FixedHiddenMLP(), input_size=[(2, 20)])
    >>> [(path, call.index) for path, call in result.calls]
    [('', 0), ('linear', 1), ('linear', 2)]
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"model = {type(model).__name__} is not a torch.nn.Module; pass the model itself"
        )
    if mode not in MODES:
        raise InputSpecError(f"mode = {mode!r} is not one of {', '.join(MODES)}")
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise InputSpecError(
            f"example_kwargs = {type(example_kwargs).__name__} is not a dict of keyword inputs; "
            "pass e.g. {'attention_mask': mask}"
        )
    kwargs = dict(example_kwargs or {})
    dev = parse_device(device) if device is not None else None
    if mode == "real" and dev is not None and dev.type == "meta":
        raise InputSpecError(
            "mode = 'real' with device = 'meta': a real forward needs inputs with data; use "
            "mode='meta' (shapes without memory) or a device such as 'cpu'"
        )
    plan_inputs: list[tuple[tuple[int, ...], torch.dtype]] | None = None
    built = example_inputs is None
    if not built and input_size is not None:
        raise InputSpecError(
            "both example_inputs and input_size were given; pass one of them"
        )
    if built:
        if input_size is None:
            if not kwargs:
                raise InputSpecError(
                    "trace_forward needs example inputs: pass example_inputs, "
                    "input_size=[(2, 20)] (CLI: --input-size 2,20) or example_kwargs"
                )
            args: tuple[Any, ...] = ()
        else:
            args = ()
            plan_inputs = input_plan(input_size, dtypes)  # checked; built per mode in _run
    else:
        if dtypes is not None:
            raise InputSpecError(
                "dtypes applies to input_size only; give example_inputs the dtype they need"
            )
        if isinstance(example_inputs, (tuple, list)):
            args = tuple(example_inputs)
        elif isinstance(example_inputs, Mapping):
            raise InputSpecError(
                "example_inputs is a dict; pass keyword inputs as example_kwargs=..."
            )
        else:
            args = (example_inputs,)

    model, compiled = unwrap_compiled(model)
    tensors = list(tensors_in((args, kwargs)))
    scan = _scan(model, None if compiled else _tree)
    for where, m in zip(scan.paths, scan.modules):
        if isinstance(m, torch.jit.ScriptModule):
            raise InputSpecError(
                f"{where or '(root)'} ({type(m).__name__}) is a TorchScript module: module hooks "
                "never run inside TorchScript, so its calls cannot be traced; summarize it "
                "without inputs (static), or trace the nn.Module before torch.jit.script/trace"
            )
    model_meta = scan.all_meta

    fsdp = fsdp_module_type()
    if mode != "auto":
        plan = [mode]
    elif built and fsdp is not None and any(isinstance(m, fsdp) for m in scan.modules):
        # FSDP refuses deepcopy (no meta/fake copy) and a forward on meta parameters
        if model_meta:
            raise InputSpecError(
                "an FSDP model whose parameters are on the meta device cannot run a forward "
                "(FSDP refuses meta parameters and copies): summarize it without input sizes, "
                "or materialize it first (model.to_empty(device=...) and initialize)"
            )
        plan = ["real"]
    elif built:  # sizes only: the cheapest mode that works
        plan = ["meta", "fake"] if model_meta else ["meta", "fake", "real"]
    elif model_meta or (tensors and all(t.is_meta for t in tensors)):
        plan = ["meta"]
    else:
        plan = ["real"]
    if plan == ["real"] and model_meta:
        raise InputSpecError(
            "mode = 'real' cannot run a model whose parameters are on the meta device; "
            "use mode='meta' or mode='fake'"
        )

    notes: list[str] = []
    if compiled:
        notes.append("a torch.compile wrapper: traced its original module, eagerly, under the "
                     "names without the _orig_mod. prefix")
    depth = max((p.count(".") + 1 for p in scan.paths if p), default=0)
    for i, current in enumerate(plan):
        try:
            with gc_paused(), recursion_room(depth):  # nested modules run recursively
                result = _run(model, scan, current, args, kwargs, plan_inputs, dev, notes,
                              follow_functions)
        except _ModeFailed as failed:
            if i + 1 < len(plan):
                what = "copy" if failed.stage == "copy" else "forward"
                notes.append(f"{current} {what} failed ({_short_error(failed.error)}), "
                             f"tried {plan[i + 1]}")
                continue
            raise _forward_error(failed, notes) from failed.error
        if mode == "auto":
            if not built:
                why = "tensors given"
            elif plan == ["real"]:
                why = "FSDP modules cannot be copied to meta or fake tensors"
            elif current == "meta":
                why = "sizes only: meta is cheapest, no parameter or activation memory"
            else:
                why = "sizes only; the cheaper modes failed"
            notes.insert(0, f"mode auto ran {current} ({why})")
        return dataclasses.replace(result, notes=tuple(notes))
    raise AssertionError("unreachable")  # pragma: no cover
