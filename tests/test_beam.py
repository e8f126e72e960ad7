"""Beam search and best_of against openai-whisper (decoding.py, transcribe.py) on the same tiny.en weights.

openai-whisper loads a checkpoint exported by `weights_tools export-openai` and gets the same 16 kHz samples and
log-mel as whisperfast. Its beam search runs once per clip and patience (module cache): the candidates it hands
to its ranker are kept, so its own MaximumLikelihoodRanker gives the reference for both length penalties (the
search itself does not read length_penalty). openai's batched beam search fails on a batch of several windows
(its audio features are not repeated per beam), so each clip is decoded alone there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CLIPS, assert_matches, clip

whisper = pytest.importorskip("whisper", reason="pip install openai-whisper (test-only reference)")

PENALTIES = (None, 0.6)
# float32 (log-)softmax of two engines' logits summed over a window: <= 2e-6 measured, 2e-4 allowed (as in
# tests/test_longform_parity.py: a processor's vector path alone moves such values by ~2e-5)
TOL = 2e-4


@pytest.fixture(scope="module")
def audios() -> dict[str, np.ndarray]:
    from whisperfast.audio import load_audio

    return {name: load_audio(clip(name)) for name in CLIPS}


def openai_beams(model, audio: np.ndarray, patience: float | None) -> dict:
    """length_penalty -> (tokens, sum_logprob, avg_logprob, no_speech_prob) of openai's beam search (beam 5)."""
    from whisper.decoding import DecodingOptions, DecodingTask, MaximumLikelihoodRanker

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))
    task = DecodingTask(model, DecodingOptions(beam_size=5, patience=patience, language="en", fp16=False))
    seen = {}
    rank = task.sequence_ranker.rank

    def keep(tokens, sum_logprobs):  # this task's ranker only: nothing global is patched
        seen["tokens"], seen["sum_logprobs"] = tokens, sum_logprobs
        return rank(tokens, sum_logprobs)

    task.sequence_ranker.rank = keep
    result = task.run(mel[None])[0]
    out = {}
    for alpha in PENALTIES:
        i = MaximumLikelihoodRanker(alpha).rank(seen["tokens"], seen["sum_logprobs"])[0]
        tokens, lp = seen["tokens"][0][i].tolist(), seen["sum_logprobs"][0][i]
        out[alpha] = (tokens, lp, lp / (len(tokens) + 1), result.no_speech_prob, task.tokenizer.decode(tokens).strip())
    assert out[None][0] == result.tokens  # the kept candidates are the ones openai ranked
    return out


@pytest.fixture(scope="module")
def ours_alone(tiny_en, audios) -> dict:
    """(clip, patience, length_penalty) -> whisperfast's decode of that clip alone, computed once."""
    cache: dict = {}

    def get(name, patience, alpha):
        if (name, patience, alpha) not in cache:
            cache[name, patience, alpha] = tiny_en.decode(audios[name], beam_size=5, patience=patience,
                                                          length_penalty=alpha)
        return cache[name, patience, alpha]

    return get


@pytest.mark.parametrize("name", CLIPS)
def test_beam_matches_openai(openai_tiny_en, ours_alone, audios, name):
    """Every clip, first 30 s, beam 5, patience 1 and 2, length_penalty None and 0.6: openai's tokens exactly."""
    for patience in (None, 2.0):
        ref = openai_beams(openai_tiny_en, audios[name], patience)
        for alpha in PENALTIES:
            got = ours_alone(name, patience, alpha)
            tokens, sum_lp, avg_lp, no_speech, text = ref[alpha]
            assert got.tokens == tokens, (name, patience, alpha)
            assert got.sum_logprob == pytest.approx(sum_lp, rel=0, abs=TOL)
            assert got.avg_logprob == pytest.approx(avg_lp, rel=0, abs=TOL)
            assert got.no_speech_prob == pytest.approx(no_speech, rel=0, abs=TOL)
            assert got.text == text and got.temperature == 0.0


BATCH = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac", "stereo_diarization.wav"]


def test_batched_beams_equal_each_alone(tiny_en, ours_alone, audios):
    """Four windows x 5 beams in one session (20 rows): each window as when decoded alone, although they end
    at different steps (a finished window's beams freeze)."""
    batch = tiny_en.decode([audios[n] for n in BATCH], beam_size=5)
    for name, r in zip(BATCH, batch):
        alone = ours_alone(name, None, None)
        assert r.tokens == alone.tokens, name
        assert r.sum_logprob == pytest.approx(alone.sum_logprob, rel=0, abs=TOL)


