"""The torchscope pytest plugin: architecture snapshots that fail with a diff when a model changes.

Installing torchscope registers it (entry point ``pytest11``); it stays inert until a test uses
it (torch is imported only then). It adds:

* the fixture ``model_snapshot(model, example_inputs=None, *, name=None)``, which stores a
  stable report of ``model`` (no addresses, timings or paths of this machine) in
  ``<test dir>/__snapshots__/<test module>/<name or test name>.json`` and, on later runs, fails
  with the architecture diff (:func:`torchscope.diff`) when the model no longer matches it;
* the option ``--torchscope-update``, which (re)writes the snapshots of the tests that run;
* a line at the end of the session for each snapshot file that no test used (after a whole
  test module passed) or whose test module is gone.

A missing snapshot fails the test (CI must not pass on a snapshot nobody reviewed): write it
once with ``pytest --torchscope-update`` and commit it.

Each name gets its own file: a name made of letters, digits, ``_``, ``.`` and single ``-`` is
the file name itself, a parametrized test name ``test_x[a-b]`` becomes ``test_x-a-b``, and any
other name is cleaned up and followed by ``--`` and a short hash of the name, so that two names
never share a file. Two tests of a session that still reach one file (a ``name=`` equal to
another test's file name, or names that differ only in case) fail with both test ids.

>>> _safe_name("test_gpt[32-relu]")
'test_gpt-32-relu'
>>> _safe_name("enc/dec")
'enc-dec--49c3ca5d5d'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "SNAPSHOT_DIR",
    "model_snapshot",
    "pytest_addoption",
    "pytest_configure",
]

#: The folder, next to a test module, holding its snapshots (one subfolder per test module).
SNAPSHOT_DIR = "__snapshots__"

_UPDATE = "--torchscope-update"
_USED = "torchscope_snapshot"
_WRITTEN = "torchscope_snapshot_written"


class _State:
    """What the session did with snapshots: files used, modules fully passed."""

    def __init__(self) -> None:
        self.used: set[Path] = set()
        self.written: list[Path] = []
        self.module_items: dict[Path, set[str]] = {}  # test module -> node ids collected
        self.incomplete: set[Path] = set()  # modules with a deselected, failed or skipped item
        self.passed: set[str] = set()
        self.item_module: dict[str, Path] = {}
        self.filtered = False  # tests deselected where this session cannot see which
        # snapshot file (case-folded) -> (test id, name) of the first test of this process
        # using it, and -> test id as the reports tell it (the controller under xdist)
        self.owners: dict[str, tuple[str, str]] = {}
        self.reported_owners: dict[str, str] = {}
        self.clashes: list[tuple[Path, str, str]] = []  # (file, first test, second test)


_STATE_KEY = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--torchscope-update``."""
    group = parser.getgroup("torchscope", "torchscope model snapshots")
    group.addoption(
        _UPDATE,
        action="store_true",
        default=False,
        help="rewrite the model_snapshot files of the tests that run (review and commit them)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Keep the session's snapshot bookkeeping on the config; register the session's hooks."""
    config.stash[_STATE_KEY] = _State()
    config.pluginmanager.register(_SessionHooks(config), "torchscope-snapshots")


def _state(config: pytest.Config) -> _State:
    if _STATE_KEY not in config.stash:  # pragma: no cover - configured by pytest_configure
        config.stash[_STATE_KEY] = _State()
    return config.stash[_STATE_KEY]


_PLAIN = r"[A-Za-z0-9_](?:[A-Za-z0-9_.]|-(?!-))*"  # no "--": only hashed names have one
_KEPT = re.compile(_PLAIN)
_PARAMETRIZED = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.]*)\[([A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*)\]")
_MAX_STEM = 120  # file names stay well under the 255 bytes file systems allow


def _safe_name(name: str) -> str:
    """The file name (without ``.json``) of a snapshot name; different names, different files.

    A name of letters, digits, ``_``, ``.`` and single ``-`` stays as it is; a parametrized
    test name ``test_x[a-b]`` becomes ``test_x-a-b``. Any other name (or a long one) is cleaned
    up (runs of other characters become ``-``) and gets ``--`` and a hash of the name itself:
    kept names hold no ``--``, so they never meet a hashed one.
    """
    if len(name) <= _MAX_STEM:
        if _KEPT.fullmatch(name):
            return name
        match = _PARAMETRIZED.fullmatch(name)
        if match:
            return f"{match[1]}-{match[2]}"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9_.]+", "-", name)[:_MAX_STEM].strip("-.") or "snapshot"
    return f"{cleaned}--{digest}"


def _check_name(name: object) -> str | None:
    """``name`` if it can name a snapshot, else an error naming it and the fix."""
    from torchscope._units import short_repr
    from torchscope.errors import ArgumentError, InputSpecError

    if name is None:
        return None
    if not isinstance(name, str):
        raise ArgumentError(
            f"model_snapshot: name = {short_repr(name)} is not a str; give the snapshot's "
            "name as a str, e.g. name='eval', or leave it out to use the test's name"
        )
    if not name.strip() or not name.strip("."):
        raise InputSpecError(
            f"model_snapshot: name = {name!r} names no file; give a name with a letter or "
            "digit, e.g. name='eval', or leave it out to use the test's name"
        )
    return name



