"""A small T5 built from its configuration (no download), for keyword inputs on the command
line:

    python -m torchscope summarize docs/examples/t5.py:build \\
        --input input_ids=1,8:long --input decoder_input_ids=1,4:long

T5 takes the encoder's ``input_ids`` and the decoder's ``decoder_input_ids`` as keywords.
"""

from __future__ import annotations

from torch import nn


def build(d_model: int = 64, num_layers: int = 2, vocab_size: int = 128) -> nn.Module:
    """A ``T5ForConditionalGeneration`` of ``num_layers`` encoder and decoder blocks.

    >>> build().config.num_layers
    2
    """
    import transformers

    config = transformers.T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=16, d_ff=4 * d_model,
        num_layers=num_layers, num_decoder_layers=num_layers, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0,
    )
    return transformers.T5ForConditionalGeneration(config)
