"""The command line: ``python -m torchscope <command> [TARGET] [options]``.

Each command lives in ``torchscope/_cmd_<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> exit code``; this module registers them, resolves targets and example-input
options shared by all of them, and turns a :class:`~torchscope.errors.TorchscopeError` into a
short message on stderr and exit code 2.

>>> from torchscope.cli import parse_shape
>>> parse_shape("1,3,224,224")
(1, 3, 224, 224)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torchscope import __version__
from torchscope._torch import parse_dtype
from torchscope.errors import InputSpecError, TargetError, TorchscopeError
from torchscope.rendering import Format

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "add_format_argument",
    "add_input_arguments",
    "add_target_arguments",
    "build_parser",
    "input_options",
    "load_target",
    "main",
    "output_format",
    "parse_dtype",
    "parse_shape",
    "resolve_target",
]

#: command -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "summarize": ("torchscope.cli.summarize", "blocks, parameters, buffers and shapes as a table"),
    "graph": ("torchscope.cli.graph", "block diagram of the model as DOT, SVG, PNG or PDF"),
    "check": ("torchscope.cli.check", "device, tie, lazy and sync checks; exit 1 on errors"),
    "syncs": ("torchscope.cli.syncs", "run a script and report host-device synchronizations"),
    "init": ("torchscope.cli.init", "plan (dry-run) an initialization policy on a model"),
    "checkpoint": ("torchscope.cli.checkpoint", "list a checkpoint file; diff it with a model"),
    "diff": ("torchscope.cli.diff", "architecture diff of two models or saved reports; exit 1 "
             "when they differ"),
}

DEFAULT_TARGET = "torchscope.examples:MLP"
FORMATS = ("rich", "text", "markdown", "json")
MODES = ("auto", "real", "meta", "fake")


# ------------------------------------------------------------------------------------------
# shared argument groups


def add_target_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add ``TARGET`` (``package.module:name`` or ``path/file.py:name``) and ``--kwargs``."""
    parser.add_argument(
        "target",
        nargs=None if required else "?",
        default=None,
        metavar="TARGET",
        help="package.module:name or path/to/file.py:name — a module instance, a Module "
        f"subclass or a function returning a module (default: {DEFAULT_TARGET}, the "
        "chapter's MLP)",
    )
    parser.add_argument(
        "--kwargs",
        default=None,
        metavar="JSON",
        help="""keyword arguments for the class or factory, as a JSON object: '{"n_layer": 2}'""",
    )


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--input-size`` (repeatable), ``--dtype`` (repeatable), ``--device``, ``--mode``."""
    group = parser.add_argument_group("example inputs (trace a forward call)")
    group.add_argument(
        "--input-size",
        action="append",
        default=None,
        metavar="SHAPE",
        help="shape of one positional input, e.g. 1,3,224,224; repeat for several inputs. "
        "Inputs are zeros (also for integer dtypes)",
    )
    group.add_argument(
        "--dtype",
        action="append",
        default=None,
        metavar="DTYPE",
        help="dtype per input (float32, long, bfloat16…); one value applies to all inputs",
    )
    group.add_argument("--device", default=None, help="device for the built inputs (never moves "
                       "the model)")
    group.add_argument(
        "--mode",
        default="auto",
        choices=MODES,
        help="real tensors, a meta copy (no memory), or fake tensors; auto picks the cheapest "
        "that works (default: auto)",
    )


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--format rich|text|markdown|json`` (default: rich on a terminal, text when piped)."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: rich on a terminal, text when piped)",
    )


def output_format(args: argparse.Namespace) -> Format:
    """The chosen ``--format``, or rich on a terminal and text when piped."""
    fmt = getattr(args, "format", None)
    if fmt in FORMATS:
        return cast(Format, fmt)
    return "rich" if sys.stdout.isatty() else "text"


# ------------------------------------------------------------------------------------------
# parsing example inputs


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1,3,224,224`` (also ``1x3x224x224`` or ``(1, 3, 224, 224)``) into a shape.

    Raises:
        InputSpecError: not a list of non-negative integers.
    """
    cleaned = text.strip().strip("()[]").replace("x", ",").replace(" ", "")
    parts = [p for p in cleaned.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:  # "5," -> (5,)
        parts = parts[:-1]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 0 for d in dims):
        raise InputSpecError(
            f"--input-size {text!r} is not a shape: expected comma-separated non-negative "
            "integers, e.g. --input-size 1,3,224,224"
        )
    return dims




