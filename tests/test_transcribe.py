"""Long-form transcription: many files in one fixed batch, silence, progress, streaming, and the chunked strategy.

Parity of the sequential algorithm with openai-whisper is in test_longform_parity.py; here whisperfast is checked
against itself (batched vs one at a time, streamed vs not) and the chunked merge against transformers' code.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from conftest import clip, word_edits
from whisperfast.decode.engine import Encoded
from whisperfast.features import frame_levels
from whisperfast.longform import _ts

SR = 16000
FILES = ["jfk.flac", "sonnet001.mp3", "LDC93S1.wav", "61-70968-0000.flac", "multilingual.mp3"]


def key(result) -> list[tuple]:
    return [(s.seek, s.start, s.end, s.text, s.tokens, s.temperature) for s in result.segments]


def spy_on(monkeypatch, module=Encoded, name: str = "decode") -> list:
    """Record each call's results of `module.<name>` (a list per call; default: every decode of an encoded
    batch, whichever strategy asks for it)."""
    calls, real = [], getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(out := real(*args, **kwargs))
        return out

    monkeypatch.setattr(module, name, spy)
    return calls


# -------------------------------------------------------------------------------------------- many files


def test_batch_of_files_equals_one_at_a_time(tiny_en):
    """Five files, batch_size=4: each file is its own seek loop in the fixed batch; the short ones finish
    first and hand their slots to the next file. Per-file results equal batch_size=1 (greedy)."""
    paths = [clip(f) for f in FILES]
    one = tiny_en.transcribe(paths, batch_size=1, temperature=0.0)
    four = tiny_en.transcribe(paths, batch_size=4, temperature=0.0)
    assert [r.source for r in four] == paths
    for a, b in zip(one, four):
        assert key(b) == key(a) and b.text == a.text and b.segments
    assert "ask what you can do for your country" in four[0].text


def test_stream_many_and_skip_a_bad_file(tiny_en, tmp_path):
    paths = [clip("jfk.flac"), str(tmp_path / "missing.wav"), clip("LDC93S1.wav")]
    results = tiny_en.transcribe(paths, batch_size=2, on_error="skip", temperature=0.0)
    assert results[1].error and "missing.wav" in results[1].error and results[1].segments == []
    pairs = list(tiny_en.transcribe(paths, batch_size=2, on_error="skip", temperature=0.0, stream=True))
    assert {i for i, _ in pairs} == {0, 2}
    for i in (0, 2):
        assert [s for j, s in pairs if j == i] == results[i].segments


# ----------------------------------------------------------------------------------------------- silence


def noise(dbfs: float, seconds: float = 30.0) -> np.ndarray:
    """White noise whose RMS is `dbfs` relative to full scale 1.0."""
    x = np.random.default_rng(0).standard_normal(int(seconds * SR))
    return (x * 10 ** (dbfs / 20)).astype(np.float32)


@pytest.mark.parametrize("strategy", ["sequential", "chunked"])
def test_silence_gives_no_text(tiny_en, monkeypatch, strategy):
    """30 s of zeros / of -60 dBFS white noise: no text (openai-whisper says ' you' on the zeros: the window's
    no-speech probability is high but its avg_logprob is not low enough to skip it)."""
    calls = spy_on(monkeypatch)
    for audio in (np.zeros(30 * SR, np.float32), noise(-60.0)):
        r = tiny_en.transcribe(audio, strategy=strategy, batch_size=2)
        assert r.text == "" and r.segments == [] and r.duration == pytest.approx(30.0)
    assert calls == []  # the silence gate skipped every window without decoding it
    assert float(frame_levels(noise(-60.0)).max()) < -55.0


def test_frame_levels():
    import torch

    for n in (1, 159, 160, 161, 48007):
        x = noise(-20.0, n / SR)
        frames = torch.nn.functional.pad(torch.from_numpy(x).double(), (0, -n % 160)).view(-1, 160)
        ref = 10 * torch.log10(frames.square().mean(dim=-1))
        # float32 levels against float64 ones: measured 4.5e-6 dB
        assert torch.allclose(frame_levels(x).double(), ref, rtol=0, atol=1e-4)
    assert frame_levels(np.zeros(480, np.float32)).tolist() == [-200.0] * 3


def test_silence_gate_can_be_disabled(tiny_en, monkeypatch):
    calls = spy_on(monkeypatch)
    tiny_en.transcribe(np.zeros(5 * SR, np.float32), silence_threshold=None, temperature=0.0)
    assert len(calls) == 1  # decoded, as openai-whisper does


# ------------------------------------------------------------------------------------ progress, streaming


def test_progress_bar_on_stderr_only_when_verbose(tiny_en, capsys):
    tiny_en.transcribe(clip("jfk.flac"), temperature=0.0)
    assert capsys.readouterr() == ("", "")  # off by default
    r = tiny_en.transcribe(clip("jfk.flac"), temperature=0.0, verbose=True)
    out, err = capsys.readouterr()
    assert "11.0/11.0 audio s" in err and "100%" in err and "whisperfast" in err
    assert out.splitlines() == [f"[{_ts(s.start)} --> {_ts(s.end)}] {s.text}" for s in r.segments]
    assert (_ts(9.32), _ts(59.9996), _ts(3600.5)) == ("00:09.320", "01:00.000", "01:00:00.500")  # as openai's


@pytest.fixture(scope="module")
def sonnet(tiny_en):
    return tiny_en.transcribe(clip("sonnet001.mp3"))


def test_stream_yields_each_window_as_it_is_decoded(tiny_en, sonnet, monkeypatch):
    calls = spy_on(monkeypatch)
    gen = tiny_en.transcribe(clip("sonnet001.mp3"), stream=True)
    assert calls == []  # lazy: nothing decoded before the first segment is asked for
    seen = [(len(calls), seg) for seg in gen]
    seeks = sorted({seg.seek for _, seg in seen})
    assert len(seeks) == len(calls) >= 3
    assert all(n == seeks.index(seg.seek) + 1 for n, seg in seen)  # window k's segments come after decode k
    assert [seg for _, seg in seen] == sonnet.segments


# --------------------------------------------------------------------------------------------- chunked


def normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance / reference length, on normalised text."""
    ref = normalise(reference)
    return word_edits(ref, normalise(hypothesis)) / max(1, len(ref))


