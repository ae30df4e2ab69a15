"""Architecture diff: modules, renamed blocks, tensors, counts, ties, call shapes, saved reports,
rendering in every format, the `diff` command, and no side effects on either model."""

from __future__ import annotations

import importlib
import inspect
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from models import assert_same_state, gpt2, llama, state_fingerprint
from torch import nn

import torchscope
from torchscope.arch_diff import diff, load_report
from torchscope.cli import main
from torchscope.errors import TorchscopeError
from torchscope.examples import MLP, LazyMLP, NestMLP, SharedMLP
from torchscope.records import ArchitectureDiff, ChangeKind, ParamKind, Report

MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": MLP,
    "nest": NestMLP,
    "shared": SharedMLP,
    "lazy": LazyMLP,
    "gpt2": gpt2,
    "llama": llama,
}
diff_module = importlib.import_module("torchscope.arch_diff")


def seq(**blocks: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(blocks))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_equals_a_fresh_copy_of_itself(name: str) -> None:
    d = diff(MODELS[name](), MODELS[name]())
    assert d.equal, str(d)
    assert (d.modules, d.tensors, d.counts, d.ties, d.calls) == ((), (), (), (), ())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_saved_report_equals_the_model(name: str, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(torchscope.summarize(MODELS[name]()).to_json(), encoding="utf-8")
    assert diff(path, MODELS[name]()).equal
    assert diff(MODELS[name](), str(path)).equal


def test_mlp_against_nestmlp() -> None:
    d = diff(MLP(), NestMLP())
    assert not d.equal
    assert (d.before, d.after, d.before_params, d.after_params) == ("MLP", "NestMLP", 7946, 3952)
    kinds = {(m.kind, m.path) for m in d.modules}
    assert (ChangeKind.CHANGED, "") in kinds
    assert {(ChangeKind.REMOVED, p) for p in ("hidden", "act", "output")} <= kinds
    assert {(ChangeKind.ADDED, p) for p in ("net", "net.0", "net.2", "linear")} <= kinds
    removed = {t.name for t in d.tensors if t.kind is ChangeKind.REMOVED}
    assert removed == {"hidden.weight", "hidden.bias", "output.weight", "output.bias"}
    root = next(c for c in d.counts if c.path == "")
    assert (root.before_params, root.after_params, root.params_delta) == (7946, 3952, -3994)


def test_shape_dtype_requires_grad_and_kind_changes() -> None:
    before = seq(a=nn.Linear(4, 8), b=nn.Linear(8, 2), n=nn.BatchNorm1d(2))
    after = seq(a=nn.Linear(4, 16), b=nn.Linear(16, 2), n=nn.BatchNorm1d(2))
    after.b.to(torch.float64)
    after.b.bias.requires_grad_(False)
    bias = after.n.bias
    del after.n.bias
    after.n.register_buffer("bias", bias.detach().clone())
    d = diff(before, after)
    fields = {t.name: {f.field: (f.before, f.after) for f in t.fields} for t in d.tensors}
    assert fields["a.weight"] == {"shape": ("[8, 4]", "[16, 4]")}
    assert fields["b.weight"] == {"shape": ("[2, 8]", "[2, 16]"),
                                  "dtype": ("float32", "float64")}
    assert fields["b.bias"] == {"dtype": ("float32", "float64"),
                                "requires_grad": ("True", "False")}
    assert fields["n.bias"] == {"requires_grad": ("True", "False"),
                                "kind": ("parameter", "buffer")}
    assert next(t for t in d.tensors if t.name == "n.bias").tensor_kind is ParamKind.BUFFER
    counts = {c.path: (c.before_params, c.after_params) for c in d.counts}
    assert counts["a"] == (40, 80)
    assert counts[""] == (40 + 18 + 4, 80 + 34 + 2)


def test_a_renamed_block_is_one_rename() -> None:
    before = seq(embed=nn.Linear(4, 8), body=seq(fc=nn.Linear(8, 8), act=nn.ReLU()),
                 head=nn.Linear(8, 2))
    after = seq(embed=nn.Linear(4, 8), trunk=seq(fc=nn.Linear(8, 8), act=nn.ReLU()),
                head=nn.Linear(8, 2))
    d = diff(before, after)
    assert [(m.kind, m.old_path, m.path) for m in d.modules] == [
        (ChangeKind.RENAMED, "body", "trunk")]
    assert d.tensors == () and d.counts == () and d.ties == ()
    assert not d.equal


def test_a_rename_with_new_shapes_is_a_removal_and_an_addition() -> None:
    before = seq(body=nn.Linear(8, 8))
    after = seq(trunk=nn.Linear(8, 16))
    d = diff(before, after)
    assert [(m.kind, m.path) for m in d.modules] == [
        (ChangeKind.REMOVED, "body"), (ChangeKind.ADDED, "trunk")]


def test_a_renamed_block_with_a_new_dtype_shows_the_tensor_under_its_new_name() -> None:
    before = seq(body=nn.Linear(8, 8))
    after = seq(trunk=nn.Linear(8, 8).to(torch.float64))
    d = diff(before, after)
    assert [(m.kind, m.path) for m in d.modules] == [(ChangeKind.RENAMED, "trunk")]
    changed = {t.name: t.old_name for t in d.tensors}
    assert changed == {"trunk.weight": "body.weight", "trunk.bias": "body.bias"}


def test_ties_made_and_broken() -> None:
    d = diff(gpt2(tie=True), gpt2(tie=False))
    assert [(t.kind, set(t.names)) for t in d.ties] == [
        ("broken", {"transformer.wte.weight", "lm_head.weight"})]
    tied = {t.name: t.fields for t in d.tensors}
    assert tied["lm_head.weight"][0].field == "tied with"
    assert tied["lm_head.weight"][0].before == "transformer.wte.weight"
    assert d.before_params + 64_000 == d.after_params
    back = diff(gpt2(tie=False), gpt2(tie=True))
    assert [t.kind for t in back.ties] == ["made"]


def test_shared_layer_untied() -> None:
    untied = SharedMLP()
    untied[4] = nn.Linear(8, 8)
    d = diff(SharedMLP(), untied)
    # guards: a block shared under two names was reported as added under its second name
    assert d.modules == ()
    assert {t.kind for t in d.ties} == {"broken"}
    assert {frozenset(t.names) for t in d.ties} == {
        frozenset({"2.weight", "4.weight"}), frozenset({"2.bias", "4.bias"})}


def test_call_shapes_that_changed() -> None:
    wide = seq(hidden=nn.Linear(20, 256), act=nn.ReLU(), output=nn.Linear(256, 10))
    narrow = seq(hidden=nn.Linear(20, 128), act=nn.ReLU(), output=nn.Linear(128, 10))
    d = diff(wide, narrow, input_size=[(2, 20)])
    assert d.call_shapes_compared
    calls = {(c.path, c.what): (c.before, c.after) for c in d.calls}
    assert calls[("hidden", "outputs")] == ("[2, 256] float32", "[2, 128] float32")
    assert calls[("act", "inputs")] == ("[2, 256] float32", "[2, 128] float32")
    assert ("", "outputs") not in calls  # the model's output is [2, 10] on both sides
    same = diff(wide, wide, torch.zeros(2, 20))
    assert same.equal and same.call_shapes_compared


def test_a_module_called_a_different_number_of_times() -> None:
    class Twice(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)
            self.n = n

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(self.n):
                x = self.layer(x)
            return x

    d = diff(Twice(1), Twice(2), input_size=[(1, 4)])
    assert [(c.path, c.what, c.before, c.after) for c in d.calls] == [("layer", "calls", "1", "2")]


def test_an_untraced_saved_report_says_call_shapes_were_not_compared(tmp_path: Path) -> None:
    path = tmp_path / "static.json"
    path.write_text(torchscope.summarize(MLP()).to_json(), encoding="utf-8")
    d = diff(path, MLP(), input_size=[(2, 20)])
    assert d.equal and not d.call_shapes_compared
    assert d.notes and "static.json" in d.notes[0] and "not traced" in d.notes[0]


def test_a_traced_saved_report_compares_call_shapes(tmp_path: Path) -> None:
    path = tmp_path / "traced.json"
    path.write_text(torchscope.summarize(MLP(), input_size=[(2, 20)]).to_json(),
                    encoding="utf-8")
    assert diff(path, MLP(), input_size=[(2, 20)]).equal
    d = diff(path, MLP(), input_size=[(3, 20)])
    assert {c.path for c in d.calls} == {"", "hidden", "act", "output"}


def test_lazy_counts_are_marked_as_lower_bounds() -> None:
    d = diff(LazyMLP(), MLP())
    assert any(c.lazy for c in d.counts)
    assert "≥" in str(d)


def test_no_side_effects_on_either_model() -> None:
    a, b = MLP(), NestMLP().eval()
    before_a, before_b = state_fingerprint(a), state_fingerprint(b)
    diff(a, b, input_size=[(2, 20)], mode="real")
    assert_same_state(before_a, state_fingerprint(a))
    assert_same_state(before_b, state_fingerprint(b))


def test_no_side_effects_when_the_forward_raises() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model, other = Broken(), MLP()
    before = state_fingerprint(model)
    with pytest.raises(TorchscopeError, match=r"diff side a \(Broken\): .*boom"):
        diff(model, other, input_size=[(1, 4)], mode="real")
    assert_same_state(before, state_fingerprint(model))


def test_torchscope_diff_is_the_function_in_any_import_order() -> None:
    # guards: a submodule named like the function rebinds ``torchscope.diff`` to the module
    import torchscope.arch_diff

    assert torchscope.diff is diff is torchscope.arch_diff.diff
    assert torchscope.diff(MLP(), MLP()).equal
    assert list(inspect.signature(torchscope.diff).parameters)[:2] == ["a", "b"]


# ------------------------------------------------------------------------------------------
# bad input


def test_bad_sides() -> None:
    with pytest.raises(TorchscopeError, match=r"side b is a int: give an nn.Module, a Report"):
        diff(MLP(), 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", r"is not valid JSON \(Expecting value at line 1"),
        ('{"a": 1}', r"holds JSON but not a torchscope report"),
        ("[1, 2]", r"holds JSON but not a torchscope report"),
        ('{"schema_version": 999, "root_type": "X", "modules": []}',
         r"schema_version 999 is not supported"),
        ('{"schema_version": 1, "root_type": "X", "modules": [{"path": ""}]}',
         r"is a damaged torchscope report"),
    ],
)
def test_bad_report_files(content: str, match: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TorchscopeError, match=match):
        load_report(path)


def test_missing_and_oversized_report_files(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TorchscopeError, match=r"nope.json' does not exist: save one with"):
        load_report(tmp_path / "nope.json")
    path = tmp_path / "big.json"
    path.write_text(torchscope.summarize(MLP()).to_json(), encoding="utf-8")
    monkeypatch.setattr(diff_module, "MAX_REPORT_BYTES", 100)
    with pytest.raises(TorchscopeError, match=r"over the 100-byte limit"):
        load_report(path)


def test_a_binary_file_is_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "weights.json"
    torch.save(MLP().state_dict(), path)
    with pytest.raises(TorchscopeError, match=r"weights.json' is not (UTF-8 text|valid JSON)"):
        load_report(path)


# ------------------------------------------------------------------------------------------
# rendering


def test_text_and_markdown_golden(snapshot: Callable[[str, str], None]) -> None:
    d = diff(MLP(), NestMLP())
    snapshot("diff_mlp_nestmlp.txt", torchscope.render(d, "text"))
    snapshot("diff_mlp_nestmlp.md", torchscope.render(d, "markdown"))


def test_renamed_and_traced_text_golden(snapshot: Callable[[str, str], None]) -> None:
    before = seq(body=nn.Linear(8, 16), act=nn.ReLU(), head=nn.Linear(16, 2))
    after = seq(trunk=nn.Linear(8, 16), act=nn.ReLU(), head=nn.Linear(16, 4))
    snapshot("diff_renamed_traced.txt",
             torchscope.render(diff(before, after, input_size=[(3, 8)]), "text"))


def test_equal_text() -> None:
    assert str(diff(MLP(), MLP())) == (
        "No architecture differences: MLP and MLP match (7,946 parameters).")


def test_json_carries_schema_version_and_every_change() -> None:
    d = diff(MLP(), NestMLP())
    data = json.loads(torchscope.render(d, "json"))
    assert data["schema_version"] == 1 and data["equal"] is False
    assert data == d.to_dict()
    assert {m["kind"] for m in data["modules"]} == {"changed", "removed", "added"}
    assert len(data["tensors"]) == len(d.tensors)


def test_rich_and_html() -> None:
    import io

    from rich.console import Console

    d = diff(MLP(), NestMLP())
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(d)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Architecture diff: MLP → NestMLP" in out and "net.0.weight" in out
    assert d._repr_html_().startswith("<")


def test_long_diffs_are_clipped_in_text_but_not_in_json() -> None:
    wide = nn.Sequential(*[nn.Linear(2, 2) for _ in range(40)])
    d = diff(nn.Sequential(), wide)
    text = torchscope.render(d, "text")
    assert "and 20 more (--format json lists all)" in text
    assert len(json.loads(torchscope.render(d, "json"))["tensors"]) == 80


def test_record_is_frozen_plain_values() -> None:
    d = diff(MLP(), NestMLP())
    assert isinstance(d, ArchitectureDiff)
    with pytest.raises(AttributeError):
        d.before = "x"  # type: ignore[misc]
    assert isinstance(Report.from_json(torchscope.summarize(MLP()).to_json()), Report)


# ------------------------------------------------------------------------------------------
# command line


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["diff", "torchscope.examples:MLP", "torchscope.examples:NestMLP"]) == 1
    assert "Architecture diff: MLP → NestMLP" in capsys.readouterr().out
    assert main(["diff", "torchscope.examples:MLP", "torchscope.examples:MLP"]) == 0
    assert "No architecture differences" in capsys.readouterr().out
    saved = tmp_path / "a.json"
    assert main(["summarize", "--format", "json"]) == 0
    saved.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["diff", str(saved), "torchscope.examples:MLP"]) == 0
    assert "a.json and MLP match" in capsys.readouterr().out


def test_cli_traced_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", "torchscope.examples:MLP", "torchscope.examples:NestMLP",
                 "--input-size", "2,20", "--format", "json"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["call_shapes_compared"] is True and data["equal"] is False


def test_cli_kwargs_per_side(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "nets.py"
    script.write_text("from torch import nn\n"
                      "def build(width=4):\n    return nn.Linear(2, width)\n", encoding="utf-8")
    target = f"{script}:build"
    assert main(["diff", target, target, "--kwargs-b", '{"width": 4}']) == 0
    assert main(["diff", target, target, "--kwargs-b", '{"width": 5}']) == 1
    assert "shape [4, 2] → [5, 2]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["torchscope.examples:MLP", "torchscope.examples:Nope"], "has no attribute 'Nope'"),
        (["/nonexistent/r.json", "torchscope.examples:MLP"], "does not exist"),
        (["torchscope.examples:MLP", "torchscope.examples:MLP", "--input-size", "2,x"],
         "'2,x'"),
        (["x.json", "torchscope.examples:MLP", "--kwargs-a", "{}"], "is a saved report"),
    ],
)
def test_cli_bad_input_exits_2(args: list[str], match: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchscope diff: error:") and match in err
    assert len(err.strip().splitlines()) == 1
