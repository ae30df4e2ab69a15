"""The command line: ``python -m torchscope <command> [TARGET] [options]``.

Each command lives in ``torchscope/cli/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> exit code``; this module registers them, resolves targets and example-input
options shared by all of them (``--input-size``, keyword inputs ``--input name=1,128:long``,
``--columns``, ``--format``), shows progress on a terminal, suggests the closest command or
option on a typo, and turns a :class:`~torchscope.errors.TorchscopeError` into a short message
on stderr and exit code 2.

>>> from torchscope.cli import parse_shape
>>> parse_shape("1,3,224,224")
(1, 3, 224, 224)
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from torchscope import __version__
from torchscope._torch import parse_dtype
from torchscope.errors import InputSpecError, TargetError, TorchscopeError
from torchscope.rendering import Format
from torchscope.trace import load_json

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "add_columns_argument",
    "add_format_argument",
    "add_input_arguments",
    "add_target_arguments",
    "build_parser",
    "check_output_path",
    "column_list",
    "input_options",
    "load_target",
    "main",
    "output_format",
    "parse_dtype",
    "parse_input",
    "parse_shape",
    "progress",
    "prog_name",
    "resolve_target",
]

#: command -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "summarize": ("torchscope.cli.summarize", "blocks, parameters, buffers and shapes as a table"),
    "graph": ("torchscope.cli.graph", "block diagram of the model as DOT, SVG, PNG or PDF"),
    "check": ("torchscope.cli.check", "device, tie, lazy, unused-parameter, sync, gradient and "
              "NaN checks; exit 1 on errors"),
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
        help="shape of one positional input, e.g. 1,3,224,224; repeat for several inputs; "
        "name=SHAPE[:DTYPE] makes a keyword input (as --input). Inputs are zeros (also for "
        "integer dtypes)",
    )
    group.add_argument(
        "--input",
        action="append",
        default=None,
        dest="input_size",
        metavar="[NAME=]SHAPE[:DTYPE]",
        help="one input: input_ids=1,128:long is the keyword input input_ids of shape (1, 128) "
        "and dtype int64 (T5/BART: also decoder_input_ids=1,16:long); without NAME= a "
        "positional input. DTYPE: float32, bf16, fp16, half, long, int64, bool…",
    )
    group.add_argument(
        "--dtype",
        action="append",
        default=None,
        metavar="DTYPE",
        help="dtype per positional input (float32, long, bf16, fp16…); one value applies to "
        "all of them",
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
        help="output format (default: rich on a terminal, text when piped); json always "
        "carries schema_version",
    )


def add_columns_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--columns KEY,KEY…``: which columns of the module table, in which order."""
    from torchscope.rendering._columns import COLUMNS

    parser.add_argument(
        "--columns",
        default=None,
        metavar="KEYS",
        help="columns of the table in order, comma-separated (torchinfo's col_names): "
        + ", ".join(k for k in COLUMNS if k != "module")
        + "; default: those that say something about this model",
    )


def column_list(text: str) -> list[str]:
    """The column keys of ``--columns`` ``text`` (comma-separated, spaces around a key
    ignored), each checked; a message quotes a key as typed.

    Raises:
        InputSpecError: no key at all (``--columns ,,,``) or an unknown key.

    >>> column_list("params, output")
    ['num_params', 'output_size']
    """
    from torchscope.rendering._columns import COLUMNS, column_keys

    keys = [key.strip() for key in text.split(",") if key.strip()]
    if not keys:
        raise InputSpecError(
            f"--columns {text!r} names no column; give keys separated by commas, e.g. "
            f"--columns num_params,output_size (choose from "
            f"{', '.join(k for k in COLUMNS if k != 'module')})"
        )
    out: list[str] = []
    for key in keys:
        try:
            out += column_keys([key])
        except TorchscopeError as err:
            raise InputSpecError(f"--columns: {str(err).removeprefix('columns: ')}") from None
    return out


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

    Args:
        text: the shape as written on the command line.

    Returns:
        The shape.

    Raises:
        InputSpecError: not a list of non-negative integers.

    >>> parse_shape("2x20")
    (2, 20)
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
            "integers, e.g. --input-size 1,3,224,224 (a keyword input: input_ids=1,128:long)"
        )
    return dims




