"""Static k/v cache: allocated once per (batch bucket, dtype, device), written in place.

self_k/self_v  [L, B, H, n_ctx, D]        written at `cache_position` with `index_copy_`
cross_k/cross_v [L, B, H, n_audio_ctx, D]  filled once per 30 s window by `Decoder.fill_cross`
offset         [B] long                     left padding of each row's prompt (slots < offset are masked)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StaticKVCache(nn.Module):
    def __init__(self, n_layer: int, batch: int, n_head: int, head_dim: int, n_ctx: int, n_audio_ctx: int,
                 *, dtype: torch.dtype, device: torch.device | str):
        super().__init__()
        self_shape = (n_layer, batch, n_head, n_ctx, head_dim)
        cross_shape = (n_layer, batch, n_head, n_audio_ctx, head_dim)
        self.register_buffer("self_k", torch.zeros(self_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("self_v", torch.zeros(self_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("cross_k", torch.zeros(cross_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("cross_v", torch.zeros(cross_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("offset", torch.zeros(batch, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("slots", torch.arange(n_ctx, device=device), persistent=False)
        for t in self.buffers():  # fixed addresses: CUDA graphs may replay in-place writes to them
            torch._dynamo.mark_static_address(t)

    def self_mask(self, cache_position: Tensor) -> Tensor:  # [T] -> [B, 1, T, n_ctx] additive, cache dtype
        """Causal over slots, blind to each row's left padding (a padding query sees only itself).
        Additive (0 / -inf), built once per step: a bool mask would be converted by every layer's SDPA."""
        j, t = self.slots[None, None, :], cache_position[None, :, None]
        real = j >= self.offset[:, None, None]
        seen = ((j <= t) & (real | (j == t)))[:, None]
        return torch.where(seen, 0.0, float("-inf")).to(self.self_k.dtype)
