"""Block diagrams: DOT golden files, data-flow edges, collapsing, runs, ties, styles, SVG, CLI."""

from __future__ import annotations

import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import torchscope
from torchscope import examples
from torchscope.cli import main
from torchscope.errors import InputSpecError, TorchscopeError
from torchscope.inspect import summarize
from torchscope.records import Report
from torchscope.rendering.graph import render_graph, to_dot, to_graphviz

sys.path.insert(0, str(Path(__file__).parent))
from models import assert_same_state, gpt2, state_fingerprint

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")

_ID = r'("(?:[^"\\]|\\.)*"|[^\s\[\]"]+)'
_EDGE = re.compile(rf"^\s*{_ID} -> {_ID}(?: \[(.*)\])?$")
_NODE = re.compile(rf"^\s*{_ID} \[(.*)\]$")


def _unquote(text: str) -> str:
    return text[1:-1] if text.startswith('"') else text


def edges(dot: str) -> dict[tuple[str, str], str]:
    """(src, dst) -> attribute text, for every edge statement outside the legend."""
    out: dict[tuple[str, str], str] = {}
    for line in dot.splitlines():
        m = _EDGE.match(line)
        if m and not _unquote(m.group(1)).startswith(".legend."):
            out[(_unquote(m.group(1)), _unquote(m.group(2)))] = m.group(3) or ""
    return out


def nodes(dot: str) -> dict[str, str]:
    """node id -> attribute text, for every node statement outside the legend."""
    out: dict[str, str] = {}
    for line in dot.splitlines():
        if " -> " in line:
            continue
        m = _NODE.match(line)
        node = _unquote(m.group(1)) if m else ""
        if m and m.group(1) not in ("graph", "node", "edge") and not node.startswith(".legend."):
            out[node] = m.group(2)
    return out


def clusters(dot: str) -> set[str]:
    """Names of every cluster subgraph."""
    return {_unquote(m) for m in re.findall(rf"subgraph {_ID} {{", dot)}


def flow_edges(dot: str) -> set[tuple[str, str]]:
    """Solid data-flow edges (not code, not ties)."""
    return {k for k, attrs in edges(dot).items() if "style=" not in attrs}


def code_edges(dot: str) -> set[tuple[str, str]]:
    return {k for k, attrs in edges(dot).items() if "style=dotted" in attrs}


def tie_edges(dot: str) -> set[tuple[str, str]]:
    return {k for k, attrs in edges(dot).items() if "style=dashed" in attrs}


def svg_titles(path: Path) -> tuple[set[str], set[str]]:
    """(node titles, cluster titles) of an SVG written by dot, parsed as XML."""
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.parse(path).getroot()
    found: dict[str, set[str]] = {"node": set(), "cluster": set()}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        cls = g.get("class")
        title = g.find("svg:title", ns)
        if cls in found and title is not None and title.text is not None:
            found[cls].add(title.text)
    return found["node"], found["cluster"]


class Residual(nn.Module):
    """y = x + f(x), then g(y) + y: two residual connections through functional code."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.f = nn.Linear(width, width)
        self.g = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.f(x)
        out: torch.Tensor = self.g(y) + y
        return out


class Block(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.ff(self.norm(x))
        return out


class Stack(nn.Module):
    """A module holding a list of identical blocks (ModuleList), with an embedding and a head."""

    def __init__(self, n: int = 5) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(Block() for _ in range(n))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.head(x)
        return out


class DictNet(nn.Module):
    """Takes a dict of tensors, returns a dict of tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({"a": nn.Linear(4, 8), "b": nn.Linear(6, 8)})
        self.head = nn.Linear(8, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.enc["a"](batch["a"]) + self.enc["b"](batch["b"])
        return {"logits": self.head(h), "hidden": h}


def _dict_report() -> Report:
    batch = {"a": torch.zeros(2, 4), "b": torch.zeros(2, 6)}
    return summarize(DictNet(), (batch,), follow_functions=True)


#: name -> (builder, input size or None for a static diagram)
EXAMPLES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...] | None]] = {
    "mlp": (examples.MLP, (2, 20)),
    "mlp_static": (examples.MLP, None),
    "mysequential": (examples.MySequential, (2, 20)),
    "nestmlp": (examples.NestMLP, (2, 20)),
    "nestmlp_static": (examples.NestMLP, None),
    "fixedhiddenmlp": (examples.FixedHiddenMLP, (2, 20)),
    "sharedmlp": (examples.SharedMLP, (2, 4)),
    "lazymlp": (examples.LazyMLP, (2, 20)),
    "lazymlp_static": (examples.LazyMLP, None),
    "centeredlayer": (examples.CenteredLayer, (2, 5)),
    "residual": (Residual, (2, 8)),
    "stack": (Stack, (2, 4)),
}


