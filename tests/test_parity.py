"""Token parity with transformers' `generate` on the same weights and the same features.

Reference ids come from transformers live when it is installed (test-only dependency), else from
tests/fixtures/*.json written by `python -m weights_tools reference` with the same code.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import CLIPS, FIXTURES, clip

LIVE = importlib.util.find_spec("transformers") is not None


def references(ckpt, name: str, clips: list[str], language: str | None = None) -> dict:
    if not LIVE:
        return json.loads((FIXTURES / name).read_text())
    from weights_tools.reference import dump_dict

    return dump_dict(ckpt, [clip(c) for c in clips], language=language)


@pytest.fixture(scope="module")
def tiny_ref(tiny_en_dir):
    return references(tiny_en_dir, "parity_tiny_en.json", CLIPS)


@pytest.mark.parametrize("timestamps", [False, True], ids=["no_timestamps", "timestamps"])
def test_tiny_en_batch_matches_transformers(tiny_en, tiny_ref, timestamps):
    """Every clip, first 30 s, greedy, decoded as one batch of 7 (bucket 8)."""
    results = tiny_en.decode([clip(c) for c in CLIPS], without_timestamps=not timestamps)
    key = "timestamps" if timestamps else "no_timestamps"
    for name, r in zip(CLIPS, results):
        assert r.tokens == tiny_ref[name][key], name


@pytest.mark.parametrize("name", ["jfk.flac", "sonnet001.mp3"])
def test_tiny_en_single_matches_transformers(tiny_en, tiny_ref, name):
    r = tiny_en.decode(clip(name))
    assert r.tokens == tiny_ref[name]["timestamps"]
    assert r.text == tiny_en.tokenizer.decode(r.tokens).strip()


def test_jfk_text(tiny_en):
    r = tiny_en.decode(clip("jfk.flac"), without_timestamps=True)
    assert r.text == ("And so my fellow Americans ask not what your country can do for you, "
                      "ask what you can do for your country.")
    assert r.language == "en" and r.temperature == 0.0
    assert -0.5 < r.avg_logprob < 0 and 0 <= r.no_speech_prob < 0.2


@pytest.mark.parametrize("name,language", [("multilingual.mp3", "en"), ("ru.wav", "ru")])
def test_base_multilingual_matches_transformers(base, base_dir, name, language):
    ref = references(base_dir, f"parity_base_{language}.json", [name], language=language)[name]
    for timestamps in (True, False):
        r = base.decode(clip(name), language=language, without_timestamps=not timestamps)
        assert r.tokens == ref["timestamps" if timestamps else "no_timestamps"], (name, timestamps)
        assert r.language == language
