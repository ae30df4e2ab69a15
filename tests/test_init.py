"""Initialization policies: statistics, rule order, selectors, ties, seeds, dry runs, lazy."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import torchscope
from tests.models import TRANSFORMERS, assert_same_state, gpt2, run_cli, state_fingerprint
from torchscope import examples
from torchscope.errors import InitPolicyError, TorchscopeError
from torchscope.init import (
    INITIALIZERS,
    InitReport,
    InitRuleWarning,
    InitStatus,
    apply_init,
    load_policy,
)


class Big(nn.Module):
    """One large weight (fan_in 800, fan_out 600) and a bias: enough samples for statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(800, 600)


def _p(m: nn.Module, name: str) -> torch.Tensor:
    return m.get_parameter(name).detach()


def _filled(m: nn.Module, name: str, value: float) -> bool:
    t = _p(m, name)
    return bool(torch.equal(t, torch.full_like(t, value)))


def _init_weight(spec: str, *, seed: int = 0) -> torch.Tensor:
    m = Big()
    apply_init(m, [("layer.weight", spec), ("*", "keep")], seed=seed)
    return m.layer.weight.detach()


# ---------------------------------------------------------------------------------------------
# the statistics of each initializer on a large tensor

FAN_IN, FAN_OUT = 800, 600


def test_zeros_ones_constant_are_exact() -> None:
    assert torch.equal(_init_weight("zeros"), torch.zeros(FAN_OUT, FAN_IN))
    assert torch.equal(_init_weight("ones"), torch.ones(FAN_OUT, FAN_IN))
    assert torch.equal(_init_weight("constant(42)"), torch.full((FAN_OUT, FAN_IN), 42.0))
    assert torch.equal(_init_weight("constant(val=-1.5)"), torch.full((FAN_OUT, FAN_IN), -1.5))


@pytest.mark.parametrize(
    ("spec", "mean", "std"),
    [
        ("normal", 0.0, 1.0),
        ("normal(std=0.02)", 0.0, 0.02),
        ("normal(mean=3.0, std=0.5)", 3.0, 0.5),
        ("xavier_normal", 0.0, math.sqrt(2.0 / (FAN_IN + FAN_OUT))),
        ("xavier_normal(gain=2.0)", 0.0, 2.0 * math.sqrt(2.0 / (FAN_IN + FAN_OUT))),
        ("kaiming_normal(nonlinearity='relu')", 0.0, math.sqrt(2.0 / FAN_IN)),
        ("kaiming_normal(mode='fan_out', nonlinearity='relu')", 0.0, math.sqrt(2.0 / FAN_OUT)),
    ],
)
def test_normal_family_mean_and_std(spec: str, mean: float, std: float) -> None:
    w = _init_weight(spec)
    assert abs(w.mean().item() - mean) < 5 * std / math.sqrt(w.numel())
    assert w.std().item() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize(
    ("spec", "bound"),
    [
        ("uniform(-0.1, 0.1)", 0.1),
        ("uniform(a=-2, b=2)", 2.0),
        ("xavier_uniform", math.sqrt(6.0 / (FAN_IN + FAN_OUT))),
        ("xavier_uniform(gain=3)", 3 * math.sqrt(6.0 / (FAN_IN + FAN_OUT))),
        ("kaiming_uniform(nonlinearity='relu')", math.sqrt(6.0 / FAN_IN)),
    ],
)
def test_uniform_family_bounds_and_std(spec: str, bound: float) -> None:
    w = _init_weight(spec)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound  # the whole range is used
    assert w.std().item() == pytest.approx(2 * bound / math.sqrt(12), rel=0.01)


def test_trunc_normal_stays_in_bounds() -> None:
    w = _init_weight("trunc_normal(std=1.0, a=-0.5, b=0.5)")
    assert w.min().item() >= -0.5 and w.max().item() <= 0.5
    assert w.std().item() < 0.5  # truncated: far below the untruncated std of 1
    w = _init_weight("trunc_normal(std=0.02)")
    assert w.std().item() == pytest.approx(0.02, rel=0.02)


def test_orthogonal_eye_sparse() -> None:
    w = _init_weight("orthogonal")
    torch.testing.assert_close(w @ w.T, torch.eye(FAN_OUT), atol=1e-4, rtol=0)
    w = _init_weight("orthogonal(gain=2)")
    torch.testing.assert_close(w @ w.T, 4 * torch.eye(FAN_OUT), atol=1e-3, rtol=0)
    assert torch.equal(_init_weight("eye"), torch.eye(FAN_OUT, FAN_IN))
    w = _init_weight("sparse(0.25, std=0.01)")
    zeros_per_column = (w == 0).sum(dim=0)
    assert (zeros_per_column == math.ceil(0.25 * FAN_OUT)).all()