def _test_name(node: pytest.Item) -> str:
    """The test's name inside its module, with its class: ``TestGPT.test_width[2]``."""
    inside = node.nodeid.split("::", 1)[1] if "::" in node.nodeid else node.name
    return inside.replace("::", ".")


def _snapshot_folder(module_path: Path) -> Path:
    return module_path.parent / SNAPSHOT_DIR / module_path.stem


@pytest.fixture
def model_snapshot(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``model_snapshot(model, example_inputs=None, *, name=None, **summarize_options)``.

    Compares the architecture of ``model`` (with ``example_inputs``: also the traced call
    shapes) with ``__snapshots__/<test module>/<name or test name>.json`` next to the test
    module and fails with the diff when it changed; ``pytest --torchscope-update`` writes the
    file. ``summarize_options`` (``input_size=``, ``dtypes=``, ``mode=``…) go to
    :func:`torchscope.summarize`. Call it once per name in a test.

    A ``name`` that is not a str raises :class:`~torchscope.errors.ArgumentError`; an empty or
    dot-only one, a name used twice in a test, or a file another test of the session already
    uses raises :class:`~torchscope.errors.InputSpecError`. An unreadable snapshot fails the
    test with the reason; ``--torchscope-update`` replaces it.
    """
    update = bool(request.config.getoption(_UPDATE))
    folder = _snapshot_folder(Path(str(request.path)))
    state = _state(request.config)
    seen: dict[str, str] = {}  # file (case-folded) -> the name this test gave it

    def check(model: Any, example_inputs: Any = None, *, name: str | None = None,
              **options: Any) -> None:
        __tracebackhide__ = True
        from torchscope._torch import require_module
        from torchscope.arch_diff import diff, stable_report
        from torchscope.errors import InputSpecError
        from torchscope.inspect import summarize
        from torchscope.rendering import render

        require_module(model, "model_snapshot")
        given = _check_name(name)
        snapshot_name = given if given is not None else _test_name(request.node)
        path = folder / f"{_safe_name(snapshot_name)}.json"
        key = _path_key(path)
        nodeid = request.node.nodeid
        if key in seen:
            same = seen[key] == snapshot_name
            raise InputSpecError(
                f"model_snapshot name {snapshot_name!r} is used twice in {nodeid}: give each "
                "snapshot of a test its own name=..." if same else
                f"model_snapshot names {seen[key]!r} and {snapshot_name!r} of {nodeid} both "
                f"map to {_shown(path, request.config)} (names differing only in case share "
                "a file on some systems): give each snapshot of a test its own name=..."
            )
        owner = state.owners.get(key)
        if owner is not None and owner[0] != nodeid:
            raise InputSpecError(
                f"model_snapshot name {snapshot_name!r} of {nodeid} maps to "
                f"{_shown(path, request.config)}, the snapshot of {owner[0]} (name "
                f"{owner[1]!r}): give one of the two tests another name=..."
            )
        seen[key] = snapshot_name
        state.owners.setdefault(key, (nodeid, snapshot_name))
        # reports carry the user properties to the session (also from xdist workers)
        request.node.user_properties.append((_USED, str(path.resolve())))
        report = stable_report(summarize(model, example_inputs, **options))
        if update:
            text = report.to_json() + "\n"
            if _write_if_changed(path, text.encode("utf-8")):
                request.node.user_properties.append((_WRITTEN, str(path.resolve())))
            return
        if not path.exists():
            pytest.fail(
                f"model snapshot {path} does not exist: run `pytest {_UPDATE}` once to write "
                "it, review it and commit it",
                pytrace=False,
            )
        saved = _load_snapshot(path)
        result = diff(saved, report, labels=("snapshot", type(model).__name__))
        if not result.equal:
            pytest.fail(
                f"{type(model).__name__} no longer matches its snapshot {path}:\n\n"
                f"{render(result, 'text')}\n\n"
                f"If the change is intended, run `pytest {_UPDATE}` and commit the snapshot.",
                pytrace=False,
            )

    yield check


def _path_key(path: Path) -> str:
    """One key per file, also where the file system ignores case (macOS, Windows)."""
    return os.path.normcase(str(path.resolve())).casefold()


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it already holds exactly that; ``True`` if written.

    The old file is only compared, never parsed (a damaged or non-UTF-8 one is just replaced),
    and the new one is written beside it and moved over it, so it is never left half written.
    """
    from torchscope.errors import TorchscopeError

    target = path.resolve() if path.is_symlink() else path
    try:
        if target.is_file() and target.stat().st_size == len(data) \
                and target.read_bytes() == data:
            return False
    except OSError:
        pass  # unreadable: written again below
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(data)
        os.replace(temporary, target)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise TorchscopeError(
            f"cannot write model snapshot {path}: {err.strerror or err}; make its folder a "
            "writable directory (and the snapshot a file, not a folder) and run "
            f"`pytest {_UPDATE}` again"
        ) from None
    return True


_LOAD_FIX = re.compile(r"[:;]\s*(?:give|write it again|save one|regenerate)\b.*\Z", re.DOTALL)


def _load_snapshot(path: Path) -> Any:
    """The report in ``path``, or a test failure that says how to write the file again."""
    __tracebackhide__ = True
    from torchscope.arch_diff import load_report
    from torchscope.errors import TorchscopeError

    try:
        return load_report(path)
    except TorchscopeError as err:
        # the reader's fix (the summarize command) is not the one for a snapshot
        detail = _LOAD_FIX.sub("", str(err)).replace(f"report file {str(path)!r}", "").strip(" :")
    pytest.fail(  # outside the except: no chained traceback of the reader's error
        f"model snapshot {path} cannot be used ({detail}): run `pytest {_UPDATE}` to write it "
        "again, review it and commit it",
        pytrace=False,
    )

# ------------------------------------------------------------------------------------------
# snapshots no test uses any more


class _SessionHooks:
    """The hooks of one pytest session, registered by :func:`pytest_configure`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = _state(config)

    def _add_items(self, nodeids: Iterable[str]) -> None:
        root = Path(str(self.config.rootpath))
        for nodeid in nodeids:
            module = (root / nodeid.split("::", 1)[0]).resolve()
            self.state.module_items.setdefault(module, set()).add(nodeid)
            self.state.item_module[nodeid] = module

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Remember which test module each collected test belongs to."""
        self._add_items(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist: the tests a worker collected (deselected ones are not among them)."""
        self._add_items(ids)
        option = self.config.option
        if any(getattr(option, name, None) for name in ("keyword", "markexpr", "deselect",
                                                         "lf", "last_failed")):
            self.state.filtered = True

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """A module with deselected tests (``-k``, ``-m``) cannot tell unused snapshots."""
        for item in items:
            self.state.incomplete.add(Path(str(item.path)).resolve())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note used and written snapshots and passed tests; a failed or skipped test may not
        have reached its snapshot."""
        for key, value in report.user_properties:
            if key == _USED:
                self.state.used.add(Path(str(value)))
                self._note_owner(Path(str(value)), report.nodeid)
            elif key == _WRITTEN and Path(str(value)) not in self.state.written:
                self.state.written.append(Path(str(value)))
        if report.when == "call" and report.passed:
            self.state.passed.add(report.nodeid)
        elif report.failed or report.skipped:
            module = self.state.item_module.get(report.nodeid)
            if module is not None:
                self.state.incomplete.add(module)

    def _note_owner(self, path: Path, nodeid: str) -> None:
        """Two tests on one snapshot file that the fixture could not see (xdist workers)."""
        owner = self.state.reported_owners.setdefault(_path_key(path), nodeid)
        if owner != nodeid and not any(c[2] == nodeid and c[0] == path
                                       for c in self.state.clashes):
            self.state.clashes.append((path, owner, nodeid))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """A session where two tests shared a snapshot file does not pass."""
        if self.state.clashes and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say which snapshots were written and which no test uses any more."""
        _summary(self.state, terminalreporter, self.config)


def _unused(state: _State) -> list[Path]:
    out: list[Path] = []
    folders: set[Path] = set()
    for module, nodeids in state.module_items.items():
        folders.add(module.parent / SNAPSHOT_DIR)
        complete = (not state.filtered and module not in state.incomplete
                    and nodeids <= state.passed)
        folder = _snapshot_folder(module)
        if complete and folder.is_dir():
            out += [p for p in sorted(folder.glob("*.json")) if p.resolve() not in state.used]
    for root in sorted(folders):
        if not root.is_dir():
            continue
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if not (root.parent / f"{sub.name}.py").exists():
                out += sorted(sub.glob("*.json"))
    return out


def _summary(state: _State, terminalreporter: Any, config: pytest.Config) -> None:
    if state.clashes:
        terminalreporter.write_sep("-", "torchscope model snapshots")
        for path, first, second in state.clashes:
            terminalreporter.write_line(
                f"model snapshot {_shown(path, config)} is used by two tests, {first} and "
                f"{second}: give one of them another name=... (under {_UPDATE} one overwrote "
                "the other)", red=True,
            )
    if state.written:
        terminalreporter.write_sep("-", "torchscope model snapshots")
        for path in state.written:
            terminalreporter.write_line(f"model snapshot written: {_shown(path, config)}")
    unused = sorted(set(_unused(state)))
    if unused:
        terminalreporter.write_sep("-", "torchscope model snapshots")
        for path in unused:
            terminalreporter.write_line(
                f"unused model snapshot (no test uses it; delete it if the test is gone): "
                f"{_shown(path, config)}"
            )


def _shown(path: Path, config: pytest.Config) -> str:
    try:
        return str(path.resolve().relative_to(Path(str(config.rootpath)).resolve()))
    except ValueError:
        return str(path)
