"""Compaction (decode/compact.py): as rows finish, a loop's running rows move into a smaller bucket's session.
A row decodes the same tokens with and without it; finished rows keep their outputs; the home session's cross
k/v (word alignment, fallback re-decodes) are untouched; a session that a live encoded batch holds is never
written."""

from __future__ import annotations

import math

import pytest

from conftest import CLIPS, clip
from whisperfast.audio import load_audio
from whisperfast.decode.options import DecodingOptions
from whisperfast.features import short_form_features

# A row stepped at batch 2 or 1 instead of 8 sums its float32 dot products in another order: a sum of ~100
# log-probabilities moves by ~1e-5 (seen: 1.4e-5); token ids exactly. No-speech is read at the prefill, in the
# home session: exact.
SUM_LOGPROB_TOL = 1e-4


@pytest.fixture(scope="module")
def mel():
    return short_form_features([load_audio(clip(c)) for c in CLIPS], 80)  # [7, 80, 3000]: 15 to 100 tokens


@pytest.fixture
def engine(tiny_en, monkeypatch):
    e = tiny_en.engine
    monkeypatch.setattr(e, "compact", True)
    e.steps.clear()
    return e


def decode(engine, mel, compact: bool, **kw):
    engine.compact = compact
    engine.steps.clear()
    out = engine.encode(mel).decode(DecodingOptions(**kw.pop("options", {})), **kw)
    return out, dict(engine.steps)


def assert_same(got, ref):
    for a, b in zip(got, ref):
        assert a.tokens == b.tokens and a.text == b.text and a.temperature == b.temperature
        assert math.isclose(a.sum_logprob, b.sum_logprob, rel_tol=0, abs_tol=SUM_LOGPROB_TOL)
        assert a.no_speech_prob == b.no_speech_prob


def test_compacted_rows_equal_the_full_batch(engine, mel):
    """Windows of 15 to 100 tokens in a bucket of 8: the 7 windows run as a batch of 7 (the idle row never
    steps: `Session.head`), the long ones finish at batch 2 and 1, token for token as in the full batch,
    which runs every step at 8."""
    ref, full = decode(engine, mel, False)
    got, steps = decode(engine, mel, True)
    assert full == {8: max(len(r.tokens) for r in ref)}
    assert 8 not in steps and steps[7] > 0 and steps[1] > 0 and sum(steps.values()) == full[8]
    assert_same(got, ref)


def test_fallback_and_sampling_start_again_in_the_home_session(engine, mel):
    """A fallback pass (the long windows again, sampled at T = 0.4) prefills the home session, whose cross
    k/v compaction never wrote, and compacts again: equal to the same decode without compaction."""
    kw = dict(temperatures=(0.0, 0.4), needs_fallback=lambda r: len(r.tokens) > 25)
    ref, _ = decode(engine, mel, False, **kw)
    got, _ = decode(engine, mel, True, **kw)
    assert 0 < sum(r.temperature == 0.4 for r in ref) < len(ref)
    assert_same(got, ref)


def test_word_alignment_reads_the_home_session_after_compaction(engine, tiny_en, mel):
    """The alignment forward after a compacted decode equals the one before it (the same inputs: exact)."""
    enc = engine.encode(mel)
    tok = tiny_en.tokenizer
    seqs = [tok.sot_sequence() + [tok.no_timestamps] + r.tokens + [tok.eot]
            for r in enc.decode(DecodingOptions(without_timestamps=True))]
    before, logits_before = enc.align(seqs)
    engine.steps.clear()
    enc.decode(DecodingOptions())
    assert engine.steps[1] > 0
    after, logits_after = enc.align(seqs)
    assert all((a == b).all() for a, b in zip(before, after))
    assert all((a == b).all() for a, b in zip(logits_before, logits_after))


def test_a_live_encoded_batch_is_never_overwritten(engine, mel):
    """A batch encoded in bucket 2 and still held: the bucket-8 decode skips bucket 2 (steps at 8, then 1), and
    the held batch decodes as before; once it is dropped, bucket 2 is used again."""
    pair = engine.encode(mel[[3, 6]])
    alone = pair.decode(DecodingOptions())
    engine.steps.clear()
    engine.encode(mel).decode(DecodingOptions())
    assert engine.steps[2] == 0 and engine.steps[1] > 0
    assert [r.tokens for r in pair.decode(DecodingOptions())] == [r.tokens for r in alone]
    del pair
    engine.steps.clear()
    engine.encode(mel).decode(DecodingOptions())
    assert engine.steps[2] > 0
