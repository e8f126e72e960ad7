"""Word timestamps against openai-whisper: the DTW and median filter against openai's code, the segment
rules (`add_word_timestamps`) against openai's function on random alignments, and whole transcriptions on
real audio against openai-whisper's `transcribe(word_timestamps=True)` on the same weights.

openai-whisper is a test-only reference: the transcriptions it gives are stored in
tests/fixtures/words_tiny_en.json (`python tests/test_words.py` rewrites it from openai-whisper, about a
minute); the `slow` test checks that file against openai-whisper live.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES, assert_matches, clip
from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.decode.timing import WordTiming, dtw, median_filter
from whisperfast.results import Word
from whisperfast.words import WordOptions, WordWindow, add_word_timestamps, seek_by_words

HAVE_OPENAI = importlib.util.find_spec("whisper") is not None and importlib.util.find_spec("numba") is not None
needs_openai = pytest.mark.skipif(not HAVE_OPENAI, reason="openai-whisper is the reference (test-only)")
REFERENCE = FIXTURES / "words_tiny_en.json"
OPTIONS = dict(word_timestamps=True, temperature=0.0, condition_on_previous_text=False)


def noise(seconds: float, seed: int = 3, level: float = 0.003) -> np.ndarray:
    """Quiet white noise: tiny.en hallucinates " . . ." on it (a hallucination_silence_threshold case)."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * level).astype(np.float32)


CASES = {  # name: (audio, extra transcribe options)
    "jfk.flac": (lambda: load_audio(clip("jfk.flac")), {}),
    "sonnet001.mp3": (lambda: load_audio(clip("sonnet001.mp3")), {}),
    "noise3s_hst1": (lambda: noise(3.0), {"hallucination_silence_threshold": 1.0}),
}


