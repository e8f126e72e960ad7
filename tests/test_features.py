"""whisperfast.features: mel filters and log-mel against transformers / openai-whisper, and hand-computed cases."""

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from whisperfast.audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, load_audio
from whisperfast.features import (_log_power_mel, _MelStream, first_silent_frame, log_mel_spectrogram,
                                  long_form_features, mel_filters, pad_features, short_form_features,
                                  silent_column)

DATA = Path(__file__).parent / "data"
CLIPS = [r["file"] for r in csv.DictReader((DATA / "MANIFEST.tsv").read_text().splitlines(), delimiter="\t")]


@lru_cache(maxsize=None)
def clip(name: str) -> np.ndarray:
    return load_audio(DATA / name)


@lru_cache(maxsize=None)
def extractor(n_mels: int):
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=n_mels)


# ---- mel filterbank ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_transformers(n_mels):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ref = audio_utils.mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0,
                                      max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, 201) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref.T, rtol=0, atol=1e-7)  # measured 9e-10 (80), 2e-9 (128)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_librosa(n_mels):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels, htk=False, norm="slaney")
    np.testing.assert_allclose(mel_filters(n_mels).numpy(), ref, rtol=0, atol=1e-7)  # as transformers': float32 ulps


def test_mel_filters_hand_checks_and_cache():
    f = mel_filters(80)
    assert f is mel_filters(80, device="cpu")  # cached per (n_mels, device)
    assert (f >= 0).all() and (f[:, 0] == 0).all()  # no weight on DC: the first triangle starts at 0 Hz
    hz = torch.linspace(0, 8000, 201)
    centres = (f * hz).sum(1) / f.sum(1)
    assert (centres.diff() > 0).all()  # triangles ordered by frequency
    with pytest.raises(ValueError):
        mel_filters(0)


# ---- log-mel: hand-computed ---------------------------------------------------------------------------
def test_silence_is_constant_minus_1_5():
    mel = log_mel_spectrogram(np.zeros(16000, np.float32))
    assert mel.shape == (80, 100)
    assert torch.all(mel == (-10.0 + 4.0) / 4.0)  # log10(1e-10) = -10 everywhere; the clamp changes nothing


def test_shapes_and_padding():
    x = np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.1
    assert log_mel_spectrogram(x, 128).shape == (128, 12345 // 160)
    padded = log_mel_spectrogram(x, padding=1000)
    torch.testing.assert_close(padded, log_mel_spectrogram(np.concatenate([x, np.zeros(1000, np.float32)])))
    assert log_mel_spectrogram(torch.from_numpy(x).double()).dtype == torch.float32
    assert log_mel_spectrogram(x[:201]).shape == (80, 1)
    with pytest.raises(ValueError, match="too short"):
        log_mel_spectrogram(x[:200])


def test_tone_lands_in_its_mel_band_and_clamp_is_8_below_max():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    mel = log_mel_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32))  # [80, 100]
    centres = (mel_filters(80) * torch.linspace(0, 8000, 201)).sum(1) / mel_filters(80).sum(1)
    band = int(mel[:, 50].argmax())
    assert abs(centres[band] - 1000) < 40
    assert torch.isclose(mel.min(), mel.max() - 2.0)  # max(x, max - 8) then /4: the range is exactly 2


def test_batch_clamps_each_item_on_its_own():
    rng = np.random.default_rng(1)
    loud, quiet = rng.standard_normal(8000).astype(np.float32), rng.standard_normal(8000).astype(np.float32) * 1e-4
    batch = log_mel_spectrogram(np.stack([loud, quiet]))
    assert batch.shape == (2, 80, 50)
    torch.testing.assert_close(batch[0], log_mel_spectrogram(loud), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], log_mel_spectrogram(quiet), atol=1e-5, rtol=0)


def test_pad_features_pads_with_zero_in_the_mel_domain():
    mel = torch.full((80, 1234), -1.5)
    out = pad_features(mel)
    assert out.shape == (80, N_FRAMES) and torch.all(out[:, 1234:] == 0.0) and torch.all(out[:, :1234] == -1.5)
    assert pad_features(torch.ones(2, 80, 4000)).shape == (2, 80, N_FRAMES)


