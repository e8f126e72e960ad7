"""`strategy="vad"`: a file's speech regions packed into chunks of at most 30 s, each decoded as an
independent row of the fixed batch.

As faster-whisper's BatchedInferencePipeline: speech regions from the VAD with max_speech_duration_s = 30 and
(by default) 160 ms of silence to end a region (`plan.vad`), consecutive regions concatenated into chunks of
at most 30 s (`pack_chunks`, its `collect_chunks` rule), each chunk a short-form window (zero-padded to 30 s,
then log-mel; REFERENCE.md convention (a)). Beyond it: each window is decoded with timestamps (unless
`without_timestamps`), temperature fallback and the no-speech skip of openai-whisper, so a chunk splits into
segments at its timestamp pairs; the chunks of all files fill one batch in order (`plan.batch_size` rows),
no chunk depends on another (no previous-text prompt; `initial_prompt` is every chunk's prompt), and times
go back to the file's timeline through the regions (`vadfilter.map_segments`). Segments come in time order.
A file without speech is never decoded: no segments, empty text.

A chunk is speech from end to end, yet whisper often closes a timestamp pair and stops several seconds before
the end of a full window (as in sequential decoding, where the next window starts there). Each chunk's row
therefore holds EOT (`Row.hold_eot`) until it has sampled a timestamp within MIN_RESUME of the chunk's end:
the text runs on to the end in the same pass instead of a second window for the rest. The hold is on the first
temperature only: a held pass that fails the fallback test is decoded again free to stop. On the 152 s English
bench file (bench/longform.py --english, tiny.en) this removed 3 of 8 windows (4.7 s -> 3.6 s) at the same
WER (10.19 %). What a window still leaves (the token cap) is decoded again as a rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio import N_SAMPLES, SAMPLE_RATE, load_audio
from .decode.options import DecodingResult
from .errors import WhisperfastError
from .features import short_form_features
from .plan import TIME_PRECISION, Plan
from .results import Segment, TranscriptionResult
from .vad import pack_chunks
from .vadfilter import Speech, map_segments, source_name, speech_only


MIN_RESUME = 1.0  # seconds: a rest shorter than this, or after less progress, is not decoded again; a
                  # chunk's row may end once it is within this of its end (the EOT hold)


@dataclass(eq=False)
class File:
    index: int
    speech: Speech
    chunks: list[tuple[int, int]]           # [start, end) of each chunk in the speech-only audio, samples
    language: str | None = None
    slots: list[list[Segment]] = field(default_factory=list)  # each chunk's segments, rests included
    open: list[int] = field(default_factory=list)  # each chunk's pieces not decoded yet
    emitted: int = 0                        # chunks whose segments went out
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.emitted == len(self.chunks)


@dataclass(eq=False)
class Piece:
    """A stretch of a file's speech-only audio to decode as one window: a chunk, or the rest of one."""

    file: File
    slot: int                               # the chunk it belongs to
    start: int                              # samples of the speech-only audio
    end: int


def _open(index: int, source, plan: Plan) -> File:
    try:
        audio = load_audio(source)
    except WhisperfastError as e:
        if plan.on_error == "raise":
            raise
        empty = speech_only(np.zeros(0, np.float32), plan.vad, source_name(source))
        return File(index, empty, [], error=str(e))
    speech = speech_only(audio, plan.vad, source_name(source))
    chunks, at = [], 0
    for group in pack_chunks(speech.regions, N_SAMPLES):
        n = sum(r["end"] - r["start"] for r in group)
        chunks.append((at, at + n))
        at += n
    return File(index, speech, chunks, language=plan.options.language, slots=[[] for _ in chunks],
                open=[1] * len(chunks))


def _pieces(sources: Sequence, plan: Plan) -> Iterator[File | Piece]:
    """Each file's chunks in order, opening files as they are reached; a file without speech as itself."""
    for index, source in enumerate(sources):
        f = _open(index, source, plan)
        yield from (Piece(f, k, a, b) for k, (a, b) in enumerate(f.chunks)) if f.chunks else (f,)


def _decode(model, pieces: list[Piece], plan: Plan) -> list[DecodingResult]:
    audio = [p.file.speech.audio[p.start: p.end] for p in pieces]
    mel = short_form_features(audio, model.config.n_mels)  # [n, n_mels, 3000]
    prompt = [model.tokenizer.encode(" " + plan.initial_prompt.strip())] if plan.initial_prompt else [None]
    enc = model.engine.encode(mel, batch=plan.batch_size, sample_len=plan.options.sample_len)
    holds = [max(0.0, (p.end - p.start) / SAMPLE_RATE - MIN_RESUME) or None for p in pieces]
    return enc.decode(plan.options, temperatures=plan.temperatures, prompts=prompt * len(pieces),
                      languages=[p.file.language for p in pieces], needs_fallback=plan.thresholds.needs_fallback,
                      hold_eot=holds)


