"""What the training-step analyses share: example inputs, the default loss, the user's
``file:line``, parameter names with their aliases and the ``.grad`` save/restore."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from torchscope._torch import dtype_name, is_lazy
from torchscope._units import short_repr
from torchscope.errors import ArgumentError, InputSpecError
from torchscope.init._tree import ModelTree, as_float64, model_tree
from torchscope.records import TensorStats, short_path
from torchscope.trace import build_inputs, make_inputs, parse_device, tensors_in

__all__ = [
    "LossFn",
    "SizedInputs",
    "check_flag",
    "check_loss_fn",
    "check_number",
    "default_loss",
    "grads_kept",
    "param_aliases",
    "resolve_inputs",
    "step_device",
    "stats_of",
    "user_location",
]

#: ``loss_fn(output) -> scalar tensor``
LossFn = Callable[[Any], torch.Tensor]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_EXAMPLES = _OWN_DIR + "examples.py"  # the example models are user code


class SizedInputs:
    """Inputs given as sizes, built only once the mode that runs is known: on ``meta`` for a
    meta forward, as fake tensors (no memory) inside a fake mode, with memory only for a real
    forward — on ``device``, else where the model's first tensor is, else the CPU.

    >>> from torchscope.trace import input_plan
    >>> sized = SizedInputs(input_plan([(2, 3)], None), None)
    >>> sized.build(torch.device("meta"))[0].shape
    torch.Size([2, 3])
    """

    __slots__ = ("device", "plan")

    def __init__(self, plan: list[tuple[tuple[int, ...], torch.dtype]],
                 device: torch.device | None) -> None:
        self.plan = plan
        self.device = device

    def build(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Zeros on ``device`` (fake ones under a fake mode)."""
        return make_inputs(self.plan, device)

    def where(self, model: nn.Module) -> torch.device:
        """The device real inputs go to: ``device``, else the model's, else the CPU."""
        if self.device is not None:
            return self.device
        for t in (*model.parameters(), *model.buffers()):
            if not is_lazy(t):
                return t.device
        return torch.device("cpu")


def check_model(model: object, where: str) -> nn.Module:
    """``model`` itself, or an :class:`InputSpecError` naming what was passed instead."""
    if not isinstance(model, nn.Module):
        raise InputSpecError(
            f"{where}: model = {type(model).__name__} is not a torch.nn.Module; pass the model "
            "itself"
        )
    return model


def resolve_inputs(where: str, example_inputs: object, example_kwargs: object,
                   input_size: object, dtypes: object,
                   device: object) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs from tensors or from sizes (zeros, see
    :func:`torchscope.build_inputs`).

    Raises:
        InputSpecError: neither or both of ``example_inputs`` and ``input_size``, or keyword
            inputs that are not a dict.
    """
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise InputSpecError(
            f"{where}: example_kwargs = {type(example_kwargs).__name__} is not a dict of keyword "
            "inputs; pass e.g. {'attention_mask': mask}"
        )
    kwargs = dict(example_kwargs or {})
    if example_inputs is not None and input_size is not None:
        raise InputSpecError(f"{where}: both example_inputs and input_size were given; pass one")
    if example_inputs is None:
        if input_size is None:
            if kwargs:
                return (), kwargs
            raise InputSpecError(
                f"{where} needs example inputs: pass example_inputs (a tensor or a tuple) or "
                "input_size=[(2, 20)]"
            )
        return build_inputs(input_size, dtypes, device=device), kwargs
    if isinstance(example_inputs, Mapping):
        raise InputSpecError(
            f"{where}: example_inputs is a dict; pass keyword inputs as example_kwargs=..."
        )
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), kwargs
    return (example_inputs,), kwargs


def step_device(where: str, model: nn.Module, device: object) -> torch.device:
    """Where the inputs of one real step of ``model`` built from sizes go: ``device``, else
    where the model is (see :meth:`SizedInputs.where`). Ask once the model is known to run:
    nothing is built for a model that cannot.

    Raises:
        InputSpecError: ``device`` is not a usable device, or is ``meta`` (a real step needs
            values).

    >>> step_device("find_nonfinite", nn.Linear(2, 2), None)
    device(type='cpu')
    """
    asked = parse_device(device) if device is not None else None
    if asked is not None and asked.type == "meta":
        raise InputSpecError(
            f"{where}: device = 'meta': one real step needs inputs with values; leave device "
            "out (inputs go where the model is) or use a device such as 'cpu'"
        )
    return SizedInputs([], asked).where(model)


def output_tensors(output: object) -> list[torch.Tensor]:
    """The floating-point tensors of a model's output that require a gradient."""
    return [t for t in tensors_in(output)
            if t.requires_grad and (t.is_floating_point() or t.is_complex())]


