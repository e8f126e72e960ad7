"""oneDNN-packed decoder matrices on CPU float32 (model/packed.py): what the eager decode multiplies by."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from whisperfast.model import packed
from whisperfast.model.load import load_whisper

pytestmark = pytest.mark.skipif(not packed.available(), reason="this torch build has no oneDNN linear packing")


@pytest.fixture(scope="module")
def model(tiny_en_dir):
    return load_whisper(tiny_en_dir, device=torch.device("cpu"), dtype=torch.float32)


def test_decoder_matrices_are_packed_and_names_unchanged(model, tiny_en_dir):
    """load_whisper on CPU float32 packs every per-token matrix; the state dict keeps its keys and values."""
    from safetensors.torch import load_file

    from whisperfast.model.load import to_model_keys

    layer = model.decoder.layers[0]
    for m in (layer.self_attn.out_proj, layer.encoder_attn.q_proj, layer.encoder_attn.out_proj, layer.fc1, layer.fc2):
        assert isinstance(m, packed.PackedLinear)
    assert layer.self_attn.qkv_packed is not None and model.decoder.embed_tokens.packed is not None
    assert not isinstance(layer.encoder_attn.k_proj, packed.PackedLinear)  # 1500 rows per window: MKL's GEMM
    stored = to_model_keys(load_file(str(tiny_en_dir / "model.safetensors")))
    sd = model.state_dict()
    assert sorted(sd) == sorted(stored)
    assert all(torch.equal(sd[k], stored[k].float()) for k in sd)


def test_packed_products_equal_dense_ones(model):
    """Each packed product equals F.linear within float32 rounding of a 384- or 1536-term sum (the
    kernels sum in another order: rtol 1e-5 of the terms' magnitude)."""
    torch.manual_seed(0)
    layer = model.decoder.layers[2]
    for m in (layer.fc1, layer.fc2, layer.self_attn.out_proj):
        x = torch.randn(3, 4, m.in_features)
        tol = 1e-5 * float((x.abs()[..., None, :] * m.weight.abs()).sum(-1).max())
        assert (m(x) - F.linear(x, m.weight, m.bias)).abs().max() <= tol
    h = torch.randn(5, 384)
    e = model.decoder.embed_tokens.weight
    tol = 1e-5 * float((h.abs() @ e.abs().T).max())
    assert (model.decoder.logits(h) - h @ e.T).abs().max() <= tol


def test_rows_do_not_depend_on_the_batch(model):
    """A row's logits are bit-identical whether it is multiplied with 1 or with up to 15 other rows (MKL's
    sgemm gives no such promise below 8 rows); a single row goes through MKL's matrix-vector product (the
    faster one for it) and equals the packed result within rounding."""
    torch.manual_seed(1)
    h = torch.randn(16, 384)
    every = model.decoder.logits(h)
    for n in (2, 3, 5, 8):
        assert torch.equal(model.decoder.logits(h[:n]), every[:n])
    e = model.decoder.embed_tokens.weight
    tol = 1e-5 * float((h[:1].abs() @ e.abs().T).max())
    assert (model.decoder.logits(h[:1]) - every[:1]).abs().max() <= tol


def test_a_weight_written_after_packing_is_packed_again(tiny_en_dir):
    """load_state_dict after load: the packed copy follows the new weight (in place or replaced)."""
    m = load_whisper(tiny_en_dir, device=torch.device("cpu"), dtype=torch.float32)
    fc = m.decoder.layers[0].fc2
    x = torch.randn(2, fc.in_features)
    before = fc(x)
    with torch.no_grad():
        fc.weight.mul_(2)                                          # in place
    assert torch.allclose(fc(x) - fc.bias, 2 * (before - fc.bias), rtol=1e-5, atol=1e-4)
    fc.weight = torch.nn.Parameter(torch.zeros_like(fc.weight))  # replaced
    assert torch.equal(fc(x), fc.bias.expand(2, -1))


def test_compiled_code_multiplies_dense(model):
    """Under torch.compile the packed copy is not used (inductor lays out its own): the traced graph has
    F.linear, and the result equals the eager one within rounding."""
    fc = model.decoder.layers[1].fc1
    x = torch.randn(2, 3, fc.in_features)
    seen = []

    def backend(gm, inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes)
        return gm.forward

    torch._dynamo.reset()
    got = torch.compile(fc, backend=backend, fullgraph=True)(x)
    assert not any("mkldnn" in t for t in seen) and any("linear" in t for t in seen)
    assert torch.allclose(got, fc(x), rtol=1e-5, atol=1e-4)
