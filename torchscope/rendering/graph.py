"""Block diagrams of a :class:`~torchscope.records.Report`: Graphviz DOT, SVG, PNG and PDF.

Blocks nest as clusters, the way the chapter draws blocks made of blocks; the modules drawn as
boxes (leaves, and blocks collapsed by ``depth``) show their type, parameter count and output
shape. With a traced forward (``summarize(model, input_size=...)``) edges follow the data: from
the module call that produced a tensor to every module call that consumed it, labelled with
its shape, from an ``input`` node and into an ``output`` node. Without one the diagram shows
containment only and says so in its title.

How the diagram reads:

- **A module called more than once** (the chapter's ``FixedHiddenMLP.linear``, a shared layer)
  gets one box per call, labelled ``call 1/2``, ``call 2/2``: the data flow stays a left-to-right
  story instead of folding into a loop. Their parameters are the same tensors.
- **Collapsing**: with ``depth=N`` a block deeper than ``N`` is not drawn; its calls count as
  calls of its visible ancestor (drawn with a double border), so edges between modules inside
  one collapsed block disappear and edges leaving it start at its box. Runs of structurally
  identical siblings (same type, same parameter shapes, same children, recursively: the 12
  ``GPT2Block``\\ s of GPT-2) collapse into one box marked ``×12`` unless ``expand=True``.
- **Functional code**: with ``summarize(..., follow_functions=True)`` (the ``graph`` command
  uses it) the trace follows tensors through torch functions too: every summand of ``x + f(x)``
  is an edge into the module consuming the sum, so residual connections are direct edges
  (``input → f``, ``f → g``, ``input → g``). A tensor with no producing module (made from no
  traced tensor, like ``torch.arange`` position ids, or any functional result in a report
  traced without ``follow_functions``) is drawn coming out of a small ``ƒ`` node inside the
  block whose ``forward`` ran that code (dotted edges), and outputs that only such code
  consumed flow into it.
- **Tied tensors** are a dashed line (no arrow) between the boxes whose modules share them;
  **lazy** modules (uninitialized, size unknown) have a dashed border and ``? params``;
  **frozen** modules (no trainable parameter) are filled grey; modules the traced forward
  never called are grey and dotted. A legend explains the styles a diagram uses.

The DOT text is deterministic: statements follow the module tree in pre-order and the
calls in execution order, and node ids are made from module paths, never from ``id()`` values.
A module drawn as one box has its path as id (``transformer.h.0``), a run of blocks its first
and last member (``transformer.h.0..11``: an empty name between the dots). Every other id
starts with ``.``, which no module path does (a module name holds no ``.`` and the root's path
is empty), so a child named ``input`` or ``(input)`` stays a box of its own: ``.input`` and
``.output`` (the graph's inputs and outputs), ``.root`` (the root drawn as one box),
``.linear#2`` (the second call of ``linear``; the root's: ``.#2``), ``.transformer#ƒ`` (the
``ƒ`` node of ``transformer``'s forward; of its second call ``.transformer#ƒ2``), and
``.legend.…``. A cluster is named ``cluster_`` and its block's path (``cluster_net``), the
root's ``cluster_.root``, the legend's ``cluster_.legend``.

>>> import torchscope
>>> report = torchscope.summarize(torchscope.examples.MLP(), input_size=[(2, 20)])
>>> print(to_dot(report).splitlines()[0])
digraph MLP {
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchscope._torch import recursion_room
from torchscope.errors import InputSpecError, TorchscopeError
from torchscope.records import (
    CallRecord,
    MapSpec,
    ModuleRecord,
    Report,
    SeqSpec,
    Spec,
    TensorSpec,
)
from torchscope.rendering._columns import spec_text
from torchscope.rendering._report import humanize_count
from torchscope.rendering._text import escape_text, wrap_cell

if TYPE_CHECKING:
    import graphviz

__all__ = ["FORMATS", "render_graph", "to_dot", "to_graphviz"]

#: File suffixes :func:`render_graph` writes (``dot``/``gv`` need no Graphviz program).
FORMATS = ("svg", "png", "pdf", "dot", "gv")

# ids of the nodes that are not a module drawn once: they start with ".", which no module path
# does (torch refuses "." in a module name; the root's path is "")
INPUT_ID = ".input"
OUTPUT_ID = ".output"
ROOT_ID = ".root"
LEGEND_ID = ".legend"

_INSTALL_HINT = (
    "install Graphviz: apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS) "
    "or conda install -c conda-forge graphviz; or write a .dot file, which needs no program"
)

# styles: node attributes per kind, edge attributes per kind
_FONT = "Helvetica"
_FLOW = {"color": "#444444", "fontsize": "9", "fontcolor": "#555555"}
_CODE_EDGE = {"style": "dotted", "color": "#777777", "fontsize": "9", "fontcolor": "#777777"}
_TIE_EDGE = {"style": "dashed", "dir": "none", "color": "#b03060", "fontcolor": "#b03060",
             "fontsize": "9", "constraint": "false"}
_CODE_NODE = {"shape": "circle", "label": "ƒ", "width": "0.3", "height": "0.3",
              "fixedsize": "true", "fontsize": "11", "color": "#777777",
              "fontcolor": "#555555"}
_IO_NODE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#e8f0fe",
            "color": "#4a6fa5"}


# ---------------------------------------------------------------------------------------------
# public functions


def to_dot(
    report: Report,
    *,
    depth: int | None = None,
    expand: bool = False,
    legend: bool = True,
) -> str:
    """The block diagram of ``report`` as Graphviz DOT text (deterministic, no program needed).

    Args:
        report: a :class:`~torchscope.records.Report` from :func:`torchscope.summarize`; with
            example inputs traced the edges show the data flow, without them containment only.
            Summarize with ``follow_functions=True`` to draw residual connections (and other
            functional code) as direct edges rather than through ``ƒ`` nodes.
        depth: draw modules down to this depth (the root is 0) and collapse deeper blocks into
            their ancestor's box; ``None`` draws every module.
        expand: draw every block of a run of identical siblings instead of one ``×N`` box.
        legend: add a legend for the styles the diagram uses.

    Returns:
        The DOT source (``digraph <RootType> { ... }``).

    Raises:
        TorchscopeError: ``report`` is not a Report (a model was passed: summarize it first).
        InputSpecError: ``depth`` is negative.

    >>> import torchscope
    >>> r = torchscope.summarize(torchscope.examples.NestMLP(), input_size=[(2, 20)],
    ...                          follow_functions=True)
    >>> '"net.0" -> "net.1"' in to_dot(r)
    True
    """
    _check_args(report, depth)
    nesting = max((m.depth for m in report.modules), default=0)
    with recursion_room(nesting):  # clusters nest as deep as the modules
        return _Diagram(report, depth=depth, expand=expand, legend=legend).dot()


def to_graphviz(
    report: Report,
    *,
    depth: int | None = None,
    expand: bool = False,
    legend: bool = True,
) -> graphviz.Source:
    """The diagram as a ``graphviz.Source``, which displays inline in Jupyter (as SVG).

    Takes the same arguments as :func:`to_dot`; displaying it runs the Graphviz ``dot``
    program.

    Returns:
        A ``graphviz.Source`` of :func:`to_dot`'s text (``.source`` is that text).

    Raises:
        TorchscopeError: ``report`` is not a Report.
        InputSpecError: ``depth`` is negative.

    >>> import torchscope
    >>> src = to_graphviz(torchscope.summarize(torchscope.examples.MLP()))
    >>> src.source.startswith("digraph MLP")
    True
    """
    import graphviz

    return graphviz.Source(to_dot(report, depth=depth, expand=expand, legend=legend))


def render_graph(
    report: Report,
    path: str | Path,
    *,
    depth: int | None = None,
    expand: bool = False,
    legend: bool = True,
) -> Path:
    """Write the diagram to ``path``, in the format its suffix names.

    ``.dot`` (or ``.gv``) writes the DOT text itself; ``.svg``, ``.png`` and ``.pdf`` run the
    Graphviz ``dot`` program on it.

    Args:
        report: a :class:`~torchscope.records.Report` from :func:`torchscope.summarize`.
        path: the file to write; its suffix chooses the format.
        depth: as in :func:`to_dot`.
        expand: as in :func:`to_dot`.
        legend: as in :func:`to_dot`.

    Returns:
        The path written.

    Raises:
        TorchscopeError: an unknown suffix, a folder that does not exist, no ``dot`` program
            on PATH (the message says how to install Graphviz) or ``dot`` failing.
        InputSpecError: ``depth`` is negative.

    >>> import torchscope, tempfile, os
    >>> r = torchscope.summarize(torchscope.examples.MLP(), input_size=[(2, 20)])
    >>> out = render_graph(r, os.path.join(tempfile.mkdtemp(), "mlp.dot"))
    >>> out.read_text().startswith("digraph MLP")
    True
    """
    if not isinstance(path, (str, Path)):
        raise TorchscopeError(
            f"path = {path!r} ({type(path).__name__}) is not a file path; give one such as "
            "'net.svg' (its suffix chooses the format)"
        )
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise TorchscopeError(
            f"cannot tell the diagram format from {str(target)!r} (suffix {target.suffix!r}): "
            f"end the file name with one of {', '.join('.' + f for f in FORMATS)}"
        )
    folder = target.parent
    if not folder.is_dir():
        raise TorchscopeError(
            f"cannot write {str(target)!r}: the folder {str(folder)!r} does not exist; create it "
            "first or choose another path"
        )
    if target.is_dir():
        raise TorchscopeError(
            f"cannot write {str(target)!r}: it is a folder; give a file path in it, such as "
            f"{str(target / ('graph.' + fmt))!r}"
        )
    text = to_dot(report, depth=depth, expand=expand, legend=legend)
    data = text.encode("utf-8") if fmt in ("dot", "gv") else _run_dot(text, fmt, target)
    # a regular file is replaced through a temporary file next to it, so a failed write leaves
    # an existing file intact; a device or pipe is written directly
    import os
    import uuid

    real = Path(os.path.realpath(target))
    temp: Path | None = None
    try:
        if real.exists() and not real.is_file():
            real.write_bytes(data)
            return target
        temp = real.with_name(f".{real.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if real.is_file():
            os.chmod(temp, real.stat().st_mode & 0o7777)
        os.replace(temp, real)
        temp = None
    except OSError as err:
        raise TorchscopeError(
            f"cannot write {str(target)!r}: {err.strerror or err}; choose a path in a folder "
            "you can write to"
        ) from None
    finally:
        if temp is not None:
            try:
                temp.unlink()
            except OSError:
                pass
    return target


def _run_dot(text: str, fmt: str, target: Path) -> bytes:
    import graphviz

    try:
        data: bytes = graphviz.Source(text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise TorchscopeError(
            f"writing {str(target)!r} as {fmt.upper()} needs the Graphviz 'dot' program, which "
            f"is not on PATH: {_INSTALL_HINT}"
        ) from None
    except graphviz.CalledProcessError as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else ""
        lines = stderr.strip().splitlines()
        first = lines[0] if lines else f"exit status {err.returncode}"
        raise TorchscopeError(
            f"the Graphviz 'dot' program failed writing {str(target)!r}: {first}; write a .dot "
            "file instead and report the problem"
        ) from err
    return data


def _check_args(report: object, depth: object) -> None:
    if not isinstance(report, Report):
        what = type(report).__name__
        hint = (" (a model: pass torchscope.summarize(model, input_size=[...]) instead)"
                if _is_module(report) else "")
        raise TorchscopeError(
            f"report = {what}{hint} is not a torchscope Report; diagrams are drawn from "
            "torchscope.summarize(model, ...)"
        )
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)
                              or depth < 0):
        raise InputSpecError(
            f"depth = {depth!r} is not a non-negative integer: use 0 for the root only, 1, 2…, "
            "or None for every module"
        )


def _is_module(value: object) -> bool:
    return any(c.__name__ == "Module" and c.__module__.startswith("torch.nn")
               for c in type(value).__mro__)


# ---------------------------------------------------------------------------------------------
# spec helpers


def _tensor_leaves(spec: Spec) -> Iterator[TensorSpec]:
    if isinstance(spec, TensorSpec):
        yield spec
    elif isinstance(spec, SeqSpec):
        for item in spec.items:
            yield from _tensor_leaves(item)
    elif isinstance(spec, MapSpec):
        for _, item in spec.items:
            yield from _tensor_leaves(item)


def _call_input_leaves(call: CallRecord) -> list[TensorSpec]:
    out: list[TensorSpec] = []
    for spec in call.inputs:
        out.extend(_tensor_leaves(spec))
    for _, spec in call.kwargs:
        out.extend(_tensor_leaves(spec))
    return out


# a line break inside one label line (a long shape wrapped at a separator); it survives
# escaping and becomes DOT's \\n
_BREAK = "\ue000"


def _spec_label(spec: Spec, limit: int = 36) -> str:
    """The whole spec, wrapped at separators to about ``limit`` characters (never clipped)."""
    return _BREAK.join(wrap_cell(spec_text(spec), limit))


def _shapes_label(specs: list[TensorSpec]) -> str:
    shapes: list[str] = []
    for spec in specs:
        text = spec.shape_str()
        if text not in shapes:
            shapes.append(text)
    return _BREAK.join(", ".join(shapes[i:i + 2]) for i in range(0, len(shapes), 2))


def _escape(text: str) -> str:
    """Text for a DOT label: invisible characters escaped (:func:`escape_text`), backslashes
    doubled (DOT reads ``\\n`` and friends as escapes), ``&`` written ``&amp;`` (Graphviz decodes
    ``&#8238;`` and other entities in labels), never read as an HTML label.

    >>> _escape("a&#8238;b")
    'a&amp;#8238;b'
    """
    import graphviz

    out = escape_text(text).replace("\\", "\\\\")  # _BREAK (private use) stays as it is
    out = out.replace("&", "&amp;")
    return str_type(graphviz.nohtml(out.replace(_BREAK, "\\n")))


def _lines(*lines: str) -> str:
    import graphviz

    return str_type(graphviz.nohtml("\\n".join(_escape(line) for line in lines if line)))


def str_type(value: Any) -> str:
    """``value`` (a ``graphviz.nohtml`` string: a ``str`` never read as an HTML label)."""
    assert isinstance(value, str)
    return value


def _call_id(path: str, k: int) -> str:
    """The id of the box for call ``k`` (counted from 1) of the module at ``path``.

    >>> _call_id("linear", 2), _call_id("", 2)
    ('.linear#2', '.#2')
    """
    return f".{path}#{k}"


def _code_id(path: str, k: int | None) -> str:
    """The id of the ``ƒ`` node of call ``k`` of the block at ``path`` (``None``: its only call).

    After the last ``#``, digits mean a call and ``ƒ`` a code node, so no code node id equals a
    call id, whatever ``#`` the module names hold.

    >>> _code_id("transformer", None), _code_id("", 2)
    ('.transformer#ƒ', '.#ƒ2')
    """
    return f".{path}#ƒ{'' if k is None else k}"


def _nid(node: str) -> str:
    """A DOT node id for ``node``: ``:`` would split it into node and port (a phantom node),
    ``<…>`` would read as HTML, control characters would break the line, ``&`` would start an
    entity (an SVG viewer decodes ``&#8238;`` in the ``<title>`` Graphviz copies the id into);
    such characters are percent-encoded (ids are never shown, labels are).

    >>> _nid("b:c"), _nid("layers.0"), _nid("a&#1;")
    ('b%3Ac', 'layers.0', 'a%26#1;')
    """
    out = []
    for ch in node:
        if ch in ':<>%"&\\' or not ch.isprintable():
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# the diagram


@dataclass(slots=True)
class _Unit:
    """One box: a module (one per call when called several times), or a run of blocks."""

    id: str
    path: str
    call: int | None  # the call it stands for (None: static, or a run)
    entry: int | None  # first call index at or inside it, for ordering and scope
    scope: int | None = None  # call index of the enclosing drawn block's call
    members: tuple[str, ...] = ()  # run members (paths)


@dataclass(slots=True)
class _Edges:
    """Edges keyed by (src, dst) in insertion order, each with the specs that flowed."""

    flow: dict[tuple[str, str], list[TensorSpec]] = field(default_factory=dict)
    code: dict[tuple[str, str], list[TensorSpec]] = field(default_factory=dict)

    def add(self, src: str, dst: str, spec: TensorSpec | None, *, code: bool = False) -> None:
        if src == dst:
            return
        table = self.code if code else self.flow
        specs = table.setdefault((src, dst), [])
        if spec is not None:
            specs.append(spec)

    def sources(self) -> set[str]:
        return {s for s, _ in self.flow} | {s for s, _ in self.code}

    def targets(self) -> set[str]:
        return {d for _, d in self.flow} | {d for _, d in self.code}


class _Diagram:
    """Decides what is drawn (clusters, boxes, runs, edges) and writes the DOT text."""

    def __init__(self, report: Report, *, depth: int | None, expand: bool,
                 legend: bool) -> None:
        self.report = report
        self.limit = math.inf if depth is None else depth
        self.expand = expand
        self.legend = legend
        self.traced = report.mode is not None
        self.mods: dict[str, ModuleRecord] = {m.path: m for m in report.modules}
        self.calls: dict[int, tuple[str, CallRecord]] = {}
        for m in report.modules:
            for c in m.calls:
                self.calls[c.index] = (m.path, c)
        self.kind: dict[str, str] = {}  # cluster | node | run | hidden
        self.host: dict[str, str] = {}  # hidden path -> the node/run member hiding it
        self.run_of: dict[str, str] = {}  # run member path -> run unit id
        self.runs: dict[str, tuple[str, ...]] = {}  # run id -> member paths
        self.first_call: dict[str, int | None] = {}  # first call index in the subtree
        self._layout()
        self.units: dict[str, _Unit] = {}
        self.units_of: dict[str, list[str]] = {}  # module path -> unit ids drawn for it
        self._make_units()
        self.code_nodes: dict[int, str] = {}  # scope call index -> ƒ node id
        self.edges = _Edges()
        self.ties: list[tuple[str, str, str, str | None, str | None]] = []
        if self.traced:
            self._flow()
        self._tie_edges()

    # -- layout -------------------------------------------------------------------------------
    def _signatures(self) -> dict[str, int]:
        shapes: dict[str, list[tuple[str, tuple[int, ...] | None]]] = {}
        for p in self.report.params:
            local = p.name[len(p.module_path) + 1:] if p.module_path else p.name
            shapes.setdefault(p.module_path, []).append((local, p.shape))
        ids: dict[tuple[Any, ...], int] = {}
        sig: dict[str, int] = {}
        for m in reversed(self.report.modules):
            key = (
                m.type_name,
                tuple(sorted(shapes.get(m.path, ()), key=lambda s: s[0])),
                m.buffer_names,
                m.own_params,
                tuple((self.mods[c].name, sig[c]) for c in m.children),
            )
            sig[m.path] = ids.setdefault(key, len(ids))
        return sig

    def _layout(self) -> None:
        sig = self._signatures() if not self.expand else {}
        for m in reversed(self.report.modules):
            first = m.calls[0].index if m.calls else None
            for c in m.children:
                f = self.first_call.get(c)
                if f is not None and (first is None or f < first):
                    first = f
            self.first_call[m.path] = first
        for m in self.report.modules:
            parent = m.parent
            if parent is not None and self.kind[parent] in ("node", "run", "hidden"):
                self.kind[m.path] = "hidden"
                self.host[m.path] = self.host.get(parent, parent)
                continue
            if m.path in self.run_of:
                self.kind[m.path] = "run"
            elif m.children and m.depth < self.limit:
                self.kind[m.path] = "cluster"
                if not self.expand:
                    self._find_runs(m, sig)
            else:
                self.kind[m.path] = "node"

    def _find_runs(self, m: ModuleRecord, sig: dict[str, int]) -> None:
        children = list(m.children)
        i = 0
        while i < len(children):
            j = i + 1
            while j < len(children) and sig[children[j]] == sig[children[i]]:
                j += 1
            if j - i >= 2 and self.mods[children[i]].children:  # blocks, not single layers
                members = tuple(children[i:j])
                run_id = f"{members[0]}..{self.mods[members[-1]].name}"
                self.runs[run_id] = members
                for p in members:
                    self.run_of[p] = run_id
            i = j

    @staticmethod
    def _box_id(path: str) -> str:
        """The id of the one box drawn for the module at ``path``."""
        return path if path else ROOT_ID

    def _make_units(self) -> None:
        for m in self.report.modules:
            kind = self.kind[m.path]
            if kind == "run":
                run_id = self.run_of[m.path]
                members = self.runs[run_id]
                if m.path == members[0]:
                    entries = [e for e in (self.first_call[p] for p in members) if e is not None]
                    self._add_unit(_Unit(run_id, m.path, None, min(entries, default=None),
                                         members=members))
            elif kind == "node":
                if len(m.calls) > 1:
                    for k, c in enumerate(m.calls, 1):
                        self._add_unit(_Unit(_call_id(m.path, k), m.path, c.index, c.index))
                else:
                    call = m.calls[0].index if m.calls else None
                    self._add_unit(_Unit(self._box_id(m.path), m.path, call,
                                         self.first_call[m.path]))
        for unit in self.units.values():
            unit.scope = self._scope(unit.path, unit.entry)

    def _add_unit(self, unit: _Unit) -> None:
        self.units[unit.id] = unit
        for p in unit.members or (unit.path,):
            self.units_of.setdefault(p, []).append(unit.id)

    def _scope(self, path: str, entry: int | None) -> int | None:
        """The call of the nearest drawn block above ``path`` that was running at ``entry``."""
        if entry is None:
            return None
        parent = self.mods[path].parent
        while parent is not None:
            before = [c.index for c in self.mods[parent].calls if c.index < entry]
            if before:
                return max(before)
            parent = self.mods[parent].parent
        return None

    # -- flow ---------------------------------------------------------------------------------
    def _node_for_call(self, path: str, index: int) -> str:
        """The unit drawn for ``path``'s call that was running at call ``index``."""
        m = self.mods[path]
        if self.kind[path] == "run":
            return self.run_of[path]
        if len(m.calls) <= 1:
            return self._box_id(path)
        before = [c.index for c in m.calls if c.index <= index]
        at = max(before) if before else m.calls[0].index
        k = next(i for i, c in enumerate(m.calls, 1) if c.index == at)
        return _call_id(path, k)

    def _unit_of_call(self, index: int) -> str | None:
        """The box a call shows up in, or None when its module is drawn as a cluster."""
        path = self.calls[index][0]
        kind = self.kind[path]
        if kind == "cluster":
            return None
        if kind == "hidden":
            path = self.host[path]
        return self._node_for_call(path, index)

    def _code_node(self, scope: int) -> str:
        node = self.code_nodes.get(scope)
        if node is None:
            path = self.calls[scope][0]
            calls = self.mods[path].calls
            k: int | None = None
            if len(calls) > 1:
                k = next(i for i, c in enumerate(calls, 1) if c.index == scope)
            node = _code_id(path, k)
            self.code_nodes[scope] = node
        return node

    def _flow(self) -> None:
        edges = self.edges
        flow = sorted(self.report.flow, key=lambda e: (
            -1 if e.src is None else e.src, math.inf if e.dst is None else e.dst))
        visible: set[tuple[str, TensorSpec]] = set()
        from_blocks: list[tuple[int, str, TensorSpec]] = []
        into_blocks: dict[str, list[int]] = {}  # source -> block calls that consumed from it
        for e in flow:
            if e.src is None and e.dst is None and self.kind[""] != "cluster":
                continue  # input to output around a model drawn as one box: not a skip
            src = INPUT_ID if e.src is None else self._unit_of_call(e.src)
            dst = OUTPUT_ID if e.dst is None else self._unit_of_call(e.dst)
            if dst is None:  # consumed by a block drawn as a cluster: its children show it
                if src is not None and e.dst is not None:
                    into_blocks.setdefault(src, []).append(e.dst)
                continue
            if src is None:  # produced by a block drawn as a cluster
                assert e.src is not None
                from_blocks.append((e.src, dst, e.spec))
                continue
            if src != dst:
                edges.add(src, dst, e.spec)
                visible.add((dst, e.spec))
        # a tensor a block returned that none of its drawn modules produced: made by its code
        for block, dst, spec in from_blocks:
            if (dst, spec) not in visible:
                edges.add(self._code_node(block), dst, spec, code=True)
        # a box that got tensors but none from a module: they came from code in its block
        fed = edges.targets()
        for unit in self.units.values():
            if unit.id in fed or unit.call is None or unit.scope is None:
                continue
            leaves = _call_input_leaves(self.calls[unit.call][1])
            if leaves:
                edges.add(self._code_node(unit.scope), unit.id, leaves[0], code=True)
        # a source whose tensors only blocks (drawn as clusters) consumed: into their code
        used = edges.sources()
        for src, blocks in into_blocks.items():
            if src not in used:
                edges.add(src, self._code_node(max(blocks)), None, code=True)
        # a block with code whose outputs no module consumed: into the code of the block
        # around it (nearest with code)
        produced = {e.src for e in flow if e.src is not None}
        for index in sorted(self.code_nodes):
            path, call = self.calls[index]
            outer = self._outer_code(self._scope(path, index))
            if index not in produced and outer is not None:
                out = next(_tensor_leaves(call.outputs), None)
                edges.add(self.code_nodes[index], outer, out, code=True)
        # a box whose outputs nothing drawn consumed: into the code of the nearest block with code
        used = edges.sources()
        for unit in self.units.values():
            if unit.id in used or unit.call is None:
                continue
            outer = self._outer_code(unit.scope)
            leaves = list(_tensor_leaves(self.calls[unit.call][1].outputs))
            if outer is not None and leaves:
                edges.add(unit.id, outer, leaves[0], code=True)

    def _outer_code(self, scope: int | None) -> str | None:
        """The ƒ node of ``scope`` or of the nearest enclosing call that has one."""
        while scope is not None:
            node = self.code_nodes.get(scope)
            if node is not None:
                return node
            path = self.calls[scope][0]
            scope = self._scope(path, scope)
        return None

    # -- ties ---------------------------------------------------------------------------------
    def _resolve_alias(self, path: str) -> str | None:
        if path in self.mods:
            return path
        aliases = {a: m.path for m in self.report.modules for a in m.aliases}
        parts = path.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in aliases:
                real = aliases[prefix] + path[len(prefix):]
                return real if real in self.mods else None
        return None

    def _anchor(self, path: str) -> tuple[str, str | None]:
        """The box standing for ``path``, and the block path to clip the edge at when ``path``
        is a block drawn open (a cluster)."""
        kind = self.kind[path]
        if kind == "hidden":
            path = self.host[path]
            kind = self.kind[path]
        if kind == "run":
            return self.run_of[path], None
        if kind == "node":
            return self.units_of[path][0], None
        # a block drawn as a cluster: the first box inside it, clipped at the cluster border
        inside = next(uid for p in self._subtree(path) for uid in self.units_of.get(p, ()))
        return inside, path

    def _subtree(self, path: str) -> Iterator[str]:
        yield path
        for c in self.mods[path].children:
            yield from self._subtree(c)

    def _inside(self, unit_id: str, block: str) -> bool:
        path = self.units[unit_id].path
        return not block or path == block or path.startswith(block + ".")

    def _tie_edges(self) -> None:
        seen: set[tuple[str, str]] = set()
        for group in self.report.tied:
            anchors: list[tuple[str, str | None]] = []
            for name in group.names:
                module = self._resolve_alias(name.rsplit(".", 1)[0] if "." in name else "")
                if module is None:
                    continue
                anchor = self._anchor(module)
                if anchor not in anchors:
                    anchors.append(anchor)
            label = group.kind.value.replace("_", " ")
            for (a, a_block), (b, b_block) in ((anchors[0], o) for o in anchors[1:]):
                if a == b or (a, b) in seen:
                    continue
                if (a_block is not None and self._inside(b, a_block)) or (
                        b_block is not None and self._inside(a, b_block)):
                    continue  # a block sharing a tensor with a module inside it
                seen.add((a, b))
                self.ties.append((a, b, f"tied ({label})",
                                  None if a_block is None else _cluster_name(a_block),
                                  None if b_block is None else _cluster_name(b_block)))

    # -- labels -------------------------------------------------------------------------------
    def _params_text(self, m: ModuleRecord, *, each: bool = False) -> str:
        suffix = " each" if each else ""
        if m.lazy_tensors:
            known = f"{_hc(m.total_params)} + " if m.total_params else ""
            return f"{known}? params{suffix}"
        if m.total_params:
            return f"{_hc(m.total_params)} params{suffix}"
        return ""

    def _unit_label(self, unit: _Unit) -> str:
        m = self.mods[unit.path]
        if unit.members:
            last = self.mods[unit.members[-1]]
            name = f"{m.name} … {last.name}" if m.path else m.type_name
            same = all(self.mods[p].total_params == m.total_params for p in unit.members)
            params = (self._params_text(m, each=True) if same
                      else f"{_hc(sum(self.mods[p].total_params for p in unit.members))} params")
            out = ""
            if m.calls:
                out = "→ " + _spec_label(m.calls[0].outputs)
            return _lines(f"{name}: {m.type_name} ×{len(unit.members)}", params, out)
        head = f"{m.name}: {m.type_name}" if m.path else m.type_name
        extra = ""
        if m.aliases:
            extra = "also " + ", ".join(m.aliases)
        out = ""
        count = ""
        if unit.call is not None:
            path_calls = m.calls
            k = next(i for i, c in enumerate(path_calls, 1) if c.index == unit.call)
            out = "→ " + _spec_label(self.calls[unit.call][1].outputs)
            if len(path_calls) > 1:
                count = f"call {k}/{len(path_calls)}"
        elif self.traced and self.first_call[m.path] is None:
            count = "not called"
        inside = ""
        if m.children:
            n = sum(1 for _ in self._subtree(m.path)) - 1
            inside = f"+{n} modules inside"
        return _lines(head, extra, self._params_text(m), inside, out, count)

    def _unit_attrs(self, unit: _Unit) -> dict[str, str]:
        m = self.mods[unit.path]
        styles = ["rounded"]
        attrs: dict[str, str] = {}
        if unit.members or m.children:
            attrs["peripheries"] = "2"
        if m.lazy_tensors:
            styles.append("dashed")
        if self.traced and self.first_call[m.path] is None:
            styles.append("dotted")
            attrs["fontcolor"] = "#888888"
            attrs["color"] = "#888888"
        if m.frozen:
            styles.append("filled")
            attrs["fillcolor"] = "#dddddd"
        attrs["style"] = ",".join(styles)
        return attrs

    def _cluster_attrs(self, m: ModuleRecord) -> dict[str, str]:
        head = f"{m.name}: {m.type_name}" if m.path else m.type_name
        params = self._params_text(m)
        label = f"{head} · {params}" if params else head
        if m.aliases:
            label += " (also " + ", ".join(m.aliases) + ")"
        styles = ["rounded"]
        attrs = {"label": _escape(label), "labeljust": "l", "color": "#8c8c8c",
                 "fontsize": "11"}
        if m.lazy_tensors:
            styles.append("dashed")
        if m.frozen:
            styles.append("filled")
            attrs["fillcolor"] = "#eeeeee"
        if self.traced and self.first_call[m.path] is None:
            styles.append("dotted")
            attrs["fontcolor"] = "#888888"
        attrs["style"] = ",".join(styles)
        return attrs

    def _title(self) -> str:
        r = self.report
        params = f"{_hc(r.total_params)} params"
        if r.lazy_tensors:
            known = f"{_hc(r.total_params)} + " if r.total_params else ""
            params = f"{known}? params ({r.lazy_tensors} lazy tensors of unknown size)"
        if not self.traced:
            return (f"{r.root_type} · {params} · containment only: no example inputs were "
                    "traced (summarize(model, input_size=...) or --input-size draws the data "
                    "flow)")
        return f"{r.root_type} · {params} · data flow traced in {r.mode} mode"

    # -- output -------------------------------------------------------------------------------
    def dot(self) -> str:
        import graphviz

        r = self.report
        g = graphviz.Digraph(
            name=_dot_name(r.root_type),
            graph_attr={"label": _escape(self._title()), "labelloc": "t", "fontname": _FONT,
                        "fontsize": "13", "rankdir": "TB", "compound": "true",
                        "newrank": "true", "nodesep": "0.3", "ranksep": "0.35"},
            node_attr={"shape": "box", "style": "rounded", "fontname": _FONT,
                       "fontsize": "10"},
            edge_attr={"fontname": _FONT, "arrowsize": "0.7"},
        )
        if self.traced:
            g.node(_nid(INPUT_ID), _lines("input", *self._input_lines()), **_IO_NODE)
        self._emit_module(g, r.modules[0])
        if self.traced:
            g.node(_nid(OUTPUT_ID), _lines("output", _spec_label(r.outputs, limit=48)), **_IO_NODE)
        for (src, dst), specs in self.edges.flow.items():
            g.edge(_nid(src), _nid(dst), label=_lines(_shapes_label(specs)), **_FLOW)
        for (src, dst), specs in self.edges.code.items():
            g.edge(_nid(src), _nid(dst), label=_lines(_shapes_label(specs)), **_CODE_EDGE)
        for a, b, label, ltail, lhead in self.ties:
            attrs = dict(_TIE_EDGE)
            if ltail:
                attrs["ltail"] = ltail
            if lhead:
                attrs["lhead"] = lhead
            g.edge(_nid(a), _nid(b), label=_lines(label), **attrs)
        if self.legend:
            self._emit_legend(g)
        return str(g.source)

    def _input_lines(self) -> list[str]:
        r = self.report
        lines = [_spec_label(s, limit=40) for s in r.inputs]
        lines += [f"{k}={_spec_label(s, limit=36)}" for k, s in r.input_kwargs if s is not None]
        if len(lines) > 4:
            lines = [*lines[:4], f"… {len(lines) - 4} more"]
        return lines

    def _emit_module(self, g: graphviz.Digraph, m: ModuleRecord) -> None:
        kind = self.kind[m.path]
        if kind == "hidden":
            return
        if kind in ("node", "run"):
            for uid in self.units_of.get(m.path, ()):
                unit = self.units[uid]
                if unit.path == m.path:  # a run is drawn once, at its first member
                    g.node(_nid(uid), self._unit_label(unit), **self._unit_attrs(unit))
            return
        with g.subgraph(name=_cluster_name(m.path)) as sub:
            sub.attr(**self._cluster_attrs(m))
            for child in m.children:
                self._emit_module(sub, self.mods[child])
            for c in m.calls:
                node = self.code_nodes.get(c.index)
                if node is not None:
                    sub.node(_nid(node), tooltip=_escape(
                        f"tensors made by torch functions in the forward of "
                        f"{m.path or 'the root'} ({m.type_name})"), **_CODE_NODE)

    def _emit_legend(self, g: graphviz.Digraph) -> None:
        mods = [m for m in self.report.modules if self.kind[m.path] != "hidden"]
        entries: list[tuple[str, str, dict[str, str]]] = []
        if any(self.kind[m.path] == "node" and m.children for m in mods):
            entries.append(("collapsed", "block collapsed by depth",
                            {"style": "rounded", "peripheries": "2"}))
        if self.runs:
            entries.append(("run", "×N: N identical blocks\n(--expand draws each)",
                            {"style": "rounded", "peripheries": "2"}))
        if any(m.lazy_tensors for m in mods):
            entries.append(("lazy", "lazy: uninitialized,\nsize unknown",
                            {"style": "rounded,dashed"}))
        if any(m.frozen for m in mods):
            entries.append(("frozen", "frozen: no trainable\nparameters",
                            {"style": "rounded,filled", "fillcolor": "#dddddd"}))
        if self.traced and any(self.first_call[m.path] is None for m in mods):
            entries.append(("uncalled", "not called by the\ntraced forward",
                            {"style": "rounded,dotted", "color": "#888888",
                             "fontcolor": "#888888"}))
        if self.code_nodes:
            entries.append(("code", "ƒ: tensors made by torch\nfunctions (x + y, view)",
                            {"style": "rounded"}))
        if self.ties:
            entries.append(("tied", "- - -  tied tensors\n(shared memory)",
                            {"style": "rounded", "color": "#b03060", "fontcolor": "#b03060"}))
        if not entries:
            return
        with g.subgraph(name=f"cluster_{LEGEND_ID}") as sub:
            sub.attr(label="legend", labeljust="l", style="rounded", color="#bbbbbb",
                     fontsize="10")
            previous = None
            for key, text, attrs in entries:
                node = f"{LEGEND_ID}.{key}"
                sub.node(node, _lines(*text.split("\n")), fontsize="9", **attrs)
                if previous is not None:
                    sub.edge(previous, node, style="invis")
                previous = node


def _hc(n: int) -> str:

    return humanize_count(n)


def _cluster_name(path: str) -> str:
    """The subgraph name of the block at ``path``, escaped like node ids (:func:`_nid`): a
    quote or a trailing backslash in a module name would end the quoted name early.

    >>> _cluster_name("transformer.h.0"), _cluster_name("")
    ('cluster_transformer.h.0', 'cluster_.root')
    """
    return f"cluster_{_nid(path) if path else ROOT_ID}"


def _dot_name(type_name: str) -> str:
    return type_name if type_name.isidentifier() else "model"
