"""Output writers: hand-written golden files, subtitle well-formedness, line breaking, atomic writes.

The golden files in tests/golden/ were typed by hand from the format rules (openai-whisper's utils.py),
never produced by whisperfast.writers. How `three_segments()` becomes them:
- txt: each segment's text, stripped, one per line (no "-->" rewrite, tab kept);
- tsv: header, then round(1000 * time) and the stripped text with tabs as spaces, per segment;
- srt/vtt: segment 1 carries words, so cues come from word timings: segments 0 and 2 (no words) are
  one "word" each; each segment is its own cue (no line limits), its first word stripped; cue 2 ends at
  its last word (3664.0 -> 01:01:04), not at the segment end (3665.25); 3705.9996 s rounds up to
  01:01:46.000; 3700.004 s is 01:01:40.004; vtt has hours only from one hour on, srt always, with ",";
- highlight: one cue per word with that word in <u></u>; the 120 ms gap between " coûte" (ends
  3662.48) and " cinq" (starts 3662.6) gets a cue with the plain text;
- json: json.dump of to_dict() with its defaults (ASCII escapes, ", " and ": " separators, no newline).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from whisperfast.results import Segment, TranscriptionResult, Word
from whisperfast.writers import WRITERS, atomic_open, format_timestamp, get_writer

GOLDEN = Path(__file__).parent / "golden"
FORMATS = ["txt", "vtt", "srt", "tsv", "json"]


def three_segments() -> TranscriptionResult:
    words = [Word(3661.5, 3662.0, " Ça", 0.875), Word(3662.0, 3662.48, " coûte", 0.5),
             Word(3662.6, 3663.0, " cinq", 0.75), Word(3663.0, 3664.0, " euros.", 1.0)]
    segs = [
        Segment(0, 0, 0.0, 3.2, " Ask not what your country can do for you.", [50364, 2203, 50524], 0.0, -0.25,
                1.5, 0.01),
        Segment(1, 366150, 3661.5, 3665.25, " Ça coûte cinq euros.", [50364, 3000, 50677], 0.2, -0.5, 1.25,
                0.02, words=words),
        Segment(2, 370000, 3700.004, 3705.9996, " 日本語のテキスト -->\tarrow", [50364, 4000], 0.0, -0.125, 0.75,
                0.5),
    ]
    return TranscriptionResult(text="".join(s.text for s in segs), language="en", segments=segs,
                               duration=3706.0, source="clip.wav")


def lazy_dog(pause_before_last: bool = False) -> dict:
    """One segment of 9 words, 0.5 s apart, 0.4 s long; optionally the last one 4.5 s after the one before."""
    text = " The quick brown fox jumps over the lazy dog."
    words = [{"start": 0.5 * k, "end": 0.5 * k + 0.4, "word": " " + w, "probability": 1.0}
             for k, w in enumerate(text.split())]
    if pause_before_last:
        words[-1].update(start=8.0, end=8.4)
    seg = {"id": 0, "seek": 0, "start": 0.0, "end": words[-1]["end"], "text": text, "tokens": [],
           "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0, "words": words}
    return {"text": text, "segments": [seg], "language": "en"}


def render(fmt: str, result, **options) -> str:
    import io

    buf = io.StringIO()
    WRITERS[fmt]("unused").write_result(result, buf, options)
    return buf.getvalue()


# ---------------------------------------------------------------- golden files

@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_file(tmp_path, fmt):
    path = get_writer(fmt, str(tmp_path))(three_segments(), "/some/where/clip.wav")
    assert path == str(tmp_path / f"clip.{fmt}")
    assert Path(path).read_bytes() == (GOLDEN / f"three_segments.{fmt}").read_bytes()


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_golden_highlight_words(tmp_path, fmt):
    get_writer(fmt, str(tmp_path))(three_segments(), "clip.mp3", {"highlight_words": True})
    expected = (GOLDEN / f"three_segments.highlight.{fmt}").read_text(encoding="utf-8")
    assert (tmp_path / f"clip.{fmt}").read_text(encoding="utf-8") == expected


def test_dict_input_equals_dataclass_input():
    d = three_segments().to_dict()
    for fmt in FORMATS:
        assert render(fmt, d) == render(fmt, three_segments())


def test_all_writes_every_format_named_after_the_audio(tmp_path):
    paths = get_writer("all", str(tmp_path))(three_segments(), "dir/talk.take1.flac")
    assert sorted(os.path.basename(p) for p in paths) == sorted(f"talk.take1.{f}" for f in FORMATS)
    for f in FORMATS:
        assert (tmp_path / f"talk.take1.{f}").read_bytes() == (GOLDEN / f"three_segments.{f}").read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted(f"talk.take1.{f}" for f in FORMATS)


def test_json_round_trips():
    assert json.loads(render("json", three_segments())) == three_segments().to_dict()


def test_segments_without_words_use_segment_times():
    d = three_segments().to_dict()
    d["segments"][1].pop("words")
    assert render("srt", d).split("\n\n")[1] == "2\n01:01:01,500 --> 01:01:05,250\nÇa coûte cinq euros."
    assert "01:01:01.500 --> 01:01:05.250\nÇa coûte cinq euros.\n" in render("vtt", d)


def test_unknown_format_is_an_option_error(tmp_path):
    from whisperfast.errors import OptionError

    with pytest.raises(OptionError, match="srt"):
        get_writer("docx", str(tmp_path))


# ---------------------------------------------------------------- timestamps

@pytest.mark.parametrize("seconds, hours, marker, expected", [
    (0.0, False, ".", "00:00.000"), (0.0, True, ",", "00:00:00,000"), (59.9994, False, ".", "00:59.999"),
    (59.9996, False, ".", "01:00.000"), (3599.9996, False, ".", "01:00:00.000"), (3661.5, False, ".", "01:01:01.500"),
    (36000.25, True, ",", "10:00:00,250"), (360000.0, False, ".", "100:00:00.000"),
])
def test_format_timestamp(seconds, hours, marker, expected):
    assert format_timestamp(seconds, always_include_hours=hours, decimal_marker=marker) == expected


def test_format_timestamp_rejects_negative():
    with pytest.raises(ValueError):
        format_timestamp(-0.001)


# ---------------------------------------------------------------- srt / vtt well-formedness

TS = {"srt": r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})", "vtt": r"(?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3})"}


def seconds_of(m: re.Match, first: int) -> float:
    h, mi, s, ms = (int(g or 0) for g in m.groups()[first:first + 4])
    assert mi < 60 and s < 60
    return h * 3600 + mi * 60 + s + ms / 1000


def parse_cues(fmt: str, text: str) -> list[tuple[float, float, str]]:
    """Parse and validate an srt/vtt file; returns (start, end, text) per cue."""
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    if fmt == "vtt":
        assert blocks.pop(0) == "WEBVTT"
    arrow = re.compile(f"^{TS[fmt]} --> {TS[fmt]}$")
    cues = []
    for n, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines.pop(0) == str(n), "srt indexes are 1, 2, 3, ..."
        m = arrow.match(lines[0])
        assert m, f"bad timing line {lines[0]!r}"
        start, end = seconds_of(m, 0), seconds_of(m, 4)
        assert start <= end
        assert all(line.strip() for line in lines[1:]), "no empty text lines inside a cue"
        assert not any("-->" in line for line in lines[1:])
        cues.append((start, end, "\n".join(lines[1:])))
    starts = [c[0] for c in cues]
    assert starts == sorted(starts), "cues in time order"
    return cues


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.parametrize("options", [{}, {"highlight_words": True}, {"max_line_width": 16, "max_line_count": 2},
                                     {"max_line_width": 10}, {"max_words_per_line": 2, "highlight_words": True}])
def test_subtitles_are_well_formed(fmt, options):
    for result in (three_segments(), lazy_dog(), lazy_dog(pause_before_last=True)):
        cues = parse_cues(fmt, render(fmt, result, **options))
        ends = [c[1] for c in cues]
        assert all(e <= s2 for e, (s2, _, _) in zip(ends, cues[1:])), "cues do not overlap"


def test_golden_files_are_well_formed():
    for name in ("three_segments.srt", "three_segments.highlight.srt"):
        assert len(parse_cues("srt", (GOLDEN / name).read_text(encoding="utf-8"))) in (3, 7)
    for name in ("three_segments.vtt", "three_segments.highlight.vtt"):
        assert len(parse_cues("vtt", (GOLDEN / name).read_text(encoding="utf-8"))) in (3, 7)


# ---------------------------------------------------------------- line breaking (hand-derived)

def cue_texts(fmt: str, result, **options) -> list[tuple[float, float, str]]:
    return parse_cues(fmt, render(fmt, result, **options))


def test_max_line_width_and_count_flow_and_break():
    # width 16: "The quick brown" (15) + " fox" would be 19 -> new line; 2 lines full at " the" -> new cue
    assert cue_texts("srt", lazy_dog(), max_line_width=16, max_line_count=2) == [
        (0.0, 2.9, "The quick brown\nfox jumps over"), (3.0, 4.4, "the lazy dog.")]


def test_pause_over_three_seconds_starts_a_cue():
    # " dog." starts 4.5 s after " lazy" started: a long pause (only when both limits are set)
    assert cue_texts("srt", lazy_dog(True), max_line_width=16, max_line_count=2) == [
        (0.0, 2.9, "The quick brown\nfox jumps over"), (3.0, 3.9, "the lazy"), (8.0, 8.4, "dog.")]
    assert cue_texts("srt", lazy_dog(True), max_line_width=16) == [
        (0.0, 8.4, "The quick brown\nfox jumps over\nthe lazy dog.")]


def test_max_line_width_alone_wraps_inside_the_segment():
    assert cue_texts("vtt", lazy_dog(), max_line_width=16) == [
        (0.0, 4.4, "The quick brown\nfox jumps over\nthe lazy dog.")]


def test_max_line_count_alone_has_no_effect():
    assert cue_texts("srt", lazy_dog(), max_line_count=1) == [(0.0, 4.4, "The quick brown fox jumps over the lazy dog.")]


def test_max_words_per_line():
    assert cue_texts("srt", lazy_dog(), max_words_per_line=3) == [
        (0.0, 1.4, "The quick brown"), (1.5, 2.9, "fox jumps over"), (3.0, 4.4, "the lazy dog.")]


def test_highlight_across_lines_keeps_the_newline_outside_the_tag():
    cues = cue_texts("srt", lazy_dog(), max_line_width=16, max_line_count=2, highlight_words=True)
    # cue 1 holds 6 words (5 gaps of 0.1 s between them), cue 2 holds 3 (2 gaps): 9 + 7 cues
    assert len(cues) == 16
    assert cues[0] == (0.0, 0.4, "<u>The</u> quick brown\nfox jumps over")
    assert cues[1] == (0.4, 0.5, "The quick brown\nfox jumps over")  # the gap before " quick"
    assert cues[6] == (1.5, 1.9, "The quick brown\n<u>fox</u> jumps over")
    assert cues[11] == (3.0, 3.4, "<u>the</u> lazy dog.")


def test_options_as_keywords_win_over_the_options_dict():
    import io

    buf = io.StringIO()
    WRITERS["srt"]("x").write_result(lazy_dog(), buf, {"max_words_per_line": 9}, max_words_per_line=3)
    assert buf.getvalue().count("-->") == 3


def test_matches_openai_whisper_writers_where_installed():
    """Cross-check against openai-whisper's own writers on inputs it handles (all words or none)."""
    utils = pytest.importorskip("whisper.utils")
    import io

    no_words = three_segments().to_dict()
    no_words["segments"][1].pop("words")
    no_words["segments"][2]["text"] = " no arrow here"
    all_words = lazy_dog(pause_before_last=True)
    cases = [{}, {"highlight_words": True}, {"max_line_width": 16, "max_line_count": 2}, {"max_line_width": 12},
             {"max_words_per_line": 4}, {"max_line_count": 1, "max_line_width": 30, "highlight_words": True}]
    for result in (no_words, all_words):
        for fmt in FORMATS:
            for options in cases:
                ref = io.StringIO()
                utils.get_writer(fmt, ".").write_result(result, ref, options)
                assert render(fmt, result, **options) == ref.getvalue(), (fmt, options)


