"""Word timestamps of decoded windows: openai-whisper's `add_word_timestamps` and the word-based seek rules
of its `transcribe` (seek to the last word end, `hallucination_silence_threshold`), batched.

One alignment forward (whisperfast/decode/timing.py) serves every window of an encoded batch (`Encoded`,
the one that was just decoded); the rest is per row and in plain Python, on segment dicts
{start, end, tokens} of one window, to which it adds `words` (a list of `Word`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .decode.engine import Encoded
from .decode.timing import WordTiming, find_alignment, merge_punctuations
from .errors import OptionError
from .results import Word

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"  # openai-whisper's fixed set for the anomaly score
SENTENCE_END = ".。!！?？"


@dataclass(frozen=True)
class WordOptions:
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    hallucination_silence_threshold: float | None = None

    def __post_init__(self):
        for name in ("prepend_punctuations", "append_punctuations"):
            if not isinstance(getattr(self, name), str):
                raise OptionError(f"{name} must be a string of punctuation marks, not {getattr(self, name)!r}")
        t = self.hallucination_silence_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0):
            raise OptionError(f"hallucination_silence_threshold must be a number of seconds >= 0 or None, not {t!r}")


@dataclass
class WordWindow:
    """One accepted window of one stream; `time_windows` fills `segments[i]["words"]`, `seek`, `skip`."""

    row: int                  # the window's index in its encoded batch
    segments: list[dict]      # the window's segments: start, end (seconds), tokens (timestamps included)
    tokens: list[int]         # the window's sampled tokens (to tell a single timestamp ending)
    seek: int                 # window start (mel frames); after `time_windows`: where the stream goes next
    size: int                 # frames of real content in the window (openai's segment_size)
    next_seek: int            # where the stream goes by the segment timestamps alone
    content_frames: int
    language: str
    last_speech: float        # the stream's last_speech_timestamp; updated
    skip: bool = False        # openai's `continue`: drop the window's segments, only seek (hallucination)


def time_windows(enc: Encoded, windows: list[WordWindow], task: str, opts: WordOptions) -> None:
    """Word timings for every window in one batched alignment forward over the encoded batch `enc` (window
    w.row of it), then openai's per-window rules."""
    tok = enc.engine.tok
    texts = [[[t for t in s["tokens"] if t < tok.eot] for s in w.segments] for w in windows]
    sots = [tok.sot_sequence(w.language, task, timestamps=True) for w in windows]
    seqs: list[list[int] | None] = [None] * (max((w.row for w in windows), default=-1) + 1)
    for w, sot, text in zip(windows, sots, texts):
        flat = [t for seg in text for t in seg]
        seqs[w.row] = sot + [tok.no_timestamps] + flat + [tok.eot] if flat else None
    qks, logits = enc.align(seqs) if any(seqs) else ([], [])
    for w, sot, text in zip(windows, sots, texts):
        flat = [t for seg in text for t in seg]
        alignment = find_alignment(tok, flat, len(sot), qks[w.row], logits[w.row], w.size, w.language) if flat else []
        add_word_timestamps(w.segments, text, alignment, w.seek, w.last_speech, opts)
        seek_by_words(w, tok.timestamp_begin, opts.hallucination_silence_threshold)


def add_word_timestamps(segments: list[dict], texts: list[list[int]], alignment: list[WordTiming], seek: int,
                        last_speech: float, opts: WordOptions) -> None:
    """openai-whisper's add_word_timestamps after find_alignment: `words` of each segment (texts: its text
    tokens), segment start/end moved to its words'."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations)) if len(durations) > 0 else 0.0)
    longest = median * 2
    if len(durations) > 0:  # hack: truncate long words at sentence boundaries
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in SENTENCE_END:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in SENTENCE_END:
                    alignment[i].start = alignment[i].end - longest
    merge_punctuations(alignment, opts.prepend_punctuations, opts.append_punctuations)
    offset = seek * HOP_LENGTH / SAMPLE_RATE
    it = iter(alignment)
    for seg, text in zip(segments, texts):
        words, saved = [], 0
        while saved < len(text) and (timing := next(it, None)) is not None:
            if timing.word:
                words.append(Word(start=round(offset + timing.start, 2), end=round(offset + timing.end, 2),
                                  word=timing.word, probability=float(timing.probability)))
            saved += len(timing.tokens)
        if words:
            fit_segment(seg, words, median, last_speech)
            last_speech = seg["end"]
        seg["words"] = words


def fit_segment(seg: dict, words: list[Word], median: float, last_speech: float) -> None:
    """openai's hacks at segment boundaries: long first words after a pause, segment vs word times."""
    longest = median * 2
    first, last = words[0], words[-1]
    if first.end - last_speech > median * 4 and (
            first.end - first.start > longest or (len(words) > 1 and words[1].end - first.start > longest * 2)):
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0, first.end - longest)
    if seg["start"] < first.end and seg["start"] - 0.5 > first.start:  # prefer the segment's start
        first.start = max(0, min(first.end - median, seg["start"]))
    else:
        seg["start"] = first.start
    if seg["end"] > last.start and seg["end"] + 0.5 < last.end:  # prefer the segment's end
        last.end = max(last.start + median, seg["end"])
    else:
        seg["end"] = last.end


