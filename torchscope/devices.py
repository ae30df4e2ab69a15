"""Device consistency checks: where each block lives, and what will not move or run.

:func:`check_devices` returns findings (codes below), each with a path and the fix:

=========================  ========  ==========================================================
code                       severity  what
=========================  ========  ==========================================================
``devices-split``          info      blocks sit on several devices along module boundaries (a
                                     pipeline split): the per-device map
``devices-mixed-module``   error     one module's own parameters/buffers on several devices
``devices-stray-tensor``   error     a single tensor alone on its device
``devices-meta``           error     some tensors still on ``meta`` in a model otherwise real
                                     (info when the whole model is on ``meta``)
``devices-input``          error     an input reaches a module on another device than the
                                     module's parameters (with example inputs)
``tie-devices``            error     tensors declared tied (transformers) that are now
                                     different tensors on different devices (from check_ties)
``devices-plain-tensor``   warning   a tensor attribute that is neither parameter nor buffer:
                                     ``.to()`` does not move it, ``state_dict`` does not save it
                                     (error when it is on another device than the module)
``devices-mixed-dtype``    warning   floating-point parameters/buffers of one module in
                                     different dtypes
=========================  ========  ==========================================================

The synchronization detector lives in :mod:`torchscope.syncs` (re-exported here).

>>> import torchscope
>>> [f.code for f in torchscope.check_devices(torchscope.examples.FixedHiddenMLP())]
['devices-plain-tensor']
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from torchscope._torch import (
    is_lazy,
    named_modules,
    plain_reads,
    recursion_room,
    require_module,
)
from torchscope.errors import ForwardError, InputSpecError
from torchscope.records import Finding, Severity, SyncReport
from torchscope.syncs import detect_syncs, no_syncs
from torchscope.trace import (
    fake_copy,
    input_plan,
    make_inputs,
    map_tensors,
    parse_device,
    state_guard,
)
from torchscope.tying import check_ties

__all__ = ["SyncReport", "check_devices", "detect_syncs", "device_map", "no_syncs"]


def _name(path: str) -> str:
    return path if path else "(root)"




def _dev(t: torch.Tensor) -> str:
    return str(t.device)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


# attributes every nn.Module has (_parameters, _buffers, hook dicts…): not user tensors
_MODULE_ATTRS = frozenset(vars(nn.Module()))


def _own_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for name, p in module._parameters.items():
        if p is not None and not is_lazy(p):
            yield name, p
    for name, b in module._buffers.items():
        if b is not None and not is_lazy(b):
            yield name, b


def _expr(path: str) -> str:
    return f"model.{path}" if path else "model"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def device_map(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Which blocks sit on which device: device -> the top-most module paths whose whole subtree
    (own parameters and buffers) is on that device, in module order.

    A module whose subtree spans devices is split into its children (and its own tensors are
    listed by name). Modules without tensors are left out. Uninitialized (lazy) tensors have
    no device yet and are left out.

    Args:
        model: any module.

    Returns:
        ``{"cpu": ("hidden", "act"), "meta": ("output",)}``; ``{}`` for a model without tensors.

    >>> import torch, torchscope
    >>> mlp = torchscope.examples.MLP()
    >>> _ = mlp.output.to("meta")
    >>> torchscope.devices.device_map(mlp)
    {'cpu': ('hidden',), 'meta': ('output',)}
    """
    model = require_module(model, "device_map")
    with plain_reads():  # a subclass's __torch_function__ is not asked for metadata
        return _device_map(model)


