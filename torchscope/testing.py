"""Assertions for model tests: each fails with a message that shows what differs.

``assert_no_syncs()`` around a training step, ``assert_unchanged(model)`` around code that must
not touch a model, ``assert_ties``, ``assert_loads`` and ``assert_param_count``. They raise
``AssertionError`` (so they work in pytest, unittest or a plain script) and import torch only
when called. An argument of the wrong type raises :class:`~torchscope.errors.ArgumentError` and
an impossible value (a negative count) :class:`~torchscope.errors.InputSpecError`, before any
work, so a broken test is not mistaken for a failing model. The ``model_snapshot`` fixture of
the pytest plugin (``torchscope.pytest_plugin``) guards a whole architecture.

>>> import torch
>>> from torchscope.examples import MLP
>>> from torchscope.testing import assert_param_count, assert_unchanged
>>> model = MLP()
>>> assert_param_count(model, 7946)
>>> with assert_unchanged(model):
...     _ = model(torch.zeros(2, 20))
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchscope._units import short_repr as _shown
from torchscope.errors import ArgumentError, InputSpecError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchscope.records import CheckpointDiff, SyncReport, TiedGroup

__all__ = [
    "assert_loads",
    "assert_no_syncs",
    "assert_param_count",
    "assert_ties",
    "assert_unchanged",
]

_MAX_LINES = 40


def _lines(items: list[str]) -> str:
    shown = items[:_MAX_LINES]
    more = len(items) - len(shown)
    text = "\n".join(f"  {line}" for line in shown)
    return text + (f"\n  … and {more} more" if more else "")


# ------------------------------------------------------------------------------------------
# arguments



def _check_model(where: str, model: object) -> nn.Module:
    from torchscope._torch import require_module

    return require_module(model, where)


def _check_bool(where: str, name: str, value: object, *, none: str | None = None) -> None:
    if isinstance(value, bool) or (none is not None and value is None):
        return
    also = f" (or None {none})" if none is not None else ""
    raise ArgumentError(f"{where}: {name} = {_shown(value)} is not True or False{also}; "
                        "pass a bool")


def _check_count(where: str, name: str, value: object, *, none: str | None = None) -> int | None:
    if value is None and none is not None:
        return None
    also = f", or None {none}" if none is not None else ""
    try:
        if isinstance(value, bool):
            raise TypeError
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentError(f"{where}: {name} = {_shown(value)} is not an int; give the number "
                            f"of parameter values as an int, e.g. {name}=7946{also}") from None
    if count < 0:
        raise InputSpecError(f"{where}: {name} = {count} is negative; give the number of "
                             "parameter values (0 or more)")
    return count


def _check_groups(expected_groups: object) -> list[frozenset[str]]:
    example = "e.g. [['lm_head.weight', 'wte.weight']], or [] for no ties"
    if isinstance(expected_groups, (str, bytes)) or not isinstance(expected_groups, Iterable):
        raise ArgumentError(f"assert_ties: expected_groups = {_shown(expected_groups)} is not a "
                            f"list of groups of names; give a list of lists of str, {example}")
    groups: list[frozenset[str]] = []
    owner: dict[str, int] = {}
    for index, group in enumerate(expected_groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise ArgumentError(f"assert_ties: expected_groups[{index}] = {_shown(group)} is not "
                                f"a group of names; give each group as a list of str, {example}")
        names = list(group)
        for name in names:
            if not isinstance(name, str):
                raise ArgumentError(f"assert_ties: expected_groups[{index}] holds {_shown(name)}, "
                                    "not a str; give qualified tensor names such as "
                                    "'lm_head.weight'")
        unique = frozenset(names)
        if len(unique) < 2:
            raise InputSpecError(f"assert_ties: expected_groups[{index}] = {_shown(names)} has "
                                 "fewer than two names; a tie joins two or more tensors")
        for name in sorted(unique):
            if name in owner:
                raise InputSpecError(
                    f"assert_ties: {name!r} is in expected_groups[{owner[name]}] and "
                    f"expected_groups[{index}]; tensors that share memory form one group, so "
                    "merge the two groups"
                )
            owner[name] = index
        groups.append(unique)
    return groups


# ------------------------------------------------------------------------------------------
# synchronizations


def assert_no_syncs(*, include_cpu: bool | None = None,
                    deep: bool = False) -> contextlib.AbstractContextManager[SyncReport]:
    """Fail when the block makes a host-device synchronization, listing every one by line.

    Unlike :func:`torchscope.no_syncs` (which stops at the first one), the whole block runs
    and the failure lists every site with its count and fix.

    Args:
        include_cpu: count operations on CPU tensors, which would synchronize on an
            accelerator (default: ``True`` without CUDA, so a CPU test guards a GPU run).
        deep: also watch ATen ops at the dispatch level (see :func:`torchscope.detect_syncs`).

    Returns:
        A context manager giving the :class:`~torchscope.records.SyncReport` being filled.

    Raises:
        AssertionError: at the end of the block, when any synchronization was recorded (not
            when the block itself raised: that error goes through unchanged).
        ArgumentError: ``include_cpu`` or ``deep`` is not a bool (raised by the call).

    >>> import torch
    >>> with assert_no_syncs():
    ...     y = torch.ones(3) * 2
    """
    _check_bool("assert_no_syncs", "include_cpu", include_cpu, none="for the default")
    _check_bool("assert_no_syncs", "deep", deep)
    return _assert_no_syncs(include_cpu, deep)


@contextlib.contextmanager
def _assert_no_syncs(include_cpu: bool | None, deep: bool) -> Iterator[SyncReport]:
    __tracebackhide__ = True
    from torchscope.syncs import detect_syncs

    with detect_syncs(include_cpu=include_cpu, deep=deep) as report:
        yield report
    if report.total:
        from torchscope.rendering import render

        raise AssertionError(
            f"{report.total} host-device synchronization"
            f"{'' if report.total == 1 else 's'} in a block that must have none:\n"
            f"{render(report, 'text')}"
        )


# ------------------------------------------------------------------------------------------
# no side effects


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


@dataclass(frozen=True, slots=True)
class _TensorState:
    ident: int
    shape: tuple[int, ...]
    dtype: str
    device: str
    requires_grad: bool
    version: int
    hooks: int
    data: torch.Tensor | None  # a uint8 copy of the bytes; None for meta or lazy tensors


def _tensor_state(t: torch.Tensor) -> _TensorState:
    import torch
    from torch.nn.parameter import is_lazy

    lazy = is_lazy(t)
    data: torch.Tensor | None = None
    if not lazy and t.device.type != "meta":
        flat = t.detach().contiguous().reshape(-1)
        data = (flat.view(torch.uint8) if flat.numel() else flat).to("cpu", copy=True)
    hooks = getattr(t, "_backward_hooks", None) or {}
    return _TensorState(
        ident=id(t),
        shape=() if lazy else tuple(t.shape),
        dtype=str(t.dtype).removeprefix("torch."),
        device=str(t.device),
        requires_grad=bool(t.requires_grad),
        version=int(t._version),
        hooks=len(hooks),
        data=data,
    )


def _model_state(model: nn.Module) -> dict[str, Any]:
    modules = dict(model.named_modules(remove_duplicate=False))
    tensors: dict[str, _TensorState] = {}
    for path, mod in modules.items():
        prefix = path + "." if path else ""
        for kind in ("_parameters", "_buffers"):
            for name, t in getattr(mod, kind, {}).items():
                if t is not None:
                    tensors[prefix + name] = _tensor_state(t)
    return {
        "types": {p: type(m).__name__ for p, m in modules.items()},
        "training": {p: m.training for p, m in modules.items()},
        "hooks": {p: {h: tuple(getattr(m, h, None) or ()) for h in _HOOK_DICTS}
                  for p, m in modules.items()},
        "attributes": {p: frozenset(vars(m)) for p, m in modules.items()},
        "tensors": tensors,
    }


def _state_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    import torch

    out: list[str] = []

    def label(path: str) -> str:
        return path or "(root)"

    for path in before["types"].keys() - after["types"].keys():
        out.append(f"{label(path)}: module removed")
    for path in after["types"].keys() - before["types"].keys():
        out.append(f"{label(path)}: module added ({after['types'][path]})")
    for path, flag in before["training"].items():
        now = after["training"].get(path)
        if now is not None and now != flag:
            out.append(f"{label(path)}: training {flag} → {now}")
    for path, hooks in before["hooks"].items():
        now_hooks = after["hooks"].get(path)
        if now_hooks is None:
            continue
        for kind, ids in hooks.items():
            if ids != now_hooks[kind]:
                out.append(f"{label(path)}: {kind.strip('_')} {len(ids)} → {len(now_hooks[kind])}")
    for path, names in before["attributes"].items():
        now_names = after["attributes"].get(path)
        if now_names is None:
            continue
        for name in sorted(now_names - names):
            out.append(f"{label(path)}: attribute {name!r} added")
        for name in sorted(names - now_names):
            out.append(f"{label(path)}: attribute {name!r} removed")
    tensors_a: dict[str, _TensorState] = before["tensors"]
    tensors_b: dict[str, _TensorState] = after["tensors"]
    for name in tensors_a.keys() - tensors_b.keys():
        out.append(f"{name}: removed")
    for name in tensors_b.keys() - tensors_a.keys():
        out.append(f"{name}: added")
    for name, a in tensors_a.items():
        b = tensors_b.get(name)
        if b is None:
            continue
        if a.ident != b.ident:
            out.append(f"{name}: replaced by another tensor object")
        for what in ("shape", "dtype", "device", "requires_grad"):
            if getattr(a, what) != getattr(b, what):
                out.append(f"{name}: {what} {getattr(a, what)} → {getattr(b, what)}")
        if a.hooks != b.hooks:
            out.append(f"{name}: tensor hooks {a.hooks} → {b.hooks}")
        same_values = (a.data is None or b.data is None
                       or (a.data.shape == b.data.shape and torch.equal(a.data, b.data)))
        if not same_values:
            out.append(f"{name}: values changed")
        elif a.version != b.version and a.ident == b.ident:
            out.append(f"{name}: written in place (version {a.version} → {b.version})")
    return sorted(out)


def assert_unchanged(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Fail when the block changes ``model``: its state-dict bytes, flags, hooks or devices.

    Compared at the end of the block with a copy taken on entry: the modules and their types,
    every module's ``training`` flag, hooks (forward, backward, state-dict ones) and attribute
    names; every parameter's and buffer's object, shape, dtype, device, ``requires_grad``,
    tensor hooks, bytes (bit for bit) and in-place writes (its version counter). The copy of
    the bytes costs the memory of the model's tensors once.

    Args:
        model: the module that must come out of the block as it went in.

    Returns:
        A context manager.

    Raises:
        AssertionError: at the end of the block, listing each change (not when the block
            itself raised: that error goes through unchanged).
        ArgumentError: ``model`` is not an ``nn.Module`` (raised by the call).

    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> with assert_unchanged(model):
    ...     model.eval()
    Traceback (most recent call last):
    ...
    AssertionError: Linear changed inside assert_unchanged():
      (root): training True → False
    """
    return _assert_unchanged(_check_model("assert_unchanged", model))