def test_wer():
    assert wer("a b c d", "a x c d e") == 0.5 and wer("Hello, world!", "hello world") == 0.0


def test_chunk_spans_match_transformers():
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    from whisperfast.chunked import STRIDE, chunk_spans

    class Features:  # chunk_iter calls the feature extractor; only the strides matter here
        sampling_rate = SR

        def __call__(self, chunk, **kwargs):
            return {}

    for n in (1, 80000, 80001, 480000, 480001, 800000, 852266, 3_140_000):
        ref = [item["stride"] for item in chunk_iter(np.zeros(n), Features(), 480000, STRIDE, STRIDE)]
        assert [(b - a, left, right) for a, b, left, right in chunk_spans(n)] == ref
        assert chunk_spans(n)[0][0] == 0 and chunk_spans(n)[-1][1] == n


def test_longest_common_sequence_matches_transformers():
    from transformers.models.whisper.tokenization_whisper import _find_longest_common_sequence

    from whisperfast.chunked import longest_common_sequence

    rng = random.Random(0)
    for _ in range(300):
        base = [rng.randrange(6) for _ in range(rng.randrange(2, 30))]
        seqs = []
        for _ in range(rng.randrange(1, 4)):
            a = rng.randrange(len(base))
            s = base[a: a + rng.randrange(1, 20)]
            seqs.append([t if rng.random() > 0.1 else 9 for t in s])  # with some disagreement
        assert longest_common_sequence(seqs) == _find_longest_common_sequence(seqs)


@pytest.fixture(scope="module")
def sixty_five_seconds() -> np.ndarray:
    from whisperfast.audio import load_audio

    gap = np.zeros(SR, np.float32)
    return np.concatenate([load_audio(clip("sonnet001.mp3")), gap, load_audio(clip("jfk.flac"))])


def test_chunked_merge_matches_transformers_and_sequential(tiny_en, tiny_en_dir, sixty_five_seconds, monkeypatch):
    """65 s: three overlapping chunks decoded in one batch; the merge equals transformers' `_decode_asr` on the same
    chunk outputs; the text is within 5% WER of the sequential one without conditioning on previous text (chunks
    never see the previous text; with it, tiny.en's sequential run drops the whole JFK sentence here)."""
    import torch
    from transformers import WhisperTokenizerFast

    from whisperfast import chunked

    audio = sixty_five_seconds
    calls = spy_on(monkeypatch)
    got = tiny_en.transcribe(audio, strategy="chunked", batch_size=4)
    assert len(calls) == 1 and len(calls[0]) == len(chunked.chunk_spans(len(audio))) == 3  # one batch
    outputs = [{"tokens": torch.tensor([r.tokens]), "stride": ((b - a) / SR, left / SR, right / SR)}
               for r, (a, b, left, right) in zip(calls[0], chunked.chunk_spans(len(audio)))]
    tok = WhisperTokenizerFast.from_pretrained(tiny_en_dir)
    text, extra = tok._decode_asr(outputs, return_timestamps=True, return_language=False, time_precision=0.02)
    assert got.text == text
    ends = [c["timestamp"][1] if c["timestamp"][1] is not None else got.duration for c in extra["chunks"]]
    assert [(s.start, s.end, s.text) for s in got.segments] == [
        (c["timestamp"][0], round(e, 2), c["text"]) for c, e in zip(extra["chunks"], ends)]

    sequential = tiny_en.transcribe(audio, condition_on_previous_text=False)
    assert wer(sequential.text, got.text) <= 0.05
    assert "ask what you can do for your country" in got.text


def test_options_are_checked(tiny_en):
    from whisperfast import OptionError

    with pytest.raises(OptionError, match="strategy"):
        tiny_en.transcribe(clip("jfk.flac"), strategy="parallel")
    with pytest.raises(OptionError, match="silence_threshold"):
        tiny_en.transcribe(clip("jfk.flac"), silence_threshold="loud")
