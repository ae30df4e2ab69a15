"""Forward tracing: specs per call, modes, data flow, errors and the state guard."""

from __future__ import annotations

import collections
import copy
import dataclasses
import gc
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
from models import TRANSFORMERS, assert_same_state, state_fingerprint
from torch import nn
from torch.nn.modules import module as module_mod

from torchscope import examples
from torchscope.errors import ForwardError, InputSpecError, TorchscopeError
from torchscope.records import MapSpec, SeqSpec, TensorSpec, ValueSpec
from torchscope.trace import (
    TraceResult,
    build_inputs,
    meta_copy,
    spec_of,
    state_guard,
    trace_forward,
)

# ---------------------------------------------------------------------------------------------
# helpers


Shapes = dict[str, list[tuple[int, ...]]]


def plain_forward_shapes(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Shapes]:
    """Run a plain forward with one forward hook per module (not torchscope's mechanism) and
    return the output and, per module path, the output shapes of its calls that returned a
    tensor, in call order."""
    seen: Shapes = collections.defaultdict(list)
    handles = []
    for name, mod in model.named_modules():
        def hook(m: nn.Module, a: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                seen[name].append(tuple(out.shape))
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return out, dict(seen)


def traced_shapes(result: TraceResult) -> Shapes:
    """The same view of a trace: per path, the shapes of its tensor outputs in call order."""
    seen: Shapes = collections.defaultdict(list)
    for path, call in result.calls:
        if isinstance(call.outputs, TensorSpec):
            seen[path].append(call.outputs.shape)
    return dict(seen)


def global_hook_state() -> dict[str, tuple[Any, ...]]:
    names = [n for n in dir(module_mod) if n.startswith("_global_") and n.endswith(
        ("hooks", "_called", "_kwargs", "_hook"))]
    return {n: tuple(getattr(module_mod, n).keys()) for n in names
            if isinstance(getattr(module_mod, n), dict)}


def all_hook_keys(model: nn.Module) -> dict[str, tuple[Any, ...]]:
    out = {}
    for name, mod in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
                     "_forward_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
                     "_state_dict_hooks", "_load_state_dict_pre_hooks"):
            out[f"{name}:{attr}"] = tuple(getattr(mod, attr).keys())
    return out