@contextlib.contextmanager
def _assert_unchanged(model: nn.Module) -> Iterator[None]:
    __tracebackhide__ = True
    before = _model_state(model)
    yield
    changes = _state_differences(before, _model_state(model))
    if changes:
        raise AssertionError(
            f"{type(model).__name__} changed inside assert_unchanged():\n{_lines(changes)}"
        )


# ------------------------------------------------------------------------------------------
# ties, checkpoints, counts


def assert_ties(model: nn.Module,
                expected_groups: Iterable[Iterable[str]]) -> tuple[TiedGroup, ...]:
    """Fail unless the tensors that share memory in ``model`` are exactly ``expected_groups``.

    Args:
        model: the module to look at (only read, see :func:`torchscope.find_tied`).
        expected_groups: each group of qualified names that must share memory, e.g.
            ``[["lm_head.weight", "transformer.wte.weight"]]``; ``[]`` for no ties at all.

    Returns:
        The tied groups found.

    Raises:
        AssertionError: a group is missing, split differently or unexpected.
        ArgumentError: ``model`` is not an ``nn.Module`` or a group is not a list of str.
        InputSpecError: a group has fewer than two names, or a name is in two groups.

    >>> import torchscope
    >>> _ = assert_ties(torchscope.examples.SharedMLP(), [["2.weight", "4.weight"],
    ...                                                   ["2.bias", "4.bias"]])
    """
    __tracebackhide__ = True
    _check_model("assert_ties", model)
    want = set(_check_groups(expected_groups))
    from torchscope.tying import find_tied

    found = find_tied(model)
    have = {frozenset(g.names): g for g in found}
    missing = [g for g in want if g not in have]
    extra = [have[g] for g in have if g not in want]
    if not missing and not extra:
        return found
    lines = [f"expected tied, not found: {' ↔ '.join(sorted(g))}" for g in missing]
    lines += [f"tied, not expected: {' ↔ '.join(g.names)} ({g.kind.value})" for g in extra]
    found_text = "; ".join(" ↔ ".join(g.names) for g in found) or "none"
    raise AssertionError(
        f"the ties of {type(model).__name__} differ from the expected ones:\n{_lines(lines)}\n"
        f"  found: {found_text}"
    )


