"""Chunked long-form, as transformers' ASR pipeline does it: overlapping 30 s chunks decoded in fixed batches.

A file is cut into 30 s chunks every 20 s: 5 s of stride on each inner side (`chunk_iter` with chunk_length_s=30,
stride_length_s=30/6). Each chunk is a short-form window (its audio zero-padded to 30 s, then log-mel; REFERENCE.md
convention (a)) decoded with timestamps and temperature fallback, without the previous text as a prompt, so the
chunks of all files fill one fixed batch in order. A file's chunk outputs are merged as transformers'
`_decode_asr(return_timestamps=True)` does: a segment is closed at a timestamp outside the strides, and the text
tokens of a segment that spans chunks are joined by `longest_common_sequence` (`_find_longest_common_sequence`).
Times are rounded to 10 ms as there. Segment tokens are text tokens only (the merge drops timestamps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio import FRAMES_PER_SECOND, N_SAMPLES, SAMPLE_RATE, load_audio
from .decode.options import DecodingResult
from .errors import WhisperfastError
from .results import Segment, TranscriptionResult
from .features import frame_levels, short_form_features
from .plan import TIME_PRECISION, Plan

STRIDE = N_SAMPLES // 6  # 5 s on each side of a chunk


def chunk_spans(n: int, chunk: int = N_SAMPLES, left: int = STRIDE, right: int = STRIDE) -> list[tuple[int, int, int, int]]:
    """transformers' `chunk_iter`: (start, end, left stride, right stride) in samples for `n` samples."""
    spans = []
    for a in range(0, n, chunk - left - right):
        is_last = a + chunk >= n
        span = (a, min(a + chunk, n), 0 if a == 0 else left, 0 if is_last else right)
        if span[1] - span[0] > span[2]:
            spans.append(span)
        if is_last:
            break
    return spans