class TrainNet(nn.Module):
    """Train-mode model with BatchNorm and Dropout; ``fail`` makes the last layer raise."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Sequential(nn.Linear(16, 4), nn.BatchNorm1d(4))
        self.out = nn.Linear(5 if fail else 4, 2)  # 5: shape mismatch after head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.fc(x))))
        out: torch.Tensor = self.out(self.head(x))
        return out


def mixed_train_net(*, fail: bool = False) -> TrainNet:
    net = TrainNet(fail=fail).train()
    net.head.eval()  # mixed flags: an eval subtree inside a train model
    net.head[0].train()
    return net


# ---------------------------------------------------------------------------------------------
# the examples


EXAMPLES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "MLP": (examples.MLP, (2, 20)),
    "MySequential": (examples.MySequential, (2, 20)),
    "FixedHiddenMLP": (examples.FixedHiddenMLP, (2, 20)),
    "NestMLP": (examples.NestMLP, (2, 20)),
    "SharedMLP": (examples.SharedMLP, (2, 4)),
    "CenteredLayer": (examples.CenteredLayer, (2, 20)),
    "MyLinear": (lambda: examples.MyLinear(5, 3), (2, 5)),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_match_plain_forward(name: str) -> None:
    build, size = EXAMPLES[name]
    model = build()
    x = torch.randn(*size)
    out, expected = plain_forward_shapes(model, x)
    result = trace_forward(model, x)
    assert result.mode == "real"
    assert isinstance(result.outputs, TensorSpec)
    assert result.outputs.shape == tuple(out.shape)
    assert traced_shapes(result) == expected
    assert [c.index for _, c in result.calls] == list(range(len(result.calls)))
    assert result.inputs == (TensorSpec(size, "float32", "cpu"),)


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "FixedHiddenMLP"])
@pytest.mark.parametrize("mode", ["meta", "fake"])
def test_examples_same_shapes_in_every_mode(name: str, mode: str) -> None:
    build, size = EXAMPLES[name]
    model = build()
    real = trace_forward(model, torch.zeros(size))
    other = trace_forward(model, torch.zeros(size), mode=mode)
    assert other.mode == mode
    assert [(p, c.index) for p, c in other.calls] == [(p, c.index) for p, c in real.calls]
    assert traced_shapes(other) == traced_shapes(real)
    device = "meta" if mode == "meta" else "cpu"
    assert isinstance(other.outputs, TensorSpec) and other.outputs.device == device


def test_sizes_only_pick_meta_for_mlp() -> None:
    result = trace_forward(examples.MLP(), input_size=[(2, 20)])
    assert result.mode == "meta"
    assert "auto ran meta" in result.notes[0]
    assert [(p, c.outputs.shape) for p, c in result.calls  # type: ignore[union-attr]
            ] == [("", (2, 10)), ("hidden", (2, 256)), ("act", (2, 256)), ("output", (2, 10))]


def test_fixed_hidden_mlp_falls_back_to_real_and_records_two_calls() -> None:
    # meta cannot run its data-dependent while loop; fake cannot either (.item() of a sum)
    result = trace_forward(examples.FixedHiddenMLP(), input_size=[(2, 20)])
    assert result.mode == "real"
    assert any(n.startswith("meta forward failed") for n in result.notes)
    assert any(n.startswith("fake forward failed") for n in result.notes)
    linear_calls = result.calls_of("linear")
    assert [c.index for c in linear_calls] == [1, 2]
    assert all(c.outputs == TensorSpec((2, 20), "float32", "cpu") for c in linear_calls)
    assert result.outputs == TensorSpec((), "float32", "cpu")
    assert result.uncalled == ()


def test_shared_layer_called_twice_under_its_first_name() -> None:
    result = trace_forward(examples.SharedMLP(), input_size=[(3, 4)])
    assert [p for p, _ in result.calls] == ["", "0", "1", "2", "3", "2", "5", "6"]
    assert len(result.calls_of("2")) == 2


def test_uncalled_modules_and_no_unused_parameter_guess() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 4)
            self.unused = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
            self.frozen = nn.Linear(4, 2).requires_grad_(False)
            self.alias = nn.Linear(4, 4)
            self.alias.weight = self.used.weight  # tied to a called module: not unused
            self.alias.bias = self.used.bias
            self.act = nn.ReLU()  # no parameters: uncalled, no finding

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x)
            return out

    result = trace_forward(Branchy(), torch.zeros(1, 4))
    assert result.uncalled == ("unused", "unused.0", "unused.1", "frozen", "alias", "act")
    # a never-called module is no proof of unused parameters (functional use, calls through
    # another name): the autograd-graph check is torchscope.find_unused_parameters
    assert result.findings == ()


def test_keyword_inputs_and_structured_outputs() -> None:
    class Out(NamedTuple):
        y: torch.Tensor
        extra: dict[str, Any]

    class KwNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor, *, scale: float = 1.0,
                    mask: torch.Tensor | None = None) -> Out:
            y = self.lin(x) * scale
            return Out(y, {"mask": mask, "n": 3, "none": None})

    result = trace_forward(KwNet(), torch.zeros(2, 3),
                           example_kwargs={"scale": 2.0, "mask": torch.ones(2, dtype=torch.bool)})
    assert result.input_kwargs == (("scale", ValueSpec("2.0")),
                                   ("mask", TensorSpec((2,), "bool", "cpu")))
    assert result.outputs == SeqSpec("Out", (
        TensorSpec((2, 2), "float32", "cpu"),
        MapSpec("dict", (("mask", TensorSpec((2,), "bool", "cpu")), ("n", ValueSpec("3")),
                         ("none", None))),
    ))
    root = result.calls_of("")[0]
    assert root.kwargs == result.input_kwargs


def test_module_outside_the_tree_and_caught_errors_are_handled() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bad = nn.Linear(7, 2)  # raises on 3 features; the forward catches it
            self.good = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outsider = nn.Identity()  # not part of the tree: not recorded
            try:
                self.bad(x)
            except RuntimeError:
                pass
            out: torch.Tensor = self.good(outsider(x))
            return out

    result = trace_forward(Odd(), torch.zeros(2, 3))
    assert [p for p, _ in result.calls] == ["", "bad", "good"]
    assert result.calls_of("bad")[0].outputs == ValueSpec("<raised>")
    assert result.calls_of("good")[0].outputs == TensorSpec((2, 2), "float32", "cpu")
    assert result.outputs == TensorSpec((2, 2), "float32", "cpu")


# ---------------------------------------------------------------------------------------------
# data flow


def edges(result: TraceResult) -> set[tuple[int | None, int | None]]:
    return {(e.src, e.dst) for e in result.flow}


def test_flow_of_a_chain() -> None:
    result = trace_forward(examples.MLP(), torch.zeros(2, 20))
    assert edges(result) == {(None, 0), (None, 1), (1, 2), (2, 3), (3, None), (0, None)}
    edge = next(e for e in result.flow if (e.src, e.dst) == (1, 2))
    assert (edge.src_path, edge.dst_path) == ("hidden", "act")
    assert edge.spec == TensorSpec((2, 256), "float32", "cpu")


def test_flow_keeps_container_and_child_edges() -> None:
    # NestMLP: net (call 1) holds net.0..net.3 (calls 2-5); linear is call 6
    result = trace_forward(examples.NestMLP(), torch.zeros(2, 20))
    got = edges(result)
    assert {(None, 1), (None, 2), (5, 6), (1, 6)} <= got
    assert (2, 6) not in got


def test_flow_through_identity_and_inplace_relu_replaces_producer() -> None:
    # in-place ReLU and Identity return the tensor they were given: the edge goes through them
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Identity(), nn.Linear(4, 2))
    result = trace_forward(model, torch.zeros(1, 4))
    got = edges(result)
    assert {(1, 2), (2, 3), (3, 4)} <= got
    assert (1, 3) not in got and (1, 4) not in got and (2, 4) not in got


def test_flow_of_residual_blocks_and_repeated_calls() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = x + self.lin(x)
            return out

    model = nn.Sequential(Residual(), Residual())
    result = trace_forward(model, torch.zeros(1, 4))
    # calls: 0 root, 1 block 0, 2 block 0.lin, 3 block 1, 4 block 1.lin
    assert edges(result) == {(None, 0), (None, 1), (None, 2), (1, 3), (1, 4), (3, None),
                             (0, None)}
    # FixedHiddenMLP: the second linear call's input is made by functional code: no edge in
    fixed = trace_forward(examples.FixedHiddenMLP(), torch.zeros(2, 20))
    assert edges(fixed) == {(None, 0), (None, 1), (0, None)}


def test_flow_has_one_edge_per_producer_consumer_and_spec() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.bil = nn.Bilinear(4, 4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.lin(x)
            y = self.bil(h, h)  # the same tensor twice into one call
            return y, y  # and twice out of the model

    result = trace_forward(Twice(), torch.zeros(1, 4))
    pairs = [(e.src, e.dst) for e in result.flow]
    assert sorted(pairs, key=str) == sorted({*pairs}, key=str)  # no repeats
    assert {(1, 2), (2, None), (0, None)} <= set(pairs)


def test_guard_copes_with_a_module_missing_torch_attributes() -> None:
    model = mixed_train_net()
    del model.head.__dict__["_load_state_dict_post_hooks"]  # as an old pickle may lack it
    x = torch.randn(6, 8)
    before = state_fingerprint(model)
    result = trace_forward(model, x)
    assert result.mode == "real" and result.calls_of("head")
    assert_same_state(before, state_fingerprint(model))


class _ResBlock(nn.Module):
    def __init__(self, *, inplace: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            x = x.clone()  # clone keeps the producers of x
            x += self.lin(x)  # in place: x keeps its producers and gains lin's
            return x
        out: torch.Tensor = x + self.lin(x)
        return out


@pytest.mark.parametrize("mode", ["real", "meta", "fake"])
@pytest.mark.parametrize("inplace", [False, True])
def test_follow_functions_gives_residual_edges(mode: str, inplace: bool) -> None:
    model = nn.Sequential(_ResBlock(inplace=inplace), _ResBlock(inplace=inplace))
    result = trace_forward(model, torch.zeros(1, 4), mode=mode, follow_functions=True)
    assert result.mode == mode
    # calls: 0 root, 1 block 0, 2 block 0.lin, 3 block 1, 4 block 1.lin. Block 0 returns
    # x + lin(x): its producers are lin (made inside) and the block itself, which replaces the
    # graph input x (its own input); likewise block 1 replaces block 0's producers.
    assert edges(result) == {(None, 0), (None, 1), (None, 2),  # x into root, block 0, lin
                             (2, 3), (1, 3), (2, 4), (1, 4),  # block 0's sum into block 1
                             (4, None), (3, None), (0, None)}  # block 1's sum, the output
    edge = next(e for e in result.flow if (e.src, e.dst) == (2, 3))
    assert (edge.src_path, edge.dst_path) == ("0.lin", "1")
    assert edge.spec == TensorSpec((1, 4), "float32", "meta" if mode == "meta" else "cpu")


def test_follow_functions_on_fixed_hidden_mlp_and_off_by_default() -> None:
    x = torch.zeros(2, 20)
    # calls: 0 root, 1 linear, 2 linear again; relu(mm(X, w) + 1) and X /= 2 are followed
    followed = trace_forward(examples.FixedHiddenMLP(), x, follow_functions=True)
    assert edges(followed) == {(None, 0), (None, 1), (1, 2), (2, None), (0, None)}
    assert edges(trace_forward(examples.FixedHiddenMLP(), x)) == {(None, 0), (None, 1),
                                                                   (0, None)}
    # the same calls and specs either way
    plain = trace_forward(examples.FixedHiddenMLP(), x)
    assert followed.calls == plain.calls and followed.outputs == plain.outputs


def test_follow_functions_ignores_shape_only_functions() -> None:
    class Ones(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.lin(torch.ones_like(x) + x.new_zeros(x.shape))
            return out

    result = trace_forward(Ones(), torch.zeros(1, 4), follow_functions=True)
    assert (None, 1) not in edges(result)  # ones_like(x) reads x's shape, not its values


def test_follow_functions_through_item_assignment() -> None:
    class Shift(nn.Module):
        """shift_tokens_right's pattern: new_zeros (shape only), then t[:, 1:] = ..."""

        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            shifted = h.new_zeros(h.shape)
            shifted[:, 1:] = h[:, :-1]
            out: torch.Tensor = self.out(shifted)
            return out

    result = trace_forward(Shift(), torch.zeros(2, 4), follow_functions=True)
    # calls: 0 root, 1 lin, 2 out
    assert (1, 2) in edges(result) and (None, 2) not in edges(result)