def _report(name: str) -> Report:
    build, size = EXAMPLES[name]
    torch.manual_seed(0)
    if size is None:
        return summarize(build())
    return summarize(build(), input_size=[size], follow_functions=True)


# ---------------------------------------------------------------------------------------------
# golden files and determinism


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_dot_golden(name: str, snapshot: Callable[[str, str], None]) -> None:
    snapshot(f"graph_{name}.dot", to_dot(_report(name)))


def test_dot_golden_gpt2(snapshot: Callable[[str, str], None]) -> None:
    report = summarize(gpt2(), input_size=[(1, 16)], dtypes=["long"], follow_functions=True)
    snapshot("graph_gpt2.dot", to_dot(report))


def test_dot_golden_dict_io(snapshot: Callable[[str, str], None]) -> None:
    snapshot("graph_dictnet.dot", to_dot(_dict_report()))


@pytest.mark.parametrize("name", ["nestmlp", "fixedhiddenmlp", "stack"])
def test_dot_is_deterministic_and_free_of_ids(name: str) -> None:
    first, second = to_dot(_report(name)), to_dot(_report(name))
    assert first == second
    assert not re.search(r"0x[0-9a-f]{6,}", first)
    # the same after a JSON round trip of the report (no object identity is used)
    report = _report(name)
    assert to_dot(Report.from_json(report.to_json())) == first


def test_node_ids_are_module_paths() -> None:
    report = _report("nestmlp")
    ids = set(nodes(to_dot(report)))
    drawn = {m.path for m in report.modules if not m.children}
    assert drawn <= ids
    assert {".input", ".output"} <= ids


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_made_up_ids_start_with_a_dot(name: str) -> None:
    """A node id is a module path, a run of blocks (an empty name between its dots) or an id the
    diagram made up (input, output, the root's box, a call, a ƒ node), which starts with "." as
    no module path can."""
    report = _report(name)
    paths = {m.path for m in report.modules}
    for node in nodes(to_dot(report)):
        first, _, last = node.partition("..")  # a run: its first member .. its last one's name
        assert node in paths or node.startswith(".") or (first in paths and last), node


# ---------------------------------------------------------------------------------------------
# data flow


def test_mlp_flow_is_the_chain_of_layers() -> None:
    dot = to_dot(_report("mlp"))
    assert flow_edges(dot) == {(".input", "hidden"), ("hidden", "act"), ("act", "output"),
                               ("output", ".output")}
    labels = edges(dot)
    assert 'label="[2, 256]"' in labels[("hidden", "act")]
    assert 'label="[2, 10]"' in labels[("output", ".output")]


def test_nested_blocks_are_clusters_with_flow_across_them() -> None:
    dot = to_dot(_report("nestmlp"))
    assert "cluster_net" in clusters(dot)
    assert flow_edges(dot) == {
        (".input", "net.0"), ("net.0", "net.1"), ("net.1", "net.2"), ("net.2", "net.3"),
        ("net.3", "linear"), ("linear", ".output"),
    }


