"""The suite's own comparison rule (conftest.assert_matches): exact, except named float keys within a tolerance."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import FIXTURES, assert_matches

REF = {"seek": 0, "text": " a", "segments": [{"start": 0.5, "words": [{"word": " a", "probability": 0.5}]}],
       "windows": [0, 2254]}


def changed(path: list, value) -> dict:
    d = copy.deepcopy(REF)
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return d


def test_equal_and_within_tolerance_pass():
    assert_matches(copy.deepcopy(REF), REF)
    assert_matches(changed(["segments", 0, "words", 0, "probability"], 0.50009), REF, {"probability": 1e-4})


@pytest.mark.parametrize("path,value", [
    (["segments", 0, "words", 0, "probability"], 0.50011),  # a tolerated key, beyond its tolerance
    (["segments", 0, "start"], 0.5 + 1e-12),  # a float with no tolerance: exact
    (["seek"], 1), (["text"], " b"), (["windows"], [0, 2255]), (["windows"], [0]),
    (["segments", 0, "words", 0, "word"], " b"), (["segments", 0, "words"], []),
    (["seek"], 0.0),  # a float where the reference holds an int
])
def test_any_other_difference_fails(path, value):
    with pytest.raises(AssertionError):
        assert_matches(changed(path, value), REF, {"probability": 1e-4})


def test_missing_or_extra_keys_fail():
    extra = copy.deepcopy(REF) | {"language": "en"}
    with pytest.raises(AssertionError):
        assert_matches(extra, REF)
    with pytest.raises(AssertionError):
        assert_matches(REF, extra)


def test_the_stored_word_reference_is_exact_except_probabilities():
    """The rule as the words test applies it: a word's start moved by one frame in the stored file is a failure."""
    stored = json.loads((FIXTURES / "words_tiny_en.json").read_text())
    moved = copy.deepcopy(stored)
    moved["jfk.flac"]["segments"][0]["words"][1]["start"] += 0.02
    with pytest.raises(AssertionError, match="start"):
        assert_matches(moved, stored, {"probability": 1e-4})
    nudged = copy.deepcopy(stored)
    nudged["jfk.flac"]["segments"][0]["words"][1]["probability"] += 2e-5  # what another processor gives
    assert_matches(nudged, stored, {"probability": 1e-4})


def test_state_changes_sees_what_a_test_could_leak(monkeypatch, tmp_path):
    """The autouse check after every test (conftest.leaves_no_global_state) notices each kind of leak."""
    import torch

    from conftest import process_state, state_changes

    before = process_state()
    assert state_changes(before, process_state()) == {}
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("WHISPERFAST_CACHE")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(threads + 1)
    torch.set_default_dtype(torch.float64)
    try:
        with torch._dynamo.config.patch(error_on_recompile=not torch._dynamo.config.error_on_recompile):
            changed = state_changes(before, process_state())
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(torch.float32)
    assert changed.keys() == {"$OMP_NUM_THREADS", "$WHISPERFAST_CACHE", "cwd", "dynamo.error_on_recompile",
                              "threads", "dtype"}


def test_state_changes_sees_a_deleted_dynamo_option():
    """pytest 9's monkeypatch.setattr on torch's config module deletes the option on undo (no instance __dict__
    entry to restore); later reads raise AttributeError, while get_config_copy() still shows the default."""
    import torch

    from conftest import process_state, state_changes

    cfg = torch._dynamo.config
    before = process_state()
    delattr(cfg, "error_on_recompile")
    try:
        changed = state_changes(before, process_state())
    finally:
        cfg.error_on_recompile = before["dynamo"]["error_on_recompile"]
    assert changed == {"dynamo.error_on_recompile": (before["dynamo"]["error_on_recompile"], "<deleted>")}
