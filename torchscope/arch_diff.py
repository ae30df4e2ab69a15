"""Architecture diff: what changed between two models, two reports or a model and a saved report.

Modules are matched by qualified name; a block that moved to a new name with the same type and
the same parameter shapes is recognized as a rename. The diff lists modules added, removed,
renamed or whose type changed; parameters and buffers added, removed or changed (shape, dtype,
``requires_grad``, kind, tie group); per-block count deltas; ties made or broken; and, when
both sides were traced, the call shapes that changed. Nothing runs on a model beyond
:func:`torchscope.summarize` (static, or a guarded meta/fake/real forward with inputs).

>>> import torchscope
>>> d = torchscope.diff(torchscope.examples.MLP(), torchscope.examples.NestMLP())
>>> d.equal, d.before_params, d.after_params
(False, 7946, 3952)
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchscope._units import short_repr
from torchscope.errors import ArgumentError, InputSpecError, TorchscopeError
from torchscope.records import (
    ArchitectureDiff,
    CallChange,
    CallRecord,
    ChangeKind,
    CountDelta,
    FieldChange,
    ModuleChange,
    ParamRecord,
    Report,
    TensorChange,
    TieChange,
    spec_text,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from torchscope.trace import Mode

__all__ = ["MAX_REPORT_BYTES", "diff", "load_report", "stable_report"]

#: The largest saved report :func:`load_report` reads (a 70B model's report is far smaller).
MAX_REPORT_BYTES = 256 * 1024 * 1024

_NONE = "—"
_MODES = ("auto", "real", "meta", "fake")


# ------------------------------------------------------------------------------------------
# the sides


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a report saved as JSON (``summarize --format json`` or ``Report.to_json()``).

    The file is read as text and decoded as JSON only (never unpickled), up to
    :data:`MAX_REPORT_BYTES`; every field is checked by
    :meth:`~torchscope.records.Report.from_dict` before anything uses it.

    Args:
        path: the JSON file.

    Returns:
        The :class:`~torchscope.records.Report` it holds.

    Raises:
        TorchscopeError: the file is missing, too large, not JSON, nested too deeply, or not a
            torchscope report of this schema version (a field missing or of the wrong type).

    >>> import tempfile, os, torchscope
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.json")
    >>> from pathlib import Path
    >>> _ = Path(path).write_text(torchscope.summarize(torchscope.examples.MLP()).to_json())
    >>> load_report(path).total_params
    7946
    """
    file = Path(path)
    if not file.is_file():
        raise TorchscopeError(
            f"report file {str(file)!r} does not exist: save one with "
            "`python -m torchscope summarize TARGET --format json > report.json`"
        )
    size = file.stat().st_size
    if size > MAX_REPORT_BYTES:
        raise TorchscopeError(
            f"report file {str(file)!r} is {size:,} bytes, over the {MAX_REPORT_BYTES:,}-byte "
            "limit for a saved report: is it really a torchscope JSON report?"
        )
    try:
        with file.open("rb") as f:  # at most the limit, whatever the size said a moment ago
            raw = f.read(MAX_REPORT_BYTES + 1)
        if len(raw) > MAX_REPORT_BYTES:
            raise TorchscopeError(
                f"report file {str(file)!r} is over the {MAX_REPORT_BYTES:,}-byte limit for a "
                "saved report: is it really a torchscope JSON report?"
            )
        data = json.loads(raw.decode("utf-8"))
    except OSError as err:
        raise TorchscopeError(f"cannot read report file {str(file)!r}: {err.strerror}") from None
    except RecursionError:
        raise TorchscopeError(
            f"report file {str(file)!r} nests JSON arrays or objects too deeply to be a "
            "torchscope report: give a report written by `torchscope summarize --format json`"
        ) from None
    except UnicodeDecodeError:
        raise TorchscopeError(
            f"report file {str(file)!r} is not UTF-8 text: give a JSON report written by "
            "`torchscope summarize --format json`"
        ) from None
    except json.JSONDecodeError as err:
        raise TorchscopeError(
            f"report file {str(file)!r} is not valid JSON ({err.msg} at line {err.lineno}, "
            f"column {err.colno}): give a report written by `torchscope summarize --format json`"
        ) from None
    if not isinstance(data, dict) or "modules" not in data or "root_type" not in data:
        raise TorchscopeError(
            f"report file {str(file)!r} holds JSON but not a torchscope report (no 'modules' "
            "and 'root_type'): give a report written by `torchscope summarize --format json`"
        )
    try:
        return Report.from_dict(data)  # checks every field's type: one line on a bad one
    except TorchscopeError as err:
        if "schema_version" in str(err):
            raise TorchscopeError(f"report file {str(file)!r}: {err}") from None
        raise TorchscopeError(
            f"report file {str(file)!r} is a damaged torchscope report ({err}): write it again "
            "with `torchscope summarize --format json`"
        ) from None