def split_chunk(tok, tokens: list[int], duration: float):
    """A window's sampled ids -> ([(start, end, tokens)] of its closed segments, the open one or None, the
    time its undecoded rest starts or None), in seconds of the window. Segments are cut at each pair of
    timestamps (openai's rule). When the ids stop on a timestamp pair, or on text after one (the token cap),
    whisper has left the audio after the last timestamp for a next window: that time is returned, and the
    text after it (if any) is the open segment, running to the window's end. Without a timestamp pair, the
    one segment runs from the first timestamp (or 0) to the last (or the end)."""
    tb = tok.timestamp_begin
    time = lambda t: (t - tb) * TIME_PRECISION  # noqa: E731
    parts, last = [], 0
    for i in range(1, len(tokens)):
        if tokens[i - 1] >= tb and tokens[i] >= tb:
            parts.append((time(tokens[last]) if tokens[last] >= tb else 0.0, time(tokens[i - 1]), tokens[last:i]))
            last = i
    rest = tokens[last:]
    closed = len(rest) > 1 and rest[-1] >= tb  # ends on a timestamp that is not its opening one
    resume = time(tokens[last]) if parts and not closed and tokens[last] >= tb else None
    if not any(t < tok.eot for t in rest):
        return parts, None, resume
    start = time(rest[0]) if rest[0] >= tb else (parts[-1][1] if parts else 0.0)
    end = time(rest[-1]) if closed else duration
    open_part = (start, max(start, min(end, duration)), rest)
    return (parts + [open_part], None, None) if closed or not parts else (parts, open_part, resume)


def _accept(model, p: Piece, r: DecodingResult, plan: Plan) -> Piece | None:
    """Put a piece's segments into its chunk's slot; -> the piece's rest to decode again, if any."""
    f = p.file
    if f.language is None:
        f.language = r.language
    f.open[p.slot] -= 1
    if plan.thresholds.should_skip(r):
        return None
    duration = (p.end - p.start) / SAMPLE_RATE
    parts, open_part, resume = split_chunk(model.tokenizer, r.tokens, duration)
    rest = None
    if resume is not None and resume >= MIN_RESUME and duration - resume >= MIN_RESUME:
        rest = Piece(f, p.slot, p.start + round(resume * SAMPLE_RATE), p.end)
        f.open[p.slot] += 1
    elif open_part is not None:
        parts.append(open_part)
    offset, new = p.start / SAMPLE_RATE, []
    for start, end, tokens in parts:
        text = model.tokenizer.decode([t for t in tokens if t < model.tokenizer.eot])
        if text.strip():
            new.append(Segment(id=0, seek=round(p.start * 100 / SAMPLE_RATE), start=offset + start,
                               end=offset + end, text=text, tokens=tokens, temperature=r.temperature,
                               avg_logprob=r.avg_logprob, compression_ratio=r.compression_ratio,
                               no_speech_prob=r.no_speech_prob))
    map_segments(new, f.speech.map)
    f.slots[p.slot] += new
    return rest


def _emit(f: File) -> list[Segment]:
    """The segments of the file's chunks that are complete, in order, up to the first that is not."""
    new = []
    while not f.done and f.open[f.emitted] == 0:
        for s in f.slots[f.emitted]:
            s.id = len(f.segments) + len(new)
            new.append(s)
        f.slots[f.emitted] = []
        f.emitted += 1
    f.segments += new
    return new


def _result(f: File) -> TranscriptionResult:
    return TranscriptionResult(text="".join(s.text for s in f.segments), language=f.language or "",
                               segments=f.segments, duration=f.speech.duration, source=f.speech.source,
                               error=f.error)


def run_vad_chunks(model, sources: Sequence, plan: Plan,
                   progress=None) -> Iterator[tuple[int, list[Segment], TranscriptionResult | None]]:
    """(file index, new segments, its result once done), decoding `plan.batch_size` pieces per batch: the rests
    of the last batch's chunks first, then the next chunks in order."""
    todo, rests = _pieces(sources, plan), []
    while batch := rests + [item for _, item in zip(range(plan.batch_size - len(rests)), todo)]:
        pieces = [p for p in batch if isinstance(p, Piece)]
        results = _decode(model, pieces, plan) if pieces else []
        rests = [rest for p, r in zip(pieces, results) if (rest := _accept(model, p, r, plan)) is not None]
        for f in dict.fromkeys(p.file if isinstance(p, Piece) else p for p in batch):  # files, in order
            if progress is not None and f.emitted == 0:
                progress.total += f.speech.duration
                progress.refresh()
            new = _emit(f)
            if f.done:
                if progress is not None:
                    progress.update(f.speech.duration)
                f.speech.audio = f.speech.audio[:0]  # done: let the samples go
            yield f.index, new, _result(f) if f.done else None