def test_dirac_preserves_the_input_of_a_convolution() -> None:
    conv = nn.Conv2d(3, 3, 3, padding=1)
    apply_init(conv, {"weight": "dirac", "bias": "zeros"})
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(conv(x), x)


def test_every_named_initializer_is_a_torch_nn_init_function() -> None:
    for name, fn_name in INITIALIZERS.items():
        assert getattr(nn.init, fn_name).__name__ == fn_name
        assert fn_name == name + "_"


def test_trailing_underscore_names_are_accepted() -> None:
    assert torch.equal(_init_weight("zeros_"), torch.zeros(FAN_OUT, FAN_IN))
    assert torch.equal(_init_weight("constant_(2)"), torch.full((FAN_OUT, FAN_IN), 2.0))


def test_callable_initializer_from_the_chapter() -> None:
    def my_init(t: torch.Tensor) -> None:
        nn.init.uniform_(t, -10, 10)
        t *= t.abs() >= 5

    m = Big()
    report = apply_init(m, {"*.weight": my_init, "*": "keep"}, seed=0)
    w = m.layer.weight.detach()
    assert ((w == 0) | (w.abs() >= 5)).all()
    assert (w == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert report.entry("layer.weight").init == (
        "callable test_callable_initializer_from_the_chapter.<locals>.my_init"
    )


def test_reset_uses_the_modules_own_reset_and_keeps_the_rest() -> None:
    m = examples.MLP()
    nn.init.constant_(m.hidden.weight, 7.0)
    nn.init.constant_(m.hidden.bias, 8.0)
    apply_init(m, [(nn.Linear, "weight", "reset"), ("*", "keep")], seed=1)
    bound = 1 / math.sqrt(20)  # Linear.reset_parameters: kaiming_uniform(a=sqrt(5))
    assert m.hidden.weight.abs().max().item() <= bound
    assert m.hidden.weight.std().item() > 0
    assert torch.equal(m.hidden.bias, torch.full((256,), 8.0))  # put back: "keep" decides it
    twin = examples.MLP()
    apply_init(twin, [(nn.Linear, "weight", "reset"), ("*", "keep")], seed=1)
    assert torch.equal(twin.hidden.weight, m.hidden.weight)


# ---------------------------------------------------------------------------------------------
# rule order and selectors


def test_first_matching_rule_wins() -> None:
    m = examples.NestMLP()
    r = apply_init(m, [("net.0.weight", "ones"), ("*.weight", "zeros"), ("*", "keep")])
    assert _filled(m, "net.0.weight", 1)
    assert _filled(m, "net.2.weight", 0) and _filled(m, "linear.weight", 0)
    assert r.entry("net.0.weight").rule == 0 and r.entry("linear.weight").rule == 1
    assert [rule.decided for rule in r.rules] == [1, 2, 3]


def test_a_rule_shadowed_by_an_earlier_one_warns() -> None:
    m = examples.NestMLP()
    with pytest.warns(InitRuleWarning, match="all decided by earlier rules"):
        r = apply_init(m, [("*.weight", "zeros"), ("net.0.weight", "ones"), ("*", "keep")])
    assert _filled(m, "net.0.weight", 0)
    assert [(u.index, u.matched, u.decided) for u in r.unused_rules] == [(1, 1, 0)]


def test_a_rule_matching_nothing_warns_and_is_reported() -> None:
    m = examples.MLP()
    with pytest.warns(InitRuleWarning, match=r"'\*\.bais' -> zeros matches no parameter") as w:
        r = apply_init(m, {"*.bais": "zeros", "*": "keep"})
    assert w[0].filename == __file__  # points at the caller's line, not into torchscope
    assert [u.selector for u in r.unused_rules] == ["*.bais"]
    assert "matched nothing" in str(r)


def test_glob_star_crosses_dots_and_leading_star_dot_matches_the_root() -> None:
    m = examples.NestMLP()
    r = apply_init(m, {"net.*": "zeros", "*": "keep"}, dry_run=True)
    assert {e.name for e in r.entries if e.rule == 0} == {
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"
    }
    root = examples.MyLinear()
    r = apply_init(root, {"*.bias": "zeros", "*.weight": "keep"})
    assert _filled(root, "bias", 0)
    assert r.entry("bias").rule == 0


def test_regex_is_searched_and_anchors_work() -> None:
    m = examples.NestMLP()
    r = apply_init(m, {r"re:^net\.\d+\.weight$": "ones", r"re:bias": "zeros", "*": "keep"},
                   dry_run=True)
    assert {e.name for e in r.entries if e.rule == 0} == {"net.0.weight", "net.2.weight"}
    assert {e.name for e in r.entries if e.rule == 1} == {"net.0.bias", "net.2.bias",
                                                          "linear.bias"}
    assert r.entry("linear.weight").rule == 2


@pytest.mark.parametrize(
    "selector",
    [nn.Linear, "type:Linear", "type:nn.Linear", "type:torch.nn.Linear", (nn.Linear, None),
     ("Linear", None)],
)
def test_type_selectors_by_class_or_name(selector: object) -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 1))
    r = apply_init(m, [(selector, "zeros"), ("*", "keep")])
    assert {e.name for e in r.entries if e.rule == 0} == {"0.weight", "0.bias"}
    assert _filled(m, "0.weight", 0) and not _filled(m, "2.weight", 0)