def test_module_called_twice_gets_one_box_per_call() -> None:
    # FixedHiddenMLP.linear runs twice: two boxes "call 1/2", "call 2/2", never a self-loop
    dot = to_dot(_report("fixedhiddenmlp"))
    boxes = nodes(dot)
    assert "call 1/2" in boxes[".linear#1"] and "call 2/2" in boxes[".linear#2"]
    assert "linear" not in boxes
    # relu(mm(x, rand_weight) + 1) and the while loop's x /= 2 are followed: direct edges
    assert flow_edges(dot) == {(".input", ".linear#1"), (".linear#1", ".linear#2"),
                               (".linear#2", ".output")}
    assert code_edges(dot) == set() and "#ƒ" not in dot
    assert all(a != b for a, b in edges(dot))


def test_module_called_twice_without_following_functions_goes_through_code() -> None:
    torch.manual_seed(0)
    dot = to_dot(summarize(examples.FixedHiddenMLP(), input_size=[(2, 20)]))
    assert flow_edges(dot) == {(".input", ".linear#1")}
    assert code_edges(dot) == {(".linear#1", ".#ƒ"), (".#ƒ", ".linear#2"),
                               (".linear#2", ".#ƒ"), (".#ƒ", ".output")}


def test_shared_layer_calls_follow_the_sequence() -> None:
    dot = to_dot(_report("sharedmlp"))
    assert flow_edges(dot) >= {("1", ".2#1"), (".2#1", "3"), ("3", ".2#2"), (".2#2", "5")}
    assert "also 4" in nodes(dot)[".2#1"]


def test_residual_connections_are_direct_edges() -> None:
    # y = x + f(x); out = g(y) + y: every summand is an edge into its consumer
    dot = to_dot(_report("residual"))
    assert flow_edges(dot) == {
        (".input", "f"), (".input", "g"), ("f", "g"),  # y = x + f(x) into g
        ("g", ".output"), ("f", ".output"), (".input", ".output"),  # g(y) + y
    }
    assert code_edges(dot) == set() and "#ƒ" not in dot
    assert 'label="[2, 8]"' in edges(dot)[(".input", "g")]
    # the model drawn as one box: no edge around it
    assert flow_edges(to_dot(_report("residual"), depth=0)) == {(".input", ".root"),
                                                                 (".root", ".output")}


def test_residual_without_following_functions_goes_through_the_blocks_code() -> None:
    dot = to_dot(summarize(Residual(), input_size=[(2, 8)]))
    assert flow_edges(dot) == {(".input", "f")}
    assert code_edges(dot) == {("f", ".#ƒ"), (".#ƒ", "g"), ("g", ".#ƒ"),
                               (".#ƒ", ".output")}


class ResidualStack(nn.Module):
    """Pre-norm residual blocks inside blocks: x = x + ff(norm(x)), twice, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        out: torch.Tensor = self.head(x)
        return out


class ScaledBlock(nn.Module):
    """Returns a tensor made by its own code from its input only (no module inside made it)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.head = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)  # its result is not used
        out: torch.Tensor = self.head(torch.ones_like(x) * 2)
        return out


def test_residual_stream_between_blocks() -> None:
    report = summarize(ResidualStack(), input_size=[(2, 8)], follow_functions=True)
    dot = to_dot(report, expand=True)
    flow = flow_edges(dot)
    # the skip around block 0 reaches block 1 and, with block 1's output, the head
    assert {(".input", "blocks.0.norm"), ("blocks.0.norm", "blocks.0.ff"),
            (".input", "blocks.1.norm"), ("blocks.0.ff", "blocks.1.norm"),
            ("blocks.1.norm", "blocks.1.ff"),
            ("blocks.1.ff", "head"), ("blocks.0.ff", "head"), (".input", "head"),
            ("head", ".output")} == flow
    assert "#ƒ" not in dot
    # collapsed into one ×2 box, the stream enters and leaves it
    collapsed = flow_edges(to_dot(report))
    assert {(".input", "blocks.0..1"), ("blocks.0..1", "head"),
            (".input", "head")} <= collapsed


def test_code_node_remains_for_tensors_made_from_no_module() -> None:
    # torch.ones_like(x) * 2 has no producer (ones_like reads only x's shape): head gets a ƒ
    # node, and inner's output, which nothing consumed, flows into it
    dot = to_dot(summarize(ScaledBlock(), input_size=[(2, 8)], follow_functions=True))
    assert (".input", "inner") in flow_edges(dot)
    assert code_edges(dot) >= {(".#ƒ", "head")}


