"""Compare the architecture of two models (or saved reports): modules added, removed, renamed or
retyped; parameters and buffers with a new shape, dtype, requires_grad or tie; per-block count
deltas; ties made or broken; with --input-size, the call shapes that changed. Exit 0 when equal,
1 when different, 2 on bad input.

Each side is package.module:name, path/to/file.py:name, or a report saved as JSON
(`python -m torchscope summarize TARGET --format json > before.json`).

Example:

    python -m torchscope diff before.json mypkg.model:build --input-size 2,20
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torchscope.arch_diff import diff, load_report
from torchscope.cli import (
    add_format_argument,
    add_input_arguments,
    input_options,
    load_target,
    output_format,
)
from torchscope.rendering import show

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the two sides ``A`` and ``B``, ``--kwargs-a``/``--kwargs-b``, inputs and format."""
    for side, when in (("a", "before"), ("b", "after")):
        parser.add_argument(
            side,
            metavar=side.upper(),
            help=f"the model {when}: package.module:name, path/to/file.py:name or a saved "
            "report .json file",
        )
    for side in ("a", "b"):
        parser.add_argument(
            f"--kwargs-{side}",
            default=None,
            metavar="JSON",
            help=f"keyword arguments for {side.upper()}'s class or factory, as a JSON object: "
            """'{"n_layer": 2}'""",
        )
    add_input_arguments(parser)
    add_format_argument(parser)


def _is_report_file(text: str) -> bool:
    return text.endswith(".json") and ":" not in Path(text).name


def _side(text: str, kwargs: str | None, flag: str) -> Any:
    if _is_report_file(text):
        if kwargs is not None:
            from torchscope.errors import TargetError

            raise TargetError(
                f"{flag} applies to a model target, but {text!r} is a saved report: drop "
                f"{flag} for it"
            )
        return load_report(text), Path(text).name
    model = load_target(argparse.Namespace(target=text, kwargs=kwargs, kwargs_flag=flag))
    return model, type(model).__name__


def run(args: argparse.Namespace) -> int:
    """Print the diff; exit 0 when the two sides are equal, 1 when they differ."""
    options = input_options(args)
    a, label_a = _side(args.a, args.kwargs_a, "--kwargs-a")
    b, label_b = _side(args.b, args.kwargs_b, "--kwargs-b")
    if label_a == label_b and args.a != args.b:
        label_a, label_b = args.a, args.b
    result = diff(a, b, labels=(label_a, label_b), **options)
    show(result, output_format(args))
    return 0 if result.equal else 1