def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options for ``summarize``/``trace_forward`` from the input arguments.

    Raises:
        InputSpecError: malformed ``--input-size``/``--dtype``, or ``--dtype`` without sizes.
    """
    sizes = [parse_shape(s) for s in (getattr(args, "input_size", None) or [])]
    dtype_names = getattr(args, "dtype", None) or []
    dtypes = [parse_dtype(d, where="--dtype") for d in dtype_names]
    if dtypes and not sizes:
        raise InputSpecError("--dtype needs --input-size: give the shape of each input first")
    if dtypes and len(dtypes) not in (1, len(sizes)):
        raise InputSpecError(
            f"got {len(dtypes)} --dtype values for {len(sizes)} --input-size values: give one "
            "dtype for all inputs or one per input"
        )
    if len(dtypes) == 1 and len(sizes) > 1:
        dtypes = dtypes * len(sizes)
    options: dict[str, Any] = {}
    if sizes:
        options["input_size"] = sizes
        if dtypes:
            options["dtypes"] = dtypes
        if getattr(args, "device", None):
            options["device"] = args.device
        options["mode"] = getattr(args, "mode", "auto") or "auto"
    elif getattr(args, "device", None) or getattr(args, "mode", "auto") not in (None, "auto"):
        raise InputSpecError(
            "--device and --mode apply to example inputs: add --input-size, e.g. "
            "--input-size 2,20"
        )
    return options


# ------------------------------------------------------------------------------------------
# resolving a target string to a model


def _parse_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise TargetError(
            f"--kwargs {text!r} is not valid JSON ({err.msg} at column {err.colno}); write a "
            """JSON object such as '{"n_layer": 2}'"""
        ) from None
    if not isinstance(value, dict):
        raise TargetError(
            f"--kwargs must be a JSON object of keyword arguments, got {type(value).__name__}: "
            """write e.g. '{"n_layer": 2}'"""
        )
    return value


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise TargetError(f"target file {str(path)!r} does not exist; give path/to/file.py:name")
    module_name = f"_torchscope_target_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {str(path)!r} as a Python file; give path/to/file.py:name")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise TargetError(
            f"importing {str(path)!r} raised {type(err).__name__}: {err} — fix the error in that "
            "file"
        ) from err
    finally:
        if added:
            sys.path.remove(folder)
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise TargetError(
                f"cannot import module {name!r} (no module named {missing!r}): check the "
                "spelling, install the package, or run from the folder that holds it"
            ) from None
        raise TargetError(
            f"importing {name!r} failed: {type(err).__name__}: {err} — the module itself imports "
            "something that is not installed"
        ) from err
    except Exception as err:
        raise TargetError(
            f"importing {name!r} raised {type(err).__name__}: {err} — fix the error in that module"
        ) from err


def resolve_target(target: str | None, *, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Turn ``package.module:name`` or ``path/file.py:name`` into a module.

    ``name`` may be dotted (``module:Outer.build``) and may be a module instance, a ``Module``
    subclass (instantiated with ``kwargs``) or a function returning a module (called with them).
    ``None`` gives the chapter's MLP.

    Raises:
        TargetError: the target does not resolve, its import fails, it is not a module, or the
            constructor/factory raises.

    >>> resolve_target("torchscope.examples:MLP").__class__.__name__
    'MLP'
    """
    from torch import nn

    text = target or DEFAULT_TARGET
    kwargs = dict(kwargs or {})
    if ":" in text and not (len(text) > 1 and text[1] == ":" and "\\" in text):  # not C:\...
        where, _, attr = text.rpartition(":")
    elif text.endswith(".py"):
        raise TargetError(
            f"target {text!r} names a file but no object in it: write {text}:name, where name "
            "is a module, a Module subclass or a function returning one"
        )
    else:
        where, _, attr = text.rpartition(".")
        if not where:
            raise TargetError(
                f"target {text!r} is not package.module:name or path/to/file.py:name "
                "(e.g. torchscope.examples:MLP)"
            )
    if not where or not attr:
        raise TargetError(
            f"target {text!r} is not package.module:name or path/to/file.py:name "
            "(e.g. torchscope.examples:MLP)"
        )
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    module = _import_file(Path(where)) if is_file else _import_module(where)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            available = sorted(
                n for n, v in vars(module).items()
                if not n.startswith("_") and (isinstance(v, nn.Module) or callable(v))
            )
            hint = f"; it has: {', '.join(available[:12])}" if available else ""
            raise TargetError(f"{where!r} has no attribute {attr!r}{hint}") from None
    if isinstance(obj, nn.Module):
        if kwargs:
            raise TargetError(
                f"{text!r} is a module instance, so --kwargs cannot apply; point at its class or "
                "a factory function instead"
            )
        return obj
    if not callable(obj):
        raise TargetError(
            f"{text!r} is a {type(obj).__name__}, not a module: point at an nn.Module instance, "
            "a Module subclass or a function returning a module"
        )
    try:
        made = obj(**kwargs)
    except TorchscopeError:
        raise
    except Exception as err:
        call = f"{attr}(**{kwargs!r})" if kwargs else f"{attr}()"
        raise TargetError(
            f"calling {call} from {where!r} raised {type(err).__name__}: {err} — pass the "
            "arguments it needs with --kwargs '{...}'"
        ) from err
    if not isinstance(made, nn.Module):
        raise TargetError(
            f"{text!r} returned a {type(made).__name__}, not an nn.Module: point at a module, a "
            "Module subclass or a function returning a module"
        )
    return made


def load_target(args: argparse.Namespace) -> nn.Module:
    """The model named by ``args.target`` and ``args.kwargs`` (the chapter's MLP by default)."""
    return resolve_target(getattr(args, "target", None),
                          kwargs=_parse_kwargs(getattr(args, "kwargs", None)))


# ------------------------------------------------------------------------------------------
# the entry point


def _command_module(name: str) -> Any:
    module_name, _ = _COMMANDS[name]
    return importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m torchscope",
        description="Inspect and debug PyTorch models: blocks, parameters, shapes, ties, lazy "
        "layers, devices, syncs, checkpoints and block diagrams.",
    )

    parser.add_argument("--version", action="version", version=f"torchscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        module = _command_module(name)
        cmd = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 findings/failed check, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args._run(args)
    except TorchscopeError as err:
        sys.stdout.flush()
        print(f"torchscope {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `| head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code
