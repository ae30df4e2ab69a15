"""Promise 4 in the output: names that are markup or syntax, in every record and every output
format: escaped in text and Markdown, shown as written by rich (never read as markup), escaped
in JSON; and one clear error line for every bad argument of the rendering functions."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

import torchscope
from torchscope.errors import ArgumentError, TorchscopeError
from torchscope.rendering import Format, render_json, render_markdown, render_text

# a name with an escape sequence and a bidirectional override, two names rich would read as
# markup; an unused module; classes whose names hold the same (and a newline)
EVIL = "e\x1b[31mvil\u202ex"
EVIL_SHOWN = "e\\x1b[31mvil\\u202ex"
EVIL_CLASS = "Evil\x1b[2J\u202e"
EVIL_CLASS_SHOWN = "Evil\\x1b[2J\\u202e"
ROOT_CLASS = "Root\x1b[2J\u202e\nsplit"
ROOT_CLASS_SHOWN = "Root\\x1b[2J\\u202e\\nsplit"
MARKUP = ("[/]", "[bold red]x")
IDLE = "idle\u202e[/]"
USED = (EVIL, *MARKUP)


def _hostile_model() -> nn.Module:
    evil = type(EVIL_CLASS, (nn.Linear,), {})

    def init(self: nn.Module) -> None:
        nn.Module.__init__(self)
        for name in (*USED, IDLE):
            self.add_module(name, evil(2, 2))

    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for name in USED:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    root = type(ROOT_CLASS, (nn.Module,), {"__init__": init, "forward": forward})
    model: nn.Module = root()
    return model


def _overflowing() -> tuple[nn.Module, torch.Tensor]:
    """The hostile model and an input whose first (hostile) module overflows to inf."""
    model = _hostile_model()
    with torch.no_grad():
        getattr(model, EVIL).weight.fill_(10.0)
    return model, torch.full((1, 2), 3e38)


@cache
def _records() -> dict[str, Any]:
    model = _hostile_model()
    x = torch.ones(1, 2)
    nonfinite = torchscope.find_nonfinite(*_overflowing())
    assert nonfinite.found and nonfinite.module == EVIL
    optimizer = torch.optim.SGD(getattr(model, EVIL).parameters(), lr=0.1)
    return {
        "CostReport": torchscope.estimate_cost(model, input_size=[(1, 2)]),
        "ArchitectureDiff": torchscope.diff(nn.Sequential(nn.Linear(2, 2)), model),
        "UnusedReport": torchscope.find_unused_parameters(model, input_size=[(1, 2)]),
        # the file of the op that overflowed: a file name is shown escaped too
        "NonfiniteReport": dataclasses.replace(nonfinite,
                                               location=f"{EVIL}[/].py:3"),
        "OptimizerReport": torchscope.check_optimizer(model, optimizer),
        "GradientReport": torchscope.gradient_flow(model, x),
        "CheckResult": torchscope.check(model, x, backward=True),
        "Report": torchscope.summarize(model, input_size=[(1, 2)], cost=True),
    }


RECORDS = ("CostReport", "ArchitectureDiff", "UnusedReport", "NonfiniteReport",
           "OptimizerReport", "GradientReport", "CheckResult", "Report")

# the escaped names each record's text shows (each record names what it is about)
SHOWN: dict[str, tuple[str, ...]] = {
    "CostReport": (EVIL_SHOWN, *MARKUP),
    "ArchitectureDiff": (EVIL_SHOWN, EVIL_CLASS_SHOWN, ROOT_CLASS_SHOWN, *MARKUP),
    "UnusedReport": ("idle\\u202e[/]", EVIL_CLASS_SHOWN, ROOT_CLASS_SHOWN),
    "NonfiniteReport": (EVIL_SHOWN, EVIL_CLASS_SHOWN, EVIL_SHOWN + "[/].py:3"),
    "OptimizerReport": (EVIL_SHOWN, ROOT_CLASS_SHOWN, *MARKUP),
    "GradientReport": (EVIL_SHOWN, *MARKUP),
    "CheckResult": (EVIL_SHOWN, ROOT_CLASS_SHOWN, *MARKUP),
    "Report": (EVIL_SHOWN, EVIL_CLASS_SHOWN, ROOT_CLASS_SHOWN, *MARKUP),
}

HIDDEN = ("\x1b", "\u202e")


def _rich(obj: object) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=120).print(obj)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["text", "markdown"])
@pytest.mark.parametrize("kind", RECORDS)
def test_hostile_names_are_escaped_in_text_and_markdown(kind: str, fmt: Format) -> None:
    # guards: ESC and U+202E from module, class, parameter and file names written raw into
    # the text and Markdown of every record (recolouring, reordering a terminal's line), and
    # a newline in a class name splitting a line
    out = torchscope.render(_records()[kind], fmt)
    assert not any(ch in out for ch in HIDDEN)
    assert "Root\x1b" not in out and "\\x1b[2J\\u202e\nsplit" not in out
    for shown in SHOWN[kind]:
        expected = shown.replace("|", "\\|") if fmt == "markdown" else shown
        assert expected in out, (expected, out)


@pytest.mark.parametrize("kind", RECORDS)
def test_hostile_names_in_str_of_a_record_are_escaped(kind: str) -> None:
    # guards: str(record) (the text a print shows) holding raw escape sequences
    out = str(_records()[kind])
    assert not any(ch in out for ch in HIDDEN)
    assert EVIL_SHOWN in out or "idle\\u202e[/]" in out


@pytest.mark.parametrize("kind", RECORDS)
def test_rich_console_prints_hostile_names_as_written(kind: str) -> None:
    # guards: Console().print(record) raising MarkupError on a "[/]" name, and "[bold red]x"
    # read as a style instead of shown (the record's __rich__ hook gave rich markup strings)
    record = _records()[kind]
    out = _rich(record)
    assert not any(ch in out for ch in HIDDEN[1:])  # ESC starts rich's own colours only
    assert "\x1b[2J" not in out and "\x1b[31mvil" not in out
    if kind not in ("UnusedReport", "NonfiniteReport"):  # these name one module only
        assert "[bold red]x" in out
    assert "[/]" in out
    # render(record, "rich") printed directly: the same renderable, never markup
    assert "[/]" in _rich(torchscope.render(record, "rich"))


@pytest.mark.parametrize("kind", RECORDS)
def test_notebook_html_of_hostile_names(kind: str) -> None:
    # guards: the HTML a notebook shows (the Displayed base's _repr_html_ / mimebundle)
    # holding raw control characters or dropping a "[/]" name read as markup
    record = _records()[kind]
    html = record._repr_html_()
    assert "[/]" in html and not any(ch in html for ch in HIDDEN)


@pytest.mark.parametrize("kind", RECORDS)
def test_json_escapes_hidden_characters_and_loads_back(kind: str) -> None:
    # guards: JSON written with ensure_ascii=False kept U+202E raw (a reader's terminal or
    # editor reorders the line); it must stay valid and load back to the same names
    record = _records()[kind]
    out = torchscope.render(record, "json")
    assert not any(ch in out for ch in HIDDEN)
    assert "\\u202e" in out
    data = json.loads(out)
    text = json.dumps(data, ensure_ascii=False)
    assert "\u202e" in text
    assert data["schema_version"] == 1


def test_json_round_trips_the_exact_names() -> None:
    # guards: escaping that changes a name (JSON must decode to the very same string)
    report = _records()["Report"]
    data = json.loads(render_json(report))
    assert [m["path"] for m in data["modules"]] == [m.path for m in report.modules]
    assert data["root_type"] == ROOT_CLASS
    assert json.loads(torchscope.render(_records()["CostReport"], "json"))["calls"][1][
        "path"] == EVIL


def test_json_keeps_readable_non_ascii() -> None:
    # guards: escaping every non-ASCII character (names in other scripts unreadable)
    model = nn.Sequential()
    model.add_module("gewicht_ü", nn.Linear(2, 2))
    out = torchscope.render(torchscope.summarize(model), "json")
    assert "gewicht_ü" in out


def test_text_of_hostile_report_keeps_its_lines() -> None:
    # guards: a newline in a class name adding a line to the table
    report = _records()["Report"]
    plain = torchscope.summarize(nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)]),
                                 input_size=[(1, 2)], cost=True)
    assert len(render_text(report).splitlines()) == len(render_text(plain).splitlines())


def test_diff_markdown_headline_breaks_only_between_its_lines() -> None:
    # guards: the escaped "\n" of a class name turned into a Markdown line break
    out = torchscope.render(_records()["ArchitectureDiff"], "markdown")
    head = out.split("\n\n")[0]
    assert head.count("  \n") == 1 and ROOT_CLASS_SHOWN in head


@pytest.mark.parametrize("fmt", ["text", "markdown", "rich"])
def test_nonfinite_table_title_is_escaped(fmt: Format) -> None:
    # guards: the op's module path, class and file in the title of the non-finite table
    record = _records()["NonfiniteReport"]
    out = _rich(torchscope.render(record, fmt)) if fmt == "rich" else torchscope.render(
        record, fmt)
    assert f"in {EVIL_SHOWN} ({EVIL_CLASS_SHOWN}) at {EVIL_SHOWN}[/].py:3" in " ".join(
        out.split())  # rich wraps the title to the table's width


# ---------------------------------------------------------------------------------------------
# arguments

_REPORT = torchscope.summarize(torchscope.examples.MLP())


def _closed() -> io.StringIO:
    stream = io.StringIO()
    stream.close()
    return stream


BAD_CALLS: dict[str, tuple[Callable[[], object], str]] = {
    "render_text(None)": (lambda: render_text(None),  # type: ignore[arg-type]
                          r"^render_text: report = None \(NoneType\) is not a Report; pass "
                          r"what torchscope.summarize returns$"),
    "render_markdown(42)": (lambda: render_markdown(42),  # type: ignore[arg-type]
                            r"^render_markdown: report = 42 \(int\) is not a Report"),
    "render_json(cost)": (lambda: render_json(_records()["CostReport"]),
                          r"^render_json: report = .* \(CostReport\) is not a Report"),
    "print_report(None)": (lambda: torchscope.print_report(None),  # type: ignore[arg-type]
                           r"^print_report: report = None \(NoneType\) is not a Report"),
    "print_report(file=3)": (lambda: torchscope.print_report(_REPORT, file=3),
                             r"^print_report: file = 3 \(int\) is not a writable stream; pass "
                             r"an open text file, io.StringIO\(\) or None for stdout$"),
    "print_report(closed file)": (
        lambda: torchscope.print_report(_REPORT, file=_closed()),
        r"^print_report: file = .* \(StringIO\) is closed; pass an open text file"),
    "print_report(depth='x')": (
        lambda: torchscope.print_report(_REPORT, depth="x"),  # type: ignore[arg-type]
        r"^print_report: depth = 'x' \(str\) is not a depth; pass an int >= 0"),
    "render(depth='x')": (lambda: torchscope.render(_REPORT, "text", depth="x"),
                          r"^render: depth = 'x' \(str\) is not a depth; pass an int >= 0 "
                          r"\(0 is the root\) or None for every level$"),
    "render(depth=-1)": (lambda: torchscope.render(_REPORT, "text", depth=-1),
                         r"^render: depth = -1 \(int\) is not a depth"),
    "render(columns=3)": (lambda: torchscope.render(_REPORT, "text", columns=3),
                          r"^render: columns = 3 \(int\) is not a list of column names; pass "
                          r"e.g. \['num_params', 'output_size'\] or 'num_params,output_size'$"),
    "render(columns=[1])": (lambda: torchscope.render(_REPORT, "markdown", columns=[1]),
                            r"^render: columns = \[1\] \(list\) is not a list of column names"),
    "render(params='yes')": (lambda: torchscope.render(_REPORT, "rich", params="yes"),
                             r"^render: params = 'yes' \(str\) is not True or False"),
    "render(width=0)": (lambda: torchscope.render(_REPORT, "text", width=0),
                        r"^render: width = 0 \(int\) is not a number of columns"),
    "render(unknown keyword)": (
        lambda: torchscope.render(_REPORT, "text", colour=True),
        r"^render: a Report takes no option 'colour'; its options are depth, params, "
        r"columns, width$"),
    "render(cost, params=True)": (
        lambda: torchscope.render(_records()["CostReport"], "text", params=True),
        r"^render: a CostReport takes no option 'params'; its options are depth$"),
    "render(diff, depth=1)": (
        lambda: torchscope.render(_records()["ArchitectureDiff"], "json", depth=1),
        r"^render: a ArchitectureDiff takes no option 'depth'; its options are none$"),
    "render(None)": (lambda: torchscope.render(None),
                     r"^render\(\) takes a torchscope record, not NoneType"),
    "show(file=3)": (lambda: torchscope.show(_REPORT, "text", file=3),
                     r"^show: file = 3 \(int\) is not a writable stream"),
    "show(closed file)": (lambda: torchscope.show(_REPORT, "rich", file=_closed()),
                          r"^show: file = .* \(StringIO\) is closed"),
    "show(None)": (lambda: torchscope.show(None, "text"),
                   r"^show\(\) takes a torchscope record, not NoneType"),
    "show(depth=[1])": (lambda: torchscope.show(_REPORT, "text", depth=[1]),
                        r"^show: depth = \[1\] \(list\) is not a depth"),
}


@pytest.mark.parametrize("call", BAD_CALLS)
def test_rendering_functions_check_their_arguments(call: str) -> None:
    # guards: AttributeError/TypeError from inside the renderers (None.modules, 3 .write,
    # 'x' <= int, 1 .lower) instead of one line naming the argument and what it takes
    fn, message = BAD_CALLS[call]
    with pytest.raises(ArgumentError, match=message) as info:
        fn()
    assert isinstance(info.value, TorchscopeError) and isinstance(info.value, TypeError)
    assert "\n" not in str(info.value)


def test_summary_with_a_bad_file_names_the_argument() -> None:
    # guards: torchscope.summary(..., file=3) failing inside the printer with AttributeError
    with pytest.raises(ArgumentError, match=r"^print_report: file = 3 \(int\)"):
        torchscope.summary(torchscope.examples.MLP(), file=3)


@pytest.mark.parametrize("options", [{"depth": 1}, {"columns": "num_params"},
                                     {"columns": ["num_params"]}, {"width": 80},
                                     {"width": "terminal"}, {"params": True}])
def test_render_accepts_the_options_a_report_takes(options: dict[str, Any]) -> None:
    # guards: the option checks refusing what the report renderers take, in every format
    formats: tuple[Format, ...] = ("text", "markdown", "json", "rich")
    for fmt in formats:
        assert torchscope.render(_REPORT, fmt, **options) is not None


def test_show_writes_to_an_open_file(tmp_path: Path) -> None:
    # guards: the file check refusing real files
    path = tmp_path / "out.txt"
    with path.open("w") as stream:
        torchscope.show(_records()["CostReport"], "text", file=stream)
    assert EVIL_SHOWN in path.read_text()
