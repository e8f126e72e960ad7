"""Text decoder against a static k/v cache: tokens [B, T] at `cache_position` [T] -> logits [B, T, V]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cache import KINDS, StaticKVCache
from .config import ModelConfig
from .layers import Attention, LayerNorm, mlp
from .packed import linear
from .quant import Int8Embedding


class DecoderLayer(nn.Module):
    def __init__(self, d: int, n_head: int, ffn: int):
        super().__init__()
        self.self_attn = Attention(d, n_head)
        self.self_attn_layer_norm = LayerNorm(d)
        self.encoder_attn = Attention(d, n_head)
        self.encoder_attn_layer_norm = LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = LayerNorm(d)

    def self_block(self, x: Tensor, cache_position: Tensor, mask: Tensor, k_cache: Tensor,
                   v_cache: Tensor) -> Tensor:
        """Self-attention over the cache's slots :mask.shape[-1] (all of them, or those `written_bound` keeps)."""
        h = self.self_attn_layer_norm(x)
        q, k, v = self.self_attn.qkv(h)  # [B,H,T,D]
        k_cache.index_copy_(2, cache_position, k)
        v_cache.index_copy_(2, cache_position, v)
        n = mask.shape[-1]
        if n < k_cache.shape[2]:
            k_cache, v_cache = k_cache[:, :, :n], v_cache[:, :, :n]
        return x + self.self_attn.merge(F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask))

    def cross_query(self, x: Tensor) -> Tensor:  # [B,T,d] -> [B,H,T,D]
        return self.encoder_attn.heads(self.encoder_attn.q_proj(self.encoder_attn_layer_norm(x)))

    def forward(self, x: Tensor, cache_position: Tensor, mask: Tensor, k_cache: Tensor, v_cache: Tensor,
                xk: Tensor, xv: Tensor, heads: tuple[int, ...] = ()) -> tuple[Tensor, list[Tensor]]:
        """-> the layer's output [B,T,d], and the cross-attention logits q·kᵀ/√D (fp32, [B,T,S]) of each of
        `heads` (word alignment reads them; the decode step asks for none)."""
        x = self.self_block(x, cache_position, mask, k_cache, v_cache)
        q = self.cross_query(x)  # [B,H,T,D]
        qk = [(q[:, h].float() @ xk[:, h].float().transpose(-1, -2)) * q.shape[-1] ** -0.5 for h in heads]
        x = x + self.encoder_attn.merge(cross_attention(q, xk, xv))
        return x + mlp(self.fc1, self.fc2, self.final_layer_norm(x)), qk


SLOT_BLOCK = 64


def written_bound(cache_position: Tensor, n_ctx: int) -> int:
    """The self-attention slots a step must read. In eager CPU code one token at slot p reads slots up to p,
    rounded up to a multiple of SLOT_BLOCK: the slots past p are masked, and over a multiple of 32 slots SDPA's
    CPU kernel gives bit-identical results (it sums the masked tail as whole vectors of zeros; checked in
    tests/test_cache.py). Every slot otherwise: compiled code has static shapes, reading a CUDA position would
    cost a sync, and a prefill's query blocks sum in another order over fewer slots."""
    if cache_position.shape[0] != 1 or cache_position.device.type != "cpu" or torch.compiler.is_compiling():
        return n_ctx
    return min(n_ctx, (int(cache_position[0]) // SLOT_BLOCK + 1) * SLOT_BLOCK)


def cross_attention(q: Tensor, xk: Tensor, xv: Tensor) -> Tensor:  # [B,H,T,D] x 2 [W,H,S,D] -> [B,H,T,D]
    """Attention of the queries of B = W*g rows to their windows' k/v: rows w*g .. w*g+g-1 (beams or samples of
    window w) share k/v row w, so their g*T queries attend together and each window's k/v is read once per
    step, not g times (B == W: one query block per row)."""
    B, H, T, D = q.shape
    W = xk.shape[0]
    if B == W:
        return F.scaled_dot_product_attention(q, xk, xv)
    g = B // W
    q = q.view(W, g, H, T, D).transpose(1, 2).reshape(W, H, g * T, D)
    o = F.scaled_dot_product_attention(q, xk, xv)                               # [W, H, g*T, D]
    return o.view(W, H, g, T, D).transpose(1, 2).reshape(B, H, T, D)


class Decoder(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.n_vocab, c.n_text_state)
        self.embed_positions = nn.Embedding(c.n_text_ctx, c.n_text_state)
        self.layers = nn.ModuleList(
            DecoderLayer(c.n_text_state, c.n_text_head, c.n_text_ffn) for _ in range(c.n_text_layer))
        self.layer_norm = LayerNorm(c.n_text_state)

    def fill_cross(self, xa: Tensor, cache: StaticKVCache) -> None:
        """Cross-attention k/v of the encoder states `xa` [n, n_audio_ctx, d] into rows :n of the cache."""
        n = xa.shape[0]
        for i, layer in enumerate(self.layers):
            k, v = layer.encoder_attn.kv(xa)  # [n, H, S, D]
            for kind, new in (("cross_k", k), ("cross_v", v)):
                buf = cache.layer(kind, i)    # a whole buffer when n == B (the compiled path pads to B)
                (buf if n == buf.shape[0] else buf[:n]).copy_(new)

    def embed(self, tokens: Tensor, cache_position: Tensor, cache: StaticKVCache) -> Tensor:  # -> [B, T, d]
        """Token + learned position embeddings; a row's positions start after its left padding."""
        pos = (cache_position[None, :] - cache.offset[:, None]).clamp(0, self.embed_positions.num_embeddings - 1)
        return self.embed_tokens(tokens) + self.embed_positions(pos)

    def hidden(self, tokens: Tensor, cache_position: Tensor, cache: StaticKVCache) -> Tensor:
        """[B, T] tokens at slots `cache_position` [T] -> final-norm states [B, T, d]."""
        return self.hidden_and_cross(tokens, cache_position, cache)[0]

    def hidden_and_cross(self, tokens: Tensor, cache_position: Tensor, cache: StaticKVCache,
                         heads: Sequence[tuple[int, int]] = ()) -> tuple[Tensor, list[Tensor]]:
        """`hidden`, and the cross-attention logits [B, T, n_audio_ctx] (fp32) of each (layer, head) in
        `heads`, in the order of (layer, head) pairs sorted."""
        x, mask = self.embed(tokens, cache_position, cache), cache.self_mask(cache_position)
        mask = mask[..., :written_bound(cache_position, mask.shape[-1])]
        qks: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            x, qk = layer(x, cache_position, mask, *(cache.layer(kind, i) for kind in KINDS),
                          heads=tuple(h for l, h in sorted(heads) if l == i))
            qks += qk
        return self.layer_norm(x), qks

    def logits(self, h: Tensor) -> Tensor:  # [..., d] -> [..., V] float32
        e = self.embed_tokens
        if isinstance(e, Int8Embedding):
            return e.project(h).float()
        return linear(h, e.weight, None, getattr(e, "packed", None)).float()

    def forward(self, tokens: Tensor, cache_position: Tensor, cache: StaticKVCache) -> Tensor:
        return self.logits(self.hidden(tokens, cache_position, cache))

    def new_cache(self, batch: int, n_ctx: int, n_audio_ctx: int, *, dtype: torch.dtype,
                  device: torch.device, group: int = 1) -> StaticKVCache:
        a = self.layers[0].self_attn
        d = self.embed_tokens.embedding_dim
        return StaticKVCache(len(self.layers), batch, a.n_head, d // a.n_head, n_ctx, n_audio_ctx,
                             dtype=dtype, device=device, group=group)