def test_dict_inputs_and_outputs() -> None:
    dot = to_dot(_dict_report())
    # h = enc.a(...) + enc.b(...) feeds the head and is returned as "hidden"
    assert flow_edges(dot) == {(".input", "enc.a"), (".input", "enc.b"),
                               ("enc.a", "head"), ("enc.b", "head"),
                               ("enc.a", ".output"), ("enc.b", ".output"),
                               ("head", ".output")}
    out = nodes(dot)[".output"]
    assert "logits: [2, 2]" in out and "hidden: [2, 8]" in out


def test_without_trace_containment_only_said_in_title() -> None:
    dot = to_dot(_report("nestmlp_static"))
    assert "containment only" in dot
    assert edges(dot) == {}
    assert ".input" not in nodes(dot)
    assert "cluster_net" in clusters(dot)


# ---------------------------------------------------------------------------------------------
# reading big models: depth, runs, ties, styles


def test_depth_collapses_blocks_into_their_ancestor() -> None:
    report = _report("nestmlp")
    dot = to_dot(report, depth=1)
    boxes = nodes(dot)
    assert "net.0" not in boxes and "+4 modules inside" in boxes["net"]
    assert "peripheries=2" in boxes["net"]
    assert flow_edges(dot) == {(".input", "net"), ("net", "linear"), ("linear", ".output")}
    root_only = to_dot(report, depth=0)
    assert flow_edges(root_only) == {(".input", ".root"), (".root", ".output")}


def test_run_of_identical_blocks_collapses_unless_expand() -> None:
    report = _report("stack")
    dot = to_dot(report)
    run = "blocks.0..4"
    assert "Block ×5" in nodes(dot)[run]
    assert flow_edges(dot) == {(".input", "inp"), ("inp", run), (run, "head"),
                               ("head", ".output")}
    expanded = to_dot(report, expand=True)
    assert "×5" not in expanded
    for i in range(5):
        assert f"cluster_blocks.{i}" in clusters(expanded)
    chain = flow_edges(expanded)
    for i in range(4):
        assert (f"blocks.{i}.ff", f"blocks.{i + 1}.norm") in chain


def test_run_needs_identical_structure() -> None:
    model = Stack(3)
    model.blocks[1].ff = nn.Linear(8, 8, bias=False)  # one block differs
    dot = to_dot(summarize(model, input_size=[(2, 4)]))
    assert "×" not in dot.split("cluster_.legend")[0]
    assert "blocks.1.ff" in nodes(dot)


@pytest.mark.parametrize("depth", [None, 1, 2, 3, 4])
def test_gpt2_at_every_depth(depth: int | None) -> None:
    # torchview 0.2.7 raises KeyError in render_edges on GPT-2 at depth 2 and 3
    report = summarize(gpt2(), input_size=[(1, 16)], dtypes=["long"])
    dot = to_dot(report, depth=depth)
    boxes = nodes(dot)
    assert ("lm_head", ".output") in flow_edges(dot)
    if depth == 2:
        assert "transformer.h" in boxes
        assert {("transformer.drop", "transformer.h"),
                ("transformer.h", "transformer.ln_f")} <= flow_edges(dot)
    if depth in (None, 3, 4):
        assert "GPT2Block ×2" in boxes["transformer.h.0..1"]
        assert ("transformer.drop", "transformer.h.0..1") in flow_edges(dot)


