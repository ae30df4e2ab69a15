"""Notebooks: one display per cell (no table printed twice), diagrams inline as SVG."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = {
    "report": "import torchscope\nfrom torchscope.examples import MLP, LongNames\n"
              "report = torchscope.summarize(MLP(), input_size=[(2, 20)])\nreport",
    "print": "print(report)",
    "str": "text = str(report)\nlen(text) > 0",
    "hostile": "import torch\nm = torch.nn.Sequential()\nm.add_module('[/]', torch.nn.ReLU())\n"
               "torchscope.summarize(m)",
    "graph": "torchscope.to_graphviz(report)",
    "summary": "torchscope.summary(MLP(), input_size=(2, 20), depth=1);",
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS.values()]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    home = tmp_path_factory.mktemp("jupyter")
    env.update(JUPYTER_PLATFORM_DIRS="1", IPYTHONDIR=str(home))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(Path(__file__).parent.parent)}},
    )
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute(env=env)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return {name: cell.outputs for name, cell in zip(CELLS, nb.cells)}


def test_a_report_displays_once(outputs: dict[str, list[dict[str, Any]]]) -> None:
    cell = outputs["report"]
    # regression: the table showed twice (a display_data from rich, then the execute_result)
    assert [o["output_type"] for o in cell] == ["execute_result"]
    data = cell[0]["data"]
    assert set(data) >= {"text/plain", "text/html"}
    assert "hidden" in data["text/plain"] and "7,946" in data["text/plain"]
    assert "<" in data["text/html"] and "hidden" in data["text/html"]


def test_print_and_str_have_no_side_display(outputs: dict[str, list[dict[str, Any]]]) -> None:
    printed = outputs["print"]
    assert [o["output_type"] for o in printed] == ["stream"]
    assert "Total params: 7,946" in printed[0]["text"]
    assert [o["output_type"] for o in outputs["str"]] == ["execute_result"]
    assert outputs["str"][0]["data"]["text/plain"] == "True"


def test_a_name_that_is_markup_displays(outputs: dict[str, list[dict[str, Any]]]) -> None:
    cell = outputs["hostile"]
    assert [o["output_type"] for o in cell] == ["execute_result"], cell
    assert "[/]" in cell[0]["data"]["text/plain"]


def test_a_diagram_is_inline_svg(outputs: dict[str, list[dict[str, Any]]]) -> None:
    cell = outputs["graph"]
    assert [o["output_type"] for o in cell] == ["execute_result"], cell
    assert "image/svg+xml" in cell[0]["data"]
    assert "<svg" in cell[0]["data"]["image/svg+xml"]


def test_summary_prints_once(outputs: dict[str, list[dict[str, Any]]]) -> None:
    cell = outputs["summary"]
    assert [o["output_type"] for o in cell] == ["stream"], cell
    assert cell[0]["text"].count("Total params: 7,946") == 1


def test_kernel_runs_this_python() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in (sys.executable, "python", "python3") or Path(
        spec.argv[0]).resolve() == Path(sys.executable).resolve()
