"""Audio in: a file, bytes, or an array -> float32 mono at 16 kHz; a band-limited resampler; pad_or_trim.

Contract: `load_audio` returns a fresh 1-D float32 numpy array at `sr` Hz, or raises `AudioError` naming the
file, the problem and what to do. Files are decoded, mixed down and resampled in blocks, so memory holds
the output plus O(block) working space; `open_audio` yields those blocks instead, for consumers that never
need the whole waveform (features.long_form_features_from_file). Arrays are taken to be at `sr` already
(never resampled).
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
import warnings
from functools import lru_cache
from typing import BinaryIO, Iterator, NamedTuple, Union

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from whisperfast.errors import AudioError, OptionError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 (10 ms per frame)
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # 320: the encoder's conv2 has stride 2
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 (20 ms per audio position)

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, torch.Tensor]
SUPPORTED = "WAV, FLAC, OGG (Vorbis/Opus), MP3, AIFF, CAF, W64/RF64 and the other formats of libsndfile"
_BLOCK = 1 << 18  # input frames decoded / resampled per step (≈6 s at 44.1 kHz)
_MAGIC = [(b"ftyp", 4, "an MP4/M4A/MOV container (AAC/ALAC)"), (b"\x1aE\xdf\xa3", 0, "a WebM/Matroska container"),
          (b"0&\xb2u", 0, "an ASF/WMA file"), (b"#!AMR", 0, "an AMR file"), (b"AVI ", 8, "an AVI video")]

# ---- resampling: polyphase windowed-sinc, Kaiser window -------------------------------------------------
_ATTEN_DB = 100.0  # stopband attenuation of the Kaiser design
_PASS = 0.90  # passband edge as a fraction of the lower Nyquist; the stopband starts at that Nyquist


class _Design(NamedTuple):
    up: int  # L = new_sr / gcd (times k on the GEMM path: k whole periods per matrix row block)
    down: int  # M = orig_sr / gcd (times k likewise)
    fc: float  # cutoff (-6 dB), cycles per input sample
    half: float  # kernel half-width, input samples
    jh: int  # ceil(half): output k reads inputs floor(kM/L) - Jh .. floor(kM/L) + Jh
    beta: float  # Kaiser window shape
    groups: tuple  # GEMM path: (first row r0, input offset from qM, W [rows, width]) per group; () = per-output path


@lru_cache(maxsize=4)
def _design(orig_sr: int, new_sr: int) -> _Design:
    """The filter for orig_sr -> new_sr, and its weights laid out for GEMMs when that fits in 4M floats.

    Output qL + r (r < L) reads inputs near qM + rM/L. Rows r are split into groups whose input windows
    are about 4 Jh wide, so each group is a dense [rows, width] matrix applied to frames of stride M.
    """
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    rho = min(1.0, up / down)  # lower Nyquist / input Nyquist
    fc = 0.5 * rho * (1 + _PASS) / 2  # -6 dB point, mid-transition
    width = 0.5 * rho * (1 - _PASS)  # transition width, cycles per input sample
    half = (_ATTEN_DB - 7.95) / (2.285 * 2 * math.pi * width) / 2  # Kaiser's length formula, halved
    jh, beta = math.ceil(half), 0.1102 * (_ATTEN_DB - 8.7)
    k = -(-2 * jh // down)  # merge k periods when M < 2Jh, so frames overlap at most 2x
    n_groups = min(k * up, max(1, k * down // (2 * jh)))  # split a period when M > 2Jh
    bounds = [round(i * k * up / n_groups) for i in range(n_groups + 1)]
    first = [r0 * down // up - jh for r0 in bounds[:-1]]  # input offset of each group from qM
    widths = [(r1 - 1) * down // up + jh + 1 - off for off, r1 in zip(first, bounds[1:])]
    if sum((r1 - r0) * w for r0, r1, w in zip(bounds, bounds[1:], widths)) > 1 << 22:
        return _Design(up, down, fc, half, jh, beta, ())  # odd rates: weights made per block of outputs
    groups = tuple((r0, off, _weights(np.arange(r0, r1)[:, None] * down / up - (off + np.arange(w))[None, :],
                                      fc, half, beta))  # [rows, width]
                   for r0, r1, off, w in zip(bounds, bounds[1:], first, widths))
    return _Design(k * up, k * down, fc, half, jh, beta, groups)


def _kernel(t: np.ndarray, fc: float, half: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc at offsets t (input samples), unit DC gain; float64, same shape as t."""
    t = torch.as_tensor(t, dtype=torch.float64)
    arg = (1 - (t / half) ** 2).clamp(min=0).sqrt() * beta
    w = torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = 2 * fc * torch.sinc(2 * fc * t) * w
    return torch.where(t.abs() < half, h, 0.0).numpy()