# --- DTW and median filter ---------------------------------------------------------------------------
def dtw_loops(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """openai-whisper's dtw_cpu + backtrace, transcribed as plain loops (numba removed)."""
    N, M = x.shape
    cost = np.ones((N + 1, M + 1), dtype=np.float32) * np.inf
    trace = -np.ones((N + 1, M + 1), dtype=np.float32)
    cost[0, 0] = 0
    for j in range(1, M + 1):
        for i in range(1, N + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    i, j = trace.shape[0] - 1, trace.shape[1] - 1
    trace[0, :] = 2
    trace[:, 0] = 1
    result = []
    while i > 0 or j > 0:
        result.append((i - 1, j - 1))
        if trace[i, j] == 0:
            i, j = i - 1, j - 1
        elif trace[i, j] == 1:
            i -= 1
        else:
            j -= 1
    result = np.array(result)[::-1, :].T
    return result[0], result[1]


MATRICES = [(1, 1), (1, 7), (7, 1), (2, 2), (5, 9), (12, 40), (23, 17), (30, 120)]


@pytest.mark.parametrize("shape", MATRICES)
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_dtw_equals_openai_loops(shape, kind):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) if kind == "normal" else rng.integers(-1, 2, shape).astype(np.float64)
    for m in (x, -np.abs(x), np.zeros(shape)):  # all-equal costs: every comparison is a tie
        text, time = dtw(m)
        ref_text, ref_time = dtw_loops(m)
        np.testing.assert_array_equal(text, ref_text)
        np.testing.assert_array_equal(time, ref_time)


@needs_openai
def test_dtw_equals_openai_numba():
    from whisper.timing import dtw_cpu

    rng = np.random.default_rng(0)
    for shape in MATRICES:
        for x in (rng.standard_normal(shape), rng.integers(-1, 2, shape).astype(np.float64)):
            np.testing.assert_array_equal(np.stack(dtw(x)), dtw_cpu(x))


def median_loops(x: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    y = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.stack([np.median(y[..., i: i + width], axis=-1) for i in range(x.shape[-1])], axis=-1)


@pytest.mark.parametrize("shape", [(5,), (3, 8), (2, 4, 50), (6, 11, 1500), (2, 3, 3), (2, 3, 4)])
@pytest.mark.parametrize("width", [1, 3, 7])
def test_median_filter(shape, width):
    x = torch.from_numpy(np.random.default_rng(width).standard_normal(shape).astype(np.float32))
    ours = median_filter(x, width)
    np.testing.assert_array_equal(ours.numpy(), median_loops(x.numpy(), width))
    if HAVE_OPENAI:
        from whisper.timing import median_filter as openai_median_filter

        torch.testing.assert_close(ours, openai_median_filter(x, width), rtol=0, atol=0)


# --- segment rules on random alignments, against openai's add_word_timestamps ----------------------
def random_window(rng: np.random.Generator, eot: int = 50257, ts: int = 50364):
    """A window of 1-4 segments with timestamps tokens, and an alignment of its words."""
    n_words = int(rng.integers(1, 40))
    vocab = [" so", " my", " fellow", ".", ",", " \"", "!", " (", " Americans", "?", " ask", "-", "'s"]
    words, tokens, t, k = [], [], float(rng.uniform(0, 3)), 0
    for _ in range(n_words):
        n_tok = int(rng.integers(1, 4))
        ids = list(range(k, k + n_tok))
        k += n_tok
        dur = 0.0 if rng.random() < 0.15 else float(rng.choice([0.02, 0.1, 0.3, 0.8, 2.5, 4.0]))
        words.append((str(rng.choice(vocab)), ids, t, t + dur, float(rng.uniform(0.01, 1))))
        tokens += ids
        t = t + dur + float(rng.choice([0, 0, 0.04, 1.5]))
    cuts = sorted(set(rng.integers(1, len(tokens) + 1, int(rng.integers(0, 4))).tolist()) | {len(tokens)})
    segments, last, start = [], 0, float(rng.uniform(0, 2))
    for cut in cuts:
        end = start + float(rng.uniform(0, 8))
        segments.append(dict(seek=0, start=start, end=end, tokens=[ts + 1] + tokens[last:cut] + [ts + 2, eot + 5]))
        last, start = cut, end + float(rng.uniform(-1, 2))
    return segments, words


@needs_openai
@pytest.mark.parametrize("seed", range(60))
def test_add_word_timestamps_equals_openai(seed, monkeypatch):
    import whisper.timing as ot

    rng = np.random.default_rng(seed)
    segments, words = random_window(rng)
    seek, last_speech = int(rng.integers(0, 5000)), float(rng.uniform(0, 60))
    for s in segments:
        s["seek"], s["start"], s["end"] = seek, s["start"] + seek / 100, s["end"] + seek / 100
    theirs, ours = copy.deepcopy(segments), copy.deepcopy(segments)
    monkeypatch.setattr(ot, "find_alignment", lambda *a, **k: [ot.WordTiming(*w) for w in copy.deepcopy(words)])
    ot.add_word_timestamps(segments=theirs, model=None, tokenizer=type("T", (), {"eot": 50257}), mel=None,
                           num_frames=3000, last_speech_timestamp=last_speech)
    texts = [[t for t in s["tokens"] if t < 50257] for s in ours]
    add_word_timestamps(ours, texts, [WordTiming(*w) for w in copy.deepcopy(words)], seek, last_speech, WordOptions())
    for a, b in zip(ours, theirs):  # the same Python float arithmetic on the same given alignment: exact
        assert (a["start"], a["end"]) == (b["start"], b["end"])
        assert [(w.word, w.start, w.end, w.probability) for w in a["words"]] == [
            (w["word"], w["start"], w["end"], w["probability"]) for w in b["words"]]


# --- the seek rules after the words (hand-computed cases) -----------------------------------------
def words_segment(start: float, end: float, probability: float = 0.9, n: int = 4) -> dict:
    step = (end - start) / n
    words = [Word(start + i * step, start + (i + 1) * step, f" w{i}", probability) for i in range(n)]
    return dict(start=start, end=end, tokens=[], words=words)


def window(segments, *, single_ending=False, seek=0, next_seek=None, last_speech=0.0) -> WordWindow:
    tokens = [50364, 1, 50365] + ([1, 50400] if single_ending else [50400, 50400])
    return WordWindow(row=0, segments=segments, tokens=tokens, seek=seek, size=3000,
                      next_seek=next_seek if next_seek is not None else seek + 1234, content_frames=6000,
                      language="en", last_speech=last_speech)


def test_seek_to_last_word_end():
    w = window([words_segment(1.0, 5.0), words_segment(6.0, 9.37)])
    seek_by_words(w, 50364, None)
    assert (w.seek, w.skip, w.last_speech) == (937, False, 9.37)
    w = window([words_segment(1.0, 5.0)], single_ending=True)  # a single timestamp ending keeps its seek
    seek_by_words(w, 50364, None)
    assert (w.seek, w.last_speech) == (1234, 5.0)


def test_hallucination_between_silences_is_cut():
    """A low-probability segment with silence on both sides: cut, seek to its start (openai's loop)."""
    segs = [words_segment(1.0, 5.0), words_segment(20.0, 20.4, probability=0.05)]
    w = window(segs, last_speech=0.5)
    seek_by_words(w, 50364, 2.0)
    assert (w.seek, w.skip, len(w.segments), w.last_speech) == (2000, False, 1, 5.0)
    w = window([words_segment(1.0, 5.0), words_segment(20.0, 20.4)], last_speech=0.5)  # probable: kept
    seek_by_words(w, 50364, 2.0)
    assert (w.seek, len(w.segments), w.last_speech) == (2040, 2, 20.4)
    w = window([words_segment(1.0, 5.0), words_segment(20.0, 29.0)])  # ends near the window end:
    seek_by_words(w, 50364, 2.0)  # remaining 1 s < threshold: the whole window
    assert w.seek == 3000


def test_hallucination_first_skips_leading_silence():
    """The first segment with words is anomalous after a gap > threshold: drop the window, seek past the gap."""
    segs = [words_segment(14.5, 14.6, probability=0.05), words_segment(16.0, 19.0)]  # window from 10 s
    w = window(segs, seek=1000, last_speech=3.0)
    seek_by_words(w, 50364, 2.0)
    assert (w.seek, w.skip, w.last_speech) == (1000 + 450, True, 3.0)
    w = window([words_segment(11.5, 11.6, probability=0.05), words_segment(16.0, 19.0)], seek=1000)
    seek_by_words(w, 50364, 2.0)  # a gap of 1.5 s < threshold, but silence after it: cut there
    assert (w.seek, w.skip, len(w.segments), w.last_speech) == (1150, False, 0, 0.0)
    w = window([words_segment(11.5, 11.6, probability=0.05), words_segment(12.0, 19.0)], seek=1000)
    seek_by_words(w, 50364, 2.0)  # speech right after it: kept, seek to the last word end
    assert (w.seek, w.skip, len(w.segments), w.last_speech) == (1900, False, 2, 19.0)


# --- whole transcriptions against openai-whisper ----------------------------------------------------
def ours_words(model, names: list[str], monkeypatch) -> dict:
    """{name: {"segments": [...], "windows": [seek of each word-timed window]}} from whisperfast, the files
    sharing one batch (one alignment forward per step for all of them)."""
    from whisperfast import sequential as wt
    windows: dict[int, list[int]] = {i: [] for i in range(len(names))}
    real = wt.timed_splits

    def spy(model, plan, enc, streams, results):
        seeks = [s.seek for s in streams]
        timed = real(model, plan, enc, streams, results)
        for s, seek in zip(streams, seeks):
            if id(s) in timed:
                windows[s.index].append(seek)
        return timed

    monkeypatch.setattr(wt, "timed_splits", spy)
    extra = CASES[names[0]][1]
    assert all(CASES[n][1] == extra for n in names)
    results = model.transcribe([CASES[n][0]() for n in names], batch_size=len(names), silence_threshold=None,
                               **OPTIONS, **extra)
    return {n: dict(segments=[s.to_dict() for s in r.segments], windows=windows[i])
            for i, (n, r) in enumerate(zip(names, results))}


def openai_words(pt: str, names: list[str]) -> dict:
    import whisper

    wt = sys.modules["whisper.transcribe"]
    model = whisper.load_model(pt, device="cpu")
    model.set_alignment_heads(torch.load(pt, weights_only=True)["alignment_heads"])
    windows: list[int] = []
    real = wt.add_word_timestamps

    def spy(**kw):
        windows.append(kw["segments"][0]["seek"])
        return real(**kw)

    wt.add_word_timestamps = spy
    out = {}
    try:
        for name in names:
            audio, extra = CASES[name]
            windows.clear()
            r = model.transcribe(audio(), fp16=False, **OPTIONS, **extra)
            segs = [dict(seek=s["seek"], start=float(s["start"]), end=float(s["end"]), text=s["text"],
                         words=[dict(word=w["word"], start=float(w["start"]), end=float(w["end"]),
                                     probability=float(w["probability"])) for w in s["words"]])
                    for s in r["segments"]]
            out[name] = dict(segments=segs, windows=list(windows))
    finally:
        wt.add_word_timestamps = real
    return out


# Our DTW runs on attention weights that differ from openai-whisper's in the last float bits (other kernels, and
# the reference was stored on another machine): a near-tie in its cost may move a boundary by one 20 ms frame
# (measured: 0 s on every word). The 1e-6 absorbs the binary rounding of times that are multiples of 0.01 s.
ONE_FRAME = 0.02 + 1e-6
# A word's probability: float32 softmax of logits from other kernels (measured <= 2.5e-6 here; openai-whisper's
# own values move by 2e-5 between machines of one kind), so 1e-4 absolute.
PROBABILITY_TOL = 1e-4


def compare(ours: dict, ref: dict) -> tuple[float, float, int]:
    """Same segments (seek, text, words); -> (max, mean |start/end difference| over words, n words)."""
    assert [(s["seek"], s["text"]) for s in ours["segments"]] == [(s["seek"], s["text"]) for s in ref["segments"]]
    a = [w for s in ours["segments"] for w in s["words"]]
    b = [w for s in ref["segments"] for w in s["words"]]
    assert [w["word"] for w in a] == [w["word"] for w in b]
    diffs = np.array([[x["start"] - y["start"], x["end"] - y["end"]] for x, y in zip(a, b)]).reshape(-1)
    assert all(abs(x["probability"] - y["probability"]) <= PROBABILITY_TOL for x, y in zip(a, b))
    for s, t in zip(ours["segments"], ref["segments"]):  # segment times are word times (openai's rules)
        assert abs(s["start"] - t["start"]) <= ONE_FRAME and abs(s["end"] - t["end"]) <= ONE_FRAME
    assert ours["windows"] == ref["windows"]
    return (float(np.abs(diffs).max()) if len(diffs) else 0.0, float(np.abs(diffs).mean()) if len(diffs) else 0.0,
            len(a))


@pytest.mark.parametrize("names", [["jfk.flac", "sonnet001.mp3"], ["jfk.flac"]], ids=["batch_of_2", "single"])
def test_word_timestamps_match_openai_whisper(tiny_en, monkeypatch, names):
    ref = json.loads(REFERENCE.read_text())
    ours = ours_words(tiny_en, names, monkeypatch)
    for name, result in ours.items():
        worst, mean, n = compare(result, ref[name])
        print(f"{name}: {n} words, |start/end - openai| max {worst:.3f} s, mean {mean:.4f} s")
        assert worst <= ONE_FRAME
        assert all(0 < w["probability"] <= 1 for s in result["segments"] for w in s["words"])


def test_hallucination_silence_threshold_matches_openai_whisper(tiny_en, monkeypatch):
    """3 s of quiet noise: tiny.en hallucinates " . . ." from 1.04 s; with the threshold (1 s) openai skips
    to it and drops the window, then finds no speech: no segments. The windows visited must match."""
    ref = json.loads(REFERENCE.read_text())["noise3s_hst1"]
    ours = ours_words(tiny_en, ["noise3s_hst1"], monkeypatch)["noise3s_hst1"]
    compare(ours, ref)
    assert ours["segments"] == [] and ours["windows"] == [0]
    r = tiny_en.transcribe(noise(3.0), silence_threshold=None, **OPTIONS)  # without the threshold: kept
    assert r.segments and r.segments[0].words


def test_word_timestamps_options(tiny_en):
    from whisperfast.errors import OptionError

    with pytest.raises(OptionError, match="hallucination_silence_threshold"):
        tiny_en.transcribe(clip("jfk.flac"), word_timestamps=True, hallucination_silence_threshold="1")
    with pytest.raises(OptionError, match="prepend_punctuations"):
        tiny_en.transcribe(clip("jfk.flac"), word_timestamps=True, prepend_punctuations=None)
    r = tiny_en.transcribe(clip("jfk.flac"), temperature=0.0, sample_len=8)
    assert all(s.words is None and "words" not in s.to_dict() for s in r.segments)


def test_alignment_heads_outside_the_model_fall_back_to_the_default(tiny_en_dir, tmp_path):
    """A generation_config whose alignment heads name layers/heads this decoder lacks (e.g. copied from a
    larger model) gives the same words as one that names none (every head of the last half of layers)."""
    import shutil

    import whisperfast

    def words(heads):
        d = tmp_path / str(len(heads))
        shutil.copytree(tiny_en_dir, d)
        g = json.loads((d / "generation_config.json").read_text())
        g["alignment_heads"] = heads
        (d / "generation_config.json").write_text(json.dumps(g))
        r = whisperfast.load_model(d, device="cpu").transcribe(clip("jfk.flac"), word_timestamps=True)
        return [(w.word, w.start, w.end) for s in r.segments for w in s.words]

    default, bad = words([]), words([[7, 0], [3, 11], [-1, 0]])
    assert len(default) == 22 and bad == default
    assert words([[3, 0], [3, 1]]) != default  # the heads do matter: the test can tell them apart


@pytest.mark.slow
@needs_openai
def test_reference_file_is_openai_whisper(tiny_en_dir, tmp_path):
    """The stored reference is what openai-whisper gives now (about a minute on CPU)."""
    from weights_tools.openai_ckpt import export_openai

    export_openai(tiny_en_dir, tmp_path / "tiny.en.pt")
    live = openai_words(str(tmp_path / "tiny.en.pt"), list(CASES))
    stored = json.loads(REFERENCE.read_text())
    for name in CASES:
        # One engine on two machines: words, seeks, texts and word/segment times (DTW frames / 50, rounded to
        # 0.01 s) exact, as seen on every machine; probabilities follow the BLAS/oneDNN vector path (2e-5 apart).
        assert_matches(live[name], stored[name], abs_tol={"probability": PROBABILITY_TOL}, where=name)


if __name__ == "__main__":  # rewrite the reference file from openai-whisper
    import os
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from whisperfast.model.hub import packaged_model
    from weights_tools.openai_ckpt import export_openai

    with tempfile.TemporaryDirectory() as d:
        export_openai(packaged_model("tiny.en"), f"{d}/tiny.en.pt")
        REFERENCE.write_text(json.dumps(openai_words(f"{d}/tiny.en.pt", list(CASES)), indent=1) + "\n")
    print("wrote", REFERENCE)