def longest_common_sequence(sequences: list[list[int]]) -> list[int]:
    """transformers' `_find_longest_common_sequence`: join overlapping token runs at their best alignment.

    Each next run slides over the end of the joined one; the offset with the most equal tokens per overlap
    length (+ a tiny bonus for longer overlaps; at least 2 equal) wins, and the overlap is cut in its middle.
    """
    left, total = sequences[0], []
    for right in sequences[1:]:
        L, R = len(left), len(right)
        best, span = 0.0, (L, L, 0, 0)
        for i in range(1, L + R):
            ls, le, rs, re = max(0, L - i), min(L, L + R - i), max(0, i - L), min(R, i)
            matches = sum(a == b for a, b in zip(left[ls:le], right[rs:re]))
            score = matches / i + i / 10000.0
            if matches > 1 and score > best:
                best, span = score, (ls, le, rs, re)
        ls, le, rs, re = span
        total += left[: (ls + le) // 2]
        left = right[(rs + re) // 2:]
    return total + left


@dataclass
class Merger:
    """transformers' `_decode_asr` state machine (timestamps on, no word times) for one file, a chunk at a time."""

    timestamp_begin: int
    eot: int
    offset: float = 0.0                 # seconds: start of the current chunk minus its left stride
    start: float | None = None          # start time of the open segment
    pending: list[list[int]] = field(default_factory=list)  # its text tokens, one run per chunk
    skip: bool = False                  # the last timestamp fell in a right stride: ignore the next one

    def add(self, tokens: list[int], length: float, left: float, right: float) -> list[tuple[float, float, list[int]]]:
        """One chunk's sampled ids (its length and strides in seconds) -> the segments it closes."""
        tb, done, current = self.timestamp_begin, [], []
        self.offset -= left
        first = left / TIME_PRECISION + tb if left else tb
        last = None  # the first timestamp token of the right stride (with the one before it inside)
        if right:
            for t in reversed(tokens):
                if t >= tb:
                    if last is not None and (t - tb) * TIME_PRECISION < length - right:
                        break
                    last = t
        for t in tokens:
            if t < self.eot:
                current.append(t)
            elif t >= tb:
                time = round((t - tb) * TIME_PRECISION + self.offset, 2)
                if last is not None and t >= last:
                    self.skip = True
                elif self.skip or (self.pending and t < first):
                    self.skip = False
                elif self.start is None:
                    self.start = time
                elif time != self.start:
                    self.pending.append(current)
                    done.append((self.start, time, longest_common_sequence(self.pending)))
                    self.start, self.pending, current = None, [], []
        self.offset += length - right
        if current:
            self.pending.append(current)
        elif not any(self.pending):
            self.start, self.pending = None, []
        return done

    def finish(self, end: float) -> list[tuple[float, float, list[int]]]:
        """The open segment (transformers leaves its end None; here it ends with the audio)."""
        if not self.pending:
            return []
        return [(self.start if self.start is not None else end, end, longest_common_sequence(self.pending))]


@dataclass(eq=False)
class File:
    index: int
    source: str | None
    audio: np.ndarray
    spans: list[tuple[int, int, int, int]]
    merger: Merger
    language: str | None = None
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _open(model, index: int, source, plan: Plan) -> File:
    name = source if isinstance(source, str) else getattr(source, "name", None)
    name = str(name) if name else None
    merger = Merger(model.tokenizer.timestamp_begin, model.tokenizer.eot)
    try:
        audio = load_audio(source)
    except WhisperfastError as e:
        if plan.on_error == "raise":
            raise
        return File(index, name, np.zeros(0, np.float32), [], merger, error=str(e))
    return File(index, name, audio, chunk_spans(len(audio)), merger, language=plan.options.language)


def _chunks(model, sources: Sequence, plan: Plan) -> Iterator[tuple[File, int]]:
    """(file, chunk number) in order, opening files as they are reached; (file, -1) for a file without chunks."""
    for index, source in enumerate(sources):
        f = _open(model, index, source, plan)
        yield from ((f, k) for k in range(len(f.spans)))
        if not f.spans:
            yield f, -1


def _decode(model, items: list[tuple[File, int]], plan: Plan) -> list[DecodingResult | None]:
    """Decode a batch of chunks (None for a quiet chunk: nothing to decode)."""
    loud = [(f, k) for f, k in items if plan.silence_threshold is None or float(
        frame_levels(f.audio[f.spans[k][0]: f.spans[k][1]]).max()) >= plan.silence_threshold]
    results: dict[tuple[int, int], DecodingResult] = {}
    if loud:
        mel = short_form_features([f.audio[f.spans[k][0]: f.spans[k][1]] for f, k in loud], model.config.n_mels)
        prompt = [model.tokenizer.encode(" " + plan.initial_prompt.strip())] if plan.initial_prompt else [None]
        enc = model.engine.encode(mel, batch=plan.batch_size, sample_len=plan.options.sample_len)
        out = enc.decode(plan.options, temperatures=plan.temperatures, prompts=prompt * len(loud),
                         languages=[f.language for f, _ in loud], needs_fallback=plan.thresholds.needs_fallback)
        results = {(f.index, k): r for (f, k), r in zip(loud, out)}
    return [results.get((f.index, k)) for f, k in items]


def _segments(model, f: File, parts, r: DecodingResult | None, seek: int) -> list[Segment]:
    new = []
    for start, end, tokens in parts:
        new.append(Segment(id=len(f.segments) + len(new), seek=seek, start=start, end=end,
                           text=model.tokenizer.decode(tokens), tokens=tokens,
                           temperature=r.temperature if r else 0.0, avg_logprob=r.avg_logprob if r else 0.0,
                           compression_ratio=r.compression_ratio if r else 0.0,
                           no_speech_prob=r.no_speech_prob if r else 1.0))
    f.segments += new
    return new


def _result(f: File) -> TranscriptionResult:
    return TranscriptionResult(text="".join(s.text for s in f.segments), language=f.language or "",
                               segments=f.segments, duration=f.duration, source=f.source, error=f.error)


def run_chunked(model, sources: Sequence, plan: Plan,
                progress=None) -> Iterator[tuple[int, list[Segment], TranscriptionResult | None]]:
    """(file index, new segments, its result once done), decoding `plan.batch_size` chunks per batch."""
    todo = _chunks(model, sources, plan)
    while batch := [item for _, item in zip(range(plan.batch_size), todo)]:
        real = [(f, k) for f, k in batch if k >= 0]
        decided = dict(zip(real, _decode(model, real, plan))) if real else {}
        for f, k in batch:
            yield (f.index, *_merge(model, f, k, decided.get((f, k)), plan, progress))


def _merge(model, f: File, k: int, r: DecodingResult | None, plan: Plan,
           progress) -> tuple[list[Segment], TranscriptionResult | None]:
    """Feed chunk k's result to the file's merger; -> (closed segments, the result if it was the last chunk)."""
    if k < 0:
        return [], _result(f)
    a, b, left, right = f.spans[k]
    if r is not None and f.language is None:
        f.language = r.language
    skipped = r is None or plan.thresholds.should_skip(r)
    parts = f.merger.add([] if skipped else r.tokens, (b - a) / SAMPLE_RATE, left / SAMPLE_RATE,
                         right / SAMPLE_RATE)
    if progress is not None:
        if k == 0:
            progress.total += f.duration
            progress.refresh()
        progress.update((b - right - a - left) / SAMPLE_RATE)
    seek = a * FRAMES_PER_SECOND // SAMPLE_RATE
    new = _segments(model, f, parts, r, seek)
    if k < len(f.spans) - 1:
        return new, None
    new += _segments(model, f, f.merger.finish(round(f.duration, 2)), r, seek)
    result = _result(f)
    f.audio = f.audio[:0]  # done: let the samples go
    return new, result
