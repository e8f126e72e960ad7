"""The `whisperfast` command: whisper-compatible options, exit codes, outputs; end to end on real audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whisperfast import cli
from whisperfast.results import Segment, TranscriptionResult
from whisperfast.writers import get_writer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
FORMATS = ["txt", "vtt", "srt", "tsv", "json"]


# ---------------------------------------------------------------- parsing

def whisper_parser():
    """openai-whisper's own CLI parser, caught as its `cli()` is about to parse."""
    transcribe = pytest.importorskip("whisper.transcribe")
    import argparse

    class Caught(Exception):
        pass

    def catch(self, *a, **k):
        raise Caught(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(argparse.ArgumentParser, "parse_args", catch)
    try:
        transcribe.cli()
    except Caught as e:
        return e.args[0]
    finally:
        mp.undo()
    raise AssertionError("whisper's cli() did not parse")


def test_defaults_equal_the_whisper_cli():
    ours = cli.parse_args(["a.wav"])
    differ = {"model": "tiny.en, the offline default, where whisper has turbo",
              "device": "None: cuda when available, as whisper's computed default"}
    for action in whisper_parser()._actions:
        name = action.dest
        if name in ("help", "audio") or name in differ:
            continue
        if name in cli.UNSUPPORTED_WHISPER_OPTIONS:
            assert not hasattr(ours, name), name
            continue
        assert getattr(ours, name) == action.default, name
        if action.choices is not None and name != "language":
            assert list(cli.build_parser()._option_string_actions[f"--{name}"].choices) == list(action.choices)
        if getattr(action.type, "__name__", None) in ("str2bool", "optional_int", "optional_float"):
            assert cli.build_parser()._option_string_actions[f"--{name}"].type.__name__ == action.type.__name__
    assert ours.model == "tiny.en" and ours.device is None


def test_temperature_tuple_like_whisper():
    assert cli.parse_args(["a.wav"]).temperatures == tuple(np.arange(0, 1.0 + 1e-6, 0.2))
    assert cli.parse_args(["a.wav", "--temperature", "0.5", "--temperature_increment_on_fallback", "0.25"]
                          ).temperatures == (0.5, 0.75, 1.0)
    assert cli.parse_args(["a.wav", "--temperature", "0.3", "--temperature_increment_on_fallback", "None"]
                          ).temperatures == (0.3,)
    assert all(type(t) is float for t in cli.parse_args(["a.wav"]).temperatures)


def test_zero_increment_is_a_usage_error(capsys):
    assert cli.main(["a.wav", "--temperature_increment_on_fallback", "0"]) == 2
    assert "temperature_increment_on_fallback" in capsys.readouterr().err


def test_dashed_aliases_and_bare_booleans():
    a = cli.parse_args(["a.wav", "--output-format", "srt", "--without-timestamps", "--word-timestamps",
                        "--max-line-width", "20", "--condition-on-previous-text=False", "--no-compile", "b.wav"])
    assert a.output_format == "srt" and a.without_timestamps is True and a.word_timestamps is True
    assert a.max_line_width == 20 and a.condition_on_previous_text is False and a.compile is False
    assert a.audio == ["a.wav", "b.wav"]
    assert cli.parse_args(["a.wav", "--verbose", "False"]).verbose is False
    assert cli.parse_args(["a.wav", "--verbose"]).verbose is True
    assert cli.parse_args(["a.wav", "--compile"]).compile is True
    parser = cli.build_parser()
    assert cli.normalize_argv(["--", "--max-line-width", "--verbose"], parser) == ["--", "--max-line-width", "--verbose"]
    assert cli.normalize_argv(["--fp16", "x.wav"], parser) == ["--fp16", "True", "x.wav"]


def test_output_destinations():
    a = cli.parse_args(["a.wav"])
    assert (a.output_dir, a.output_format, a.print_text, a.to_stdout) == (".", "all", True, False)
    a = cli.parse_args(["a.wav", "-o", "out"])
    assert (a.output_dir, a.print_text, a.to_stdout) == ("out", False, False)
    a = cli.parse_args(["a.wav", "-o", "-"])
    assert (a.output_format, a.to_stdout) == ("txt", True)
    assert cli.parse_args(["a.wav", "--stdout", "-f", "json"]).to_stdout


@pytest.mark.parametrize("argv, message", [
    (["a.wav", "-o", "-", "-f", "all"], "one --output_format"),
    (["a.wav", "--stdout", "-o", "out"], "--stdout"),
    (["a.wav", "--highlight_words", "True"], "--highlight_words requires --word_timestamps True"),
    (["a.wav", "--max_line_width", "40"], "--max_line_width requires --word_timestamps True"),
    (["a.wav", "--batch_size", "0"], "--batch_size"),
    (["a.wav", "--verbose=maybe"], "--verbose"),
    (["a.wav", "--beam_size", "0"], "beam_size must be None or an int >= 1"),
    (["a.wav", "--length_penalty", "2"], "length_penalty"),
    (["a.wav", "--patience", "2", "--beam_size", "None"], "patience requires beam_size"),
    ([], "the following arguments are required: audio"),
])
def test_usage_errors_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------- errors (in process and as a program)

def run_cli(*args: str, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "whisperfast", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_missing_file(capsys, tmp_path):
    assert cli.main([str(tmp_path / "nope.wav"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("whisperfast: error: ") and "nope.wav: no such file" in err and "Traceback" not in err
    p = run_cli(str(tmp_path / "nope.wav"), "-o", str(tmp_path))
    assert p.returncode == 2 and "whisperfast: error: " in p.stderr and "nope.wav" in p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_unknown_model(capsys, tmp_path):
    jfk = str(DATA / "jfk.flac")
    assert cli.main([jfk, "--model", "no-such-model", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("whisperfast: error: ") and "no-such-model" in err and "Traceback" not in err
    p = run_cli(jfk, "--model", "no-such-model", "-o", str(tmp_path))
    assert p.returncode == 2 and "whisperfast: error: " in p.stderr and "no-such-model" in p.stderr
    assert "Traceback" not in p.stderr
    assert os.listdir(tmp_path) == []


def test_unknown_language_fails_before_loading(capsys, monkeypatch):
    monkeypatch.setattr(cli, "load", lambda args: pytest.fail("the model should not be loaded"))
    assert cli.main([str(DATA / "jfk.flac"), "--model", "base", "--language", "klingon"]) == 2
    assert "klingon" in capsys.readouterr().err


def test_help_as_a_module():
    p = run_cli("--help")
    assert p.returncode == 0 and "--output_format" in p.stdout and "--word_timestamps" in p.stdout


# ---------------------------------------------------------------- the run loop, with a stand-in model

def result_for(path: str) -> TranscriptionResult:
    text = f" Words of {Path(path).stem}."
    return TranscriptionResult(text=text, language="en",
                               segments=[Segment(0, 0, 0.0, 1.5, text, [1, 2], 0.0, -0.1, 1.0, 0.01)])


class StandIn:
    """Records calls; prints like the engine's verbose mode; fails or is interrupted on request."""

    def __init__(self, bad=(), interrupt_on_call=None, reject=None):
        self.calls, self.bad, self.interrupt_on_call, self.reject = [], set(bad), interrupt_on_call, reject

    def transcribe(self, paths, **kw):
        self.calls.append((list(paths), kw))
        print("[00:00.000 --> 00:01.500] engine chatter")
        if len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        if self.reject in kw:
            raise TypeError(f"transcribe_with() got an unexpected keyword argument '{self.reject}'")
        return [TranscriptionResult("", "", error="cannot decode") if p in self.bad else result_for(p)
                for p in paths]


@pytest.fixture
def audio_files(tmp_path):
    paths = []
    for name in ("one.wav", "two.flac", "three.mp3"):
        (tmp_path / name).write_bytes(b"x")
        paths.append(str(tmp_path / name))
    return paths


def use(monkeypatch, model: StandIn) -> StandIn:
    monkeypatch.setattr(cli, "load", lambda args: model)
    return model


def test_writes_every_format_and_prints_the_text(monkeypatch, capsys, tmp_path, audio_files):
    model = use(monkeypatch, StandIn())
    monkeypatch.chdir(tmp_path)
    assert cli.main(audio_files) == 0
    out, err = capsys.readouterr()
    assert out == "Words of one.\nWords of two.\nWords of three.\n"
    assert "engine chatter" in err and "engine chatter" not in out
    for p in audio_files:
        for fmt in FORMATS:
            assert (tmp_path / f"{Path(p).stem}.{fmt}").is_file()
    assert [c[0] for c in model.calls] == [[p] for p in audio_files]  # batch_size 1: one file per call
    kw = model.calls[0][1]
    assert kw["temperature"] == tuple(np.arange(0, 1.0 + 1e-6, 0.2)) and kw["batch_size"] == 1
    assert kw["on_error"] == "raise" and kw["verbose"] is True and "word_timestamps" not in kw


def test_batches_and_word_options_reach_the_engine_and_writers(monkeypatch, capsys, tmp_path, audio_files):
    model = use(monkeypatch, StandIn())
    out = tmp_path / "out"
    argv = [*audio_files, "-o", str(out), "-f", "srt", "--batch_size", "2", "--word_timestamps", "True",
            "--max_line_width", "30", "--max_line_count", "2", "--language", "English", "--task", "transcribe"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == ""  # an explicit --output_dir: files only
    assert [c[0] for c in model.calls] == [audio_files[:2], audio_files[2:]]
    kw = model.calls[0][1]
    assert kw["word_timestamps"] is True and kw["batch_size"] == 2 and kw["language"] == "English"
    assert kw["prepend_punctuations"] == "\"'“¿([{-"
    assert sorted(os.listdir(out)) == ["one.srt", "three.srt", "two.srt"]


def test_stdout_json_lines(monkeypatch, capsys, audio_files):
    use(monkeypatch, StandIn())
    assert cli.main([*audio_files[:2], "-o", "-", "-f", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [result_for(p).to_dict() for p in audio_files[:2]]


def test_stdout_txt(monkeypatch, capsys, audio_files):
    use(monkeypatch, StandIn())
    assert cli.main([audio_files[0], "--stdout"]) == 0
    assert capsys.readouterr().out == "Words of one.\n"


def test_skipped_files_exit_1_and_the_rest_is_written(monkeypatch, capsys, tmp_path, audio_files):
    use(monkeypatch, StandIn(bad={audio_files[1]}))
    missing = str(tmp_path / "missing.wav")
    assert cli.main([*audio_files, missing, "-o", str(tmp_path / "o"), "-f", "txt", "--on_error", "skip"]) == 1
    err = capsys.readouterr().err
    assert f"whisperfast: skipped {audio_files[1]}: cannot decode" in err
    assert sorted(os.listdir(tmp_path / "o")) == ["missing.txt", "one.txt", "three.txt"]  # the stand-in "reads" it


def test_interrupt_keeps_finished_outputs_complete(monkeypatch, capsys, tmp_path, audio_files):
    use(monkeypatch, StandIn(interrupt_on_call=2))
    out = tmp_path / "out"
    assert cli.main([*audio_files, "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == sorted(f"one.{f}" for f in FORMATS)  # complete, no temporary files
    expected = tmp_path / "expected"
    expected.mkdir()
    get_writer("all", str(expected))(result_for(audio_files[0]), audio_files[0])
    for f in FORMATS:
        assert (out / f"one.{f}").read_bytes() == (expected / f"one.{f}").read_bytes()


def test_interrupt_while_loading(monkeypatch, capsys, audio_files):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load", interrupted)
    assert cli.main(audio_files) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_an_option_the_engine_lacks_is_a_clean_error(monkeypatch, capsys, tmp_path, audio_files):
    use(monkeypatch, StandIn(reject="word_timestamps"))
    assert cli.main([audio_files[0], "-o", str(tmp_path), "--word_timestamps", "True"]) == 2
    assert "whisperfast: error: --word_timestamps is not supported" in capsys.readouterr().err


def test_english_only_model_forces_english(monkeypatch, capsys, tmp_path, audio_files):
    model = use(monkeypatch, StandIn())
    assert cli.main([audio_files[0], "-o", str(tmp_path), "--language", "de"]) == 0
    assert model.calls[0][1]["language"] == "en"
    assert "English-only" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end, real model and audio

@pytest.fixture(scope="session")
def model_env(tmp_path_factory) -> dict:
    """tiny.en converted once per session from the packaged weights (or an existing $WHISPERFAST_CACHE)."""
    cache = os.environ.get("WHISPERFAST_CACHE") or str(tmp_path_factory.mktemp("whisperfast-cache"))
    return {"WHISPERFAST_CACHE": cache, "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_end_to_end_every_format_for_two_files(tmp_path, model_env):
    files = [str(DATA / "jfk.flac"), str(DATA / "LDC93S1.wav")]
    p = run_cli(*files, "--output_dir", str(tmp_path / "out"), "--output_format", "all", env=model_env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == sorted(f"{s}.{f}" for s in ("jfk", "LDC93S1") for f in FORMATS)
    assert "ask not what your country can do for you" in (out / "jfk.txt").read_text(encoding="utf-8").lower()
    from test_writers import parse_cues

    for stem in ("jfk", "LDC93S1"):
        d = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert d["language"] == "en" and d["text"].strip() and d["segments"]
        assert len(parse_cues("srt", (out / f"{stem}.srt").read_text(encoding="utf-8"))) == len(d["segments"])
        assert len(parse_cues("vtt", (out / f"{stem}.vtt").read_text(encoding="utf-8"))) == len(d["segments"])
        tsv = (out / f"{stem}.tsv").read_text(encoding="utf-8").splitlines()
        assert tsv[0] == "start\tend\ttext" and len(tsv) == 1 + len(d["segments"])


@pytest.mark.slow
def test_end_to_end_prints_the_transcript(tmp_path, model_env):
    p = run_cli(str(DATA / "jfk.flac"), "--verbose", "False", cwd=tmp_path, env=model_env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ask not what your country can do for you" in p.stdout.lower()
    assert sorted(os.listdir(tmp_path)) == sorted(f"jfk.{f}" for f in FORMATS)


def test_load_maps_model_dir_fp16_dtype_and_compile(monkeypatch, tmp_path):
    import whisperfast

    seen = []
    monkeypatch.setattr(whisperfast, "load_model", lambda name, **kw: seen.append(
        (name, kw, os.environ.get("WHISPERFAST_CACHE"))))
    monkeypatch.setenv("WHISPERFAST_CACHE", "/before")
    cli.load(cli.parse_args(["a.wav", "--model", "base", "--model_dir", str(tmp_path), "--fp16", "False",
                             "--no-compile"]))
    cli.load(cli.parse_args(["a.wav", "--dtype", "bfloat16", "--fp16", "False", "--device", "cpu", "--threads", "3"]))
    assert seen[0] == ("base", dict(device=None, dtype="float32", compile=False, threads=0), str(tmp_path))
    assert seen[1] == ("tiny.en", dict(device="cpu", dtype="bfloat16", compile=None, threads=3), "/before")
    assert os.environ["WHISPERFAST_CACHE"] == "/before"
