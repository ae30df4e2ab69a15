"""The pytest plugin (model_snapshot, --torchscope-update, unused snapshots), the worked example
in docs/examples, and the assertion helpers of torchscope.testing."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from torchscope.examples import MLP, LazyMLP, SharedMLP
from torchscope.testing import (
    assert_loads,
    assert_no_syncs,
    assert_param_count,
    assert_ties,
    assert_unchanged,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples"

SNAPSHOT_TEST = """
import torch
from torch import nn

WIDTH = {width}


def build():
    return nn.Sequential(nn.Linear(4, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 2))


def test_static(model_snapshot):
    model_snapshot(build())


def test_traced(model_snapshot):
    model_snapshot(build(), torch.zeros(3, 4), name="traced")
"""


@pytest.fixture(scope="module", autouse=True)
def _torch_modules_loaded() -> None:
    """Import what the inner runs import, once, in this process.

    In-process pytest runs drop the modules they imported when they end; torch modules that
    register operator libraries cannot be imported a second time.
    """
    import importlib.util

    import torchscope

    spec = importlib.util.spec_from_file_location("_example", EXAMPLE / "test_example_model.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = example.TinyGPT()
    for mode in ("auto", "meta", "fake", "real"):
        torchscope.summarize(model, torch.zeros(2, example.CONTEXT, dtype=torch.long), mode=mode)
    torchscope.diff(MLP(), MLP(), input_size=[(2, 20)])
    optimizer = torch.optim.AdamW(model.parameters())
    with torchscope.detect_syncs():
        model(torch.zeros(2, example.CONTEXT, dtype=torch.long)).sum().backward()
        optimizer.step()
    torchscope.diff_checkpoint(model, EXAMPLE / "checkpoints" / "tiny_gpt.pt")
    str(torchscope.diff(MLP(), SharedMLP()))


@pytest.fixture(autouse=True)
def _inner_options(request: pytest.FixtureRequest) -> None:
    """Inner runs: no cache files, no benchmark plugin (it warns when xdist runs this test)."""
    if "pytester" in request.fixturenames:
        pytester = request.getfixturevalue("pytester")
        pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:benchmark\n")


def _write(pytester: pytest.Pytester, width: int, name: str = "test_model") -> Path:
    return pytester.makepyfile(**{name: SNAPSHOT_TEST.format(width=width)})


def _snapshots(pytester: pytest.Pytester, module: str = "test_model") -> Path:
    return pytester.path / "__snapshots__" / module


# ------------------------------------------------------------------------------------------
# the plugin


def test_the_plugin_is_inert_until_used(pytester: pytest.Pytester) -> None:
    # guards: a module-level torch import in the plugin costs every pytest run seconds
    pytester.makepyfile(test_light="""
        import sys

        def test_no_torch(request):
            assert request.config.pluginmanager.has_plugin("torchscope")
            assert request.config.getoption("--torchscope-update") is False
            heavy = [m for m in ("torch", "torchscope.arch_diff", "torchscope.inspect", "rich")
                     if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_missing_snapshot_fails_then_update_writes_it(pytester: pytest.Pytester) -> None:
    _write(pytester, 8)
    first = pytester.runpytest()
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(["*model snapshot *test_static.json does not exist: run "
                                "`pytest --torchscope-update`*"])
    update = pytester.runpytest("--torchscope-update")
    update.assert_outcomes(passed=2)
    update.stdout.fnmatch_lines(["*model snapshot written: *__snapshots__/test_model/"
                                 "test_static.json"])
    assert sorted(p.name for p in _snapshots(pytester).iterdir()) == [
        "test_static.json", "traced.json"]
    pytester.runpytest().assert_outcomes(passed=2)
    again = pytester.runpytest("--torchscope-update")
    again.assert_outcomes(passed=2)
    assert "model snapshot written" not in again.stdout.str()  # same content: left alone


def test_a_changed_width_fails_with_the_diff(pytester: pytest.Pytester) -> None:
    _write(pytester, 8)
    pytester.runpytest("--torchscope-update").assert_outcomes(passed=2)
    _write(pytester, 12)
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*Sequential no longer matches its snapshot*test_static.json:",
        "Parameters: 58 → 86 (+28)",
        "*If the change is intended, run `pytest --torchscope-update`*",
    ])
    out = result.stdout.str()
    assert "~   0.weight  shape [8, 4] → [12, 4]" in out
    # only the traced snapshot has calls (the short summary repeats whole messages under CI=true)
    assert out.split("short test summary info")[0].count("Call shapes") == 1
    assert "0       outputs  [3, 8] float32  [3, 12] float32" in out


