"""Plan an initialization policy on a model (a dry run) and optionally show its effect.

The plan lists, per tensor, the rule and initializer that would apply; rules that match nothing
are flagged. ``--check-stats`` applies the policy to a deep copy of the model and adds the mean
and standard deviation of every tensor.

Example:

    python -m torchscope init torchscope.examples:NestMLP --policy policy.toml --seed 0
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from torchscope.cli import (
    add_format_argument,
    add_target_arguments,
    load_target,
    output_format,
    parse_dtype,
    parse_shape,
    progress,
)
from torchscope.errors import InputSpecError, TorchscopeError
from torchscope.init import InitRuleWarning, apply_init, load_policy
from torchscope.lazy import materialize
from torchscope.rendering import render
from torchscope.rendering._report import emit

if TYPE_CHECKING:
    from torch import nn

    from torchscope.records import InitReport
    from torchscope.rendering._init import Stats

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add TARGET, ``--kwargs``, ``--policy``, ``--seed``, ``--check-stats`` and ``--format``."""

    add_target_arguments(parser)
    parser.add_argument(
        "--policy",
        required=True,
        metavar="FILE",
        help="TOML policy file of [[rule]] tables with match (glob or re:...) or type (+ role), "
        "and init (e.g. \"normal(std=0.02)\")",
    )
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="seed the random initializers (for --check-stats)")
    parser.add_argument(
        "--check-stats",
        action="store_true",
        help="apply the policy to a copy of the model and show mean/std per tensor",
    )
    parser.add_argument(
        "--input-size",
        action="append",
        default=None,
        metavar="SHAPE",
        help="with --check-stats on a lazy model: materialize the copy by a forward on zeros of "
        "this shape (e.g. 2,20; repeat for several inputs) so its lazy tensors get values",
    )
    parser.add_argument("--dtype", action="append", default=None, metavar="DTYPE",
                        help="dtype per --input-size (default float32)")
    add_format_argument(parser)


def _stats(model: nn.Module, report: InitReport) -> Stats:
    """Mean and population std of every planned tensor of ``model`` (unknown when no data)."""
    import torch
    from torch.nn.parameter import is_lazy

    out: dict[str, tuple[float, float] | None] = {}
    with torch.no_grad():
        for e in report.entries:
            t = model.get_parameter(e.name)
            if is_lazy(t) or t.device.type == "meta" or t.numel() == 0 or t.is_complex():
                out[e.name] = None
                continue
            data = t.detach().double()
            out[e.name] = (data.mean().item(), data.std(correction=0).item())
    return out


def run(args: argparse.Namespace) -> int:
    """Print the plan; with ``--check-stats`` also the statistics after applying it to a copy."""
    import copy
    import dataclasses
    import warnings


    with progress(f"importing {args.target or 'the example MLP'}…"):
        model = load_target(args)
    policy = load_policy(args.policy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InitRuleWarning)  # the plan lists unused rules itself
        report = apply_init(model, policy, seed=args.seed, dry_run=True)
        stats = None
        if args.check_stats:
            try:
                twin = copy.deepcopy(model)
            except Exception as err:
                raise TorchscopeError(
                    f"--check-stats needs a copy of the model, but copy.deepcopy raised "
                    f"{type(err).__name__}: {err}; run without --check-stats"
                ) from err
            apply_init(twin, policy, seed=args.seed)
            lazy = any(e.lazy for e in report.entries)
            if args.input_size:

                dtypes = [parse_dtype(d) for d in args.dtype] if args.dtype else None
                materialize(twin, input_size=[parse_shape(t) for t in args.input_size],
                            dtypes=dtypes)  # runs the deferred initializers too
                lazy = False
            stats = _stats(twin, report)
            if lazy:
                note = ("mean/std of lazy tensors are unknown until a forward materializes them: "
                        "add --input-size (e.g. --input-size 2,20)")
                report = dataclasses.replace(report, notes=(*report.notes, note))
        elif args.input_size or args.dtype:
            raise InputSpecError(
                "--input-size and --dtype go with --check-stats (they materialize the copy of a "
                "lazy model); add --check-stats or drop them"
            )
    fmt = output_format(args)
    emit(render(report, fmt, stats=stats), fmt=fmt)
    return 0