def stable_report(report: Report) -> Report:
    """The report without what depends on the machine or run: notes and sync/site findings.

    What remains (modules, tensors, ties, lazy layers, traced shapes, totals) is the same on
    every machine for the same model and inputs, which makes it fit to commit as a snapshot.

    >>> import torchscope
    >>> stable_report(torchscope.summarize(torchscope.examples.MLP())).notes
    ()
    """
    import dataclasses

    findings = tuple(f for f in report.findings if f.location is None)
    return dataclasses.replace(report, notes=(), findings=findings)


def _side(value: object, which: str, options: dict[str, Any]) -> tuple[Report, str]:
    from torch import nn

    if isinstance(value, Report):
        return value, value.root_type
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return load_report(path), path.name
    if isinstance(value, nn.Module):
        from torchscope.inspect import summarize

        try:
            return summarize(value, **options), type(value).__name__
        except TorchscopeError as err:
            # name the side: both models get the same inputs, only one may not accept them
            raise type(err)(f"diff side {which} ({type(value).__name__}): {err}") from err
    raise TorchscopeError(
        f"diff() side {which} is a {type(value).__name__}: give an nn.Module, a Report or the "
        "path of a saved report JSON file"
    )


# ------------------------------------------------------------------------------------------
# the diff



def _check_labels(function: str, labels: object) -> None:
    if labels is None:
        return
    if not (isinstance(labels, (tuple, list)) and len(labels) == 2
            and all(isinstance(label, str) for label in labels)):
        raise ArgumentError(
            f"{function}: labels = {short_repr(labels)} is not a pair of names; give two str, e.g. "
            "labels=('before', 'after'), or None for the root types or file names"
        )


