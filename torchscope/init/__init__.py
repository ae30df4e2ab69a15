"""Initialization policies: declare how every parameter is initialized, by name and module type.

A policy is an ordered list of rules; the first rule that matches a parameter decides it. A rule
selects parameters by

- a glob over qualified names (``"encoder.*.weight"``, ``"*.bias"``), matched with
  :func:`fnmatch.fnmatchcase`: case-sensitive, and ``*`` **crosses dots** (``"*.weight"``
  matches ``net.0.weight``). A leading ``*.`` also matches the root module's own parameters
  (``"*.bias"`` matches ``bias``);
- a regular expression, written ``"re:<pattern>"`` and searched with :func:`re.search`
  (anchor it with ``^``/``$``);
- a module type: a class (``nn.Linear``, matched with ``isinstance``) or a class name
  (``"type:Linear"``, matched against the names of the module's classes, so ``LazyLinear``
  counts as ``Linear``), with an optional role, the parameter's own name on its module
  (``(nn.Linear, "weight")``, ``"type:Linear:bias"``, globs allowed: ``"type:LSTM:weight_*"``).

An initializer is a ``torch.nn.init`` name with literal arguments (``"xavier_uniform"``,
``"kaiming_normal(mode='fan_out', nonlinearity='relu')"``, ``"normal(std=0.02)"``,
``"uniform(-0.1, 0.1)"``, ``"constant(42)"`` …; parsed with :mod:`ast`, never evaluated), any
callable taking the tensor, ``"reset"`` (the owning module's ``reset_parameters``, other tensors
of that module are put back) or ``"keep"``.

>>> import torch, torchscope
>>> m = torchscope.examples.MLP()
>>> r = torchscope.apply_init(m, {"*.weight": "normal(std=0.02)", "*.bias": "zeros"}, seed=0)
>>> [e.status.value for e in r.entries]
['applied', 'applied', 'applied', 'applied']
>>> bool((m.output.bias == 0).all())
True
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils.hooks import RemovableHandle

from torchscope._torch import require_module, room_for_depth
from torchscope.errors import InitPolicyError
from torchscope.init._policy import (
    INITIALIZERS,
    Initializer,
    Matcher,
    Policy,
    Rule,
    load_policy,
    parse_policy,
    rule_where,
)
from torchscope.init._tree import ModelTree, as_float64, cycle_note, model_tree
from torchscope.lazy import materialize
from torchscope.records import InitEntry, InitReport, InitRule, InitStatus
from torchscope.trace import input_plan
from torchscope.tying import storage_key

__all__ = [
    "INITIALIZERS",
    "InitEntry",
    "InitReport",
    "InitRule",
    "InitRuleWarning",
    "InitStatus",
    "apply_init",
    "init_stats",
    "load_policy",
]


class InitRuleWarning(UserWarning):
    """A policy rule decided no parameter: a typo, or every match was taken by an earlier rule."""










# ---------------------------------------------------------------------------------------------
# planning


@dataclass(slots=True)
class _Unit:
    """One tensor to initialize once: every name and object over the same bytes."""

    names: list[str]
    tensor: torch.Tensor
    rule: Rule | None = None
    name: str = ""


def _units(tree: ModelTree) -> list[_Unit]:
    """Parameters grouped into tensors to fill once, in ``named_parameters`` order.

    One object under several names is one unit; distinct objects over exactly the same bytes
    (same storage, offset, shape, strides and dtype) are one unit too. Partial overlaps stay
    separate units (each is filled; the later one wins on the shared bytes).
    """
    by_id: dict[int, _Unit] = {}
    by_bytes: dict[tuple[object, ...], _Unit] = {}
    units: list[_Unit] = []
    for name, p in tree.params:
        unit = by_id.get(id(p))
        if unit is None and not is_lazy(p) and p.numel() > 0:
            key = (storage_key(p), p.storage_offset(), tuple(p.shape), p.stride(), p.dtype)
            unit = by_bytes.get(key)
            if unit is None:
                unit = by_bytes[key] = _Unit([], p)
                units.append(unit)
            by_id[id(p)] = unit
        elif unit is None:
            unit = by_id[id(p)] = _Unit([], p)
            units.append(unit)
        unit.names.append(name)
    return units


#: tensors of at most this many values are also initialized for trial on a real CPU tensor
_TRIAL_NUMEL = 1 << 16
#: dtypes whose initializers run on the CPU
_COMMON_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def _check_fn(init: Initializer, t: torch.Tensor, name: str, where: str) -> None:
    """Run a ``torch.nn.init`` initializer on a meta tensor like ``t``: bad arguments fail here."""
    assert init.fn is not None
    trial = torch.empty(tuple(t.shape), dtype=t.dtype, device="meta")
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                init.fn(trial, *init.args, **dict(init.kwargs))
        except NotImplementedError:  # an op without a meta kernel: cannot check ahead here
            if t.device.type != "cpu":
                return
        small = math.prod(t.shape) <= _TRIAL_NUMEL
        if small or (t.device.type == "cpu" and t.dtype not in _COMMON_FLOATS):
            # values too (meta kernels skip value checks); a CPU tensor of an uncommon dtype
            # (float8) on a small stand-in: its kernels may be missing on the CPU
            shape = tuple(t.shape) if small else tuple(min(int(d), 2) for d in t.shape)
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                init.fn(torch.empty(shape, dtype=t.dtype), *init.args, **dict(init.kwargs))
    except NotImplementedError as err:
        if t.device.type != "cpu":  # the CPU lacks a kernel the tensor's device may have
            return
        raise InitPolicyError(
            f"{where}: {init.text} cannot initialize {name} "
            f"({str(t.dtype).removeprefix('torch.')} on the CPU): "
            f"{str(err).strip().splitlines()[0][:160]}; initialize it in another dtype and "
            "convert, or keep it ('keep')"
        ) from None
    except Exception as err:
        raise InitPolicyError(
            f"{where}: {init.text} cannot initialize {name} (shape {list(t.shape)}, "
            f"{str(t.dtype).removeprefix('torch.')}): {err}; change the initializer or the "
            "rule's pattern"
        ) from None


def _owner(modules: Mapping[str, nn.Module], name: str) -> tuple[nn.Module, str]:
    path, _, role = name.rpartition(".")
    return modules[path], role


def _check_reset(module: nn.Module, name: str, where: str) -> None:
    if not callable(getattr(module, "reset_parameters", None)):
        raise InitPolicyError(
            f"{where}: 'reset' needs {type(module).__name__}.reset_parameters(), which "
            f"{name}'s module does not have; use a torch.nn.init initializer instead"
        )


# ---------------------------------------------------------------------------------------------
# applying


@contextlib.contextmanager
def _seeded(seed: int | None, tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """Seed the RNGs of ``tensors``' devices inside a fork: the caller's RNG state comes back."""
    if seed is None:
        yield
        return
    used = _accelerators(tensors)
    with contextlib.ExitStack() as stack:
        _fork_torch_rngs(stack, used)
        torch.default_generator.manual_seed(seed)
        for dtype, indices in sorted(used.items()):
            mod = torch.get_device_module(dtype)
            select = getattr(mod, "device", None)  # cuda/xpu: per-device; mps: one device
            for index in sorted(indices):
                with select(index) if select is not None else contextlib.nullcontext():
                    mod.manual_seed(seed)
        yield


def _accelerators(tensors: Iterable[torch.Tensor]) -> dict[str, set[int]]:
    """Device type -> the indices ``tensors`` are on, for devices with their own RNG (not the
    CPU or meta)."""
    used: dict[str, set[int]] = {}
    for t in tensors:
        if t.device.type not in ("cpu", "meta"):
            index = t.device.index if t.device.index is not None else 0
            used.setdefault(t.device.type, set()).add(index)
    return used


def _fork_torch_rngs(stack: contextlib.ExitStack, used: Mapping[str, set[int]]) -> None:
    """Fork torch's CPU generator and those of the ``used`` devices until ``stack`` closes."""
    stack.enter_context(torch.random.fork_rng(devices=[]))
    for dtype, indices in sorted(used.items()):
        stack.enter_context(torch.random.fork_rng(devices=sorted(indices), device_type=dtype))


