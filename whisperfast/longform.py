"""Transcribing a file or a list of files: the strategy's events -> results, streamed segments, or a
progress bar and openai-whisper's verbose lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numbers
import os

from .audio import is_array
from .chunked import run_chunked
from .errors import OptionError
from .plan import Plan, make_plan
from .results import Segment, TranscriptionResult
from .sequential import result_of, run_streams
from .tokenizer import LANGUAGES
from .vadchunks import run_vad_chunks
from .vadfilter import transcribe_filtered


def transcribe_with(model, audio, *, stream: bool = False, verbose: bool = False, sample_rate: int | None = None,
                    **kwargs):
    """Transcribe a file/array (-> TranscriptionResult) or a list of them (-> list, same order).

    A bare array or tensor is taken to be 16 kHz audio; give its rate as an `(array, sample_rate)` pair,
    or `sample_rate=` for every bare array of the call (files carry their own rate).
    With `stream=True`, yields Segments as they are decided ((index, Segment) pairs for a list).
    `verbose=True` prints each segment to stdout (after the file name when a batch holds several files,
    and after openai's "Detected language: X" line for a multilingual model left to detect) and shows a
    progress bar (audio seconds) on stderr.
    """
    many = isinstance(audio, list) or (isinstance(audio, tuple) and not is_array(audio))
    sources = list(audio) if many else [audio]
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
            raise OptionError(f"sample_rate must be a positive int in Hz (of the arrays given), not {sample_rate!r}")
        sources = [(s, int(sample_rate)) if is_array(s) and not isinstance(s, tuple) else s for s in sources]
    plan = make_plan(model, **kwargs)
    gen = _generate(model, sources, plan, verbose)
    if stream:
        return _segments(gen, many)
    results: dict[int, TranscriptionResult] = {}
    for index, _, result, _ in gen:
        if result is not None:
            results[index] = result
    out = [results[i] for i in range(len(sources))]
    return out if many else out[0]


def events(model, sources, plan: Plan, progress=None) -> Iterator[tuple[int, list[Segment], TranscriptionResult | None,
                                                                         str | None]]:
    """(file index, new segments, its result once the file is done, its language if known) from the plan's
    strategy (on the speech-only audio of each file with `vad_filter`, times mapped back)."""
    if plan.vad is not None and plan.strategy != "vad":
        yield from transcribe_filtered(strategy_events, model, sources, plan, progress)
    else:
        yield from strategy_events(model, sources, plan, progress)


def strategy_events(model, sources, plan: Plan, progress=None):
    if plan.strategy == "vad":
        for index, segs, result in run_vad_chunks(model, sources, plan, progress):
            yield index, segs, result, None
        return
    if plan.strategy == "chunked":
        for index, segs, result in run_chunked(model, sources, plan, progress):
            yield index, segs, result, None
        return
    for s, segs in run_streams(model, sources, plan, progress):
        yield s.index, segs or [], result_of(model, s) if segs is None else None, s.language


def _generate(model, sources, plan: Plan, verbose: bool):
    progress = None
    if verbose:
        from tqdm import tqdm

        progress = tqdm(total=0.0, unit="audio s", desc="whisperfast", file=sys.stderr, delay=1e-9,  # shown
                        # from the first refresh, once a file is open and the total known (not "0.0/0.0")
                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} audio s [{elapsed}<{remaining}]")
    names = [_name(i, x) + ": " for i, x in enumerate(sources)] if len(sources) > 1 and plan.batch_size > 1 else None
    detect = model.tokenizer.multilingual and plan.options.language is None
    told: set[int] = set()
    try:
        for index, segs, result, language in events(model, sources, plan, progress):
            if verbose:
                if detect and language and index not in told:
                    told.add(index)
                    name = names[index] if names else ""
                    progress.write(f"{name}Detected language: {LANGUAGES.get(language, language).title()}",
                                   file=sys.stdout)
                for seg in segs:
                    progress.write(f"{names[index] if names else ''}[{_ts(seg.start)} --> {_ts(seg.end)}] {seg.text}",
                                   file=sys.stdout)
            yield index, segs, result, language
    finally:
        if progress is not None:
            progress.close()


def _name(index: int, source) -> str:
    """How a verbose line names a file of a batch: its base name, else its position."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or os.fspath(source)
    return str(getattr(source, "name", None) or f"#{index}")


def _segments(gen, many: bool):
    for index, segs, _, _ in gen:
        for seg in segs:
            yield (index, seg) if many else seg


def _ts(t: float) -> str:
    """openai-whisper's verbose timestamps: [HH:]MM:SS.mmm, hours only when there are any."""
    h, ms = divmod(round(t * 1000.0), 3_600_000)
    m, ms = divmod(ms, 60_000)
    return f"{f'{h:02d}:' if h else ''}{m:02d}:{ms // 1000:02d}.{ms % 1000:03d}"
