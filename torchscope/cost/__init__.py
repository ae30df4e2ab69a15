"""Cost analysis: FLOPs and memory of every module call and of a training step, without
running the model (meta tensors by default).

One forward with gradients and one backward run on a meta copy of the model (or fake, or
real tensors), under a dispatch mode that counts FLOPs with torch's own formulas
(``torch.utils.flop_counter``: the same numbers as ``FlopCounterMode``), attributes them to
the module call that ran them (a module called twice has two entries), and tracks the
storage every op creates; ``saved_tensors_hooks`` see what autograd keeps for backward. A
second forward without gradients measures the inference live set. The model itself is left
as it was.

>>> import torchscope
>>> cost = estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)], optimizer="adam")
>>> cost.forward_flops, cost.backward_flops, cost.optimizer_state_bytes
(30720, 40960, 63584)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchscope._torch import (
    dtype_name,
    gc_paused,
    is_lazy,
    parse_dtype,
    plain_reads,
    room_for_depth,
    unwrap_compiled,
)
from torchscope.cost._counter import CostMode, DeviceAttention, Tally, storage_bytes
from torchscope.errors import ForwardError, InputSpecError
from torchscope.records import OPTIMIZERS, CallCost, CostReport
from torchscope.trace import (
    Mode,
    copy_to_meta,
    copy_with,
    fake_copy,
    input_plan,
    make_inputs,
    map_tensors,
    module_tree,
    own_copy,
    parse_device,
    shallow_copy,
    state_guard,
    tensors_in,
)

__all__ = ["MODES", "OPTIMIZERS", "estimate_cost"]

#: The accepted values of ``mode``.
MODES = ("auto", "meta", "fake", "real")

_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD",
                    "sgd-momentum": "SGD with momentum"}


@room_for_depth
def estimate_cost(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    input_size: Sequence[Sequence[int]] | Sequence[int] | str | None = None,
    dtypes: Sequence[torch.dtype | str] | torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    mode: Mode = "auto",
    optimizer: str | None = None,
    train_dtype: torch.dtype | str | None = None,
) -> CostReport:
    """FLOPs and memory of one forward and backward of ``model``, per module call.

    FLOPs are counted with torch's formulas (equal to ``FlopCounterMode`` on a real run of the
    same model and inputs); a block's numbers include the calls inside it. Backward starts at
    the model's ``loss`` output when it has one, else at every floating output (as
    ``out.sum().backward()`` would) and reaches every trainable parameter and every input that
    requires grad; no ``.grad`` is written. Memory is the storage tensors occupy (see
    :class:`~torchscope.records.CostReport` for each number).

    Args:
        model: any ``nn.Module`` (a ``torch.compile`` wrapper is unwrapped).
        example_inputs: positional inputs (a tensor or a tuple); only their shapes and dtypes
            matter in meta and fake mode.
        example_kwargs: keyword inputs (``{"decoder_input_ids": ids}``).
        input_size: instead of ``example_inputs``: one shape per input (zeros, built for the
            mode that runs: on meta, as fake tensors where the model is, with memory only in
            real mode).
        dtypes: one dtype per built input (``"long"`` for token ids), default float32.
        device: where built inputs go in real mode (default: where the model is; ``"meta"``
            is for meta and fake runs only).
        mode: ``"auto"`` (meta, then fake, then real when one fails), ``"meta"``, ``"fake"``
            or ``"real"`` (runs the model itself: needs its memory).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"sgd-momentum"`` or ``None``, for
            the size of the optimizer state.
        train_dtype: the dtype of parameters, gradients and optimizer state in training
            (``"bf16"``); in meta and fake mode the copy runs in it, so activations are sized
            in it too. ``"autocast:bf16"``: mixed precision instead, the forward under
            ``torch.autocast`` with parameters, gradients and state in their own dtype (fake
            or real tensors: meta ignores autocast). Default: the model's own dtypes.

    Returns:
        A :class:`~torchscope.records.CostReport`.

    Raises:
        InputSpecError: bad inputs, mode, optimizer or train dtype.
        ForwardError: the forward or backward raised in every mode tried.

    >>> import torchscope
    >>> cost = estimate_cost(torchscope.examples.FixedHiddenMLP(), input_size=[(2, 20)])
    >>> [(c.path, c.index, c.forward_flops) for c in cost.calls]
    [('', 0, 4800), ('linear', 1, 1600), ('linear', 2, 1600)]
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"model = {type(model).__name__} is not a torch.nn.Module; pass the model itself")
    if mode not in MODES:
        raise InputSpecError(f"mode = {mode!r} is not one of {', '.join(MODES)}")
    if optimizer is not None:
        optimizer = str(optimizer).lower()
        if optimizer not in OPTIMIZERS:
            raise InputSpecError(
                f"optimizer = {optimizer!r} is not one of {', '.join(OPTIMIZERS)} (or None); "
                "pick the one whose state to size")
    amp = isinstance(train_dtype, str) and train_dtype.strip().lower().startswith("autocast:")
    if amp:
        assert isinstance(train_dtype, str)
        train_dtype = train_dtype.split(":", 1)[1]
    dtype = None if train_dtype is None else parse_dtype(train_dtype, where="train_dtype")
    if dtype is not None and not dtype.is_floating_point:
        raise InputSpecError(
            f"train_dtype = {train_dtype!r} is not a floating dtype; use 'float32', 'bf16' or "
            "'fp16'")
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise InputSpecError(
            f"example_kwargs = {type(example_kwargs).__name__} is not a dict of keyword inputs")
    kwargs = dict(example_kwargs or {})
    if example_inputs is None:
        if input_size is None:
            if not kwargs:
                raise InputSpecError(
                    "estimate_cost needs example inputs: pass example_inputs, "
                    "input_size=[(2, 20)] (CLI: --input-size 2,20) or example_kwargs")
            args: tuple[Any, ...] | _Sized = ()
        else:  # checked now, built in _run for the mode that runs
            dev = parse_device(device) if device is not None else None
            if mode == "real" and dev is not None and dev.type == "meta":
                raise InputSpecError(
                    "mode = 'real' with device = 'meta': a real run needs inputs with data; "
                    "use mode='meta' or 'fake' (no memory), or a device such as 'cpu'")
            args = _Sized(input_plan(input_size, dtypes), dev)
    else:
        if input_size is not None:
            raise InputSpecError("both example_inputs and input_size were given; pass one")
        if isinstance(example_inputs, Mapping):
            raise InputSpecError(
                "example_inputs is a dict; pass keyword inputs as example_kwargs=...")
        args = (tuple(example_inputs) if isinstance(example_inputs, (tuple, list))
                else (example_inputs,))

    model, compiled = unwrap_compiled(model)
    modules, _ = module_tree(model)
    tensors = [t for m in modules for t in (*m._parameters.values(), *m._buffers.values())
               if t is not None]
    with plain_reads():  # a subclass's __torch_function__ is not asked for metadata
        model_meta = bool(tensors) and all(t.is_meta for t in tensors if not is_lazy(t))
        has_lazy = any(is_lazy(t) for t in tensors)
    if amp and mode == "meta":
        raise InputSpecError(
            f"train_dtype = 'autocast:{train_dtype}' with mode = 'meta': meta tensors ignore "
            "torch.autocast; use mode='auto', 'fake' or 'real'")
    if mode != "auto":
        plan = [mode]
    elif amp:  # autocast acts on CPU/CUDA tensors (fake ones too), not on meta
        plan = ["fake"] if model_meta else ["fake", "real"]
    else:
        plan = ["meta", "fake"] if model_meta else ["meta", "fake", "real"]
    if "real" in plan and model_meta:
        raise InputSpecError(
            "mode = 'real' cannot run a model whose parameters are on the meta device; "
            "use mode='meta' or mode='fake'")

    _warm_up()
    notes: list[str] = []
    if compiled:
        notes.append("a torch.compile wrapper: counted its original module, eagerly")
    failures: list[str] = []
    for i, current in enumerate(plan):
        try:
            with gc_paused():
                report = _run(model, current, args, kwargs, dtype, optimizer, has_lazy,
                              amp=amp)
        except _Failed as failed:
            failures.append(f"{current}: {_short(failed.error)}")
            if i + 1 < len(plan):
                notes.append(f"{current} {failed.stage} failed ({_short(failed.error)}), "
                             f"tried {plan[i + 1]}")
                continue
            raise ForwardError(
                f"cost analysis of {type(model).__name__}: the {failed.stage} raised in "
                f"{'; '.join(failures)}; check that the example inputs match what the model "
                "expects (sizes, dtypes, keyword names)"
                + ("" if current == "real" else ", or try mode='real'")
            ) from failed.error
        return _with_notes(report, notes)
    raise AssertionError("unreachable")  # pragma: no cover


