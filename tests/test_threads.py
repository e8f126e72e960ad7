"""`threads` of load_model / transcribe / `--threads`: the default, checks, and that a model's thread count
holds during its calls and never outlives them (torch's thread count is process-wide)."""

from __future__ import annotations

import os

import pytest
import torch

import whisperfast
from conftest import clip
from whisperfast.api import default_threads, resolve_threads


def test_default_is_omp_num_threads_else_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))
    assert resolve_threads(None) == resolve_threads(0) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == resolve_threads(None) == 3
    assert resolve_threads(5) == 5


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_thread_counts_are_option_errors(bad):
    with pytest.raises(whisperfast.OptionError, match="threads="):
        resolve_threads(bad)


def counting(model) -> tuple[list[int], object]:
    """Thread counts seen at each encoder call of `model` (a public forward hook, removed by the caller)."""
    seen: list[int] = []
    return seen, model.model.encoder.register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))


def test_a_models_threads_hold_during_its_calls_and_are_restored(tiny_en_dir):
    caller = torch.get_num_threads()
    model = whisperfast.load_model(tiny_en_dir, device="cpu", threads=caller + 1)
    assert model.threads == caller + 1 and torch.get_num_threads() == caller
    seen, hook = counting(model)
    try:
        model.decode(clip("jfk.flac"), without_timestamps=True)
        assert torch.get_num_threads() == caller
        text = model.transcribe(clip("jfk.flac")).text
        assert torch.get_num_threads() == caller
        model.transcribe(clip("jfk.flac"), threads=caller + 2)  # a per-call override
        streamed = []
        for seg in model.transcribe(clip("jfk.flac"), stream=True):  # the caller's count at every yield
            assert torch.get_num_threads() == caller
            streamed.append(seg.text)
    finally:
        hook.remove()
    assert seen == [caller + 1, caller + 1, caller + 2, caller + 1]
    assert "".join(streamed) == text  # same result whatever the thread count (greedy, short clip)
    with pytest.raises(whisperfast.OptionError, match="threads="):
        model.transcribe(clip("jfk.flac"), threads=-2)
    with pytest.raises(whisperfast.OptionError, match="threads="):
        whisperfast.load_model(tiny_en_dir, device="cpu", threads=-1)