def test_type_with_role_and_role_globs() -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.LSTM(4, 4))
    r = apply_init(
        m,
        [("type:Linear:bias", "zeros"), (nn.LayerNorm, "weight", "ones"),
         {"type": "LSTM", "role": "weight_*", "init": "orthogonal"}, ("*", "keep")],
        dry_run=True,
    )
    assert [e.name for e in r.entries if e.rule == 0] == ["0.bias"]
    assert [e.name for e in r.entries if e.rule == 1] == ["1.weight"]
    assert [e.name for e in r.entries if e.rule == 2] == ["2.weight_ih_l0", "2.weight_hh_l0"]


def test_type_name_matches_subclasses_like_lazy_linear() -> None:
    m = examples.LazyMLP()
    r = apply_init(m, {"type:Linear": "zeros"}, dry_run=True)
    assert all(e.rule == 0 for e in r.entries)
    assert all(e.module_type == "LazyLinear" and e.lazy and e.shape is None for e in r.entries)


def test_custom_layer_by_type_name() -> None:
    m = nn.Sequential(examples.MyLinear(5, 3), nn.Linear(3, 2))
    apply_init(m, {"type:MyLinear": "ones", "*": "keep"})
    assert _filled(m, "0.weight", 1) and not _filled(m, "1.weight", 1)


# ---------------------------------------------------------------------------------------------
# ties: initialized once


def _counting(spec: Callable[[torch.Tensor], object]) -> tuple[list[int], Callable[..., None]]:
    seen: list[int] = []

    def init(t: torch.Tensor) -> None:
        seen.append(id(t))
        spec(t)

    return seen, init


def test_shared_layer_is_initialized_once_and_aliases_are_listed() -> None:
    m = examples.SharedMLP()
    seen, init = _counting(lambda t: t.add_(1.0))
    before = _p(m, "2.weight").clone()
    r = apply_init(m, {"*": init})
    assert len(seen) == len(set(seen)) == 6  # 0.w, 0.b, 2/4.w, 2/4.b, 6.w, 6.b
    torch.testing.assert_close(_p(m, "4.weight"), before + 1)  # added once, not twice
    e = r.entry("4.weight")
    assert (e.name, e.aliases) == ("2.weight", ("4.weight",))


def test_tied_tensor_is_decided_by_the_first_rule_matching_any_name() -> None:
    m = gpt2(tie=True)
    r = apply_init(m, [("lm_head.weight", "zeros"), ("*", "keep")])
    assert _filled(m, "transformer.wte.weight", 0)
    e = r.entry("transformer.wte.weight")
    assert e.name == "lm_head.weight" and e.aliases == ("transformer.wte.weight",)
    assert e.status is InitStatus.APPLIED


