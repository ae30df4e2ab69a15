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

>>> _safe_name("test_gpt[width=32]")
'test_gpt-width-32'
"""

from __future__ import annotations

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


def _safe_name(name: str) -> str:
    """A file name from a test name: parameters' brackets and odd characters become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-.") or "snapshot"


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
    """
    update = bool(request.config.getoption(_UPDATE))
    folder = _snapshot_folder(Path(str(request.path)))
    seen: set[str] = set()

    def check(model: Any, example_inputs: Any = None, *, name: str | None = None,
              **options: Any) -> None:
        __tracebackhide__ = True
        from torchscope.arch_diff import diff, load_report, stable_report
        from torchscope.inspect import summarize
        from torchscope.rendering import render

        file_name = _safe_name(name if name is not None else _test_name(request.node))
        if file_name in seen:
            raise ValueError(
                f"model_snapshot name {file_name!r} is used twice in {request.node.nodeid}: give "
                "each snapshot of a test its own name=..."
            )
        seen.add(file_name)
        path = folder / f"{file_name}.json"
        # reports carry the user properties to the session (also from xdist workers)
        request.node.user_properties.append((_USED, str(path.resolve())))
        report = stable_report(summarize(model, example_inputs, **options))
        if update:
            folder.mkdir(parents=True, exist_ok=True)
            text = report.to_json() + "\n"
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                request.node.user_properties.append((_WRITTEN, str(path.resolve())))
            return
        if not path.exists():
            pytest.fail(
                f"model snapshot {path} does not exist: run `pytest {_UPDATE}` once to write "
                "it, review it and commit it",
                pytrace=False,
            )
        result = diff(load_report(path), report, labels=("snapshot", type(model).__name__))
        if not result.equal:
            pytest.fail(
                f"{type(model).__name__} no longer matches its snapshot {path}:\n\n"
                f"{render(result, 'text')}\n\n"
                f"If the change is intended, run `pytest {_UPDATE}` and commit the snapshot.",
                pytrace=False,
            )

    yield check


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
            elif key == _WRITTEN and Path(str(value)) not in self.state.written:
                self.state.written.append(Path(str(value)))
        if report.when == "call" and report.passed:
            self.state.passed.add(report.nodeid)
        elif report.failed or report.skipped:
            module = self.state.item_module.get(report.nodeid)
            if module is not None:
                self.state.incomplete.add(module)

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