def assert_loads(model: nn.Module, checkpoint_path: str | os.PathLike[str], *, strict: bool = True,
                 key: str | None = None) -> CheckpointDiff:
    """Fail unless ``model.load_state_dict`` would accept the checkpoint; nothing is loaded.

    Args:
        model: the module the checkpoint is for (only read).
        checkpoint_path: a torch.save file, safetensors file or sharded index (read safely,
            see :func:`torchscope.diff_checkpoint`).
        strict: as ``load_state_dict(strict=...)``: with ``False`` missing and unexpected keys
            are allowed, shape mismatches still fail.
        key: the dotted path of the state dict inside a training checkpoint.

    Returns:
        The :class:`~torchscope.records.CheckpointDiff`.

    Raises:
        AssertionError: the load would fail; the message is the checkpoint diff with the fix.
        CheckpointError: the file cannot be read safely.
        ArgumentError: an argument of the wrong type (``checkpoint_path`` not a str or path).

    >>> import os, tempfile, torch, torchscope
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.pt")
    >>> torch.save(torchscope.examples.MLP().state_dict(), path)
    >>> assert_loads(torchscope.examples.MLP(), path).matched
    4
    """
    __tracebackhide__ = True
    _check_model("assert_loads", model)
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        raise ArgumentError(
            f"assert_loads: checkpoint_path = {_shown(checkpoint_path)} is not a file path; give "
            "the checkpoint's path as a str or pathlib.Path"
        )
    _check_bool("assert_loads", "strict", strict)
    if key is not None and not isinstance(key, str):
        raise ArgumentError(
            f"assert_loads: key = {_shown(key)} is not a str; give the dotted path of the state "
            "dict inside the file, e.g. key='model', or None for the whole file"
        )
    from torchscope.checkpoint import diff_checkpoint

    result = diff_checkpoint(model, checkpoint_path, key=key)
    fails = not result.would_load_strict if strict else bool(result.shape_mismatches)
    if fails:
        from torchscope.rendering import render

        how = "strict=True" if strict else "strict=False"
        raise AssertionError(
            f"{type(model).__name__}.load_state_dict({how}) would fail on "
            f"{os.fspath(checkpoint_path)!r}:\n{render(result, 'text')}"
        )
    return result