class _ItemNet(nn.Module):
    """Reads a value on the host in its forward (a synchronization on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if y.sum().item() > 1e9:  # the sync site
            y = y * 2
        out: torch.Tensor = y + x
        return out


def test_follow_functions_under_the_sync_detector_and_other_modes() -> None:
    from torch.overrides import TorchFunctionMode

    from torchscope.syncs import detect_syncs

    seen: list[str] = []

    class Outer(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            seen.append(getattr(func, "__name__", "?"))
            return func(*args, **(kwargs or {}))

    depth = torch._C._len_torch_function_stack()
    with Outer(), detect_syncs(include_cpu=True) as syncs:
        result = trace_forward(_ItemNet(), torch.zeros(2, 4), follow_functions=True)
        inside = torch._C._len_torch_function_stack()
    # the detector still reports the model's own line (the follow mode sits below it)
    lines = [site.line for site in syncs.sites]
    assert [site.op for site in syncs.sites] == [".item()"] and lines
    assert syncs.sites[0].function.endswith("_ItemNet.forward")
    assert {(1, None), (None, None)} <= edges(result)  # lin(x) + x
    assert "item" in seen  # the outer mode kept seeing the model's calls
    assert inside == depth + 2  # the follow mode is gone, the two outer modes are kept
    assert torch._C._len_torch_function_stack() == depth


def test_follow_functions_mode_is_removed_when_the_forward_raises() -> None:
    depth = torch._C._len_torch_function_stack()
    model = mixed_train_net(fail=True)
    x = torch.randn(6, 8)
    before = state_fingerprint(model)  # with the RNG state
    with pytest.raises(ForwardError, match="module 'out'"):
        trace_forward(model, x, follow_functions=True)
    assert torch._C._len_torch_function_stack() == depth
    assert_same_state(before, state_fingerprint(model))


# ---------------------------------------------------------------------------------------------
# transformers models


def transformer_inputs(name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    ids = torch.randint(0, 1000, (2, 12))
    kwargs = {"attention_mask": torch.ones(2, 12, dtype=torch.long)}
    if name.startswith(("t5", "bart")):
        kwargs["decoder_input_ids"] = torch.randint(0, 1000, (2, 5))
    return ids, kwargs


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5", "albert", "llama", "bart"])
def test_transformers_match_plain_forward(name: str) -> None:
    model = TRANSFORMERS[name]().eval()
    ids, kwargs = transformer_inputs(name)
    out, expected = plain_forward_shapes(model, ids, **kwargs)
    before = state_fingerprint(model)
    result = trace_forward(model, ids, example_kwargs=kwargs)
    assert_same_state(before, state_fingerprint(model))
    assert result.mode == "real"
    assert isinstance(result.outputs, MapSpec)
    outputs = dict(result.outputs.items)
    assert outputs["logits"] == TensorSpec(tuple(out.logits.shape), "float32", "cpu")
    # every module call with a tensor output, in the order a forward hook sees them
    assert traced_shapes(result) == expected
    assert [k for k, _ in result.input_kwargs] == list(kwargs)
    if name == "t5":
        assert dict(result.input_kwargs)["decoder_input_ids"] == TensorSpec((2, 5), "int64",
                                                                             "cpu")
        assert result.calls_of("decoder")  # the decoder ran on the keyword input


@pytest.mark.parametrize("name", ["gpt2", "t5", "llama"])
def test_transformers_sizes_only_and_fake_agree_with_real(name: str) -> None:
    model = TRANSFORMERS[name]()
    ids, kwargs = transformer_inputs(name)
    real = trace_forward(model, ids, example_kwargs=kwargs)
    fake = trace_forward(model, ids, example_kwargs=kwargs, mode="fake")
    assert fake.mode == "fake"
    assert traced_shapes(fake) == traced_shapes(real)
    # sizes only: meta runs when nothing calls .item() (no mask given)
    dec = {k: v for k, v in kwargs.items() if k == "decoder_input_ids"}
    sized = trace_forward(model, input_size=[(2, 12)], dtypes=["long"], example_kwargs=dec)
    assert sized.mode == "meta"
    sized_out: Any = sized.outputs
    real_out: Any = real.outputs
    logits = dict(sized_out.items)["logits"]
    assert logits == TensorSpec(dict(real_out.items)["logits"].shape, "float32", "meta")


def test_meta_fails_on_attention_mask_and_auto_sizes_fall_back_to_fake() -> None:
    model = TRANSFORMERS["bart"]()  # bart's mask code calls .item() even without a mask
    result = trace_forward(model, input_size=[(2, 12)], dtypes=["long"],
                           example_kwargs={"decoder_input_ids": torch.zeros(2, 5,
                                                                             dtype=torch.long)})
    assert result.mode == "fake"
    assert any("meta forward failed" in n and ".item()" in n for n in result.notes)
    with pytest.raises(ForwardError, match=r"in meta mode.*\.item\(\).*mode='real'"):
        trace_forward(model, torch.zeros(2, 12, dtype=torch.long), mode="meta",
                      example_kwargs={"decoder_input_ids": torch.zeros(2, 5, dtype=torch.long)})


def llama_meta(**config: Any) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg: Any = LlamaConfig(**config)
    with torch.device("meta"):
        model: nn.Module = LlamaForCausalLM(cfg)
    return model


def _peak_rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def test_llama_70b_on_meta_traces_every_module_with_small_memory() -> None:
    model = llama_meta(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                       num_key_value_heads=8, intermediate_size=28672, vocab_size=128256)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS mark
        can_measure = True
    except OSError:
        can_measure = False
    before = _rss_kb()
    result = trace_forward(model, input_size=[(1, 128)], dtypes=["long"])
    peak = _peak_rss_kb()
    assert result.mode == "meta"
    assert result.uncalled == ("model.layers",)  # a ModuleList: iterated, never called
    called = {p for p, _ in result.calls}
    assert called == {p for p, _ in model.named_modules()} - {"model.layers"}
    assert all(c.outputs is not None for _, c in result.calls)
    shapes = {p: c.outputs for p, c in result.calls}
    meta = "meta"
    assert shapes["lm_head"] == TensorSpec((1, 128, 128256), "float32", meta)
    assert shapes["model.layers.79.mlp.gate_proj"] == TensorSpec((1, 128, 28672), "float32", meta)
    assert shapes["model.layers.79.mlp.down_proj"] == TensorSpec((1, 128, 8192), "float32", meta)
    assert shapes["model.layers.0.self_attn.k_proj"] == TensorSpec((1, 128, 1024), "float32",
                                                                   meta)
    assert len(result.calls_of("model.layers.42")) == 1
    assert all(p.is_meta for p in model.parameters())  # nothing materialized
    if can_measure and before is not None and peak is not None:
        assert (peak - before) / 1024 < 300, f"peak RSS grew by {(peak - before) / 1024:.0f} MB"


def test_llama_7b_meta_copy_of_meta_model_keeps_ties() -> None:
    model = llama_meta(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       intermediate_size=11008, vocab_size=32000, tie_word_embeddings=True)
    result = trace_forward(model, input_size=[(1, 16)], dtypes=["long"])
    assert dict(result.outputs.items)["logits"].shape == (1, 16, 32000)  # type: ignore
    copy_ = meta_copy(model)
    assert copy_.lm_head.weight is copy_.model.embed_tokens.weight  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# the state guard


@pytest.mark.parametrize("follow", [False, True])
def test_guard_after_success_in_train_mode_with_batchnorm_and_dropout(follow: bool) -> None:
    model = mixed_train_net()
    x = torch.randn(6, 8)
    before = state_fingerprint(model)
    hooks_before = all_hook_keys(model)
    global_before = global_hook_state()
    params = {n: (p, p.data_ptr(), p.device) for n, p in model.named_parameters()}
    result = trace_forward(model, x, follow_functions=follow)
    assert result.mode == "real"
    assert_same_state(before, state_fingerprint(model))
    assert all_hook_keys(model) == hooks_before
    assert global_hook_state() == global_before
    assert {n: (p, p.data_ptr(), p.device) for n, p in model.named_parameters()} == params
    # the test can fail: a plain train-mode forward does change the running statistics
    model(x)
    state: Any = before["state"]
    running_mean: Any = model.bn.running_mean
    assert not torch.equal(running_mean, state["bn.running_mean"][3])


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("grad", [True, False])
def test_guard_after_forward_raises_midway(grad: bool, follow: bool) -> None:
    model = mixed_train_net(fail=True)
    x = torch.randn(6, 8)
    with torch.set_grad_enabled(grad):
        before = state_fingerprint(model)
        hooks_before = all_hook_keys(model)
        global_before = global_hook_state()
        with pytest.raises(ForwardError) as info:
            trace_forward(model, x, follow_functions=follow)
        assert_same_state(before, state_fingerprint(model))
        assert torch.is_grad_enabled() is grad
    assert all_hook_keys(model) == hooks_before
    assert global_hook_state() == global_before
    message = str(info.value)
    assert "module 'out'" in message
    assert "[6, 4] float32" in message  # that call's input spec
    assert "modules that had run: " in message and "head.1" in message and "drop" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "mat1 and mat2" in str(info.value.__cause__)
    assert isinstance(info.value, TorchscopeError)


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("mode", ["real", "meta", "fake"])
def test_nothing_keeps_the_model_alive(mode: str, follow: bool) -> None:
    def run(fail: bool) -> TraceResult | str:
        model = mixed_train_net(fail=fail)
        ref: weakref.ref[nn.Module] = weakref.ref(model)
        refs.append(ref)
        try:
            return trace_forward(model, torch.randn(6, 8), mode=mode, follow_functions=follow)
        except ForwardError as err:
            return str(err)

    refs: list[weakref.ref[nn.Module]] = []
    ok = run(False)
    failed = run(True)
    gc.collect()
    assert isinstance(ok, TraceResult) and isinstance(failed, str)
    assert [r() for r in refs] == [None, None]


@pytest.mark.parametrize("mode", ["meta", "fake"])
def test_meta_and_fake_do_not_touch_the_model(mode: str) -> None:
    model = mixed_train_net()
    x = torch.randn(6, 8)
    before = state_fingerprint(model)
    params = dict(model.named_parameters())
    result = trace_forward(model, x, mode=mode)
    assert result.mode == mode
    assert_same_state(before, state_fingerprint(model))
    assert dict(model.named_parameters()) == params


def test_guard_undoes_hooks_buffers_and_flags_set_by_the_forward() -> None:
    class Meddler(nn.Module):
        count: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("count", torch.zeros(()))
            self.kept = self.lin.register_forward_hook(lambda m, a, o: None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.count = self.count + 1  # reassigns the buffer
            self.lin.register_forward_pre_hook(lambda m, a: None)
            module_mod.register_module_forward_hook(lambda m, a, o: None)
            self.kept.remove()  # removes a hook the user had
            self.lin.eval()
            torch.rand(3)  # consumes the RNG
            out: torch.Tensor = self.lin(x)
            return out

    model = Meddler().train()
    count = model.count
    before = state_fingerprint(model)
    hooks_before = all_hook_keys(model)
    global_before = global_hook_state()
    with state_guard(model):
        model(torch.zeros(1, 2))
        assert model.count is not count
    assert model.count is count
    assert_same_state(before, state_fingerprint(model))
    assert all_hook_keys(model) == hooks_before
    assert global_hook_state() == global_before
    # and the same through trace_forward, which also restores grad mode
    trace_forward(model, torch.zeros(1, 2))
    assert_same_state(before, state_fingerprint(model))
    assert global_hook_state() == global_before


def test_state_guard_restores_when_the_block_raises() -> None:
    model = mixed_train_net()
    before = state_fingerprint(model)
    with pytest.raises(ZeroDivisionError), state_guard(model):
        model(torch.randn(4, 8))
        torch.set_grad_enabled(not torch.is_grad_enabled())
        model.eval()
        raise ZeroDivisionError
    assert_same_state(before, state_fingerprint(model))


def test_lazy_model_stays_uninitialized() -> None:
    from torch.nn.parameter import UninitializedParameter

    model = examples.LazyMLP()
    hooks_before = all_hook_keys(model)
    for mode in ("auto", "real", "meta"):
        result = trace_forward(model, torch.zeros(2, 20), mode=mode)
        assert result.outputs == TensorSpec((2, 10), "float32",
                                            "meta" if mode == "meta" else "cpu")
        assert result.calls_of("0")[0].outputs.shape == (2, 256)  # type: ignore[union-attr]
        assert isinstance(model[0].weight, UninitializedParameter)
        assert type(model[0]) is nn.LazyLinear
        assert all_hook_keys(model) == hooks_before
    assert model(torch.zeros(2, 20)).shape == (2, 10)  # still initializes on its own


# ---------------------------------------------------------------------------------------------
# copies, specs and inputs


def test_meta_copy_keeps_ties_and_views_and_leaves_the_model() -> None:
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.arange(6.0)
            self.register_buffer("a", base[:4])
            self.register_buffer("b", base[2:])
            self.const = torch.ones(3)  # plain tensor attribute

    model = nn.Sequential(examples.SharedMLP(), Views())
    ids = {n: id(t) for n, t in model.state_dict(keep_vars=True).items()}
    copy_: Any = meta_copy(model)
    assert all(t.is_meta for t in copy_.state_dict(keep_vars=True).values())
    assert copy_[0][2] is copy_[0][4]
    views = copy_[1]
    assert views.a.untyped_storage() is views.b.untyped_storage()
    assert (views.a.storage_offset(), views.b.storage_offset()) == (0, 2)
    assert views.const.is_meta
    assert {n: id(t) for n, t in model.state_dict(keep_vars=True).items()} == ids
    assert not model[1].a.is_meta and not model[1].const.is_meta


def test_meta_copy_of_tied_gpt2() -> None:
    model = TRANSFORMERS["gpt2"]()
    copy_ = meta_copy(model)
    assert copy_.lm_head.weight is copy_.transformer.wte.weight  # type: ignore[union-attr]
    assert copy_.lm_head.weight.is_meta  # type: ignore[union-attr]
    assert not model.lm_head.weight.is_meta  # type: ignore[union-attr]


def test_spec_of_structures() -> None:
    @dataclasses.dataclass
    class Box:
        t: torch.Tensor
        n: int

    class Pair(NamedTuple):
        a: torch.Tensor
        b: None

    t = torch.zeros(2, 3, dtype=torch.float16)
    spec = TensorSpec((2, 3), "float16", "cpu")
    assert spec_of(t) == spec
    assert spec_of(None) is None
    assert spec_of([t, 1.5]) == SeqSpec("list", (spec, ValueSpec("1.5")))
    assert spec_of(Pair(t, None)) == SeqSpec("Pair", (spec, None))
    assert spec_of(collections.OrderedDict(x=t)) == MapSpec("OrderedDict", (("x", spec),))
    assert spec_of(Box(t, 3)) == MapSpec("Box", (("t", spec), ("n", ValueSpec("3"))))
    assert spec_of(object()) == ValueSpec("<object>")
    assert spec_of("x" * 100).repr.endswith("…")  # type: ignore[union-attr]
    assert len(spec_of("x" * 100).repr) == 40  # type: ignore[union-attr]
    assert spec_of(torch.float32) == ValueSpec("torch.float32")

    from transformers.modeling_outputs import BaseModelOutput

    out = BaseModelOutput(last_hidden_state=t)
    assert spec_of(out) == MapSpec("BaseModelOutput", (("last_hidden_state", spec),))


def test_build_inputs_dtypes_and_zeros() -> None:
    x, ids, mask = build_inputs([(2, 20), "1,128", [1, 128]], ["float32", "long", torch.bool])
    assert (x.dtype, ids.dtype, mask.dtype) == (torch.float32, torch.int64, torch.bool)
    assert tuple(ids.shape) == (1, 128) and int(ids.abs().sum()) == 0
    (single,) = build_inputs((3, 4), "half")
    assert single.dtype == torch.float16 and tuple(single.shape) == (3, 4)
    a, b = build_inputs([(1,), (2,)], ["int32"])  # one dtype for all
    assert a.dtype == b.dtype == torch.int32


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"input_size": [(2, -1)]}, r"input_size\[0\] = \(2, -1\) is not a shape"),
    ({"input_size": ["2,a"]}, r"input_size\[0\] = '2,a' is not a shape.*'1,3,224,224'"),
    ({"input_size": 5}, r"input_size = 5 is not a list of shapes.*--input-size"),
    ({"input_size": [(2, 20)], "dtypes": ["floaty"]}, r"dtypes\[0\] = 'floaty' is not a dtype"),
    ({"input_size": [(2, 20), (2,)], "dtypes": ["long", "long", "long"]},
     r"has 3 entries for 2 input sizes"),
    ({"input_size": [(2, 20)], "device": "gpu0"}, r"device = 'gpu0' is not a torch device"),
    ({"input_size": [(2, 20)], "mode": "fast"}, r"mode = 'fast' is not one of auto, real"),
    ({}, r"needs example inputs.*--input-size"),
    ({"example_inputs": torch.zeros(2, 20), "input_size": [(2, 20)]}, r"pass one of them"),
    ({"example_inputs": {"x": torch.zeros(2, 20)}}, r"example_kwargs"),
    ({"example_inputs": torch.zeros(2, 20), "dtypes": ["long"]}, r"input_size only"),
])
def test_bad_inputs_raise_input_spec_error(kwargs: dict[str, Any], match: str) -> None:
    model = examples.MLP()
    before = state_fingerprint(model)
    with pytest.raises(InputSpecError, match=match):
        trace_forward(model, **kwargs)
    assert_same_state(before, state_fingerprint(model))


def test_meta_mode_never_runs_the_model_itself() -> None:
    class Caching(nn.Module):  # caches in a plain attribute: the guard does not cover that
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.cache = x.sum()
            out: torch.Tensor = self.lin(x)
            return out

    with torch.device("meta"):
        model = Caching()
    result = trace_forward(model, input_size=[(2, 3)])
    assert result.mode == "meta"
    assert result.outputs == TensorSpec((2, 3), "float32", "meta")
    assert "cache" not in vars(model)


def test_real_mode_on_meta_model_is_an_input_error() -> None:
    with torch.device("meta"):
        model = examples.MLP()
    with pytest.raises(InputSpecError, match=r"mode = 'real' cannot run.*mode='meta'"):
        trace_forward(model, torch.zeros(2, 20), mode="real")
    # auto with tensors on a meta model runs meta
    assert trace_forward(model, torch.zeros(2, 20)).mode == "meta"


def test_device_moves_only_built_inputs() -> None:
    model = examples.MLP()
    result = trace_forward(model, input_size=[(2, 20)], device="cpu", mode="real")
    assert result.inputs == (TensorSpec((2, 20), "float32", "cpu"),)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_forward_error_for_bad_sizes_names_the_module() -> None:
    with pytest.raises(ForwardError, match=r"module 'hidden' called with \(\[2, 21\] float32\)"
                       r".*real mode.*no module had finished") as info:
        trace_forward(examples.MLP(), input_size=[(2, 21)])
    assert "(auto tried meta, fake first)" in str(info.value)
    assert info.value.__cause__ is not None


def test_failing_fake_forward_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    # FakeTensorMode logs a traceback per failing op; the ForwardError is the one report
    with pytest.raises(ForwardError, match=r"in fake mode"):
        trace_forward(examples.MLP(), input_size=[(2, 21)], mode="fake")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_meta_copy_of_lazy_model_keeps_it_lazy() -> None:
    from torch.nn.parameter import UninitializedParameter

    model = examples.LazyMLP()
    hooks_before = all_hook_keys(model)
    copy_: Any = meta_copy(model)
    assert isinstance(copy_[0].weight, UninitializedParameter)
    assert copy_[0].weight.device.type == "meta"
    copy_(torch.zeros(2, 20, device="meta"))  # the copy infers its shapes, on meta
    assert copy_[0].weight.shape == (256, 20) and copy_[0].weight.is_meta
    assert isinstance(model[0].weight, UninitializedParameter)
    assert all_hook_keys(model) == hooks_before  # the copy's hooks were its own


def describe(result: TraceResult) -> str:
    """A readable, deterministic listing of a trace (calls and flow) for golden files."""
    def spec(s: Any) -> str:
        return f"{s.shape_str()} {s.dtype} {s.device}" if isinstance(s, TensorSpec) else str(s)

    def name(path: str | None, index: int | None, end: str) -> str:
        return end if index is None else f"{path or '<root>'}#{index}"

    lines = [f"mode: {result.mode}", "calls:"]
    for path, call in result.calls:
        ins = ", ".join(spec(s) for s in call.inputs)
        lines.append(f"  {call.index:>2} {path or '<root>':<8} ({ins}) -> {spec(call.outputs)}")
    lines.append("flow:")
    for e in result.flow:
        lines.append(f"  {name(e.src_path, e.src, '<input>')} -> "
                     f"{name(e.dst_path, e.dst, '<output>')}  {spec(e.spec)}")
    lines.append(f"uncalled: {list(result.uncalled)}")
    return "\n".join(lines) + "\n"


def test_trace_of_nested_blocks_snapshot(snapshot: Callable[[str, str], None]) -> None:
    result = trace_forward(examples.NestMLP(), input_size=[(2, 20)])
    snapshot("trace_nestmlp.txt", describe(result))


def test_compiled_model_is_traced_under_its_own_names() -> None:
    model = torch.compile(examples.MLP())
    result = trace_forward(model, torch.zeros(2, 20))
    assert [p for p, _ in result.calls] == ["", "hidden", "act", "output"]
    assert any("torch.compile" in n for n in result.notes)


def test_copy_failure_falls_back_to_real() -> None:
    class Uncopyable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def __deepcopy__(self, memo: dict[int, Any]) -> Uncopyable:
            raise TypeError("cannot deepcopy this model")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.lin(x)
            return out

    result = trace_forward(Uncopyable(), input_size=[(1, 2)])
    assert result.mode == "real"
    assert any("meta copy failed (TypeError: cannot deepcopy" in n for n in result.notes)
    assert copy.copy(result) == result  # plain values: comparable
