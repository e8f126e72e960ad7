"""Output writers with openai-whisper's formats, options and file names (its whisper/utils.py).

`get_writer(fmt, output_dir)(result, audio_path, options)` writes `<output_dir>/<audio stem>.<ext>` for
fmt in txt, vtt, srt, tsv, json, or all of them for "all". `result` is a TranscriptionResult or its
`to_dict()`. Subtitles follow openai-whisper's `iterate_result` line breaking (max_line_width,
max_line_count, max_words_per_line) and `highlight_words` (`<u>` around the word being spoken).

Each file is written atomically: to a temporary file beside it, then `os.replace`d into place, so an
interrupted run leaves either the previous file or the complete new one, never a partial file.

Two deliberate departures, for inputs openai-whisper itself never produces or would break on:
- word timings are used when any segment carries `words` (openai-whisper looks at the first segment only
  and fails on a later segment without them); a segment without words then counts as one "word" that
  spans the segment and holds its text;
- "-->" is written "->" in word text too, as it already is in segment text, so every cue stays parseable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TextIO

from .errors import OptionError

Cue = tuple[str, str, str]  # (start, end, text) with formatted timestamps


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """`[HH:]MM:SS.mmm`, rounded to the millisecond; hours appear when asked or when there are any."""
    if seconds < 0:
        raise ValueError(f"non-negative timestamp expected, got {seconds}")
    ms = round(seconds * 1000.0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def as_dict(result) -> dict:
    """A TranscriptionResult (or anything with `to_dict`) or a result dict -> openai-whisper's dict."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"expected a TranscriptionResult or its dict, not {type(result).__name__}")


@contextmanager
def atomic_open(path: str) -> Iterator[TextIO]:
    """A UTF-8 text file that appears at `path` complete, or not at all (the old file stays)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary file behind
        with suppress(OSError):
            os.unlink(tmp)
        raise


class ResultWriter:
    extension: str

    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def output_path(self, audio_path: str) -> str:
        stem = os.path.splitext(os.path.basename(audio_path))[0]
        return os.path.join(self.output_dir, f"{stem}.{self.extension}")

    def __call__(self, result, audio_path: str, options: dict | None = None, **kwargs) -> str:
        """Write the file for `audio_path`; returns its path."""
        path = self.output_path(audio_path)
        with atomic_open(path) as f:
            self.write_result(result, file=f, options=options, **kwargs)
        return path

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        raise NotImplementedError


class WriteTXT(ResultWriter):
    extension = "txt"

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        for segment in as_dict(result)["segments"]:
            print(segment["text"].strip(), file=file)


class SubtitlesWriter(ResultWriter):
    always_include_hours: bool
    decimal_marker: str

    def format_timestamp(self, seconds: float) -> str:
        return format_timestamp(seconds, self.always_include_hours, self.decimal_marker)

    def iterate_result(self, result, options: dict | None = None, *, max_line_width: int | None = None,
                       max_line_count: int | None = None, highlight_words: bool = False,
                       max_words_per_line: int | None = None) -> Iterator[Cue]:
        """The cues of `result`; keyword options win over the `options` dict (as in openai-whisper)."""
        options = options or {}
        width = max_line_width or options.get("max_line_width")
        count = max_line_count or options.get("max_line_count")
        highlight = highlight_words or options.get("highlight_words", False)
        per_line = max_words_per_line or options.get("max_words_per_line")
        segments = as_dict(result)["segments"]
        if not any(s.get("words") is not None for s in segments):
            for s in segments:
                text = s["text"].strip().replace("-->", "->")
                yield self.format_timestamp(s["start"]), self.format_timestamp(s["end"]), text
            return
        for subtitle in group_words(segments, width, count, per_line):
            yield from self.cues_of(subtitle, highlight)

    def cues_of(self, subtitle: list[dict], highlight: bool) -> Iterator[Cue]:
        """One cue per subtitle, or with `highlight` one per word (plus a plain cue over each gap)."""
        start, end = self.format_timestamp(subtitle[0]["start"]), self.format_timestamp(subtitle[-1]["end"])
        words = [w["word"] for w in subtitle]
        text = "".join(words)
        if not highlight:
            yield start, end, text
            return
        last = start
        for i, w in enumerate(subtitle):
            w_start, w_end = self.format_timestamp(w["start"]), self.format_timestamp(w["end"])
            if last != w_start:
                yield last, w_start, text
            underlined = re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", words[i])
            yield w_start, w_end, "".join(words[:i]) + underlined + "".join(words[i + 1:])
            last = w_end


def words_of(segment: dict) -> list[dict]:
    """The segment's word timings, or the whole segment as one word when it has none."""
    words = segment.get("words")
    if words is None:
        words = [{"start": segment["start"], "end": segment["end"], "word": segment["text"]}]
    return [{**w, "word": w["word"].replace("-->", "->")} for w in words]


