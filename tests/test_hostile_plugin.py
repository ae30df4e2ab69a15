"""Promise 4 for the pytest plugin: bad input to the plugin and the assertion helpers: one clear
error, no lost snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchscope.errors import ArgumentError, InputSpecError, TorchscopeError
from torchscope.pytest_plugin import _safe_name
from torchscope.testing import (
    assert_loads,
    assert_no_syncs,
    assert_param_count,
    assert_ties,
    assert_unchanged,
)

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module", autouse=True)
def _torch_modules_loaded() -> None:
    """Import what the inner runs import, once, in this process (in-process pytest runs drop
    the modules they imported; torch modules cannot be imported a second time)."""
    import torchscope
    from torchscope.arch_diff import load_report, stable_report  # noqa: F401

    report = stable_report(torchscope.summarize(nn.Linear(2, 2)))
    str(torchscope.diff(report, torchscope.summarize(nn.Linear(3, 3))))


@pytest.fixture(autouse=True)
def _inner_options(request: pytest.FixtureRequest) -> None:
    if "pytester" in request.fixturenames:
        pytester = request.getfixturevalue("pytester")
        pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:benchmark\n")


def _snapshots(pytester: pytest.Pytester, module: str) -> Path:
    return pytester.path / "__snapshots__" / module


# ------------------------------------------------------------------------------------------
# snapshot file names


def test_names_that_clean_up_alike_get_their_own_files(pytester: pytest.Pytester) -> None:
    # guards: "enc/dec" and "enc-dec" shared enc-dec.json, one snapshot silently overwritten
    pytester.makepyfile(test_names="""
        from torch import nn

        def test_a(model_snapshot):
            model_snapshot(nn.Linear(2, 2), name="enc/dec")

        def test_b(model_snapshot):
            model_snapshot(nn.Linear(3, 3), name="enc-dec")
    """)
    pytester.runpytest("--torchscope-update").assert_outcomes(passed=2)
    names = sorted(p.name for p in _snapshots(pytester, "test_names").iterdir())
    assert names == ["enc-dec--49c3ca5d5d.json", "enc-dec.json"]
    pytester.runpytest().assert_outcomes(passed=2)


def test_safe_name_keeps_safe_names_and_never_merges_two() -> None:
    # guards: a non-injective name -> file mapping (and renamed files of existing snapshots)
    kept = ["enc-dec", "traced", "TestWidths.test_width", "a.b_c-1"]
    assert [_safe_name(n) for n in kept] == kept
    assert _safe_name("test_width[2]") == "test_width-2"
    assert _safe_name("test_gpt[32-relu]") == "test_gpt-32-relu"
    names = ["enc/dec", "enc-dec", "enc dec", "enc--dec", "enc-dec-", "-enc-dec", "t[a-b]",
             "t[a/b]", "///", "snapshot", "x" * 300, "x" * 301, "é", "è", "a\x00b"]
    files = [_safe_name(n) for n in names]
    assert len(set(files)) == len(names)  # name="t-a-b" meets test t[a-b]: the session check
    assert all(0 < len(f) <= 140 and not f.startswith(("-", ".")) for f in files)


def test_bad_names_are_one_clear_error(pytester: pytest.Pytester) -> None:
    # guards: name=3 raised a raw TypeError; "" and ".." both became snapshot.json
    pytester.makepyfile(test_bad="""
        import pytest
        from torch import nn

        @pytest.mark.parametrize("name", ["", "..", "."])
        def test_empty(model_snapshot, name):
            model_snapshot(nn.Linear(2, 2), name=name)

        def test_number(model_snapshot):
            model_snapshot(nn.Linear(2, 2), name=3)

        def test_no_model(model_snapshot):
            model_snapshot(None)
    """)
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines([
        "E *errors.InputSpecError: model_snapshot: name = '' names no file; give a name with a "
        "letter or digit, e.g. name='eval', or leave it out to use the test's name",
        "E *errors.InputSpecError: model_snapshot: name = '..' names no file;*",
        "E *errors.ArgumentError: model_snapshot: name = 3 is not a str; give the snapshot's "
        "name as a str, e.g. name='eval', or leave it out to use the test's name",
        "E *errors.ArgumentError: model_snapshot: model = NoneType is not a torch.nn.Module;*",
    ])
    assert not _snapshots(pytester, "test_bad").exists()


def test_two_tests_on_one_file_fail_the_second(pytester: pytest.Pytester) -> None:
    # guards: the "used twice" check was per test, so a second test overwrote the first's file
    pytester.makepyfile(test_clash="""
        import pytest
        from torch import nn

        @pytest.mark.parametrize("width", [2])
        def test_width(model_snapshot, width):
            model_snapshot(nn.Linear(width, 1))

        def test_other(model_snapshot):
            model_snapshot(nn.Linear(7, 7), name="test_width-2")
    """)
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E *errors.InputSpecError: model_snapshot name 'test_width-2' of test_clash.py::test_other "
        "maps to __snapshots__/test_clash/test_width-2.json, the snapshot of "
        "test_clash.py::test_width[[]2[]] (name 'test_width[[]2[]]'): give one of the two "
        "tests another name=...",
    ])
    text = (_snapshots(pytester, "test_clash") / "test_width-2.json").read_text("utf-8")
    assert '"total_params": 3' in text  # the first test's snapshot, not overwritten


def test_names_differing_in_case_are_one_file(pytester: pytest.Pytester) -> None:
    # guards: "Enc" and "enc" are one file on macOS and Windows, so one would overwrite the other
    pytester.makepyfile(test_case="""
        from torch import nn

        def test_twice(model_snapshot):
            model_snapshot(nn.Linear(2, 2), name="Enc")
            model_snapshot(nn.Linear(2, 2), name="enc")
    """)
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *errors.InputSpecError: model_snapshot names 'Enc' and "
                                 "'enc' of test_case.py::test_twice both map to *"])


def test_a_clash_between_workers_fails_the_session(pytester: pytest.Pytester) -> None:
    # guards: under xdist each worker sees only its own tests, so a shared file went unnoticed
    config = pytester.parseconfigure()
    hooks = config.pluginmanager.get_plugin("torchscope-snapshots")
    path = str(pytester.path / "__snapshots__" / "test_m" / "same.json")
    for nodeid in ("test_m.py::test_a", "test_m.py::test_b", "test_m.py::test_b"):
        hooks.pytest_runtest_logreport(pytest.TestReport(
            nodeid, ("test_m.py", 1, nodeid), {}, "passed", None, "call",
            user_properties=[("torchscope_snapshot", path)]))
    assert [(c[1], c[2]) for c in hooks.state.clashes] == [
        ("test_m.py::test_a", "test_m.py::test_b")]

    class Session:
        exitstatus = pytest.ExitCode.OK

    session: Any = Session()
    hooks.pytest_sessionfinish(session)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    lines: list[str] = []

    class Reporter:
        def write_sep(self, *args: Any, **kwargs: Any) -> None:
            pass

        def write_line(self, line: str, **kwargs: Any) -> None:
            lines.append(line)

    hooks.pytest_terminal_summary(Reporter())
    assert lines[0] == ("model snapshot __snapshots__/test_m/same.json is used by two tests, "
                        "test_m.py::test_a and test_m.py::test_b: give one of them another "
                        "name=... (under --torchscope-update one overwrote the other)")


# ------------------------------------------------------------------------------------------
# damaged snapshot files

SIMPLE = """
from torch import nn

