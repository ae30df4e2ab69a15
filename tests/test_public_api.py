"""The public surface: one lazy export table mirrored for type checkers, a light import, the
layers of docs/architecture.md, and a repository that speaks of the product only."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torchscope

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "torchscope" / "__init__.py"


def _type_checking_imports() -> dict[str, str]:
    """name -> module of every import in ``if TYPE_CHECKING:`` of torchscope/__init__.py."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                for alias in imp.names:
                    # "from x import name as name": the explicit re-export form mypy honours
                    assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
                    module = imp.module.removeprefix("torchscope").lstrip(".")
                    out[alias.name] = module or alias.name
    return out


def test_type_checking_block_mirrors_the_lazy_table() -> None:
    # guards: a name added to _EXPORTS but not to the TYPE_CHECKING block is Any to mypy
    mirrored = _type_checking_imports()
    mirrored.pop("examples")
    assert mirrored == torchscope._EXPORTS


@pytest.mark.parametrize("name", sorted(torchscope._EXPORTS))
def test_every_public_name_resolves_to_where_the_table_says(name: str) -> None:
    value = getattr(torchscope, name)
    module = importlib.import_module(f"torchscope.{torchscope._EXPORTS[name]}")
    assert getattr(module, name) is value
    assert name in torchscope.__all__


@pytest.mark.parametrize("name", sorted(n for n in torchscope._EXPORTS if n[0].islower()))
def test_public_functions_have_a_docstring_with_an_example(name: str) -> None:
    value = getattr(torchscope, name)
    doc = inspect.getdoc(value) or ""
    assert doc.splitlines()[0].strip(), f"{name} has no one-line summary"
    assert ">>>" in doc, f"{name}'s docstring has no example"


def test_options_are_keyword_only() -> None:
    params = inspect.signature(torchscope.summarize).parameters
    positional = [p.name for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional == ["model", "example_inputs"]


def test_import_torchscope_stays_light() -> None:
    # guards: a module-level import in __init__.py would load torch (seconds) for `--help`
    code = ("import sys, torchscope; "
            "heavy = [m for m in ('torch', 'rich', 'tabulate', 'graphviz', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_layers_are_kept() -> None:
    # guards: an upward import (an analysis rendering, a renderer reading a model) breaks
    # the layers that docs/architecture.md describes
    proc = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "broken" not in proc.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_repository_speaks_of_the_product_only() -> None:
    # guards: tracker numbers and pointers outside the repository in code, tests and docs
    # the words are put together here so that this line is not itself a match
    words = ["iss" + "ue [0-9]+", r"\(iss" + "ue", "DES" + r"IGN\.md", r"\.\./sha" + "red"]
    pattern = re.compile("|".join(words), re.IGNORECASE)
    offenders = []
    for folder in ("torchscope", "tests", "benchmarks", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".txt", ".toml", ".sh"} and path.is_file():
                for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if pattern.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    offenders += [f"README.md: {m.group(0)}" for m in pattern.finditer(readme)]
    assert offenders == []
