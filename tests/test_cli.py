"""The command line: targets, formats, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from torchscope.cli import main, parse_shape


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchscope", *args], capture_output=True,
                          text=True, timeout=120)


def test_default_summary_runs_as_a_program() -> None:
    proc = run_cli("summarize")
    assert proc.returncode == 0, proc.stderr
    assert "hidden" in proc.stdout and "Total params: 7,946" in proc.stdout
    assert proc.stderr == ""


def test_unresolvable_target_exits_2_with_one_line() -> None:
    proc = run_cli("summarize", "no.such.module:thing")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot import module 'no.such.module'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 7946
    assert data["modules"][1]["path"] == "hidden"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_TARGETS = {
    "missing module": ("no.such.module:thing", "cannot import module 'no.such.module'"),
    "missing attribute": ("torchscope.examples:Nope", "has no attribute 'Nope'"),
    "not a module": ("torchscope.cli:DEFAULT_TARGET", "is a str, not a module"),
    "factory returns no module": ("torchscope.cli:prog_name", "returned a str"),
    "no object named": ("model.py", "names a file but no object"),
    "missing file": ("does/not/exist.py:build", "does not exist"),
    "no colon": ("MLP", "is not package.module:name"),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_bad_targets(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    target, message = BAD_TARGETS[case]
    assert main(["summarize", target]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_import_error_inside_target_names_the_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "broken.py", "import not_installed_pkg\n")
    assert main(["summarize", f"{path}:build"]) == 2
    err = capsys.readouterr().err
    assert "importing" in err and "No module named 'not_installed_pkg'" in err


def test_file_target_with_kwargs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "net.py", "from torch import nn\n"
                 "def build(width=4):\n    return nn.Linear(3, width)\n")
    assert main(["summarize", f"{path}:build", "--kwargs", '{"width": 5}',
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 3 * 5 + 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [("{width: 5}", "is not valid JSON"), ("[1, 2]", "must be a JSON object"),
     ('{"nope": 1}', "raised TypeError")],
)
def test_bad_kwargs(tmp_path: Path, kwargs: str, message: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "net.py", "from torch import nn\n"
                 "def build(width=4):\n    return nn.Linear(3, width)\n")
    assert main(["summarize", f"{path}:build", "--kwargs", kwargs]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--input-size", "2,a"], "is not a shape"),
     (["--input-size", ""], "is not a shape"),
     (["--input-size", "2,-1"], "is not a shape"),
     (["--input-size", "2,20", "--dtype", "floaty"], "is not a torch dtype"),
     (["--dtype", "long"], "--dtype needs --input-size"),
     (["--input-size", "2,20", "--input-size", "2,3", "--dtype", "long", "--dtype", "long",
       "--dtype", "long"], "got 3 --dtype values for 2 --input-size values"),
     (["--depth", "-1"], "--depth -1 is negative")],
)
def test_bad_input_options(args: list[str], message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", *args]) == 2
    err = capsys.readouterr().err
    assert message.replace('is not a torch dtype', 'is not a dtype') in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "shape"),
    [("1,3,224,224", (1, 3, 224, 224)), ("2x20", (2, 20)), ("(2, 20)", (2, 20)), ("5", (5,)),
     ("5,", (5,))],
)
def test_parse_shape(text: str, shape: tuple[int, ...]) -> None:
    assert parse_shape(text) == shape


def test_depth_and_params_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "torchscope.examples:NestMLP", "--depth", "1",
                 "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "net" in out and "├─ 0" not in out
    assert main(["summarize", "torchscope.examples:SharedMLP", "--params", "--ties",
                 "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| 2.weight" in out and "2.weight ↔ 4.weight" in out


def test_cli_modes_are_the_trace_modes() -> None:
    # the CLI's --mode choices must stay the modes trace_forward accepts
    from torchscope.cli import MODES
    from torchscope.trace import MODES as TRACE_MODES

    assert set(MODES) == set(TRACE_MODES)