def diff(
    a: nn.Module | Report | str | os.PathLike[str],
    b: nn.Module | Report | str | os.PathLike[str],
    example_inputs: Any = None,
    *,
    example_kwargs: dict[str, Any] | None = None,
    input_size: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype | str] | None = None,
    device: torch.device | str | None = None,
    mode: Mode = "auto",
    labels: tuple[str, str] | None = None,
) -> ArchitectureDiff:
    """Compare the architecture of ``a`` (before) with ``b`` (after).

    Args:
        a: the model before: an ``nn.Module``, a :class:`~torchscope.records.Report` or the path
            of a saved report JSON file.
        b: the model after, as ``a``.
        example_inputs: inputs for a traced forward of each module side (as in
            :func:`torchscope.summarize`); with them, changed call shapes are listed too.
        example_kwargs: keyword inputs of that forward.
        input_size: shapes of inputs to build instead of ``example_inputs`` (zeros).
        dtypes: dtype per built input.
        device: device of the built inputs (never moves a model).
        mode: ``auto``, ``real``, ``meta`` or ``fake`` execution for the traced forward.
        labels: the names shown for the two sides (default: root type or file name).

    Returns:
        An :class:`~torchscope.records.ArchitectureDiff`; ``.equal`` is true when nothing
        differs.

    Raises:
        TorchscopeError: a side is neither a module, a report nor a readable report file; or
            the traced forward fails (:class:`~torchscope.errors.ForwardError`).
        ArgumentError: ``labels`` is not a pair of str.
        InputSpecError: ``mode`` is not one of ``auto``, ``real``, ``meta``, ``fake``.

    >>> import torchscope
    >>> from torch import nn
    >>> d = torchscope.diff(nn.Linear(4, 8), nn.Linear(4, 16))
    >>> [(t.name, t.fields[0].before, t.fields[0].after) for t in d.tensors][0]
    ('weight', '[8, 4]', '[16, 4]')
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise InputSpecError(f"diff: mode = {short_repr(mode)} is not one of {', '.join(_MODES)}")
    _check_labels("diff", labels)
    options: dict[str, Any] = {}
    if example_inputs is not None:
        options["example_inputs"] = example_inputs
    if example_kwargs is not None:
        options["example_kwargs"] = example_kwargs
    if input_size is not None:
        options["input_size"] = input_size
        options["mode"] = mode
        if dtypes is not None:
            options["dtypes"] = dtypes
        if device is not None:
            options["device"] = device
    elif example_inputs is not None or example_kwargs is not None:
        options["mode"] = mode
    before, before_label = _side(a, "a", options)
    after, after_label = _side(b, "b", options)
    if labels is not None:
        before_label, after_label = labels
    return compare_reports(before, after, labels=(before_label, after_label),
                           traced_wanted=bool(options))


def compare_reports(before: Report, after: Report, *, labels: tuple[str, str] | None = None,
                    traced_wanted: bool = False) -> ArchitectureDiff:
    """The :class:`~torchscope.records.ArchitectureDiff` of two reports (what :func:`diff` runs).

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP())
    >>> compare_reports(r, r).equal
    True
    """
    for name, value in (("before", before), ("after", after)):
        if not isinstance(value, Report):
            raise ArgumentError(f"compare_reports: {name} = {short_repr(value)} is not a Report; "
                                "give two torchscope.summarize(...) results")
    _check_labels("compare_reports", labels)
    label_a, label_b = labels or (before.root_type, after.root_type)
    matcher = _Matcher(before, after)
    modules = matcher.module_changes()
    tensors = _tensor_changes(before, after, matcher)
    counts = _count_deltas(before, after, matcher)
    ties = _tie_changes(before, after, matcher)
    notes: list[str] = []
    traced_a, traced_b = before.mode is not None, after.mode is not None
    calls: tuple[CallChange, ...] = ()
    if traced_a and traced_b:
        calls = _call_changes(before, after, matcher)
    elif traced_wanted or traced_a or traced_b:
        missing = [lab for lab, t in ((label_a, traced_a), (label_b, traced_b)) if not t]
        notes.append(
            f"call shapes not compared: {' and '.join(missing)} "
            f"{'was' if len(missing) == 1 else 'were'} not traced (a saved report needs "
            "traced calls: summarize it with example inputs)"
        )
    return ArchitectureDiff(
        before=label_a,
        after=label_b,
        before_params=before.total_params,
        after_params=after.total_params,
        modules=modules,
        tensors=tensors,
        counts=counts,
        ties=ties,
        calls=calls,
        call_shapes_compared=traced_a and traced_b,
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------------------
# matching modules: by name, then renamed blocks by their signature


def _in_subtree(sorted_names: list[str], prefix: str) -> list[str]:
    """Names under ``prefix`` (``prefix.…``) from a sorted list; every name for the root."""
    if not prefix:
        return sorted_names
    lo = bisect.bisect_left(sorted_names, prefix + ".")
    hi = bisect.bisect_left(sorted_names, prefix + "/")  # "/" sorts right after "."
    return sorted_names[lo:hi]


class _Side:
    def __init__(self, report: Report) -> None:
        self.report = report
        # a module registered under several names (a shared block) is matched by each name
        self.order = [name for m in report.modules for name in (m.path, *m.aliases)]
        self.modules = {name: m for m in report.modules for name in (m.path, *m.aliases)}
        self.module_paths = sorted(self.modules)
        self.tensors: dict[str, ParamRecord] = {}
        for p in report.params:
            for name in p.names:
                self.tensors.setdefault(name, p)
        self.tensor_names = sorted(self.tensors)
        self.tied_with: dict[str, frozenset[str]] = {}
        for group in report.tied:
            for name in group.names:
                self.tied_with[name] = frozenset(group.names) - {name}

    def signature(self, path: str) -> tuple[Any, ...]:
        cut = len(path) + 1 if path else 0
        mods = tuple((p[cut:], self.modules[p].type_name)
                     for p in _in_subtree(self.module_paths, path))
        tensors = tuple((n[cut:], self.tensors[n].shape, self.tensors[n].kind.value)
                        for n in _in_subtree(self.tensor_names, path))
        return (self.modules[path].type_name, mods, tensors)


def _top_most(paths: set[str]) -> list[str]:
    return sorted(p for p in paths if p and (p.rpartition(".")[0] not in paths))


class _Matcher:
    """Module paths of ``before`` mapped to ``after``: equal names, then renamed blocks."""

    def __init__(self, before: Report, after: Report) -> None:
        self.a = _Side(before)
        self.b = _Side(after)
        removed = set(self.a.modules) - set(self.b.modules)
        added = set(self.b.modules) - set(self.a.modules)
        self.renames: list[tuple[str, str]] = []
        free = _top_most(added)
        signatures = {p: self.b.signature(p) for p in free}
        for old in _top_most(removed):
            sig = self.a.signature(old)
            for new in free:
                # a rename keeps the parent (a move to another parent is a rename too, but
                # only when the new parent already existed)
                if signatures[new] == sig:
                    self.renames.append((old, new))
                    free.remove(new)
                    break
        renamed_a = {p for old, _ in self.renames for p in [old, *_in_subtree(
            self.a.module_paths, old)]}
        renamed_b = {p for _, new in self.renames for p in [new, *_in_subtree(
            self.b.module_paths, new)]}
        self.removed = removed - renamed_a
        self.added = added - renamed_b

    def to_after(self, name: str) -> str:
        """A module path or tensor name of ``before`` in ``after``'s names."""
        for old, new in self.renames:
            if name == old:
                return new
            if name.startswith(old + "."):
                return new + name[len(old):]
        return name

    def pairs(self) -> list[tuple[str, str]]:
        """Every matched (before path, after path), in ``after``'s module order."""
        back = {self.to_after(p): p for p in self.a.order if p not in self.removed}
        return [(back[p], p) for p in self.b.order if p in back]

    def module_changes(self) -> tuple[ModuleChange, ...]:
        out: list[ModuleChange] = []
        for old, new in self.pairs():
            ta, tb = self.a.modules[old].type_name, self.b.modules[new].type_name
            if ta != tb:
                out.append(ModuleChange(ChangeKind.CHANGED, new, ta, tb,
                                        old_path=old if old != new else None))
        for old, new in self.renames:
            out.append(ModuleChange(ChangeKind.RENAMED, new, self.a.modules[old].type_name,
                                    self.b.modules[new].type_name, old_path=old))
        for p in _order(self.a, self.removed):
            out.append(ModuleChange(ChangeKind.REMOVED, p, self.a.modules[p].type_name, None))
        for p in _order(self.b, self.added):
            out.append(ModuleChange(ChangeKind.ADDED, p, None, self.b.modules[p].type_name))
        return tuple(out)