def _device_map(model: nn.Module) -> dict[str, tuple[str, ...]]:
    # iterative (any depth); an edge back to an ancestor (a cycle) is not followed
    subtree: dict[int, set[str]] = {}
    todo: list[tuple[nn.Module, bool]] = [(model, False)]
    open_ids: set[int] = set()
    while todo:
        module, done = todo.pop()
        key = id(module)
        if not done:
            if key in subtree or key in open_ids:
                continue
            open_ids.add(key)
            todo.append((module, True))
            todo.extend((child, False) for child in module.children())
            continue
        found = {_dev(t) for _, t in _own_tensors(module)}
        for child in module.children():
            found |= subtree.get(id(child), set())
        subtree[key] = found

    out: dict[str, list[str]] = {}
    stack: list[tuple[nn.Module, str, frozenset[int]]] = [(model, "", frozenset())]
    while stack:
        module, path, above = stack.pop()
        devs = subtree[id(module)]
        if len(devs) == 1:
            out.setdefault(next(iter(devs)), []).append(_name(path))
            continue
        for name, t in _own_tensors(module):
            out.setdefault(_dev(t), []).append(_join(path, name))
        above = above | {id(module)}
        stack.extend((child, _join(path, name), above)
                     for name, child in reversed(list(module.named_children()))
                     if id(child) not in above)
    return {dev: tuple(paths) for dev, paths in out.items()}


def _tensor_numel(model: nn.Module) -> dict[str, int]:
    per: dict[str, int] = {}
    seen: set[int] = set()
    for _, module in named_modules(model):
        for _, t in _own_tensors(module):
            if id(t) not in seen:
                seen.add(id(t))
                per[_dev(t)] = per.get(_dev(t), 0) + t.numel()
    return per


def _placement_findings(model: nn.Module) -> list[Finding]:
    findings: list[Finding] = []
    tensors: dict[int, tuple[str, torch.Tensor]] = {}
    for path, module in named_modules(model):
        own = list(_own_tensors(module))
        for name, t in own:
            tensors.setdefault(id(t), (_join(path, name), t))
        devs = sorted({_dev(t) for _, t in own})
        if len(devs) > 1:
            where = "; ".join(
                f"{d}: " + ", ".join(n for n, t in own if _dev(t) == d) for d in devs
            )
            counts = {d: sum(t.numel() for _, t in own if _dev(t) == d) for d in devs}
            target = max(devs, key=lambda d: (d != "meta", counts[d]))
            findings.append(Finding(
                code="devices-mixed-module", severity=Severity.ERROR,
                message=(f"{_name(path)} ({type(module).__name__}) has its own tensors on "
                         f"{len(devs)} devices ({where}): its forward will fail"),
                path=path,
                hint=f"move the whole module: {_expr(path)}.to({target!r})",
            ))
    by_dev: dict[str, list[str]] = {}
    for name, t in tensors.values():
        by_dev.setdefault(_dev(t), []).append(name)
    if len(by_dev) < 2:
        return findings
    # a device holding one tensor while others hold several: a stray tensor, not a split
    for dev, names in by_dev.items():
        others = sum(len(n) for d, n in by_dev.items() if d != dev)
        if len(names) == 1 and others > 1:
            majority = max((d for d in by_dev if d != dev), key=lambda d: len(by_dev[d]))
            if not any(f.code == "devices-mixed-module" and names[0].startswith(
                    f.path + "." if f.path else "") for f in findings):
                findings.append(Finding(
                    code="devices-stray-tensor", severity=Severity.ERROR,
                    message=(f"{names[0]} is the only tensor on {dev}; the other "
                             f"{others} are on {', '.join(d for d in by_dev if d != dev)}"),
                    path=names[0],
                    hint=f"move it with the rest: model.to({majority!r}) moves every tensor",
                ))
    if not any(f.code == "devices-stray-tensor" for f in findings):
        numel = _tensor_numel(model)
        mapping = device_map(model)
        parts = [f"{dev} ({numel.get(dev, 0):,} values): {', '.join(paths)}"
                 for dev, paths in mapping.items()]
        findings.append(Finding(
            code="devices-split", severity=Severity.INFO,
            message="blocks on several devices (a pipeline split?) — " + "; ".join(parts),
            path="",
            hint=("fine when deliberate: move activations between stages with .to(); "
                  "otherwise model.to(device) puts everything on one device"),
        ))
    return findings


