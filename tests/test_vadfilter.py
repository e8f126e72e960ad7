"""`vad_filter=True`: non-speech removed before decoding, segment and word times mapped back to the file's timeline."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_matches, clip

from whisperfast import cli
from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.errors import OptionError
from whisperfast.results import Segment, Word
from whisperfast.vad import TimeMap
from whisperfast.vadfilter import map_segments

SENTENCES = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac"]
GAPS = [3.0, 20.0, 15.0, 10.0]  # seconds of quiet noise before each sentence, and after the last


def noise(seconds: float, rng) -> np.ndarray:
    return (0.002 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)  # about -54 dBFS


@pytest.fixture(scope="module")
def spaced():
    """Three known sentences with long stretches of quiet noise between them; (audio, [(offset s, clip)])."""
    rng = np.random.default_rng(0)
    parts, placed, t = [], [], 0.0
    for gap, name in zip(GAPS, SENTENCES + [None]):
        parts.append(noise(gap, rng))
        t += gap
        if name:
            a = load_audio(clip(name))
            placed.append((t, name))
            parts.append(a)
            t += len(a) / SAMPLE_RATE
    return np.concatenate(parts), placed


def sentence_of(text: str) -> str:
    t = text.lower()
    return "jfk.flac" if ("americans" in t or "country" in t) else "LDC93S1.wav" if "suit" in t else "61-70968-0000.flac"


def check_times(result) -> None:
    last = 0.0
    for s in result.segments:
        assert last <= s.start <= s.end <= result.duration, (s.start, s.end)
        last = s.start
        for w in s.words or []:
            assert s.start <= w.start <= w.end <= s.end, (w, s.start, s.end)


@pytest.mark.parametrize("kw", [{}, {"word_timestamps": True}, {"strategy": "chunked"}])
def test_sentences_land_at_their_true_times(tiny_en, spaced, kw):
    audio, placed = spaced
    r = tiny_en.transcribe(audio, vad_filter=True, **kw)
    assert r.duration == len(audio) / SAMPLE_RATE
    check_times(r)
    for offset, name in placed:
        alone = tiny_en.transcribe(clip(name), **kw)  # the sentence's own timing, shifted to where it was put
        mine = [s for s in r.segments if sentence_of(s.text) == name]
        assert mine, (name, [s.text for s in r.segments])
        # the bound: 0.5 s (whisper's own timestamps of a sentence move by a few 20 ms steps with context)
        assert abs(mine[0].start - (offset + alone.segments[0].start)) <= 0.5, (name, mine[0].start, offset)
        assert abs(mine[-1].end - (offset + alone.segments[-1].end)) <= 0.5, (name, mine[-1].end, offset)
    assert " ".join(s.text for s in r.segments).count("country") == 2


def test_silence_and_noise_give_no_text_and_no_decoding(tiny_en, monkeypatch):
    from whisperfast.decode.engine import Encoded

    calls = []
    monkeypatch.setattr(Encoded, "decode", lambda *a, **k: calls.append(1) or [])
    rng = np.random.default_rng(1)
    for audio in (np.zeros(40 * SAMPLE_RATE, np.float32), noise(40, rng), (0.1 * rng.standard_normal(40 * SAMPLE_RATE)).astype(np.float32)):
        r = tiny_en.transcribe(audio, vad_filter=True, silence_threshold=None)
        assert (r.text, r.segments, r.duration) == ("", [], 40.0)
    assert calls == []


def test_several_files_in_a_batch_equal_one_by_one(tiny_en, spaced):
    audio, _ = spaced
    files = [clip("jfk.flac"), audio, clip("LDC93S1.wav")]
    params = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
    one = [tiny_en.transcribe(f, vad_filter=True, vad_parameters=params) for f in files]
    many = tiny_en.transcribe(files, vad_filter=True, vad_parameters=params, batch_size=3)
    for a, b in zip(many, one):
        # float32 GEMMs of 3 rows and of 1 take other kernel paths (as in test_beam): probabilities within 1e-5
        assert_matches(a.to_dict(), b.to_dict(), {"avg_logprob": 1e-5, "no_speech_prob": 1e-5})
    assert many[0].source == clip("jfk.flac") and many[0].duration == 11.0


@pytest.mark.parametrize("kw, message", [
    (dict(vad_filter=True, vad_parameters={"threshold": 2}), "threshold"),
    (dict(vad_filter=True, vad_parameters={"min_silence": 3}), "unknown option"),
    (dict(vad_filter=True, vad_parameters=[1]), "dict or a VadOptions"),
    (dict(vad_parameters={"threshold": 0.4}), "needs vad_filter=True"),
    (dict(vad_filter="yes"), "vad_filter must be True or False"),
])
def test_bad_vad_options_are_option_errors(tiny_en, kw, message):
    with pytest.raises(OptionError, match=message):
        tiny_en.transcribe(clip("jfk.flac"), **kw)


def test_map_segments_hand_computed():
    # regions at 1-3 s and 10-12 s of the original, 0.4 s of padding: speech-only 0-2 s is 1-3 s, 2-4 s is 10-12 s
    m = TimeMap([{"start": SAMPLE_RATE, "end": 3 * SAMPLE_RATE}, {"start": 10 * SAMPLE_RATE, "end": 12 * SAMPLE_RATE}],
                slack=0.7)
    segs = [Segment(0, 0, 0.0, 1.5, " a", [], 0.0, 0.0, 1.0, 0.0),
            Segment(1, 150, 1.5, 3.8, " b", [], 0.0, 0.0, 1.0, 0.0),    # 0.5 s of it before the cut: padding
            Segment(2, 200, 1.0, 3.0, " c", [], 0.0, 0.0, 1.0, 0.0),    # 1 s on each side: spans the gap
            Segment(3, 300, 2.0, 2.0, "", [], 0.0, 0.0, 1.0, 0.0),
            Segment(4, 300, 1.9, 2.4, " d", [], 0.0, 0.0, 1.0, 0.0,
                    words=[Word(1.9, 1.98, " x", 1.0), Word(1.98, 2.4, " y", 1.0)])]
    map_segments(segs, m)
    assert [(s.start, s.end) for s in segs] == [(1.0, 2.5), (10.0, 11.8), (2.0, 11.0), (10.0, 10.0), (2.9, 10.4)]
    assert [(w.start, w.end) for w in segs[4].words] == [(2.9, 2.98), (10.0, 10.4)]  # a word stays in its region
    assert [s.seek for s in segs] == [100, 250, 1000, 1100, 1100]


def test_cli_passes_vad_options(monkeypatch, capsys, tmp_path):
    seen = {}

    class StandIn:
        def transcribe(self, paths, **kw):
            seen.update(kw)
            from whisperfast.results import TranscriptionResult
            return [TranscriptionResult(text=" hi", language="en") for _ in paths]

    monkeypatch.setattr(cli, "load", lambda args: StandIn())
    (tmp_path / "a.wav").write_bytes(b"x")
    argv = [str(tmp_path / "a.wav"), "-o", "-", "--vad-filter", "--vad_parameters", '{"min_silence_duration_ms": 500}']
    assert cli.main(argv) == 0
    assert seen["vad_filter"] is True and seen["vad_parameters"] == {"min_silence_duration_ms": 500}
    assert cli.main([str(tmp_path / "a.wav"), "--vad_parameters", "[1, 2]"]) == 2
    assert "--vad_parameters" in capsys.readouterr().err


def test_cli_end_to_end(capsys, tmp_path):
    rng = np.random.default_rng(2)
    import soundfile as sf

    path = tmp_path / "spaced.wav"
    sf.write(path, np.concatenate([noise(12, rng), load_audio(clip("LDC93S1.wav"))]), SAMPLE_RATE)
    assert cli.main([str(path), "-o", "-", "-f", "srt", "--vad_filter", "True", "--verbose", "False"]) == 0
    out = capsys.readouterr().out
    assert "00:00:11," in out.splitlines()[1] and "dark suit" in out.replace("dog suit", "dark suit")
