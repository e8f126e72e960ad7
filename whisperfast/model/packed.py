"""CPU float32 decoding through oneDNN's prepacked matrix products.

A decode step multiplies a few rows (one per sequence: 1 for greedy, K for beams, up to the batch bucket) by
each decoder matrix and by the vocabulary projection. MKL's sgemm is slow at that shape on some processors
(on the AMD EPYC this was measured on, tiny.en's projection [5, 384] x [384, 51864] took 10.5 ms column-major at
2 threads, the time of ~4x reading the 80 MB matrix), while oneDNN's product against a matrix reordered once
into its blocked layout took 3.3 ms (2 rows 2.4 ms instead of 4.8; 8 rows 4.0 instead of 11; at 1 thread 5 rows
7.4 instead of 10.3). Its rows are also independent of the number multiplied together (2 to 16 rows: row i is
bit-identical), so a window's tokens do not depend on the rows it shares a batch with. A single row stays
with MKL: its matrix-vector product over the column-major weight is faster (2.5 ms against 4.9 at 1 thread).

`pack(w)` makes that reordered copy (torch's own op, the one inductor uses for CPU linears; `None` where this
torch or processor has no oneDNN); `linear(x, w, b, packed)` uses it in eager CPU float32 code and is plain
`F.linear` everywhere else (CUDA, other dtypes, and under torch.compile, which lays out its own). The copy is
checked against the weight it was made from (identity and in-place version): a weight replaced or written
after packing (load_state_dict) is packed again before use.
The encoder and the cross-attention k/v projections stay on MKL: they multiply 1500 rows per window, where
MKL's GEMM is the faster one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROWS_HINT = 8  # the row count oneDNN lays the matrix out for; 2..16 rows all run at full speed with it (1 is a
#               GEMV layout, slower for several rows)


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class Packed:
    """oneDNN's copy of a weight [out, in] (float32, CPU), with the weight's version it was made from."""

    def __init__(self, w: Tensor):
        self.w, self.version = w, w._version
        self.t = torch.ops.mkldnn._reorder_linear_weight(w.detach(), ROWS_HINT)

    def current(self, w: Tensor) -> Tensor:
        """The packed copy of `w`, packed again if `w` is another tensor or was written in place since."""
        if w is not self.w or w._version != self.version:
            self.__init__(w)
        return self.t


def pack(w: Tensor) -> Packed | None:
    """A oneDNN-packed copy of `w` when it is a CPU float32 matrix and this torch can pack (checked against
    F.linear once: None if the op misbehaves here)."""
    if not (available() and w.device.type == "cpu" and w.dtype == torch.float32 and w.dim() == 2):
        return None
    try:
        p = Packed(w)
        x = torch.linspace(-1, 1, 2 * w.shape[1]).view(2, -1)
        got = torch.ops.mkldnn._linear_pointwise(x, p.t, None, "none", [], "")
        if not torch.allclose(got, F.linear(x, w), rtol=1e-4, atol=1e-4 * float(w.abs().max()) * w.shape[1]):
            return None
        return p
    except RuntimeError:
        return None


def linear(x: Tensor, w: Tensor, b: Tensor | None, packed: Packed | None) -> Tensor:
    """F.linear(x, w, b), through `packed` in eager CPU float32 for two rows or more (one row: MKL's
    matrix-vector product over the column-major weight is the faster one, at 1 thread 2x so)."""
    if packed is None or torch.compiler.is_compiling() or x.device.type != "cpu" or x.dtype != torch.float32 \
            or x.numel() == x.shape[-1]:
        return F.linear(x, w, b)
    return torch.ops.mkldnn._linear_pointwise(x, packed.current(w), b, "none", [], "")


def packed_linear(m: nn.Module) -> nn.Module:
    """`m` as a PackedLinear when it is a plain nn.Linear that `pack` can pack; `m` itself otherwise (int8)."""
    if type(m) is nn.Linear and (p := pack(m.weight)) is not None:
        return PackedLinear(m, p)
    return m


class PackedLinear(nn.Linear):
    """An nn.Linear (the same Parameter objects, so the same state-dict keys) with a oneDNN-packed copy."""

    def __init__(self, lin: nn.Linear, packed: Packed):
        nn.Module.__init__(self)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight, self.bias = lin.weight, lin.bias
        self.packed = packed

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, self.packed)
