"""The command line: targets, formats, exit codes and one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
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


# -- habits: keyword inputs, columns, -m, names, suggestions, formats ------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_keyword_inputs_trace_an_encoder_decoder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "docs/examples/t5.py:build", "--input", "input_ids=1,8:long",
                 "--input", "decoder_input_ids=1,4:long", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [k for k, _ in data["input_kwargs"]] == ["input_ids", "decoder_input_ids"]
    assert data["input_kwargs"][0][1]["shape"] == [1, 8]
    assert data["input_kwargs"][1][1]["dtype"] == "int64"
    logits = dict(data["outputs"]["items"])["logits"]
    assert logits["shape"] == [1, 4, 128]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("input_ids=1,128:long", ("input_ids", (1, 128), "int64")),
     ("x=2,20:bf16", ("x", (2, 20), "bfloat16")),
     ("mask=1,8:bool", ("mask", (1, 8), "bool")),
     ("2,20:fp16", (None, (2, 20), "float16")),
     ("2x20", (None, (2, 20), None))],
)
def test_parse_input(spec: str, expected: tuple[object, ...]) -> None:
    from torchscope._torch import dtype_name
    from torchscope.cli import parse_input

    name, shape, dtype = parse_input(spec)
    assert (name, shape, None if dtype is None else dtype_name(dtype)) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--input", "x=2,20:floaty"], "is not a dtype"),
     (["--input", "x=2,a"], "is not a shape"),
     (["--input", "x=2,20", "--input", "x=2,20"], "--input x= is given twice"),
     (["--input", "2,20:long", "--dtype", "long"], "either inline")],
)
def test_bad_keyword_inputs(args: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_keyword_input_reaches_forward(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "--input", "x=2,20", "--format", "text",
                 "--columns", "input_size,output_size"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["Module", "Input", "Output"]
    assert "x=[2, 20]" in out and "inputs x=[2, 20] float32" in out


def test_columns_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "--input-size", "2,20", "--format", "markdown",
                 "--columns", "num_params,params_percent,type"]) == 0
    header = capsys.readouterr().out.splitlines()[2]
    assert [h.strip() for h in header.strip("|").split("|")] == ["Module", "Total",
                                                                 "% params", "Type"]
    assert main(["summarize", "--columns", "output_size"]) == 2
    assert "needs a traced forward" in capsys.readouterr().err


def test_syncs_runs_a_module_and_passes_its_arguments() -> None:
    proc = run_cli("syncs", "--format", "json", "-m", "docs.examples.train", "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.split("\n", 1)[1])  # the script prints its loss first
    assert report["schema_version"] == 1
    assert [s["count"] for s in report["sites"]] == [3]


def test_syncs_help_says_options_after_the_script_go_to_it() -> None:
    proc = run_cli("syncs", "--help")
    assert "everything after SCRIPT" in " ".join(proc.stdout.split())
    assert "-m MODULE" in proc.stdout


def test_usage_names_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchscope.cli import build_parser, prog_name

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/torchscope", "summarize"])
    assert prog_name() == "torchscope"
    assert build_parser().format_usage().startswith("usage: torchscope ")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "torchscope" / "__main__.py")])
    assert prog_name() == "python -m torchscope"


def test_graph_help_shows_examples_as_lines() -> None:
    proc = run_cli("graph", "--help")
    # regression: the examples ran together in one paragraph with reST backticks
    assert "``" not in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert "python -m torchscope graph --input-size 2,20 -o mlp.svg" in lines


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["summarise"], "did you mean summarize?"),
     (["chekpoint", "x.pt"], "did you mean checkpoint?"),
     (["summarize", "--input-sise", "2,20"], "did you mean --input-size?"),
     (["summarize", "--colums", "type"], "did you mean --columns?")],
)
def test_typos_get_the_closest_name(argv: list[str], suggestion: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(argv)
    assert suggestion in capsys.readouterr().err


def test_json_of_every_command_carries_the_schema_version(tmp_path: Path) -> None:
    import torch

    from torchscope.examples import MLP

    weights = tmp_path / "mlp.pt"
    torch.save(MLP().state_dict(), weights)
    policy = write(tmp_path, "policy.toml", '[[rule]]\nmatch = "*"\ninit = "keep"\n')
    for args in (["summarize"], ["summarize", "--input-size", "2,20"],
                 ["checkpoint", str(weights)], ["init", "--policy", str(policy)]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*args, "--format", "json"]) == 0, args
        assert json.loads(out.getvalue())["schema_version"] == 1, args


def test_nothing_on_stderr_when_piped() -> None:
    # progress goes to a terminal only: piped runs keep stderr clean
    proc = run_cli("summarize", "--input-size", "2,20")
    assert proc.returncode == 0 and proc.stderr == ""


def test_progress_goes_to_a_terminal_stderr_only() -> None:
    import select

    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    try:
        proc = subprocess.run([sys.executable, "-m", "torchscope", "summarize",
                               "--input-size", "2,20"], stdout=subprocess.PIPE, stderr=slave,
                              env=env, timeout=120)
    finally:
        os.close(slave)
    shown = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"tracing a forward of MLP" in shown
    assert b"\x1b" not in proc.stdout and b"Total params: 7,946" in proc.stdout
