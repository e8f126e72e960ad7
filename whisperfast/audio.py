"""Audio in: a file, bytes, or an array -> float32 mono at 16 kHz; a band-limited resampler; pad_or_trim.

Contract: `load_audio` returns a fresh 1-D float32 numpy array at `sr` Hz, or raises `AudioError` naming the
file, the problem and what to do. Files are decoded, mixed down and resampled in blocks, so memory holds
the output plus O(block) working space; `open_audio` yields those blocks instead, for consumers that never
need the whole waveform (features.long_form_features_from_file). A bare array is taken to be at `sr`
(16 kHz) already; an `(array, sample_rate)` pair is resampled from its rate. Decoding itself (libsndfile,
or PyAV for the containers libsndfile cannot read) is in decoders.py; a file read only in part (truncated
or damaged) is transcribed as far as it decodes, with an AudioWarning saying how much was read.
"""

from __future__ import annotations

import io
import numbers
import os
import stat
import sys
import warnings
from typing import BinaryIO, Iterator, NamedTuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from whisperfast.decoders import SUPPORTED, Decoder, open_decoder  # noqa: F401  (SUPPORTED: this module's API)
from whisperfast.errors import AudioError, AudioWarning, OptionError
from whisperfast.resample import _Resampler, resample  # noqa: F401  (resample: part of this module's API)

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 (10 ms per frame)
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # 320: the encoder's conv2 has stride 2
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 (20 ms per audio position)

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, torch.Tensor,
                    tuple]  # the tuple: (array or tensor, its sample rate)
STDIN = "-"  # as a path: standard input (a pipe or a redirected file)
_BLOCK = 1 << 18  # input frames decoded / resampled per step (≈6 s at 44.1 kHz)

# ---- loading -------------------------------------------------------------------------------------------
class OpenedAudio(NamedTuple):
    """A source being decoded: `blocks` yields consecutive float32 mono pieces at the target rate."""

    name: str  # the path, "<bytes>", the file object's name, or "audio array" / "audio tensor"
    expected: int  # estimated number of output samples (libsndfile's frame count; exact for WAV/FLAC)
    blocks: Iterator[np.ndarray]


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE, *, channel: int | str | None = None) -> np.ndarray:
    """Decode `source` to float32 mono at `sr` Hz -> [n_samples].

    source: a path ("-": standard input; pipes and other unseekable files are read whole first) of any
    format in `SUPPORTED` (wav, flac, ogg/opus, mp3, m4a/mp4/aac, webm, ...), encoded `bytes`, a binary
    file object, a numpy array / torch tensor at 16 kHz (`sr` Hz), or an `(array, sample_rate)` pair at any
    rate (int16 /32768, int32 /2**31, int8 /128, uint8 centred at 128; 2-D (samples, channels) or
    (channels, samples) with at most 8 channels).
    channel: None averages the channels; 0/1/... or "left"/"right" picks one.
    NaN/Inf samples are replaced with 0 and a RuntimeWarning is issued. Errors (zero length included)
    raise AudioError.
    """
    opened = open_audio(source, sr, channel=channel)
    if is_array(source):
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
    if is_array(source):
        array, rate = source if isinstance(source, tuple) else (source, sr)
        name = "audio tensor" if isinstance(array, torch.Tensor) else "audio array"
        x = _from_array(array, channel, name)
        x = resample(x, int(rate), sr) if rate != sr and len(x) else x
        return OpenedAudio(name, len(x), iter([x] if len(x) else []))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_file(io.BytesIO(bytes(source)), "<bytes>", sr, channel)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        seekable = getattr(source, "seekable", lambda: False)()
        return _open_file(source if seekable else io.BytesIO(source.read()), name, sr, channel)
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) == STDIN:
        return _open_file(io.BytesIO(sys.stdin.buffer.read()), "<stdin>", sr, channel)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        _check_path(path)
        if not os.path.isfile(path):  # a pipe or device (/dev/stdin, <(...)): it cannot seek
            with open(path, "rb") as f:
                return _open_file(io.BytesIO(f.read()), path, sr, channel)
        return _open_file(path, path, sr, channel)
    if isinstance(source, tuple):
        raise AudioError(f"load_audio: a tuple source must be (array, sample_rate), got a tuple of "
                         f"{len(source)} ({', '.join(type(x).__name__ for x in source)})")
    raise AudioError(f"load_audio: cannot read audio from a {type(source).__name__}; "
                     "pass a file path, encoded bytes, a binary file object, or a numpy array / torch tensor")