@contextlib.contextmanager
def _rng_kept(model: nn.Module) -> Iterator[None]:
    """The caller's random state comes back after the block: torch's CPU generator and those
    of the devices ``model``'s tensors are on, Python's :mod:`random` and NumPy's global
    generator (a user's initializer or forward may draw from them)."""
    used = _accelerators((*model.parameters(), *model.buffers()))
    py_state = random.getstate()
    np = sys.modules.get("numpy")
    np_state = np.random.get_state() if np is not None else None
    try:
        with contextlib.ExitStack() as stack:
            _fork_torch_rngs(stack, used)
            yield
    finally:
        random.setstate(py_state)
        np = sys.modules.get("numpy")
        if np is not None and np_state is not None:
            np.random.set_state(np_state)


def _apply_one(init: Initializer, t: torch.Tensor, name: str, done: int) -> None:
    assert init.fn is not None
    try:
        init.fn(t, *init.args, **dict(init.kwargs))
    except Exception as err:
        raise InitPolicyError(
            f"initializer {init.text} raised {type(err).__name__} on {name}: {err}; "
            f"{done} tensor(s) before it were already initialized — fix the initializer"
        ) from err


def _reset(module: nn.Module, reset_ids: set[int]) -> None:
    """``module.reset_parameters()``, then put back its tensors that another rule decides."""
    saved = [
        (p, p.detach().clone())
        for p in module.parameters()
        if id(p) not in reset_ids and not is_lazy(p) and p.device.type != "meta"
    ]
    module.reset_parameters()  # type: ignore[operator]
    for p, value in saved:
        p.copy_(value)