def _order(side: _Side, paths: set[str]) -> list[str]:
    return [p for p in side.order if p in paths]


# ------------------------------------------------------------------------------------------
# tensors, counts, ties, calls


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "unknown (lazy)" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _tied_text(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) if names else "(none)"


def _tensor_changes(before: Report, after: Report, m: _Matcher) -> tuple[TensorChange, ...]:
    a, b = m.a, m.b
    mapped = {m.to_after(n): n for n in a.tensors}
    out: list[TensorChange] = []
    added: list[TensorChange] = []
    for name, rec_b in _tensor_order(after):
        old = mapped.get(name)
        if old is None:
            added.append(TensorChange(ChangeKind.ADDED, name, rec_b.kind, rec_b.shape,
                                      rec_b.dtype))
            continue
        rec_a = a.tensors[old]
        fields: list[FieldChange] = []
        if rec_a.shape != rec_b.shape:
            fields.append(FieldChange("shape", _shape_text(rec_a.shape), _shape_text(rec_b.shape)))
        if rec_a.dtype != rec_b.dtype:
            fields.append(FieldChange("dtype", rec_a.dtype, rec_b.dtype))
        if rec_a.requires_grad != rec_b.requires_grad:
            fields.append(FieldChange("requires_grad", str(rec_a.requires_grad),
                                      str(rec_b.requires_grad)))
        if rec_a.kind != rec_b.kind:
            fields.append(FieldChange("kind", rec_a.kind.value, rec_b.kind.value))
        tied_a = frozenset(m.to_after(x) for x in a.tied_with.get(old, frozenset()))
        tied_b = b.tied_with.get(name, frozenset())
        if tied_a != tied_b:
            fields.append(FieldChange("tied with", _tied_text(tied_a), _tied_text(tied_b)))
        if fields:
            out.append(TensorChange(ChangeKind.CHANGED, name, rec_b.kind, rec_b.shape,
                                    rec_b.dtype, fields=tuple(fields),
                                    old_name=old if old != name else None))
    present = set(b.tensors)
    for name, rec_a in _tensor_order(before):
        if m.to_after(name) not in present:
            out.append(TensorChange(ChangeKind.REMOVED, name, rec_a.kind, rec_a.shape,
                                    rec_a.dtype))
    return (*out, *added)


