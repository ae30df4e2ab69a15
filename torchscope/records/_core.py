"""The data model: frozen records holding plain values only (no tensors, no modules).

A :class:`Report` can be compared, serialized to JSON and kept without keeping the model (or its
memory) alive. Every record is a frozen, slotted dataclass of ``str``/``int``/``float``/``bool``/
``tuple``/enum values and other records.

>>> from torchscope.records import TensorSpec
>>> TensorSpec(shape=(2, 20), dtype="float32", device="cpu").shape
(2, 20)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "SCHEMA_VERSION",
    "Displayed",
    "CallRecord",
    "Finding",
    "FlowEdge",
    "LazyRecord",
    "MapSpec",
    "ModuleRecord",
    "ParamKind",
    "ParamRecord",
    "RankRecord",
    "Report",
    "SeqSpec",
    "Severity",
    "Spec",
    "TensorSpec",
    "TieKind",
    "TiedGroup",
    "ValueSpec",
    "inferred_numel",
    "record_dict",
    "record_json",
    "spec_text",
]

#: Version of the JSON schema written by :meth:`Report.to_dict`. Bump on incompatible changes.
SCHEMA_VERSION = 1


_R = typing.TypeVar("_R", bound="Displayed")


class Displayed:
    """JSON and display for a result record: ``to_dict``/``to_json`` through the one codec
    (:func:`record_dict`), ``str()`` its text, rich and Jupyter its table.

    >>> import torchscope
    >>> isinstance(torchscope.summarize(torchscope.examples.MLP()), Displayed)
    True
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: exact numbers, enums as their values, ``schema_version`` first."""
        return record_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text; :meth:`from_json` reads it back to an equal record."""
        return record_json(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls: type[_R], data: dict[str, Any]) -> _R:
        """Rebuild a record from :meth:`to_dict` output, checking every field it reads first.

        Ints must be ints (not bools, floats or NaN) and not negative, floats numbers other
        than NaN, strings strings, lists lists of the right length, enums one of their values
        and records dicts with their required fields; nesting deeper than 200 levels is
        refused. Keys a record does not have are ignored.

        Raises:
            InputSpecError: (a ``ValueError``) the data was written by an incompatible schema
                version, or a field is missing or not what the record holds; the one-line
                message names the field by its path (``modules[2].total_params``) and what it
                takes.
        """
        from torchscope.errors import InputSpecError

        max_depth = 200
        kind = cls.__name__

        def shown(value: Any) -> str:
            text = repr(value) if isinstance(value, (str, int, float)) else (
                "a " + type(value).__name__)
            text = text if len(text) <= 40 else text[:37] + "..."
            return f"{text} (a {type(value).__name__})" if isinstance(value, str) else text

        def fail(where: str, value: Any, expected: str) -> typing.NoReturn:
            raise InputSpecError(
                f"{kind} data: {where or 'the top level'} is {shown(value)}, expected {expected}"
            )

        if not isinstance(data, dict):
            fail("", data, f"a dict (from {kind}.to_dict())")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION or type(version) is not int:
            raise InputSpecError(
                f"{kind} schema_version {version!r} is not supported (expected "
                f"{SCHEMA_VERSION}); regenerate the JSON with this torchscope version"
            )
        spec_fields: dict[str, Any] = {"tensor": TensorSpec, "value": ValueSpec}
        stack: list[tuple[Any, Any, str, int]] = [(cls, data, "", 1)]
        while stack:
            tp, value, where, depth = stack.pop()
            if depth > max_depth:
                raise InputSpecError(f"{kind} data nests more than {max_depth} levels deep at "
                                     f"{where[:60]}...: it is not a torchscope record")
            origin = typing.get_origin(tp)
            args = typing.get_args(tp)
            if tp is Any:
                continue
            if tp is Spec or (origin in (Union, types.UnionType) and TensorSpec in args):
                if value is None:
                    continue
                tag = value.get("spec") if isinstance(value, dict) else None
                tag = tag if isinstance(tag, str) else None
                if tag in spec_fields:
                    stack.append((spec_fields[tag], value, where, depth))
                    continue
                if tag not in ("map", "seq"):
                    fail(where, value, "a spec: null or an object with \"spec\" one of "
                                       "tensor, seq, map, value")
                if not isinstance(value.get("type_name"), str):
                    fail(f"{where}.type_name", value.get("type_name"), "a str")
                items = value.get("items")
                if not isinstance(items, list):
                    fail(f"{where}.items", items, "a list")
                for i, item in enumerate(items):
                    if tag == "map":
                        if not (isinstance(item, list) and len(item) == 2
                                and isinstance(item[0], str)):
                            fail(f"{where}.items[{i}]", item, "a [str, spec] pair")
                        item = item[1]
                    stack.append((Spec, item, f"{where}.items[{i}]", depth + 2))
            elif origin in (Union, types.UnionType):
                if value is not None:
                    stack.append((next(a for a in args if a is not type(None)), value, where,
                                  depth))
            elif origin is tuple:
                if not isinstance(value, (list, tuple)):
                    fail(where, value, "a list")
                if len(args) == 2 and args[1] is Ellipsis:
                    stack.extend((args[0], v, f"{where}[{i}]", depth + 1)
                                 for i, v in enumerate(value))
                elif len(value) != len(args):
                    fail(where, value, f"a list of {len(args)} items")
                else:
                    stack.extend((a, v, f"{where}[{i}]", depth + 1)
                                 for i, (a, v) in enumerate(zip(args, value)))
            elif isinstance(tp, type) and issubclass(tp, enum.Enum):
                if not any(type(m.value) is type(value) and m.value == value for m in tp):
                    fail(where, value, "one of " + ", ".join(repr(m.value) for m in tp))
            elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
                if not isinstance(value, dict):
                    fail(where, value, f"an object (a {tp.__name__})")
                hints = _hints(tp)
                for f in dataclasses.fields(tp):
                    at = f"{where}.{f.name}" if where else f.name
                    if f.name in value:
                        stack.append((hints[f.name], value[f.name], at, depth + 1))
                    elif (f.default is dataclasses.MISSING
                          and f.default_factory is dataclasses.MISSING):
                        raise InputSpecError(f"{kind} data: {at} is missing (a {tp.__name__} "
                                             "needs it)")
            elif tp is bool:
                if not isinstance(value, bool):
                    fail(where, value, "true or false")
            elif tp is int:
                if type(value) is not int or value < 0:
                    fail(where, value, "an int >= 0")
            elif tp is float:
                if (not isinstance(value, (int, float)) or isinstance(value, bool)
                        or value != value):
                    fail(where, value, "a number (not NaN)")
            elif tp is str and not isinstance(value, str):
                fail(where, value, "a str")
        try:
            out = _decode(cls, data)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
            raise InputSpecError(f"{kind} data cannot be decoded ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
        assert isinstance(out, cls)
        return out

    @classmethod
    def from_json(cls: type[_R], text: str) -> _R:
        """Rebuild a record from :meth:`to_json` text (at most 256 MiB, checked as
        :meth:`from_dict` checks a dict).

        Raises:
            InputSpecError: (a ``ValueError``) the text is not a str, too long, not JSON, nested
                too deeply, or not a record of this schema version (see :meth:`from_dict`).
        """
        from torchscope.errors import InputSpecError

        max_chars = 256 * 1024 * 1024
        if not isinstance(text, (str, bytes, bytearray)):
            raise InputSpecError(f"{cls.__name__}.from_json takes JSON text (a str), got a "
                                 f"value of type {type(text).__name__}")
        if len(text) > max_chars:
            raise InputSpecError(f"{cls.__name__} JSON is {len(text):,} characters long, more "
                                 f"than the {max_chars:,} a torchscope record takes")
        try:
            data = json.loads(text)
        except RecursionError:
            raise InputSpecError(f"{cls.__name__} JSON nests arrays or objects too deeply: it is "
                                 "not a torchscope record") from None
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            msg = getattr(err, "msg", None) or str(err).splitlines()[0][:120]
            where = (f" at line {err.lineno}, column {err.colno}"
                     if isinstance(err, json.JSONDecodeError) else "")
            raise InputSpecError(f"{cls.__name__} JSON is not valid JSON ({msg}{where})") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        from torchscope.rendering import render

        return str(render(self, "text"))

    def __rich__(self) -> Any:
        from rich.text import Text

        from torchscope.rendering import render

        out = render(self, "rich")
        # a Text, never a str: rich would read a str as markup ([/] raises, [red] styles)
        return Text(out) if isinstance(out, str) else out

    def _repr_html_(self) -> str:
        from torchscope.rendering import render_html

        return render_html(self)


class ParamKind(str, enum.Enum):
    """What a tensor is to its module."""

    PARAMETER = "parameter"
    BUFFER = "buffer"  # persistent: saved in state_dict
    BUFFER_NONPERSISTENT = "buffer_nonpersistent"  # not saved in state_dict


class Severity(str, enum.Enum):
    """How serious a :class:`Finding` is; ``ERROR`` makes ``torchscope check`` exit 1."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class TieKind(str, enum.Enum):
    """How tensors in a :class:`TiedGroup` share memory (docs/architecture.md, "Shared tensors")."""

    ALIAS = "alias"  # one Parameter/tensor object under several names
    SHARED_STORAGE = "shared_storage"  # distinct tensor objects over the same bytes
    OVERLAP = "overlap"  # partial byte overlap (views, slices)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Shape, dtype and device of one tensor (``dtype`` as ``float32``, ``device`` as ``cpu``)."""

    shape: tuple[int, ...]
    dtype: str
    device: str

    def shape_str(self) -> str:
        """The shape as ``[2, 20]``."""
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


@dataclass(frozen=True, slots=True)
class SeqSpec:
    """A tuple or list of specs; ``type_name`` is ``tuple``, ``list`` or a namedtuple's name."""

    type_name: str
    items: tuple[Spec, ...]


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A dict, dataclass or transformers ``ModelOutput`` of specs, keys in their order."""

    type_name: str
    items: tuple[tuple[str, Spec], ...]


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """A non-tensor Python value, kept as a short ``repr``."""

    repr: str


Spec = TensorSpec | SeqSpec | MapSpec | ValueSpec | None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One forward call of a module: its global call order, inputs, keyword inputs and outputs."""

    index: int
    inputs: tuple[Spec, ...]
    kwargs: tuple[tuple[str, Spec], ...]
    outputs: Spec


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """A tensor flowing from one module call to another (indices are ``CallRecord.index``).

    ``src`` is ``None`` for a graph input, ``dst`` is ``None`` for a graph output; ``spec`` is the
    tensor that flowed. ``src_path``/``dst_path`` name the modules (``None`` for input/output).
    """

    src: int | None
    dst: int | None
    src_path: str | None
    dst_path: str | None
    spec: TensorSpec


@dataclass(frozen=True, slots=True)
class ParamRecord:
    """A parameter or buffer with every name it is reachable under.

    ``numel``/``nbytes`` are ``None`` for uninitialized (lazy) tensors: unknown, never 0.
    ``tie_group`` indexes :attr:`Report.tied` when the tensor shares memory with another one.
    DTensor-sharded tensors also carry ``global_shape``, ``local_shape`` and ``placements``;
    ``shape`` is then the global shape and ``nbytes`` the local bytes on this rank.
    """

    name: str
    aliases: tuple[str, ...]
    module_path: str
    shape: tuple[int, ...] | None
    dtype: str
    device: str
    numel: int | None
    nbytes: int | None
    requires_grad: bool
    lazy: bool
    tie_group: int | None
    kind: ParamKind
    global_shape: tuple[int, ...] | None = None
    local_shape: tuple[int, ...] | None = None
    placements: tuple[str, ...] | None = None
    mesh: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The name followed by its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    """One module of the tree (pre-order), with own and tie-aware subtree totals.

    ``path`` is exactly as ``named_modules()`` names it (``""`` for the root). ``own_*`` count
    the module's own parameters/buffers, ``total_*`` its whole subtree, each unique byte range of
    storage once. ``lazy_tensors`` counts uninitialized tensors in the subtree (their size is
    unknown and not in the totals). ``calls`` is filled by tracing; ``called`` is ``None`` when
    no forward was traced.
    """

    path: str
    type_name: str
    depth: int
    parent: str | None
    children: tuple[str, ...]
    aliases: tuple[str, ...]
    param_names: tuple[str, ...]
    buffer_names: tuple[str, ...]
    own_params: int
    own_buffers: int
    total_params: int
    trainable_params: int
    total_buffers: int
    param_bytes: int
    buffer_bytes: int
    lazy_tensors: int
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]
    training: bool
    tags: tuple[str, ...] = ()
    calls: tuple[CallRecord, ...] = ()
    called: bool | None = None

    @property
    def name(self) -> str:
        """The last component of the path (``""`` for the root)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def frozen(self) -> bool:
        """True when the subtree has parameters and none of them is trainable."""
        return self.total_params > 0 and self.trainable_params == 0


@dataclass(frozen=True, slots=True, repr=False)
class TiedGroup:
    """Tensors that share memory: their names, how, and the unique bytes they occupy.

    >>> TiedGroup(("2.weight", "4.weight"), TieKind.ALIAS, 256, ("cpu",))
    TiedGroup(2.weight ↔ 4.weight: alias, 256 bytes on cpu)
    """

    names: tuple[str, ...]
    kind: TieKind
    nbytes: int
    devices: tuple[str, ...] = ()

    def __repr__(self) -> str:
        where = f" on {', '.join(self.devices)}" if self.devices else ""
        return (f"TiedGroup({' ↔ '.join(self.names)}: {self.kind.value}, "
                f"{self.nbytes:,} bytes{where})")


@dataclass(frozen=True, slots=True)
class LazyRecord:
    """A module that still holds uninitialized (lazy) parameters or buffers.

    ``tensors`` are the uninitialized tensors' local names; ``known`` what is known already
    (``("out_features", "256")``); ``inferred`` the ``(name, shape, dtype)`` each will take, when
    example inputs were given.
    """

    path: str
    type_name: str
    tensors: tuple[str, ...]
    known: tuple[tuple[str, str], ...] = ()
    inferred: tuple[tuple[str, tuple[int, ...], str], ...] = ()


@dataclass(frozen=True, slots=True)
class RankRecord:
    """One rank's share of a distributed model (from ``summarize(..., distributed=True)``)."""

    rank: int
    local_params: int
    param_bytes: int
    buffer_bytes: int
    device: str


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a check found: a stable ``code``, how serious, what, where and the fix.

    ``location`` is ``file:line`` of user code where that is known (synchronizations).
    """

    code: str
    severity: Severity
    message: str
    path: str | None = None
    hint: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Report(Displayed):
    """The summary of one model: modules, tensors, ties, lazy layers, findings and totals.

    Totals count each unique byte range of storage once. ``lazy_tensors`` counts uninitialized
    tensors whose size is not in the totals (unknown, never 0); ``inferred_params`` is the total
    including lazy tensors when example inputs let their shapes be inferred. For DTensor-sharded
    models counts are global (logical) and bytes local to this rank; ``ranks`` holds every
    rank's share when gathered with ``distributed=True``. ``mode`` is the execution mode
    that traced the forward (``real``/``meta``/``fake``) or ``None`` when nothing was traced.

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.MLP())
    >>> r.total_params
    7946
    """

    root_type: str
    modules: tuple[ModuleRecord, ...]
    params: tuple[ParamRecord, ...]
    tied: tuple[TiedGroup, ...]
    lazy: tuple[LazyRecord, ...]
    findings: tuple[Finding, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    param_bytes: int
    buffer_numel: int
    buffer_bytes: int
    lazy_tensors: int = 0
    inferred_params: int | None = None
    mode: str | None = None
    inputs: tuple[Spec, ...] = ()
    input_kwargs: tuple[tuple[str, Spec], ...] = ()
    outputs: Spec = None
    flow: tuple[FlowEdge, ...] = ()
    ranks: tuple[RankRecord, ...] = ()
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)
    cost: CostReport | None = None

    # -- access -----------------------------------------------------------------------------
    def module(self, path: str) -> ModuleRecord:
        """The record of the module at ``path`` (``""`` is the root).

        Raises:
            KeyError: no module has that path.
        """
        for rec in self.modules:
            if rec.path == path:
                return rec
        raise KeyError(f"no module at path {path!r}; paths are as named_modules() names them")

    # -- display ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        lazy = f" + {self.lazy_tensors} lazy tensors" if self.lazy_tensors else ""
        return (
            f"<Report {self.root_type}: {len(self.modules)} modules, "
            f"{self.total_params:,} params{lazy}>"
        )

    def __str__(self) -> str:
        from torchscope.rendering import render

        return str(render(self, "text", width="terminal"))  # piped: never wrapped

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from torchscope.rendering import mimebundle

        return mimebundle(self)  # one display per notebook cell: text/plain and text/html


# ---------------------------------------------------------------------------------------------
# JSON encoding: dataclasses become dicts of their fields; specs carry a "spec" tag so that they
# can be decoded again; enums become their values; tuples become lists.

_SPEC_TAGS: dict[type, str] = {
    TensorSpec: "tensor",
    SeqSpec: "seq",
    MapSpec: "map",
    ValueSpec: "value",
}
_SPEC_BY_TAG = {tag: cls for cls, tag in _SPEC_TAGS.items()}


def spec_text(spec: Spec) -> str:
    """A spec as one line for messages and diffs: shapes with dtypes (``[2, 20] float32``),
    the device left out, nesting kept.

    >>> spec_text(SeqSpec("tuple", (TensorSpec((2,), "int64", "cpu"), None)))
    '([2] int64, None)'
    """
    if spec is None:
        return "None"
    if isinstance(spec, TensorSpec):
        return f"{spec.shape_str()} {spec.dtype}"
    if isinstance(spec, ValueSpec):
        return spec.repr
    if isinstance(spec, SeqSpec):
        return "(" + ", ".join(spec_text(s) for s in spec.items) + ")"
    return "{" + ", ".join(f"{k}: {spec_text(s)}" for k, s in spec.items) + "}"


def inferred_numel(records: Iterable[LazyRecord], *,
                   params: Iterable[ParamRecord] | None = None) -> int | None:
    """How many values the inferred lazy tensors will hold, or ``None`` while some is unknown.

    With ``params`` (the :attr:`Report.params <torchscope.records.Report.params>` of the same
    model), only parameters count (buffers such as a ``LazyBatchNorm``'s running statistics do
    not), and a placeholder registered under several names counts once; without it, every
    inferred tensor counts.

    Args:
        records: lazy records from :func:`torchscope.infer_lazy_shapes` (or
            :func:`torchscope.materialize`).
        params: parameter records telling parameters from buffers.

    Returns:
        The number of values, or ``None`` when a counted tensor has no inferred shape (its
        module was not reached by the forward, or no inputs were given).

    >>> import torchscope
    >>> inferred_numel(torchscope.infer_lazy_shapes(torchscope.examples.LazyMLP(),
    ...                                            input_size=[(2, 20)]))
    7946
    """
    given = records
    records = (list(records) if isinstance(records, Iterable)
               and not isinstance(records, (str, bytes)) else [given])
    if not all(isinstance(r, LazyRecord) for r in records):
        from torchscope.errors import ArgumentError

        raise ArgumentError(
            f"inferred_numel: records = {type(given).__name__} is not a list of LazyRecord; "
            "pass what infer_lazy_shapes (or trace_lazy) returned"
        )
    wanted: set[str] | None = None
    if params is not None:
        given_params = params
        params = (list(params) if isinstance(params, Iterable)
                  and not isinstance(params, (str, bytes)) else None)
        if params is None or not all(isinstance(p, ParamRecord) for p in params):
            from torchscope.errors import ArgumentError

            shown = repr(given_params)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ArgumentError(
                f"inferred_numel: params = {shown} ({type(given_params).__name__}) is not a "
                "list of ParamRecord; pass report.params"
            )
        wanted = {p.name for p in params if p.kind is ParamKind.PARAMETER}
    total = 0
    for rec in records:
        prefix = rec.path + "." if rec.path else ""
        shapes = {name: shape for name, shape, _ in rec.inferred}
        for name in rec.tensors:
            if wanted is not None and prefix + name not in wanted:
                continue
            shape = shapes.get(name)
            if shape is None:
                return None
            n = 1
            for d in shape:
                n *= d
            total += n
    return total


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, MapSpec):
            return {"spec": "map", "type_name": value.type_name,
                    "items": [[k, _encode(v)] for k, v in value.items]}
        out: dict[str, Any] = {}
        tag = _SPEC_TAGS.get(type(value))
        if tag is not None:
            out["spec"] = tag
        for f in dataclasses.fields(value):
            out[f.name] = _encode(getattr(value, f.name))
        return out
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


def record_dict(obj: Any) -> dict[str, Any]:
    """The one JSON codec: any record as a JSON-ready dict, ``schema_version`` first.

    Dataclasses become dicts of their fields, enums their values, tuples lists; specs carry a
    ``spec`` tag so that :meth:`Report.from_dict` can decode them again.

    >>> record_dict(TensorSpec((2,), "float32", "cpu"))["schema_version"] == SCHEMA_VERSION
    True
    """
    out = _encode(obj)
    if not isinstance(out, dict):
        raise TypeError(f"record_dict takes a record (a dataclass), not {type(obj).__name__}")
    out.pop("schema_version", None)
    return {"schema_version": SCHEMA_VERSION, **out}


def record_json(obj: Any, *, indent: int | None = 2) -> str:
    """The one JSON writer: :func:`record_dict` of a record (or a dict that a record's
    ``to_dict`` made) as JSON text, with exact numbers.

    Readable non-ASCII text (``→``, ``é``) is kept; invisible and terminal-controlling
    characters (control characters, bidirectional overrides such as U+202E, zero-width and
    line-separator characters, lone surrogates) are written as ``\\uXXXX`` escapes, so that the
    text shows no hidden characters and loads back to the same strings.

    >>> record_json(TensorSpec((2,), "float32", "cpu"), indent=None)[:20]
    '{"schema_version": 1'
    >>> print(record_json({"name": "a\\u202eb→c"}, indent=None))
    {"name": "a\\u202eb→c"}
    """
    import re
    import unicodedata

    data = dict(obj) if isinstance(obj, dict) else record_dict(obj)
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    if text.isascii():
        return text

    def escaped(match: re.Match[str]) -> str:
        ch = match.group()
        if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            return ch
        code = ord(ch)
        if code < 0x10000:
            return f"\\u{code:04x}"
        code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters beyond U+FFFF
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    # outside strings JSON text is ASCII, so every replaced character is inside a string
    return re.sub(r"[^\x00-\x7f]", escaped, text)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any) -> Any:
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    if tp is Spec or (origin in (Union, types.UnionType) and TensorSpec in typing.get_args(tp)):
        return _decode_spec(data)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _decode(non_none[0], data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {
            f.name: _decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.name in data
        }
        return tp(**kwargs)
    return data


def _decode_spec(data: Any) -> Spec:
    if data is None:
        return None
    tag = data.get("spec")
    if tag == "map":
        return MapSpec(type_name=data["type_name"],
                       items=tuple((k, _decode_spec(v)) for k, v in data["items"]))
    if tag == "seq":
        return SeqSpec(type_name=data["type_name"],
                       items=tuple(_decode_spec(v) for v in data["items"]))
    cls = _SPEC_BY_TAG.get(tag)
    if cls is None:
        raise ValueError(f"unknown spec tag {tag!r} in report JSON")
    spec = _decode(cls, data)
    assert isinstance(spec, (TensorSpec, ValueSpec))
    return spec


# The cost record builds on Displayed above, and Report.from_dict resolves the ``cost`` field's
# type in this module's namespace: import it once everything it needs here is defined.
from torchscope.records._cost import CostReport  # noqa: E402
