"""Log-mel features exactly as Whisper computes them, with the mel filterbank computed in code.

Contract: `log_mel_spectrogram` = openai-whisper's (STFT n_fft 400, hop 160, periodic Hann, centred with reflect
padding, last frame dropped, power -> Slaney mel -> log10 -> max(x, max - 8) -> (x + 4) / 4).
Two window conventions (REFERENCE.md "Audio features"):
  short_form_features: pad/trim the *audio* to 30 s, then log-mel; the clamp is per 30 s window
      (= transformers' WhisperFeatureExtractor, openai-whisper's decode()).
  long_form_features: log-mel of the whole file + 30 s of zero audio, clamp over the whole file, computed
      in 30 s blocks so the working memory is bounded (= openai-whisper's transcribe()).
  long_form_features_from_file: the same from a file (or any load_audio source) decoded, resampled and
      featurised block by block: memory is the mel (32 KB per second of audio) + O(block), never the samples.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from whisperfast.audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE, AudioSource, open_audio, pad_or_trim

Audio = Union[np.ndarray, Tensor]
_LOG_FLOOR = 1e-10


# ---- Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above ----------------------
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


@lru_cache(maxsize=None)
def _mel_filters(n_mels: int, device: str) -> Tensor:
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)  # [201] bin centres, Hz
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))  # [n_mels+2] Hz
    fdiff = np.diff(mel_f)  # [n_mels+1]
    ramps = mel_f[:, None] - fft_freqs[None, :]  # [n_mels+2, 201]
    lower = -ramps[:-2] / fdiff[:-1, None]  # rising edge of triangle i
    upper = ramps[2:] / fdiff[1:, None]  # falling edge of triangle i
    weights = np.maximum(0.0, np.minimum(lower, upper))  # [n_mels, 201]
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # Slaney norm: each triangle has unit area
    return torch.from_numpy(weights.astype(np.float32)).to(device)


def mel_filters(n_mels: int, *, device: str | torch.device | None = None) -> Tensor:
    """Slaney mel filterbank of librosa.filters.mel(sr=16000, n_fft=400, n_mels, htk=False, norm="slaney")
    -> float32 [n_mels, 201]. Cached per (n_mels, device): treat the result as read-only."""
    if not isinstance(n_mels, int) or n_mels <= 0:
        raise ValueError(f"n_mels must be a positive int (80 or 128 for Whisper), got {n_mels!r}")
    return _mel_filters(n_mels, str(torch.device(device or "cpu")))


@lru_cache(maxsize=None)
def _hann(device: str) -> Tensor:
    return torch.hann_window(N_FFT, device=device)  # periodic, as torch.stft and openai-whisper use


def _as_tensor(audio: Audio, device: str | torch.device | None) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(audio)) if isinstance(audio, np.ndarray) else audio
    return x.to(device=device or x.device, dtype=torch.float32)


def _log_power_mel(frames_spec: Tensor, n_mels: int) -> Tensor:
    """Complex STFT [..., 201, T] -> log10 mel power [..., n_mels, T] (floored at 1e-10, not yet clamped)."""
    magnitudes = frames_spec.abs() ** 2
    mel = mel_filters(n_mels, device=frames_spec.device) @ magnitudes
    return torch.clamp(mel, min=_LOG_FLOOR).log10()


def _normalise_(log_spec: Tensor, max_val: Tensor) -> Tensor:
    """In place: max(x, max_val - 8), then (x + 4) / 4."""
    return torch.maximum(log_spec, max_val - 8.0, out=log_spec).add_(4.0).div_(4.0)  # no full-size temporary


def log_mel_spectrogram(audio: Audio, n_mels: int = 80, *, padding: int = 0,
                        device: str | torch.device | None = None) -> Tensor:
    """openai-whisper's log-mel: audio [n] or [B, n] at 16 kHz (+ `padding` zero samples appended)
    -> float32 [n_mels, (n + padding) // 160] or [B, n_mels, ...]; the max - 8 clamp is per item."""
    x = _as_tensor(audio, device)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be [samples] or [batch, samples], got shape {tuple(x.shape)}")
    if x.shape[-1] + padding <= N_FFT // 2:
        raise ValueError(f"audio of {x.shape[-1]} samples (+ {padding} padding) is too short for the centred "
                         f"STFT: it needs more than {N_FFT // 2}; pad it (short_form_features does)")
    if padding > 0:
        x = torch.nn.functional.pad(x, (0, padding))
    stft = torch.stft(x, N_FFT, HOP_LENGTH, window=_hann(str(x.device)), return_complex=True)  # [..., 201, n//160+1]
    log_spec = _log_power_mel(stft[..., :-1], n_mels)  # [..., n_mels, n//160]
    return _normalise_(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True))


