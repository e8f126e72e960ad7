"""Encoded audio -> float32 blocks [n, channels] at the file's own rate, by libsndfile or PyAV.

Contract: `open_decoder(src, name)` returns a `Decoder` or raises AudioError naming the file. libsndfile
(`soundfile`) reads what it reads fast (WAV, FLAC, OGG, MP3, AIFF, ...); PyAV (ffmpeg's libraries in a
wheel) reads the rest (MP4/M4A/AAC, WebM/Matroska, Opus in MP4, WMA, AMR, video files' audio), WAVs
whose header declares no data (unfinished recordings), and the part of a FLAC that libsndfile stops on.
A damaged or truncated file is read up to the first undecodable point: `blocks()` then ends and
`decoder.stopped` says why; `declared` is the number of frames the header promises (0: unknown), so
the caller can say how much was read. Decoder libraries' own messages never reach the terminal:
libmpg123 prints to file descriptor 2 itself, so while libsndfile opens a file or reads an MP3 block, fd 2
points at /dev/null (`quiet_stderr`; another thread's stderr output in that moment is lost with it).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf

from whisperfast.errors import AudioError

SUPPORTED = ("WAV, FLAC, OGG (Vorbis/Opus), MP3, AIFF and the other formats of libsndfile; M4A/MP4/AAC, "
             "WebM/Matroska, WMA, AMR and the audio of video files through PyAV (ffmpeg)")
BLOCK = 1 << 18  # input frames decoded per step (≈6 s at 44.1 kHz)
_MAGIC = [(b"ftyp", 4, "an MP4/M4A/MOV container"), (b"\x1aE\xdf\xa3", 0, "a WebM/Matroska container"),
          (b"0&\xb2u", 0, "an ASF/WMA file"), (b"#!AMR", 0, "an AMR file"), (b"AVI ", 8, "an AVI video")]
_PLACEHOLDERS = (0xFFFFFFFF, 0x7FFFFFFF)  # streamed WAVs carry these as their data size


class Decoder:
    """An opened file: `rate`, `channels`, `declared` frames (0 unknown) and `blocks()` -> [n, channels]."""

    rate: int
    channels: int
    declared: int
    stopped: str | None = None  # why decoding ended before the end of the file (damaged / truncated)

    def blocks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def open_decoder(src: str | BinaryIO, name: str, head: bytes, block: int = BLOCK) -> Decoder:
    """libsndfile when it can open `src` and the header is sound, PyAV otherwise."""
    try:
        with quiet_stderr():
            f = sf.SoundFile(src)
    except (sf.SoundFileError, RuntimeError) as e:
        _rewind(src)
        return _PyAV(src, name, head, str(e), block)
    if re.search(r"^data : 0$", f.extra_info, re.M) and f.frames == 0:  # an unfinished recording's header
        f.close()
        _rewind(src)
        return _PyAV(src, name, head, "its header declares no data", block, zero_header=True)
    return _SoundFile(f, src, name, head, block)


class _SoundFile(Decoder):
    def __init__(self, f: sf.SoundFile, src, name: str, head: bytes, block: int):
        self.f, self.src, self.name, self.head, self.block = f, src, name, head, block
        self.rate, self.channels, self.declared = f.samplerate, f.channels, _declared_frames(f)
        self.chatty = f.subtype.startswith("MPEG")  # libmpg123 prints to stderr

    def close(self) -> None:
        self.f.close()

    def blocks(self) -> Iterator[np.ndarray]:
        n = 0
        with self.f:
            while True:
                try:
                    with quiet_stderr() if self.chatty else contextlib.nullcontext():
                        block = self.f.read(self.block, dtype="float32", always_2d=True)  # [n, channels]
                except (sf.SoundFileError, RuntimeError) as e:
                    self.stopped = str(e)
                    break
                if len(block) == 0:
                    return
                n += len(block)
                yield block
        yield from self._resume(n)

    def _resume(self, n: int) -> Iterator[np.ndarray]:
        """libsndfile stopped on a damaged frame: PyAV (which decodes up to the last good frame) goes on
        from frame n."""
        try:
            _rewind(self.src)
            rest = _PyAV(self.src, self.name, self.head, self.stopped or "", self.block)
        except AudioError:
            return
        if (rest.rate, rest.channels) != (self.rate, self.channels):  # another reading of the file: keep ours
            rest.close()
            return
        for block in rest.blocks():
            skip = min(n, len(block))  # frames libsndfile already gave
            n -= skip
            if skip < len(block):
                yield block[skip:]
        self.stopped = rest.stopped  # None: PyAV decoded to the end (a warning still comes if it is short)


def _declared_frames(f: sf.SoundFile) -> int:
    """Frames the header promises: a WAV's data size (libsndfile trims `frames` to what is there), or
    `frames`; 0 when unknown."""
    m = re.search(r"data : (\d+) \(should be \d+\)", f.extra_info)
    if not m:
        return max(f.frames, 0)
    size = int(m[1])
    align = re.search(r"Block Align\s*:\s*(\d+)", f.extra_info)
    return 0 if size in _PLACEHOLDERS else size // int(align[1]) if align and int(align[1]) else 0


def _rewind(src) -> None:
    if not isinstance(src, str):
        src.seek(0)


def _what_is(head: bytes) -> str | None:
    """A name for a container, from its first bytes; None if unknown."""
    for magic, at, what in _MAGIC:
        if head[at: at + len(magic)] == magic:
            return what
    return None


class _PyAV(Decoder):
    def __init__(self, src, name: str, head: bytes, why: str, block: int = BLOCK, *, zero_header: bool = False):
        try:
            import av
        except ImportError:  # a broken install: `av` is a dependency
            raise AudioError(f"{name}: not readable by libsndfile ({why}) and PyAV is not installed; "
                             "`pip install av`") from None
        self.av, self.name, self.zero_header, self.block = av, name, zero_header, block
        try:
            self.container = av.open(src, mode="r", metadata_errors="ignore")
        except (av.FFmpegError, ValueError, OSError) as e:
            raise AudioError(_unreadable(name, head, getattr(e, "strerror", None) or str(e))) from None
        if not self.container.streams.audio:
            self.container.close()
            raise AudioError(f"{name}: {_what_is(head) or 'the file'} has no audio stream")
        self.stream = s = self.container.streams.audio[0]
        self.rate, self.channels = s.codec_context.sample_rate or s.rate, s.codec_context.channels
        if not self.rate or not self.channels:
            self.container.close()
            raise AudioError(_unreadable(name, head, "no sample rate or channel count"))
        seconds = float(s.duration * s.time_base) if s.duration else (self.container.duration or 0) / 1e6
        self.declared = 0 if zero_header else round(seconds * self.rate)

    def close(self) -> None:
        self.container.close()

    def blocks(self) -> Iterator[np.ndarray]:
        resample = self.av.AudioResampler(format="fltp")  # any sample format -> float32 planar, same rate
        pending: list[np.ndarray] = []
        n = 0
        with self.container:
            try:
                for frame in self.container.decode(self.stream):
                    for out in resample.resample(frame):
                        x = out.to_ndarray()  # [channels, n]
                        if x.shape[0] != self.channels:  # a layout change mid-stream: keep the first layout
                            x = np.resize(x, (self.channels, x.shape[1]))
                        pending.append(x.T)
                        n += x.shape[1]
                    if n >= self.block:
                        yield np.ascontiguousarray(np.concatenate(pending))
                        pending, n = [], 0
            except (self.av.FFmpegError, ValueError) as e:
                self.stopped = getattr(e, "strerror", None) or str(e)
        if pending:
            yield np.ascontiguousarray(np.concatenate(pending))


def _unreadable(name: str, head: bytes, why: str) -> str:
    what = _what_is(head)
    kind = f"{what} with no decodable audio" if what else "not a supported audio file"
    example = "input.ext" if name.startswith("<") else name
    return (f"{name}: {kind} ({why}). Supported: {SUPPORTED}. If another program plays it, convert it first, "
            f"e.g. `ffmpeg -i {example} out.wav`.")


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for the block: C decoders (libmpg123) print there directly."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