_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def parse_input(text: str) -> tuple[str | None, tuple[int, ...], torch.dtype | None]:
    """Parse one ``--input``: ``[NAME=]SHAPE[:DTYPE]`` into (name or None, shape, dtype or None).

    The dtype goes through :func:`torchscope._torch.parse_dtype`, the one dtype parser of the
    CLI and the Python API (``bf16``, ``fp16``, ``half``, ``long``, ``int64``, torch names).

    Args:
        text: e.g. ``input_ids=1,128:long`` or ``2,20``.

    Returns:
        The keyword name (``None`` for a positional input), the shape and the dtype.

    Raises:
        InputSpecError: a malformed shape or an unknown dtype.

    >>> parse_input("input_ids=1,128:long")
    ('input_ids', (1, 128), torch.int64)
    >>> parse_input("2,20")
    (None, (2, 20), None)
    """
    name: str | None = None
    match = _NAME.match(text)
    if match:
        name, text = match.group(1), match.group(2)
    shape_text, sep, dtype_text = text.partition(":")
    shape = parse_shape(shape_text)
    dtype = parse_dtype(dtype_text, where=f"the dtype of --input {text!r}") if sep else None
    return name, shape, dtype


def input_options(args: argparse.Namespace, *, kwargs_on_meta: bool = True) -> dict[str, Any]:
    """Keyword options for ``summarize``/``trace_forward`` from the input arguments.

    Positional ``--input-size``/``--input`` values become ``input_size`` (and ``dtypes``);
    named ones (``input_ids=1,128:long``) become ``example_kwargs`` of zeros, built on the meta
    device with ``--mode meta`` (no memory; unless ``kwargs_on_meta`` is false: ``check``
    compares the inputs' devices with the model's) and on ``--device`` (default CPU) otherwise.

    Args:
        args: the parsed arguments.

    Returns:
        The options.

    Raises:
        InputSpecError: malformed ``--input-size``/``--dtype``, or ``--dtype`` without sizes.
    """
    sizes: list[tuple[int, ...]] = []
    inline: list[torch.dtype | None] = []
    named: dict[str, tuple[tuple[int, ...], torch.dtype | None]] = {}
    for text in getattr(args, "input_size", None) or []:
        name, shape, dtype = parse_input(text)
        if name is None:
            sizes.append(shape)
            inline.append(dtype)
        elif name in named:
            raise InputSpecError(f"--input {name}= is given twice; give each keyword input once")
        else:
            named[name] = (shape, dtype)
    dtype_names = getattr(args, "dtype", None) or []
    dtypes = [parse_dtype(d, where="--dtype") for d in dtype_names]
    if dtypes and any(d is not None for d in inline):
        raise InputSpecError("give dtypes either inline (--input 2,20:long) or with --dtype, "
                             "not both")
    if any(d is not None for d in inline):
        import torch

        dtypes = [d or torch.float32 for d in inline]
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
    mode = getattr(args, "mode", "auto") or "auto"
    device = getattr(args, "device", None)
    if device is not None:
        from torchscope.trace._inputs import parse_device

        if mode == "real" and parse_device(device).type == "meta":
            raise InputSpecError(
                "mode = 'real' with device = 'meta': a real forward needs inputs with data; use "
                "mode='meta' (shapes without memory) or a device such as 'cpu'"
            )
    if named:
        import torch

        where = ("meta" if mode == "meta" and kwargs_on_meta
                 else (getattr(args, "device", None) or "cpu"))
        try:
            options["example_kwargs"] = {
                k: torch.zeros(shape, dtype=dtype or torch.float32, device=where)
                for k, (shape, dtype) in named.items()
            }
        except (RuntimeError, ValueError) as err:
            raise InputSpecError(
                f"cannot build the keyword inputs on device {where!r}: {err}; use --device cpu "
                "or --mode meta"
            ) from None
    if sizes or named:
        if sizes:
            options["input_size"] = sizes
        if dtypes:
            options["dtypes"] = dtypes
        if getattr(args, "device", None) and sizes:
            options["device"] = args.device
        options["mode"] = mode
    elif getattr(args, "device", None) or getattr(args, "mode", "auto") not in (None, "auto"):
        raise InputSpecError(
            "--device and --mode apply to example inputs: add --input-size, e.g. "
            "--input-size 2,20"
        )
    return options