def _meta_findings(model: nn.Module) -> list[Finding]:
    names: list[str] = []
    total = 0
    seen: set[int] = set()
    for path, module in named_modules(model):
        for name, t in _own_tensors(module):
            if id(t) in seen:
                continue
            seen.add(id(t))
            total += 1
            if t.is_meta:
                names.append(_join(path, name))
    if not names:
        return []
    if len(names) == total:
        return [Finding(
            code="devices-meta", severity=Severity.INFO,
            message=(f"all {total} tensors are on the meta device: shapes only, no values; "
                     "the model can be summarized but not run"),
            path="",
            hint=("to run it: model.to_empty(device='cpu') then initialize (reset_parameters) "
                  "or load_state_dict(..., assign=True)"),
        )]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [Finding(
        code="devices-meta", severity=Severity.ERROR,
        message=(f"{len(names)} of {total} tensors are still on the meta device ({shown}): "
                 "they have no values and the forward will fail"),
        path=names[0],
        hint=("materialize them: load_state_dict(state, assign=True), or "
              "module.to_empty(device=...) then reset_parameters() on the modules holding them"),
    )]


def _tied_findings(model: nn.Module) -> list[Finding]:
    # one source of truth for ties: the tying module's `tie-devices` findings (declared ties
    # broken across devices); `check` would otherwise report the same tie twice

    return [f for f in check_ties(model) if f.code == "tie-devices"]


def _plain_tensors(value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield "", value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if isinstance(item, torch.Tensor):
                yield f"[{i}]", item
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, torch.Tensor):
                yield f"[{key!r}]", item


def _plain_findings(model: nn.Module) -> list[Finding]:
    findings: list[Finding] = []
    for path, module in named_modules(model):
        own_devs = {_dev(t) for _, t in _own_tensors(module)}
        if not own_devs:
            own_devs = {_dev(t) for t in _tensors(module, "_parameters") if not is_lazy(t)}
        for attr, value in vars(module).items():
            if attr in _MODULE_ATTRS or isinstance(value, nn.Parameter):
                continue
            for suffix, t in _plain_tensors(value):
                if isinstance(t, nn.Parameter):
                    continue
                name = _join(path, attr) + suffix
                spec = f"[{', '.join(map(str, t.shape))}] {_dtype(t)}"
                elsewhere = own_devs and _dev(t) not in own_devs
                message = (f"{name} is a plain tensor attribute ({spec} on {_dev(t)}), neither "
                           "parameter nor buffer: .to() will not move it and state_dict will "
                           "not save it")
                if elsewhere:
                    message += (f"; it is on {_dev(t)} while the module's parameters are on "
                                f"{', '.join(sorted(own_devs))}")
                fix = (f"self.register_buffer({attr!r}, tensor, persistent=False) in "
                       f"{type(module).__name__}.__init__ (moves with the module, not saved)")
                if suffix:
                    fix = (f"register each tensor of {attr} with self.register_buffer(name, t, "
                           "persistent=False), or use nn.ParameterList")
                findings.append(Finding(
                    code="devices-plain-tensor",
                    severity=Severity.ERROR if elsewhere else Severity.WARNING,
                    message=message, path=name, hint=fix,
                ))
    return findings


def _dtype_findings(model: nn.Module) -> list[Finding]:
    findings: list[Finding] = []
    for path, module in named_modules(model):
        own = [(n, t) for n, t in _own_tensors(module) if t.is_floating_point()]
        dtypes = sorted({_dtype(t) for _, t in own})
        if len(dtypes) > 1:
            where = "; ".join(
                f"{d}: " + ", ".join(n for n, t in own if _dtype(t) == d)
                for d in dtypes
            )
            findings.append(Finding(
                code="devices-mixed-dtype", severity=Severity.WARNING,
                message=(f"{_name(path)} ({type(module).__name__}) mixes floating dtypes "
                         f"({where}): its ops will upcast or fail with a dtype error"),
                path=path,
                hint=f"cast the whole module to one dtype: {_expr(path)}.to(torch.{dtypes[-1]})",
            ))
    return findings


class _Stop(Exception):
    """Raised by the input hook after a device mismatch: the forward would fail anyway."""


def _tensors(model: nn.Module, kind: str) -> Iterator[torch.Tensor]:
    """Every parameter (``kind="_parameters"``) or buffer (``"_buffers"``) once, at any
    depth (``model.parameters()`` recurses once per level)."""
    seen: set[int] = set()
    for _, module in named_modules(model):
        for t in getattr(module, kind).values():
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                yield t