def test_decode_with_beams_ignores_the_temperature_as_openai(tiny_en, openai_tiny_en, ours_alone, audios):
    """openai's decode() searches with beam_size at any temperature (no sampling, no temperature scaling)."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audios["jfk.flac"]))
    ref = whisper.decode(openai_tiny_en, mel, whisper.DecodingOptions(beam_size=5, temperature=0.5, language="en",
                                                                    fp16=False))
    got = tiny_en.decode(audios["jfk.flac"], beam_size=5, temperature=0.5)
    assert got.tokens == ref.tokens == ours_alone("jfk.flac", None, None).tokens
    assert got.temperature == 0.5


def test_beam_size_1_is_greedy(tiny_en, audios):
    names = ["jfk.flac", "LDC93S1.wav", "sonnet001.mp3"]
    greedy = tiny_en.decode([audios[n] for n in names])
    beam1 = tiny_en.decode([audios[n] for n in names], beam_size=1)
    assert [r.tokens for r in beam1] == [r.tokens for r in greedy]
    assert [r.sum_logprob for r in beam1] == pytest.approx([r.sum_logprob for r in greedy], rel=0, abs=TOL)


def test_best_of_deterministic_and_batch_invariant(tiny_en, audios):
    """best_of 4 at T = 0.8: the same seed gives the same tokens twice and at any batch size; another seed
    draws other samples (4 windows x 4 rows)."""
    names = ["jfk.flac", "LDC93S1.wav"]
    batch = tiny_en.decode([audios[n] for n in names], temperature=0.8, best_of=4, seed=3)
    again = tiny_en.decode([audios[n] for n in names], temperature=0.8, best_of=4, seed=3)
    alone = [tiny_en.decode(audios[n], temperature=0.8, best_of=4, seed=3) for n in names]
    assert [r.tokens for r in batch] == [r.tokens for r in again] == [r.tokens for r in alone]
    other = tiny_en.decode([audios[n] for n in names], temperature=0.8, best_of=4, seed=4)
    assert [r.tokens for r in other] != [r.tokens for r in batch]
    assert all(r.temperature == 0.8 for r in batch)


def test_best_of_picks_the_ranker_best(tiny_en, audios):
    """The chosen sample is the MaximumLikelihoodRanker's best of the window's samples, each drawn on its own
    (sample k of a window is the row `Row(..., sample=k)`; sample 0 is the plain T > 0 draw)."""
    from whisperfast.decode.beam import score_of
    from whisperfast.decode.options import DecodingOptions
    from whisperfast.decode.rows import Row
    from whisperfast.decode.window import make_result
    from whisperfast.features import short_form_features

    engine, tok = tiny_en.engine, tiny_en.tokenizer
    got = tiny_en.decode(audios["LDC93S1.wav"], temperature=1.0, best_of=3, seed=7, length_penalty=0.6)
    mel = short_form_features([audios["LDC93S1.wav"]], tiny_en.config.n_mels)
    samples, enc = [], engine.encode(mel)
    for k in range(3):
        row = Row(tuple(tok.sot_sequence("en", "transcribe", True)), 0, 1.0, True, 7, k)
        out = enc.run([row], DecodingOptions(temperature=1.0))[0]
        samples.append(make_result(engine, out, 1.0, "en"))
    assert len({tuple(s.tokens) for s in samples}) > 1  # the copies of one window draw apart
    scores = [score_of(s.sum_logprob, len(s.tokens), 0.6) for s in samples]
    assert got.tokens == samples[int(np.argmax(scores))].tokens
    assert got.tokens == tiny_en.decode(audios["LDC93S1.wav"], temperature=1.0, best_of=3, seed=7,
                                        length_penalty=0.6).tokens


def test_longform_beam_matches_openai(tiny_en, openai_tiny_en, audios):
    """transcribe() with whisper's CLI search defaults (beam 5 at T = 0, best_of 5 on fallback) and the default
    temperature schedule: every window up to the first sampled fallback (in either engine) is openai's."""
    audio = np.concatenate([audios["sonnet001.mp3"], audios["jfk.flac"], audios["61-70968-0000.flac"]])
    torch.manual_seed(0)
    ref = whisper.transcribe(openai_tiny_en, audio, beam_size=5, best_of=5, fp16=False)["segments"]
    got = tiny_en.transcribe(audio, beam_size=5, best_of=5).to_dict()["segments"]
    fields = ("seek", "start", "end", "text", "tokens", "temperature")
    n = 0
    for g, r in zip(got, ref):
        if g["temperature"] > 0 or r["temperature"] > 0:
            break
        assert [g[f] for f in fields] == [r[f] for f in fields]
        assert g["avg_logprob"] == pytest.approx(r["avg_logprob"], rel=0, abs=TOL)
        n += 1
    assert n >= 5  # the comparison covered real windows, not just an early fallback


def test_transcribe_batch_of_files_with_beams_and_words(tiny_en):
    """Three files at batch_size 4 with whisper's CLI search defaults and word timestamps: each result (segments,
    tokens, texts, words, times) exactly as the file transcribed alone, its probabilities within 1e-5; the
    alignment reads the windows' cross k/v after the beam rows (5 per window) were decoded."""
    names = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac"]
    opts = dict(beam_size=5, best_of=5, word_timestamps=True)
    batch = tiny_en.transcribe([clip(n) for n in names], batch_size=4, **opts)
    for name, r in zip(names, batch):
        # float32 GEMMs of 20 rows and of 5 take other kernel paths: avg_logprob moved by 1e-7 on one machine
        assert_matches(r.to_dict(), tiny_en.transcribe(clip(name), **opts).to_dict(),
                       {"avg_logprob": 1e-5, "no_speech_prob": 1e-5, "probability": 1e-5}, name)
        assert all(s.words and s.temperature == 0.0 for s in r.segments)
