"""The compiled step (inductor on CPU; CUDA graphs on CUDA) gives the eager tokens and never recompiles
across windows, timestamp modes, temperatures and batch sizes within one bucket."""

from __future__ import annotations

import pytest
import torch

import whisperfast
from whisperfast.decode.options import DecodingOptions

from conftest import clip

THREE = [clip("jfk.flac"), clip("LDC93S1.wav"), clip("61-70968-0000.flac")]


@pytest.fixture(scope="module")
def compiled(tiny_en_dir):
    return whisperfast.load_model(tiny_en_dir, device="cpu", dtype="float32", compile=True)


@pytest.mark.parametrize("without_timestamps", [False, True])
def test_compiled_equals_eager(tiny_en, compiled, without_timestamps):
    eager = tiny_en.decode(THREE, without_timestamps=without_timestamps)
    comp = compiled.decode(THREE, without_timestamps=without_timestamps)
    for e, c in zip(eager, comp):
        assert c.tokens == e.tokens
        assert abs(c.avg_logprob - e.avg_logprob) < 1e-3      # fp32 sums over <= 224 tokens, kernels differ
        assert abs(c.no_speech_prob - e.no_speech_prob) < 1e-5  # a probability from the compiled prefill


def test_no_recompiles_within_a_bucket(compiled):
    """After the first capture of each step variant (greedy, sampling) for bucket 4: several windows,
    both timestamp modes, two temperatures and batch sizes 3 and 4 run without a recompile."""
    from torch._dynamo.utils import counters

    from whisperfast.audio import load_audio
    from whisperfast.features import short_form_features

    compiled.decode(THREE)                                  # capture: greedy, bucket 4
    compiled.decode(THREE, temperature=0.5)                 # capture: sampling, bucket 4
    mel = short_form_features([load_audio(c) for c in THREE + [clip("ru.wav")]], 80)
    cfg = torch._dynamo.config
    old = cfg.error_on_recompile
    cfg.error_on_recompile = True
    try:
        compiled.decode(THREE + [clip("stereo_diarization.wav")], without_timestamps=True)
        graphs = counters["stats"]["unique_graphs"]
        compiled.engine.encode(mel[:3]).decode(DecodingOptions(), temperatures=(0.0, 0.7),
                                               needs_fallback=lambda r: True)  # every row re-decoded at T=0.7
        assert counters["stats"]["unique_graphs"] == graphs  # nor a new graph: the prefill serves both
        compiled.engine.encode(mel).decode(DecodingOptions(without_timestamps=True), prompts=[
            "Ask not.", None, [50, 60, 70], None])             # prompts of different lengths
        r = compiled.transcribe([clip("sonnet001.mp3"), clip("jfk.flac")], batch_size=4)
        assert "fellow Americans" in r[1].text and len(r[0].segments) >= 4
    finally:
        cfg.error_on_recompile = old


def test_compiled_prefill_equals_eager(tiny_en):
    """The prefill CUDA compiles per prompt bucket, compiled here by inductor (CPU runs it eagerly): one
    fullgraph over the packed rows, leaving the session as eager does — first tokens, flags, caps,
    temperatures, no-speech probabilities and the prompt's k/v."""
    from whisperfast.audio import load_audio
    from whisperfast.decode.rows import Row, pack
    from whisperfast.decode.step import compile_for, prefill
    from whisperfast.features import short_form_features

    e, tok = tiny_en.engine, tiny_en.tokenizer
    head = [tok.sot_prev, *tok.encode(" Ask not what your country")]
    rows = [Row(tuple(head + tok.sot_sequence()), len(head), 0.0, True, 0), None,
            Row(tuple(tok.sot_sequence(timestamps=False)), 0, 0.7, False, 5)]
    mel = short_form_features([load_audio(clip(c)) for c in ("jfk.flac", "ru.wav", "LDC93S1.wav")], 80)
    sess = e.encode(mel, batch=4).sess
    packed, _ = pack(sess, rows, tiny_en.config.n_text_ctx)

    def run(fn) -> dict:
        with torch.no_grad():
            assert e.encode(mel, batch=4).sess is sess
            fn(tiny_en.model.decoder, sess, packed, True)
        return {k: v.clone() for k, v in sess.named_buffers() if not k.startswith("cache.") or k in ("cache.self_k_3", "cache.offset")}

    eager, comp = run(prefill), run(compile_for(prefill, torch.device("cpu"), "test"))
    assert eager.keys() == comp.keys()
    for k in eager:
        if eager[k].is_floating_point():  # fp32 log-softmax over 51,864 logits (|l| ~ 20), fused differently;
            torch.testing.assert_close(comp[k], eager[k], atol=1e-4, rtol=0, msg=k)  # -inf masks equal as -inf
        else:
            assert torch.equal(eager[k], comp[k]), k
    assert eager["done"].tolist() == [False, True, False, True] and eager["ts_on"].tolist()[:3] == [True, False, False]
    assert eager["temperature"].tolist() == [0.0, 0.0, pytest.approx(0.7), 0.0]
    assert 0 < float(eager["no_speech"][0]) < 1 and int(eager["step"]) == 1


def test_compiled_beams_equal_eager_without_recompiles(tiny_en, compiled):
    """Beam search compiled by inductor (the beam step, and the k/v reorder per slot bound) gives the eager
    tokens; a second set of windows in the same bucket compiles nothing new (the CUDA twin of this test is in
    test_cuda.py)."""
    from torch._dynamo.utils import counters

    two = THREE[:2]
    assert [r.tokens for r in compiled.decode(two, beam_size=3)] == [r.tokens for r in tiny_en.decode(two, beam_size=3)]
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = compiled.decode(two[::-1], beam_size=3)
    assert [r.tokens for r in got] == [r.tokens for r in tiny_en.decode(two[::-1], beam_size=3)]
    assert counters["stats"]["unique_graphs"] == graphs


def test_best_of_session_is_its_own_compile_not_a_recompile(compiled):
    """A session of g rows per window holds one cross k/v row per window: at the same row count as a plain
    bucket its tensors have other shapes, so its step is another compiled unit (keyed by the group), never a
    recompile of the plain one; and best_of stays deterministic when compiled."""
    one, two = THREE[:1], THREE[:2]
    compiled.decode(two, temperature=0.5)  # the sampling step of the plain 2-row session
    with torch._dynamo.config.patch(error_on_recompile=True):
        a = compiled.decode(one, temperature=0.5, best_of=2)  # 1 window x 2 samples: 2 rows, 1 cross row
        b = compiled.decode(one, temperature=0.5, best_of=2)
    assert a[0].tokens == b[0].tokens and len(a[0].tokens) > 0
