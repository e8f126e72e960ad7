"""Properties of the loader, the resampler and the streamed featuriser over random rates, lengths, channel
counts, sample formats and block sizes (hypothesis). tests/test_audio.py holds the hand-checked cases;
these add what it does not sweep: any pair of rates, every libsndfile sample format, non-finite samples
inside files, block boundaries anywhere, and the streamed long-form features against the one-shot ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import whisperfast.audio as audio
from whisperfast.audio import N_SAMPLES, SAMPLE_RATE, load_audio, open_audio
from whisperfast.resample import _design, _kernel, resample
from whisperfast.errors import AudioError
from whisperfast.features import _MelStream, long_form_features, long_form_features_from_file

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RATES = st.integers(1000, 192000)


def encoded(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def frame_levels(x: np.ndarray) -> torch.Tensor:
    """The documented level: 10 log10(mean square) of each 10 ms frame, the last one zero-padded."""
    t = torch.from_numpy(np.pad(x, (0, -len(x) % 160)).astype(np.float32)).view(-1, 160)
    return 10 * torch.log10(t.square().mean(dim=-1).clamp(min=1e-20))


# ---- resampler ----------------------------------------------------------------------------------------
@settings(max_examples=15, **SETTINGS)
@given(orig=RATES, new=RATES, n=st.integers(0, 3000), scale=st.sampled_from([1.0, 1e-3, 4.0]))
def test_resample_any_pair_of_rates(orig, new, n, scale):
    """Any orig -> any new rate (test_audio fixes the target rate): length ceil(n new / orig), finite, and
    at most the input's peak times the kernel's gain on the worst sign pattern, max_u sum_j |h(u - j)|."""
    x = (np.random.default_rng(n).uniform(-1, 1, n) * scale).astype(np.float32)
    y = resample(x, orig, new)
    assert y.dtype == np.float32 and len(y) == -(-n * new // orig)
    assert np.isfinite(y).all()
    d = _design(orig, new)
    taps = np.linspace(0, 1, 65)[:, None] - np.arange(-d.jh - 1, d.jh + 2)[None, :]  # [phases, taps]
    gain = np.abs(_kernel(taps, d.fc, d.half, d.beta)).sum(axis=1).max()
    assert n == 0 or np.abs(y).max() <= gain * np.abs(x).max() * 1.001 + 1e-6


@settings(max_examples=10, **SETTINGS)
@given(orig=st.sampled_from([8000, 11025, 22050, 44100, 48000, 96000, 44101]), n=st.integers(1, 40000),
       block=st.integers(1, 5000))
def test_decoding_in_blocks_of_any_size_equals_one_shot(monkeypatch, orig, n, block):
    """load_audio decodes and resamples a file `_BLOCK` frames at a time: any block size gives the
    one-shot resampling of the whole signal."""
    x = np.random.default_rng(n).uniform(-0.5, 0.5, (n, 2)).astype(np.float32)
    data = encoded(x, orig, subtype="FLOAT")
    monkeypatch.setattr(audio, "_BLOCK", block)
    y = load_audio(data)
    np.testing.assert_allclose(y, resample(x.mean(axis=1), orig, SAMPLE_RATE), atol=2e-6)


# ---- loader -------------------------------------------------------------------------------------------
FORMATS = [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
           ("WAV", "DOUBLE"), ("WAV", "ULAW"), ("WAV", "ALAW"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
           ("OGG", "VORBIS"), ("AIFF", "PCM_16")]


@settings(max_examples=25, **SETTINGS)
@given(fmt=st.sampled_from(FORMATS), sr=st.integers(1000, 96000), n=st.integers(0, 4000),
       channels=st.integers(1, 8))
def test_every_sample_format_any_rate_length_and_channels(fmt, sr, n, channels):
    """Output length ceil(n * 16000 / sr) (exact for PCM formats), values finite (and below 2: resampled
    noise overshoots its peak of 0.9 a little); zero frames raise AudioError saying so."""
    container, subtype = fmt
    if container in ("FLAC", "OGG") and sr > 65535 or container == "OGG" and (sr < 8000 or channels > 2):
        sr, channels = min(max(sr, 8000), 48000), min(channels, 2)  # libsndfile's limits for these
    x = np.random.default_rng(n).uniform(-0.9, 0.9, (n, channels)).astype(np.float32)
    try:
        data = encoded(x, sr, container, subtype)
    except (sf.LibsndfileError, RuntimeError):  # a combination libsndfile cannot write: nothing to read
        return
    if n == 0 and container != "OGG":
        with pytest.raises(AudioError, match="zero length|empty"):  # a FLAC of no frames may be 0 bytes
            load_audio(data)
        return
    try:
        y = load_audio(data)
    except AudioError as e:
        assert container == "OGG" and n == 0, e  # an empty Vorbis stream: libsndfile may not open it
        return
    assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    if container != "OGG":  # Vorbis pads/trims to its frames; PCM is exact
        assert len(y) == -(-n * SAMPLE_RATE // sr)
    assert np.abs(y).max() < 2.0


@settings(max_examples=15, **SETTINGS)
@given(sr=st.sampled_from([8000, 16000, 44100]), n=st.integers(1, 3000), channels=st.integers(1, 8),
       bad=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from([np.nan, np.inf, -np.inf])), min_size=1,
                    max_size=5))
def test_nonfinite_samples_in_files_come_out_finite(sr, n, channels, bad):
    x = np.random.default_rng(n).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)
    for i, v in bad:
        x[i % n, i % channels] = v
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        y = load_audio(encoded(x, sr, subtype="FLOAT"))
    assert np.isfinite(y).all() and len(y) == -(-n * SAMPLE_RATE // sr)


@settings(max_examples=20, **SETTINGS)
@given(dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.float16, np.float32, np.float64]),
       n=st.integers(1, 3000), channels=st.integers(1, 8), layout=st.sampled_from(["samples_first", "channels_first"]))
def test_arrays_of_any_dtype_and_layout(dtype, n, channels, layout):
    """Arrays are at 16 kHz already: n samples out, finite, ints within [-1, 1)."""
    rng = np.random.default_rng(n)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (n, channels), dtype=dtype, endpoint=True)
    else:
        x = rng.uniform(-1, 1, (n, channels)).astype(dtype)
    if layout == "channels_first":
        x = x.T
    if x.ndim == 2 and min(x.shape) > 8 or (n > 8 and channels > 8):
        return
    y = load_audio(x[0] if channels == 1 and layout == "channels_first" else x)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    if n > 8 or channels == 1:  # both axes <= 8: the shorter one is taken as channels (documented)
        assert len(y) == n
    if np.issubdtype(dtype, np.integer):
        assert np.abs(y).max() <= 1.0


# ---- streamed long-form features ---------------------------------------------------------------------
@settings(max_examples=10, **SETTINGS)
@given(sr=st.sampled_from([8000, 16000, 22050, 44100, 48000]), n=st.integers(0, 30000),
       channels=st.integers(1, 3), block_frames=st.integers(250, 3000), decode_block=st.integers(100, 50000))
def test_streamed_features_equal_load_then_featurise(monkeypatch, sr, n, channels, block_frames, decode_block):
    """long_form_features_from_file = long_form_features(load_audio(...)) for any length, rate and block
    sizes; the mel is [80, (n16 + 480000) // 160] and finite; the levels are the documented ones."""
    monkeypatch.setattr(audio, "_BLOCK", decode_block)
    x = np.random.default_rng(n).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)
    data = encoded(x, sr)
    f = long_form_features_from_file(data, 80, block_frames=block_frames)
    n16 = -(-n * SAMPLE_RATE // sr)
    assert f.n_samples == n16 and f.mel.shape == (80, (n16 + N_SAMPLES) // 160)
    assert torch.isfinite(f.mel).all() and f.level.shape == (-(-n16 // 160),)
    if n == 0:
        assert (f.mel == -1.5).all()  # 30 s of zeros: log10(1e-10) clamped and scaled
        return
    a = load_audio(data)
    torch.testing.assert_close(f.mel, long_form_features(a, 80), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.level, frame_levels(a))


@settings(max_examples=8, **SETTINGS)
@given(n=st.integers(0, 60000), pushes=st.lists(st.integers(1, 20000), min_size=1, max_size=8),
       block_frames=st.sampled_from([257, 997, 3000]))
def test_mel_stream_pushed_in_any_pieces(n, pushes, block_frames):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    s, i, k = _MelStream(80, torch.device("cpu"), expected=0, block_frames=block_frames), 0, 0
    while i < n:
        step = pushes[k % len(pushes)]
        s.push(torch.from_numpy(x[i: i + step]))
        i, k = i + step, k + 1
    f = s.finish()
    ref = long_form_features(x, 80) if n else torch.full((80, N_SAMPLES // 160), -1.5)
    torch.testing.assert_close(f.mel, ref, atol=1e-5, rtol=0)  # expected=0: the mel grew as frames came
    assert len(f.level) == -(-n // 160)


def test_open_audio_blocks_concatenate_to_load_audio(tmp_path):
    """The public streaming reader: blocks are bounded and their concatenation is load_audio's output."""
    x = np.random.default_rng(7).uniform(-0.5, 0.5, (700_000, 2)).astype(np.float32)  # 15.9 s at 44.1 kHz
    p = tmp_path / "long.flac"
    sf.write(p, x, 44100)
    opened = open_audio(p)
    blocks = list(opened.blocks)
    assert opened.name == str(p) and opened.expected == -(-700_000 * SAMPLE_RATE // 44100)
    assert len(blocks) >= 3 and max(map(len, blocks)) <= audio._BLOCK * SAMPLE_RATE // 44100 + 1
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(p))
