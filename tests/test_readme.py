"""The README runs as pasted: every Python block, and the shell examples that are safe to run
(their printed output must match what the README shows)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
# fenced blocks without a language: "$ command" lines followed by the output they print
SESSIONS = re.findall(r"```\n(\$ .*?)```", README, flags=re.S)

def indented_commands(text: str) -> list[str]:
    """Indented (four spaces) shell commands, lines ending in a backslash joined."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("    ") and not line.startswith("     "):
            command = line.strip()
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            out.append(command)
        i += 1
    return out


# indented commands of torchscope that write nothing and need no extra program
SAFE = [c for c in indented_commands(README)
        if c.startswith("python -m torchscope ") and " -o " not in c]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out["PYTHONWARNINGS"] = "error::DeprecationWarning:torchscope"
    return out


def test_the_readme_has_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 4 and len(SESSIONS) >= 2 and len(SAFE) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_pasted(index: int, tmp_path: Path) -> None:
    # regression: the API block raised NameError: name 'model' is not defined
    proc = subprocess.run([sys.executable, "-c", PYTHON_BLOCKS[index]], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"block {index}:\n{PYTHON_BLOCKS[index]}\n{proc.stderr}"


def sessions() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for block in SESSIONS:
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, printed = part.partition("\n")
            out.append((command, printed.rstrip("\n")))
    return out


@pytest.mark.parametrize(("command", "printed"), sessions(), ids=lambda v: v[:40])
def test_shell_session_prints_what_the_readme_shows(command: str, printed: str) -> None:
    proc = subprocess.run(shlex.split(command), cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    shown = "\n".join(line.rstrip() for line in proc.stdout.rstrip("\n").splitlines())
    assert shown == "\n".join(line.rstrip() for line in printed.splitlines())


@pytest.mark.parametrize("command", SAFE)
def test_shell_command_runs(command: str) -> None:
    # regression: the README ran `syncs train.py`, a script that did not exist
    proc = subprocess.run(shlex.split(command), cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a check that found something
    assert "Traceback" not in proc.stderr and proc.stdout


def test_setup_says_what_the_default_wheel_is() -> None:
    # regression: the set-up claimed the pinned install avoids a CUDA build; on Linux the
    # default torch wheel is the CUDA build, the CPU build comes from PyTorch's CPU index
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert "CUDA build" in README and "numpy" in README and "tomli" in README
