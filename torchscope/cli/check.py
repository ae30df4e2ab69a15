"""Check a model for problems and exit 1 when any is an error (so it can gate CI): devices
(tensors over several devices, meta tensors, plain tensor attributes, mixed dtypes, inputs on
the wrong device), tied and lazy tensors, and — with --input-size — trainable parameters that
get no gradient (the outputs' autograd graph does not reach them: DistributedDataParallel
fails on them) and the host-device synchronizations of one real forward. --backward adds one
real backward (gradient flow; parameters without gradient become errors), --nonfinite the
search for the first NaN/Inf of one step. Exit 0 when nothing is an error, 2 on bad input."""

from __future__ import annotations

import argparse

from torchscope.checks import check
from torchscope.cli import (
    add_format_argument,
    add_input_arguments,
    add_target_arguments,
    input_options,
    load_target,
    output_format,
)
from torchscope.rendering import emit, render

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``check`` options: TARGET, example inputs, --backward, --nonfinite,
    --format."""
    add_target_arguments(parser)
    add_input_arguments(parser)
    group = parser.add_argument_group("training step (need --input-size)")
    group.add_argument("--backward", action="store_true",
                       help="run one real backward: gradient flow per block, and parameters "
                       "without gradient become errors")
    group.add_argument("--nonfinite", action="store_true",
                       help="run one real step and name the module, op and line that made the "
                       "first NaN/Inf")
    add_format_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the checks and print the findings; exit 1 when any is an error, else 0."""
    options = input_options(args, kwargs_on_meta=False)  # inputs where the model is
    model = load_target(args)
    fmt = output_format(args)
    result = check(model, input_size=options.get("input_size"), dtypes=options.get("dtypes"),
                   example_kwargs=options.get("example_kwargs"),
                   device=options.get("device"), mode=options.get("mode", "auto"),
                   backward=bool(getattr(args, "backward", False)),
                   nonfinite=bool(getattr(args, "nonfinite", False)))
    emit(render(result, fmt), fmt=fmt)  # type: ignore[arg-type,unused-ignore]
    return result.exit_code