class _DeferredInit:
    """Forward pre-hook on a lazy module: initialize its tensors once they materialized."""

    def __init__(self, items: list[tuple[str, str, Initializer]], seed: int | None) -> None:
        self.items = items  # (role on the module, qualified name, initializer)
        self.seed = seed
        self.handle: RemovableHandle | None = None

    def __call__(self, module: nn.Module, args: Any) -> None:
        tensors = [getattr(module, role) for role, _, _ in self.items]
        if any(is_lazy(t) for t in tensors):
            return  # not materialized yet (the module's own hook did not run): wait
        if self.handle is not None:
            self.handle.remove()
        for (_, name, init), t in zip(self.items, tensors):
            if init.kind == "fn":
                _check_fn(init, t, name, f"deferred initialization of {name}")
        reset_ids = {id(t) for (_, _, init), t in zip(self.items, tensors) if init.kind == "reset"}
        with _seeded(self.seed, tensors), torch.no_grad():
            did_reset = False
            for done, ((_, name, init), t) in enumerate(zip(self.items, tensors)):
                if init.kind == "reset":
                    if not did_reset:
                        _reset(module, reset_ids)
                        did_reset = True
                elif init.kind in ("fn", "callable"):
                    _apply_one(init, t, name, done)


# ---------------------------------------------------------------------------------------------
# the public entry point


