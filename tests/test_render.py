"""Renderers: golden files of every format for the examples, widths, humanized numbers."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from models import TRANSFORMERS
from torch import nn

import torchscope
from torchscope import examples
from torchscope.rendering._report import (
    humanize_bytes,
    humanize_count,
    render_markdown,
    render_rich_text,
    render_text,
    tree_rows,
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
@pytest.mark.parametrize("width", [80, 100, 120])
def test_tables_fit_the_terminal_without_cutting(name: str, width: int) -> None:
    report = torchscope.summarize(TRANSFORMERS[name]())
    for text in (render_text(report, width=width), render_rich_text(report, width=width),
                 render_rich_text(report, params=True, width=width)):
        widest = max(len(line.rstrip()) for line in text.splitlines())
        assert widest <= width, f"{widest} columns"
        assert "…" not in text.split("Total params")[0]  # findings may quote "…" themselves
    # every part of every qualified name is whole (names wrap at a dot, if at all)
    params = render_rich_text(report, params=True, width=width)
    words = set(re.split(r"[\s.,]+", params))
    assert all(part in words for p in report.params for part in p.name.split("."))


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


# -- never hide a digit, a shape or a name ---------------------------------------------------

LONG = [(2, 8, 4096)]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_long_names_golden_at_each_width(width: int, snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    text = render_rich_text(report, width=width)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "…" not in text
    snapshot(f"summary_LongNames.rich{width}.txt", text)


def test_long_names_piped_text_keeps_every_cell_whole(
        snapshot: Callable[[str, str], None]) -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    text = render_text(report)
    # regression: shapes were clipped to "[2, 8, 409…" and GPT-2 outputs to "{logits: [2, 16, …"
    assert ("{logits: [2, 8, 40960], past_key_values: (([2, 8, 64], [2, 8, 64]), "
            "([2, 8, 64], [2, 8, 64]))}") in text
    assert "DecoderLayerWithAnExtremelyDescriptiveTypeName" in text
    assert "key_value_projection_for_the_attention_cache" in text
    assert "…" not in text
    snapshot("summary_LongNames.text.txt", text)


def test_narrow_terminal_hides_columns_and_says_so() -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    text = render_rich_text(report, width=80)
    note = " ".join(text.split("(hidden to fit the terminal:")[1].split())
    assert note.startswith("Type, ")
    # what is shown is whole: every number of the Total column
    assert "262.2 K" in text and "2.6 M" in text


def test_wrapped_shapes_break_at_separators_only() -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    text = render_rich_text(report, width=100)
    assert "40960" in text and "4096]" in text
    for line in text.splitlines():
        assert not line.rstrip().endswith(("[2, 8, 409", "4096 ", "409"))


def test_gpt2_outputs_are_whole_at_120_columns() -> None:
    report = torchscope.summarize(TRANSFORMERS["gpt2"](), input_size=[(2, 16)], dtypes=["long"])
    text = render_rich_text(report, width=120)
    assert "{logits:" in text and "[2, 16, 1000]," in text  # a shape is never split
    assert "…" not in text.split("Total params")[0]


def test_print_report_follows_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    monkeypatch.setenv("COLUMNS", "90")
    assert max(len(line) for line in str(report).splitlines()) <= 90
    monkeypatch.delenv("COLUMNS")
    # piped (no terminal): nothing is wrapped or hidden
    assert "DecoderLayerWithAnExtremelyDescriptiveTypeName" in str(report)


def test_findings_wrap_at_words_not_inside_code() -> None:
    report = torchscope.summarize(examples.SharedMLP())
    for text in (render_text(report), render_rich_text(report, width=80)):
        # regression: "save_file(model.state_di" / "ct(), …)" was split mid-identifier
        assert "save_file(model.state_dict()," in text


# -- names that are markup or syntax ---------------------------------------------------------


def hostile() -> torch.nn.Module:
    model = torch.nn.Sequential()
    model.add_module("[/]", torch.nn.Linear(2, 2))
    model.add_module("[bold red]x", torch.nn.ReLU())
    model.add_module("b:c", torch.nn.Linear(2, 2))
    model.add_module("e\x1b[31mvil\u202ex\ny", torch.nn.ReLU())
    model.add_module("<h>", torch.nn.ReLU())
    return model


@pytest.mark.parametrize("fmt", ["rich", "text", "markdown"])
def test_hostile_names_are_shown_as_written(fmt: str) -> None:
    report = torchscope.summarize(hostile(), input_size=[(1, 2)])
    if fmt == "rich":
        # regression: a child named [/] raised rich's MarkupError; [bold red]x became a style
        text = render_rich_text(report)
    else:
        text = torchscope.render(report, fmt)
    assert "[/]" in text and "[bold red]x" in text and "b:c" in text
    assert "\x1b" not in text and "\u202e" not in text
    assert "e\\x1b[31mvil\\u202ex\\ny" in text
    assert len(text.splitlines()) == len(render_text(report).splitlines()) + (
        0 if fmt == "text" else len(text.splitlines()) - len(render_text(report).splitlines()))


def test_hostile_names_in_markdown_are_not_html() -> None:
    text = torchscope.render(torchscope.summarize(hostile()), "markdown")
    assert "\\<h>" in text and "| <h>" not in text


def test_hostile_names_in_notebook_html() -> None:
    report = torchscope.summarize(hostile())
    html = report._repr_mimebundle_()["text/html"]
    assert "[bold red]x" in html and "&lt;h&gt;" in html and "\x1b" not in html


# -- one table with what users look for -------------------------------------------------------


def test_traced_table_keeps_parameter_columns_and_shares() -> None:
    report = torchscope.summarize(examples.MLP(), input_size=[(2, 20)])
    header = render_text(report).splitlines()[0].split()
    assert header[:4] == ["Module", "Type", "Input", "Output"]
    assert {"Own", "Total", "Size", "Train", "%"} <= set(header)
    assert "67.7%" in render_text(report)  # hidden: 5,376 of 7,946


def test_share_is_tie_aware() -> None:
    report = torchscope.summarize(examples.SharedMLP(), input_size=[(1, 4)])
    rows = {r[0]: r for r in tree_rows(report, tree=False, columns="params_percent")[1]}
    assert rows["(root)"][1] == "100.0%"
    assert rows["2 (= 4)"][1] == f"{100 * 72 / 121:.1f}%"  # shared layer counted once


def test_mode_column_appears_where_modules_disagree() -> None:
    model = examples.NestMLP()
    model.net.eval()
    report = torchscope.summarize(model)
    text = render_text(report)
    assert "Mode" in text.splitlines()[0]
    assert "Modes: 2 modules in train mode, 5 in eval mode" in text
    assert model.net.training is False and model.training is True  # untouched
    assert "Mode" not in render_text(torchscope.summarize(examples.NestMLP())).splitlines()[0]


@pytest.mark.parametrize(
    ("columns", "header"),
    [("input_size,output_size,num_params", ["Module", "Input", "Output", "Total"]),
     (["num_params", "type"], ["Module", "Total", "Type"]),
     ("trainable,kernel_size", ["Module", "Train", "Kernel"])],
)
def test_columns_choose_and_order(columns: str | list[str], header: list[str]) -> None:
    report = torchscope.summarize(examples.MLP(), input_size=[(2, 20)])
    assert tree_rows(report, columns=columns)[0] == header


def test_kernel_size_column_reads_conv_weights() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, (3, 5)), torch.nn.ReLU())
    report = torchscope.summarize(model)
    rows = tree_rows(report, tree=False, columns="kernel_size")[1]
    assert rows[1] == ["0", "[3, 5]"] and rows[2] == ["1", ""]


@pytest.mark.parametrize(
    ("columns", "message"),
    [("nmu_params", "'nmu_params' is not a column; did you mean num_params"),
     ("input_size", "needs a traced forward")],
)
def test_bad_columns(columns: str, message: str) -> None:
    with pytest.raises(torchscope.TorchscopeError, match=message):
        render_text(torchscope.summarize(examples.MLP()), columns=columns)


def test_register_column_plugs_into_every_format() -> None:
    from torchscope.rendering._columns import COLUMNS, register_column

    register_column("depth", "Depth", lambda r, m, c: str(m.depth), numeric=True,
                    default="always", before="type")
    try:
        report = torchscope.summarize(examples.NestMLP())
        assert render_text(report).splitlines()[0].split()[:2] == ["Module", "Depth"]
        assert "Depth |" in render_markdown(report)
        assert "Depth" in render_rich_text(report)
    finally:
        del COLUMNS["depth"]
    assert "Depth" not in render_text(torchscope.summarize(examples.NestMLP()))


# -- less noise, fewer surprises --------------------------------------------------------------


def test_batchnorm_counter_is_not_a_mixed_dtype() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    text = render_text(torchscope.summarize(model))
    # regression: num_batches_tracked (int64) made every BatchNorm model "mixed dtype"
    assert "dtype@device" not in text and "All tensors: float32 on cpu" in text
    half = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).half())
    assert "dtype@device" in render_text(torchscope.summarize(half))


def test_container_whose_children_ran_is_not_not_called() -> None:
    report = torchscope.summarize(examples.LongNames(), input_size=LONG)
    rows = {r[0]: r for r in tree_rows(report, tree=False)[1]}
    # regression: GPT-2's h ModuleList (no forward of its own) was "(not called)"
    assert rows["decoder_layers_with_long_names"][2] == ""
    unused = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 2), "spare": torch.nn.Linear(2, 2)})

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = unused

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.blocks["used"](x)
            return out

    rows = {r[0]: r for r in tree_rows(torchscope.summarize(Net(), input_size=[(1, 2)]),
                                      tree=False)[1]}
    assert rows["blocks.spare"][2] == "(not called)" and rows["blocks"][2] == ""


def test_markdown_keeps_aliased_modules() -> None:
    text = render_markdown(torchscope.summarize(examples.SharedMLP()))
    # regression: Markdown dropped module 4 of SharedMLP, text showed "2 (= 4)"
    assert "| 2 (= 4) " in text


def test_ties_table_counts_agree_with_nouns() -> None:
    one = torchscope.render(torchscope.find_tied(torch.nn.Sequential(*[torch.nn.Linear(2, 2)] * 2)
                                                 ), "text")
    assert "(2 groups," in one
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    model.add_module("again", model[0])
    assert "(1 group," in torchscope.render(torchscope.find_tied(model), "text")


# -- torchinfo's summary() ----------------------------------------------------------------------


def test_summary_takes_torchinfo_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from torchscope import summary

    model = examples.MLP()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = summary(model, input_size=(2, 20), depth=1,
                     col_names=("input_size", "output_size", "num_params"))
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["Module", "Type", "Input", "Output", "Total"]
    assert "├─ hidden" in out and "[2, 256]" in out
    assert report.module("hidden").calls[0].outputs.shape == (2, 256)  # type: ignore[union-attr]
    assert report.total_params == 7946
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_summary_batch_dim_input_data_kwargs_and_verbose(
        capsys: pytest.CaptureFixture[str]) -> None:
    from torchscope import summary

    report = summary(examples.MLP(), input_size=(20,), batch_dim=0, verbose=0)
    assert capsys.readouterr().out == ""
    assert report.inputs[0].shape == (1, 20)  # type: ignore[union-attr]
    report = summary(examples.MLP(), input_data=torch.zeros(3, 20), verbose=0)
    assert report.module("").calls[0].outputs.shape == (3, 10)  # type: ignore[union-attr]
    report = summary(examples.MLP(), input_data={"x": torch.zeros(4, 20)}, verbose=0)
    assert [k for k, _ in report.input_kwargs] == ["x"]
    summary(examples.MLP(), input_size=(2, 20), verbose=2)
    out = capsys.readouterr().out
    assert "hidden.weight" in out and out.count("Total params: 7,946") == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"input_size": (2, 20), "input_data": torch.zeros(2, 20)}, "both input_size and"),
     ({"input_size": "2x20"}, "is not a shape or a list of shapes"),
     ({"mode": "predict"}, "mode = 'predict'"),
     ({"verbose": 3}, "verbose = 3"),
     ({"input_size": (2, 20), "col_names": ("nmu_params",)}, "did you mean num_params")],
)
def test_summary_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    from torchscope import summary

    with pytest.raises(torchscope.TorchscopeError, match=re.escape(message)):
        summary(examples.MLP(), **kwargs)  # type: ignore[arg-type]


def test_summary_mult_adds_shows_flops(capsys: pytest.CaptureFixture[str]) -> None:
    from torchscope import summary

    summary(examples.MLP(), input_size=(2, 20), col_names=("mult_adds",))
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["Module", "Type", "FLOPs"]
    assert "30.7 K" in out  # 2 × (2·20·256 + 2·256·10) multiply-adds


def test_text_tree_keeps_the_indentation_under_a_last_child() -> None:
    # guards: tabulate stripped the leading blanks of a cell, so a grandchild under the last
    # child was drawn at its parent's level ("└─ lin" under "└─ child")
    class Child(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.child = Child()

    lines = torchscope.render(torchscope.summarize(Root()), "text").splitlines()
    labels = [line[:len("   └─ lin")].rstrip() for line in lines[2:6]]
    assert labels == ["Root", "├─ a", "└─ child", "   └─ lin"]