# ---------------------------------------------------------------- atomic writes

def test_atomic_write_leaves_no_temporary_files(tmp_path):
    get_writer("all", str(tmp_path))(three_segments(), "a.wav")
    get_writer("all", str(tmp_path))(three_segments(), "a.wav")  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == sorted(f"a.{f}" for f in FORMATS)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch, exc):
    from whisperfast import writers

    real_print = print
    calls = []

    def failing_print(*args, **kwargs):  # the writer dies after its first line reached the file
        calls.append(args)
        if len(calls) == 2:
            raise exc("interrupted mid-write")
        real_print(*args, **kwargs)

    monkeypatch.setattr(writers, "print", failing_print, raising=False)
    with pytest.raises(exc):
        get_writer("srt", str(tmp_path))(three_segments(), "a.wav")
    assert os.listdir(tmp_path) == []

    (tmp_path / "a.srt").write_text("old complete file\n")
    calls.clear()
    with pytest.raises(exc):
        get_writer("srt", str(tmp_path))(three_segments(), "a.wav")
    assert os.listdir(tmp_path) == ["a.srt"]
    assert (tmp_path / "a.srt").read_text() == "old complete file\n"


def test_atomic_open_replaces_only_on_success(tmp_path):
    p = tmp_path / "out.txt"
    with atomic_open(str(p)) as f:
        f.write("complete")
        assert not p.exists()  # nothing at the final name until the file is whole
    assert p.read_text() == "complete"
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
