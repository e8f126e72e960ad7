"""Static k/v cache: allocated once per (batch bucket, dtype, device), written in place.

One independent tensor per layer and kind (not views of one [L, ...] tensor): inductor does not
re-inplace a write into a view of a graph input, so a stacked cache would be rewritten whole every step.

self_k[i]/self_v[i]   [B, H, n_ctx, D]        layer i, written at `cache_position` with `index_copy_`
cross_k[i]/cross_v[i] [B / group, H, n_audio_ctx, D]  layer i, filled once per 30 s window by `Decoder.fill_cross`
                      (a cache of `group` rows per window, for beams or best_of samples, holds each window once:
                      rows w*group .. w*group+group-1 attend to cross row w)
offset                [B] long                left padding of each row's prompt (slots < offset are masked)
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

KINDS = ("self_k", "self_v", "cross_k", "cross_v")


class StaticKVCache(nn.Module):
    def __init__(self, n_layer: int, batch: int, n_head: int, head_dim: int, n_ctx: int, n_audio_ctx: int,
                 *, dtype: torch.dtype, device: torch.device | str, group: int = 1):
        super().__init__()
        if batch % group:
            raise ValueError(f"a cache of {batch} rows cannot hold groups of {group}")
        for kind in KINDS:
            rows, n = (batch, n_ctx) if kind.startswith("self") else (batch // group, n_audio_ctx)
            for i in range(n_layer):
                self.register_buffer(f"{kind}_{i}", torch.zeros(rows, n_head, n, head_dim, dtype=dtype,
                                                                device=device), persistent=False)
        self.register_buffer("offset", torch.zeros(batch, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("slots", torch.arange(n_ctx, device=device), persistent=False)
        self.n_layer = n_layer
        for t in self.buffers():  # fixed addresses: CUDA graphs may replay in-place writes to them
            torch._dynamo.mark_static_address(t)

    def head(self, k: int) -> StaticKVCache:
        """Rows :k (a cache without groups) over the same storage."""
        view = copy.copy(self)
        view._buffers = {n: b if n == "slots" else b[:k] for n, b in self._buffers.items()}
        return view

    def layer(self, kind: str, i: int) -> Tensor:  # -> [B, H, n, D]
        return getattr(self, f"{kind}_{i}")

    def self_mask(self, cache_position: Tensor) -> Tensor:  # [T] -> [B, 1, T, n_ctx] additive, cache dtype
        """Causal over slots, blind to each row's left padding (a padding query sees only itself).
        Additive (0 / -inf), built once per step: a bool mask would be converted by every layer's SDPA."""
        j, t = self.slots[None, None, :], cache_position[None, :, None]
        real = j >= self.offset[:, None, None]
        seen = ((j <= t) & (real | (j == t)))[:, None]
        return torch.where(seen, 0.0, float("-inf")).to(self.self_k_0.dtype)
