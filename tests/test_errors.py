"""Errors a user can cause are typed and say what to do; none is a raw traceback from deep inside."""

from __future__ import annotations

import shutil

import pytest

import whisperfast
from whisperfast.errors import AudioError, ModelLoadError, OptionError

from conftest import clip


def test_missing_audio_file(tiny_en, tmp_path):
    with pytest.raises(AudioError, match="nope.wav"):
        tiny_en.decode(str(tmp_path / "nope.wav"))


def test_non_audio_and_empty_files(tiny_en, tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 50)
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(AudioError, match="notes.wav"):
        tiny_en.transcribe(str(tmp_path / "notes.wav"))
    with pytest.raises(AudioError, match="empty.flac"):
        tiny_en.decode(str(tmp_path / "empty.flac"))


def test_truncated_safetensors(tiny_en_dir, tmp_path):
    bad = tmp_path / "ckpt"
    shutil.copytree(tiny_en_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        whisperfast.load_model(bad, device="cpu")


def test_directory_without_config(tiny_en_dir, tmp_path):
    bad = tmp_path / "ckpt"
    shutil.copytree(tiny_en_dir, bad)
    (bad / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json"):
        whisperfast.load_model(bad, device="cpu")


def test_wrong_tensor_shape_names_the_key(tiny_en_dir, tmp_path):
    import json

    bad = tmp_path / "ckpt"
    shutil.copytree(tiny_en_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["decoder_ffn_dim"] = 1000
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"model\.decoder\.layers\.0\.fc1\.weight.*\(1536, 384\).*\(1000, 384\)"):
        whisperfast.load_model(bad, device="cpu")


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match="unknown model 'tiny.xx'"):
        whisperfast.load_model("tiny.xx")


def test_unknown_language_and_negative_temperature(base, tiny_en):
    with pytest.raises(OptionError, match="unknown language"):
        base.decode(clip("jfk.flac"), language="klingon")
    with pytest.raises(OptionError, match="temperature"):
        tiny_en.decode(clip("jfk.flac"), temperature=-0.5)
    with pytest.raises(OptionError, match="temperature"):
        tiny_en.transcribe(clip("jfk.flac"), temperature=(0.0, -1.0))
    with pytest.raises(OptionError, match="English-only"):
        tiny_en.transcribe(clip("jfk.flac"), task="translate")


def test_bad_device_and_dtype(tiny_en_dir):
    with pytest.raises(OptionError, match="device"):
        whisperfast.load_model(tiny_en_dir, device="tpu:7")
    with pytest.raises(OptionError, match="dtype"):
        whisperfast.load_model(tiny_en_dir, device="cpu", dtype="int3")


def test_bad_suppress_tokens(tiny_en):
    with pytest.raises(OptionError, match="suppress_tokens"):
        tiny_en.decode(clip("LDC93S1.wav"), suppress_tokens="x,y")
    with pytest.raises(OptionError, match="outside this vocabulary"):
        tiny_en.decode(clip("LDC93S1.wav"), suppress_tokens=[10**9])
    r = tiny_en.decode(clip("LDC93S1.wav"), suppress_tokens="-1, 13", without_timestamps=True)
    assert 13 not in r.tokens and r.text  # '.' (id 13) suppressed, text still decoded