def test_gpt2_residual_stream_at_depth_2() -> None:
    report = summarize(gpt2(), input_size=[(1, 16)], dtypes=["long"], follow_functions=True)
    dot = to_dot(report, depth=2)
    # inputs_embeds + position_embeds into drop; the stream through the blocks; ln_f -> lm_head
    assert flow_edges(dot) == {
        (".input", "transformer.wte"), ("transformer.wte", "transformer.drop"),
        ("transformer.wpe", "transformer.drop"), ("transformer.drop", "transformer.h"),
        ("transformer.h", "transformer.ln_f"), ("transformer.ln_f", "lm_head"),
        ("lm_head", ".output"),
    }
    # the one tensor made from no module: the position ids (torch.arange) fed to wpe
    assert code_edges(dot) == {(".transformer#ƒ", "transformer.wpe")}
    # expanded, the residual adds of each block are edges around attn and mlp
    full = flow_edges(to_dot(report, expand=True))
    assert {("transformer.drop", "transformer.h.0.ln_1"),
            ("transformer.drop", "transformer.h.0.ln_2"),  # x + attn(ln_1(x))
            ("transformer.h.0.attn.resid_dropout", "transformer.h.0.ln_2"),
            ("transformer.h.0.attn.resid_dropout", "transformer.h.1.ln_1"),  # + mlp(...)
            ("transformer.h.0.mlp.dropout", "transformer.h.1.ln_1"),
            ("transformer.h.1.mlp.dropout", "transformer.ln_f")} <= full


def test_gpt2_expanded_draws_every_block() -> None:
    report = summarize(gpt2(), input_size=[(1, 16)], dtypes=["long"])
    dot = to_dot(report, expand=True)
    assert "×2" not in dot
    assert ("transformer.drop", "transformer.h.0.ln_1") in flow_edges(dot)
    assert (".transformer.h.0#ƒ", "transformer.h.1.ln_1") in code_edges(dot)


@pytest.mark.parametrize("tie", [True, False])
def test_tied_tensors_are_a_dashed_edge(tie: bool) -> None:
    report = summarize(gpt2(tie=tie), input_size=[(1, 16)], dtypes=["long"])
    dot = to_dot(report)
    expected = {("transformer.wte", "lm_head")} if tie else set()
    assert tie_edges(dot) == expected
    assert ("tied tensors" in dot) is tie  # legend entry only when used
    # collapsed to depth 1 the tie joins the transformer box and the head
    collapsed = to_dot(report, depth=1)
    assert tie_edges(collapsed) == ({("transformer", "lm_head")} if tie else set())


def test_tie_to_a_block_drawn_open_is_clipped_at_its_cluster() -> None:
    first, inner = nn.Linear(4, 4), nn.Linear(4, 4)
    inner.weight = first.weight
    model = nn.Sequential(first, nn.Sequential(inner, nn.ReLU()))
    dot = to_dot(summarize(model, input_size=[(2, 4)]), depth=None)
    assert tie_edges(dot) == {("0", "1.0")}
    first2, block = nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    shared = first2.weight
    assert isinstance(shared, nn.Parameter)
    block.register_parameter("w", shared)  # owned by the block itself
    model2 = nn.Sequential(first2, block)
    dot2 = to_dot(summarize(model2, input_size=[(2, 4)]))
    attrs = edges(dot2)[("0", "1.0")]
    assert "lhead=cluster_1" in attrs and "style=dashed" in attrs


def test_lazy_modules_are_dashed_with_unknown_size() -> None:
    for name in ("lazymlp", "lazymlp_static"):
        dot = to_dot(_report(name))
        box = nodes(dot)["0"]
        assert "? params" in box and "dashed" in box
        assert "0 params" not in box
        assert "lazy: uninitialized" in dot


def test_frozen_modules_are_filled() -> None:
    model = examples.MLP()
    model.hidden.requires_grad_(False)
    dot = to_dot(summarize(model, input_size=[(2, 20)]))
    assert "filled" in nodes(dot)["hidden"] and "filled" not in nodes(dot)["output"]
    assert "frozen: no trainable" in dot
    assert "frozen" not in to_dot(_report("mlp"))


def test_uncalled_module_is_marked() -> None:
    model = examples.MLP()
    model.add_module("unused", nn.Linear(3, 3))
    dot = to_dot(summarize(model, input_size=[(2, 20)]))
    assert "not called" in nodes(dot)["unused"] and "dotted" in nodes(dot)["unused"]


def test_legend_can_be_left_out() -> None:
    report = _report("lazymlp")
    assert "cluster_.legend" in to_dot(report)
    assert "legend" not in to_dot(report, legend=False)


# ---------------------------------------------------------------------------------------------
# files, SVG, Jupyter


