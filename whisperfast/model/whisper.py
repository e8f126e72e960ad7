"""The Whisper network: `encoder` + `decoder`, parameter paths as in HF checkpoints minus `model.`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder


class Whisper(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, mel: Tensor) -> Tensor:  # [B, n_mels, 3000] -> [B, 1500, d]
        return self.encoder(mel)

    @torch.no_grad()
    def prepare_decoder(self, column_major: bool) -> None:
        """Lay the decoder's weights out for decoding (same values, same parameter names and shapes).

        - Self-attention q/k/v become one [3d, d] matrix (the three weights are views of it): one matrix
          product per layer and step instead of three.
        - `column_major` (CPU): matrices are stored transposed. A decode step multiplies one row per
          sequence by each matrix, and MKL reads an [in, out] matrix about twice as fast as an [out, in]
          one for that: tiny's vocabulary projection takes 4 ms instead of 8.5 ms. The embedding lookup
          reads the same storage."""
        for m in self.decoder.modules():
            if column_major and isinstance(m, (nn.Linear, nn.Embedding)) and m is not self.decoder.embed_positions:
                m.weight = nn.Parameter(m.weight.t().contiguous().t(), requires_grad=False)
        for layer in self.decoder.layers:
            layer.self_attn.fuse_qkv(column_major)

    @property
    def dtype(self):
        return self.decoder.embed_tokens.weight.dtype

    @property
    def device(self):
        return self.decoder.embed_tokens.weight.device