def _tensor_order(report: Report) -> list[tuple[str, ParamRecord]]:
    return [(name, p) for p in report.params for name in p.names]


def _count_deltas(before: Report, after: Report, m: _Matcher) -> tuple[CountDelta, ...]:
    out: list[CountDelta] = []
    for old, new in m.pairs():
        ma, mb = m.a.modules[old], m.b.modules[new]
        if (ma.total_params, ma.total_buffers) != (mb.total_params, mb.total_buffers):
            out.append(CountDelta(new, ma.total_params, mb.total_params, ma.total_buffers,
                                  mb.total_buffers, lazy=bool(ma.lazy_tensors or mb.lazy_tensors),
                                  old_path=old if old != new else None))
    for p in _top_most(m.removed):
        ma = m.a.modules[p]
        if ma.total_params or ma.total_buffers:
            out.append(CountDelta(p, ma.total_params, None, ma.total_buffers, None,
                                  lazy=bool(ma.lazy_tensors)))
    for p in _top_most(m.added):
        mb = m.b.modules[p]
        if mb.total_params or mb.total_buffers:
            out.append(CountDelta(p, None, mb.total_params, None, mb.total_buffers,
                                  lazy=bool(mb.lazy_tensors)))
    return tuple(out)


def _tie_changes(before: Report, after: Report, m: _Matcher) -> tuple[TieChange, ...]:
    groups_a = [(g.names, frozenset(m.to_after(n) for n in g.names)) for g in before.tied]
    groups_b = [(g.names, frozenset(g.names)) for g in after.tied]
    set_a = {s for _, s in groups_a}
    set_b = {s for _, s in groups_b}
    out = [TieChange("broken", names) for names, s in groups_a if s not in set_b]
    out += [TieChange("made", names) for names, s in groups_b if s not in set_a]
    return tuple(out)




def _inputs_text(call: CallRecord) -> str:
    parts = [spec_text(s) for s in call.inputs]
    parts += [f"{k}={spec_text(v)}" for k, v in call.kwargs]
    return ", ".join(parts) or "()"


def _call_changes(before: Report, after: Report, m: _Matcher) -> tuple[CallChange, ...]:
    out: list[CallChange] = []
    for old, new in m.pairs():
        ca, cb = m.a.modules[old].calls, m.b.modules[new].calls
        if len(ca) != len(cb):
            out.append(CallChange(new, 0, "calls", str(len(ca)), str(len(cb))))
        for i, (x, y) in enumerate(zip(ca, cb)):
            ia, ib = _inputs_text(x), _inputs_text(y)
            if ia != ib:
                out.append(CallChange(new, i, "inputs", ia, ib))
            oa, ob = spec_text(x.outputs), spec_text(y.outputs)
            if oa != ob:
                out.append(CallChange(new, i, "outputs", oa, ob))
    return tuple(out)
