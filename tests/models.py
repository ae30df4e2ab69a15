"""Shared model builders for tests: transformers architectures from small offline configs;
and the command line run in-process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.parameter import is_lazy


def gpt2(tie: bool = True) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000,
                                      n_positions=128, tie_word_embeddings=tie,
                                      bos_token_id=0, eos_token_id=0))


def bert() -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                      intermediate_size=128, vocab_size=1000,
                                      max_position_embeddings=128))


def t5(tie: bool = True) -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(num_layers=2, d_model=64, d_ff=128, num_heads=2,
                                               d_kv=32, vocab_size=1000,
                                               tie_word_embeddings=tie))  # type: ignore[call-arg]


def albert() -> nn.Module:
    from transformers import AlbertConfig, AlbertForMaskedLM

    return AlbertForMaskedLM(AlbertConfig(num_hidden_layers=2, hidden_size=64,
                                          num_attention_heads=2, intermediate_size=128,
                                          embedding_size=32, vocab_size=1000,
                                          max_position_embeddings=128))


def llama(tie: bool = False) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1,
                                        intermediate_size=128, vocab_size=1000,
                                        max_position_embeddings=128,
                                        tie_word_embeddings=tie))


def bart() -> nn.Module:
    from transformers import BartConfig, BartForConditionalGeneration

    return BartForConditionalGeneration(BartConfig(encoder_layers=1, decoder_layers=1, d_model=64,
                                                   encoder_attention_heads=2,
                                                   decoder_attention_heads=2,
                                                   encoder_ffn_dim=128, decoder_ffn_dim=128,
                                                   vocab_size=1000, max_position_embeddings=128))


#: name -> builder, for ``pytest.mark.parametrize``
TRANSFORMERS: dict[str, Callable[[], nn.Module]] = {
    "gpt2": gpt2,
    "gpt2-untied": lambda: gpt2(tie=False),
    "bert": bert,
    "t5": t5,
    "t5-untied": lambda: t5(tie=False),
    "albert": albert,
    "llama": llama,
    "llama-tied": lambda: llama(tie=True),
    "bart": bart,
}


def unique_storage_numel(model: nn.Module) -> int:
    """Brute force: count each distinct element address of every parameter once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for _, p in model.named_parameters(remove_duplicate=False):
        base = p.untyped_storage().data_ptr()
        start = int(p.storage_offset())
        for i in range(p.numel()):
            key = (base, (start + i) * p.element_size())
            if key not in seen:
                seen.add(key)
                total += 1
    return total


def state_fingerprint(model: nn.Module) -> dict[str, object]:
    """Everything the no-side-effect promise covers, in a comparable form."""
    return {
        "state": {k: (v.device, v.dtype, None if is_lazy(v) else v.shape,
                      None if is_lazy(v) or v.device.type == "meta" else v.clone())
                  for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for n, m in model.named_modules()},
        "rng": torch.get_rng_state(),
        "grad": torch.is_grad_enabled(),
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    """Assert two :func:`state_fingerprint` results are identical (bit-for-bit tensors)."""
    bs, as_ = before["state"], after["state"]
    assert isinstance(bs, dict) and isinstance(as_, dict)
    assert bs.keys() == as_.keys()
    for k in bs:
        bd, bt, bsh, bv = bs[k]
        ad, at, ash, av = as_[k]
        assert (bd, bt, bsh) == (ad, at, ash), k
        if bv is not None:
            assert torch.equal(bv, av), f"{k} changed"
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert torch.equal(before["rng"], after["rng"])  # type: ignore[arg-type]
    assert before["grad"] == after["grad"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m torchscope ARGS`` run in this process (from ``cwd``): its stdout, stderr and
    exit code, as a finished process would give them."""
    from torchscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["torchscope", *args], code, out.getvalue(),
                                       err.getvalue())
