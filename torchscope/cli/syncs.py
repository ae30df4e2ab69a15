"""Run a Python script or module under the host-device synchronization detector (like
``python -m cProfile``) and print, when it ends, every line that made (or, without an
accelerator, would make) the host wait for the device, with counts and fixes — also when the
script raises or is interrupted.

torchscope's options go before the script: everything after SCRIPT (or after -m MODULE) is
passed to the script as its own arguments, even when it looks like an option.

Examples:

    python -m torchscope syncs train.py --epochs 1
    python -m torchscope syncs -m docs.examples.train
    python -m torchscope syncs --format json -o syncs.json -m package.module --lr 0.1
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from torchscope.cli import add_format_argument, check_output_path, output_format
from torchscope.errors import TargetError
from torchscope.rendering import render, show
from torchscope.syncs import detect_syncs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``syncs`` options: SCRIPT, its arguments, --deep, --format."""

    add_format_argument(parser)
    parser.add_argument("--deep", action="store_true",
                        help="also watch ATen ops (scalar reads inside torch's C++ code); slower")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="write the report to FILE instead of stdout (keeps it apart from "
                        "the script's own output)")
    parser.add_argument("-m", dest="module", default=None, metavar="MODULE",
                        help="run a module like python -m MODULE (from the current folder); "
                        "what follows is the module's arguments")
    parser.add_argument("script", metavar="SCRIPT", nargs="?", default=None,
                        help="path to the Python script to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="arguments passed to the script as sys.argv[1:] (everything after "
                        "SCRIPT or -m MODULE, options included)")


def _stderr_is_terminal() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _module_spec(name: str) -> Any:
    """The import spec of module ``name``, found from the current folder like ``python -m``."""
    import importlib.util
    import os
    import sys

    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as err:
        raise TargetError(f"-m {name!r}: {err}; give an importable module such as "
                          "docs.examples.train") from None
    finally:
        if added:
            sys.path.remove(cwd)
    if spec is None:
        raise TargetError(f"-m {name!r}: no module of that name from {cwd!r}; check the spelling "
                          "or run from the folder that holds the package")
    return spec


def run(args: argparse.Namespace) -> int:
    """Run the script, print the report; exit with the script's status (1 if it raised)."""
    import os
    import runpy
    import sys


    module_name: str | None = args.module
    script_args = list(args.script_args)
    if module_name is not None:
        if args.script is not None:
            script_args.insert(0, args.script)
        spec = _module_spec(module_name)
        path = spec.origin or module_name
        folder = os.getcwd()
    else:
        if args.script is None:
            raise TargetError("syncs needs a script: give SCRIPT (train.py) or -m MODULE")
        path = args.script
        if not os.path.isfile(path):
            raise TargetError(f"script {path!r} does not exist; give the path of a Python file")
        folder = os.path.dirname(os.path.abspath(path))
    fmt = output_format(args) if args.output is None or args.format else "text"
    # checked and resolved now, before the script runs: a bad -o must not lose the report, nor
    # overwrite the script; the script may chdir. Only the process that started the script
    # reports (a forked child returning from it exits quietly)
    output = (check_output_path(args.output, protect=[path]) if args.output is not None
              else None)
    pid = os.getpid()
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    sys.argv = [path, *script_args]
    if sys.path:
        sys.path[0] = folder
    else:  # pragma: no cover
        sys.path.insert(0, folder)
    code = 0
    failure: str | None = None
    report = detect_syncs(deep=args.deep)
    if _stderr_is_terminal():  # a spinner would fight the script's own output: one line
        print(f"torchscope syncs: running {module_name or path} under the sync detector; "
              "the report follows when it ends", file=sys.stderr)
    try:
        with report:
            try:
                if module_name is not None:
                    runpy.run_module(module_name, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(path, run_name="__main__")
            except SystemExit as exc:
                if exc.code is None:
                    code = 0
                elif isinstance(exc.code, int):
                    code = exc.code
                else:
                    failure, code = str(exc.code), 1
            except KeyboardInterrupt:
                failure, code = "interrupted (KeyboardInterrupt)", 130
            except BaseException as exc:  # Exception and BaseException subclasses alike
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                failure = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
                code = 1
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
    sys.stdout.flush()
    if os.getpid() != pid:
        return code
    written = True
    if output is not None:
        written = _write(output, render(report, "text" if fmt == "rich" else fmt))
        if not written:  # the report goes to stdout instead of being lost
            show(report, "text" if fmt == "rich" else fmt)
    else:
        show(report, fmt)
    if failure is not None:
        sys.stdout.flush()
        print(f"torchscope syncs: {path} stopped: {failure}", file=sys.stderr)
    return code if written else 2


def _write(output: str, text: str) -> bool:
    """Write the report to ``output``; on failure say so on stderr and return False.

    A regular file is replaced through a temporary file in its folder, so an existing file
    stays intact when writing fails; a device or pipe (``/dev/null``) is written directly.
    """
    import os
    import sys
    import uuid

    real = os.path.realpath(output)  # a symlink: write where it points
    folder = os.path.dirname(real)
    direct = (os.path.exists(real) and not os.path.isfile(real)) or not os.access(folder,
                                                                                   os.W_OK)
    temp: str | None = None
    try:
        if direct:
            with open(real, "w", encoding="utf-8") as out:
                out.write(text)
            return True
        temp = os.path.join(folder, f".{os.path.basename(real)}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if os.path.isfile(real):
            os.chmod(temp, os.stat(real).st_mode & 0o7777)
        os.replace(temp, real)
        temp = None
    except OSError as err:
        sys.stdout.flush()
        print(f"torchscope syncs: error: cannot write the report to {output!r} "
              f"({err.strerror or err}); it follows on stdout — choose a writable path with -o",
              file=sys.stderr)
        return False
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return True