def is_array(source) -> bool:
    """An array, a tensor, or an (array or tensor, positive int sample rate) pair (AudioError if the rate is
    not a positive int)."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return True
    if not (isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], (np.ndarray, torch.Tensor))):
        return False
    rate = source[1]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        raise AudioError(f"(array, sample_rate): the sample rate must be a positive int in Hz, not {rate!r}")
    return True


def _check_path(path: str) -> None:
    """Raise AudioError for a path that is missing, a directory, unreadable or empty (a pipe or device is
    not read here: its first byte would be lost)."""
    if os.path.isdir(path):
        raise AudioError(f"{path!r} is a directory, not an audio file; pass the path of a file inside it")
    try:
        with open(path, "rb") as f:
            empty = _is_regular(f) and f.read(1) == b""
    except FileNotFoundError:
        raise AudioError(f"audio file {path!r} not found (working directory: {os.getcwd()}); check the path") from None
    except PermissionError:
        raise AudioError(f"no permission to read audio file {path!r}; check its permissions (chmod +r)") from None
    except OSError as e:
        raise AudioError(f"cannot open audio file {path!r}: {e.strerror or e}") from None
    if empty:
        raise AudioError(f"audio file {path!r} is empty (0 bytes); re-record or re-download it")


def _is_regular(f) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def _open_file(src: str | BinaryIO, name: str, sr: int, channel: int | str | None) -> OpenedAudio:
    """Open with libsndfile or PyAV (AudioError naming the file if neither can) -> blocks mixed down to
    `channel` (None: the mean) and resampled to `sr`."""
    if isinstance(src, str):
        with open(src, "rb") as f:
            head = f.read(16)
    else:
        pos = src.tell()
        head = src.read(16)
        src.seek(pos)
    if not head:
        raise AudioError(f"{name}: the audio data is empty (0 bytes); re-record or re-download it")
    decoder = open_decoder(src, name, head, _BLOCK)
    try:
        ch = _channel_index(channel, decoder.channels, name)
    except AudioError:
        decoder.close()
        raise
    expected = min(-(-max(decoder.declared, 0) * sr // decoder.rate), 1 << 31)  # the header's count; may be off
    return OpenedAudio(name, expected, _file_blocks(decoder, name, sr, ch))


def _file_blocks(d: Decoder, name: str, sr: int, ch: int | None) -> Iterator[np.ndarray]:
    """Decode all of `d` block by block -> float32 mono pieces at sr; warns about a file read only in part."""
    rs = _Resampler(d.rate, sr) if d.rate != sr else None
    n_read = n_bad = 0
    for block in d.blocks():  # [n, channels]
        x = block[:, ch] if ch is not None else _downmix(block)  # [n]
        n_read += len(x)
        n_bad += _zero_nonfinite(x)
        y = x if rs is None else rs.push(x)
        if len(y):
            yield y
    if rs is not None and n_read:
        yield rs.flush()
    _warn_bad(n_bad, name)
    _check_complete(d, n_read, name)


def _check_complete(d: Decoder, n_read: int, name: str) -> None:
    """Nothing decoded from a damaged file: AudioError. A part of it, or less than its header promises: one
    AudioWarning saying how much was read (the readable part is transcribed)."""
    read, promised = n_read / d.rate, d.declared / d.rate
    short = d.declared > 0 and n_read < 0.99 * d.declared and d.declared - n_read > d.rate // 10
    if d.stopped and n_read == 0:
        raise AudioError(f"{name}: the file is corrupt or truncated: nothing could be decoded ({d.stopped}); "
                         "re-download or re-record it")
    if getattr(d, "zero_header", False) and n_read:
        _warn(f"{name}: the WAV header declares no audio data (an unfinished recording?); read {read:.1f} s "
              "up to the end of the file")
    elif d.stopped or short:
        of = f" of the {promised:.1f} s its header promises" if d.declared > 0 else ""
        why = f" ({d.stopped})" if d.stopped else ""
        _warn(f"{name}: the file is truncated or damaged{why}: read {read:.1f} s{of}; transcribing that part")


def _warn(message: str) -> None:
    warnings.warn(message, AudioWarning, stacklevel=5)


def _downmix(block: np.ndarray) -> np.ndarray:
    """[n, C] -> the channel mean [n] float32 (column by column: 4x faster than `mean(axis=1)`, same values)."""
    x = block[:, 0].copy()
    for c in range(1, block.shape[1]):
        x += block[:, c]
    x /= np.float32(block.shape[1])
    return x


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