def test_distinct_parameters_over_the_same_bytes_are_initialized_once() -> None:
    class TwoViews(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.zeros(4, 4)
            self.a = nn.Parameter(base)
            self.b = nn.Parameter(base)  # another Parameter object, same storage

    m = TwoViews()
    seen, init = _counting(lambda t: t.add_(1.0))
    r = apply_init(m, {"*": init})
    assert len(seen) == 1
    assert _filled(m, "b", 1) and _filled(m, "a", 1)
    assert (r.entry("b").name, r.entry("b").aliases) == ("a", ("b",))


def test_partially_overlapping_parameters_are_separate_and_later_wins() -> None:
    class Overlap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.zeros(10)
            self.a = nn.Parameter(base[0:6])
            self.b = nn.Parameter(base[4:10])

    m = Overlap()
    r = apply_init(m, {"a": "ones", "b": "constant(2)"})
    assert [(e.name, e.aliases) for e in r.entries] == [("a", ()), ("b", ())]
    assert _p(m, "a").tolist() == [1, 1, 1, 1, 2, 2]  # bytes 4..5 belong to both: b came later
    assert _filled(m, "b", 2)


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformers_every_unique_tensor_once_with_seed(name: str) -> None:
    build = TRANSFORMERS[name]
    m = build()
    unique = {id(p) for p in m.parameters()}
    seen, init = _counting(lambda t: nn.init.normal_(t, std=0.02))
    rng = torch.get_rng_state()
    r = apply_init(m, {"*": init}, seed=3, strict=True)
    assert torch.equal(torch.get_rng_state(), rng)
    assert len(seen) == len(set(seen)) == len(r.entries) == len(unique)
    for group in torchscope.find_tied(m):
        params = [m.get_parameter(n) for n in group.names if _is_param(m, n)]
        assert all(torch.equal(params[0], p) for p in params)
    twin = build()
    apply_init(twin, {"*": lambda t: nn.init.normal_(t, std=0.02)}, seed=3)
    for (n, p), (_, q) in zip(m.named_parameters(), twin.named_parameters()):
        assert torch.equal(p, q), n


def _is_param(m: nn.Module, name: str) -> bool:
    try:
        m.get_parameter(name)
    except AttributeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# seeds, dry runs, strict mode, side effects


POLICY = {"*.weight": "xavier_uniform", "*.bias": "normal(std=0.1)"}


def test_seed_is_reproducible_and_leaves_the_global_rng_untouched() -> None:
    a, b, c = examples.MLP(), examples.MLP(), examples.MLP()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    apply_init(a, POLICY, seed=5)
    apply_init(b, POLICY, seed=5)
    apply_init(c, POLICY, seed=6)
    assert torch.equal(torch.rand(3), expected_next)  # the global stream was not consumed
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(),
                                      c.named_parameters()):
        assert torch.equal(p, q), n
        assert not torch.equal(p, r), n


def test_seed_also_covers_reset_and_callables() -> None:
    policy = [("hidden.*", "reset"), ("*", lambda t: t.copy_(torch.randn_like(t)))]
    a, b = examples.MLP(), examples.MLP()
    apply_init(a, policy, seed=9)
    apply_init(b, policy, seed=9)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_without_seed_the_global_rng_is_used() -> None:
    torch.manual_seed(0)
    a = examples.MLP()
    apply_init(a, POLICY)
    torch.manual_seed(0)
    b = examples.MLP()
    apply_init(b, POLICY)
    assert torch.equal(a.hidden.weight, b.hidden.weight)


@pytest.mark.parametrize("build", [examples.MLP, examples.SharedMLP, examples.NestMLP, gpt2])
def test_dry_run_changes_nothing(build: Callable[[], nn.Module]) -> None:
    m = build()
    before = state_fingerprint(m)
    r = apply_init(m, {"*.weight": "normal(std=0.02)", "*": "zeros"}, seed=0, dry_run=True)
    assert_same_state(before, state_fingerprint(m))
    assert r.dry_run and all(e.status is InitStatus.PLANNED for e in r.entries)


def test_dry_run_on_a_lazy_model_adds_no_hook() -> None:
    # tests.models.state_fingerprint cannot read the shape of a lazy tensor: compare by hand
    m = examples.LazyMLP()
    hooks = [len(mod._forward_pre_hooks) for mod in m.modules()]
    rng = torch.get_rng_state()
    r = apply_init(m, {"*": "zeros"}, seed=0, dry_run=True)
    assert [len(mod._forward_pre_hooks) for mod in m.modules()] == hooks
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(e.status is InitStatus.PLANNED and e.lazy for e in r.entries)
    m(torch.randn(2, 20))
    assert not _filled(m, "0.bias", 0)  # nothing was deferred either


def test_apply_keeps_training_flags_grad_mode_and_hooks() -> None:
    m = examples.NestMLP()
    m.net.eval()
    before = state_fingerprint(m)
    apply_init(m, {"*": "zeros"}, seed=0)
    after = state_fingerprint(m)
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert torch.is_grad_enabled()
    assert all(p.requires_grad for p in m.parameters())
    assert all(p.grad is None for p in m.parameters())


def test_strict_raises_before_any_change_naming_unmatched() -> None:
    m = examples.MLP()
    before = state_fingerprint(m)
    with pytest.raises(InitPolicyError, match=r"strict=True: 2 parameter\(s\) matched no rule: "
                       r"hidden\.bias, output\.bias"):
        apply_init(m, {"*.weight": "zeros"}, strict=True)
    assert_same_state(before, state_fingerprint(m))
    r = apply_init(m, {"*.weight": "zeros"})
    assert r.unmatched == ("hidden.bias", "output.bias")
    assert r.entry("hidden.bias").status is InitStatus.UNMATCHED