# ------------------------------------------------------------------------------------------
# resolving a target string to a model


def _parse_kwargs(text: str | None, flag: str = "--kwargs") -> dict[str, Any]:
    """The JSON object ``text`` given to ``flag`` (``--kwargs``, ``--kwargs-b``)."""
    if text is None:
        return {}
    try:
        # bounded: a size and nesting limit (one line instead of a RecursionError)
        value = load_json(text, what=flag, max_bytes=100_000, error=TargetError)
    except TargetError as bounded:
        err = bounded.__context__
        if not isinstance(err, json.JSONDecodeError):
            raise
        raise TargetError(
            f"{flag} {text!r} is not valid JSON ({err.msg} at column {err.colno}); write a "
            """JSON object such as '{"n_layer": 2}'"""
        ) from None
    if not isinstance(value, dict):
        raise TargetError(
            f"{flag} must be a JSON object of keyword arguments, got {type(value).__name__}: "
            """write e.g. '{"n_layer": 2}'"""
        )
    return value


class _Interrupts:
    """Tells a Ctrl-C of the user (a SIGINT) from a ``KeyboardInterrupt`` that the target's own
    code raises: only the first is an interruption, the second is the target failing."""

    def __init__(self) -> None:
        self.signalled = False

    def is_real(self, err: BaseException) -> bool:
        return isinstance(err, KeyboardInterrupt) and self.signalled


@contextlib.contextmanager
def _watch_interrupts() -> Iterator[_Interrupts]:
    """While the target's code runs, note whether a real SIGINT arrived (then re-raised as
    before). Where no handler can be installed (not the main thread), every
    ``KeyboardInterrupt`` counts as real."""
    import signal
    import threading

    state = _Interrupts()
    if threading.current_thread() is not threading.main_thread():
        state.signalled = True
        yield state
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        state.signalled = True
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield state
    finally:
        if signal.getsignal(signal.SIGINT) is note:  # the target may have set its own
            signal.signal(signal.SIGINT, previous)


def _what_happened(err: BaseException) -> str:
    """``called sys.exit(3)`` or ``raised ValueError: first line of the message``."""
    if isinstance(err, SystemExit):
        return f"called sys.exit({'' if err.code is None else repr(err.code)})"
    lines = str(err).strip().splitlines()
    if not lines:
        return f"raised {type(err).__name__}"
    more = " …" if len(lines) > 1 else ""
    return f"raised {type(err).__name__}: {lines[0]}{more}"


_NO_EXIT_AT_IMPORT = ("a target must not exit when imported: put the script part under "
                      "if __name__ == '__main__':")


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
        with _watch_interrupts() as interrupts:
            try:
                spec.loader.exec_module(module)
            except BaseException as err:
                sys.modules.pop(module_name, None)
                if interrupts.is_real(err):
                    raise
                fix = (_NO_EXIT_AT_IMPORT if isinstance(err, SystemExit)
                       else "fix the error in that file")
                raise TargetError(
                    f"importing {str(path)!r} {_what_happened(err)} — {fix}"
                ) from err
    finally:
        if added:
            sys.path.remove(folder)
    return module


