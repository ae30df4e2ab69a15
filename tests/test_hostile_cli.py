"""Promise 4 on the command line: targets that exit or raise BaseException, bad -o paths, empty
values.

Every case ends with one line on stderr and exit code 2, never a traceback, a silent success,
a lost report or an overwritten file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torchscope
from torchscope import examples
from torchscope.cli import main
from torchscope.errors import InputSpecError, TorchscopeError

MODEL = "import torch\nmodel = torch.nn.Linear(20, 3)\n"


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# targets whose import or factory exits or raises a BaseException


@pytest.mark.parametrize(("call", "shown"), [("sys.exit(0)", "sys.exit(0)"),
                                             ("sys.exit(3)", "sys.exit(3)"),
                                             ("sys.exit()", "sys.exit()"),
                                             ("sys.exit('bye')", "sys.exit('bye')")])
def test_target_file_exiting_at_import_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], call: str, shown: str
) -> None:
    # guards: sys.exit(0) at import made `check` exit 0 with no output (a gate passing while
    # checking nothing); sys.exit(3) exited 3
    path = write(tmp_path, "exit0.py", f"import sys\n{call}\n")
    assert main(["check", f"{path}:model", "--input-size", "2,20"]) == 2
    err = one_line(capsys)
    assert f"importing {str(path)!r} called {shown}" in err
    assert "if __name__ == '__main__'" in err


def test_target_module_exiting_at_import_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: a package.module:name target calling sys.exit(0) at import exited 0 silently
    write(tmp_path, "hostile_exit_module.py", "import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["summarize", "hostile_exit_module:model"]) == 2
    assert "importing 'hostile_exit_module' called sys.exit(0)" in one_line(capsys)
    assert "hostile_exit_module" not in sys.modules


@pytest.mark.parametrize(("raised", "shown"), [
    ("KeyboardInterrupt", "raised KeyboardInterrupt"),
    ("GeneratorExit('gone')", "raised GeneratorExit: gone"),
    ("type('Stop', (BaseException,), {})('halt')", "raised Stop: halt"),
])
def test_target_file_raising_base_exception_at_import_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raised: str, shown: str
) -> None:
    # guards: KeyboardInterrupt raised by the target's code exited 130 as if the user pressed
    # Ctrl-C; other BaseException subclasses escaped as a traceback
    path = write(tmp_path, "hostile.py", f"raise {raised}\n")
    assert main(["summarize", f"{path}:model"]) == 2
    err = one_line(capsys)
    assert f"importing {str(path)!r} {shown}" in err and "fix the error in that file" in err


@pytest.mark.parametrize(("body", "shown"), [
    ("sys.exit()", "called sys.exit()"),
    ("sys.exit(0)", "called sys.exit(0)"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
])
def test_factory_exiting_or_interrupting_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, shown: str
) -> None:
    # guards: a factory calling sys.exit() ended the CLI with its exit code and no message
    path = write(tmp_path, "fac.py", f"import sys\ndef model():\n    {body}\n")
    assert main(["check", f"{path}:model", "--input-size", "2,20"]) == 2
    assert f"calling model() from {str(path)!r} {shown}" in one_line(capsys)


def test_real_ctrl_c_during_import_still_exits_130(tmp_path: Path) -> None:
    # guards: telling the target's own KeyboardInterrupt apart must not turn a real Ctrl-C
    # (a SIGINT) of the user into an error line with exit 2
    path = write(tmp_path, "slow.py", "import os, signal, time\n"
                 "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n")
    proc = subprocess.run([sys.executable, "-m", "torchscope", "summarize", f"{path}:model"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "torchscope summarize: interrupted"


def test_sigint_handler_is_restored_after_the_target_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: watching for a real Ctrl-C while the target imports must not leave torchscope's
    # handler installed afterwards
    import signal

    before = signal.getsignal(signal.SIGINT)
    path = write(tmp_path, "net.py", MODEL)
    assert main(["summarize", f"{path}:model", "--format", "text"]) == 0
    assert signal.getsignal(signal.SIGINT) is before
    capsys.readouterr()


def test_module_getattr_raising_exits_2(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # guards: a module-level __getattr__ raising RuntimeError printed a traceback, exit 1
    path = write(tmp_path, "g.py", MODEL + "def __getattr__(n):\n    raise RuntimeError('x')\n")
    assert main(["summarize", f"{path}:nomodel"]) == 2
    err = one_line(capsys)
    assert f"looking up 'nomodel' in {str(path)!r} raised RuntimeError: x" in err
    assert "__getattr__" in err
    assert main(["summarize", f"{path}:model", "--format", "text"]) == 0  # real names still work
    capsys.readouterr()


def test_module_getattr_exiting_exits_2(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # guards: a module-level __getattr__ calling sys.exit(0) ended the CLI with exit 0
    path = write(tmp_path, "g.py", "import sys\ndef __getattr__(n):\n    sys.exit(0)\n")
    assert main(["summarize", f"{path}:model"]) == 2
    assert "called sys.exit(0)" in one_line(capsys)


def test_forward_calling_sys_exit_exits_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # guards: a forward calling sys.exit(0) made `check` exit 0 having checked nothing
    path = write(tmp_path, "fwd.py", "import sys, torch\nclass Net(torch.nn.Module):\n"
                 "    def forward(self, x):\n        sys.exit(0)\nmodel = Net()\n")
    assert main(["check", f"{path}:model", "--input-size", "2,20", "--mode", "real"]) == 2
    assert "called sys.exit(0)" in one_line(capsys)


# ---------------------------------------------------------------------------------------------
# graph -o


def test_graph_output_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # guards: `graph -o out.svg` with out.svg a folder raised a raw IsADirectoryError (exit 1)
    folder = tmp_path / "out.svg"
    folder.mkdir()
    assert main(["graph", "-o", str(folder), "--input-size", "2,20"]) == 2
    err = one_line(capsys)
    assert str(folder) in err and "is a folder" in err and "out.svg" in err


def test_graph_unwritable_path_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # guards: `graph -o /proc/x.dot` raised a raw FileNotFoundError
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc")
    assert main(["graph", "-o", "/proc/x.dot"]) == 2
    assert "cannot write '/proc/x.dot'" in one_line(capsys)


def test_graph_missing_folder_is_checked_before_the_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: a bad -o was found only after importing and tracing the model
    path = write(tmp_path, "boom.py", "raise RuntimeError('imported')\n")
    assert main(["graph", f"{path}:model", "-o", str(tmp_path / "no" / "g.dot")]) == 2
    err = one_line(capsys)
    assert "does not exist" in err and "imported" not in err


def test_render_graph_to_a_folder_raises_torchscope_error(tmp_path: Path) -> None:
    # guards: the Python call render_graph(report, 'dir.svg') raised a raw OSError
    folder = tmp_path / "dir.svg"
    folder.mkdir()
    report = torchscope.summarize(examples.MLP())
    with pytest.raises(TorchscopeError, match=r"dir\.svg.*is a folder"):
        torchscope.render_graph(report, folder)
    if os.path.isdir("/proc"):
        with pytest.raises(TorchscopeError, match=r"cannot write '/proc/x\.dot'"):
            torchscope.render_graph(report, "/proc/x.dot")


def test_render_graph_failed_write_keeps_the_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # guards: a write failing part-way truncated the diagram that was there before
    target = tmp_path / "g.dot"
    target.write_text("old diagram")
    report = torchscope.summarize(examples.MLP())

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(TorchscopeError, match="No space left on device"):
        torchscope.render_graph(report, target)
    assert target.read_text() == "old diagram"
    assert [p.name for p in tmp_path.iterdir()] == ["g.dot"]  # no temporary file left


def test_render_graph_writes_through_a_symlink(tmp_path: Path) -> None:
    # guards: replacing the file through a temporary file must write where a symlink points,
    # not replace the link
    real = tmp_path / "real.dot"
    real.write_text("old")
    link = tmp_path / "link.dot"
    link.symlink_to(real)
    torchscope.render_graph(torchscope.summarize(examples.MLP()), link)
    assert link.is_symlink() and real.read_text().startswith("digraph MLP")


# ---------------------------------------------------------------------------------------------
# syncs -o

TRAIN = ("import pathlib, torch\npathlib.Path('ran.txt').write_text('ran')\n"
         "torch.ones(1).item()\n")


@pytest.mark.parametrize("output", ["/nonexistent/r.txt", "somedir"])
def test_syncs_bad_output_is_refused_before_the_script_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    output: str,
) -> None:
    # guards: a bad -o raised a traceback after the script had run, losing the report
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somedir").mkdir()
    write(tmp_path, "train.py", TRAIN)
    assert main(["syncs", "-o", output, "train.py"]) == 2
    err = one_line(capsys)
    assert repr(output) in err
    assert not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize("output", ["train.py", "./train.py", "link.py", "hard.py"])
def test_syncs_output_onto_the_script_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    output: str,
) -> None:
    # guards: `syncs -o train.py train.py` overwrote the user's script with the report
    monkeypatch.chdir(tmp_path)
    script = write(tmp_path, "train.py", TRAIN)
    (tmp_path / "link.py").symlink_to(script)
    os.link(script, tmp_path / "hard.py")
    assert main(["syncs", "-o", output, "train.py"]) == 2
    err = one_line(capsys)
    assert "the file being run" in err and "choose another file" in err
    assert script.read_text() == TRAIN
    assert not (tmp_path / "ran.txt").exists()


def test_syncs_output_onto_the_module_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: `syncs -o pkg_train.py -m pkg_train` overwrote the module's source
    monkeypatch.chdir(tmp_path)
    script = write(tmp_path, "hostile_cli_train.py", TRAIN)
    assert main(["syncs", "-o", "hostile_cli_train.py", "-m", "hostile_cli_train"]) == 2
    assert "the file being run" in one_line(capsys)
    assert script.read_text() == TRAIN


def test_syncs_failed_write_after_the_run_keeps_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: a write failing after the script ran lost the report (and the old file)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", TRAIN)
    (tmp_path / "r.txt").write_text("old report")
    real_replace = os.replace

    def fail(src: str, dst: str) -> None:
        if str(dst).endswith("r.txt"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail)
    assert main(["syncs", "-o", "r.txt", "train.py"]) == 2
    out, err = capsys.readouterr()
    assert "1 host-device synchronization" in out
    assert err.count("\n") == 1 and "cannot write the report to" in err
    assert "No space left on device" in err
    assert (tmp_path / "r.txt").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt", "ran.txt", "train.py"]


def test_syncs_output_to_a_device_is_written_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: writing through a temporary file must not replace /dev/null itself
    if not os.path.exists("/dev/null"):
        pytest.skip("needs /dev/null")
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", TRAIN)
    assert main(["syncs", "-o", "/dev/null", "train.py"]) == 0
    assert Path("/dev/null").is_char_device()
    assert capsys.readouterr().err == ""


def test_syncs_output_keeps_the_file_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # guards: replacing the report through a temporary file must keep the old file's mode
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", TRAIN)
    report = tmp_path / "r.txt"
    report.write_text("old")
    report.chmod(0o640)
    assert main(["syncs", "-o", "r.txt", "train.py"]) == 0
    assert report.read_text().startswith("1 host-device synchronization")
    assert report.stat().st_mode & 0o777 == 0o640
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# empty values


@pytest.mark.parametrize(("argv", "named"), [
    (["summarize", "--input-size", "2,20", "--device", ""], "--device is empty"),
    (["syncs", "-o", "", "train.py"], "-o/--output is empty"),
    (["checkpoint", "x.pt", "--model", ""], "--model is empty"),
    (["diff", "", ""], "A is empty"),
    (["summarize", " "], "TARGET is empty"),
    (["graph", "-o", ""], "-o/--output is empty"),
    (["summarize", "--kwargs", ""], "--kwargs is empty"),
])
def test_empty_values_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], named: str,
) -> None:
    # guards: empty values were silently taken as the default (`diff "" ""` compared two
    # default models, `--device ""` built inputs on the default device)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", TRAIN)
    assert main(argv) == 2
    err = one_line(capsys)
    assert named in err and "give " in err
    assert not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize("argv", [["summarize", "--input", ""],
                                  ["summarize", "--input-size", "2,20", "--dtype", " "]])
def test_empty_repeatable_values_exit_2(capsys: pytest.CaptureFixture[str],
                                        argv: list[str]) -> None:
    # guards: an empty --input or --dtype slipping through as "no value"
    assert main(argv) == 2
    err = one_line(capsys)
    assert "''" in err or "' '" in err


# ---------------------------------------------------------------------------------------------
# --mode real with --device meta


def _api_message() -> str:
    with pytest.raises(InputSpecError) as caught:
        torchscope.summarize(examples.MLP(), input_size=[(2, 20)], device="meta", mode="real")
    return str(caught.value)


@pytest.mark.parametrize("inputs", [["--input", "x=2,20"], ["--input-size", "2,20"]])
def test_real_mode_on_meta_gives_the_api_message(
    capsys: pytest.CaptureFixture[str], inputs: list[str]
) -> None:
    # guards: keyword inputs with --device meta --mode real failed in the forward with a
    # device mismatch instead of the Python API's message
    assert main(["summarize", *inputs, "--device", "meta", "--mode", "real"]) == 2
    err = one_line(capsys)
    assert err == f"torchscope summarize: error: {_api_message()}\n"