def pad_features(mel: Tensor, n_frames: int = N_FRAMES) -> Tensor:
    """Zero-pad (0.0 in the mel domain) or trim mel [..., n_mels, T] to [..., n_mels, n_frames]."""
    return pad_or_trim(mel, n_frames, axis=-1)


def short_form_features(audio_or_batch: Audio | Sequence[Audio], n_mels: int = 80, *,
                        device: str | torch.device | None = None) -> Tensor:
    """Convention (a): each clip's audio zero-padded or trimmed to 30 s, then log-mel with the clamp per
    window -> float32 [B, n_mels, 3000]. Takes one clip [n], a batch [B, n], or a list of clips of any length.
    Equals WhisperFeatureExtractor(feature_size=n_mels)(audio, sampling_rate=16000).input_features."""
    if isinstance(audio_or_batch, (list, tuple)):
        batch = torch.stack([pad_or_trim(_as_tensor(a, device).reshape(-1), N_SAMPLES) for a in audio_or_batch])
    else:
        x = _as_tensor(audio_or_batch, device)
        batch = pad_or_trim(x.reshape(1, -1) if x.ndim == 1 else x, N_SAMPLES)  # [B, 480000]
    return log_mel_spectrogram(batch, n_mels, device=device)  # [B, n_mels, 3000]


def long_form_features(audio: Audio, n_mels: int = 80, *, device: str | torch.device | None = None,
                       block_frames: int = N_FRAMES) -> Tensor:
    """Convention (b): log-mel of audio [n] + 30 s of zeros, clamped over the whole file
    -> float32 [n_mels, (n + 480000) // 160]. Equals log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)
    (to float rounding) but computes the STFT `block_frames` frames at a time: the extra memory is O(block)."""
    x = _as_tensor(audio, device)
    if x.ndim != 1:
        raise ValueError(f"long_form_features takes one clip [samples], got shape {tuple(x.shape)}")
    total = len(x) + N_SAMPLES  # length of the zero-padded signal z
    n_frames = total // HOP_LENGTH  # frames kept after dropping the last STFT frame
    out = torch.empty(n_mels, n_frames, device=x.device)  # [n_mels, frames]
    silent = min(n_frames, first_silent_frame(len(x)))
    out[:, silent:] = silent_column(n_mels, x.device)
    for f0 in range(0, silent, block_frames):
        f1 = min(silent, f0 + block_frames)
        seg = _reflect_padded(x, total, f0 * HOP_LENGTH, (f1 - 1) * HOP_LENGTH + N_FFT)  # [(f1-f0-1)*160 + 400]
        stft = torch.stft(seg, N_FFT, HOP_LENGTH, window=_hann(str(x.device)), center=False,
                          return_complex=True)  # [201, f1 - f0]
        out[:, f0:f1] = _log_power_mel(stft, n_mels)
    return _normalise_(out, out.max())