def group_words(segments: list[dict], max_line_width: int | None, max_line_count: int | None,
                max_words_per_line: int | None) -> Iterator[list[dict]]:
    """openai-whisper's subtitle grouping: lists of word timings, lines joined by a leading "\\n".

    Without both a width and a line count, each segment (or each run of `max_words_per_line` words)
    stays a subtitle of its own and overlong lines wrap; with both, subtitles flow across segments and
    break after `max_line_count` lines or at a pause of more than 3 s.
    """
    preserve_segments = max_line_count is None or max_line_width is None
    width, per_line = max_line_width or 1000, max_words_per_line or 1000
    units = [words_of(s) for s in segments]
    last = next((w["start"] for ws in units for w in ws), None) or 0.0
    line_len, line_count, subtitle = 0, 1, []
    for words in units:
        for i, w in enumerate(words):
            long_pause = not preserve_segments and w["start"] - last > 3.0
            has_room = line_len + len(w["word"]) <= width
            seg_break = i % per_line == 0 and len(subtitle) > 0 and preserve_segments
            if line_len > 0 and has_room and not long_pause and not seg_break:
                line_len += len(w["word"])  # same line
            else:
                w["word"] = w["word"].strip()
                if (subtitle and max_line_count is not None and (long_pause or line_count >= max_line_count)
                        or seg_break):
                    yield subtitle  # new subtitle
                    subtitle, line_count = [], 1
                elif line_len > 0:
                    line_count += 1  # new line
                    w["word"] = "\n" + w["word"]
                line_len = len(w["word"].strip())
            subtitle.append(w)
            last = w["start"]
    if subtitle:
        yield subtitle


class WriteVTT(SubtitlesWriter):
    extension = "vtt"
    always_include_hours = False
    decimal_marker = "."

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        print("WEBVTT\n", file=file)
        for start, end, text in self.iterate_result(result, options, **kwargs):
            print(f"{start} --> {end}\n{text}\n", file=file)


class WriteSRT(SubtitlesWriter):
    extension = "srt"
    always_include_hours = True
    decimal_marker = ","

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        for i, (start, end, text) in enumerate(self.iterate_result(result, options, **kwargs), start=1):
            print(f"{i}\n{start} --> {end}\n{text}\n", file=file)


class WriteTSV(ResultWriter):
    """`start<TAB>end<TAB>text` per segment, times in integer milliseconds (locale-proof)."""

    extension = "tsv"

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        print("start", "end", "text", sep="\t", file=file)
        for s in as_dict(result)["segments"]:
            print(round(1000 * s["start"]), round(1000 * s["end"]), s["text"].strip().replace("\t", " "),
                  sep="\t", file=file)


class WriteJSON(ResultWriter):
    extension = "json"

    def write_result(self, result, file: TextIO, options: dict | None = None, **kwargs) -> None:
        json.dump(as_dict(result), file)


WRITERS: dict[str, type[ResultWriter]] = {"txt": WriteTXT, "vtt": WriteVTT, "srt": WriteSRT, "tsv": WriteTSV,
                                          "json": WriteJSON}
FORMATS = (*WRITERS, "all")


def get_writer(output_format: str, output_dir: str) -> Callable[..., str | list[str]]:
    """A writer for one format, or for "all" one that writes every format (returns the paths)."""
    if output_format == "all":
        writers = [cls(output_dir) for cls in WRITERS.values()]

        def write_all(result, audio_path: str, options: dict | None = None, **kwargs) -> list[str]:
            return [w(result, audio_path, options, **kwargs) for w in writers]

        return write_all
    if output_format not in WRITERS:
        raise OptionError(f"output format {output_format!r} is not one of {', '.join(FORMATS)}")
    return WRITERS[output_format](output_dir)