def test_one(model_snapshot):
    model_snapshot(nn.Linear(2, 2), name="one")
"""


def test_update_replaces_a_snapshot_that_is_not_utf8(pytester: pytest.Pytester) -> None:
    # guards: --torchscope-update crashed with UnicodeDecodeError reading the old file
    pytester.makepyfile(test_bytes=SIMPLE)
    folder = _snapshots(pytester, "test_bytes")
    folder.mkdir(parents=True)
    (folder / "one.json").write_bytes(b"\xff\xfe")
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["model snapshot written: __snapshots__/test_bytes/one.json"])
    pytester.runpytest().assert_outcomes(passed=1)
    assert sorted(p.name for p in folder.iterdir()) == ["one.json"]  # no temporary file left


@pytest.mark.parametrize(("content", "reason"), [
    (b"\xff\xfe", "is not UTF-8 text"),
    (b"{not json", "is not valid JSON (*)"),
    (b'{"modules": [], "root_type": "Linear", "schema_version": 1}',
     "is a damaged torchscope report (*)"),
])
def test_a_damaged_snapshot_says_to_run_update(pytester: pytest.Pytester, content: bytes,
                                               reason: str) -> None:
    # guards: the failure told to run `torchscope summarize --format json`, not the plugin's fix
    pytester.makepyfile(test_bad_file=SIMPLE)
    folder = _snapshots(pytester, "test_bad_file")
    folder.mkdir(parents=True)
    (folder / "one.json").write_bytes(content)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"model snapshot *one.json cannot be used ({reason}): run "
                                 "`pytest --torchscope-update` to write it again, review it "
                                 "and commit it"])
    assert "summarize" not in result.stdout.str()


def test_a_snapshot_that_cannot_be_written_is_one_line(pytester: pytest.Pytester) -> None:
    # guards: a folder where the snapshot file goes raised a raw IsADirectoryError
    pytester.makepyfile(test_dir=SIMPLE)
    (_snapshots(pytester, "test_dir") / "one.json").mkdir(parents=True)
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *errors.TorchscopeError: cannot write model snapshot "
                                 "*one.json: Is a directory; make its folder a writable*"])


# ------------------------------------------------------------------------------------------
# assertion helpers


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: assert_param_count(m, "10"),
     r"^assert_param_count: n = '10' is not an int; give the number of parameter values as "
     r"an int, e.g. n=7946$"),
    (lambda m: assert_param_count(m, None), r"^assert_param_count: n = None is not an int"),
    (lambda m: assert_param_count(m, True), r"^assert_param_count: n = True is not an int"),
    (lambda m: assert_param_count(m, 6.0), r"^assert_param_count: n = 6.0 is not an int"),
    (lambda m: assert_param_count(m, 6, trainable=[6]),
     r"^assert_param_count: trainable = \[6\] is not an int; .*, or None to leave it "
     r"unchecked$"),
    (lambda m: assert_param_count(None, 6), r"^assert_param_count: model = NoneType is not a "
                                            r"torch.nn.Module; pass the model itself$"),
    (lambda m: assert_ties(m, None),
     r"^assert_ties: expected_groups = None is not a list of groups of names; give a list of "
     r"lists of str"),
    (lambda m: assert_ties(m, "weight"), r"^assert_ties: expected_groups = 'weight' is not"),
    (lambda m: assert_ties(m, ["weight"]),
     r"^assert_ties: expected_groups\[0\] = 'weight' is not a group of names"),
    (lambda m: assert_ties(m, [["weight", 1]]),
     r"^assert_ties: expected_groups\[0\] holds 1, not a str; give qualified tensor names"),
    (lambda m: assert_ties([], []), r"^assert_ties: model = list is not a torch.nn.Module"),
    (lambda m: assert_unchanged(None),
     r"^assert_unchanged: model = NoneType is not a torch.nn.Module; pass the model itself$"),
    (lambda m: assert_no_syncs(include_cpu="yes"),
     r"^assert_no_syncs: include_cpu = 'yes' is not True or False \(or None for the "
     r"default\); pass a bool$"),
    (lambda m: assert_no_syncs(deep=1), r"^assert_no_syncs: deep = 1 is not True or False"),
    (lambda m: assert_loads(None, "x.pt"), r"^assert_loads: model = NoneType is not a"),
    (lambda m: assert_loads(m, 3),
     r"^assert_loads: checkpoint_path = 3 is not a file path; give the checkpoint's path as "
     r"a str or pathlib.Path$"),
    (lambda m: assert_loads(m, {"weight": 1}), r"^assert_loads: checkpoint_path = \{'weight"),
    (lambda m: assert_loads(m, "x.pt", strict="no"),
     r"^assert_loads: strict = 'no' is not True or False; pass a bool$"),
    (lambda m: assert_loads(m, "x.pt", key=3), r"^assert_loads: key = 3 is not a str; give the "
                                               r"dotted path"),
])
def test_helpers_reject_wrong_types_with_one_line(call: Any, message: str) -> None:
    # guards: format errors, TypeErrors and AttributeErrors from deep inside the helpers
    with pytest.raises(ArgumentError, match=message) as err:
        call(nn.Linear(2, 2))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: assert_param_count(m, -1), r"^assert_param_count: n = -1 is negative"),
    (lambda m: assert_param_count(m, 6, trainable=7),
     r"^assert_param_count: trainable = 7 is more than n = 6"),
    (lambda m: assert_ties(m, [["weight"]]),
     r"^assert_ties: expected_groups\[0\] = \['weight'\] has fewer than two names"),
    (lambda m: assert_ties(m, [["a", "b"], ["b", "c"]]),
     r"^assert_ties: 'b' is in expected_groups\[0\] and expected_groups\[1\]; .* merge the "
     r"two groups$"),
])
def test_helpers_reject_impossible_values_with_one_line(call: Any, message: str) -> None:
    # guards: an impossible expectation reported as a model failure
    with pytest.raises(InputSpecError, match=message):
        call(nn.Linear(2, 2))


def test_helpers_still_fail_with_assertion_errors() -> None:
    # guards: argument checks turning a real mismatch into a TorchscopeError
    model = nn.Linear(2, 2)
    assert_param_count(model, 6, trainable=6)
    assert_param_count(model, torch.tensor(6).item())
    assert assert_ties(model, iter([])) == ()
    with pytest.raises(AssertionError, match="Linear has 6 parameters, expected 5"):
        assert_param_count(model, 5)
    with pytest.raises(AssertionError, match="expected tied, not found: bias ↔ weight"):
        assert_ties(model, [("weight", "bias")])
    with pytest.raises(AssertionError, match=r"training True → False"):
        with assert_unchanged(model):
            model.eval()
    with pytest.raises(TorchscopeError):
        assert_loads(model, Path("missing.pt"))