def _import_module(name: str) -> Any:
    with _watch_interrupts() as interrupts:
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
                f"importing {name!r} failed: {type(err).__name__}: {err} — the module itself "
                "imports something that is not installed"
            ) from err
        except Exception as err:
            raise TargetError(
                f"importing {name!r} {_what_happened(err)} — fix the error in that module"
            ) from err
        except BaseException as err:  # sys.exit(), KeyboardInterrupt… at import
            if interrupts.is_real(err):
                raise
            fix = (_NO_EXIT_AT_IMPORT if isinstance(err, SystemExit)
                   else "fix the error in that module")
            raise TargetError(f"importing {name!r} {_what_happened(err)} — {fix}") from err


def resolve_target(target: str | None, *, kwargs: dict[str, Any] | None = None,
                   flag: str = "--kwargs") -> nn.Module:
    """Turn ``package.module:name`` or ``path/file.py:name`` into a module.

    ``name`` may be dotted (``module:Outer.build``) and may be a module instance, a ``Module``
    subclass (instantiated with ``kwargs``) or a function returning a module (called with them).
    ``None`` gives the chapter's MLP. ``flag`` is the option that gave ``kwargs``, for messages.

    Raises:
        TargetError: the target does not resolve, its import fails, it is not a module, or the
            constructor/factory raises.

    >>> resolve_target("torchscope.examples:MLP").__class__.__name__
    'MLP'
    """
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
    with _watch_interrupts() as interrupts:
        return _build(module, text, where, attr, kwargs, interrupts, flag)


def _build(module: Any, text: str, where: str, attr: str, kwargs: dict[str, Any],
           interrupts: _Interrupts, flag: str = "--kwargs") -> nn.Module:
    """``attr`` of the imported ``module``: the instance, or what the class or factory made
    (``flag``: the option that gave ``kwargs``, for messages)."""
    from torch import nn

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
        except BaseException as err:  # a module __getattr__ or a property that raises
            if interrupts.is_real(err):
                raise
            what = repr(attr) if part == attr else f"{part!r} of {attr!r}"
            raise TargetError(
                f"looking up {what} in {where!r} {_what_happened(err)} — fix the module's "
                "__getattr__ (or the property) there, or point at another name"
            ) from err
    if isinstance(obj, nn.Module):
        if kwargs:
            raise TargetError(
                f"{text!r} is a module instance, so {flag} cannot apply; point at its class or "
                "a factory function instead"
            )
        return obj
    if not callable(obj):
        raise TargetError(
            f"{text!r} is a {type(obj).__name__}, not a module: point at an nn.Module instance, "
            "a Module subclass or a function returning a module"
        )
    call = f"{attr}(**{kwargs!r})" if kwargs else f"{attr}()"
    try:
        made = obj(**kwargs)
    except TorchscopeError:
        raise
    except Exception as err:
        raise TargetError(
            f"calling {call} from {where!r} {_what_happened(err)} — pass the arguments it needs "
            f"with {flag} '{{...}}'"
        ) from err
    except BaseException as err:  # sys.exit(), KeyboardInterrupt… in the constructor or factory
        if interrupts.is_real(err):
            raise
        fix = ("it must return a module, not exit" if isinstance(err, SystemExit)
               else "fix the error in that function")
        raise TargetError(f"calling {call} from {where!r} {_what_happened(err)} — {fix}") from err
    if not isinstance(made, nn.Module):
        raise TargetError(
            f"{text!r} returned a {type(made).__name__}, not an nn.Module: point at a module, a "
            "Module subclass or a function returning a module"
        )
    return made


def load_target(args: argparse.Namespace) -> nn.Module:
    """The model named by ``args.target`` and ``args.kwargs`` (the chapter's MLP by default);
    messages name the option ``args.kwargs_flag`` (default ``--kwargs``)."""
    flag = getattr(args, "kwargs_flag", None) or "--kwargs"
    return resolve_target(getattr(args, "target", None),
                          kwargs=_parse_kwargs(getattr(args, "kwargs", None), flag), flag=flag)


