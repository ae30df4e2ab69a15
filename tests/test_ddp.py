"""torchscope's verdict on parameters without gradient agrees with DistributedDataParallel
itself: ``find_unused_parameters=False`` fails at the second step exactly when torchscope
reports unused parameters (gloo, world size 1, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchscope
from torchscope import examples

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docs.examples import mha, unused  # noqa: E402

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


class TiedHead(nn.Module):
    """A language-model head sharing the embedding's weight (one Parameter, two names)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.relu(self.body(self.embed(ids))))
        return out


class Blocks(nn.Module):
    """A ModuleList that is never called itself while each of its blocks runs."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _x(*shape: int) -> Inputs:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(0)),), {}


def _ids(*shape: int, vocab: int = 20) -> Inputs:
    return (torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(0)),), {}


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100,
                                      n_positions=32))


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                      intermediate_size=128, vocab_size=100,
                                      max_position_embeddings=32))


def _t5() -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(num_layers=2, d_model=64, d_ff=128, num_heads=2,
                                               d_kv=32, vocab_size=100))  # type: ignore[call-arg,unused-ignore]


def _t5_inputs() -> Inputs:
    (ids,), _ = _ids(2, 6, vocab=100)
    return (ids,), {"decoder_input_ids": ids[:, :4]}


#: name -> (model builder, inputs builder, whether some trainable parameter gets no gradient)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], Inputs], bool]] = {
    "multihead-attention": (mha.build, lambda: _x(2, 5, 32), False),
    "discarded-output": (unused.Discarded, lambda: _x(2, 8), True),
    "detached-branch": (unused.Detached, lambda: _x(2, 8), True),
    "no-grad-branch": (unused.NoGrad, lambda: _x(2, 8), True),
    "never-called": (unused.Uncalled, lambda: _x(2, 8), True),
    "functional-weight": (unused.FunctionalWeight, lambda: _ids(2, 5, vocab=10), False),
    "tied-head": (TiedHead, lambda: _ids(2, 5), False),
    "conditional-branch": (unused.Conditional, lambda: ((torch.zeros(2, 8),), {}), True),
    "module-list": (Blocks, lambda: _x(2, 8), False),
    "MLP": (examples.MLP, lambda: _x(2, 20), False),
    "MySequential": (examples.MySequential, lambda: _x(2, 20), False),
    "NestMLP": (examples.NestMLP, lambda: _x(2, 20), False),
    "SharedMLP": (examples.SharedMLP, lambda: _x(2, 4), False),
    "FixedHiddenMLP": (examples.FixedHiddenMLP, lambda: _x(2, 20), False),
    "MyLinear": (examples.MyLinear, lambda: _x(2, 5), False),
    "gpt2": (_gpt2, lambda: _ids(2, 8, vocab=100), False),
    "bert": (_bert, lambda: _ids(2, 8, vocab=100), False),
    "t5": (_t5, _t5_inputs, False),
}

_DDP_SCRIPT = """
import json, socket, sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
sys.path[:0] = [{tests!r}, {root!r}]
from test_ddp import CASES
from torchscope.training import default_loss

sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{{port}}")
out = {{}}
try:
    for name, (build, inputs, _) in CASES.items():
        torch.manual_seed(0)
        model = DistributedDataParallel(build(), find_unused_parameters=False)
        args, kwargs = inputs()
        failed, error = False, ""
        for step in range(2):
            try:
                default_loss(model(*args, **kwargs)).backward()
            except RuntimeError as err:
                failed, error = True, str(err).splitlines()[0]
                break
        out[name] = {{"failed": failed, "error": error}}
finally:
    dist.destroy_process_group()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ddp_outcomes() -> dict[str, dict[str, Any]]:
    """Each case run for two steps under DistributedDataParallel(find_unused_parameters=False)."""
    script = _DDP_SCRIPT.format(tests=str(Path(__file__).parent), root=str(ROOT))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_fails_exactly_when_unused_parameters_are_reported(
        name: str, ddp_outcomes: dict[str, dict[str, Any]]) -> None:
    build, inputs, expected = CASES[name]
    torch.manual_seed(0)
    args, kwargs = inputs()
    report = torchscope.find_unused_parameters(build(), args, example_kwargs=kwargs)
    ddp = ddp_outcomes[name]
    assert bool(report.unused) is expected, report.unused
    assert ddp["failed"] is expected, ddp["error"]
    if expected:
        assert "parameters that were not used in producing loss" in ddp["error"]
