"""Draw the model's block diagram: nested blocks as clusters, data flow from a traced forward.

The format follows the suffix of ``-o``: ``.svg``, ``.png`` and ``.pdf`` need the Graphviz
``dot`` program; ``.dot`` writes the DOT text without it. Without ``-o`` the DOT text goes to
stdout. With ``--input-size`` one forward is traced (on meta tensors when that works, so no
memory is needed) and edges show the tensors flowing between modules, also through torch
functions (``x + f(x)``: residual connections are edges); without it the diagram shows
containment only. A module called twice gets one box per call (``call 1/2``); runs of
identical blocks (the layers of a transformer) are one box marked ``×N`` unless ``--expand``.

Examples:

    python -m torchscope graph --input-size 2,20 -o mlp.svg
    python -m torchscope graph torchscope.examples:NestMLP --input-size 2,20 -o nest.dot
    python -m torchscope graph model.py:build --input-size 1,128 --dtype long --depth 3 -o m.svg
"""

from __future__ import annotations

import argparse

from torchscope.cli import (
    add_input_arguments,
    add_target_arguments,
    check_output_path,
    input_options,
    load_target,
    progress,
)
from torchscope.errors import InputSpecError
from torchscope.inspect import summarize
from torchscope.rendering.graph import render_graph, to_dot

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add TARGET, the example-input options, ``--depth``, ``--expand``, ``--no-legend``, ``-o``."""

    add_target_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument(
        "-o", "--output",
        default=None,
        metavar="FILE",
        help="file to write: .svg, .png, .pdf (need Graphviz's dot program) or .dot; default: "
        "DOT text on stdout",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help="draw modules down to depth N (the root is 0); deeper blocks collapse into one box "
        "with their totals (default: every module)",
    )
    parser.add_argument(
        "--expand",
        action="store_true",
        help="draw every block of a run of identical blocks instead of one box marked ×N",
    )
    parser.add_argument("--no-legend", dest="legend", action="store_false",
                        help="leave out the legend of styles")


def run(args: argparse.Namespace) -> int:
    """Summarize the target (tracing when sizes are given) and write or print its diagram."""
    import sys


    if args.depth is not None and args.depth < 0:
        raise InputSpecError(f"--depth {args.depth} is negative: use 0 for the root only, 1, 2…")
    if args.output is not None:  # before the import and the trace, not after them
        check_output_path(args.output)
    options = input_options(args)
    with progress(f"importing {args.target or 'the example MLP'}…"):
        model = load_target(args)
    with progress(f"tracing {type(model).__name__}…" if options else "walking the modules…"):
        report = summarize(model, follow_functions=True, **options)
    del model
    if args.output is None:
        sys.stdout.write(to_dot(report, depth=args.depth, expand=args.expand,
                                legend=args.legend))
        return 0
    with progress(f"drawing {args.output}…"):
        path = render_graph(report, args.output, depth=args.depth, expand=args.expand,
                            legend=args.legend)
    print(f"wrote {path}", file=sys.stderr)
    return 0
