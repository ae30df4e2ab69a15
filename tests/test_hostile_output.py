"""Promise 4 in the output: names that hold HTML entities or Markdown escapes, shown as written in
SVG and Markdown; argument checks of summary and inferred_numel; every command line error one
line on stderr."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
import torch
from torch import nn

import torchscope
from torchscope.cli import main
from torchscope.errors import ArgumentError

# names torch accepts that a viewer would decode: a numeric entity of U+202E (a bidirectional
# override), named entities of & and <, a Markdown backslash escape
ENTITY = "evil&#8238;gnp_exe"
NAMED = "a&amp;&lt;script&gt;b"
SLASHED = "x\\*y*z"
NAMES = (ENTITY, NAMED, SLASHED)


def _report() -> torchscope.Report:
    model = nn.Sequential()
    for name in NAMES:
        model.add_module(name, nn.Linear(4, 4))
    return torchscope.summarize(model, torch.zeros(2, 4))


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []

    def handle_data(self, data: str) -> None:
        self.cells.append(data.strip())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_svg_shows_an_entity_in_a_module_name_as_written() -> None:
    # guards: "&#8238;" in a name passed to Graphviz, which decoded it, so the SVG held a real
    # U+202E (in the label and in the <title> of the node id)
    svg = subprocess.run(["dot", "-Tsvg"], input=torchscope.to_dot(_report()),
                         capture_output=True, text=True, check=True).stdout
    texts: list[str] = []
    for element in ET.fromstring(svg).iter():
        texts.append(element.text or "")
        texts.extend(element.attrib.values())
    assert not any("\u202e" in t for t in texts)
    shown = [t for t in texts if ": Linear" in t]
    for name in NAMES:
        assert f"{name}: Linear" in shown


def test_markdown_escapes_entities_and_backslashes_in_names() -> None:
    # guards: "&#8238;", "&amp;" and "&lt;script&gt;" in a name emitted raw, so a Markdown
    # viewer showed U+202E, "&" and "<script>" instead of the name
    out = torchscope.render(_report(), "markdown")
    assert "evil&amp;#8238;gnp_exe" in out and "a&amp;amp;&amp;lt;script&amp;gt;b" in out
    assert "&#8238;" not in out.replace("&amp;#8238;", "")


def test_markdown_viewer_shows_names_as_written() -> None:
    # guards: the same, checked through a CommonMark renderer with tables: every name comes
    # back exactly, and no U+202E appears
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(
        torchscope.render(_report(), "markdown"))
    parser = _Text()
    parser.feed(html)
    assert "\u202e" not in "".join(parser.cells)
    for name in NAMES:
        assert name in parser.cells


_MLP = torchscope.examples.MLP


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(20, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out: torch.Tensor = self.linear(x)
        return out


SUMMARY_CALLS: dict[str, tuple[dict[str, Any], str]] = {
    "col_names=5": ({"col_names": 5}, r"^summary: col_names = 5 \(int\) is not a list of column "
                    r"names; pass e.g. \['output_size', 'num_params'\]"),
    "col_names=[object()]": ({"col_names": [object()]},
                             r"^summary: col_names = \[<object .*\] \(list\) is not a list of "
                             r"column names"),
    "dtypes=5": ({"dtypes": 5}, r"^summary: dtypes = 5 \(int\) is not a list of dtypes; pass "
                 r"one per input_size, e.g. \[torch.long\]"),
    "dtypes=[5]": ({"dtypes": [5]}, r"^summary: dtypes = \[5\] \(list\) is not a list of dtypes"),
    "dtypes=torch.long": ({"dtypes": torch.long},
                          r"^summary: dtypes = torch.int64 \(dtype\) is not a list of dtypes"),
    "depth='x'": ({"depth": "x"}, r"^summary: depth = 'x' \(str\) is not a depth"),
    "depth=-1": ({"depth": -1}, r"^summary: depth = -1 \(int\) is not a depth"),
    "device=5": ({"device": 5}, r"^summary: device = 5 \(int\) is not a device; pass e.g. "
                 r"'cpu'"),
    "col_width='x'": ({"col_width": "x"}, r"^summary: col_width = 'x' \(str\) is not a width"),
    "row_settings=5": ({"row_settings": 5},
                       r"^summary: row_settings = 5 \(int\) is not a list of names"),
    "cache_forward_pass='x'": ({"cache_forward_pass": "x"},
                               r"^summary: cache_forward_pass = 'x' \(str\) is not True or "
                               r"False"),
}


@pytest.mark.parametrize("call", SUMMARY_CALLS)
def test_summary_checks_its_options_before_any_work(call: str) -> None:
    # guards: summary(col_names=5) raising a bare TypeError, col_names=[object()] an
    # AttributeError inside the column code, dtypes=5 a TypeError, depth='x' passing silently
    # with verbose=0; each is one line naming the option, before the forward runs
    options, message = SUMMARY_CALLS[call]
    model = _Counting()
    with pytest.raises(ArgumentError, match=message) as info:
        torchscope.summary(model, (2, 20), verbose=0, **options)
    assert "\n" not in str(info.value) and model.calls == 0


def test_summary_still_takes_torchinfo_options() -> None:
    # guards: the option checks refusing what torchinfo users pass
    report = torchscope.summary(_MLP(), (2, 20), verbose=0, col_names="num_params",
                                dtypes=["float32"], depth=None, device=torch.device("cpu"),
                                col_width=30, row_settings=("var_names",),
                                cache_forward_pass=True)
    assert report.total_params == 7946


@pytest.mark.parametrize("params", [5, ["x"], "abc", [None]])
def test_inferred_numel_checks_params(params: object) -> None:
    # guards: inferred_numel(params=5) raising TypeError, params=["x"] AttributeError
    records = torchscope.infer_lazy_shapes(torchscope.examples.LazyMLP(), input_size=[(2, 20)])
    with pytest.raises(ArgumentError, match=r"^inferred_numel: params = .* is not a list of "
                       r"ParamRecord; pass report.params$"):
        torchscope.inferred_numel(records, params=params)  # type: ignore[arg-type]
    report = torchscope.summarize(torchscope.examples.LazyMLP())
    assert torchscope.inferred_numel(records, params=iter(report.params)) == 7946


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "usage:" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("argv", "shown"), [
    (["summarize", "--depth", "abc"],
     "torchscope summarize: error: argument --depth: invalid int value: 'abc'"),
    (["init", "--seed", "abc"], "torchscope init: error: argument --seed: invalid int value"),
    (["summarize", "--format", "xml"],
     "torchscope summarize: error: argument --format: invalid choice: 'xml'"),
    (["summarize", "--mode", "[x]"],
     "torchscope summarize: error: argument --mode: invalid choice: '[x]'"),
    (["summarize", "--colums", "type"],
     "torchscope summarize: error: unrecognized arguments: --colums (did you mean --columns?)"),
    (["summarize", "a", "b\nc"], "torchscope summarize: error: unrecognized arguments: b\\nc"),
    (["diff"], "torchscope diff: error: the following arguments are required: A, B"),
    (["summarise"], "torchscope: error: argument COMMAND: invalid choice: 'summarise'"),
])
def test_argument_errors_are_one_line(argv: list[str], shown: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # guards: argparse errors printing the whole usage block (6 to 11 lines) before the error,
    # and a stray argument holding a newline splitting the line
    err = _cli_error(argv, capsys)
    assert err.startswith(shown), err
    assert err.endswith("--help')\n")


@pytest.mark.parametrize(("argv", "shown"), [
    (["summarize", "--columns", "[bold red]x"],
     "torchscope summarize: error: --columns: '[bold red]x' is not a column; choose from"),
    (["summarize", "--columns", ",,,"],
     "torchscope summarize: error: --columns ',,,' names no column; give keys separated by "
     "commas, e.g. --columns num_params,output_size"),
    (["diff", "torchscope.examples:MLP", "torchscope.examples:MLP", "--kwargs-b", "null"],
     "torchscope diff: error: --kwargs-b must be a JSON object of keyword arguments, got "
     "NoneType"),
    (["diff", "torchscope.examples:MLP", "torchscope.examples:MLP", "--kwargs-a", "{x"],
     "torchscope diff: error: --kwargs-a '{x' is not valid JSON"),
    (["diff", "torchscope.examples:MLP", "torchscope.examples:MLP", "--kwargs-b", '{"x": 1}'],
     "torchscope diff: error: calling MLP(**{'x': 1}) from 'torchscope.examples' raised "
     "TypeError"),
])
def test_cli_messages_quote_what_was_typed(argv: list[str], shown: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # guards: "--columns '[bold red]x'" reported as '[boldred]x'; "--columns ,,," accepted
    # with only the Module column shown; --kwargs-b reported as --kwargs
    err = _cli_error(argv, capsys)
    assert err.startswith(shown), err
    if "--kwargs-b" in argv and "{" in argv[-1]:
        assert "with --kwargs-b '{...}'" in err


def test_columns_with_spaces_after_commas_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    # guards: the --columns check refusing "params, type" (a space after the comma)
    assert main(["summarize", "--format", "text", "--columns", "params, type"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["Module", "Total", "Type"]