@needs_dot
def test_svg_parses_as_xml_with_node_titles(tmp_path: Path) -> None:
    path = render_graph(_report("nestmlp"), tmp_path / "nest.svg")
    titles, clusters = svg_titles(path)
    assert {".input", ".output", "net.0", "net.1", "net.2", "net.3", "linear"} <= titles
    assert {"cluster_.root", "cluster_net"} <= clusters


@needs_dot
def test_svg_of_gpt2_collapsed(tmp_path: Path) -> None:
    report = summarize(gpt2(), input_size=[(1, 16)], dtypes=["long"])
    titles, _ = svg_titles(render_graph(report, tmp_path / "gpt2.svg"))
    assert {"transformer.h.0..1", "transformer.wte", "lm_head"} <= titles


@needs_dot
@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_binary_formats(tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = render_graph(_report("mlp"), tmp_path / f"mlp{suffix}")
    assert path.read_bytes().startswith(magic)


def test_dot_file_is_the_dot_text(tmp_path: Path) -> None:
    report = _report("nestmlp")
    path = render_graph(report, tmp_path / "nest.dot", depth=1)
    assert path.read_text(encoding="utf-8") == to_dot(report, depth=1)


def _hide_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_without_dot_program_svg_is_a_clear_error_and_dot_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hide_dot(monkeypatch, tmp_path)
    report = _report("mlp")
    with pytest.raises(TorchscopeError, match=r"needs the Graphviz 'dot' program.*apt-get "
                       r"install graphviz.*brew install graphviz"):
        render_graph(report, tmp_path / "mlp.svg")
    assert not (tmp_path / "mlp.svg").exists()
    assert render_graph(report, tmp_path / "mlp.dot").read_text().startswith("digraph MLP")


def test_bad_paths_and_arguments(tmp_path: Path) -> None:
    report = _report("mlp")
    with pytest.raises(TorchscopeError, match=r"suffix '\.jpg'.*\.svg, \.png, \.pdf, \.dot"):
        render_graph(report, tmp_path / "mlp.jpg")
    with pytest.raises(TorchscopeError, match=r"folder .*missing.* does not exist"):
        render_graph(report, tmp_path / "missing" / "mlp.svg")
    with pytest.raises(InputSpecError, match="depth = -1 is not a non-negative integer"):
        to_dot(report, depth=-1)
    with pytest.raises(TorchscopeError, match=r"report = MLP \(a model: pass "
                       r"torchscope.summarize"):
        to_dot(examples.MLP())  # type: ignore[arg-type]


@needs_dot
def test_jupyter_object_displays_svg() -> None:
    report = _report("mlp")
    source = to_graphviz(report)
    assert source.source == to_dot(report)
    bundle = source._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"]


def test_public_names() -> None:
    assert torchscope.to_dot is to_dot
    assert torchscope.render_graph is render_graph


def test_summarize_and_render_leave_the_model_unchanged(tmp_path: Path) -> None:
    model = examples.FixedHiddenMLP()
    model.train()
    before = state_fingerprint(model)
    render_graph(summarize(model, input_size=[(2, 20)]), tmp_path / "f.dot")
    assert_same_state(before, state_fingerprint(model))


# ---------------------------------------------------------------------------------------------
# CLI


@needs_dot
def test_cli_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlp.svg"
    assert main(["graph", "-o", str(out), "--input-size", "2,20"]) == 0
    titles, _ = svg_titles(out)
    assert {"hidden", "act", "output"} <= titles
    assert f"wrote {out}" in capsys.readouterr().err


def test_cli_dot_matches_the_api(tmp_path: Path) -> None:
    out = tmp_path / "nest.dot"
    assert main(["graph", "torchscope.examples:NestMLP", "--input-size", "2,20",
                 "--depth", "1", "-o", str(out)]) == 0
    expected = to_dot(summarize(examples.NestMLP(), input_size=[(2, 20)]), depth=1)
    assert out.read_text(encoding="utf-8") == expected


def test_cli_stdout_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "torchscope.examples:NestMLP", "--no-legend"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("digraph NestMLP") and "containment only" in text
    assert "legend" not in text


def test_cli_expand(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"{Path(__file__).parent / 'test_graph.py'}:Stack"
    assert main(["graph", target, "--input-size", "2,4"]) == 0
    assert "×5" in capsys.readouterr().out
    assert main(["graph", target, "--input-size", "2,4", "--expand"]) == 0
    assert "×5" not in capsys.readouterr().out


def test_cli_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--depth", "-1"]) == 2
    assert "--depth -1 is negative" in capsys.readouterr().err
    assert main(["graph", "-o", str(tmp_path / "x.gif")]) == 2
    assert "suffix '.gif'" in capsys.readouterr().err
    _hide_dot(monkeypatch, tmp_path)
    assert main(["graph", "-o", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err
    assert main(["graph", "-o", str(tmp_path / "x.dot")]) == 0


# -- names that are DOT syntax ------------------------------------------------------------------


def hostile_model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("b:c", nn.Linear(2, 2))
    model.add_module("<h>", nn.ReLU())
    model.add_module('q"uote\\', nn.ReLU())
    model.add_module("e\x1b[31mvil\u202ex\ny", nn.Linear(2, 2))
    return model


@needs_dot
@pytest.mark.parametrize("traced", [False, True])
def test_names_that_are_dot_syntax_make_no_phantom_nodes(traced: bool) -> None:
    import subprocess

    options = {"input_size": [(1, 2)]} if traced else {}
    dot = to_dot(summarize(hostile_model(), follow_functions=True, **options), legend=False)
    proc = subprocess.run(["dot", "-Tplain"], input=dot, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    nodes = [line for line in proc.stdout.splitlines() if line.startswith("node ")]
    # regression: a child named b:c became node "b" with port "c" (a phantom node)
    assert len(nodes) == 4 + (2 if traced else 0)
    assert "b:c: Linear" in dot and "\\\\x1b[31mvil\\\\u202ex\\\\ny" in dot
    assert "\x1b" not in dot and "\u202e" not in dot and "x\ny" not in dot
    assert 'label="<h>: ReLU' in dot  # a quoted label, not an HTML one


# -- names that are the diagram's own ids ------------------------------------------------------


class Wired(nn.Module):
    """Children under the given names (any name torch takes); ``forward`` is ``wiring``."""

    def __init__(self, children: dict[str, nn.Module],
                 wiring: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)
        self.wiring = wiring

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wiring(self, x)


def _chain(*names: str) -> Wired:
    """Linear children called one after another in the order of ``names`` (repeats call again)."""

    def wiring(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = model.get_submodule(name)(x)
        return x

    return Wired({name: nn.Linear(2, 2) for name in names}, wiring)


def _code_fed() -> Wired:
    """The second child gets a tensor made by torch code from no module: the root's ƒ node."""

    def wiring(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        first = model.get_submodule("(ƒ)(root)")(x)
        out: torch.Tensor = first + model.get_submodule("#ƒ")(torch.ones_like(x))
        return out

    return Wired({"(ƒ)(root)": nn.Linear(2, 2), "#ƒ": nn.Linear(2, 2)}, wiring)


def _legend_named() -> Wired:
    """A frozen child named like a legend node and a block named like the legend's cluster."""
    frozen = nn.Linear(2, 2).requires_grad_(False)
    children: dict[str, nn.Module] = {"(legend)frozen": frozen,
                                      "(legend)": nn.Sequential(nn.Linear(2, 2))}
    return Wired(children, lambda m, x: m.get_submodule("(legend)")(
        m.get_submodule("(legend)frozen")(x)))


#: case -> (model builder, flow edges, code edges)
ID_NAMED: dict[str, tuple[Callable[[], nn.Module], set[tuple[str, str]], set[tuple[str, str]]]] = {
    # the former ids of the graph's input and output
    "io": (lambda: _chain("(input)", "(output)"),
           {(".input", "(input)"), ("(input)", "(output)"), ("(output)", ".output")}, set()),
    # the labels of the input and output nodes, and the former and present id of the root
    "labels": (lambda: _chain("input", "output", "(root)", "root"),
               {(".input", "input"), ("input", "output"), ("output", "(root)"),
                ("(root)", "root"), ("root", ".output")}, set()),
    # the former ids of the two calls of a module called twice
    "calls": (lambda: _chain("linear", "linear#1", "linear#2", "linear"),
              {(".input", ".linear#1"), (".linear#1", "linear#1"), ("linear#1", "linear#2"),
               ("linear#2", ".linear#2"), (".linear#2", ".output")}, set()),
    # the former id of the root's ƒ node, and the suffix of the present ones
    "code": (_code_fed,
             {(".input", "(ƒ)(root)"), ("(ƒ)(root)", ".output"), ("#ƒ", ".output")},
             {(".#ƒ", "#ƒ")}),
    # the former ids of a legend node and of the legend's cluster
    "legend": (_legend_named,
               {(".input", "(legend)frozen"), ("(legend)frozen", "(legend).0"),
                ("(legend).0", ".output")}, set()),
}


@needs_dot
@pytest.mark.parametrize("case", sorted(ID_NAMED))
def test_children_named_like_the_diagrams_own_ids_stay_apart(case: str, tmp_path: Path) -> None:
    """A child may be named like a node the diagram makes up ("(input)", "(output)", "(root)",
    "linear#2", a ƒ or legend node, the legend's cluster): it is drawn as a box of its own, the
    made-up node stays as well, and every edge keeps its ends."""
    import subprocess

    build, flow, code = ID_NAMED[case]
    report = summarize(build(), input_size=[(1, 2)], follow_functions=True)
    dot = to_dot(report)
    modules = {m.path for m in report.modules  # the boxes of modules called once
               if m.path and not m.children and len(m.calls) == 1}
    made_up = {".input", ".output"} | {n for edge in flow | code for n in edge
                                       if n.startswith(".")}
    assert set(nodes(dot)) == modules | made_up
    assert flow_edges(dot) == flow and code_edges(dot) == code
    assert nodes(dot)[".input"].startswith('label="input\\n[1, 2]"')
    assert nodes(dot)[".output"].startswith('label="output\\n[1, 2]"')
    for path in modules:
        assert nodes(dot)[path].startswith(f'label="{path.rsplit(".", 1)[-1]}: Linear')
    assert "cluster_.root" in clusters(dot)
    svg = tmp_path / f"{case}.svg"
    proc = subprocess.run(["dot", "-Tsvg", "-o", str(svg)], input=dot, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    titles, cluster_titles = svg_titles(svg)
    legend = {t for t in titles if t.startswith(".legend.")}
    assert titles - legend == modules | made_up
    assert "cluster_.root" in cluster_titles
    if case == "legend":
        assert {"cluster_(legend)", "cluster_.legend"} <= clusters(dot) & cluster_titles
        assert legend == {".legend.frozen"}


@needs_dot
def test_block_names_that_are_dot_syntax_make_valid_cluster_names(tmp_path: Path) -> None:
    """A block drawn open is a cluster named after its path: a quote or a trailing backslash in
    the name is escaped like in node ids, so it cannot end the quoted name early."""
    model = nn.Sequential()
    for name in ('q"uote\\', "b:c", "a<h>"):
        model.add_module(name, nn.Sequential(nn.Linear(2, 2)))
    report = summarize(model, input_size=[(1, 2)])
    svg = render_graph(report, tmp_path / "blocks.svg", expand=True)
    titles, cluster_titles = svg_titles(svg)
    assert {"cluster_q%22uote%5C", "cluster_b%3Ac", "cluster_a%3Ch%3E"} <= cluster_titles
    assert {"q%22uote%5C.0", "b%3Ac.0", "a%3Ch%3E.0", ".input", ".output"} <= titles


def test_wide_shapes_wrap_in_labels_never_clip() -> None:
    report = summarize(examples.LongNames(), input_size=[(2, 8, 4096)])
    dot = to_dot(report)
    assert "…" not in dot.replace("… 1", "")  # runs of identical blocks read "0 … 1"
    assert "[2, 8, 40960]" in dot and "past_key_values:" in dot