_warm = False


def _warm_up() -> None:
    """Once per process: a tiny run first. The first forward and backward under a dispatch
    mode import much of torch lazily, and garbage cycles made while importing keep an
    activation of that run alive (collection is paused): its live set would read too high."""
    global _warm
    if _warm:
        return
    _warm = True
    import gc

    with torch.device("meta"):
        tiny = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    _run(tiny, "meta", (torch.zeros(1, 2, device="meta"),), {}, None, None, False)
    gc.collect()


@dataclass(frozen=True)
class _Sized:
    """Inputs given as sizes: checked, built by :func:`_run` for the mode that runs."""

    plan: list[tuple[tuple[int, ...], torch.dtype]]
    device: torch.device | None  # asked for (real mode); None: where the model is


class _Failed(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.stage = stage
        self.error = error


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if len(text) > 160:
        text = text[:159] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _with_notes(report: CostReport, notes: list[str]) -> CostReport:
    from dataclasses import replace

    return replace(report, notes=(*notes, *report.notes))


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        key: int = t.untyped_storage()._cdata
        return key
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _meta_input(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    dt = dtype if dtype is not None and t.is_floating_point() else t.dtype
    out = torch.empty_strided(t.size(), t.stride(), dtype=dt, device="meta")
    if out.is_floating_point():
        out.requires_grad_(t.requires_grad)
    return out


def _roots(output: Any) -> tuple[list[torch.Tensor], str]:
    loss = None
    if isinstance(output, Mapping):
        loss = output.get("loss")
    elif not isinstance(output, (torch.Tensor, tuple, list)):
        loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        return [loss], "backward from the model's loss output"
    roots = [t for t in tensors_in(output)
             if t.requires_grad and (t.is_floating_point() or t.is_complex())]
    unique = list({id(t): t for t in roots}.values())
    what = ("the output" if len(unique) == 1
            else f"the sum of the {len(unique)} floating outputs")
    return unique, f"backward from {what}, as out.sum().backward() would"


def _run(model: nn.Module, mode: str, given: tuple[Any, ...] | _Sized,
         kwargs: dict[str, Any], train_dtype: torch.dtype | None, optimizer: str | None,
         has_lazy: bool, *, amp: bool = False) -> CostReport:
    """One cost analysis in ``mode``; inputs given as sizes are built here, for that mode:
    on meta, as fake tensors where the fake copy is, with memory only in real mode (where
    the model is, or on the device asked for)."""
    sized = given if isinstance(given, _Sized) else None
    args: tuple[Any, ...] = () if isinstance(given, _Sized) else given
    notes: list[str] = []
    fake_mode: Any = None
    target = model
    # the dtype the copy is cast to: none under autocast (parameters keep theirs)
    dtype = None if amp else train_dtype
    amp_device = "cpu"
    try:
        if mode == "meta":
            target = copy_to_meta(model)
            if dtype is not None:
                target.to(dtype)
            if sized is not None:
                args = make_inputs(sized.plan, torch.device("meta"))
            args = map_tensors(args, lambda t: _meta_input(t, dtype))
            kwargs = map_tensors(kwargs, lambda t: _meta_input(t, dtype))
        elif mode == "fake":
            from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            on_meta = amp and any(p.is_meta for p in model.parameters())
            if on_meta:  # autocast needs a device: fake CPU tensors stand in for meta ones
                target = copy_with(model, lambda t: _fake_on(fake_mode, t, _CPU))
            else:
                target = fake_copy(model, fake_mode)
                if dtype is not None:
                    _cast_fake_copy(target, dtype, fake_mode)
            # inputs go where the copy is (a meta model's copy: fake meta tensors)
            here = _device_of(target)

            def to_fake(t: torch.Tensor) -> torch.Tensor:
                fake: torch.Tensor
                if isinstance(t, FakeTensor) and t.fake_mode is fake_mode:
                    fake = t
                elif t.is_meta or (here is not None and here.type == "meta"):
                    fake = _fake_on(fake_mode, t, here or _CPU)
                else:
                    fake = fake_mode.from_tensor(t)
                if dtype is not None and fake.is_floating_point() and fake.dtype != dtype:
                    with fake_mode:  # cast the fake tensor: no memory
                        fake = fake.detach().to(dtype).requires_grad_(t.requires_grad)
                return fake

            if sized is not None:
                with fake_mode:
                    args = make_inputs(sized.plan, here or sized.device or _CPU)
            args = map_tensors(args, to_fake)
            kwargs = map_tensors(kwargs, to_fake)
        else:
            if sized is not None:  # memory only now, for the run that needs it
                asked = sized.device
                where = (asked if asked is not None and asked.type != "meta"
                         else _device_of(model) or _CPU)
                args = make_inputs(sized.plan, where)
            if has_lazy:
                target = shallow_copy(model)
                notes.append("the model has uninitialized (lazy) tensors: ran a copy sharing "
                             "its initialized tensors, so the model stays uninitialized")
    except InputSpecError:  # inputs that cannot be built: no other mode would help
        raise
    except Exception as err:
        raise _Failed("copy", err) from err

    # on meta, attention picks the kernel the model's own device would (meta models: math)
    sdp_device = None
    if mode == "meta":
        sdp_device = next((t.device for t in (*model.parameters(), *model.buffers())
                           if not t.is_meta and not is_lazy(t)), None)
    if amp:
        amp_device = next((t.device.type for t in target.parameters()), "cpu")
    modules, paths_list = module_tree(target)
    paths = dict(zip(map(id, modules), paths_list))
    inputs = list(tensors_in((args, kwargs)))
    input_keys = {k for k in map(_storage_key, inputs) if k is not None}
    tally = Tally(paths, set(), input_keys)
    output: Any = None
    grads: Any = None
    guard = state_guard(target)  # one guard around both runs (a lazy layer's hook goes once)
    guard.__enter__()
    try:
        with contextlib.ExitStack() as stack:
            if fake_mode is not None:
                stack.enter_context(fake_mode)
            stack.enter_context(tally.hooked())
            stack.enter_context(torch.enable_grad())
            # parameters and buffers (after lazy layers materialize: read them late)
            tally.static_keys = _static_keys(target)
            if sdp_device is not None:
                stack.enter_context(DeviceAttention(sdp_device))
            stack.enter_context(CostMode(tally))
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(tally.pack, _unpack))
            try:
                if amp:
                    with torch.autocast(amp_device, dtype=train_dtype):
                        output = target(*args, **kwargs)
                else:
                    output = target(*args, **kwargs)
            except Exception as err:
                raise _Failed("forward", err) from err
            tally.static_keys |= _static_keys(target)  # lazy layers made theirs in forward
            for t in tensors_in(output):
                tally.keep(t, output=True)
            tally.in_forward = False
            infer_peak = tally.inference_peak()
            tally.forward_done()
            roots, how = _roots(output)
            leaves = _leaves(target, inputs)
            if roots and leaves:
                tally.backward = True
                try:
                    grads = torch.autograd.grad(
                        roots, leaves, grad_outputs=[torch.ones_like(r) for r in roots],
                        allow_unused=True)
                except Exception as err:
                    raise _Failed("backward", err) from err
                notes.append(how)
            else:
                notes.append("no backward: " + ("no output requires grad" if not roots
                                                else "no trainable parameter or input"))
        train_peak = tally.peak_bytes
        output_bytes = storage_bytes(output)
        del output, grads
    finally:
        tally.close()
        guard.__exit__(None, None, None)
    if amp:
        notes.append(f"mixed precision: the forward ran under torch.autocast({amp_device!r}, "
                     f"{dtype_name(train_dtype or torch.float32)}); parameters, gradients and "
                     "optimizer state keep the parameters' dtype")
    return _report(tally, target, mode, inputs, dtype, optimizer, train_peak, infer_peak,
                   output_bytes, notes, amp_dtype=train_dtype if amp else None)


_CPU = torch.device("cpu")


def _fake_on(fake_mode: Any, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fake tensor of ``t``'s shape, strides and dtype on ``device`` (``t`` on any
    device); no memory."""
    from torch._subclasses.fake_tensor import FakeTensor

    meta = t if t.is_meta else torch.empty_strided(t.size(), t.stride(), dtype=t.dtype,
                                                    device="meta")
    fake: torch.Tensor = FakeTensor(fake_mode, meta.detach(), device)
    if t.requires_grad:
        fake.requires_grad_(True)
    return fake


def _device_of(model: nn.Module) -> torch.device | None:
    """The device of the first initialized parameter or buffer (a fake one's fake device)."""
    for t in (*model.parameters(), *model.buffers()):
        if not is_lazy(t):
            return t.device
    return None


def _cast_fake_copy(target: nn.Module, dtype: torch.dtype, fake_mode: Any) -> None:
    """Cast the floating parameters and buffers of a fake copy to ``dtype`` in place, each
    tensor object once (ties survive); lazy ones become fresh lazy ones of ``dtype``.

    ``Module.to`` cannot do it: it swaps a fake parameter's contents in place
    (``torch.utils.swap_tensors``), which torch refuses while the fake mode holds a weak
    reference to it."""
    done: dict[int, torch.Tensor] = {}

    def cast(t: torch.Tensor) -> torch.Tensor:
        new = done.get(id(t))
        if new is not None:
            return new
        if is_lazy(t):
            kind: Any = type(t)
            new = own_copy(kind(requires_grad=t.requires_grad, device=t.device,
                                dtype=dtype if t.dtype.is_floating_point else t.dtype))
            new.__dict__.update(t.__dict__)
        elif t.is_floating_point() and t.dtype != dtype:
            with fake_mode, torch.no_grad():
                new = t.detach().to(dtype)
            if isinstance(t, nn.Parameter):
                new = nn.Parameter(new, requires_grad=t.requires_grad)
            for key, value in t.__dict__.items():  # the user's attributes, not the fake's own
                new.__dict__.setdefault(key, value)
        else:
            new = t
        done[id(t)] = new
        return new

    for m in target.modules():
        groups: tuple[dict[str, Any], ...] = (m._parameters, m._buffers)
        for group in groups:
            for k, t in group.items():
                if t is not None:
                    group[k] = cast(t)


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def _static_keys(target: nn.Module) -> set[int]:
    keys: set[int] = set()
    for m in target.modules():
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None and not is_lazy(t):
                k = _storage_key(t)
                if k is not None:
                    keys.add(k)
    return keys


def _leaves(target: nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for p in target.parameters():
        if p.requires_grad and not is_lazy(p):
            seen.setdefault(id(p), p)
    for t in inputs:
        if t.requires_grad and t.is_leaf:
            seen.setdefault(id(t), t)
    return list(seen.values())


def _report(tally: Tally, target: nn.Module, mode: str, inputs: list[torch.Tensor],
            dtype: torch.dtype | None, optimizer: str | None, train_peak: int,
            infer_peak: int, output_bytes: int, notes: list[str], *,
            amp_dtype: torch.dtype | None = None) -> CostReport:
    # inclusive numbers: each call's own, then added to every ancestor (children come later)
    n = len(tally.call_path)
    fwd, bwd, saved = list(tally.fwd), list(tally.bwd), list(tally.saved)
    for i in range(n - 1, -1, -1):
        p = tally.parent[i]
        if p >= 0:
            fwd[p] += fwd[i]
            bwd[p] += bwd[i]
            saved[p] += saved[i]
    calls = tuple(CallCost(path=tally.call_path[i], index=i, forward_flops=fwd[i],
                           backward_flops=bwd[i], saved_bytes=saved[i],
                           output_bytes=tally.out_bytes[i]) for i in range(n))
    forward_flops = sum(v[0] for v in tally.by_op.values())
    backward_flops = sum(v[1] for v in tally.by_op.values())

    # parameters, buffers, gradients, optimizer state: each storage once, in the train dtype
    def scaled(t: torch.Tensor, nbytes: int) -> int:
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            return nbytes * dtype.itemsize // t.element_size()
        return nbytes

    param_bytes = buffer_bytes = grad_bytes = trainable = tensors = 0
    seen: set[int] = set()
    dtypes: dict[str, None] = {}
    for m in target.modules():
        for kind, group in ((0, m._parameters), (1, m._buffers)):
            for t in group.values():
                if t is None or is_lazy(t):
                    continue
                key = _storage_key(t)
                if key is None or key in seen:
                    continue
                seen.add(key)
                size = scaled(t, t.untyped_storage().nbytes())
                if kind == 1:
                    buffer_bytes += size
                    continue
                param_bytes += size
                dtypes[dtype_name(dtype if dtype is not None and t.is_floating_point()
                                  else t.dtype)] = None
                if t.requires_grad:
                    trainable += t.numel()
                    tensors += 1
                    grad_bytes += scaled(t, t.numel() * t.element_size())
    state_dtype = None
    state = 0
    if optimizer in ("adam", "adamw"):
        state = 2 * grad_bytes + 4 * tensors  # exp_avg, exp_avg_sq; a float32 step each
    elif optimizer == "sgd-momentum":
        state = grad_bytes  # momentum_buffer
    if optimizer is not None and optimizer != "sgd":
        state_dtype = "/".join(dtypes) or None
    train_name = "/".join(dtypes) or "float32"
    if amp_dtype is not None:
        train_name += f" with autocast {dtype_name(amp_dtype)}"
    input_bytes = storage_bytes(inputs)
    static = param_bytes + buffer_bytes + input_bytes
    if mode == "real" and dtype is not None and any(
            t.is_floating_point() and t.dtype != dtype for t in target.parameters()):
        notes.append(f"real mode ran the model in its own dtype: activations are sized in it, "
                     f"parameters, gradients and optimizer state in {dtype_name(dtype)}")

    if tally.unsupported:
        ops = sorted(tally.unsupported.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{k.removeprefix('aten.')} ×{v}" for k, v in ops[:6])
        more = f" and {len(ops) - 6} more" if len(ops) > 6 else ""
        notes.append(
            "torch's FLOP formulas cover matrix multiplications, convolutions and attention; "
            f"{len(ops)} other ops with arithmetic count 0 ({shown}{more}): see unsupported_ops")
    if tally.data_dependent:
        ops_text = ", ".join(f"{k.removeprefix('aten.')} ×{v}"
                             for k, v in sorted(tally.data_dependent.items()))
        notes.append(f"data-dependent ops ({ops_text}) ran on {mode} tensors: their output "
                     "sizes follow the example inputs' values (zeros when built from sizes)")
    if mode == "meta" and "aten._safe_softmax" in tally.unsupported:
        notes.append("scaled dot product attention ran its math path on meta: its FLOPs equal "
                     "the fused kernels' formulas, but saved activations include the attention "
                     "weights a fused kernel (flash, memory-efficient) does not keep")
    if "aten._scaled_dot_product_flash_attention_for_cpu" in tally.unsupported:
        notes.append("attention ran torch's fused CPU kernel, which has no FLOP formula: its "
                     "FLOPs count 0 (as FlopCounterMode counts them on CPU)")
    if tally.higher_order:
        notes.append("higher-order ops (" + ", ".join(sorted(tally.higher_order))
                     + ") were not counted by this mode")
    if tally.outside_fwd or tally.outside_bwd:
        notes.append(f"{tally.outside_fwd + tally.outside_bwd:,} FLOPs ran outside every "
                     "module call (in the totals, in no call's row)")
    training = [m for m in target.modules() if not m.training]
    if training:
        notes.append(f"{len(training)} modules are in eval mode and ran so (dropout off); "
                     "call model.train() for a training step")
    notes.append("memory counts tensor storage only: allocator rounding and caching, "
                 "fragmentation, kernel workspaces (cuBLAS, cuDNN, attention) and the CUDA "
                 "context are not included")
    if dtype is not None and dtype.itemsize == 2 and optimizer is not None:
        notes.append(f"parameters, gradients and optimizer state all in {dtype_name(dtype)} "
                     "(pure low-precision training); mixed precision with float32 master "
                     "weights and state needs more (Adam: 8 more bytes per parameter)")
    if optimizer is not None:
        notes.append("the training peak leaves out the optimizer's temporaries (foreach "
                     "implementations allocate up to the parameters' size at the step)")
    by_op = tuple(sorted(((k, v[0], v[1]) for k, v in tally.by_op.items()),
                         key=lambda x: (-(x[1] + x[2]), x[0])))
    unsupported = tuple(sorted(tally.unsupported.items(), key=lambda kv: (-kv[1], kv[0])))
    return CostReport(
        mode=mode,
        forward_flops=forward_flops,
        backward_flops=backward_flops,
        calls=calls,
        train_dtype=train_name,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        trainable_params=trainable,
        grad_bytes=grad_bytes,
        optimizer=optimizer,
        optimizer_state_bytes=state,
        optimizer_state_dtype=state_dtype,
        saved_bytes=tally.saved_total,
        saved_peak_bytes=tally.saved_peak,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        inference_peak_bytes=static + infer_peak,
        training_peak_bytes=static + state + max(train_peak, grad_bytes),
        flops_by_op=by_op,
        unsupported_ops=unsupported,
        notes=tuple(notes),
    )
