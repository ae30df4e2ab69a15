"""The 70B Llama architecture on the meta device: no memory, for summaries and cost estimates.

    python -m torchscope summarize docs/examples/llama70b.py:build --input-size 1,128 \
        --dtype long --cost --optimizer adam --train-dtype bf16 --depth 1
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def build() -> LlamaForCausalLM:
    """LlamaForCausalLM with Llama 3 70B's shape (hidden 8192, 80 layers, 64 heads, 8 key-value
    heads, intermediate 28672, vocabulary 128256), built on meta."""
    cfg = LlamaConfig(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8, intermediate_size=28672, vocab_size=128256,
                      max_position_embeddings=8192, rope_theta=500000.0)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)
