"""`vad_filter=True`: a file's non-speech removed before decoding, and its results' times mapped back.

Each file is loaded and its speech regions found (whisperfast/vad, faster-whisper's rule and options); the
regions, concatenated, are what the strategy decodes. Segment and word times then go from that speech-only
timeline back to the file's own, as faster-whisper's `restore_speech_timestamps` does, with one repair: a word's
start and end are mapped with the region of the word's middle (a word never straddles removed audio) and a
segment with words spans its first word's start to its last word's end, as there; a segment without words spans
the regions it overlaps by more than the padding + 0.3 s (`TimeMap.span`), where faster-whisper maps each end on its own and a
timestamp a little past a cut moves that end across the whole removed gap. Times stay monotonic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .audio import FRAMES_PER_SECOND, SAMPLE_RATE, load_audio
from .errors import WhisperfastError
from .results import Segment, TranscriptionResult
from .vad import TimeMap, VadOptions, speech_timestamps


@dataclass
class Speech:
    """A file's speech-only audio and the map back to its timeline."""

    audio: np.ndarray       # [m] the speech regions, concatenated
    regions: list[dict]     # [{"start", "end"}] in samples of the original
    duration: float         # seconds of the original
    map: TimeMap
    source: str | None = None


def speech_only(audio: np.ndarray, options: VadOptions, source: str | None = None) -> Speech:
    regions = speech_timestamps(audio, options)
    parts = [audio[r["start"]: r["end"]] for r in regions]
    speech = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    slack = options.speech_pad_ms / 1000 + 0.3  # see TimeMap.span
    return Speech(speech, regions, len(audio) / SAMPLE_RATE, TimeMap(regions, slack=slack), source)


def source_name(source) -> str | None:
    name = source if isinstance(source, str) else getattr(source, "name", None)
    return str(name) if name else None


def filtered_sources(sources: Sequence, options: VadOptions, speeches: dict[int, Speech]) -> Iterator:
    """The sources as speech-only arrays, each loaded when the strategy reaches it (its Speech kept in
    `speeches` under its index). A source that fails to load is passed on as it is, so that the strategy
    meets the same error where it handles errors (on_error)."""
    for index, source in enumerate(sources):
        try:
            speech = speech_only(load_audio(source), options, source_name(source))
        except WhisperfastError:
            yield source
            continue
        speeches[index] = speech
        yield speech.audio


def map_segments(segments: list[Segment], m: TimeMap) -> None:
    """Segment (and word) times: speech-only timeline -> the original one, in place."""
    for s in segments:
        s.seek = round(m.original(s.seek / FRAMES_PER_SECOND) * FRAMES_PER_SECOND)
        if s.words:
            for w in s.words:
                w.start, w.end = m.word(w.start, w.end)
            s.start, s.end = s.words[0].start, s.words[-1].end
        else:
            s.start, s.end = m.span(s.start, s.end)


def map_events(events: Iterator, speeches: dict[int, Speech]) -> Iterator:
    """A strategy's (index, new segments, result, language) events with times and durations of the original
    files."""
    for index, segs, result, language in events:
        speech = speeches.get(index)
        if speech is not None:
            map_segments(segs, speech.map)
            if result is not None:
                result.duration, result.source = speech.duration, speech.source
                speeches.pop(index)
        yield index, segs, result, language


def transcribe_filtered(run, model, sources: Sequence, plan, progress=None) -> Iterator[
        tuple[int, list[Segment], TranscriptionResult | None, str | None]]:
    """`run(model, sources, plan, progress)` (a strategy) on the speech-only audio of each source."""
    speeches: dict[int, Speech] = {}
    yield from map_events(run(model, filtered_sources(sources, plan.vad, speeches), plan, progress), speeches)