def test_meta_tensors_are_planned_and_checked() -> None:
    with torch.device("meta"):
        m = examples.NestMLP()
    r = apply_init(m, {"*.weight": "xavier_uniform", "*.bias": "zeros"}, seed=0)
    assert all(e.status is InitStatus.META and e.device == "meta" for e in r.entries)
    with pytest.raises(InitPolicyError, match=r"eye cannot initialize net\.0\.bias"):
        apply_init(m, {"*": "eye"})


# ---------------------------------------------------------------------------------------------
# lazy layers


def test_lazy_parameters_are_deferred_until_materialized() -> None:
    m = examples.LazyMLP()
    hooks_before = {n: len(mod._forward_pre_hooks) for n, mod in m.named_modules()}
    r = apply_init(m, {"*.weight": "ones", "*.bias": "zeros"})
    assert all(e.status is InitStatus.DEFERRED for e in r.entries)
    assert set(r.deferred) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert len(m[0]._forward_pre_hooks) == hooks_before["0"] + 1
    m(torch.randn(2, 20))
    assert _filled(m, "0.weight", 1) and _filled(m, "0.bias", 0)
    assert _p(m, "0.weight").shape == (256, 20)
    assert _filled(m, "2.weight", 1) and _filled(m, "2.bias", 0)
    # both the module's own hook and ours are gone
    assert all(len(mod._forward_pre_hooks) == 0 for mod in m.modules())


def test_lazy_deferral_is_reproducible_with_a_seed() -> None:
    rng = torch.get_rng_state()
    models = []
    for _ in range(2):
        m = examples.LazyMLP()
        apply_init(m, {"*.weight": "kaiming_normal(nonlinearity='relu')", "*": "zeros"}, seed=4)
        models.append(m)
    assert torch.equal(torch.get_rng_state(), rng)
    x = torch.randn(3, 20)
    for m in models:
        m(x)
    assert torch.equal(_p(models[0], "0.weight"), _p(models[1], "0.weight"))
    assert torch.equal(_p(models[0], "2.weight"), _p(models[1], "2.weight"))
    assert _p(models[0], "0.weight").std().item() == pytest.approx(math.sqrt(2 / 20), rel=0.05)


def test_lazy_reset_is_deferred_and_seeded() -> None:
    a, b = examples.LazyMLP(), examples.LazyMLP()
    x = torch.randn(2, 20)
    for global_seed, m in ((1, a), (2, b)):
        torch.manual_seed(global_seed)  # different global streams: only seed= decides
        apply_init(m, {"0.*": "reset", "*": "keep"}, seed=11)
        m(x)
    assert torch.equal(_p(a, "0.weight"), _p(b, "0.weight"))
    assert torch.equal(_p(a, "0.bias"), _p(b, "0.bias"))
    assert _p(a, "0.weight").abs().max().item() <= 1 / math.sqrt(20)


def test_json_style_lists_are_rules() -> None:
    policy = json.loads('[["*.weight", "ones"], [["Linear", "bias"], "zeros"], '
                        '["Linear", "weight", "keep"]]')
    m = examples.MLP()
    with pytest.warns(InitRuleWarning, match="all decided by earlier rules"):
        r = apply_init(m, policy)
    assert _filled(m, "hidden.weight", 1) and _filled(m, "output.bias", 0)
    assert [rule.selector for rule in r.rules] == ["*.weight", "type:Linear:bias",
                                                   "type:Linear:weight"]


