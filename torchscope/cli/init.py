"""Plan an initialization policy on a model (a dry run) and optionally show its effect.

The plan lists, per tensor, the rule and initializer that would apply; rules that match nothing
are flagged. ``--check-stats`` applies the policy to a deep copy of the model and adds the mean
and standard deviation of every tensor.

Example:

    python -m torchscope init torchscope.examples:NestMLP --policy policy.toml --seed 0
"""

from __future__ import annotations

import argparse
import warnings
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
from torchscope.errors import InputSpecError
from torchscope.init import InitRuleWarning, apply_init, init_stats, load_policy
from torchscope.rendering import render
from torchscope.rendering._report import emit

if TYPE_CHECKING:

    pass

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


def run(args: argparse.Namespace) -> int:
    """Print the plan; with ``--check-stats`` also the statistics after applying it to a copy."""
    with progress(f"importing {args.target or 'the example MLP'}…"):
        model = load_target(args)
    policy = load_policy(args.policy)
    if args.check_stats:
        sizes = [parse_shape(t) for t in args.input_size] if args.input_size else None
        dtypes = [parse_dtype(d, where="--dtype") for d in args.dtype] if args.dtype else None
        report = init_stats(model, policy, seed=args.seed, input_size=sizes, dtypes=dtypes)
    elif args.input_size or args.dtype:
        raise InputSpecError(
            "--input-size and --dtype go with --check-stats (they materialize the copy of a "
            "lazy model); add --check-stats or drop them"
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InitRuleWarning)  # the plan lists unused rules
            report = apply_init(model, policy, seed=args.seed, dry_run=True)
    fmt = output_format(args)
    emit(render(report, fmt), fmt=fmt)
    return 0