# ------------------------------------------------------------------------------------------
# output files


def check_output_path(text: str, *, option: str = "-o", protect: Sequence[str] = ()) -> str:
    """The absolute path for ``-o text``, checked before any work is done, so a report is never
    computed only to fail on writing (or to overwrite the input it was made from).

    Args:
        text: the path as given.
        option: the option's name in messages.
        protect: files that must not be overwritten (the script being run, the target file).

    Returns:
        The absolute path (resolved now: the code that runs may change folder).

    Raises:
        InputSpecError: an empty path, a folder, a missing or unwritable parent folder, or one
            of ``protect``.
    """
    if not text.strip():
        raise InputSpecError(f"{option} {text!r} is empty: give a file path such as out.txt")
    path = os.path.abspath(text)
    if os.path.isdir(path):
        raise InputSpecError(f"{option} {text!r} is a folder: give a file path in it, such as "
                             f"{os.path.join(text, 'out' + (os.path.splitext(path)[1] or '.txt'))}")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise InputSpecError(f"{option} {text!r}: the folder {folder!r} does not exist; create "
                             "it first or choose another path")
    if not (os.access(path, os.W_OK) if os.path.exists(path)
            else os.access(folder, os.W_OK | os.X_OK)):
        raise InputSpecError(f"{option} {text!r} is not writable (permission denied); choose a "
                             "path you can write to")
    real = os.path.realpath(path)
    for other in protect:
        same = os.path.realpath(other) == real
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(other, path)
        if same:
            raise InputSpecError(f"{option} {text!r} names {other!r}, the file being run, "
                                 "which the report would overwrite: choose another file for "
                                 "the report")
    return path


# ------------------------------------------------------------------------------------------
# the entry point


def _command_module(name: str) -> Any:
    module_name, _ = _COMMANDS[name]
    return importlib.import_module(module_name)


def prog_name() -> str:
    """How the user started torchscope: ``torchscope`` (the console script) or
    ``python -m torchscope``.

    >>> prog_name() in ("torchscope", "python -m torchscope")
    True
    """
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if argv0 in ("__main__.py", "-m", "-c", "") or argv0.startswith("python"):
        return "python -m torchscope"
    return "torchscope"


def _plain_doc(doc: str | None) -> str | None:
    """A module docstring for ``--help``: reST double backticks and ``:func:`` roles dropped."""
    if doc is None:
        return None
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)
    return text.replace("``", "")


