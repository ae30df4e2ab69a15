"""Renderers: golden files of every format for the examples, widths, humanized numbers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from models import TRANSFORMERS

import torchscope
from torchscope import examples
from torchscope.rendering._report import (
    WIDTH,
    humanize_bytes,
    humanize_count,
    render_markdown,
    render_rich_text,
    render_text,
)

SNAPSHOT_MODELS = ["MLP", "NestMLP", "SharedMLP", "LazyMLP", "FixedHiddenMLP", "MyLinear"]


@pytest.mark.parametrize("name", SNAPSHOT_MODELS)
@pytest.mark.parametrize("fmt", ["rich", "text", "markdown"])
def test_static_table_snapshots(name: str, fmt: str,
                                snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.summarize(getattr(examples, name)())
    render = {"rich": render_rich_text, "text": render_text, "markdown": render_markdown}[fmt]
    snapshot(f"summary_{name}.{fmt}.txt", render(report))


@pytest.mark.parametrize("name", ["MLP", "FixedHiddenMLP", "NestMLP"])
def test_traced_table_snapshots(name: str, snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.summarize(getattr(examples, name)(), input_size=[(2, 20)])
    snapshot(f"summary_{name}.traced.text.txt", render_text(report))


def test_params_view_snapshot(snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.summarize(examples.SharedMLP())
    snapshot("params_SharedMLP.text.txt", render_text(report, params=True))


@pytest.mark.parametrize("name", ["gpt2", "t5", "llama"])
def test_tables_fit_100_columns(name: str) -> None:
    model = TRANSFORMERS[name]()
    report = torchscope.summarize(model)
    for text in (render_text(report), render_rich_text(report),
                 render_rich_text(report, params=True)):
        widest = max(len(line.rstrip()) for line in text.splitlines())
        assert widest <= WIDTH, f"{widest} columns"


def test_depth_folds_deeper_blocks_into_totals() -> None:
    report = torchscope.summarize(examples.NestMLP())
    text = render_text(report, depth=1)
    assert "net.0" not in text and "├─ 0" not in text
    row = next(line for line in text.splitlines() if line.startswith("├─ net"))
    assert "3.4 K" in row  # net's 3,424 parameters, though its children are hidden


def test_lazy_model_shows_unknown_not_zero() -> None:
    text = render_text(torchscope.summarize(examples.LazyMLP()))
    assert "≥ 0 + 2 lazy layers" in text
    assert "Total params: 0 " not in text
    # regression: trainable counts and sizes of a lazy model were printed as 0 (unknown)
    assert "Trainable: 0 " not in text and "Params size: 0 B" not in text
    assert "Trainable: ≥ 0" in text and "Params size: ≥ 0 B" in text
    assert "--input-size" in text


def test_printing_a_report_shows_the_table() -> None:
    report = torchscope.summarize(examples.MLP())
    assert "hidden" in str(report) and "7,946" in str(report)
    assert repr(report) == "<Report MLP: 4 modules, 7,946 params>"
    assert "<table" in report._repr_html_() or "<pre" in report._repr_html_()


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (999, "999"), (1000, "1.0 K"), (7946, "7.9 K"), (124_439_808, "124.4 M"),
     (7_000_000_000, "7.0 B"), (None, "?")],
)
def test_humanize_count(n: int | None, expected: str) -> None:
    assert humanize_count(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (31784, "31.0 KiB"),
     (3 * 1024**3, "3.0 GiB"), (None, "?")],
)
def test_humanize_bytes(n: int | None, expected: str) -> None:
    assert humanize_bytes(n) == expected


def test_print_report_formats(capsys: pytest.CaptureFixture[str]) -> None:
    report = torchscope.summarize(examples.MLP(), torch.zeros(2, 20))
    for fmt in ("text", "markdown", "json", "rich"):
        torchscope.print_report(report, fmt=fmt)
        assert "hidden" in capsys.readouterr().out
    with pytest.raises(torchscope.TorchscopeError, match="unknown format 'html'"):
        torchscope.print_report(report, fmt="html")
