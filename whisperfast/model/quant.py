"""Weight-only int8 (`dtype="int8"`): int8 weights with one scale per output channel, activations in float.

A matrix `w` [out, in] is stored as `q = round(w / scale[:, None])` in [-127, 127] (int8) and `scale` [out] =
max |w[row]| / 127, rounded to the scale's dtype before `q` is computed (so q * scale is the nearest value
the stored pair can hold). Products:
- CPU: `torch._weight_int8pack_mm` (bfloat16 activations and scales, fp32 accumulation): tiny.en's
  vocabulary projection at one row reads 20 MB instead of 80 MB (about 2 ms instead of 4). The kernel takes
  only inputs whose width is a multiple of 8 (torch 2.13 crashes on others): such a layer is refused.
- CUDA: `F.linear(x, q.to(x.dtype)) * scale`, which the compiled step fuses into one kernel (gpt-fast's form).

What is quantised (see `Whisper.quantize_decoder`, model/whisper.py INT8): the token embedding, which is also
the vocabulary projection, and of each decoder layer the self-attention q/k/v, the cross-attention query and
fc1. The attention outputs and fc2 stay float (each alone in int8 changed base's text on a test window).
The encoder and the cross-attention k/v projections stay float: they run once per window over 1500 rows, where
the int8 kernel is about 2x slower than a float GEMM, and they are not read per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError

QMAX = 127
RESCORE = 16  # logits per row that the vocabulary projection recomputes from float16 rows (Int8Embedding)


def scale_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The scales' (and, on CPU, the activations') dtype in the int8 product."""
    return torch.bfloat16 if device.type == "cpu" else dtype


def check_kernel(device: torch.device) -> None:
    """OptionError when this torch has no int8 product for `device`."""
    if device.type == "cpu" and not hasattr(torch, "_weight_int8pack_mm"):
        raise OptionError(f"dtype='int8' needs torch._weight_int8pack_mm, which torch {torch.__version__} lacks; "
                          "use torch >= 2.4, or dtype='float32'")


def quantize_rows(w: Tensor, sdtype: torch.dtype, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """w [out, in] -> int8 [out, in], scales [out]; `chunk` rows at a time, so the float temporaries stay
    small next to the weights (a whole-matrix version held four float copies of tiny's embedding at once)."""
    q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    scale = torch.empty(w.shape[0], dtype=sdtype, device=w.device)
    for i in range(0, w.shape[0], chunk):
        rows = w[i:i + chunk].float()
        s = (rows.abs().amax(dim=1) / QMAX).clamp(min=1e-12).to(sdtype)   # [n]
        q[i:i + chunk] = (rows / s.float()[:, None]).round_().clamp_(-QMAX, QMAX).to(torch.int8)
        scale[i:i + chunk] = s
    return q, scale


def int8_mm(x: Tensor, q: Tensor, scale: Tensor) -> Tensor:  # [..., in] -> [..., out] in x's dtype
    if q.device.type == "cpu":
        y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).to(scale.dtype), q, scale)  # [N, out]
        return y.view(*x.shape[:-1], -1).to(x.dtype)
    return F.linear(x, q.to(x.dtype)) * scale


class Int8Linear(nn.Module):
    """nn.Linear's forward from int8 `weight` [out, in] and `scale` [out] (buffers; same key names + scale)."""

    def __init__(self, q: Tensor, scale: Tensor, bias: Tensor | None):
        super().__init__()
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        y = int8_mm(x, self.weight, self.scale)
        return y if self.bias is None else y + self.bias


class Int8Embedding(nn.Module):
    """The token embedding and tied vocabulary projection ([..., d] -> [..., V]) with int8 products.

    The projection reads the int8 matrix for every token, then recomputes the RESCORE highest logits of each
    row from `rows`, a float16 copy of the embedding (exact for the float16 checkpoints of the hub): the
    chosen token and the best candidates of a beam get the logits of the float model, the others keep their
    int8 values (off by ~0.1, which moves log_softmax's normaliser by far less). Row quantisation of the
    projection alone changed the text of 3 of 9 windows of tiny.en on the test clips; with this, none.
    Lookups read `rows` too. Bytes: 3 per weight (1 + 2) against float32's 4."""

    def __init__(self, q: Tensor, scale: Tensor, rows: Tensor, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("rows", rows)
        self.out_dtype = dtype
        self.num_embeddings, self.embedding_dim = q.shape

    def forward(self, tokens: Tensor) -> Tensor:  # [B, T] -> [B, T, d]
        return self.rows[tokens].to(self.out_dtype)

    def project(self, h: Tensor) -> Tensor:  # [..., d] -> [..., V] in h's dtype
        coarse = int8_mm(h, self.weight, self.scale)                          # [..., V]
        idx = coarse.topk(RESCORE, dim=-1).indices                            # [..., K]
        exact = (self.rows[idx].to(h.dtype) @ h[..., :, None])[..., 0]        # [..., K, d] @ [..., d, 1] -> [..., K]
        return coarse.scatter_(-1, idx, exact)  # coarse is a fresh tensor


def check_layer(name: str, m: nn.Module) -> None:
    """OptionError for a layer that cannot be int8 here (`name`: its path, for the message)."""
    if not isinstance(m, (nn.Linear, nn.Embedding)):
        raise OptionError(f"dtype='int8': layer {name} is a {type(m).__name__}; only Linear and Embedding layers "
                          "have an int8 form")
    width = m.weight.shape[1]
    if m.weight.device.type == "cpu" and width % 8:
        raise OptionError(f"dtype='int8': layer {name} has input width {width}, but the CPU int8 kernel "
                          "needs a multiple of 8; load this checkpoint with dtype='float32'")


def int8_of(name: str, m: nn.Module, sdtype: torch.dtype, dtype: torch.dtype) -> nn.Module:
    """The int8 counterpart of the float layer `m` (see check_layer), computing in `dtype`."""
    check_layer(name, m)
    q, scale = quantize_rows(m.weight, sdtype)
    if isinstance(m, nn.Embedding):
        return Int8Embedding(q, scale, m.weight.to(torch.float16, copy=True).contiguous(), dtype)
    return Int8Linear(q, scale, None if m.bias is None else m.bias.detach())  # a buffer: no grad
