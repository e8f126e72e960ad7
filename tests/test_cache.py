"""The static k/v cache: incremental decoding equals a full forward without a cache, at every step."""

from __future__ import annotations

import math
import re

import torch

from whisperfast.cache import KINDS
from whisperfast.decode.step import PROMPT_CAPACITY

from conftest import clip


def full_forward(model, xa, tokens):
    """Reference: a fresh cache per call, the whole sequence at once (no reuse of earlier k/v)."""
    cache = model.decoder.new_cache(tokens.shape[0], tokens.shape[1], xa.shape[1], dtype=xa.dtype, device=xa.device)
    model.decoder.fill_cross(xa, cache)
    return model.decoder(tokens, torch.arange(tokens.shape[1]), cache)


def test_incremental_equals_full_forward(tiny_en):
    from whisperfast.audio import load_audio
    from whisperfast.features import short_form_features

    m = tiny_en.model
    mel = short_form_features([load_audio(clip("jfk.flac"))], m.config.n_mels)
    r = tiny_en.decode(clip("jfk.flac"))
    seq = torch.tensor([[tiny_en.tokenizer.sot] + r.tokens])  # [1, T]
    with torch.no_grad():
        xa = m.encoder(mel)
        cache = m.decoder.new_cache(1, 64, xa.shape[1], dtype=xa.dtype, device=xa.device)
        m.decoder.fill_cross(xa, cache)
        for t in range(seq.shape[1]):
            step = m.decoder(seq[:, t:t + 1], torch.tensor([t]), cache)[0, 0]
            ref = full_forward(m, xa, seq[:, : t + 1])[0, -1]
            assert (step - ref).abs().max().item() < 1e-4, t


def test_left_padded_rows_equal_unpadded(tiny_en):
    """Rows of a batch with prompts of different lengths (left padding, per-row positions) give the
    logits each row gets alone."""
    m = tiny_en.model
    torch.manual_seed(0)
    xa = torch.randn(2, m.config.n_audio_ctx, m.config.n_audio_state)
    a, b = [50257, 400, 500, 600, 700, 800], [50257, 900]
    with torch.no_grad():
        ref_a, ref_b = full_forward(m, xa[:1], torch.tensor([a]))[0, -1], full_forward(m, xa[1:], torch.tensor([b]))[0, -1]
        cache = m.decoder.new_cache(2, 16, xa.shape[1], dtype=xa.dtype, device=xa.device)
        m.decoder.fill_cross(xa, cache)
        P = 8
        tokens = torch.full((2, P), 50256)
        tokens[0, P - len(a):], tokens[1, P - len(b):] = torch.tensor(a), torch.tensor(b)
        cache.offset.copy_(torch.tensor([P - len(a), P - len(b)]))
        out = m.decoder(tokens, torch.arange(P), cache)[:, -1]
        assert (out[0] - ref_a).abs().max() < 1e-4
        assert (out[1] - ref_b).abs().max() < 1e-4
        # one more token each, at slot P
        nxt = m.decoder(torch.tensor([[11], [12]]), torch.tensor([P]), cache)[:, 0]
        ref_a2 = full_forward(m, xa[:1], torch.tensor([a + [11]]))[0, -1]
        ref_b2 = full_forward(m, xa[1:], torch.tensor([b + [12]]))[0, -1]
        assert (nxt[0] - ref_a2).abs().max() < 1e-4 and (nxt[1] - ref_b2).abs().max() < 1e-4


def test_cache_shapes_and_reuse(tiny_en):
    """Allocated once per (bucket, sample_len) and reused across calls; shapes as documented."""
    e = tiny_en.engine
    tiny_en.decode(clip("LDC93S1.wav"))
    sess = e.session(1, e.sample_len)
    c, cfg = sess.cache, tiny_en.config
    D = cfg.n_text_state // cfg.n_text_head
    for i in range(cfg.n_text_layer):
        assert c.layer("self_k", i).shape == (1, cfg.n_text_head, PROMPT_CAPACITY + e.sample_len, D)
        assert c.layer("cross_v", i).shape == (1, cfg.n_text_head, cfg.n_audio_ctx, D)
    ptrs = [c.layer(kind, i).data_ptr() for kind in KINDS for i in range(cfg.n_text_layer)]
    assert len(set(ptrs)) == len(ptrs)  # independent tensors, one per layer and kind
    tiny_en.decode(clip("jfk.flac"))
    assert e.session(1, e.sample_len) is sess
    assert [c.layer(kind, i).data_ptr() for kind in KINDS for i in range(cfg.n_text_layer)] == ptrs
    assert e.session(3, e.sample_len).batch == 4


def allocations(code: str) -> list[int]:
    """The element count of every buffer that inductor's generated code allocates."""
    shapes = re.findall(r"empty_strided_\w+\(\(([^)]*)\)", code)
    assert shapes, "no allocation found: the generated code's format changed"
    return [math.prod(int(x) for x in s.split(",") if x.strip()) for s in shapes]


def generated_code(fn, *args) -> str:
    from torch._inductor.utils import run_and_get_code

    with torch.no_grad():
        _, code = run_and_get_code(torch.compile(fn, fullgraph=True, dynamic=False), *args)
    return "\n".join(code)


