"""Building blocks with Hugging Face parameter names: attention projections, MLP, fp32 LayerNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .packed import linear
from .quant import int8_mm, quantize_rows


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the weights' dtype (as openai-whisper does)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type(x.dtype)


class Attention(nn.Module):
    """Projections of one attention block; the attention itself is done by the caller's cache logic."""

    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def heads(self, x: Tensor) -> Tensor:  # [B,T,d] -> [B,H,T,D]
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, -1).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:  # [B,H,T,D] -> [B,T,d]
        B, H, T, D = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(B, T, H * D))

    def kv(self, x: Tensor) -> tuple[Tensor, Tensor]:  # [B,S,d] -> 2 x [B,H,S,D]
        return self.heads(self.k_proj(x)), self.heads(self.v_proj(x))

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [B,T,d] -> 3 x [B,H,T,D]
        """q, k, v of `x`: one matrix product when `fuse_qkv` ran, else three."""
        if not hasattr(self, "qkv_weight"):
            return (self.heads(self.q_proj(x)), *self.kv(x))
        if hasattr(self, "qkv_scale"):  # int8
            y = int8_mm(x, self.qkv_weight, self.qkv_scale) + self.qkv_bias
        else:
            y = linear(x, self.qkv_weight, self.qkv_bias, getattr(self, "qkv_packed", None))
        q, k, v = y.chunk(3, dim=-1)  # 3 x [B,T,d]
        return self.heads(q), self.heads(k), self.heads(v)

    @torch.no_grad()
    def fuse_qkv(self, column_major: bool = False) -> None:
        """Stack the q/k/v projections into one [3d, d] matrix (k's missing bias as zeros); the three
        Linear weights become views of it, so no memory is added and the parameter names stay."""
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # [3d, d]
        w = w.t().contiguous().t() if column_major else w
        self.register_buffer("qkv_weight", w, persistent=False)
        self.register_buffer("qkv_bias", torch.cat([self.q_proj.bias, torch.zeros_like(self.q_proj.bias),
                                                    self.v_proj.bias]), persistent=False)
        d = w.shape[1]
        for i, lin in enumerate((self.q_proj, self.k_proj, self.v_proj)):
            lin.weight = nn.Parameter(w[i * d:(i + 1) * d], requires_grad=False)

    @torch.no_grad()
    def fuse_qkv_int8(self, scale_dtype: torch.dtype) -> None:
        """`fuse_qkv` in int8 (model/quant.py): the stacked [3d, d] matrix quantised row by row, the q/k/v
        layers becoming Int8Linear views of it (weights, scales and biases: loading a state updates the stack)."""
        from .quant import Int8Linear

        self.fuse_qkv()
        q, scale = quantize_rows(self.qkv_weight, scale_dtype)
        self.register_buffer("qkv_weight", q, persistent=False)
        self.register_buffer("qkv_scale", scale, persistent=False)
        d = q.shape[1]
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(i * d, (i + 1) * d)
            bias = None if getattr(self, name).bias is None else self.qkv_bias[rows]
            setattr(self, name, Int8Linear(q[rows], scale[rows], bias))

    def full(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Self-attention over `x` alone (encoder; no cache)."""
        k, v = self.kv(x)
        o = F.scaled_dot_product_attention(self.heads(self.q_proj(x)), k, v, attn_mask=mask)
        return self.merge(o)


def mlp(fc1: nn.Linear, fc2: nn.Linear, x: Tensor) -> Tensor:
    return fc2(F.gelu(fc1(x)))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """The encoder's fixed positional embedding (stored in checkpoints too)."""
    log_inc = torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1)
    inv = torch.exp(-log_inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)
