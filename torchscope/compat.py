"""Drop-in conveniences for users of other tools: :func:`summary` takes torchinfo's arguments.

This module sits at the top of the layers, beside :mod:`torchscope.cli`: it calls the public
analysis (:func:`torchscope.summarize`) and prints with the renderers, which no analysis may do.

``from torchscope import summary`` then ``summary(model, input_size=(2, 20))`` prints the table
and returns the :class:`~torchscope.records.Report`. How torchinfo's options map:

==========================  ==============================================================
torchinfo                   torchscope
==========================  ==============================================================
``input_size``              ``input_size`` (one shape, or one per input); inputs are zeros
``input_data``              ``example_inputs`` (a tensor, a list/tuple) or, for a dict,
                            ``example_kwargs``
``batch_dim``               a dimension of size 1 inserted into every ``input_size``
``dtypes``, ``device``      the same (``device`` places built inputs; the model never moves)
``depth`` (default 3)       ``depth``
``col_names``               ``columns``: ``input_size``, ``output_size``, ``num_params``,
                            ``params_percent``, ``kernel_size``, ``trainable``; ``mult_adds``
                            shows the ``flops`` column: FLOPs, which are 2 × multiply-adds
``verbose``                 0 prints nothing, 1 the table, 2 also every parameter
``**kwargs``                keyword inputs of the forward (``example_kwargs``)
``mode``                    not applied: torchscope never switches a model between train and
                            eval (the table shows each module's own mode)
``col_width``,              not needed: columns fit their content and the terminal
``row_settings``
``cache_forward_pass``      not needed: a summary is a plain record; keep it
==========================  ==============================================================

>>> from torchscope.examples import MLP
>>> report = summary(MLP(), input_size=(2, 20), verbose=0)
>>> report.module("hidden").calls[0].outputs.shape
(2, 256)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torchscope.errors import ArgumentError, InputSpecError
from torchscope.inspect import summarize
from torchscope.rendering import print_report
from torchscope.rendering._args import _shown, check_depth
from torchscope.rendering._columns import COLUMNS, column_keys

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchscope.records import Report

__all__ = ["summary"]

_MODES = (None, "same", "train", "eval")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_names(value: object) -> bool:
    """``value`` is a list or tuple of ``str`` (a ``str`` alone is not)."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_options(*, batch_dim: object, cache_forward_pass: object, col_names: object,
                   col_width: object, depth: object, device: object, dtypes: object,
                   row_settings: object) -> None:
    """One line naming the first option of :func:`summary` of a type it does not take."""
    import torch

    if batch_dim is not None and not _is_int(batch_dim):
        raise InputSpecError(
            f"batch_dim = {batch_dim!r} is not an index; give the position of the batch "
            "dimension to insert, e.g. batch_dim=0"
        )
    if cache_forward_pass is not None and not isinstance(cache_forward_pass, bool):
        raise ArgumentError(f"summary: cache_forward_pass = {_shown(cache_forward_pass)} is "
                            "not True or False; pass a bool (it has no effect)")
    if col_names is not None and not isinstance(col_names, str) and not _is_names(col_names):
        raise ArgumentError(f"summary: col_names = {_shown(col_names)} is not a list of column "
                            "names; pass e.g. ['output_size', 'num_params'] (see "
                            "torchscope.rendering.COLUMNS)")
    if not (isinstance(col_width, int) and not isinstance(col_width, bool) and col_width > 0):
        raise ArgumentError(f"summary: col_width = {_shown(col_width)} is not a width; pass an "
                            "int > 0 (it has no effect: columns fit their content)")
    check_depth("summary", depth)
    if device is not None and not isinstance(device, (str, torch.device)):
        raise ArgumentError(f"summary: device = {_shown(device)} is not a device; pass e.g. "
                            "'cpu', 'cuda:0' or torch.device('meta')")
    if dtypes is not None and not (isinstance(dtypes, (list, tuple)) and all(
            isinstance(d, (str, torch.dtype)) for d in dtypes)):
        raise ArgumentError(f"summary: dtypes = {_shown(dtypes)} is not a list of dtypes; pass "
                            "one per input_size, e.g. [torch.long] or ['long', 'float32']")
    if row_settings is not None and not isinstance(row_settings, str) and not _is_names(
            row_settings):
        raise ArgumentError(f"summary: row_settings = {_shown(row_settings)} is not a list of "
                            "names; pass e.g. ['var_names'] (it has no effect: the tree is "
                            "always drawn)")


def _sizes(input_size: Any, batch_dim: int | None) -> list[tuple[int, ...]]:
    is_dim = _is_int
    if isinstance(input_size, (tuple, list)) and input_size and all(map(is_dim, input_size)):
        shapes = [tuple(input_size)]
    elif isinstance(input_size, (tuple, list)) and input_size and all(
            isinstance(s, (tuple, list)) and all(map(is_dim, s)) for s in input_size):
        shapes = [tuple(s) for s in input_size]
    else:
        raise InputSpecError(
            f"input_size = {input_size!r} is not a shape or a list of shapes; give e.g. "
            "input_size=(2, 20) or input_size=[(1, 128), (1, 128)]"
        )
    if batch_dim is not None:
        shapes = [(*s[:batch_dim], 1, *s[batch_dim:]) for s in shapes]
    return shapes