def test_compiled_step_writes_the_cache_in_place(tiny_en):
    """Per-layer buffers: the compiled step allocates nothing the size of a layer's cache (a stacked
    [L, ...] cache written through views made inductor rewrite it whole, 12 buffers per step on tiny)."""
    from whisperfast.decode.step import decode_one

    def step(decoder, sess):  # a code object of its own: compiled here, whatever else was compiled before
        decode_one(decoder, sess, sample=False)

    tiny_en.decode([clip("jfk.flac"), clip("LDC93S1.wav")])  # a live session, mid-window state
    sess = tiny_en.engine.session(2, tiny_en.engine.sample_len)
    code = generated_code(step, tiny_en.model.decoder, sess)
    layer = sess.cache.layer("self_k", 0).numel()
    assert max(allocations(code)) < layer
    assert "select_scatter" not in code and "index_put" not in code


def test_compiled_fill_cross_writes_each_layer_once(tiny_en):
    """Cross k/v of a window: one projection buffer (reused by every layer) is all that is allocated."""
    m = tiny_en.model

    def fill(xa, cache):
        m.decoder.fill_cross(xa, cache)

    sess = tiny_en.engine.session(2, tiny_en.engine.sample_len)
    xa = torch.randn(2, m.config.n_audio_ctx, m.config.n_audio_state)
    code = generated_code(fill, xa, sess.cache)
    layer = sess.cache.layer("cross_k", 0).numel()
    big = [n for n in allocations(code) if n >= layer]
    assert big == [layer]  # the [n * n_audio_ctx, d] projection output, and nothing the size of the cache
    with torch.no_grad():  # and the buffers hold what the eager projections give
        k, v = m.decoder.layers[-1].encoder_attn.kv(xa)
    assert (sess.cache.layer("cross_k", m.config.n_text_layer - 1) - k).abs().max() < 1e-5
    assert (sess.cache.layer("cross_v", m.config.n_text_layer - 1) - v).abs().max() < 1e-5


def test_beam_reorder_copies_only_the_written_slots(tiny_en):
    """The beam k/v reorder with a slot bound: rows follow `src` in slots :n, later slots stay as they were,
    and the compiled unit allocates no buffer of a layer's whole cache (only the [B, H, n, D] gather)."""
    from whisperfast.decode.beam import Beams, reorder, written

    sess = tiny_en.engine.session(1, tiny_en.engine.sample_len, group=5)  # one window's 5 beams
    capacity = sess.cache.layer("self_k", 0).shape[2]
    assert [written(n, capacity) for n in (1, 4, 32, 33, 100, 300, 480)] == [32, 32, 32, 64, 128, 480, 480]
    beams = Beams(sess, 5, 5)
    g = torch.Generator().manual_seed(0)
    for kind in ("self_k", "self_v"):
        for i in range(sess.cache.n_layer):
            sess.cache.layer(kind, i).copy_(torch.randn(sess.cache.layer(kind, i).shape, generator=g))
    before = {i: sess.cache.layer("self_v", i).clone() for i in range(sess.cache.n_layer)}
    src = torch.tensor([3, 3, 0, 1, 4])
    beams.src.copy_(src)
    code = generated_code(lambda s, b: reorder(s, b, 64), sess, beams)  # ran once
    layer = sess.cache.layer("self_k", 0)
    assert max(allocations(code)) <= layer.numel() * 64 // capacity
    for i, old in before.items():
        new = sess.cache.layer("self_v", i)
        assert torch.equal(new[:, :, :64], old[src][:, :, :64])  # copies: exact
        assert torch.equal(new[:, :, 64:], old[:, :, 64:])


def test_eager_step_reads_written_slots_bit_identically(tiny_en, monkeypatch):
    """An eager CPU step reads self k/v slots up to its position rounded up to SLOT_BLOCK (model/decoder.py
    written_bound); at every position its logits are bit-identical to a step over all slots (the skipped
    slots are masked, and the kernel sums whole vectors of zeros for them), with left-padded rows too."""
    from whisperfast.model import decoder as dec

    m = tiny_en.model
    torch.manual_seed(3)
    B, n_ctx = 3, PROMPT_CAPACITY + tiny_en.engine.sample_len
    cache = m.decoder.new_cache(B, n_ctx, m.config.n_audio_ctx, dtype=torch.float32, device=torch.device("cpu"))
    for i in range(cache.n_layer):
        for kind in KINDS:
            cache.layer(kind, i).normal_()
    cache.offset.copy_(torch.tensor([0, 5, 40]))
    tokens = torch.randint(0, 50000, (B, 1))
    bounds = []
    with torch.no_grad():
        for p in list(range(40, n_ctx, 13)) + [63, 64, 127, 128, n_ctx - 1]:
            pos = torch.tensor([p])
            bounds.append(dec.written_bound(pos, n_ctx))
            fast = m.decoder(tokens, pos, cache)
            with monkeypatch.context() as mp:
                mp.setattr(dec, "written_bound", lambda cp, n: n)
                every = m.decoder(tokens, pos, cache)
            assert torch.equal(fast, every), p
    assert min(bounds) == 64 and max(bounds) == n_ctx  # the bound did cut (the test compares something)
