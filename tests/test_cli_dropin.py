"""The `whisperfast` command as a `whisper` user runs it: every audio file they have (made here), pipes and
standard input, `| head`, --clip_timestamps, whisper's usage errors and warnings, and the small things
(--help, --version, progress, "Detected language"). CLI runs are subprocesses of `python -m whisperfast`."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import whisperfast
from whisperfast import cli
from whisperfast.audio import load_audio

from test_decoders import encode

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
LDC = DATA / "LDC93S1.wav"
LDC_TEXT = "She had your dog suit and greasy wash water all year."  # tiny.en's words for it


def run_cli(*args: str, stdin=None, input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    return subprocess.run([sys.executable, "-m", "whisperfast", *args], cwd=cwd or ROOT, env=env, stdin=stdin,
                          input=input, capture_output=True, timeout=600)


def test_files_whisper_reads_are_transcribed_damaged_ones_with_a_warning(tmp_path):
    """1-3: an m4a phone memo, a WAV whose header declares no data, a truncated WAV; one run."""
    m4a = encode(tmp_path / "memo.m4a", load_audio(LDC), 16000, "ipod", "aac")
    b = bytearray(LDC.read_bytes())
    i = b.find(b"data")
    b[4:8] = b[i + 4: i + 8] = struct.pack("<I", 0)
    (zero := tmp_path / "zero.wav").write_bytes(bytes(b))
    (trunc := tmp_path / "trunc.wav").write_bytes((DATA / "ru.wav").read_bytes()[:60000])
    r = run_cli(str(m4a), str(zero), str(trunc), "-o", "-", "--verbose", "False")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == [LDC_TEXT, LDC_TEXT] and len(lines) == 3 and lines[2], lines
    assert f"whisperfast: warning: {zero}: the WAV header declares no audio data" in err
    assert (f"whisperfast: warning: {trunc}: the file is truncated or damaged: read 1.9 s of the 5.7 s its "
            "header promises; transcribing that part") in err
    assert "Traceback" not in err and "AudioWarning" not in err


def test_standard_input_and_pipes(tmp_path):
    """4: `whisperfast - < x.wav`, `cat x.wav | whisperfast /dev/stdin`; outputs of - are named stdin.*"""
    with open(LDC, "rb") as f:
        r = run_cli("-", "-o", str(tmp_path), "-f", "txt", "--verbose", "False", stdin=f)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stdin.txt").read_text().strip() == LDC_TEXT
    cat = subprocess.Popen(["cat", str(LDC)], stdout=subprocess.PIPE)
    r = run_cli("/dev/stdin", "-o", "-", "--verbose", "False", stdin=cat.stdout)
    cat.wait()
    assert r.returncode == 0 and r.stdout.decode().strip() == LDC_TEXT, r.stderr
    assert cli.main(["-", "-", "-o", "-"]) == 2  # standard input can be read once


def test_closed_stdout_exits_quietly():
    """8: `whisperfast a.wav b.wav --verbose False | head -1`"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "whisperfast", str(LDC), str(DATA / "jfk.flac"), str(LDC),
                          "--verbose", "False", "-o", "-"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # the reader goes away, as `head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=600) == 141
    assert first.decode().strip() == LDC_TEXT and err == "", err


def test_batch_verbose_lines_name_their_file_and_progress_starts_with_a_total():
    """9 and 13: with --batch_size 2 each verbose line names its file; no "0.0/0.0" bar."""
    r = run_cli(str(LDC), str(DATA / "jfk.flac"), "--batch_size", "2", "-o", "-")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "LDC93S1.wav: [00:00.000 --> " in err and "jfk.flac: [00:00.000 --> " in err
    assert "0.0/0.0" not in err and "/13.9 audio s" in err
    alone = run_cli(str(LDC), "-o", "-").stderr.decode()
    assert "\n[00:00.000 --> " in alone.replace("\r", "\n")  # one file: whisper's lines as they are


@pytest.mark.parametrize("value", ["1", "0", "yes", "no"])
def test_true_false_options_take_only_true_or_false(capsys, value):
    """10: whisper's str2bool: a usage error naming the option (not "1: no such file")."""
    assert cli.main([str(LDC), "--word_timestamps", value]) == 2
    err = capsys.readouterr().err
    assert f"argument --word_timestamps: expected True or False, got '{value}'" in err and "no such file" not in err
    assert cli.parse_args([str(LDC), "--word_timestamps", str(LDC)]).word_timestamps is True  # bare: True


def test_fp16_on_cpu_warns_as_whisper_and_runs_float32(monkeypatch, capsys):
    """11"""
    seen = []
    monkeypatch.setattr(whisperfast, "load_model", lambda name, **kw: seen.append(kw))
    cli.load(cli.parse_args(["a.wav", "--dtype", "float16", "--device", "cpu"]))
    cli.load(cli.parse_args(["a.wav", "--dtype", "fp16", "--device", "cpu"]))
    assert [kw["dtype"] for kw in seen] == ["float32", "float32"]
    assert capsys.readouterr().err.count("whisperfast: warning: FP16 is not supported on CPU; using FP32 instead") == 2


def test_unwritable_output_dir_fails_before_the_model_loads(tmp_path, capsys):
    """12: --output_dir under a file; the model does not even exist, and is not looked at first."""
    (tmp_path / "file").write_text("x")
    assert cli.main([str(LDC), "-o", str(tmp_path / "file" / "out"), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert "cannot write into --output_dir" in err and "no-model" not in err


def test_help_version_language_line_and_warnings_as_lines(capsys):
    """13: defaults said once in --help; --version; "Detected language"; warnings as whisperfast lines."""
    assert cli.main(["--help"]) == 0
    help = capsys.readouterr().out
    help = " ".join(help.split())  # argparse wraps at the terminal's width
    assert "(default: None)" not in help and "(default: all) (default:" not in help
    assert "by default (default:" not in help and "(default: tiny.en)" in help
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("whisperfast ")
    r = run_cli(str(DATA / "ru.wav"), "--model", "base", "--task", "translate", "--word_timestamps", "True",
                "-o", "-", "--beam_size", "None", "--best_of", "None")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "Detected language: Russian" in err
    assert "whisperfast: warning: Word-level timestamps on translations may not be reliable." in err
    assert "UserWarning" not in err and ".py:" not in err


def test_clip_timestamps_same_as_the_api(tiny_en):
    """7: --clip_timestamps as openai's (test_dropin_api.py compares the API with openai's)."""
    r = run_cli(str(DATA / "sonnet001.mp3"), "--clip_timestamps", "5,20,30", "-f", "json", "-o", "-",
                "--verbose", "False", "--beam_size", "None", "--best_of", "None")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = tiny_en.transcribe(str(DATA / "sonnet001.mp3"), clip_timestamps="5,20,30")
    assert [s["text"] for s in got["segments"]] == [s.text for s in want.segments]
    assert got["segments"][0]["start"] >= 5.0 and all(not 20.0 < s["start"] < 30.0 for s in got["segments"])


def test_bad_clip_timestamps_are_a_usage_error(capsys):
    assert cli.main([str(LDC), "--clip_timestamps", "5,x"]) == 2
    assert "clip_timestamps" in capsys.readouterr().err
