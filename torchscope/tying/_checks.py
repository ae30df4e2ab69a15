"""Tie findings and the tie guard (re-exported by :mod:`torchscope.tying`).

:func:`check_ties` returns the findings about a model's ties: ties a model declares (transformers'
``_tied_weights_keys`` with ``config.tie_word_embeddings``) that no longer hold, on different
devices or not; ``shared_storage`` and ``overlap`` ties and what breaks them; tied state-dict
entries that safetensors refuses; tied parameters with different ``requires_grad``.

:func:`snapshot_ties` records the ties as plain values and :func:`compare_ties` reports what an
operation in between broke, changed or created; :func:`watch_ties` wraps both around a block.

Codes: ``tie-devices`` (error), ``tie-untied``, ``tie-shared-storage``, ``tie-overlap``,
``tie-requires-grad``, ``tie-safetensors`` (info, or warning when ``save_model`` refuses too),
and from the guard ``tie-broken``, ``tie-changed``, ``tie-created``, ``tie-gone``.

>>> import torchscope
>>> [f.code for f in torchscope.check_ties(torchscope.examples.SharedMLP())]
['tie-safetensors']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined,unused-ignore]

from torchscope._torch import gc_paused, plain_reads
from torchscope.errors import TorchscopeError
from torchscope.records import Finding, Severity, TiedGroup, TieKind
from torchscope.tying._core import (
    _candidates,
    _groups,
    _is_dense,
    _memory,
    _unstrided,
    _Walk,
    _walk,
    require_module,
)

__all__ = ["TieSnapshot", "check_ties", "compare_ties", "snapshot_ties", "ties_of", "watch_ties"]

_LIST = 3  # groups named in one message before "… and N more"


def _join(names: Sequence[str]) -> str:
    return " ↔ ".join(names)


def _groups_text(groups: Sequence[Sequence[str]]) -> str:
    shown = "; ".join(_join(g) for g in groups[:_LIST])
    more = len(groups) - _LIST
    return shown + (f"; … and {more} more" if more > 0 else "")


def _breakers(has_parameter: bool) -> str:
    """The operations that give each name of a shared_storage/overlap tie its own memory
    (each one checked in tests/test_tying.py)."""
    ops = ["model.to(dtype) / .half()", "model.to(another device)", "model.to('meta') / to_empty()"]
    if has_parameter:
        ops.insert(0, "copy.deepcopy (a Parameter's deepcopy clones its data)")
    ops.append("load_state_dict into a freshly built model that does not create this tie")
    return ", ".join(ops)


# ---------------------------------------------------------------------------------------------
# check_ties


@dataclass(slots=True)
class _Model:
    """One walk of a model and the tied groups in it, with a name -> tensor index map."""

    walk: _Walk
    groups: list[tuple[int, TiedGroup]]
    index: dict[str, int]

    @classmethod
    def of(cls, model: nn.Module, *, details: bool) -> _Model:
        with gc_paused(), plain_reads():
            return cls.of_walk(_walk(model, details=details))

    @classmethod
    def of_walk(cls, walk: _Walk) -> _Model:
        groups = _groups(walk.tensors, walk.all_names, _candidates(walk.tensors, walk.extra))
        index = {name: i for i, name in enumerate(walk.names)}
        for i, more in walk.extra.items():
            for name in more:
                index[name] = i
        return cls(walk, groups, index)

    def members(self, group: TiedGroup) -> list[int]:
        seen: dict[int, None] = {}
        for name in group.names:
            seen.setdefault(self.index[name])
        return list(seen)


def check_ties(model: nn.Module) -> tuple[Finding, ...]:
    """Findings about the model's ties: broken declared ties, fragile ties, safetensors.

    - ``tie-devices`` (error): a tie the model declares (transformers ``_tied_weights_keys``
      while ``config.tie_word_embeddings`` is true) whose tensors are separate tensors on
      different devices — e.g. after a hand-written ``device_map`` or moving one module;
    - ``tie-untied`` (warning): such a declared tie whose tensors are separate tensors on one
      device (after ``.to('meta')``/``to_empty``, ``load_state_dict(assign=True)``, reassigning);
    - ``tie-shared-storage`` / ``tie-overlap`` (warning): distinct tensors over the same or
      partly the same bytes, with the operations that separate them (an ``alias`` tie, one
      Parameter under several names, survives ``deepcopy`` and ``.to(dtype)``);
    - ``tie-requires-grad`` (warning): tied parameters with different ``requires_grad``;
    - ``tie-safetensors`` (info; warning when ``save_model`` refuses too): state-dict entries
      that share memory, which ``safetensors.torch.save_file`` refuses to save.

    Nothing runs and nothing changes; the cost is one walk over the module tree (see
    ``benchmarks/bench_tying.py``).

    Args:
        model: any module (meta and lazy tensors work).

    Returns:
        The findings, in group order (declared ties first).

    >>> import torch, torchscope
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> m[1].weight = torch.nn.Parameter(m[0].weight.data)
    >>> [f.code for f in torchscope.check_ties(m)]
    ['tie-shared-storage', 'tie-safetensors']
    """
    require_module(model, "check_ties")
    return _findings(_Model.of(model, details=True))


def ties_of(
    tensors: Sequence[torch.Tensor], names: Sequence[Sequence[tuple[str, str]]],
    owners: Sequence[tuple[str, nn.Module]],
) -> tuple[tuple[TiedGroup, ...], tuple[Finding, ...]]:
    """:func:`~torchscope.find_tied`'s groups and :func:`check_ties`'s findings from a walk
    done by the caller (so that a summary reads the module tree once).

    Args:
        tensors: every tensor object once, in ``named_parameters`` then ``named_buffers``
            order.
        names: per tensor, every ``(name, kind)`` it is reachable under, kind ``"p"``
            (parameter), ``"b"`` (buffer) or ``"n"`` (non-persistent buffer).
        owners: ``(name prefix, module)`` of the modules that declare tied weights
            (transformers' ``_tied_weights_keys``), prefix ``""`` or ending in ``"."``.

    Returns:
        ``(groups, findings)``; group ``k`` holds the names of ``tensors`` that share memory.

    >>> w = torch.zeros(4)
    >>> groups, findings = ties_of([w, w[1:]], [[("a", "b")], [("b", "b")]], [])
    >>> [g.kind.value for g in groups], [f.code for f in findings]
    (['overlap'], ['tie-overlap', 'tie-safetensors'])
    """
    walk = _Walk()
    for i, (t, entries) in enumerate(zip(tensors, names)):
        walk.tensors.append(t)
        walk.names.append(entries[0][0])
        if len(entries) > 1:
            walk.extra[i] = [n for n, _ in entries[1:]]
        for name, kind in entries:
            walk.kinds[name] = kind
    walk.owners.extend(owners)
    state = _Model.of_walk(walk)
    return tuple(g for _, g in state.groups), _findings(state)


def _findings(state: _Model) -> tuple[Finding, ...]:
    findings = _declared_findings(state)
    unsafe: list[tuple[str, ...]] = []
    refused: list[tuple[str, ...]] = []
    for _, group in state.groups:
        members = state.members(group)
        tensors = [state.walk.tensors[i] for i in members]
        kinds = state.walk.kinds
        has_param = any(kinds.get(n) == "p" for n in group.names)
        if group.kind is TieKind.SHARED_STORAGE:
            findings.append(Finding(
                code="tie-shared-storage", severity=Severity.WARNING,
                message=(f"{_join(group.names)} are different tensor objects over the same "
                         f"memory (a shared_storage tie); each gets its own copy after "
                         f"{_breakers(has_param)}"),
                path=group.names[0],
                hint=("make it an alias: assign the same Parameter object (b.weight = a.weight) "
                      "instead of nn.Parameter(a.weight.data); an alias survives deepcopy and "
                      ".to(dtype)"),
            ))
        elif group.kind is TieKind.OVERLAP:
            findings.append(Finding(
                code="tie-overlap", severity=Severity.WARNING,
                message=(f"{_join(group.names)} overlap partly in memory (a view or slice of "
                         f"another tensor, an overlap tie); each gets its own copy after "
                         f"{_breakers(has_param)}"),
                path=group.names[0],
                hint=("register only the full tensor and take the slice in forward (w[:k]), "
                      "so the sharing cannot be lost"),
            ))
        grads = {bool(t.requires_grad) for i, t in zip(members, tensors)
                 if kinds.get(state.walk.names[i]) == "p"}
        if len(grads) > 1:
            frozen = [n for i in members for n in state.walk.all_names(i)
                      if not state.walk.tensors[i].requires_grad and kinds.get(n) == "p"]
            findings.append(Finding(
                code="tie-requires-grad", severity=Severity.WARNING,
                message=(f"{_join(group.names)} share memory but {', '.join(frozen)} "
                         "has requires_grad=False while the others train: the optimizer still "
                         "updates the shared bytes, so the frozen name changes too"),
                path=frozen[0],
                hint=("set requires_grad on every name of the group together, or clone() the "
                      "frozen one to give it its own memory"),
            ))
        saved = [n for n in group.names if kinds.get(n) in ("p", "b")]
        if len(saved) > 1 and "meta" not in group.devices and not any(
            isinstance(t, UninitializedTensorMixin) or _unstrided(t) for t in tensors
        ):  # safetensors stores neither placeholders nor sparse or nested tensors
            (unsafe if _covers_storage(state, saved) else refused).append(tuple(saved))
    if unsafe:
        findings.append(Finding(
            code="tie-safetensors", severity=Severity.INFO,
            message=(f"state_dict entries share memory ({_groups_text(unsafe)}): "
                     "safetensors.torch.save_file(model.state_dict(), …) refuses to save them"),
            path=unsafe[0][0],
            hint=("use safetensors.torch.save_model(model, path) and load_model(model, path) "
                  "(one name per group is stored; the model's own tie fills the others), or "
                  "model.save_pretrained(dir) for transformers models"),
        ))
    if refused:
        findings.append(Finding(
            code="tie-safetensors", severity=Severity.WARNING,
            message=(f"state_dict entries overlap in memory and none covers its whole storage "
                     f"({_groups_text(refused)}): safetensors refuses both save_file and "
                     "save_model"),
            path=refused[0][0],
            hint=("save separate copies ({k: v.clone() for k, v in model.state_dict().items()}) "
                  "and re-create the views after loading, or use torch.save"),
        ))
    return tuple(findings)


def _covers_storage(state: _Model, names: Sequence[str]) -> bool:
    """Whether one of ``names`` covers its storage exactly (what ``save_model`` keeps)."""
    for name in names:
        t = _memory(state.walk.tensors[state.index[name]])
        if (t.storage_offset() == 0 and _is_dense(t)
                and t.numel() * t.element_size() == t.untyped_storage().nbytes()):
            return True
    return False


def _declared_pairs(walk: _Walk) -> list[tuple[str, str, str]]:
    """``(target, source, reason)`` for every tie the model declares (transformers 5.x:
    ``get_expanded_tied_weights_keys(all_submodels=True)``, which honours
    ``config.tie_word_embeddings``; else ``all_tied_weights_keys``)."""
    pairs: list[tuple[str, str, str]] = []
    taken: list[str] = []
    for prefix, module in sorted(walk.owners, key=lambda o: len(o[0])):
        if any(prefix.startswith(p) for p in taken):
            continue  # a submodel of a model already asked (it answers for all submodels)
        mapping: object = None
        getter = getattr(module, "get_expanded_tied_weights_keys", None)
        if callable(getter):
            try:
                mapping = getter(all_submodels=True)
            except (ValueError, TypeError, AttributeError, KeyError):
                mapping = None
        if not isinstance(mapping, Mapping):
            mapping = getattr(module, "all_tied_weights_keys", None)
        if not isinstance(mapping, Mapping):
            continue
        taken.append(prefix)
        config = getattr(module, "config", None)
        reason = (f"{type(module).__name__}._tied_weights_keys"
                  + (" with config.tie_word_embeddings=True"
                     if getattr(config, "tie_word_embeddings", False) else ""))
        for target, source in mapping.items():
            pairs.append((prefix + str(target), prefix + str(source), reason))
    return pairs


def _declared_findings(state: _Model) -> list[Finding]:
    pairs = _declared_pairs(state.walk) if state.walk.owners else []
    if not pairs:
        return []
    group_of: dict[str, int] = {}
    for k, (_, group) in enumerate(state.groups):
        for name in group.names:
            group_of[name] = k
    findings: list[Finding] = []
    for target, source, reason in pairs:
        a, b = state.index.get(target), state.index.get(source)
        if a is None or b is None or a == b:
            continue
        ta, tb = state.walk.tensors[a], state.walk.tensors[b]
        if isinstance(ta, UninitializedTensorMixin) or isinstance(tb, UninitializedTensorMixin):
            continue
        ga, gb = group_of.get(target), group_of.get(source)
        if ga is not None and ga == gb:
            continue  # they still share memory
        if ta.device != tb.device:
            findings.append(Finding(
                code="tie-devices", severity=Severity.ERROR,
                message=(f"{target} ({ta.device}) is declared tied to {source} ({tb.device}) "
                         f"by {reason}, but they are separate tensors on different devices: "
                         "the tie is broken and each copy trains on its own"),
                path=target,
                hint=("keep tied modules on one device (a device_map must place them together; "
                      "device_map='auto' does), move the model as a whole, then call "
                      "model.tie_weights()"),
            ))
        else:
            findings.append(Finding(
                code="tie-untied", severity=Severity.WARNING,
                message=(f"{target} is declared tied to {source} by {reason}, but they are "
                         "separate tensors: the tie was broken (e.g. by .to('meta')/to_empty, "
                         "load_state_dict(assign=True) or assigning a new Parameter)"),
                path=target,
                hint=("call model.tie_weights() to share them again, or set "
                      "config.tie_word_embeddings=False if they are meant to differ"),
            ))
    return findings


# ---------------------------------------------------------------------------------------------
# the tie guard


@dataclass(frozen=True, slots=True)
class TieSnapshot:
    """The ties of a model at one moment, as plain values (no tensors, no model).

    ``groups`` are :func:`~torchscope.find_tied`'s records (names, kind, unique bytes,
    devices); ``root_type`` is the model's class name. Compare with :func:`compare_ties`.
    """

    root_type: str
    groups: tuple[TiedGroup, ...]


def snapshot_ties(model: nn.Module) -> TieSnapshot:
    """Record the model's ties, to check later with :func:`compare_ties`.

    Args:
        model: any module.

    Returns:
        A frozen :class:`TieSnapshot` that keeps nothing of the model alive.

    >>> import torchscope
    >>> snap = torchscope.snapshot_ties(torchscope.examples.SharedMLP())
    >>> [g.names for g in snap.groups]
    [('2.weight', '4.weight'), ('2.bias', '4.bias')]
    """
    require_module(model, "snapshot_ties")
    state = _Model.of(model, details=False)
    return TieSnapshot(type(model).__name__, tuple(g for _, g in state.groups))


_WRAPPER_PARTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})


def _canonical(name: str, strip_module: bool) -> str:
    """A name without wrapper segments (torch.compile, FSDP, activation checkpointing, and a
    leading DDP ``module.`` when ``strip_module``)."""
    parts = [p for p in name.split(".") if p not in _WRAPPER_PARTS]
    if strip_module and parts and parts[0] == "module":
        parts = parts[1:]
    return ".".join(parts)


def compare_ties(snapshot: TieSnapshot, model: nn.Module) -> tuple[Finding, ...]:
    """What happened to the ties since :func:`snapshot_ties`: broken, changed or created.

    Names are compared without wrapper segments (``_orig_mod.``, ``_fsdp_wrapped_module.``,
    ``_checkpoint_wrapped_module.``, a leading DDP ``module.``), so the model may be a wrapped
    copy (pass the new object when an operation returns one).

    - ``tie-broken`` (warning): names that shared memory now fall into separate tensors;
    - ``tie-changed`` (warning from ``alias``, else info): still sharing, but the kind changed
      — e.g. ``load_state_dict(assign=True)`` turns an alias into a shared_storage tie, which
      ``deepcopy`` and ``.to(dtype)`` then separate;
    - ``tie-created`` (info): names that did not share memory now do;
    - ``tie-gone`` (info): fewer than two names of a group are left (renamed, removed or
      flattened by a wrapper), so whether the tie holds cannot be told.

    Args:
        snapshot: from :func:`snapshot_ties`.
        model: the model now.

    Returns:
        The findings: broken and changed ties in snapshot order, then created ones.

    Raises:
        TorchscopeError: ``snapshot`` is not a :class:`TieSnapshot`.

    >>> import torch, torchscope
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> m[1].weight = m[0].weight  # one Parameter in two modules
    >>> snap = torchscope.snapshot_ties(m)
    >>> [f.code for f in torchscope.compare_ties(snap, m.to("meta"))]
    ['tie-broken']
    """
    if not isinstance(snapshot, TieSnapshot):
        raise TorchscopeError(
            f"compare_ties needs a TieSnapshot, got {type(snapshot).__name__}: take one with "
            "torchscope.snapshot_ties(model) before the operation")
    require_module(model, "compare_ties")
    state = _Model.of(model, details=False)
    old_names = [n for g in snapshot.groups for n in g.names]
    strip = (not any(n.startswith("module.") for n in old_names)
             and bool(state.index) and all(n.startswith("module.") for n in state.index))
    now: dict[str, int] = {}  # canonical name -> tensor index now
    for name, i in state.index.items():
        now.setdefault(_canonical(name, strip), i)
    new_group: dict[int, int] = {}  # tensor index -> group position now
    for k, (_, group) in enumerate(state.groups):
        for name in group.names:
            new_group[state.index[name]] = k
    findings: list[Finding] = []
    old_of: dict[str, int] = {}
    for k, group in enumerate(snapshot.groups):
        names = [_canonical(n, False) for n in group.names]
        for name in names:
            old_of[name] = k
        present = [n for n in names if n in now]
        if len(present) < 2:
            findings.append(_gone(group, present))
            continue
        parts: dict[object, list[str]] = {}
        for name in present:
            i = now[name]
            parts.setdefault(new_group.get(i, ("alone", i)), []).append(name)
        if len(parts) > 1:
            findings.append(_broken(group, list(parts.values()), state, now))
            continue
        (key,) = parts
        kind = state.groups[key][1].kind if isinstance(key, int) else TieKind.ALIAS
        if kind is not group.kind:
            findings.append(_changed(group, kind))
    for _, group in state.groups:
        names = [_canonical(n, strip) for n in group.names]
        before: dict[object, list[str]] = {}
        for name in names:
            before.setdefault(old_of.get(name, ("alone", name)), []).append(name)
        if len(before) > 1:
            findings.append(_created(group, list(before.values())))
    return tuple(findings)


def _gone(group: TiedGroup, present: list[str]) -> Finding:
    left = f" (only {present[0]} is left)" if present else ""
    return Finding(
        code="tie-gone", severity=Severity.INFO,
        message=(f"the {group.kind.value} tie of {_join(group.names)} cannot be checked: its "
                 f"names are no longer in the model{left}"),
        path=group.names[0],
        hint="names change when a wrapper flattens parameters; compare with the unwrapped model",
    )


def _broken(group: TiedGroup, parts: list[list[str]], state: _Model,
            now: dict[str, int]) -> Finding:
    shown = " | ".join(
        ", ".join(p) + f" ({state.walk.tensors[now[p[0]]].device})" for p in parts)
    return Finding(
        code="tie-broken", severity=Severity.WARNING,
        message=(f"the {group.kind.value} tie of {_join(group.names)} is broken: they are now "
                 f"{len(parts)} separate tensors: {shown}"),
        path=group.names[0],
        hint=("re-tie after the operation: model.tie_weights() for transformers models, else "
              "assign the same Parameter again (b.weight = a.weight); .to('meta'), to_empty() "
              "and load_state_dict(assign=True) replace Parameters module by module"),
    )


def _changed(group: TiedGroup, kind: TieKind) -> Finding:
    was_alias = group.kind is TieKind.ALIAS
    return Finding(
        code="tie-changed", severity=Severity.WARNING if was_alias else Severity.INFO,
        message=(f"{_join(group.names)} still share memory, but the tie changed from "
                 f"{group.kind.value} to {kind.value}"
                 + ("; they are different Parameter objects now (load_state_dict(assign=True) "
                    "wraps each entry in its own Parameter), which deepcopy and .to(dtype) "
                    "separate" if was_alias else "")),
        path=group.names[0],
        hint=("re-tie: model.tie_weights() for transformers models, else assign the same "
              "Parameter to every name" if was_alias else None),
    )


def _created(group: TiedGroup, parts: list[list[str]]) -> Finding:
    return Finding(
        code="tie-created", severity=Severity.INFO,
        message=(f"{_join(group.names)} now share memory ({group.kind.value}) but were "
                 f"{len(parts)} separate tensors at the snapshot"),
        path=group.names[0],
        hint=("expected after tie_weights(); otherwise look for a Parameter assigned to two "
              "modules or a state dict whose entries share memory loaded with assign=True"),
    )


@contextmanager
def watch_ties(model: nn.Module) -> Iterator[list[Finding]]:
    """Report the ties broken, changed or created by the code in the ``with`` block.

    Yields a list that is filled with :func:`compare_ties`'s findings when the block exits
    (also when it raises; the exception propagates). For operations that return a new object
    (wrapping in FSDP or DDP), use :func:`snapshot_ties` and :func:`compare_ties` directly.

    Args:
        model: the module the block changes in place.

    Yields:
        The (at first empty) list of findings.

    >>> import torch, torchscope
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> m[1].weight = m[0].weight  # one Parameter in two modules
    >>> with torchscope.tying.watch_ties(m) as found:
    ...     _ = m.to("meta")  # replaces the Parameter in each module separately
    >>> [f.code for f in found]
    ['tie-broken']
    """
    snapshot = snapshot_ties(model)
    found: list[Finding] = []
    try:
        yield found
    finally:
        found.extend(compare_ties(snapshot, model))