@room_for_depth
def apply_init(
    model: nn.Module,
    policy: Policy,
    *,
    seed: int | None = None,
    dry_run: bool = False,
    strict: bool = False,
) -> InitReport:
    """Initialize ``model``'s parameters by an ordered policy; the first matching rule decides.

    Every rule is parsed and every initializer checked against the shapes it will fill (on the
    meta device) before any tensor changes. Tensors are filled under ``torch.no_grad()``; a tied
    tensor (one object under several names, or distinct tensors over the same bytes) is filled
    once, by the first rule matching any of its names. Lazy (uninitialized) parameters are
    filled right after they materialize by a forward pre-hook that then removes itself; meta
    tensors are planned only. Buffers are not touched (except by ``"reset"`` when the module's
    ``reset_parameters`` resets them); ``"reset"`` keeps a copy of the module's other parameters
    to put them back. Calling ``apply_init`` twice on a lazy model adds two hooks: both run,
    in order, so the later policy wins.

    Parameters are named by an iterative walk of the module tree (the names of
    ``named_parameters(remove_duplicate=False)``), so any depth and TorchScript modules work.
    A module graph with a cycle (a child holding its parent) is initialized as PyTorch would
    reach it through ``model.parameters()``, which ends on it: the edge back to the ancestor
    is not followed when naming parameters, and a note in the report names it.

    Args:
        model: the module to initialize in place.
        policy: a mapping ``selector -> initializer`` (order kept), a sequence of
            ``(selector, initializer)`` pairs, ``(module type, role, initializer)`` triples or
            dicts with ``match``/``type``, ``role`` and ``init`` keys, or a TOML policy file
            (a ``Path``, or a ``str`` ending in ``.toml``; see :func:`load_policy`). See the
            module docstring for selectors and initializers.
        seed: seed the random initializers (and deferred lazy ones, each lazy module with
            ``seed + k``) in a fork of the RNG; the caller's global RNG state is untouched.
            ``None`` draws from the global RNG as ``torch.nn.init`` does.
        dry_run: plan and check only: nothing changes and no hook is added.
        strict: raise when a parameter matches no rule.

    Returns:
        An :class:`InitReport`: per tensor its rule, initializer and status; unmatched tensors;
        rules that decided nothing.

    Raises:
        InitPolicyError: a malformed rule, an unknown initializer, arguments an initializer does
            not take or a shape it cannot fill, ``"reset"`` on a module without
            ``reset_parameters``, or (``strict``) unmatched parameters — always before any change.
            A callable initializer that raises stops the run (the message says how many tensors
            were already filled).

    Warns:
        InitRuleWarning: for each rule that decided no tensor.

    >>> import torch, torchscope
    >>> m = torchscope.examples.SharedMLP()
    >>> r = torchscope.apply_init(m, [("type:Linear:weight", "ones"), ("*", "keep")])
    >>> e = r.entry("4.weight")
    >>> e.name, e.aliases, bool((m[4].weight == 1).all())
    ('2.weight', ('4.weight',), True)
    """
    if not isinstance(model, nn.Module):
        raise InitPolicyError(
            f"apply_init needs an nn.Module, got {type(model).__name__}; pass the model itself"
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64
    ):
        raise InitPolicyError(
            f"seed={seed!r} is not an integer in [0, 2**64); give e.g. seed=0, or None"
        )
    for flag, value in (("dry_run", dry_run), ("strict", strict)):
        if not isinstance(value, bool):
            raise InitPolicyError(
                f"apply_init: {flag} = {value!r} is not a bool; pass {flag}=True or False"
            )
    rules = parse_policy(policy)
    tree = model_tree(model)
    modules = dict(tree.modules)
    matcher = Matcher(modules)
    units = _units(tree)

    matched = [0] * len(rules)
    decided = [0] * len(rules)
    for unit in units:
        for rule in rules:
            hit = next((n for n in unit.names if matcher.matches(rule.selector, n)), None)
            if hit is None:
                continue
            matched[rule.index] += 1
            if unit.rule is None:
                unit.rule, unit.name = rule, hit
                decided[rule.index] += 1
        if unit.rule is None:
            unit.name = unit.names[0]

    # every check before any change
    checked: set[tuple[int, tuple[int, ...], torch.dtype]] = set()
    for unit in units:
        if unit.rule is None:
            continue
        init, where = unit.rule.init, rule_where(unit.rule.index, unit.rule.selector.text)
        if init.kind == "reset":
            _check_reset(_owner(modules, unit.name)[0], unit.name, where)
        elif init.kind == "fn" and not is_lazy(unit.tensor):
            key = (unit.rule.index, tuple(unit.tensor.shape), unit.tensor.dtype)
            if key not in checked:
                _check_fn(init, unit.tensor, unit.name, where)
                checked.add(key)
    unmatched = [u.name for u in units if u.rule is None]
    if strict and unmatched:
        shown = ", ".join(unmatched[:8]) + (f", … ({len(unmatched)} in all)" if len(unmatched) >
                                             8 else "")
        raise InitPolicyError(
            f"strict=True: {len(unmatched)} parameter(s) matched no rule: {shown}; add rules for "
            "them (a last rule '*': 'keep' keeps the rest) or drop strict=True"
        )
    for rule in rules:
        if decided[rule.index] == 0:
            why = (
                "matches no parameter (a typo in the pattern?)"
                if matched[rule.index] == 0
                else f"matches {matched[rule.index]} tensor(s), all decided by earlier rules"
            )
            warnings.warn(
                f"init rule #{rule.index} {rule.selector.text!r} -> {rule.init.text} {why}",
                InitRuleWarning,
                stacklevel=3,  # the caller of apply_init (under its room_for_depth wrapper)
            )

    statuses = _statuses(units, dry_run=dry_run)
    notes: list[str] = list(cycle_note(tree))
    if not dry_run:
        notes += _apply(units, statuses, modules, seed)

    records = tuple(
        InitRule(
            index=r.index,
            selector=r.selector.text,
            kind=r.selector.kind,
            init=r.init.text,
            matched=matched[r.index],
            decided=decided[r.index],
        )
        for r in rules
    )
    entries = tuple(_entry(u, modules, statuses[i]) for i, u in enumerate(units))
    return InitReport(entries=entries, rules=records, seed=seed, dry_run=dry_run,
                      notes=tuple(notes))