def test_lazy_initializer_that_does_not_fit_fails_at_materialization() -> None:
    m = examples.LazyMLP()
    apply_init(m, {"0.weight": "dirac", "*": "keep"})
    with pytest.raises(InitPolicyError, match=r"dirac cannot initialize 0\.weight"):
        m(torch.randn(2, 20))
    # the check ran before any change, and our hook is gone: the next forward works
    # (layer 2 still has its own lazy hook: the failed forward never reached it)
    assert len(m.get_submodule("0")._forward_pre_hooks) == 0
    assert _p(m, "0.weight").shape == (256, 20)
    assert m(torch.randn(2, 20)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# errors, always before any change


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("xavier", r"unknown initializer 'xavier'; did you mean 'xavier_normal'"),
        ("kaiming", r"unknown initializer 'kaiming'"),
        ("normal(stdd=0.02)", r"bad arguments in initializer 'normal\(stdd=0.02\)'.*normal takes "
                              r"mean, std"),
        ("uniform(1, 2, 3, 4, 5)", r"bad arguments"),
        ("normal(std=x)", r"not a literal"),
        ("normal(*a)", r"not a literal"),
        ("uniform(", r"not a name or a call"),
        ("__import__('os').system('true')", r"not a plain name or call"),
        ("torch.nn.init.zeros_", r"not a plain name or call"),
        ("normal(generator=None)", r"may not set 'generator'"),
        ("zeros(tensor=1)", r"may not set 'tensor'"),
        ("keep(1)", r"'keep' takes no arguments"),
        ("kaiming_normal(mode='fan_x')", r"kaiming_normal\(mode='fan_x'\) cannot initialize"),
        ("normal(std='big')", r"cannot initialize"),
        (42, r"initializer 42 is a int"),
    ],
)
def test_bad_initializers_fail_before_any_change(spec: object, message: str) -> None:
    m = examples.MLP()
    before = state_fingerprint(m)
    with pytest.raises(InitPolicyError, match=message):
        apply_init(m, {"*.bias": "zeros", "*.weight": spec})
    assert_same_state(before, state_fingerprint(m))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"*": "eye"}, r"eye cannot initialize hidden\.bias \(shape \[256\], float32\)"),
        ({"*.bias": "xavier_uniform"}, r"fewer than 2 dimensions"),
        ({"re:(": "zeros"}, r"not a valid regular expression"),
        ({"": "zeros"}, r"empty pattern"),
        ({3: "zeros"}, r"selector 3 is not a pattern"),
        ({int: "zeros"}, r"module type int is not an nn.Module subclass"),
        ({(nn.Linear, "a.b"): "zeros"}, r"role 'a.b' is not a parameter name"),
        ([("*", "zeros", 1, 2)], r"policy rule #0 .* is not a \(selector, initializer\) pair"),
        ([{"match": "*", "int": "zeros"}], r"unknown key\(s\) 'int'"),
        ([{"match": "*"}], r"has no 'init'"),
        ([{"match": "*", "type": "Linear", "init": "zeros"}], r"exactly one of 'match'"),
        ([{"match": "*", "role": "bias", "init": "zeros"}], r"'role' goes with 'type'"),
        ("zeros", r"policy 'zeros' is a str"),
        (None, r"policy None is a NoneType"),
    ],
)
def test_bad_policies_fail_before_any_change(policy: object, message: str) -> None:
    m = examples.MLP()
    before = state_fingerprint(m)
    with pytest.raises(InitPolicyError, match=message):
        apply_init(m, policy)  # type: ignore[arg-type]
    assert_same_state(before, state_fingerprint(m))


def test_reset_without_reset_parameters_is_an_error() -> None:
    m = nn.Sequential(examples.MyLinear(), nn.ReLU())
    with pytest.raises(InitPolicyError, match=r"'reset' needs MyLinear\.reset_parameters\(\)"):
        apply_init(m, {"*": "reset"})


def test_bad_callables_and_seeds() -> None:
    m = examples.MLP()
    with pytest.raises(InitPolicyError, match="cannot be called with one tensor"):
        apply_init(m, {"*": lambda a, b: None})
    with pytest.raises(InitPolicyError, match=r"seed=-1 is not an integer"):
        apply_init(m, {"*": "keep"}, seed=-1)
    with pytest.raises(InitPolicyError, match=r"seed='0' is not an integer"):
        apply_init(m, {"*": "keep"}, seed="0")  # type: ignore[arg-type]
    with pytest.raises(InitPolicyError, match=r"needs an nn.Module, got dict"):
        apply_init({}, {"*": "keep"})  # type: ignore[arg-type]


def test_a_raising_callable_is_reported_with_the_tensor_and_grad_mode_restored() -> None:
    def boom(t: torch.Tensor) -> None:
        raise ValueError("no")

    m = examples.MLP()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(InitPolicyError, match=r"callable .*boom raised ValueError on "
                       r"output\.weight: no; every tensor was put back as it was"):
        apply_init(m, [("hidden.*", "zeros"), ("output.weight", boom), ("*", "keep")])
    # all or nothing: the zeros of the rule before the raising callable are undone
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.is_grad_enabled()
    assert issubclass(InitPolicyError, TorchscopeError)