class _Parser(argparse.ArgumentParser):
    """argparse with a suggestion on a typo (``did you mean summarize?``) and errors of one line
    on stderr, like every other error of the CLI (no usage block): ``torchscope summarize:
    error: argument --depth: invalid int value: 'abc' (see 'torchscope summarize --help')``."""

    #: the command this parser reads (``None`` for the top-level parser)
    command: str | None = None

    def error(self, message: str) -> NoReturn:
        hint = ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.5)
            if close:
                hint = f" (did you mean {close[0]}?)"
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("-"):
            flag = unknown.group(1).split("=", 1)[0]
            known = [o for a in self._actions for o in a.option_strings]
            for sub in self._subparsers._group_actions if self._subparsers else ():
                for p in getattr(sub, "choices", {}).values():
                    known += [o for a in p._actions for o in a.option_strings]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean {close[0]}?)"
        from torchscope.rendering._text import escape_text

        name = f"torchscope {self.command}" if self.command else "torchscope"
        text = escape_text(f"{message}{hint}")  # user text (a stray argument) stays on one line
        self.exit(2, f"{name}: error: {text} (see '{self.prog} --help')\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their lines (examples stay one per line); option help wraps."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command.

    Args:
        prog: the program name in usage lines (default: :func:`prog_name`).

    Returns:
        The parser.

    >>> build_parser("torchscope").format_usage().split()[:2]
    ['usage:', 'torchscope']
    """
    prog = prog or prog_name()
    parser = _Parser(
        prog=prog,
        description="Inspect and debug PyTorch models: blocks, parameters, shapes, ties, lazy "
        "layers, devices, syncs, checkpoints and block diagrams.",
        formatter_class=_HelpFormatter,
    )

    parser.add_argument("--version", action="version", version=f"torchscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, help_text) in _COMMANDS.items():
        module = _command_module(name)
        doc = _plain_doc(module.__doc__)
        cmd = sub.add_parser(name, help=help_text, formatter_class=_HelpFormatter,
                             description=doc.replace("python -m torchscope", prog) if doc else doc)
        if isinstance(cmd, _Parser):
            cmd.command = name
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner with ``message`` on stderr while the block runs, only on a terminal.

    Piped or redirected stderr gets nothing, so logs and captured output stay clean.

    >>> with progress("tracing"):
    ...     pass
    """
    stream = sys.stderr
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        yield
        return
    from rich.console import Console

    console = Console(file=stream, stderr=True, highlight=False, markup=False,
                      force_jupyter=False)
    with console.status(message, spinner="dots"):
        yield


#: what to give instead of an empty value, by argument dest
_EMPTY_HINTS: dict[str, str] = {
    "target": "package.module:name or path/to/file.py:name",
    "a": "package.module:name, path/to/file.py:name or a saved report .json file",
    "b": "package.module:name, path/to/file.py:name or a saved report .json file",
    "device": "a device such as cpu, cuda:0 or meta",
    "output": "a file path such as out.txt",
    "script": "the path of a Python script such as train.py",
    "module": "a module name such as package.train",
    "file": "the path of a checkpoint file",
    "kwargs": """a JSON object such as '{"n_layer": 2}'""",
    "kwargs_a": """a JSON object such as '{"n_layer": 2}'""",
    "kwargs_b": """a JSON object such as '{"n_layer": 2}'""",
}


def _reject_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Raise on an empty (or blank) value: ``--device ""`` would otherwise quietly mean the
    default, ``diff "" ""`` compare two default models."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = sub.choices.get(args.command) if sub is not None else None
    if command is None:
        return
    for action in command._actions:
        value = getattr(args, action.dest, None)
        if not isinstance(value, str) or value.strip():
            continue  # lists (--input-size, --dtype, the script's arguments) are parsed later
        flags = [o for a in command._actions if a.dest == action.dest for o in a.option_strings]
        name = "/".join(flags) or str(action.metavar or action.dest)
        hint = _EMPTY_HINTS.get(action.dest, f"a {action.metavar or 'value'}")
        if action.option_strings:
            fix = f"give {hint}, or leave out {action.option_strings[-1]} for its default"
        else:
            fix = f"give {hint}"
        raise InputSpecError(f"{name} is empty ({value!r}): {fix}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 findings/failed check, 2 bad input)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["syncs"] and "-m" in argv:  # what follows -m MODULE is the module's
        at = argv.index("-m") + 2
        if at < len(argv) and argv[at] != "--":
            argv.insert(at, "--")
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the command's own parser: its name, its options to suggest
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                   None)
        command = sub.choices.get(args.command) if sub is not None and args.command else None
        (command or parser).error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        _reject_empty(parser, args)
        code: int = args._run(args)
    except TorchscopeError as err:
        from torchscope.rendering._text import escape_text

        sys.stdout.flush()  # one line, whatever user text the message quotes
        print(f"torchscope {args.command}: error: {escape_text(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as err:  # the model's own code (a forward, a hook) called sys.exit()
        sys.stdout.flush()
        print(f"torchscope {args.command}: error: the model's code {_what_happened(err)} while "
              "torchscope ran it; remove the exit from the model's code (nothing was checked)",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `| head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code
