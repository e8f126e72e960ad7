"""The repetition guard stops a window that loops one n-gram, long before the 224-token cap; it only
cuts: the guarded tokens are a prefix of the unguarded ones. Off by default (openai-whisper parity)."""

from __future__ import annotations

import numpy as np
import pytest

from whisperfast.decode.engine import looping
from whisperfast.errors import OptionError

from conftest import clip


def test_looping_detector():
    assert looping([1, 2, 3] * 10, 24) and looping([5] * 30, 24)
    assert not looping(list(range(40)), 24) and not looping([1, 2] * 5, 24)
    assert looping([9, 8, 7, 6, 5] + [1, 2, 3, 4] * 8, 24)


def test_guard_cuts_a_looping_window(tiny_en):
    from whisperfast.audio import load_audio

    a = load_audio(clip("jfk.flac"))
    x = np.tile(a[5 * 16000: int(6.5 * 16000)], 30)[: 30 * 16000]  # one phrase, 20 times
    free = tiny_en.decode(x, without_timestamps=True)
    guarded = tiny_en.decode(x, without_timestamps=True, repetition_guard=24)
    assert len(free.tokens) == 224 and looping(free.tokens, 24)  # the loop runs to the cap
    assert 24 <= len(guarded.tokens) <= 24 + 8
    assert free.tokens[: len(guarded.tokens)] == guarded.tokens
    normal = tiny_en.decode(clip("jfk.flac"), repetition_guard=24)
    assert normal.tokens == tiny_en.decode(clip("jfk.flac")).tokens


def test_guard_option_is_checked(tiny_en):
    with pytest.raises(OptionError, match="repetition_guard"):
        tiny_en.decode(clip("jfk.flac"), repetition_guard=3)
