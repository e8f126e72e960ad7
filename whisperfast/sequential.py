"""Long-form transcription with openai-whisper's sequential algorithm, for one file or many in a batch.

Each file is a `Stream`: the log-mel of the whole file (+ 30 s of zero audio), a seek position and its
decoded history. One step decodes the current 30 s window of up to `batch_size` streams in one fixed
batch (with temperature fallback inside that batch), then each stream splits its window's tokens into
segments at timestamp pairs and seeks on. A stream that reaches its end hands its slot to the next file.

One deliberate difference from openai-whisper: a window whose loudest 10 ms frame is below `silence_threshold`
(dBFS, default -50) is skipped without decoding, like a no-speech window; openai-whisper decodes it and tiny
models hallucinate (" you" on digital silence). `silence_threshold=None` restores openai-whisper's behaviour.
`strategy="chunked"` runs transformers' chunked algorithm instead (see whisperfast/chunked.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .decode.engine import Encoded
from .decode.options import DecodingResult
from .errors import WhisperfastError
from .features import long_form_features_from_file, pad_features
from .plan import TIME_PRECISION, Plan
from .results import Segment, TranscriptionResult
from .words import WordWindow, time_windows

INPUT_STRIDE = 2


@dataclass
class Stream:
    """One file's seek loop (openai-whisper's `transcribe` state)."""

    index: int
    source: str | None
    mel: torch.Tensor                  # [n_mels, content_frames + N_FRAMES]
    initial_prompt: list[int]
    level: torch.Tensor | None = None  # [>= content_frames] dBFS of each 10 ms frame (None: never quiet)
    language: str | None = None
    language_probs: dict | None = None
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    segments: list[Segment] = field(default_factory=list)
    last_speech: float = 0.0           # openai's last_speech_timestamp (word timestamps)
    clip_timestamps: tuple[float, ...] = ()  # start, end, start, ... seconds to transcribe (): all
    clip: int = 0                      # openai's clip_idx into `clips`

    def __post_init__(self):
        self.tokens = list(self.initial_prompt)
        points = [round(t * FRAMES_PER_SECOND) for t in self.clip_timestamps] or [0]  # openai's seek_points
        points += [self.content_frames] if len(points) % 2 else []
        self.clips = [(a, min(b, self.content_frames)) for a, b in zip(points[::2], points[1::2])]
        self.seek = self.clips[0][0]
        self.enter_clip()

    def enter_clip(self) -> None:
        """openai's loop head over seek_clips: move seek into the current clip, or on to the next one."""
        while self.clip < len(self.clips):
            start, end = self.clips[self.clip]
            self.seek = max(self.seek, start)
            if self.seek < end:
                return
            self.clip += 1
            if self.clip < len(self.clips):
                self.seek = self.clips[self.clip][0]

    @property
    def content_frames(self) -> int:
        return self.mel.shape[-1] - N_FRAMES

    @property
    def finished(self) -> bool:
        return self.clip >= len(self.clips)

    @property
    def size(self) -> int:  # frames of content in the window at seek (openai's segment_size)
        return min(N_FRAMES, self.content_frames - self.seek, self.clips[self.clip][1] - self.seek)

    def window(self) -> tuple[torch.Tensor, int]:  # -> [n_mels, 3000], frames of content in it
        size = self.size
        return pad_features(self.mel[:, self.seek: self.seek + size], N_FRAMES), size

    def quiet(self, threshold: float | None) -> bool:
        """The window's content (frames seek .. seek + size) never rises above `threshold` dBFS."""
        size = self.size
        return threshold is not None and self.level is not None and size > 0 and bool(
            self.level[self.seek: self.seek + size].max() < threshold)

    def prompt(self, carry_initial_prompt: bool, n_text_ctx: int) -> list[int]:
        if not carry_initial_prompt:
            return self.tokens[self.prompt_reset_since:]
        start = max(len(self.initial_prompt), self.prompt_reset_since)
        remaining = n_text_ctx // 2 - 1 - len(self.initial_prompt)
        # openai-whisper slices with `[-remaining:]` as is: a prompt of >= 223 tokens (remaining <= 0) keeps
        # the history too, and the decoder then keeps the last 223 tokens of the whole prompt
        return self.initial_prompt + self.tokens[start:][-remaining:]


