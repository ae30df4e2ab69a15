"""Argument checks of the public rendering functions: one line naming the argument and what
it takes, raised as :class:`~torchscope.errors.ArgumentError` before anything is rendered.

>>> check_depth("render", "x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
torchscope.errors.ArgumentError: render: depth = 'x' (str) is not a depth; pass an int >= 0 ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torchscope.errors import ArgumentError

__all__ = [
    "check_columns",
    "check_depth",
    "check_file",
    "check_flag",
    "check_options",
    "check_record",
    "check_width",
]


def _shown(value: object) -> str:
    """``'x' (str)``: the value's repr (shortened) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_record(function: str, name: str, value: object, cls: type, what: str) -> None:
    """Raise unless ``value`` is a ``cls``; ``what`` says where one comes from.

    >>> from torchscope.records import Report
    >>> check_record("render_text", "report", None, Report, "what summarize returns")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    torchscope.errors.ArgumentError: render_text: report = None (NoneType) is not a Report; ...
    """
    if not isinstance(value, cls):
        raise ArgumentError(f"{function}: {name} = {_shown(value)} is not a {cls.__name__}; "
                            f"pass {what}")


def check_depth(function: str, depth: object) -> None:
    """Raise unless ``depth`` is ``None`` or an int >= 0 (a bool is not a depth)."""
    if depth is None or (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0):
        return
    raise ArgumentError(f"{function}: depth = {_shown(depth)} is not a depth; pass an int >= 0 "
                        "(0 is the root) or None for every level")


def check_flag(function: str, name: str, value: object) -> None:
    """Raise unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{function}: {name} = {_shown(value)} is not True or False; "
                            "pass a bool")


def check_columns(function: str, columns: object) -> None:
    """Raise unless ``columns`` is ``None``, a comma-separated ``str`` or a sequence of
    ``str`` (the column keys; unknown keys are reported when the table is built)."""
    if columns is None or isinstance(columns, str):
        return
    if isinstance(columns, Sequence) and all(isinstance(c, str) for c in columns):
        return
    raise ArgumentError(f"{function}: columns = {_shown(columns)} is not a list of column "
                        "names; pass e.g. ['num_params', 'output_size'] or "
                        "'num_params,output_size'")


def check_width(function: str, width: object) -> None:
    """Raise unless ``width`` is ``None``, ``"terminal"`` or an int > 0."""
    if width is None or width == "terminal" or (
            isinstance(width, int) and not isinstance(width, bool) and width > 0):
        return
    raise ArgumentError(f"{function}: width = {_shown(width)} is not a number of columns; "
                        "pass an int > 0, 'terminal' or None (no limit)")


def check_file(function: str, file: object) -> None:
    """Raise unless ``file`` is ``None`` (stdout) or an open text stream with ``write``."""
    if file is None:
        return
    if not callable(getattr(file, "write", None)):
        raise ArgumentError(f"{function}: file = {_shown(file)} is not a writable stream; "
                            "pass an open text file, io.StringIO() or None for stdout")
    if getattr(file, "closed", False) is True:
        raise ArgumentError(f"{function}: file = {_shown(file)} is closed; pass an open text "
                            "file, io.StringIO() or None for stdout")


def _check_stats(function: str, stats: object) -> None:
    if stats is not None and not isinstance(stats, Mapping):
        raise ArgumentError(f"{function}: stats = {_shown(stats)} is not a mapping; pass "
                            "{name: (mean, std)} or None")


_CHECKS = {
    "depth": lambda function, value: check_depth(function, value),
    "params": lambda function, value: check_flag(function, "params", value),
    "columns": lambda function, value: check_columns(function, value),
    "width": lambda function, value: check_width(function, value),
    "stats": _check_stats,
}


def check_options(function: str, record: str, options: Mapping[str, Any],
                  allowed: Sequence[str]) -> None:
    """Raise on an option that ``record`` does not take, or a value it cannot use.

    >>> check_options("render", "CostReport", {"params": True}, ("depth",))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    torchscope.errors.ArgumentError: render: a CostReport takes no option 'params'; its ...
    """
    for name, value in options.items():
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "none"
            raise ArgumentError(f"{function}: a {record} takes no option {name!r}; its options "
                                f"are {takes}")
        check = _CHECKS.get(name)
        if check is not None:
            check(function, value)