# ---------------------------------------------------------------------------------------------
# policy files


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_policy_reads_rules_in_order(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[[rule]]
type = "Linear"
role = "bias"
init = "zeros"

[[rule]]
match = "re:^net\\\\."
init = "normal(std=0.02)"

[[rule]]
match = "*"
init = "keep"
""")
    rules = load_policy(path)
    assert rules == [
        {"type": "Linear", "role": "bias", "init": "zeros"},
        {"match": r"re:^net\.", "init": "normal(std=0.02)"},
        {"match": "*", "init": "keep"},
    ]
    m = examples.NestMLP()
    r = apply_init(m, path, seed=0)
    assert _filled(m, "linear.bias", 0) and _filled(m, "net.0.bias", 0)
    assert r.entry("net.0.weight").init == "normal(std=0.02)"
    assert r.entry("linear.weight").status is InitStatus.KEPT
    assert apply_init(examples.NestMLP(), str(path), seed=0).to_dict() == r.to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\nmatch = 1", r"is not valid TOML"),
        ('seed = 1\n[[rule]]\nmatch = "*"\ninit = "zeros"\n', r"unknown top-level key\(s\) 'seed'"),
        ("", r"has no \[\[rule\]\] tables"),
        ('[[rule]]\nmatch = "*"\ninit = 3\n', r"rule #0 init = 3 is a int; quote it"),
        ('[[rule]]\nmatch = "*"\n', r"rule #0 .* has no 'init'"),
        ('[[rule]]\ninit = "zeros"\n[[rule]]\npattern = "*"\ninit = "zeros"\n',
         r"rule #0 .* needs exactly one of"),
        ("rule = 3\n", r"has no \[\[rule\]\] tables"),
    ],
)
def test_bad_policy_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InitPolicyError, match=message):
        load_policy(_write(tmp_path, text))


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InitPolicyError, match=r"policy file '.*nope\.toml' does not exist"):
        load_policy(tmp_path / "nope.toml")


def test_bad_initializer_in_a_file_is_named_by_apply(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[rule]]\nmatch = "*"\ninit = "xavier_unifrom"\n')
    with pytest.raises(InitPolicyError, match=r"did you mean 'xavier_uniform'"):
        apply_init(examples.MLP(), load_policy(path))


# ---------------------------------------------------------------------------------------------
# the report and its rendering


def _shared_report() -> InitReport:
    m = examples.SharedMLP()
    with pytest.warns(InitRuleWarning):
        return apply_init(
            m,
            [("type:Linear:weight", "kaiming_normal(mode='fan_out', nonlinearity='relu')"),
             ("0.bias", "zeros"), ("*.bais", "ones"), ("re:^6\\.", "keep")],
            dry_run=True,
            seed=0,
        )


def test_report_records_are_plain_and_json_ready() -> None:
    r = _shared_report()
    data = json.loads(json.dumps(r.to_dict()))
    assert data["unmatched"] == ["2.bias"]
    assert data["unused_rules"] == [2]
    assert data["entries"][2]["aliases"] == ["4.weight"]
    assert data["entries"][2]["shape"] == [8, 8]
    assert data["entries"][2]["status"] == "planned"
    with pytest.raises(AttributeError):
        r.seed = 1  # type: ignore[misc]
    assert repr(r) == "<InitReport 6 tensors (4 planned, 1 unmatched, 1 kept), 4 rules>"
    with pytest.raises(KeyError, match="no parameter named 'nope'"):
        r.entry("nope")


def test_text_rendering_snapshot(snapshot: Callable[[str, str], None]) -> None:
    text = str(_shared_report())
    # plain text is never cut: the long initializer of rule #0 stays whole
    assert "kaiming_normal(mode='fan_out', nonlinearity='relu')" in text
    snapshot("init_shared_text.txt", text)


def test_rich_and_markdown_rendering_snapshot(snapshot: Callable[[str, str], None]) -> None:
    from torchscope.rendering import make_console
    from torchscope.rendering._init import render_init

    r = _shared_report()
    buf = io.StringIO()
    make_console(file=buf, width=100, color=False).print(r)
    assert max(len(line) for line in buf.getvalue().splitlines()) <= 100
    snapshot("init_shared_rich.txt", buf.getvalue())
    snapshot("init_shared_markdown.md", render_init(r, fmt="markdown"))


def test_long_names_are_never_cut() -> None:
    # guards: the text plan elided long qualified names in the middle ("bert.enc…dense.bias")
    from torchscope.rendering._init import render_init_text

    m = TRANSFORMERS["bert"]()
    r = apply_init(m, {"*": "keep"}, dry_run=True)
    stats = {e.name: (0.123456, 1.5) for e in r.entries}
    text = render_init_text(r, stats=stats)
    assert "…" not in text
    assert all(e.name in text for e in r.entries)


# ---------------------------------------------------------------------------------------------
# the command line


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("init", *args)


def _cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchscope", "init", *args],
                          capture_output=True, text=True, check=False, timeout=120)


POLICY_TOML = '[[rule]]\nmatch = "*.weight"\ninit = "normal(std=0.02)"\n' \
              '[[rule]]\nmatch = "*.bias"\ninit = "zeros"\n'


def test_cli_prints_the_plan(tmp_path: Path, snapshot: Callable[[str, str], None]) -> None:
    path = _write(tmp_path, POLICY_TOML)
    out = _cli("torchscope.examples:NestMLP", "--policy", str(path), "--seed", "0",
               "--format", "text")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    snapshot("init_cli_nestmlp.txt", out.stdout)


def test_cli_check_stats_json(tmp_path: Path) -> None:
    path = _write(tmp_path, POLICY_TOML)
    out = _cli("torchscope.examples:NestMLP", "--policy", str(path), "--seed", "0",
               "--check-stats", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["dry_run"] is True and data["seed"] == 0
    for e in data["entries"]:
        if e["name"].endswith("bias"):
            assert e["mean"] == 0 and e["std"] == 0
        else:
            assert e["std"] == pytest.approx(0.02, rel=0.25)
    again = _cli("torchscope.examples:NestMLP", "--policy", str(path), "--seed", "0",
                 "--check-stats", "--format", "json")
    assert json.loads(again.stdout) == data  # the seed makes the statistics reproducible


def test_cli_lazy_model_stats_are_unknown(tmp_path: Path) -> None:
    path = _write(tmp_path, POLICY_TOML)
    out = _cli("torchscope.examples:LazyMLP", "--policy", str(path), "--check-stats",
               "--format", "text")
    assert out.returncode == 0, out.stderr
    assert "unknown (lazy)" in out.stdout and "unknown  unknown" in out.stdout
    assert "add --input-size" in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 100


def test_cli_input_size_materializes_the_copy_for_stats(tmp_path: Path) -> None:
    path = _write(tmp_path, POLICY_TOML)
    args = ("torchscope.examples:LazyMLP", "--policy", str(path), "--check-stats",
            "--input-size", "2,20", "--seed", "1", "--format", "json")
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    stds = {e["name"]: e["std"] for e in data["entries"]}
    assert stds["0.bias"] == 0 and stds["2.bias"] == 0
    assert stds["0.weight"] == pytest.approx(0.02, rel=0.1)  # 5,120 samples of normal(0.02)
    assert all(e["shape"] is None and e["lazy"] for e in data["entries"])  # the plan: the model
    assert json.loads(_cli(*args).stdout) == data


def test_cli_input_size_needs_check_stats(tmp_path: Path) -> None:
    path = _write(tmp_path, POLICY_TOML)
    out = _cli("torchscope.examples:LazyMLP", "--policy", str(path), "--input-size", "2,20")
    assert out.returncode == 2
    assert "--input-size and --dtype go with --check-stats" in out.stderr


def test_cli_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    # (one run as a real process: the exit code and stderr of the program itself)
    out = _cli_process("torchscope.examples:MLP", "--policy", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr
    path = _write(tmp_path, '[[rule]]\nmatch = "*"\ninit = "eye"\n')
    out = _cli("torchscope.examples:MLP", "--policy", str(path))
    assert out.returncode == 2
    assert "eye cannot initialize hidden.bias" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_unused_rule_shown_in_plan_not_as_python_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[rule]]\nmatch = "*.wieght"\ninit = "zeros"\n')
    out = _cli("torchscope.examples:MLP", "--policy", str(path), "--format", "text")
    assert out.returncode == 0
    assert "matched nothing" in out.stdout and "unmatched" in out.stdout
    assert "InitRuleWarning" not in out.stderr


def test_init_stats_measures_a_copy_and_leaves_the_model_alone() -> None:
    # guards: the statistics of --check-stats were computed by the command line, with no
    # Python function to get them; the model itself must stay as it was
    model = examples.MLP()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torchscope.init_stats(model, {"*.weight": "normal(std=0.02)", "*.bias": "zeros"},
                                   seed=0)
    stats = {name: (mean, std) for name, mean, std in report.stats}
    assert stats["hidden.bias"] == (0.0, 0.0)
    mean, std = stats["hidden.weight"]
    assert mean is not None and std is not None and abs(std - 0.02) < 0.002
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert "mean" in torchscope.render(report, "text")


def test_init_stats_without_a_seed_leaves_the_global_rng_alone() -> None:
    # guards: init_stats without a seed drew its initial values from the caller's global RNG,
    # though it only measures a copy (a lazy copy's forward drew from it too)
    for model, sizes in ((examples.MLP(), None), (examples.LazyMLP(), [(2, 20)])):
        torch.manual_seed(0)
        a = torch.rand(3)
        torch.manual_seed(0)
        torchscope.init_stats(model, {"*": "normal"}, input_size=sizes)
        b = torch.rand(3)
        assert torch.equal(a, b)