# ---- short-form (a) against transformers -----------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("name", CLIPS)
def test_short_form_matches_whisper_feature_extractor(name, n_mels):
    audio = clip(name)[:N_SAMPLES]
    ref = extractor(n_mels)(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    ours = short_form_features([audio], n_mels)
    assert ours.shape == (1, n_mels, N_FRAMES)
    assert (ours - ref).abs().max() <= 1e-4  # measured 0.0 (bit-identical) on every clip, 80 and 128


def test_short_form_batch_of_mixed_lengths_and_layouts():
    a, b = clip("LDC93S1.wav"), clip("multilingual.mp3")  # 2.9 s and 59.9 s (trimmed to 30 s)
    batch = short_form_features([a, torch.from_numpy(b)], 80)
    ref = extractor(80)([a, b], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    assert batch.shape == (2, 80, N_FRAMES) and (batch - ref).abs().max() <= 1e-4
    torch.testing.assert_close(short_form_features(a, 80), batch[:1])
    stacked = np.stack([a, a[::-1].copy()])
    torch.testing.assert_close(short_form_features(stacked, 80)[0], batch[0])


# ---- long-form (b) -----------------------------------------------------------------------------------
def test_long_form_blockwise_equals_one_shot_on_three_minutes():
    x = np.concatenate([clip("multilingual.mp3"), clip("sonnet001.mp3"), clip("jfk.flac"), clip("ru.wav"),
                        clip("multilingual.mp3")])[: 180 * SAMPLE_RATE]
    one_shot = log_mel_spectrogram(x, 80, padding=N_SAMPLES)
    blocks = long_form_features(x, 80)
    assert blocks.shape == one_shot.shape == (80, (len(x) + N_SAMPLES) // 160)
    assert (blocks - one_shot).abs().max() <= 1e-5  # measured 0.0


@pytest.mark.parametrize("n_mels", [80, 128])
def test_silent_frames_are_filled_with_what_computing_them_gives(n_mels):
    """Frames that read only the 30 s of padding are not computed but filled with `silent_column`: exactly the
    values the STFT + mel + log10 of those zero frames give (one shot, torch.stft over the whole padded clip,
    before normalising), and the first silent frame is the first frame with no audio sample in its window."""
    x = np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE + 77).astype(np.float32)
    z = torch.nn.functional.pad(torch.from_numpy(x), (0, N_SAMPLES))
    stft = torch.stft(z, 400, 160, window=torch.hann_window(400), return_complex=True)[:, :-1]
    raw = _log_power_mel(stft, n_mels)                                         # [n_mels, frames], not normalised
    f0 = first_silent_frame(len(x))
    assert f0 == -(-(len(x) + 200) // 160)
    assert (raw[:, f0:] == silent_column(n_mels, "cpu")).all()               # bit for bit
    assert not (raw[:, f0 - 1] == silent_column(n_mels, "cpu")[:, 0]).all()  # the frame before hears the clip
    stream = _MelStream(n_mels, torch.device("cpu"), expected=len(x), block_frames=N_FRAMES)
    stream.push(torch.from_numpy(x))
    streamed = stream.finish().mel
    assert (streamed[:, f0:] == streamed[:, -1:]).all()
    torch.testing.assert_close(streamed, log_mel_spectrogram(x, n_mels, padding=N_SAMPLES), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 199, 201, 16000])
def test_long_form_edges_with_small_blocks(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    one_shot = log_mel_spectrogram(x, 80, padding=N_SAMPLES)
    for block in (997, N_FRAMES):
        torch.testing.assert_close(long_form_features(x, 80, block_frames=block), one_shot, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 5, 150, 250, 1000])
def test_reflect_padded_segments_equal_numpy_reflect_pad(n):
    from whisperfast.features import _reflect_padded
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    total = n + 300  # x then zeros, as long_form_features pads
    ref = np.pad(np.concatenate([x, np.zeros(300, np.float32)]), 200, mode="reflect")  # torch.stft(center=True)
    for a, b in [(0, 1), (0, 400), (150, 260), (199, 201), (0, len(ref)), *rng.integers(0, len(ref), (20, 2))]:
        a, b = sorted((int(a), int(b)))
        np.testing.assert_array_equal(_reflect_padded(torch.from_numpy(x), total, a, b).numpy(), ref[a:b])


def test_long_form_clamps_over_the_whole_file_not_per_window():
    quiet_then_loud = np.concatenate([np.full(N_SAMPLES, 1e-3, np.float32),
                                      np.random.default_rng(2).standard_normal(N_SAMPLES).astype(np.float32)])
    mel = long_form_features(quiet_then_loud, 80)
    first_window_alone = short_form_features(quiet_then_loud[:N_SAMPLES], 80)[0]
    assert torch.isclose(mel.min(), mel.max() - 2.0)  # one clamp for the file
    assert not torch.allclose(mel[:, :N_FRAMES], first_window_alone)  # (a) and (b) differ, as REFERENCE.md says


# ---- openai-whisper, when installed ------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_openai_whisper(n_mels):
    whisper = pytest.importorskip("whisper")
    audio = clip("jfk.flac")
    ref = whisper.log_mel_spectrogram(torch.from_numpy(audio), n_mels, padding=N_SAMPLES)
    ours = log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)
    assert (ours - ref).abs().max() <= 1e-4  # log10 of float32 STFT power of two codes: measured 1.2e-7
    assert (long_form_features(audio, n_mels) - ref).abs().max() <= 1e-4  # measured 1.2e-7 on every clip
    short_ref = whisper.log_mel_spectrogram(torch.from_numpy(whisper.pad_or_trim(audio)), n_mels)
    assert (short_form_features(audio, n_mels)[0] - short_ref).abs().max() <= 1e-4
