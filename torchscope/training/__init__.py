"""Debugging one training step: parameters that get no gradient (DistributedDataParallel's
definition), the first NaN/Inf of a step, gradient flow, and what an optimizer holds.

Every function leaves the model, its ``.grad`` fields, the optimizer's state, the RNG and the
global modes as they were.

>>> import torchscope
>>> torchscope.find_unused_parameters(torchscope.examples.MLP(), input_size=[(2, 20)]).unused
()
"""

from __future__ import annotations

from torchscope.training._common import default_loss
from torchscope.training._gradients import (
    GradientWatch,
    gradient_flow,
    gradient_report,
    watch_gradients,
)
from torchscope.training._nonfinite import find_nonfinite
from torchscope.training._optimizer import check_optimizer
from torchscope.training._unused import find_unused_parameters, unused_in_forward

__all__ = [
    "GradientWatch",
    "check_optimizer",
    "default_loss",
    "find_nonfinite",
    "find_unused_parameters",
    "gradient_flow",
    "gradient_report",
    "unused_in_forward",
    "watch_gradients",
]
