"""The Whisper network: `encoder` + `decoder`, parameter paths as in HF checkpoints minus `model.`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder
from . import packed
from .quant import check_kernel, check_layer, int8_of, scale_dtype

# The matrices of a decoder layer that dtype="int8" quantises. encoder_attn.out_proj and fc2 stay float: each one
# alone in int8 changed base's text on 1 of the 9 test windows (every other one alone: none). self_attn.out_proj
# stays float too: with it in int8, base at 2 threads (CI's count) changed the sonnet window (8/9 < the 90% floor);
# without it 9/9 at 1 and 2 threads, for d*d float weights per layer (fc1, 4x larger, would have done it too).
INT8 = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "encoder_attn.q_proj", "fc1")
# The float matrices of a decoder layer that `pack_decoder` gives a oneDNN-packed copy (q/k/v: the fused stack).
PACKED = ("self_attn.out_proj", "encoder_attn.q_proj", "encoder_attn.out_proj", "fc1", "fc2")


def swap(root: nn.Module, path: str, make) -> None:
    """Replace the submodule of `root` at `path` (e.g. "encoder_attn.q_proj") by make(that submodule)."""
    parent, name = path.rpartition(".")[::2]
    owner = root.get_submodule(parent)  # "" is root itself
    setattr(owner, name, make(getattr(owner, name)))


class Whisper(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, mel: Tensor) -> Tensor:  # [B, n_mels, 3000] -> [B, 1500, d]
        return self.encoder(mel)

    @torch.no_grad()
    def prepare_decoder(self, column_major: bool, int8: bool = False, onednn: bool = False) -> None:
        """Lay the decoder's weights out for decoding (same values, same parameter names and shapes).

        - Self-attention q/k/v become one [3d, d] matrix (the three weights are views of it): one matrix
          product per layer and step instead of three.
        - `column_major` (CPU): matrices are stored transposed. A decode step multiplies one row per
          sequence by each matrix, and MKL reads an [in, out] matrix about twice as fast as an [out, in]
          one for that: tiny's vocabulary projection takes 4 ms instead of 8.5 ms. The embedding lookup
          reads the same storage.
        - `int8`: the per-token matrices and the token embedding become weight-only int8 (model/quant.py; the
          q/k/v stack quantised row by row after fusing); what stays float is then laid out as above.
        - `onednn` (CPU float32): the per-token float matrices (fused q/k/v, attention outputs, the cross-attention
          query, fc1, fc2, the vocabulary projection) also get a oneDNN-packed copy that eager decoding multiplies
          by (model/packed.py: 3x faster at 5-8 rows on some processors, rows independent of the batch)."""
        if int8:
            self.quantize_decoder()
        for m in self.decoder.modules():
            if column_major and isinstance(m, (nn.Linear, nn.Embedding)) and m is not self.decoder.embed_positions:
                m.weight = nn.Parameter(m.weight.t().contiguous().t(), requires_grad=False)
        for layer in self.decoder.layers:
            if not hasattr(layer.self_attn, "qkv_weight"):
                layer.self_attn.fuse_qkv(column_major)
        if onednn:
            self.pack_decoder()

    @torch.no_grad()
    def pack_decoder(self) -> None:
        """oneDNN-packed copies of the decoder's per-token float32 matrices (no-op where packing is unavailable)."""
        for layer in self.decoder.layers:
            a = layer.self_attn
            if a.qkv_weight.is_floating_point():
                a.qkv_packed = packed.pack(a.qkv_weight)
            for path in PACKED:
                swap(layer, path, packed.packed_linear)
        e = self.decoder.embed_tokens
        if type(e) is nn.Embedding:
            e.packed = packed.pack(e.weight)

    def int8_weights(self) -> set[str]:
        """Parameter names of the matrices that `quantize_decoder` turns into int8 (the loader leaves them in
        the checkpoint's dtype, so they never exist in float32)."""
        return {f"decoder.layers.{i}.{path}.weight" for i in range(len(self.decoder.layers)) for path in INT8} | {
            "decoder.embed_tokens.weight"}

    @torch.no_grad()
    def quantize_decoder(self) -> None:
        """Decoder matrices read per token -> weight-only int8 (scales per output channel), in place."""
        check_kernel(self.device)
        sdtype = scale_dtype(self.device, self.dtype)
        d = self.decoder
        for i, layer in enumerate(d.layers):
            for path in INT8:
                check_layer(f"decoder.layers.{i}.{path}", layer.get_submodule(path))
            layer.self_attn.fuse_qkv_int8(sdtype)  # q/k/v
            for path in INT8[3:]:
                swap(layer, path, lambda m: int8_of(f"decoder.layers.{i}.{path}", m, sdtype, self.dtype))
        check_layer("decoder.embed_tokens", d.embed_tokens)
        d.embed_tokens = int8_of("decoder.embed_tokens", d.embed_tokens, sdtype, self.dtype)

    @property
    def dtype(self):  # the compute dtype (float also when the decoder's matrices are int8)
        return self.decoder.embed_positions.weight.dtype

    @property
    def device(self):
        return self.decoder.embed_positions.weight.device
