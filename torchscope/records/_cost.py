"""Records of a cost analysis: FLOPs and memory of every module call, and of a training step.

Imports the standard library only, so that :mod:`torchscope.records._core` can hold a
:class:`CostReport` in :class:`~torchscope.records.Report` without an import cycle.

>>> CallCost("hidden", 1, 20480, 40960, 160, 2048).total_flops
61440
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torchscope.records._core import Displayed

__all__ = ["OPTIMIZERS", "CallCost", "CostReport"]

#: The optimizers whose state a :class:`CostReport` can size (``None``: no optimizer).
OPTIMIZERS = ("adam", "adamw", "sgd", "sgd-momentum")


@dataclass(frozen=True, slots=True)
class CallCost:
    """The cost of one module call; FLOPs and saved bytes include the calls inside it.

    ``index`` is the call's global order (as :attr:`CallRecord.index
    <torchscope.records.CallRecord.index>` numbers it), ``forward_flops``/``backward_flops``
    are counted with torch's own formulas, ``saved_bytes`` the storage this call saved for
    backward (each storage once, parameters excluded), ``output_bytes`` the storage of its
    outputs.
    """

    path: str
    index: int
    forward_flops: int
    backward_flops: int
    saved_bytes: int
    output_bytes: int

    @property
    def total_flops(self) -> int:
        """Forward plus backward FLOPs."""
        return self.forward_flops + self.backward_flops


@dataclass(frozen=True, slots=True, repr=False)
class CostReport(Displayed):
    """FLOPs and memory of one forward and backward, per module call and per training step.

    FLOPs: ``forward_flops``/``backward_flops`` are exact for the ops torch has a formula for
    (matmuls, convolutions, attention: ``torch.utils.flop_counter``), equal to
    ``FlopCounterMode``; ops without one count 0 and are listed in ``unsupported_ops`` as
    ``(op, calls)``. ``flops_by_op`` is ``(op, forward, backward)``.

    Memory (bytes; parameters, gradients and optimizer state in ``train_dtype``):
    ``param_bytes``/``buffer_bytes`` each unique storage once; ``grad_bytes`` the trainable
    parameters; ``optimizer_state_bytes`` for ``optimizer`` (``None``: no optimizer) in
    ``optimizer_state_dtype``; ``saved_bytes`` the activations saved for backward (each
    storage once, views once, parameters not counted), ``saved_peak_bytes`` the most of them
    alive at once; ``input_bytes``/``output_bytes`` the model's inputs and outputs;
    ``inference_peak_bytes`` parameters, buffers and inputs plus the largest live set of a
    forward without gradients; ``training_peak_bytes`` parameters, buffers, inputs and
    optimizer state plus the largest live set of forward and backward (saved activations,
    temporaries and the gradients as they appear) or the gradients at the optimizer step,
    whichever is larger. ``mode`` is how the step ran (``meta``, ``fake`` or ``real``).
    ``notes`` say what the numbers cannot know.

    >>> import torch, torchscope
    >>> cost = torchscope.estimate_cost(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> cost.forward_flops
    30720
    """

    mode: str
    forward_flops: int
    backward_flops: int
    calls: tuple[CallCost, ...]
    train_dtype: str
    param_bytes: int
    buffer_bytes: int
    trainable_params: int
    grad_bytes: int
    optimizer: str | None
    optimizer_state_bytes: int
    optimizer_state_dtype: str | None
    saved_bytes: int
    saved_peak_bytes: int
    input_bytes: int
    output_bytes: int
    inference_peak_bytes: int
    training_peak_bytes: int
    flops_by_op: tuple[tuple[str, int, int], ...] = ()
    unsupported_ops: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=1)

    @property
    def total_flops(self) -> int:
        """Forward plus backward FLOPs of one step."""
        return self.forward_flops + self.backward_flops

    def calls_of(self, path: str) -> tuple[CallCost, ...]:
        """The costs of the calls of the module at ``path``, in call order."""
        return tuple(c for c in self.calls if c.path == path)

    def __repr__(self) -> str:
        return (f"<CostReport {self.mode}: forward {self.forward_flops:,} FLOPs, backward "
                f"{self.backward_flops:,} FLOPs, {len(self.calls)} calls>")