def _model_device(model: nn.Module) -> torch.device:
    for t in _tensors(model, "_parameters"):
        return t.device
    for t in _tensors(model, "_buffers"):
        return t.device
    return torch.device("cpu")


def _input_findings(model: nn.Module, example_inputs: Any, *, input_size: object = None,
                    dtypes: object = None, device: object = None,
                    mode: str = "real", example_kwargs: Mapping[str, Any] | None = None,
                    ) -> list[Finding]:

    if any(is_lazy(t) for t in _tensors(model, "_parameters")) or any(
            is_lazy(t) for t in _tensors(model, "_buffers")):
        return []  # running it would materialize the lazy tensors
    stack = contextlib.ExitStack()
    with stack:
        if mode == "auto":
            on_meta = any(t.is_meta for t in _tensors(model, "_parameters"))
            mode = "fake" if input_size is not None or on_meta else "real"
        if mode in ("meta", "fake"):
            # a copy over fake tensors that keep every tensor's device: a device mismatch is
            # seen without memory and without running the model itself
            from torch._subclasses.fake_tensor import FakeTensorMode

            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            model = fake_copy(model, fake_mode)
            convert: Callable[[torch.Tensor], torch.Tensor] = fake_mode.from_tensor
            if example_inputs is not None:
                example_inputs = map_tensors(example_inputs, convert)
            if example_kwargs:
                example_kwargs = map_tensors(dict(example_kwargs), convert)
            # FakeTensorMode logs a traceback for every failing op; the error is reported once
            logger = logging.getLogger("torch._subclasses.fake_tensor")
            stack.callback(setattr, logger, "disabled", logger.disabled)
            logger.disabled = True
            stack.enter_context(fake_mode)
        if input_size is not None:  # built where the model is (or on ``device``)
            dev = parse_device(device) if device is not None else _model_device(model)
            if mode == "real" and dev.type == "meta":
                raise InputSpecError(
                    "check_devices: the model is on the meta device, so a real forward cannot "
                    "run; use mode='meta' or mode='fake'"
                )
            example_inputs = make_inputs(input_plan(input_size, dtypes), dev)
        return _run_input_checks(model, example_inputs, example_kwargs)


def _run_input_checks(model: nn.Module, example_inputs: Any,
                      example_kwargs: Mapping[str, Any] | None = None) -> list[Finding]:
    if isinstance(example_inputs, Mapping):
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = dict(example_inputs)
    elif example_inputs is None:
        args, kwargs = (), {}
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        args, kwargs = (example_inputs,), {}
    if example_kwargs:
        kwargs.update(example_kwargs)
    findings: list[Finding] = []
    current: list[str] = []
    handles = []

    def make_hook(path: str, module: nn.Module) -> Any:
        own = {t.device for _, t in _own_tensors(module)}

        def hook(mod: nn.Module, hargs: tuple[Any, ...], hkwargs: dict[str, Any]) -> None:
            current.append(path)
            if not own or len(own) > 1:
                return
            (device,) = own
            items = [(f"input {i}", v) for i, v in enumerate(hargs)]
            items += [(f"input {k!r}", v) for k, v in hkwargs.items()]
            for label, value in items:
                for _, t in _plain_tensors(value):
                    if t.device == device or (t.dim() == 0 and t.device.type == "cpu"):
                        continue
                    where = "the model's" if not path else f"{path}'s"
                    findings.append(Finding(
                        code="devices-input", severity=Severity.ERROR,
                        message=(f"{label} of {_name(path)} ({type(mod).__name__}) is on "
                                 f"{t.device} but {where} parameters are on {device}"),
                        path=path,
                        hint=(f"move the inputs to the model's device: x.to({str(device)!r}) "
                              "(or the module to the inputs' device)"),
                    ))
                    raise _Stop
        return hook

    try:
        with state_guard(model), torch.no_grad():
            for path, module in named_modules(model):
                try:
                    handles.append(module.register_forward_pre_hook(make_hook(path, module),
                                                                    with_kwargs=True))
                except RuntimeError:  # TorchScript: hooks never run inside it, none to add
                    continue
            try:
                model(*args, **kwargs)
            except _Stop:
                pass
            except Exception as err:
                where = _name(current[-1]) if current else "(root)"
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ForwardError(
                    f"check_devices: the forward raised in {where} ({type(err).__name__}: "
                    f"{first}) — fix the inputs, or call check_devices(model) without them"
                ) from err
    finally:
        for handle in handles:
            handle.remove()
    return findings