def test_snapshot_is_stable_and_machine_independent(pytester: pytest.Pytester) -> None:
    _write(pytester, 8)
    pytester.runpytest("--torchscope-update").assert_outcomes(passed=2)
    text = (_snapshots(pytester) / "traced.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["schema_version"] == 1 and data["notes"] == []
    assert str(pytester.path) not in text and "0x" not in text
    assert data["mode"] is not None  # traced: the call shapes are in it


def test_parametrized_names_and_a_name_used_twice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_params="""
        import pytest
        from torch import nn

        @pytest.mark.parametrize("width", [2, 3])
        def test_width(model_snapshot, width):
            model_snapshot(nn.Linear(width, 1))

        class TestWidths:
            def test_width(self, model_snapshot):
                model_snapshot(nn.Linear(5, 1))

        def test_twice(model_snapshot):
            model_snapshot(nn.Linear(1, 1), name="same")
            model_snapshot(nn.Linear(1, 1), name="same")
    """)
    result = pytester.runpytest("--torchscope-update")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*model_snapshot name 'same' is used twice*"])
    names = sorted(p.name for p in _snapshots(pytester, "test_params").iterdir())
    assert names == ["TestWidths.test_width.json", "same.json", "test_width-2.json",
                     "test_width-3.json"]


def test_unused_snapshots_are_reported(pytester: pytest.Pytester) -> None:
    _write(pytester, 8)
    pytester.runpytest("--torchscope-update").assert_outcomes(passed=2)
    gone = _snapshots(pytester, "test_deleted")
    gone.mkdir(parents=True)
    (gone / "test_old.json").write_text("{}", encoding="utf-8")
    pytester.makepyfile(test_model="""
        from torch import nn

        def test_static(model_snapshot):
            model_snapshot(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*torchscope model snapshots*",
        "unused model snapshot (no test uses it*): __snapshots__/test_deleted/test_old.json",
        "unused model snapshot (no test uses it*): __snapshots__/test_model/traced.json",
    ])
    assert "test_static.json" not in result.stdout.str()


def test_unused_snapshots_are_not_guessed_from_a_partial_run(pytester: pytest.Pytester) -> None:
    _write(pytester, 8)
    pytester.runpytest("--torchscope-update").assert_outcomes(passed=2)
    selected = pytester.runpytest("-k", "static")
    selected.assert_outcomes(passed=1, deselected=1)
    assert "unused model snapshot" not in selected.stdout.str()
    _write(pytester, 12)  # both fail: a failed test may not have reached its snapshot
    failed = pytester.runpytest()
    failed.assert_outcomes(failed=2)
    assert "unused model snapshot" not in failed.stdout.str()


# ------------------------------------------------------------------------------------------
# the worked example in docs/examples


def _copy_example(pytester: pytest.Pytester) -> Path:
    for name in ("__snapshots__", "checkpoints"):
        shutil.copytree(EXAMPLE / name, pytester.path / name)
    target = pytester.path / "test_example_model.py"
    shutil.copy(EXAMPLE / "test_example_model.py", target)
    return target


def test_the_worked_example_passes(pytester: pytest.Pytester) -> None:
    _copy_example(pytester)
    result = pytester.runpytest()
    result.assert_outcomes(passed=5)
    assert "unused model snapshot" not in result.stdout.str()


def test_the_worked_example_fails_with_the_diff_when_a_width_changes(
        pytester: pytest.Pytester) -> None:
    target = _copy_example(pytester)
    source = target.read_text(encoding="utf-8")
    assert "\nWIDTH = 16 " in source
    target.write_text(source.replace("\nWIDTH = 16 ", "\nWIDTH = 24 "), encoding="utf-8")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*TinyGPT no longer matches its snapshot*test_architecture.json:",
        "Parameters: 7,744 → *",
        "Call shapes",
    ])
    assert re.search(r"tok\.weight +shape \[64, 16\] → \[64, 24\]", result.stdout.str())
    result.stdout.fnmatch_lines(["*TinyGPT.load_state_dict(strict=True) would fail on*"])
    result.stdout.fnmatch_lines(["*TinyGPT has * parameters, expected 7,744*"])


# ------------------------------------------------------------------------------------------
# assertion helpers


def test_assert_no_syncs_lists_every_site() -> None:
    with assert_no_syncs():
        y = torch.ones(3) * 2
    with pytest.raises(AssertionError, match=r"2 host-device synchronizations in a block") as err:
        with assert_no_syncs():
            float(y.sum())
            bool(y.any())
    assert "test_plugin.py" in str(err.value)


def test_assert_no_syncs_lets_the_block_error_through() -> None:
    with pytest.raises(KeyError, match="inner"), assert_no_syncs():
        float(torch.ones(1))
        raise KeyError("inner")


def test_assert_unchanged_passes_on_a_forward() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    with assert_unchanged(model):
        model(torch.randn(2, 4))


def _write_in_place(t: torch.Tensor) -> None:
    with torch.no_grad():
        t.mul_(1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.train(), r"1: training False → True"),
        (lambda m: m[0].weight.data.add_(1), r"0.weight: values changed"),
        (lambda m: m[0].weight.requires_grad_(False), r"0.weight: requires_grad True → False"),
        (lambda m: m[0].register_forward_hook(lambda *a: None), r"0: forward_hooks 0 → 1"),
        (lambda m: m.to(torch.float64), r"0.weight: dtype float32 → float64"),
        (lambda m: m.to("meta"), r"0.weight: device cpu → meta"),
        (lambda m: m[1](torch.randn(3, 4)) if m.train() else None,
         r"1.running_mean: values changed"),
        (lambda m: _write_in_place(m[0].weight), r"0.weight: written in place \(version"),
        (lambda m: setattr(m[0], "cache", 1), r"0: attribute 'cache' added"),
        (lambda m: m.append(nn.ReLU()), r"2: module added \(ReLU\)"),
    ],
)
def test_assert_unchanged_names_each_change(change: object, match: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    with pytest.raises(AssertionError, match=match):
        with assert_unchanged(model):
            change(model)  # type: ignore[operator]


def test_assert_ties() -> None:
    found = assert_ties(SharedMLP(), [["2.weight", "4.weight"], ["4.bias", "2.bias"]])
    assert len(found) == 2
    assert_ties(MLP(), [])
    with pytest.raises(AssertionError, match=r"tied, not expected: 2.bias ↔ 4.bias \(alias\)"):
        assert_ties(SharedMLP(), [["2.weight", "4.weight"]])
    with pytest.raises(AssertionError, match=r"expected tied, not found: hidden.weight ↔ "
                                             r"output.weight\n  found: none"):
        assert_ties(MLP(), [["hidden.weight", "output.weight"]])


def test_assert_loads(tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.save(MLP().state_dict(), path)
    assert assert_loads(MLP(), path).would_load_strict
    partial = tmp_path / "partial.pt"
    state = MLP().state_dict()
    del state["output.bias"]
    torch.save(state, partial)
    with pytest.raises(AssertionError, match=r"MLP.load_state_dict\(strict=True\) would fail "
                                             r"on '.*partial.pt'"):
        assert_loads(MLP(), partial)
    assert assert_loads(MLP(), partial, strict=False).missing == ("output.bias",)
    wrong = tmp_path / "wrong.pt"
    state = MLP().state_dict()
    state["hidden.weight"] = torch.zeros(3, 3)
    torch.save(state, wrong)
    with pytest.raises(AssertionError, match=r"strict=False\) would fail(.|\n)*hidden.weight"):
        assert_loads(MLP(), wrong, strict=False)


def test_assert_param_count() -> None:
    assert_param_count(MLP(), 7946, trainable=7946)
    assert_param_count(SharedMLP(), 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1)  # the shared layer once
    with pytest.raises(AssertionError, match=r"MLP has 7,946 parameters, expected 8,000 "
                                             r"\(-54\); per block:\n  hidden: 5,376 \(Linear\)"):
        assert_param_count(MLP(), 8000)
    frozen = MLP()
    frozen.hidden.requires_grad_(False)
    with pytest.raises(AssertionError, match=r"2,570 trainable, expected 7,946"):
        assert_param_count(frozen, 7946, trainable=7946)
    with pytest.raises(AssertionError, match=r"uninitialized \(lazy\) tensors, so its parameter "
                                             r"count is unknown"):
        assert_param_count(LazyMLP(), 7946)


def test_helpers_import_no_torch_until_called() -> None:
    import subprocess
    import sys

    code = textwrap.dedent("""
        import sys
        import torchscope.pytest_plugin, torchscope.testing
        print([m for m in ("torch", "rich", "tabulate") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