def _columns(col_names: Sequence[str] | None) -> list[str] | None:
    if col_names is None:
        return None
    if isinstance(col_names, str):
        col_names = [col_names]
    keys = ["type"]
    for name in col_names:
        key = "flops" if name == "mult_adds" and "flops" in COLUMNS else name
        if name == "mult_adds" and key == name:
            raise InputSpecError(
                "col_names: 'mult_adds' needs the FLOPs column, which this installation does "
                f"not have; choose from {', '.join(k for k in COLUMNS if k != 'module')}"
            )
        keys.append(key)
    return column_keys(keys)  # a typo is reported before the forward runs


def summary(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    input_data: Any = None,
    *,
    batch_dim: int | None = None,
    cache_forward_pass: bool | None = None,
    col_names: Sequence[str] | None = None,
    col_width: int = 25,
    depth: int | None = 3,
    device: torch.device | str | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
    mode: str | None = None,
    row_settings: Sequence[str] | None = None,
    verbose: int = 1,
    file: Any = None,
    **kwargs: Any,
) -> Report:
    """Summarize ``model`` like ``torchinfo.summary``, print the table and return the report.

    Accepts torchinfo's argument names (see the module documentation for how each maps); the
    model is left exactly as it was, and sizes alone need no memory (a meta forward).

    Args:
        model: any ``nn.Module``.
        input_size: one shape (``(2, 20)``) or one per positional input; zeros are traced.
        input_data: the inputs themselves: a tensor, a list/tuple, or a dict of keyword inputs.
        batch_dim: insert a dimension of size 1 at this index into every ``input_size``.
        cache_forward_pass: accepted for compatibility; has no effect.
        col_names: columns in order (torchinfo's names; see
            :data:`torchscope.rendering.COLUMNS`).
        col_width: accepted for compatibility; columns fit their content.
        depth: the deepest level shown (the root is 0); ``None`` for every level.
        device: where built inputs go (the model is never moved).
        dtypes: one dtype per ``input_size`` (``torch.long``, ``"long"``, ``"bf16"``…).
        mode: accepted for compatibility; the model keeps its own train/eval mode.
        row_settings: accepted for compatibility; the tree is always drawn.
        verbose: 0 prints nothing, 1 the table, 2 also the per-parameter view.
        file: where to print (default: stdout).
        kwargs: keyword inputs of the forward call.

    Returns:
        The :class:`~torchscope.records.Report`.

    Raises:
        ArgumentError: an option of a type it does not take (``col_names=5``, ``dtypes=5``,
            ``depth='x'``), before anything runs.
        InputSpecError: both ``input_size`` and ``input_data``, a malformed shape, an unknown
            ``mode`` or ``verbose``.
        TorchscopeError: an unknown column; a forward that raised (:class:`ForwardError`).

    >>> from torchscope.examples import MLP
    >>> summary(MLP(), input_size=(2, 20), depth=1, col_names=("output_size", "num_params"))
    ... # doctest: +ELLIPSIS
    Module ...
    """
    _check_options(batch_dim=batch_dim, cache_forward_pass=cache_forward_pass,
                   col_names=col_names, col_width=col_width, depth=depth, device=device,
                   dtypes=dtypes, row_settings=row_settings)
    del cache_forward_pass, col_width, row_settings  # torchinfo layout options, not needed
    if mode not in _MODES:
        raise InputSpecError(f"mode = {mode!r} is not one of 'train', 'eval', 'same'")
    if verbose not in (0, 1, 2):
        raise InputSpecError(f"verbose = {verbose!r} is not 0 (quiet), 1 (table) or 2 (all)")
    if input_size is not None and input_data is not None:
        raise InputSpecError("both input_size and input_data were given; pass one of them")
    options: dict[str, Any] = {}
    example_kwargs = dict(kwargs)
    if input_data is not None:
        if isinstance(input_data, Mapping):
            example_kwargs.update(input_data)
        else:
            options["example_inputs"] = input_data
    elif input_size is not None:
        options["input_size"] = _sizes(input_size, batch_dim)
        if dtypes is not None:
            options["dtypes"] = list(dtypes)
        if device is not None:
            options["device"] = device
    if example_kwargs:
        options["example_kwargs"] = example_kwargs
    columns = _columns(col_names)
    if options and columns and {"flops", "saved_act"} & set(columns):
        options["cost"] = True  # FLOPs and saved activations are counted on request
    report = summarize(model, **options)
    if verbose:
        out = file or sys.stdout
        fmt = "rich" if _interactive(out) else "text"
        print_report(report, fmt=fmt, depth=depth, file=out, columns=columns)
        if verbose == 2:
            print_report(report, fmt=fmt, params=True, file=out)
    return report


def _interactive(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
