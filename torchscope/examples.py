"""Small reference models from the "deep learning computation" chapter.

Used by the CLI default (``python -m torchscope summarize`` summarizes :class:`MLP`), the README
and the tests. Every class builds with no arguments, so each one is a valid CLI target, e.g.
``torchscope.examples:NestMLP``.

>>> import torch
>>> from torchscope.examples import MLP
>>> MLP()(torch.zeros(2, 20)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "MLP",
    "CenteredLayer",
    "FixedHiddenMLP",
    "LazyMLP",
    "LongNames",
    "MyLinear",
    "MySequential",
    "NestMLP",
    "SharedMLP",
    "fsdp_mlp",
]


class MLP(nn.Module):
    """The chapter's multilayer perceptron: Linear(20, 256) -> ReLU -> Linear(256, 10).

    Its ``state_dict`` keys (``hidden.weight`` …) match the chapter's ``mlp.params`` file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(20, 256)
        self.act = nn.ReLU()
        self.output = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.output(self.act(self.hidden(x)))
        return out


class MySequential(nn.Module):
    """The chapter's hand-written Sequential: blocks kept in ``_modules`` under ``"0"``, ``"1"``…

    With no blocks given it holds the MLP's layers.
    """

    def __init__(self, *args: nn.Module) -> None:
        super().__init__()
        if not args:
            args = (nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
        for idx, module in enumerate(args):
            self._modules[str(idx)] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._modules.values():
            assert block is not None
            x = block(x)
        return x


class FixedHiddenMLP(nn.Module):
    """A constant tensor attribute (neither parameter nor buffer) and a layer used twice.

    Its forward loops on a data-dependent condition (``while X.abs().sum() > 1``), which cannot
    run on the meta device: tracing it needs real (or fake) tensors.
    """

    def __init__(self) -> None:
        super().__init__()
        # Constant "parameter": not trained, not saved in state_dict, not moved by .to().
        self.rand_weight = torch.rand((20, 20), requires_grad=False)
        self.linear = nn.Linear(20, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = F.relu(torch.mm(x, self.rand_weight) + 1)
        x = self.linear(x)  # the same layer again: its parameters are shared by both calls
        while x.abs().sum() > 1:
            x = x / 2
        return x.sum()


class NestMLP(nn.Module):
    """Blocks made of blocks: a Sequential inside a custom module, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU()
        )
        self.linear = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(self.net(x))
        return out


class SharedMLP(nn.Sequential):
    """The chapter's tied layer: one ``Linear(8, 8)`` at positions 2 and 4 of a Sequential.

    Input features: 4.
    """

    def __init__(self) -> None:
        shared = nn.Linear(8, 8)
        super().__init__(
            nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1)
        )


class LazyMLP(nn.Sequential):
    """Deferred initialization: LazyLinear(256) -> ReLU -> LazyLinear(10); shapes unknown yet."""

    def __init__(self) -> None:
        super().__init__(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


class CenteredLayer(nn.Module):
    """A custom layer without parameters: subtracts the mean from its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean()


class MyLinear(nn.Module):
    """A custom fully connected layer with its own ``weight`` (in_units, units) and ``bias``."""

    def __init__(self, in_units: int = 5, units: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units))
        self.bias = nn.Parameter(torch.randn(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.matmul(x, self.weight) + self.bias)


class DecoderLayerWithAnExtremelyDescriptiveTypeName(nn.Module):
    """A residual feed-forward block that also returns its key and value (GPT-2 style)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.key_value_projection_for_the_attention_cache = nn.Linear(width, 2 * width)
        self.position_wise_feed_forward_network = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        key, value = self.key_value_projection_for_the_attention_cache(x).chunk(2, dim=-1)
        return x + self.position_wise_feed_forward_network(x), (key, value)


class LongNames(nn.Module):
    """Long module and type names, wide shapes and nested outputs: what tables must not cut.

    Input ``[batch, seq, 4096]``; output ``{logits: [batch, seq, 40960], past_key_values:
    (([…], […]), ([…], […]))}`` like a transformers causal LM.

    >>> out = LongNames()(torch.zeros(1, 2, 4096))
    >>> out["logits"].shape, len(out["past_key_values"])
    (torch.Size([1, 2, 40960]), 2)
    """

    def __init__(self, hidden_size: int = 4096, width: int = 64, vocab_size: int = 40960,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.input_projection_from_hidden_states = nn.Linear(hidden_size, width)
        self.decoder_layers_with_long_names = nn.ModuleList(
            DecoderLayerWithAnExtremelyDescriptiveTypeName(width) for _ in range(num_layers)
        )
        self.final_layer_norm_before_the_head = nn.LayerNorm(width)
        self.language_model_head_over_the_vocabulary = nn.Linear(width, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> dict[str, object]:
        x = self.input_projection_from_hidden_states(hidden_states)
        past = []
        for layer in self.decoder_layers_with_long_names:
            x, key_value = layer(x)
            past.append(key_value)
        logits = self.language_model_head_over_the_vocabulary(
            self.final_layer_norm_before_the_head(x))
        return {"logits": logits, "past_key_values": tuple(past)}


def fsdp_mlp() -> nn.Module:
    """The :class:`MLP`, sharded with FSDP2 when a default process group exists.

    Under ``torchrun`` each Linear becomes its own FSDP unit and the root a third one, so every
    rank holds a shard of each weight (``hidden.weight`` [256, 20] is [128, 20] on each of two
    ranks). Without a process group it is the plain MLP.

    >>> type(fsdp_mlp()).__name__  # no process group here
    'MLP'
    """
    import torch.distributed as dist

    model = MLP()
    if not (dist.is_available() and dist.is_initialized()):
        return model
    from torch.distributed.fsdp import fully_shard

    if torch.cuda.is_available():
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    fully_shard(model.hidden)
    fully_shard(model.output)
    fully_shard(model)
    return model
