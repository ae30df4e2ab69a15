"""Summarize a model: its blocks, parameters and buffers, tie-aware totals, and (with
--input-size) the shapes flowing through every block. Without TARGET: the chapter's MLP."""

from __future__ import annotations

import argparse

from torchscope.cli import (
    add_columns_argument,
    add_format_argument,
    add_input_arguments,
    add_target_arguments,
    column_list,
    input_options,
    load_target,
    output_format,
    progress,
)
from torchscope.distributed import distributed_session, gather_report, is_primary
from torchscope.errors import InputSpecError
from torchscope.inspect import summarize
from torchscope.rendering._cost import COLUMNS_REGISTERED, cost_block
from torchscope.rendering._distributed import ranks_renderable
from torchscope.rendering._report import emit, print_report, ties_renderable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``summarize`` options."""

    add_target_arguments(parser)
    add_input_arguments(parser)
    add_format_argument(parser)
    add_columns_argument(parser)
    parser.add_argument("--depth", type=int, default=None, metavar="N",
                        help="show blocks down to depth N; deeper blocks fold into their totals")
    parser.add_argument("--params", action="store_true",
                        help="per-parameter view: every qualified name with shape, dtype, "
                        "device, numel, requires_grad and aliases")
    parser.add_argument("--ties", action="store_true",
                        help="also list the groups of tied (shared) tensors")
    parser.add_argument("--cost", action="store_true",
                        help="FLOPs (forward, backward) and memory of a training step per "
                        "block, on meta tensors (needs --input-size)")
    parser.add_argument("--optimizer", default=None, metavar="NAME",
                        help="with --cost: adam, adamw, sgd or sgd-momentum, for the size of "
                        "the optimizer state")
    parser.add_argument("--train-dtype", default=None, metavar="DTYPE",
                        help="with --cost: the dtype of training (bf16, fp16, float32), or "
                        "autocast:bf16 for mixed precision")


def run(args: argparse.Namespace) -> int:
    """Build the report and print it; exit 0."""

    if args.depth is not None and args.depth < 0:
        raise InputSpecError(f"--depth {args.depth} is negative: use 0 for the root only, 1, 2…")
    options = input_options(args)
    columns = None if args.columns is None else column_list(args.columns)  # before any work
    if getattr(args, "cost", False):
        options.update(cost=True, optimizer=args.optimizer, train_dtype=args.train_dtype)
    elif getattr(args, "optimizer", None) or getattr(args, "train_dtype", None):
        raise InputSpecError("--optimizer and --train-dtype apply to --cost: add --cost")
    # under torchrun: start the process group (and end it, also on failure); rank 0 prints
    with distributed_session() as distributed:
        try:
            with progress(f"importing {args.target or 'the example MLP'}…"):
                model = load_target(args)
        except Exception as err:
            if distributed:
                gather_report(err)  # every rank raises, naming the failed ranks: nobody waits
            raise
        traced = "tracing a forward" if "mode" in options else "walking the modules"
        with progress(f"{traced} of {type(model).__name__}…"):
            report = summarize(model, distributed=distributed, **options)
        if not is_primary():
            return 0
        fmt = output_format(args)
        print_report(report, fmt=fmt, depth=args.depth, params=args.params,
                     columns=columns)
        if report.cost is not None and fmt != "json":
            print()
            emit(cost_block(report, fmt=fmt, table=not COLUMNS_REGISTERED), fmt=fmt)
        if report.ranks and fmt != "json":
            emit(ranks_renderable(report, fmt=fmt), fmt=fmt)
        if args.ties and fmt != "json":

            emit(ties_renderable(report, fmt=fmt), fmt=fmt)
    return 0
