"""The encoded batch (`Engine.encode` -> `Encoded`): one owner of a batch's cross k/v and its operations —
detect, decode (greedy, beams, best_of, fallback), align — and what it guarantees about its session."""

from __future__ import annotations

import pytest
import torch

from conftest import clip
from whisperfast.audio import load_audio
from whisperfast.decode.options import DecodingOptions
from whisperfast.features import short_form_features

CLIPS = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac"]


@pytest.fixture(scope="module")
def mel():
    return short_form_features([load_audio(clip(c)) for c in CLIPS], 80)  # [3, 80, 3000]


def test_decode_equals_the_model_api(tiny_en, mel):
    """engine.encode(mel).decode(options) is what model.decode does, window by window."""
    got = tiny_en.engine.encode(mel).decode(DecodingOptions())
    ref = tiny_en.decode([clip(c) for c in CLIPS])
    assert [r.tokens for r in got] == [r.tokens for r in ref] and [r.text for r in got] == [r.text for r in ref]
    assert all(r.tokens for r in got)


def test_an_encoded_batch_is_stale_once_its_session_is_reused(tiny_en, mel):
    """A later encode into the same bucket overwrites the cross k/v: the older batch refuses to decode
    rather than decode another batch's audio; a batch in another bucket is untouched."""
    e = tiny_en.engine
    first = e.encode(mel[:1])
    alone = first.decode(DecodingOptions())[0].tokens
    second = e.encode(mel[1:2])                      # bucket 1 again
    pair = e.encode(mel[:2])                         # bucket 2: another session
    for op in (lambda: first.decode(DecodingOptions()), first.detect_language, lambda: first.align([[1, 2]])):
        with pytest.raises(RuntimeError, match="overwritten by a later Engine.encode"):
            op()
    assert second.decode(DecodingOptions())[0].tokens == e.encode(mel[1:2]).decode(DecodingOptions())[0].tokens
    assert pair.decode(DecodingOptions())[0].tokens == alone


def test_rows_of_a_group_hold_their_windows_cross_kv(tiny_en, mel):
    """`rows(group)`: window w's cross k/v copied once to cross row w of a session of group rows per window
    (exact copies, not one per row); the home session keeps them, so a beam decode leaves word alignment of the
    same batch unchanged."""
    e = tiny_en.engine
    enc = e.encode(mel)
    seqs = [tiny_en.tokenizer.sot_sequence() + [tiny_en.tokenizer.no_timestamps] + r.tokens + [tiny_en.tokenizer.eot]
            for r in enc.decode(DecodingOptions(without_timestamps=True))]
    qk_before, _ = enc.align(seqs)
    group = enc.rows(5)
    assert group.batch == enc.size * 5 and group.group == 5
    for i in (0, tiny_en.config.n_text_layer - 1):
        home, grouped = enc.sess.cache.layer("cross_k", i), group.cache.layer("cross_k", i)
        assert grouped.shape == home.shape
        for w in range(enc.n):
            assert torch.equal(grouped[w], home[w])
    beams = enc.decode(DecodingOptions(beam_size=5))
    assert [len(r.tokens) > 0 for r in beams] == [True] * enc.n
    qk_after, _ = enc.align(seqs)
    assert all(torch.equal(a, b) for a, b in zip(qk_before, qk_after))  # same forward, same inputs: exact


def test_options_sample_len_gets_a_session_of_its_length(tiny_en, mel):
    """A decode whose sample_len differs from the encode's: the cross k/v follow into that session, and the
    tokens are the prefix of the default decode (greedy, same rules)."""
    enc = tiny_en.engine.encode(mel[:2])
    full = enc.decode(DecodingOptions())
    short = enc.decode(DecodingOptions(sample_len=5))
    assert [r.tokens for r in short] == [r.tokens[:5] for r in full]


def test_hold_eot_keeps_a_window_open_until_its_time(tiny_en, mel):
    """`hold_eot` (Row.hold_eot, what strategy="vad" gives each chunk: its length - 1 s): the row may not end
    before it has sampled a timestamp at or after the hold; rows without a hold decode as before."""
    enc = tiny_en.engine.encode(mel)
    free = enc.decode(DecodingOptions())
    held = enc.decode(DecodingOptions(), hold_eot=[None, 20.0, None])
    tb = tiny_en.tokenizer.timestamp_begin
    assert [held[i].tokens for i in (0, 2)] == [free[i].tokens for i in (0, 2)]
    last = max(t for t in free[1].tokens if t >= tb)
    assert (last - tb) * 0.02 < 5.0  # LDC93S1: 3 s of speech, the free row ends early
    stamps = [t for t in held[1].tokens if t >= tb]
    assert (max(stamps) - tb) * 0.02 >= 20.0 or len(held[1].tokens) >= tiny_en.engine.sample_len
    assert held[1].tokens[: len(free[1].tokens) - 1] == free[1].tokens[:-1]  # the same words up to where it ended


def test_hold_eot_applies_to_the_first_temperature_only(tiny_en, mel):
    """A held window that falls back is decoded at the next temperature free to stop (here LDC93S1, 3 s of
    speech held to 20 s at T = 0, then sampled at T = 0.2: it ends within its speech again)."""
    enc = tiny_en.engine.encode(mel)
    tb = tiny_en.tokenizer.timestamp_begin
    got = enc.decode(DecodingOptions(), temperatures=(0.0, 0.2), hold_eot=[None, 20.0, None],
                     needs_fallback=lambda r: r.temperature == 0.0)
    assert [r.temperature for r in got] == [0.2, 0.2, 0.2]
    assert (max(t for t in got[1].tokens if t >= tb) - tb) * 0.02 < 5.0