def first_silent_frame(n: int) -> int:
    """The first frame of the centred STFT of z = audio [n] + 30 s of zeros whose 400 samples are all padding
    (z[f*160 - 200, f*160 + 200) with f*160 - 200 >= n; the reflected end of z is zeros too): it and every later
    frame are `silent_column`. A short file's mel is mostly such frames (jfk.flac: 1900 of its 3100)."""
    return -(-(n + N_FFT // 2) // HOP_LENGTH)


@lru_cache(maxsize=None)
def _silent_column(n_mels: int, device: str) -> Tensor:
    zeros = torch.zeros(N_FFT // 2 + 1, 64, dtype=torch.complex64, device=device)  # the STFT of zeros is exact
    return _log_power_mel(zeros, n_mels)[:, :1].clone()


def silent_column(n_mels: int, device: str | torch.device) -> Tensor:
    """The log-mel [n_mels, 1] (before normalising) of an all-zero frame, computed as every frame is (the same
    kernels on a block of zeros): equal, bit for bit, to the frames it stands for (tests/test_features.py)."""
    return _silent_column(n_mels, str(torch.device(device)))


def _reflect_padded(x: Tensor, total: int, a: int, b: int) -> Tensor:
    """Samples [a, b) of torch.stft's centred input: z = x + zeros up to `total`, reflect-padded by n_fft/2."""
    pad, n = N_FFT // 2, len(x)
    if a >= pad and b - pad <= n:  # interior: a plain slice of x
        return x[a - pad: b - pad]
    j = torch.arange(a, b, device=x.device) - pad  # index into z
    j = torch.where(j < 0, -j, j)
    j = torch.where(j >= total, 2 * (total - 1) - j, j)
    inside = j < n
    return torch.where(inside, x[j.clamp(max=max(n - 1, 0))] if n else 0.0, 0.0)


# ---- long-form features straight from a file, in bounded memory --------------------------------------
class FileFeatures(NamedTuple):
    mel: Tensor  # [n_mels, (n + 480000) // 160]: long_form_features(load_audio(source), n_mels)
    level: Tensor  # [ceil(n / 160)] dBFS of each 10 ms frame: 10 log10(mean square), floored at -200
    n_samples: int  # n, the audio's length at 16 kHz


def long_form_features_from_file(source: AudioSource, n_mels: int = 80, *, device: str | torch.device | None = None,
                                 block_frames: int = N_FRAMES) -> FileFeatures:
    """`long_form_features(load_audio(source))` and the per-frame levels, without holding the audio:
    the file is decoded, resampled and featurised in blocks, so memory is the mel (32 KB per second of
    audio at 80 mels) plus O(block). Zero-length audio gives the mel of 30 s of zeros (no content frames)
    rather than an error. Errors raise AudioError like load_audio."""
    opened = open_audio(source)
    mel = _MelStream(n_mels, torch.device(device or "cpu"), opened.expected, block_frames)
    for x in opened.blocks:
        mel.push(torch.from_numpy(x))
    return mel.finish()


class _MelStream:
    """Frames of the centred STFT of z = audio + 30 s of zeros, computed block_frames at a time as their
    samples arrive. Everything it keeps is allocated once (work buffer, mel, levels), so a long stream does
    not fragment the heap: its memory is the mel + O(block) whatever the length."""

    def __init__(self, n_mels: int, device: torch.device, expected: int, block_frames: int):
        self.n_mels, self.device, self.block = n_mels, device, block_frames
        self.out = torch.empty(n_mels, (expected + N_SAMPLES) // HOP_LENGTH, device=device)  # grown if short
        self.level = torch.empty(-(-expected // HOP_LENGTH))  # grown if short
        self.work = torch.empty((block_frames - 1) * HOP_LENGTH + N_FFT, device=device)  # one block's samples
        self.fill = N_FFT // 2  # work[:200] is kept for the reflected start, z[200..1]
        self.tail = torch.zeros(HOP_LENGTH)  # audio of a 10 ms level frame not yet complete
        self.f = self.n = self.n_levels = self.n_tail = 0  # next frame; samples in; levels out; in tail
        self.stop: int | None = None  # frame count, once known (finish)

    def push(self, x: Tensor) -> None:  # [n] audio samples at 16 kHz
        self.n += len(x)
        self._levels(x)
        self._feed(x)

    def finish(self) -> FileFeatures:
        total = self.n + N_SAMPLES  # len(z); z ends in >= 480000 zeros, so its reflected end is zeros too
        self.stop = total // HOP_LENGTH  # the centred STFT's last frame is dropped
        if self.n_tail:
            self.tail[self.n_tail:] = 0
            self._put_levels(_dbfs(self.tail.square().mean())[None])
        silent = min(self.stop, first_silent_frame(self.n))  # frames from here on read only zeros
        self._feed(torch.zeros(max(0, (silent - 1) * HOP_LENGTH + N_FFT // 2 - self.n)))  # up to the last heard frame
        while self.f < silent:  # the samples fed end with frame silent - 1: _frames stops there
            self._frames()
        self._put(silent_column(self.n_mels, self.device).expand(-1, self.stop - self.f))
        if self.out.shape[1] > self.stop * 1.01:  # libsndfile over-counted by more than 1%: give it back
            self.out = self.out[:, :self.stop].clone()
        mel = self.out[:, :self.stop]  # a view; contiguous unless out is (a little) longer
        peak = mel.max()
        for a in range(0, self.stop, self.block):  # in place, block by block: no full-size temporary
            _normalise_(mel[:, a: a + self.block], peak)
        return FileFeatures(mel, self.level[:self.n_levels], self.n)

    def _feed(self, x: Tensor) -> None:
        i = 0
        while i < len(x):
            take = min(len(x) - i, len(self.work) - self.fill)
            self.work[self.fill: self.fill + take] = x[i: i + take]
            self.fill, i = self.fill + take, i + take
            if self.fill == len(self.work):
                self._frames()

    def _frames(self) -> None:
        """The frames whose 400 samples are in work (at most a block, none past `stop`); keep the overlap."""
        if self.f == 0:  # z[1..200], reflected, goes first (work holds z[0..] from index 200)
            self.work[: N_FFT // 2] = self.work[N_FFT // 2 + 1: N_FFT + 1].flip(0)
        k = (self.fill - N_FFT) // HOP_LENGTH + 1 if self.fill >= N_FFT else 0
        k = min(k, self.block, (self.stop if self.stop is not None else k + self.f) - self.f)
        if k <= 0:
            return
        seg = self.work[: (k - 1) * HOP_LENGTH + N_FFT]  # [(k-1)*160 + 400]
        stft = torch.stft(seg, N_FFT, HOP_LENGTH, window=_hann(str(self.device)), center=False,
                          return_complex=True)  # [201, k]
        self._put(_log_power_mel(stft, self.n_mels))
        rest = self.work[k * HOP_LENGTH: self.fill].clone()  # <= 240 samples overlap the next frame
        self.work[: len(rest)] = rest
        self.fill = len(rest)

    def _put(self, mel: Tensor) -> None:  # [n_mels, k] -> frames f .. f + k
        f1 = self.f + mel.shape[1]
        if f1 > self.out.shape[1]:  # libsndfile under-counted the frames (some MP3s): grow by half
            self.out = _grown(self.out, f1)
        self.out[:, self.f: f1] = mel
        self.f = f1

    def _levels(self, x: Tensor) -> None:
        """10 ms frame levels: 10 log10(mean square) of each complete 160 samples of the audio."""
        if self.n_tail:  # complete the frame begun by the last push
            take = min(len(x), HOP_LENGTH - self.n_tail)
            self.tail[self.n_tail: self.n_tail + take] = x[:take]
            self.n_tail, x = self.n_tail + take, x[take:]
            if self.n_tail < HOP_LENGTH:
                return
            self._put_levels(_dbfs(self.tail.square().mean())[None])
            self.n_tail = 0
        whole = len(x) // HOP_LENGTH * HOP_LENGTH
        frames = x[:whole].view(-1, HOP_LENGTH)  # [frames, 160]
        self._put_levels(_dbfs(frames.square().mean(dim=-1)))
        self.n_tail = len(x) - whole
        self.tail[: self.n_tail] = x[whole:]

    def _put_levels(self, lv: Tensor) -> None:
        end = self.n_levels + len(lv)
        if end > len(self.level):
            self.level = _grown(self.level[None], end)[0]
        self.level[self.n_levels: end] = lv
        self.n_levels = end


def _grown(t: Tensor, size: int) -> Tensor:
    """t [..., n] with its last dimension grown to at least `size` (by half at least): a copy."""
    extra = torch.empty(*t.shape[:-1], max(size, t.shape[-1] * 3 // 2) - t.shape[-1], dtype=t.dtype, device=t.device)
    return torch.cat([t, extra], dim=-1)


def frame_levels(audio: np.ndarray) -> torch.Tensor:  # [n] samples -> [ceil(n / 160)] dBFS
    """Level of each 10 ms frame (one mel frame): 10 log10(mean square), full scale = 1.0; -200 for zeros.
    A reduction over a view of the samples: no copy of the audio (a 20-minute file is 77 MB)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    n = len(x) // HOP_LENGTH * HOP_LENGTH
    power = torch.linalg.vector_norm(x[:n].view(-1, HOP_LENGTH), dim=-1).square() / HOP_LENGTH  # [n // 160]
    if n < len(x):  # the last, partial frame, zero-padded
        power = torch.cat([power, x[n:].square().sum().reshape(1) / HOP_LENGTH])
    return _dbfs(power)


def _dbfs(mean_square: Tensor) -> Tensor:
    """Mean square power (full scale = 1.0) -> dBFS, floored at -200 (silence)."""
    return 10 * torch.log10(mean_square.clamp(min=1e-20))
