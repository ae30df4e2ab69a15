"""List what a checkpoint file holds; with ``--model``, diff it against a model before loading.

The file is recognized by its content (torch.save zip or legacy pickle, safetensors, a sharded
checkpoint's index JSON) and read safely: ``torch.load(weights_only=True, mmap=True)`` or the
safetensors header, never plain unpickling, never writing. Exit code 0 for a listing or a diff
that would load with ``load_state_dict(strict=True)``, 1 when that load would fail, 2 on a file
that cannot be read safely.

Example:

    python -m torchscope checkpoint mlp.params --model torchscope.examples:MLP
"""

from __future__ import annotations

import argparse

from torchscope.checkpoint import diff_checkpoint, inspect_checkpoint
from torchscope.cli import add_format_argument, load_target, output_format, progress
from torchscope.errors import TorchscopeError
from torchscope.rendering import show

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add FILE, ``--model``, ``--kwargs``, ``--key`` and ``--format``."""

    parser.add_argument("file", metavar="FILE",
                        help="checkpoint: a torch.save file of any name, a .safetensors file or "
                        "a sharded checkpoint's *.index.json")
    parser.add_argument(
        "--model",
        dest="target",
        default=None,
        metavar="TARGET",
        help="package.module:name or path/to/file.py:name of the model the file is for: print "
        "the diff and exit 1 when load_state_dict(strict=True) would fail",
    )
    parser.add_argument(
        "--kwargs",
        default=None,
        metavar="JSON",
        help="""keyword arguments for the model's class or factory: '{"n_layer": 2}'""",
    )
    parser.add_argument(
        "--key",
        default=None,
        metavar="KEY",
        help="dotted path of the state dict inside a training checkpoint (e.g. model); "
        "default: the one whose keys best match the model",
    )
    add_format_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Print the listing or the diff; the exit code says whether a strict load would work."""

    fmt = output_format(args)
    if args.target is None:
        if args.key is not None or args.kwargs is not None:
            raise TorchscopeError("--key and --kwargs apply to a diff: add --model TARGET")
        with progress(f"reading {args.file}…"):
            info = inspect_checkpoint(args.file)
        show(info, fmt)
        return 0
    with progress(f"importing {args.target}…"):
        model = load_target(args)
    with progress(f"reading {args.file} and comparing…"):
        diff = diff_checkpoint(model, args.file, key=args.key)
    show(diff, fmt)
    return 0 if diff.would_load_strict else 1