def get_end(segments: list[dict]) -> float | None:
    """End of the last word, else of the last segment (openai-whisper's get_end)."""
    return next((w.end for s in reversed(segments) for w in reversed(s["words"])),
                segments[-1]["end"] if segments else None)


def seek_by_words(w: WordWindow, timestamp_begin: int, threshold: float | None) -> None:
    """openai's seek to the last word end, then its hallucination skipping; sets seek, skip, last_speech."""
    start, offset = w.seek, w.seek * HOP_LENGTH / SAMPLE_RATE
    single_ending = [t >= timestamp_begin for t in w.tokens[-2:]] == [False, True]
    w.seek = w.next_seek
    if not single_ending:
        end = get_end(w.segments)
        if end is not None and end > offset:
            w.seek = round(end * FRAMES_PER_SECOND)
    if threshold is not None and skip_hallucinations(w, start, single_ending, threshold):
        return  # openai's `continue`: last_speech stays
    end = get_end(w.segments)
    if end is not None:
        w.last_speech = end


def word_anomaly_score(word: Word) -> float:
    """Very short, very long or improbable words score high."""
    duration, score = word.end - word.start, 0.0
    if word.probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_segment_anomaly(seg: dict | None) -> bool:
    if seg is None or not seg["words"]:
        return False
    words = [w for w in seg["words"] if w.word not in PUNCTUATION][:8]
    score = sum(word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def next_words_segment(segments: list[dict]) -> dict | None:
    return next((s for s in segments if s["words"]), None)


def skip_hallucinations(w: WordWindow, start: int, single_ending: bool, threshold: float) -> bool:
    """openai's `hallucination_silence_threshold`: skip the silence before a likely hallucination.
    -> True when the whole window is dropped (w.skip); else may cut w.segments and move w.seek."""
    offset = start * HOP_LENGTH / SAMPLE_RATE
    window_end = (start + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
    if not single_ending:
        end = get_end(w.segments)
        if end is not None and end > offset:
            w.seek = round(end * FRAMES_PER_SECOND) if window_end - end > threshold else start + w.size
    first = next_words_segment(w.segments)
    if first is not None and is_segment_anomaly(first):  # a hallucination first: skip the leading silence
        gap = first["start"] - offset
        if gap > threshold:
            w.seek, w.skip = start + round(gap * FRAMES_PER_SECOND), True
            return True
    last_end = w.last_speech
    for i, seg in enumerate(w.segments):  # a hallucination amid silence or other hallucinations
        if not seg["words"]:
            continue
        if is_segment_anomaly(seg):
            nxt = next_words_segment(w.segments[i + 1:])
            next_start = nxt["words"][0].start if nxt is not None else offset + w.size * HOP_LENGTH / SAMPLE_RATE
            before = seg["start"] - last_end > threshold or seg["start"] < threshold or seg["start"] - offset < 2.0
            after = next_start - seg["end"] > threshold or is_segment_anomaly(nxt) or window_end - seg["end"] < 2.0
            if before and after:
                w.seek = round(max(offset + 1, seg["start"]) * FRAMES_PER_SECOND)
                if w.content_frames * HOP_LENGTH / SAMPLE_RATE - seg["end"] < threshold:
                    w.seek = w.content_frames
                del w.segments[i:]
                break
        last_end = seg["end"]
    return False
