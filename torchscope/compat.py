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

from torchscope.errors import InputSpecError
from torchscope.inspect import summarize
from torchscope.rendering import print_report
from torchscope.rendering._columns import COLUMNS, column_keys

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchscope.records import Report

__all__ = ["summary"]

_MODES = (None, "same", "train", "eval")


def _sizes(input_size: Any, batch_dim: int | None) -> list[tuple[int, ...]]:
    def is_dim(d: object) -> bool:
        return isinstance(d, int) and not isinstance(d, bool)

    if batch_dim is not None and not is_dim(batch_dim):
        raise InputSpecError(
            f"batch_dim = {batch_dim!r} is not an index; give the position of the batch "
            "dimension to insert, e.g. batch_dim=0"
        )
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
    depth: int = 3,
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
        depth: the deepest level shown (the root is 0).
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
        InputSpecError: both ``input_size`` and ``input_data``, a malformed shape, an unknown
            ``mode`` or ``verbose``.
        TorchscopeError: an unknown column; a forward that raised (:class:`ForwardError`).

    >>> from torchscope.examples import MLP
    >>> summary(MLP(), input_size=(2, 20), depth=1, col_names=("output_size", "num_params"))
    ... # doctest: +ELLIPSIS
    Module ...
    """
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
