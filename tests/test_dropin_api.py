"""The Python API as openai-whisper users write it: results indexed like `whisper.transcribe()`'s dict,
segments and words too, compared key by key with openai's own result; openai's `fp16` keyword."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import whisperfast
from whisperfast.audio import load_audio
from whisperfast.errors import OptionError
from whisperfast.results import Segment, TranscriptionResult, Word

from conftest import clip

whisper = pytest.importorskip("whisper", reason="pip install openai-whisper (test-only reference)")


def test_results_answer_openais_keys_key_by_key(tiny_en, openai_tiny_en):
    audio = load_audio(clip("jfk.flac"))
    ref = whisper.transcribe(openai_tiny_en, audio, fp16=False, word_timestamps=True)
    ours = tiny_en.transcribe(audio, word_timestamps=True)
    assert list(ours.keys()) == list(ref.keys()) == ["text", "segments", "language"]
    assert ours["text"] == ref["text"] and ours["language"] == ref["language"] == "en"
    assert len(ours["segments"]) == len(ref["segments"])
    for seg, ref_seg in zip(ours["segments"], ref["segments"]):
        assert list(seg.keys()) == list(ref_seg.keys())
        for key in ("id", "seek", "text", "tokens"):  # ids and texts exactly
            assert seg[key] == ref_seg[key], key
        for key in ("start", "end", "temperature"):  # exact: multiples of 0.02 s, the fallback schedule
            assert seg[key] == pytest.approx(ref_seg[key], abs=1e-9), key
        # BLAS sums in another order: log-probabilities within 1e-3, as test_longform_parity
        for key in ("avg_logprob", "compression_ratio", "no_speech_prob"):
            assert seg[key] == pytest.approx(ref_seg[key], abs=1e-3), key
        for word, ref_word in zip(seg["words"], ref_seg["words"], strict=True):
            assert list(word.keys()) == list(ref_word.keys()) == ["word", "start", "end", "probability"]
            assert word["word"] == ref_word["word"]
            assert word["start"] == pytest.approx(ref_word["start"], abs=0.0201)  # one 20 ms frame (words tests)
    plain = tiny_en.transcribe(audio)
    assert "words" not in plain["segments"][0] and "words" in list(ref["segments"][0])


def test_dict_access_behaves_like_a_dict():
    w = Word(start=0.0, end=0.5, word=" Hi", probability=0.9)
    s = Segment(id=0, seek=0, start=0.0, end=1.0, text=" Hi", tokens=[1], temperature=0.0, avg_logprob=-0.1,
                compression_ratio=1.0, no_speech_prob=0.01, words=[w])
    r = TranscriptionResult(text=" Hi", language="en", segments=[s])
    assert r["segments"][0]["words"][0]["word"] == " Hi" and r.get("nope", 7) == 7 and r.get("text") == " Hi"
    assert dict(r) == {"text": " Hi", "segments": [s], "language": "en"}
    assert dict(w.items()) == w.to_dict() and list(s.values())[2] == 0.0 and len(s) == 11
    s["text"] = " Hello"  # openai users edit their dicts
    assert s.text == " Hello"
    with pytest.raises(KeyError):
        r["duration"]  # an attribute, not one of openai's keys
    with pytest.raises(KeyError):
        s["speaker"] = 1


def test_fp16_keyword(tiny_en, tiny_en_dir, monkeypatch):
    audio = load_audio(clip("LDC93S1.wav"))
    text = tiny_en.transcribe(audio).text
    assert tiny_en.transcribe(audio, fp16=False).text == text
    with pytest.warns(UserWarning, match="^FP16 is not supported on CPU; using FP32 instead$"):
        assert tiny_en.transcribe(audio, fp16=True).text == text
    with pytest.raises(OptionError, match="fp16 must be True or False"):
        tiny_en.transcribe(audio, fp16="no")
    half = whisperfast.load_model(tiny_en_dir, device="cpu", dtype="float16")
    with pytest.raises(OptionError, match=r"fp16=False: this model was loaded as float16; .*dtype='float32'"):
        half.transcribe(audio, fp16=False)
    monkeypatch.setattr(whisperfast, "_loaded", {})
    assert whisperfast.transcribe(audio, model=str(tiny_en_dir), fp16=False).text == text
    (model,) = whisperfast._loaded.values()
    assert model.model.dtype == torch.float32


def test_openai_keywords_not_offered_say_so(tiny_en):
    audio = load_audio(clip("LDC93S1.wav"))
    with pytest.raises(OptionError, match="openai-whisper's option prefix is not supported"):
        tiny_en.transcribe(audio, prefix="Hello")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tiny_en.transcribe(audio, verbose=None).text  # openai's "print nothing"


@pytest.mark.parametrize("clips", ["5,20,30", "0,12.5,40,45.3,50", [3.0, 9.99, 31.0, 64.0], "62"])
def test_clip_timestamps_as_openai(tiny_en, openai_tiny_en, clips):
    """openai's seek_clips: start,end pairs in seconds, an odd last start runs to the end of the file."""
    audio = np.concatenate([load_audio(clip("sonnet001.mp3")), load_audio(clip("jfk.flac"))])  # 64.3 s
    ref = whisper.transcribe(openai_tiny_en, audio, fp16=False, clip_timestamps=clips)
    ours = tiny_en.transcribe(audio, clip_timestamps=clips)
    assert ours["text"] == ref["text"]
    assert [(s["seek"], s["tokens"], s["text"]) for s in ours["segments"]] == [
        (s["seek"], s["tokens"], s["text"]) for s in ref["segments"]]
    assert [t for s in ours["segments"] for t in (s["start"], s["end"])] == pytest.approx(
        [t for s in ref["segments"] for t in (s["start"], s["end"])], abs=1e-9)  # from the same tokens


def test_clip_timestamps_past_the_end_and_bad_values(tiny_en):
    """An end past the file stops at its end (openai-whisper decodes empty windows there without end)."""
    audio = load_audio(clip("jfk.flac"))
    assert tiny_en.transcribe(audio, clip_timestamps="2,90").text == tiny_en.transcribe(audio, clip_timestamps="2").text
    assert tiny_en.transcribe(audio, clip_timestamps="20,30").segments == []
    for bad in ("a,b", "-1,3", [float("nan")], 5):
        with pytest.raises(OptionError, match="clip_timestamps"):
            tiny_en.transcribe(audio, clip_timestamps=bad)
