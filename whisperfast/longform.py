"""Transcribing a file or a list of files: the strategy's events -> results, streamed segments, or a
progress bar and openai-whisper's verbose lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from .chunked import run_chunked
from .plan import Plan, make_plan
from .results import Segment, TranscriptionResult
from .sequential import result_of, run_streams
from .vadchunks import run_vad_chunks
from .vadfilter import transcribe_filtered


def transcribe_with(model, audio, *, stream: bool = False, verbose: bool = False, **kwargs):
    """Transcribe a file/array (-> TranscriptionResult) or a list of them (-> list, same order).

    With `stream=True`, yields Segments as they are decided ((index, Segment) pairs for a list).
    `verbose=True` prints each segment to stdout and shows a progress bar (audio seconds) on stderr.
    """
    many = isinstance(audio, (list, tuple))
    sources = list(audio) if many else [audio]
    plan = make_plan(model, **kwargs)
    gen = _generate(model, sources, plan, verbose)
    if stream:
        return _segments(gen, many)
    results: dict[int, TranscriptionResult] = {}
    for index, _, result in gen:
        if result is not None:
            results[index] = result
    out = [results[i] for i in range(len(sources))]
    return out if many else out[0]


def events(model, sources, plan: Plan, progress=None) -> Iterator[tuple[int, list[Segment], TranscriptionResult | None]]:
    """(file index, new segments, its result once the file is done) from the plan's strategy (on the speech-only
    audio of each file with `vad_filter`, times mapped back)."""
    if plan.vad is not None and plan.strategy != "vad":
        yield from transcribe_filtered(strategy_events, model, sources, plan, progress)
    else:
        yield from strategy_events(model, sources, plan, progress)


def strategy_events(model, sources, plan: Plan, progress=None):
    if plan.strategy == "vad":
        yield from run_vad_chunks(model, sources, plan, progress)
        return
    if plan.strategy == "chunked":
        yield from run_chunked(model, sources, plan, progress)
        return
    for s, segs in run_streams(model, sources, plan, progress):
        yield s.index, segs or [], result_of(model, s) if segs is None else None


def _generate(model, sources, plan: Plan, verbose: bool):
    progress = None
    if verbose:
        from tqdm import tqdm

        progress = tqdm(total=0.0, unit="audio s", desc="whisperfast", file=sys.stderr,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} audio s [{elapsed}<{remaining}]")
    try:
        for index, segs, result in events(model, sources, plan, progress):
            if verbose:
                for seg in segs:
                    progress.write(f"[{_ts(seg.start)} --> {_ts(seg.end)}] {seg.text}", file=sys.stdout)
            yield index, segs, result
    finally:
        if progress is not None:
            progress.close()


def _segments(gen, many: bool):
    for index, segs, _ in gen:
        for seg in segs:
            yield (index, seg) if many else seg


def _ts(t: float) -> str:
    """openai-whisper's verbose timestamps: [HH:]MM:SS.mmm, hours only when there are any."""
    h, ms = divmod(round(t * 1000.0), 3_600_000)
    m, ms = divmod(ms, 60_000)
    return f"{f'{h:02d}:' if h else ''}{m:02d}:{ms // 1000:02d}.{ms % 1000:03d}"