@lru_cache(maxsize=4)
def _fine_kernel(fc: float, half: float, beta: float) -> tuple[np.ndarray, int, int]:
    """The kernel sampled p times per input sample on [-(Jh+1), Jh+1] (~260k points) -> (samples, p, Jh + 1)."""
    n = math.ceil(half) + 1
    p = max(64, (1 << 17) // n)  # linear interpolation error h''/(8 p^2): < 1e-6 of the peak
    return _kernel(np.arange(-n * p, n * p + 2) / p, fc, half, beta), p, n


@lru_cache(maxsize=1)
def _phase_table(orig_sr: int, new_sr: int) -> np.ndarray:
    """Per-output path: the weights of every output phase kM % L -> float32 [L, 2Jh+1]."""
    d = _design(orig_sr, new_sr)
    return _weights(np.arange(d.up)[:, None] / d.up - np.arange(-d.jh, d.jh + 1)[None, :], d.fc, d.half, d.beta)


def _weights(t: np.ndarray, fc: float, half: float, beta: float) -> np.ndarray:
    """_kernel at offsets t by linear interpolation of _fine_kernel -> float32, same shape as t."""
    fine, p, n = _fine_kernel(fc, half, beta)
    u = np.clip((t + n) * p, 0, 2 * n * p)  # beyond +-(Jh+1) the samples are 0
    i = u.astype(np.int64)
    w = u - i
    return (fine[i] * (1 - w) + fine[i + 1] * w).astype(np.float32)


class _Resampler:
    """Streaming resampler: push() blocks of input, flush() at the end; the output equals one-shot resample()."""

    def __init__(self, orig_sr: int, new_sr: int):
        d = self.design = _design(orig_sr, new_sr)
        self.rates, self.gemm = (orig_sr, new_sr), bool(d.groups)
        self.up, self.down, self.jh, self.phases = d.up, d.down, d.jh, None
        self.buf = np.zeros(self.jh, np.float32)  # leading zeros: the signal is zero before sample 0
        self.base, self.k, self.n_in = -self.jh, 0, 0  # input index of buf[0]; next output; inputs seen

    def push(self, x: np.ndarray) -> np.ndarray:
        self.n_in += len(x)
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        return self._run(None)

    def flush(self) -> np.ndarray:
        total = -(-self.n_in * self.up // self.down)  # ceil(n_in * new / orig)
        need = (-(-total // self.up) + 1) * self.down + self.jh  # inputs (zeros) past the end that we read
        self.buf = np.concatenate([self.buf, np.zeros(max(0, need - self.base - len(self.buf)), np.float32)])
        return self._run(total)

    def _run(self, total: int | None) -> np.ndarray:
        end = self.base + len(self.buf)  # one past the last input index we hold
        if self.gemm:
            k1 = max(self.k, (end - self.jh) // self.down * self.up)  # whole periods only
        else:
            k1 = max(self.k, -(-(end - self.jh) * self.up // self.down))
        k1 = k1 if total is None else total
        y = np.concatenate([np.zeros(0, np.float32), *self._outputs(self.k, k1)])
        self.k = k1
        keep = (k1 // self.up * self.down if self.gemm else k1 * self.down // self.up) - self.jh
        self.buf, self.base = self.buf[keep - self.base:], keep
        return y

    def _outputs(self, k0: int, k1: int) -> Iterator[np.ndarray]:
        L, M, jh, buf = self.up, self.down, self.jh, self.buf
        if self.gemm:  # blocks of whole periods: y[q, r0:r0+rows] = frames(q*M + off) @ W.T
            q0, q1 = k0 // L, -(-k1 // L)
            per = max(1, (1 << 21) // max(w.shape[1] for _, _, w in self.design.groups))
            for qa in range(q0, q1, per):
                y = np.empty((min(q1, qa + per) - qa, L), np.float32)  # [periods, L]
                for r0, off, w in self.design.groups:
                    frames = np.lib.stride_tricks.as_strided(
                        buf[qa * M + off - self.base:], (len(y), w.shape[1]), (4 * M, 4))  # [periods, width]
                    y[:, r0: r0 + len(w)] = np.ascontiguousarray(frames) @ w.T
                yield y.reshape(-1)[max(0, k0 - qa * L): k1 - qa * L]
            return
        taps, per = np.arange(-jh, jh + 1), max(1, (1 << 20) // (2 * jh + 1))
        if self.phases is None and k1 - k0 >= L // 4 and L * len(taps) <= 1 << 23:  # worth a table
            self.phases = _phase_table(*self.rates)  # [L, 2Jh+1]
        for ka in range(k0, k1, per):  # odd rates: each output's 2Jh+1 weights, by its phase kM % L
            k = np.arange(ka, min(k1, ka + per), dtype=np.int64)
            n0, ph = k * M // L, k * M % L
            w = self.phases[ph] if self.phases is not None else _weights(
                (ph / L)[:, None] - taps[None, :], self.design.fc, self.design.half, self.design.beta)  # [n, 2Jh+1]
            yield np.einsum("kt,kt->k", w, buf[(n0 - self.base)[:, None] + taps[None, :]])


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D signal from orig_sr to new_sr Hz -> float32 [ceil(len * new_sr / orig_sr)].

    Kaiser-windowed sinc (100 dB stopband), flat to 0.9 x the lower Nyquist, stopband from that Nyquist.
    Zero delay: output sample k is the band-limited input at time k * orig_sr / new_sr; the signal is taken
    to be zero outside [0, len). Processed in blocks, so temporary memory is bounded for any length.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise AudioError(f"resample: expected a 1-D signal, got shape {tuple(x.shape)}; mix down first")
    for name, rate in (("orig_sr", orig_sr), ("new_sr", new_sr)):
        if int(rate) != rate or rate <= 0:
            raise OptionError(f"resample: {name}={rate!r} must be a positive integer sample rate in Hz")
    if orig_sr == new_sr:
        return x.astype(np.float32, copy=True)
    rs = _Resampler(int(orig_sr), int(new_sr))
    parts = [rs.push(x[i: i + _BLOCK]) for i in range(0, len(x), _BLOCK)]
    return np.concatenate([*parts, rs.flush()])


# ---- loading -------------------------------------------------------------------------------------------
class OpenedAudio(NamedTuple):
    """A source being decoded: `blocks` yields consecutive float32 mono pieces at the target rate."""

    name: str  # the path, "<bytes>", the file object's name, or "audio array" / "audio tensor"
    expected: int  # estimated number of output samples (libsndfile's frame count; exact for WAV/FLAC)
    blocks: Iterator[np.ndarray]


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE, *, channel: int | str | None = None) -> np.ndarray:
    """Decode `source` to float32 mono at `sr` Hz -> [n_samples].

    source: a path (any format libsndfile reads: wav, flac, ogg/opus, mp3, ...), encoded `bytes`, a binary
    file object, or a numpy array / torch tensor already at `sr` Hz (int16 /32768, int32 /2**31, int8 /128,
    uint8 centred at 128; 2-D (samples, channels) or (channels, samples) with at most 8 channels).
    channel: None averages the channels; 0/1/... or "left"/"right" picks one.
    NaN/Inf samples are replaced with 0 and a RuntimeWarning is issued. Errors (zero length included)
    raise AudioError.
    """
    opened = open_audio(source, sr, channel=channel)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        y = next(opened.blocks, np.zeros(0, np.float32))  # one block, already a fresh copy
    else:
        y = _concatenate(opened.blocks, opened.expected)
    if len(y) == 0:
        raise AudioError(f"{opened.name}: no audio samples (zero length); check the recording, or pass at "
                         "least one sample")
    return y


def _concatenate(blocks: Iterator[np.ndarray], expected: int) -> np.ndarray:
    """The blocks in one array, allocated once at `expected` (+ a little) and grown only if that was low."""
    out, n = np.empty(expected + 16, np.float32), 0
    for y in blocks:
        if n + len(y) > len(out):
            out = np.concatenate([out[:n], np.empty(max(len(y), len(out)), np.float32)])
        out[n: n + len(y)] = y
        n += len(y)
    return out[:n]


def open_audio(source: AudioSource, sr: int = SAMPLE_RATE, *, channel: int | str | None = None) -> OpenedAudio:
    """`load_audio` in blocks, for streaming: the output of `load_audio` is the concatenation of `blocks`
    (a file yields a block per ~262k input frames, an array one block). Zero-length audio yields no block
    instead of raising; every other problem raises AudioError, when opening or while iterating."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
        raise OptionError(f"load_audio: sr={sr!r} must be a positive integer sample rate in Hz (usually 16000)")
    if channel is not None and not isinstance(channel, numbers.Integral) and channel not in ("left", "right"):
        raise OptionError(f"load_audio: channel={channel!r}; use None (average), 0, 1, ..., 'left' or 'right'")
    sr, channel = int(sr), int(channel) if isinstance(channel, numbers.Integral) else channel
    if isinstance(source, (np.ndarray, torch.Tensor)):
        name = "audio tensor" if isinstance(source, torch.Tensor) else "audio array"
        x = _from_array(source, channel, name)
        return OpenedAudio(name, len(x), iter([x] if len(x) else []))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_file(io.BytesIO(bytes(source)), "<bytes>", sr, channel)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        seekable = getattr(source, "seekable", lambda: False)()
        return _open_file(source if seekable else io.BytesIO(source.read()), name, sr, channel)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        _check_path(path)
        return _open_file(path, path, sr, channel)
    raise AudioError(f"load_audio: cannot read audio from a {type(source).__name__}; "
                     "pass a file path, encoded bytes, a binary file object, or a numpy array / torch tensor")


def _check_path(path: str) -> None:
    """Raise AudioError for a path that is missing, a directory, unreadable or empty."""
    if os.path.isdir(path):
        raise AudioError(f"{path!r} is a directory, not an audio file; pass the path of a file inside it")
    try:
        with open(path, "rb") as f:
            empty = f.read(1) == b""
    except FileNotFoundError:
        raise AudioError(f"audio file {path!r} not found (working directory: {os.getcwd()}); check the path") from None
    except PermissionError:
        raise AudioError(f"no permission to read audio file {path!r}; check its permissions (chmod +r)") from None
    except OSError as e:
        raise AudioError(f"cannot open audio file {path!r}: {e.strerror or e}") from None
    if empty:
        raise AudioError(f"audio file {path!r} is empty (0 bytes); re-record or re-download it")


def _what_is(head: bytes) -> str | None:
    """A name for a container libsndfile cannot read, from its first bytes; None if unknown."""
    for magic, at, what in _MAGIC:
        if head[at: at + len(magic)] == magic:
            return what
    return None


def _open_file(src: str | BinaryIO, name: str, sr: int, channel: int | str | None) -> OpenedAudio:
    """Open with libsndfile (AudioError naming the container if it cannot) -> blocks mixed down to `channel`
    (None: the mean) and resampled to `sr`."""
    if isinstance(src, str):
        with open(src, "rb") as f:
            head = f.read(16)
    else:
        pos = src.tell()
        head = src.read(16)
        src.seek(pos)
    if not head:
        raise AudioError(f"{name}: the audio data is empty (0 bytes); re-record or re-download it")
    convert = f"Convert it first, e.g. `ffmpeg -i {'input.ext' if name.startswith('<') else name} out.wav`."
    try:
        f = sf.SoundFile(src)
    except (sf.SoundFileError, RuntimeError) as e:
        what = _what_is(head)
        kind = f"{what}, which cannot be decoded here" if what else "not a supported audio file"
        raise AudioError(f"{name}: {kind} ({e}). Supported: {SUPPORTED}. {convert}") from None
    try:
        ch = _channel_index(channel, f.channels, name)
    except AudioError:
        f.close()
        raise
    expected = min(-(-max(f.frames, 0) * sr // f.samplerate), 1 << 31)  # libsndfile's count; may be off
    return OpenedAudio(name, expected, _file_blocks(f, name, sr, ch, convert))


def _file_blocks(f: sf.SoundFile, name: str, sr: int, ch: int | None, convert: str) -> Iterator[np.ndarray]:
    """Decode all of `f` block by block -> float32 mono pieces at sr; closes `f`; checks for truncation."""
    rs = _Resampler(f.samplerate, sr) if f.samplerate != sr else None
    n_read = n_bad = 0
    with f:
        while True:
            try:
                block = f.read(_BLOCK, dtype="float32", always_2d=True)  # [n, channels]
            except (sf.SoundFileError, RuntimeError) as e:
                raise AudioError(f"{name}: the file is corrupt or truncated ({e}). Re-download it, "
                                 f"or salvage the readable part with ffmpeg: {convert}") from None
            last = len(block) == 0
            x = block[:, ch] if ch is not None else block.mean(axis=1, dtype=np.float32)  # [n]
            n_read += len(x)
            n_bad += _zero_nonfinite(x)
            y = x if rs is None else (rs.flush() if last else rs.push(x))
            if last:
                _check_complete(f, n_read, name, convert)
                _warn_bad(n_bad, name)
            if len(y):
                yield y
            if last:
                return


def _check_complete(f: sf.SoundFile, n_read: int, name: str, convert: str) -> None:
    """Raise AudioError if the header declares much more audio than could be decoded (a truncated file)."""
    m = re.search(r"data : (\d+) \(should be (\d+)\)", f.extra_info)  # WAV: libsndfile trims .frames itself
    declared, got = (int(m[1]), int(m[2])) if m else (f.frames, n_read)
    if m and declared in (0, 0xFFFFFFFF, 0x7FFFFFFF):  # streamed WAVs carry a placeholder size
        return
    if declared > 0 and got < 0.9 * declared:
        raise AudioError(f"{name}: the file is truncated: its header declares {declared} "
                         f"{'bytes' if m else 'frames'} of audio but only {got} are present. Re-download it, "
                         f"or keep the readable part with ffmpeg: {convert}")


def _channel_index(channel: int | str | None, n_channels: int, name: str) -> int | None:
    """Column to keep for `channel`, or None to average; mono input needs no choice."""
    if channel is None:
        return 0 if n_channels == 1 else None
    index = {"left": 0, "right": 1}.get(channel, channel)
    if not 0 <= index < n_channels:
        raise AudioError(f"{name}: channel={channel!r} requested but the audio has {n_channels} channel(s); "
                         f"use None (average) or 0..{n_channels - 1}")
    return index


def _zero_nonfinite(x: np.ndarray) -> int:
    """Set NaN/Inf samples of x to 0 in place -> how many there were."""
    bad = ~np.isfinite(x)
    n = int(bad.sum())
    if n:
        x[bad] = 0.0
    return n


def _warn_bad(n_bad: int, name: str) -> None:
    if n_bad:
        warnings.warn(f"{name}: {n_bad} NaN/Inf sample(s) replaced with 0", RuntimeWarning, stacklevel=4)


_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31, np.dtype(np.int8): 128.0}


def _from_array(a: np.ndarray | torch.Tensor, channel: int | str | None, name: str) -> np.ndarray:
    """Array/tensor at the target rate -> fresh float32 mono [n] (ints scaled to [-1, 1)); [0] if empty."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        a = (a.float() if a.dtype in (torch.float16, torch.bfloat16) else a).numpy()
    if a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128.0) / 128.0
    elif a.dtype in _INT_SCALE:
        a = a.astype(np.float32) / np.float32(_INT_SCALE[a.dtype])
    elif a.dtype.kind != "f":
        raise AudioError(f"{name}: dtype {a.dtype} is not supported; pass float32 samples in [-1, 1] "
                         "or int16/int32 PCM")
    if a.size == 0:
        if a.ndim > 2:
            raise AudioError(f"{name}: expected 1-D [samples] or 2-D [samples, channels], got shape {a.shape}")
        return np.zeros(0, np.float32)
    if a.ndim == 2:
        rows, cols = a.shape
        if cols > 8 and rows > 8:
            raise AudioError(f"{name}: shape {a.shape} has no channel axis (at most 8 channels); pass one clip "
                             "at a time as [samples] or [samples, channels]")
        channels_last = cols <= 8 and (rows > 8 or cols <= rows)  # both <= 8: the shorter axis is channels
        a = a if channels_last else a.T  # [samples, channels]
        ch = _channel_index(channel, a.shape[1], name)
        a = a[:, ch] if ch is not None else a.mean(axis=1, dtype=np.float64)
    elif a.ndim != 1:
        raise AudioError(f"{name}: expected 1-D [samples] or 2-D [samples, channels], got shape {a.shape}")
    elif channel not in (None, 0, "left"):
        _channel_index(channel, 1, name)
    x = np.array(a, dtype=np.float32, copy=True)  # never alias the caller's buffer (zeroing below is in place)
    _warn_bad(_zero_nonfinite(x), name)
    return x


def pad_or_trim(array: np.ndarray | torch.Tensor, length: int = N_SAMPLES, *,
                axis: int = -1) -> np.ndarray | torch.Tensor:
    """Zero-pad or trim `array` along `axis` to `length` (numpy or torch, like openai-whisper)."""
    n = array.shape[axis]
    if torch.is_tensor(array):
        if n > length:
            array = array.narrow(axis, 0, length)
        if n < length:
            pad = [0, 0] * array.ndim
            pad[2 * (array.ndim - 1 - axis % array.ndim) + 1] = length - n  # F.pad lists the last dim first
            array = F.pad(array, pad)
        return array
    if n > length:
        array = array.take(indices=range(length), axis=axis)
    if n < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - n)
        array = np.pad(array, widths)
    return array