def _statuses(units: Sequence[_Unit], *, dry_run: bool) -> list[InitStatus]:
    out: list[InitStatus] = []
    for unit in units:
        if unit.rule is None:
            out.append(InitStatus.UNMATCHED)
        elif unit.rule.init.kind == "keep":
            out.append(InitStatus.KEPT)
        elif dry_run:
            out.append(InitStatus.PLANNED)
        elif is_lazy(unit.tensor):
            out.append(InitStatus.DEFERRED)
        elif unit.tensor.device.type == "meta":
            out.append(InitStatus.META)
        else:
            out.append(InitStatus.APPLIED)
    return out


def _apply(
    units: Sequence[_Unit],
    statuses: Sequence[InitStatus],
    modules: Mapping[str, nn.Module],
    seed: int | None,
) -> list[str]:
    notes: list[str] = []
    now = [u for u, s in zip(units, statuses) if s is InitStatus.APPLIED]
    # tensors that "reset" decides, per module object: the rest of the module is put back
    reset_ids: dict[int, set[int]] = {}
    for u in now:
        assert u.rule is not None
        if u.rule.init.kind == "reset":
            module = _owner(modules, u.name)[0]
            reset_ids.setdefault(id(module), set()).add(id(u.tensor))
    # a callable (or a reset_parameters) can raise half-way: keep the values it may change,
    # so a failure leaves the model as it was (torch.nn.init initializers were checked ahead)
    risky = any(u.rule is not None and u.rule.init.kind in ("callable", "reset") for u in now)
    saved = ([(u.tensor, u.tensor.detach().clone()) for u in now] if risky else [])
    try:
        _fill(now, modules, reset_ids, seed)
    except BaseException as err:
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)
        if saved and isinstance(err, InitPolicyError):
            raise InitPolicyError(
                f"{str(err).split('; ')[0]}; every tensor was put back as it was — fix the "
                "initializer"
            ) from err.__cause__
        raise
    # lazy tensors: one self-removing hook per lazy module, after the module's own hook
    deferred: dict[int, tuple[nn.Module, list[tuple[str, str, Initializer]]]] = {}
    for u, s in zip(units, statuses):
        if s is InitStatus.DEFERRED:
            assert u.rule is not None
            module, role = _owner(modules, u.name)
            deferred.setdefault(id(module), (module, []))[1].append((role, u.name, u.rule.init))
    for k, (module, items) in enumerate(deferred.values()):
        hook = _DeferredInit(items, None if seed is None else (seed + 1 + k) % 2**64)
        hook.handle = module.register_forward_pre_hook(hook)
    if deferred:
        notes.append(
            f"{sum(len(i) for _, i in deferred.values())} lazy tensor(s) in {len(deferred)} "
            "module(s) will be initialized right after their first forward materializes them"
        )
    return notes


def _fill(now: Sequence[_Unit], modules: Mapping[str, nn.Module],
          reset_ids: dict[int, set[int]], seed: int | None) -> None:
    with _seeded(seed, [u.tensor for u in now]), torch.no_grad():
        done_reset: set[int] = set()
        for done, u in enumerate(now):
            assert u.rule is not None
            init = u.rule.init
            if init.kind == "reset":
                module = _owner(modules, u.name)[0]
                if id(module) not in done_reset:
                    _reset(module, reset_ids[id(module)])
                    done_reset.add(id(module))
            else:
                _apply_one(init, u.tensor, u.name, done)


