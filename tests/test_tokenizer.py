"""Special ids come from the checkpoint's vocabulary; sot sequences; timestamp decoding."""

from __future__ import annotations

import pytest

from whisperfast.errors import OptionError
from whisperfast.tokenizer import normalize_language


def test_english_only_ids(tiny_en):
    t = tiny_en.tokenizer
    assert (t.eot, t.sot, t.sot_prev, t.no_timestamps, t.timestamp_begin) == (50256, 50257, 50360, 50362, 50363)
    assert not t.multilingual and t.sot_sequence() == [50257]
    assert t.sot_sequence(timestamps=False) == [50257, 50362]
    with pytest.raises(OptionError, match="English-only"):
        t.sot_sequence(task="translate")


def test_multilingual_ids_are_one_higher(base, tiny_en):
    t, e = base.tokenizer, tiny_en.tokenizer
    assert (t.eot, t.sot, t.no_timestamps) == (e.eot + 1, e.sot + 1, e.no_timestamps + 1)
    assert t.multilingual and len(t.language_ids) == 99
    assert t.sot_sequence("ru", "translate") == [50258, t.language_ids["ru"], t.translate]
    assert t.language_ids["en"] == 50259 and t.translate == 50358 and t.transcribe == 50359


def test_decode_with_timestamps(tiny_en):
    t = tiny_en.tokenizer
    ids = [t.timestamp_begin] + t.encode(" Hello world.") + [t.timestamp_begin + 50]
    assert t.decode_with_timestamps(ids) == "<|0.00|> Hello world.<|1.00|>"
    assert t.decode(ids) == " Hello world."


def test_language_names():
    assert normalize_language("German") == "de" and normalize_language("<|ru|>") == "ru"
    with pytest.raises(OptionError, match="unknown language"):
        normalize_language("klingon")