def check_devices(model: nn.Module, example_inputs: Any = None, *, input_size: object = None,
                  dtypes: object = None, device: object = None,
                  mode: str = "real",
                  example_kwargs: Mapping[str, Any] | None = None) -> tuple[Finding, ...]:
    """Check where the model's tensors live and what would not move, save or run.

    Static checks (no forward): tensors over several devices (a per-device map as a note when
    the split follows module boundaries; an error for a module split over devices or a single
    stray tensor), tensors left on ``meta``, tied tensors on different devices, plain tensor
    attributes that are neither parameters nor buffers, mixed floating dtypes in one module.
    With ``example_inputs`` (or ``input_size``), one forward runs (no grad, state guarded) and
    every module's inputs are compared with the device of its own parameters; it stops at the
    first mismatch. In ``meta``/``fake`` mode that forward runs on a copy of the model made of
    fake tensors that keep each tensor's device: no memory, and the model itself never runs.
    The model is left unchanged (state, training flags, hooks, RNG, device).

    Args:
        model: the module to check.
        example_inputs: a tensor, a tuple/list of positional inputs, or a dict of keyword
            inputs for one forward call (skipped for models with uninitialized lazy layers).
        input_size: instead of ``example_inputs``: one shape per input, built as zeros on the
            model's device (or ``device``) — as fake tensors in ``meta``/``fake`` mode.
        dtypes: one dtype per size (default float32).
        device: where built inputs go (default: the device of the model's first tensor).
        mode: ``"real"`` (the model itself), ``"meta"`` or ``"fake"`` (a fake copy: no
            memory, no real forward), or ``"auto"`` (fake for sizes or a meta model, else
            real).
        example_kwargs: keyword inputs of that forward call, next to positional ones.

    Returns:
        The findings, most severe first (then in the order found).

    Raises:
        InputSpecError: ``model`` is not an ``nn.Module``.
        ForwardError: the forward with ``example_inputs`` raised for another reason than a
            device mismatch (names the module where).

    >>> import torch, torchscope
    >>> mlp = torchscope.examples.MLP()
    >>> [f.code for f in torchscope.check_devices(mlp, torch.zeros(2, 20, device="meta"))]
    ['devices-input']
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"model = {type(model).__name__} is not a torch.nn.Module; pass the model itself"
        )
    if mode not in ("auto", "real", "meta", "fake"):
        raise InputSpecError(
            f"check_devices: mode = {mode!r} is not one of auto, real, meta, fake"
        )
    if example_inputs is not None and input_size is not None:
        raise InputSpecError(
            "check_devices: both example_inputs and input_size were given; pass one of them"
        )
    with plain_reads():  # a subclass's __torch_function__ is not asked for metadata
        findings = _placement_findings(model)
        findings += _meta_findings(model)
        findings += _tied_findings(model)
        findings += _plain_findings(model)
        findings += _dtype_findings(model)
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise InputSpecError(
            f"check_devices: example_kwargs = {type(example_kwargs).__name__} is not a dict of "
            "keyword inputs; pass e.g. {'attention_mask': mask}"
        )
    if example_inputs is not None or input_size is not None or example_kwargs:
        depth = max((p.count(".") + 1 for p, _ in named_modules(model) if p), default=0)
        with recursion_room(depth):  # nested modules run recursively
            findings += _input_findings(model, example_inputs, input_size=input_size,
                                        dtypes=dtypes, device=device, mode=mode,
                                        example_kwargs=example_kwargs)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return tuple(sorted(findings, key=lambda f: order[f.severity]))