def default_loss(output: object) -> torch.Tensor:
    """The sum of every floating-point output tensor that requires a gradient (each summed
    in float32), so that every output takes part in the backward.

    Raises:
        InputSpecError: no output tensor requires a gradient.

    >>> default_loss((torch.ones(2, requires_grad=True), 3)).item()
    2.0
    """
    tensors = output_tensors(output)
    if not tensors:
        raise InputSpecError(
            "the model's output holds no tensor that requires a gradient, so no backward can "
            "run: pass loss_fn=lambda out: ... returning a scalar that depends on the parameters"
        )
    total = tensors[0].float().sum()
    for t in tensors[1:]:
        total = total + t.float().sum()
    return total


def user_location(skip_torchscope: bool = True) -> str | None:
    """``file:line`` of the innermost frame outside torch (and torchscope)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        own = skip_torchscope and name.startswith(_OWN_DIR) and name != _EXAMPLES
        if not (name.startswith(_TORCH_DIR) or own or name.startswith("<frozen")):
            return f"{short_path(name)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def param_aliases(model: nn.Module | ModelTree) -> dict[int, list[str]]:
    """``id(parameter)`` -> every qualified name it has, in ``named_parameters()`` order
    (walked without recursion; an edge back to an ancestor is not followed)."""
    return (model if isinstance(model, ModelTree) else model_tree(model)).aliases()



def check_number(where: str, name: str, value: object, *, example: str,
                 minimum: float | None = 0.0) -> float:
    """``value`` as a float, or one :class:`ArgumentError` line naming the option (not a real
    number, NaN) or :class:`InputSpecError` (below ``minimum``).

    >>> check_number("gradient_flow", "vanishing", "x", example="1e-07")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    torchscope.errors.ArgumentError: gradient_flow: vanishing = 'x' (str) is not a number; ...
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ArgumentError(
            f"{where}: {name} = {short_repr(value)} ({type(value).__name__}) is not a number; pass "
            f"a number such as {name}={example}"
        )
    if minimum is not None and value < minimum:
        raise InputSpecError(
            f"{where}: {name} = {value!r} is below {minimum:g}; pass a number such as "
            f"{name}={example}"
        )
    return float(value)


def check_flag(where: str, name: str, value: object) -> bool:
    """``value`` when it is a bool, else one :class:`ArgumentError` line naming the option.

    >>> check_flag("find_nonfinite", "backward", True)
    True
    """
    if not isinstance(value, bool):
        raise ArgumentError(
            f"{where}: {name} = {short_repr(value)} ({type(value).__name__}) is not a bool; pass "
            f"{name}=True or {name}=False"
        )
    return value


def check_loss_fn(where: str, loss_fn: object) -> None:
    """Nothing when ``loss_fn`` is ``None`` or callable, else one :class:`ArgumentError` line.

    >>> check_loss_fn("gradient_flow", None)
    """
    if loss_fn is not None and not callable(loss_fn):
        raise ArgumentError(
            f"{where}: loss_fn = {short_repr(loss_fn)} ({type(loss_fn).__name__}) is not callable; "
            "pass a function of the output returning a scalar, e.g. loss_fn=lambda out: "
            "out.sum(), or leave it out"
        )


def owner_path(name: str) -> str:
    """The module path of a qualified parameter name (``""`` for the root)."""
    return name.rpartition(".")[0]


def stats_of(t: torch.Tensor) -> TensorStats:
    """Shape, dtype, min/max/mean of the finite values and NaN/Inf counts of ``t`` (float8 and
    other exotic dtypes are read as float64; values that cannot be read give no statistics).

    >>> stats_of(torch.tensor([1.0, float("nan")]).to(torch.float8_e5m2)).nan
    1
    """
    shape = tuple(int(d) for d in t.shape)
    dtype = dtype_name(t.dtype)
    v = None if is_lazy(t) else as_float64(t)
    if v is None:
        return TensorStats(shape, dtype, None, None, None, 0, 0)
    with torch.no_grad():
        nan = int(torch.isnan(v).sum())
        inf = int(torch.isinf(v).sum())
        finite = v[torch.isfinite(v)] if nan or inf else v.reshape(-1)
        if finite.numel() == 0:
            return TensorStats(shape, dtype, None, None, None, nan, inf)
        return TensorStats(shape, dtype, float(finite.min()), float(finite.max()),
                           float(finite.mean()), nan, inf)


@contextmanager
def grads_kept(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Set each parameter's ``.grad`` to ``None`` for the block and put the very same objects
    back afterwards (also when the block raises)."""
    saved = [p.grad for p in params]
    try:
        for p in params:
            p.grad = None
        yield
    finally:
        for p, g in zip(params, saved):
            p.grad = g