def _entry(unit: _Unit, modules: Mapping[str, nn.Module], status: InitStatus) -> InitEntry:
    t = unit.tensor
    lazy = is_lazy(t)
    return InitEntry(
        name=unit.name,
        aliases=tuple(n for n in unit.names if n != unit.name),
        module_type=type(_owner(modules, unit.name)[0]).__name__,
        shape=None if lazy else tuple(t.shape),
        dtype=str(t.dtype).removeprefix("torch."),
        device=str(t.device),
        lazy=lazy,
        rule=None if unit.rule is None else unit.rule.index,
        init=None if unit.rule is None else unit.rule.init.text,
        status=status,
    )


@room_for_depth
def init_stats(
    model: nn.Module,
    policy: Policy,
    *,
    seed: int | None = None,
    input_size: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
) -> InitReport:
    """The plan of ``policy`` with the mean and std every tensor gets, measured on a copy.

    The model itself is untouched: the policy is applied to ``copy.deepcopy(model)``, in a
    fork of the random state (torch's, Python's, NumPy's: the caller's come back). A lazy
    model's copy is materialized by a forward on zeros of ``input_size`` (its deferred
    initializers run then); without sizes its lazy tensors' statistics stay unknown.

    Deeply nested models are copied with room for the recursion (up to 4,000 levels).
    TorchScript (scripted or traced) modules work: names are resolved by walking the copy's
    module tree, not by ``get_parameter``. A module graph with a cycle (a child holding its
    parent) works as for :func:`apply_init`: ``deepcopy`` keeps the cycle, the edge back to
    the ancestor is not followed when naming parameters and a note names it. Tensors of any
    dtype are measured (float8 is read as float64); complex tensors and values that cannot be
    read (packed float4) get no statistics.

    Args:
        model: the model to plan for.
        policy: as for :func:`apply_init`.
        seed: seeds the random initializers.
        input_size: input shapes that materialize a lazy copy.
        dtypes: one dtype per input (default float32).

    Returns:
        The dry-run :class:`~torchscope.records.InitReport` with ``stats`` filled.

    Raises:
        ArgumentError: ``model`` is not a module.
        InitPolicyError: a bad policy, or a model ``copy.deepcopy`` cannot copy.
        InputSpecError: bad ``input_size`` or ``dtypes`` (see :func:`torchscope.materialize`).

    >>> import torchscope
    >>> r = init_stats(torchscope.examples.MLP(), {"*.bias": "zeros"}, seed=0)
    >>> [s for s in r.stats if s[0] == "hidden.bias"]
    [('hidden.bias', 0.0, 0.0)]
    """
    model = require_module(model, "init_stats")
    if input_size is not None:  # checked before anything runs
        input_plan(input_size, dtypes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InitRuleWarning)  # the plan lists unused rules itself
        report = apply_init(model, policy, seed=seed, dry_run=True)
    try:
        twin = copy.deepcopy(model)
    except Exception as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InitPolicyError(
            f"init_stats: statistics need a copy of the model, but copy.deepcopy raised "
            f"{type(err).__name__}: {text[:160]}; plan without statistics "
            "(apply_init(..., dry_run=True))"
        ) from err
    # the copy draws from the caller's RNGs (unseeded initializers, a lazy copy's forward):
    # in a fork, so measuring leaves them where they were
    with _rng_kept(model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InitRuleWarning)
            apply_init(twin, policy, seed=seed)
        if input_size is not None:  # runs the deferred initializers
            materialize(twin, input_size=input_size, dtypes=dtypes)
    notes = report.notes
    if input_size is None and any(e.lazy for e in report.entries):
        notes = (*notes, "mean/std of lazy tensors are unknown until a forward materializes "
                 "them: add --input-size (e.g. --input-size 2,20), or input_size= in Python")
    tensors = model_tree(twin)
    stats: list[tuple[str, float | None, float | None]] = []
    with torch.no_grad():
        for e in report.entries:
            t = tensors.param(e.name)
            data = None if t is None or is_lazy(t) or t.numel() == 0 or t.is_complex() \
                else as_float64(t)
            if data is None:
                stats.append((e.name, None, None))
                continue
            stats.append((e.name, data.mean().item(), data.std(correction=0).item()))
    return dataclasses.replace(report, notes=notes, stats=tuple(stats))
