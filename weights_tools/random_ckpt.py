"""Random-weight Whisper checkpoints in the Hugging Face layout, for shapes we cannot download.

The layer counts, mel bins, vocabulary and context lengths are the real ones of the named shape;
the width is reduced (width_scale) so tests stay small. Reduced models use 32-wide heads
(d_model 64 -> 2 heads) unless `attention_heads` is given. config_only=True writes the configs
(full width by default) and no weights, for benchmarks that build the model themselves.

The tokenizer comes from the installed model packages (see installed.tokenizer_for_vocab): large-v3,
large-v3-turbo and distil-large-v3 get the 51866-token large-v3 tokenizer (<|yue|> inserted).
Alignment heads are openai-whisper's default (every head of the second half of the decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError
from .hf_layout import Dims, default_alignment_heads, expected_shapes, sinusoids, write_hf_dir
from .tokenizer_json import default_begin_suppress_tokens, default_suppress_tokens, load_tokenizer_json


@dataclass(frozen=True)
class Shape:
    d_model: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    n_mels: int
    vocab_size: int


SHAPES: dict[str, Shape] = {
    "tiny": Shape(384, 6, 4, 4, 80, 51865),
    "tiny.en": Shape(384, 6, 4, 4, 80, 51864),
    "base": Shape(512, 8, 6, 6, 80, 51865),
    "base.en": Shape(512, 8, 6, 6, 80, 51864),
    "small": Shape(768, 12, 12, 12, 80, 51865),
    "small.en": Shape(768, 12, 12, 12, 80, 51864),
    "medium": Shape(1024, 16, 24, 24, 80, 51865),
    "medium.en": Shape(1024, 16, 24, 24, 80, 51864),
    "large-v1": Shape(1280, 20, 32, 32, 80, 51865),
    "large-v2": Shape(1280, 20, 32, 32, 80, 51865),
    "large-v3": Shape(1280, 20, 32, 32, 128, 51866),
    "large-v3-turbo": Shape(1280, 20, 32, 4, 128, 51866),
    "distil-small.en": Shape(768, 12, 12, 2, 80, 51864),
    "distil-medium.en": Shape(1024, 16, 24, 2, 80, 51864),
    "distil-large-v2": Shape(1280, 20, 32, 2, 80, 51865),
    "distil-large-v3": Shape(1280, 20, 32, 2, 128, 51866),
}
SHAPES["turbo"] = SHAPES["large-v3-turbo"]
DEFAULT_WIDTH_SCALE = 0.05  # large: 1280 -> 64


def random_dims(shape: str = "large-v3", *, width_scale: float | None = None, d_model: int | None = None,
                attention_heads: int | None = None, encoder_layers: int | None = None,
                decoder_layers: int | None = None, config_only: bool = False) -> Dims:
    """The Dims of a (reduced) shape. width_scale defaults to 1.0 for config_only, else 0.05."""
    if shape not in SHAPES:
        raise CheckpointError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    s = SHAPES[shape]
    if width_scale is None:
        width_scale = 1.0 if config_only else DEFAULT_WIDTH_SCALE
    if width_scale <= 0:
        raise CheckpointError(f"width_scale must be > 0, got {width_scale}")
    if d_model is None:
        d_model = s.d_model if width_scale == 1.0 else max(32, int(round(s.d_model * width_scale / 32)) * 32)
    if attention_heads is None:
        attention_heads = s.heads if d_model == s.d_model else max(1, d_model // 32)
    if d_model % attention_heads or (d_model // attention_heads) % 2:
        raise CheckpointError(f"d_model {d_model} must split into {attention_heads} heads of even width")
    d = Dims(d_model=d_model, encoder_layers=encoder_layers if encoder_layers is not None else s.encoder_layers,
             decoder_layers=decoder_layers if decoder_layers is not None else s.decoder_layers,
             encoder_heads=attention_heads, decoder_heads=attention_heads, encoder_ffn_dim=4 * d_model,
             decoder_ffn_dim=4 * d_model, num_mel_bins=s.n_mels, vocab_size=s.vocab_size)
    if d.encoder_layers < 1 or d.decoder_layers < 1:
        raise CheckpointError("encoder_layers and decoder_layers must be >= 1")
    return d


def random_state_dict(d: Dims, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Deterministic random weights (CPU generator): N(0, 0.02) matrices, N(0, 0.01) biases,
    layer-norm gains 1 + N(0, 0.01), sinusoidal encoder positions (as in real checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in expected_shapes(d).items():
        if k == "model.encoder.embed_positions.weight":
            t = sinusoids(d.max_source_positions, d.d_model)
        elif "layer_norm" in k and k.endswith(".weight"):
            t = 1.0 + 0.01 * torch.randn(shape, generator=g)
        elif k.endswith(".bias"):
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            t = 0.02 * torch.randn(shape, generator=g)
        sd[k] = t.to(dtype)
    return sd


def write_random_checkpoint(dst: str | Path, shape: str = "large-v3", *, width_scale: float | None = None,
                            d_model: int | None = None, attention_heads: int | None = None,
                            encoder_layers: int | None = None, decoder_layers: int | None = None, seed: int = 0,
                            dtype: str = "float16", shards: int = 1, config_only: bool = False,
                            tokenizer: str | Path | dict | None = None) -> Dims:
    """Write an HF-layout Whisper dir with random weights (or configs only). Returns its Dims.

    tokenizer: None builds it from the installed packages for the shape's vocabulary size;
    a path (tokenizer.json or its directory) or an already-loaded dict is used as given.
    """
    d = random_dims(shape, width_scale=width_scale, d_model=d_model, attention_heads=attention_heads,
                    encoder_layers=encoder_layers, decoder_layers=decoder_layers, config_only=config_only)
    if tokenizer is None:
        from .installed import tokenizer_for_vocab

        tj = tokenizer_for_vocab(d.vocab_size)
    elif isinstance(tokenizer, dict):
        tj = tokenizer
    else:
        tj = load_tokenizer_json(tokenizer)
    from .hf_layout import parse_dtype

    sd = None if config_only else random_state_dict(d, seed=seed, dtype=parse_dtype(dtype))
    write_hf_dir(dst, sd=sd, dims=d, tokenizer=tj, suppress_tokens=default_suppress_tokens(tj),
                 begin_suppress_tokens=default_begin_suppress_tokens(tj), alignment_heads=default_alignment_heads(d),
                 dtype=dtype, shards=shards)
    return d


__all__ = ["SHAPES", "Shape", "random_dims", "random_state_dict", "write_random_checkpoint"]
