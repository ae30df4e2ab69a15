"""Records of one training step: parameters without gradient, the first non-finite value,
gradient flow per parameter and block, and what an optimizer holds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from torchscope.records._core import (
    SCHEMA_VERSION,
    Displayed,
    Finding,
    Severity,
)

__all__ = [
    "BlockGradient",
    "GradientReport",
    "NonfiniteReport",
    "OptimizerGroup",
    "OptimizerReport",
    "ParamGradient",
    "TensorStats",
    "UnusedParam",
    "UnusedReason",
    "UnusedReport",
]


class UnusedReason(str, enum.Enum):
    """Why a trainable parameter is not reached from the outputs' autograd graph."""

    NOT_CALLED = "module never called"
    NOT_USED = "not used by its module's forward"
    OUTPUT_UNUSED = "output not used"
    DETACHED = "detached"
    NO_GRAD = "used only under no_grad"


@dataclass(frozen=True, slots=True)
class UnusedParam:
    """One trainable parameter (every name it has) that gets no gradient, and why.

    ``module`` is the path of the module that owns its first name (``""`` is the root),
    ``module_type`` that module's class name.
    """

    names: tuple[str, ...]
    module: str
    module_type: str
    shape: tuple[int, ...]
    numel: int
    reason: UnusedReason

    @property
    def name(self) -> str:
        """The first qualified name."""
        return self.names[0]


@dataclass(frozen=True, slots=True, repr=False)
class UnusedReport(Displayed):
    """Which trainable parameters the outputs' autograd graph reaches (DDP's definition).

    ``mode`` is how the forward ran (``meta``, ``fake`` or ``real``); ``trainable`` counts
    trainable parameter tensors (each tied tensor once); ``unused`` are those the graph does
    not reach, in ``named_parameters()`` order.

    >>> import torchscope
    >>> torchscope.find_unused_parameters(torchscope.examples.MLP(), input_size=[(2, 20)]).unused
    ()
    """

    model_type: str
    mode: str
    trainable: int
    unused: tuple[UnusedParam, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    def __repr__(self) -> str:
        return (f"<UnusedReport {self.model_type}: {len(self.unused)} of {self.trainable} "
                f"trainable tensors get no gradient ({self.mode} mode)>")


@dataclass(frozen=True, slots=True)
class TensorStats:
    """Summary values of one tensor: shape, dtype, min/max/mean of its finite values and how
    many values are NaN or infinite. ``min``/``max``/``mean`` are ``None`` when no value is
    finite or the tensor is not floating point (unknown, never 0)."""

    shape: tuple[int, ...]
    dtype: str
    min: float | None
    max: float | None
    mean: float | None
    nan: int
    inf: int

    @property
    def finite(self) -> bool:
        """No NaN and no infinity."""
        return self.nan == 0 and self.inf == 0


@dataclass(frozen=True, slots=True, repr=False)
class NonfiniteReport(Displayed):
    """Where the first NaN or infinity of one training step appeared.

    ``phase`` is ``forward``, ``backward``, ``parameters`` (a parameter or buffer already held
    one) or ``None`` when every value stayed finite. ``module`` is the path of the innermost
    module call running when it appeared (``""`` is the root), ``op`` the torch operation
    (``div``, ``log``…; in backward the autograd node, e.g. ``DivBackward0``), ``location`` the
    ``file:line`` of the user's code that called it (in backward: the line whose forward op's
    gradient was the first non-finite one). ``inputs``/``outputs`` are the op's statistics (in
    backward: incoming and outgoing gradients); ``module_inputs``/``module_outputs`` those of
    the module call.

    >>> import torch, torchscope
    >>> torchscope.find_nonfinite(torchscope.examples.MLP(), torch.zeros(2, 20)).found
    False
    """

    model_type: str
    phase: str | None
    module: str | None
    module_type: str | None
    op: str | None
    location: str | None
    inputs: tuple[TensorStats, ...]
    outputs: tuple[TensorStats, ...]
    module_inputs: tuple[TensorStats, ...]
    module_outputs: tuple[TensorStats, ...]
    tensors: tuple[str, ...]
    backward: bool
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def found(self) -> bool:
        """Whether some value was NaN or infinite."""
        return self.phase is not None

    def __repr__(self) -> str:
        if not self.found:
            return f"<NonfiniteReport {self.model_type}: every value finite>"
        return (f"<NonfiniteReport {self.model_type}: first non-finite in {self.phase} at "
                f"{self.module!r} {self.op} {self.location}>")


@dataclass(frozen=True, slots=True)
class ParamGradient:
    """The gradient of one trainable parameter after a backward.

    ``grad_norm``/``ratio``/``zero_share`` are ``None`` when the parameter has no gradient
    (``has_grad`` false) or its values are unknown; ``ratio`` is ``grad_norm / param_norm``
    (``None`` when the parameter's norm is 0); ``finite`` whether the gradient has no NaN/Inf.
    """

    name: str
    block: str
    shape: tuple[int, ...]
    numel: int
    has_grad: bool
    grad_norm: float | None
    param_norm: float | None
    ratio: float | None
    zero_share: float | None
    finite: bool


@dataclass(frozen=True, slots=True)
class BlockGradient:
    """The gradients of one block (a module path cut at the report's depth), all its
    parameters together: the norms are over every value of the block."""

    block: str
    params: int
    none_grads: int
    grad_norm: float | None
    param_norm: float | None
    ratio: float | None
    zero_share: float | None
    finite: bool


@dataclass(frozen=True, slots=True, repr=False)
class GradientReport(Displayed):
    """Gradient flow after one backward: per parameter and per block, with findings.

    ``vanishing``/``exploding`` are the thresholds the findings used (a block whose gradient
    norm is below ``vanishing`` or above ``exploding``).

    >>> import torch, torchscope
    >>> r = torchscope.gradient_flow(torchscope.examples.MLP(), torch.ones(2, 20))
    >>> [b.block for b in r.blocks]
    ['hidden', 'output']
    """

    model_type: str
    params: tuple[ParamGradient, ...]
    blocks: tuple[BlockGradient, ...]
    findings: tuple[Finding, ...]
    vanishing: float
    exploding: float
    loss: float | None = None
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def none_grads(self) -> tuple[str, ...]:
        """Names of trainable parameters whose ``.grad`` stayed ``None``."""
        return tuple(p.name for p in self.params if not p.has_grad)

    def __repr__(self) -> str:
        return (f"<GradientReport {self.model_type}: {len(self.params)} parameters, "
                f"{len(self.none_grads)} without gradient>")


@dataclass(frozen=True, slots=True)
class OptimizerGroup:
    """One parameter group: its hyperparameters, how many tensors and values, which blocks
    (top-level modules) they belong to (``?`` for tensors of no module of the model)."""

    index: int
    lr: float | None
    weight_decay: float | None
    params: int
    numel: int
    blocks: tuple[str, ...]


@dataclass(frozen=True, slots=True, repr=False)
class OptimizerReport(Displayed):
    """What an optimizer holds compared with a model's trainable parameters.

    >>> import torch, torchscope
    >>> model = torchscope.examples.MLP()
    >>> r = torchscope.check_optimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    >>> [f.code for f in r.findings], r.groups[0].params
    ([], 4)
    """

    optimizer_type: str
    model_type: str
    groups: tuple[OptimizerGroup, ...]
    findings: tuple[Finding, ...]
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.severity is Severity.ERROR for f in self.findings)

    def __repr__(self) -> str:
        return (f"<OptimizerReport {self.optimizer_type} on {self.model_type}: "
                f"{len(self.groups)} groups, {len(self.findings)} findings>")