def split_segments(tok, r: DecodingResult, seek: int, size: int) -> tuple[list[dict], int]:
    """A window's tokens -> segment dicts (start, end, tokens) and the number of frames to advance."""
    tokens, tb = r.tokens, tok.timestamp_begin
    offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
    is_ts = [t >= tb for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    if cuts:
        if single_ending:
            cuts.append(len(tokens))
        segs, last = [], 0
        for cut in cuts:
            part = tokens[last:cut]
            segs.append(dict(start=offset + (part[0] - tb) * TIME_PRECISION,
                             end=offset + (part[-1] - tb) * TIME_PRECISION, tokens=part))
            last = cut
        advance = size if single_ending else (tokens[last - 1] - tb) * INPUT_STRIDE
        return segs, advance
    duration = size * HOP_LENGTH / SAMPLE_RATE
    stamps = [t for t in tokens if t >= tb]
    if stamps and stamps[-1] != tb:
        duration = (stamps[-1] - tb) * TIME_PRECISION
    return [dict(start=offset, end=offset + duration, tokens=tokens)], size


def accept(stream: Stream, tok, r: DecodingResult, size: int, condition: bool,
           timed: tuple[list[dict] | None, int] | None = None) -> list[Segment]:
    """Add a window's segments to the stream and seek on (openai-whisper's bookkeeping).
    `timed`: (segments, advance) from `timed_splits` (word timestamps); None segments drop the window."""
    parts, advance = timed if timed is not None else split_segments(tok, r, stream.seek, size)
    if parts is None:  # hallucination_silence_threshold skipped the window (openai's `continue`)
        stream.seek += advance
        return []
    new = []
    for p in parts:
        text, words = tok.decode([t for t in p["tokens"] if t < tok.eot]), p.get("words")
        if p["start"] == p["end"] or text.strip() == "":
            text, p["tokens"], words = "", [], None if words is None else []
        new.append(Segment(id=len(stream.segments) + len(new), seek=stream.seek, start=p["start"], end=p["end"],
                           text=text, tokens=p["tokens"], temperature=r.temperature, avg_logprob=r.avg_logprob,
                           compression_ratio=r.compression_ratio, no_speech_prob=r.no_speech_prob, words=words))
    stream.seek += advance
    stream.segments += new
    stream.tokens += [t for s in new for t in s.tokens]
    if not condition or r.temperature > 0.5:
        stream.prompt_reset_since = len(stream.tokens)
    return new


def open_stream(model, index: int, source, plan: Plan) -> Stream:
    name = source if isinstance(source, str) else getattr(source, "name", None)
    feats = long_form_features_from_file(source, model.config.n_mels)  # streamed: bounded memory
    prompt = model.tokenizer.encode(" " + plan.initial_prompt.strip()) if plan.initial_prompt else []
    return Stream(index=index, source=str(name) if name else None, mel=feats.mel, initial_prompt=prompt,
                  language=plan.options.language, level=feats.level, clip_timestamps=plan.clip_timestamps)


def detect_languages(model, streams: list[Stream]) -> None:
    """openai-whisper detects once per file, on its first 30 s; .en checkpoints are English."""
    todo = [s for s in streams if s.language is None and not s.finished]
    if not model.tokenizer.multilingual:
        for s in streams:
            s.language = "en"
        return
    if not todo:
        return
    mel = torch.stack([pad_features(s.mel[:, :N_FRAMES], N_FRAMES) for s in todo])
    for s, (code, probs) in zip(todo, model.engine.encode(mel).detect_language()):
        s.language, s.language_probs = code, probs


def failed(index: int, source, error: Exception) -> Stream:
    s = Stream(index=index, source=str(source) if isinstance(source, str) else None,
               mel=torch.zeros(1, N_FRAMES), initial_prompt=[])
    s.error = str(error)  # type: ignore[attr-defined]
    return s


def fill(model, pending: Iterator, active: list[Stream], plan: Plan, progress=None):
    """Retire finished streams (yielding (stream, None)) and hand their slots to the next files.
    `pending` yields (index, source) or (index, source, plan): a plan of its own sets that file's language
    and initial prompt (the rest of the batch's options are `plan`'s)."""
    while True:
        for s in [s for s in active if s.finished]:
            active.remove(s)
            yield s, None
        new: list[Stream] = []
        while len(active) + len(new) < plan.batch_size and (item := next(pending, None)) is not None:
            try:
                new.append(open_stream(model, item[0], item[1], item[2] if len(item) > 2 else plan))
            except WhisperfastError as e:
                if plan.on_error == "raise":
                    raise
                yield failed(item[0], item[1], e), None
        if not new:
            return
        detect_languages(model, new)
        active += new
        if progress is not None:
            progress.total += sum(s.content_frames for s in new) / FRAMES_PER_SECOND
            progress.refresh()


def run_streams(model, sources: Sequence, plan: Plan, progress=None) -> Iterator[tuple[Stream, list[Segment] | None]]:
    """Yields (stream, its new segments) after each window, and (stream, None) once a stream is done."""
    yield from run_pending(model, iter(enumerate(sources)), plan, progress)


def run_pending(model, pending: Iterator, plan: Plan, progress=None, on_window=None
                ) -> Iterator[tuple[Stream, list[Segment] | None]]:
    """`run_streams` over files that arrive while others decode: `pending` is polled at every window
    boundary and may run dry and have more later (a server's queue); it ends when nothing is active or
    pending. A consumer drops a stream by setting its `seek` to its `content_frames` (it is retired at the
    next boundary). `on_window(streams)` sees the streams of each window decoded, before it is."""
    active: list[Stream] = []
    while True:
        yield from fill(model, pending, active, plan, progress)
        if not active:
            return
        loud = [s for s in active if not s.quiet(plan.silence_threshold)]
        if on_window is not None and loud:
            on_window(loud)
        results, timed = decode_step(model, plan, loud) if loud else ([], {})
        decided = dict(zip(map(id, loud), results))
        for s in active:
            before, size = s.seek, s.size
            r = decided.get(id(s))
            if r is None or plan.thresholds.should_skip(r):  # silence: quiet, or no speech
                s.seek += size
                segs = []
            else:
                segs = accept(s, model.tokenizer, r, size, plan.condition, timed.get(id(s)))
            s.enter_clip()
            if progress is not None:
                progress.update((min(s.content_frames, s.seek) - before) / FRAMES_PER_SECOND)
            yield s, segs


def decode_step(model, plan: Plan, streams: list[Stream]) -> tuple[list[DecodingResult], dict]:
    """The current window of each stream, encoded and decoded as one batch (with fallback), and with word
    timestamps their `timed_splits`."""
    mel = torch.stack([s.window()[0] for s in streams])
    # compiled (CUDA): the fixed bucket of batch_size, so a draining batch is never another compile; eager (CPU):
    # the bucket of the rows at hand, so idle slots cost nothing (a lone file in a bucket of 8: 2x the time)
    batch = plan.batch_size if model.engine.compile else None
    enc = model.engine.encode(mel, batch=batch, sample_len=plan.options.sample_len)
    results = enc.decode(plan.options, temperatures=plan.temperatures, needs_fallback=plan.thresholds.needs_fallback,
                         prompts=[s.prompt(plan.carry_initial_prompt, model.config.n_text_ctx) for s in streams],
                         languages=[s.language for s in streams])
    return results, timed_splits(model, plan, enc, streams, results) if plan.words is not None else {}


# --- word timestamps: the hook into the seek loop (the method is in whisperfast/words.py) ---------------
def timed_splits(model, plan: Plan, enc: Encoded, streams: list[Stream], results: list[DecodingResult]) -> dict:
    """id(stream) -> (its window's segments with words, or None to drop them; frames to advance), for the
    windows that will be accepted, from one alignment forward over the encoded batch `enc` (window i of it is
    stream i's)."""
    rows = []
    for row, (s, r) in enumerate(zip(streams, results)):
        if not plan.thresholds.should_skip(r):
            size = s.size
            parts, advance = split_segments(model.tokenizer, r, s.seek, size)
            rows.append((s, WordWindow(row=row, segments=parts, tokens=r.tokens, seek=s.seek, size=size,
                                       next_seek=s.seek + advance, content_frames=s.content_frames,
                                       language=r.language or "en", last_speech=s.last_speech)))
    time_windows(enc, [w for _, w in rows], plan.options.task, plan.words)
    timed = {}
    for s, w in rows:
        s.last_speech = w.last_speech
        timed[id(s)] = (None if w.skip else w.segments, w.seek - s.seek)
    return timed
# --- end of word timestamps --------------------------------------------------------------------------


def result_of(model, s: Stream) -> TranscriptionResult:
    text = model.tokenizer.decode(s.tokens[len(s.initial_prompt):])
    return TranscriptionResult(text=text, language=s.language or "", segments=s.segments,
                               language_probs=s.language_probs, duration=s.content_frames / FRAMES_PER_SECOND,
                               source=s.source, error=getattr(s, "error", None))