def assert_param_count(model: nn.Module, n: int, *, trainable: int | None = None) -> None:
    """Fail unless ``model`` has ``n`` parameters (tie-aware), and ``trainable`` of them trainable.

    Shared tensors count once, as in :func:`torchscope.summarize`. A model with uninitialized
    (lazy) parameters fails: its count is unknown until they are materialized.

    Args:
        model: the module to count (only read).
        n: the expected number of parameter values.
        trainable: the expected number with ``requires_grad`` (not checked when ``None``).

    Raises:
        AssertionError: a count differs; the message shows the count of each top-level block.
        ArgumentError: ``model`` is not an ``nn.Module`` or a count is not an int.
        InputSpecError: a count is negative, or ``trainable`` is more than ``n``.

    >>> import torchscope
    >>> assert_param_count(torchscope.examples.MLP(), 7946, trainable=7946)
    """
    __tracebackhide__ = True
    _check_model("assert_param_count", model)
    n = _check_count("assert_param_count", "n", n) or 0  # never None: no default for n
    trainable = _check_count("assert_param_count", "trainable", trainable,
                             none="to leave it unchecked")
    if trainable is not None and trainable > n:
        raise InputSpecError(
            f"assert_param_count: trainable = {trainable:,} is more than n = {n:,}; the "
            "trainable parameters are among the n parameters"
        )
    from torchscope.inspect import summarize

    report = summarize(model)
    name = type(model).__name__
    blocks = [f"{m.path}: {m.total_params:,} ({m.type_name})" for m in report.modules
              if m.depth == 1]
    if report.lazy_tensors:
        raise AssertionError(
            f"{name} has {report.lazy_tensors} uninitialized (lazy) tensors, so its parameter "
            f"count is unknown (at least {report.total_params:,}, expected {n:,}): run a forward "
            "or torchscope.materialize() first"
        )
    problems = []
    if report.total_params != n:
        problems.append(f"{report.total_params:,} parameters, expected {n:,} "
                        f"({report.total_params - n:+,})")
    if trainable is not None and report.trainable_params != trainable:
        problems.append(f"{report.trainable_params:,} trainable, expected {trainable:,} "
                        f"({report.trainable_params - trainable:+,})")
    if problems:
        raise AssertionError(
            f"{name} has {' and '.join(problems)}; per block:\n{_lines(blocks)}"
        )
