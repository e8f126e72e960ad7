"""Audio a `whisper` user has: containers libsndfile cannot read (through PyAV), WAVs whose header declares
no data, truncated files read as far as they go, standard input and pipes, arrays at other rates, and
decoders kept quiet. Every file is made here: PyAV encodes m4a/mp4/webm, byte edits make the damage."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from whisperfast.audio import SAMPLE_RATE, load_audio, resample
from whisperfast.errors import AudioError, AudioWarning, OptionError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
LDC = DATA / "LDC93S1.wav"  # 2.92 s, 16 kHz mono: "She had your dark suit in greasy wash water all year."


def encode(path: Path, x: np.ndarray, rate: int, fmt: str, codec: str) -> Path:
    """Write mono float32 `x` at `rate` with PyAV (ffmpeg's encoders)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*s.encode(frame), *s.encode(None)]:
            c.mux(packet)
    return path


def ldc() -> np.ndarray:
    return load_audio(LDC)


CONTAINERS = {"m4a": ("ipod", "aac", 16000), "mp4": ("mp4", "aac", 16000), "webm": ("webm", "libopus", 48000)}


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_containers_libsndfile_cannot_read_are_decoded(tmp_path, ext):
    fmt, codec, rate = CONTAINERS[ext]
    x = ldc()
    p = encode(tmp_path / f"memo.{ext}", resample(x, SAMPLE_RATE, rate), rate, fmt, codec)
    with pytest.raises(sf.LibsndfileError):  # the case: libsndfile alone refused these
        sf.info(p)
    y = load_audio(p)
    assert abs(len(y) - len(x)) <= 2048, (len(y), len(x))  # AAC keeps its 1024-sample priming
    offset = max(range(2048), key=lambda o: float(np.dot(x[:40000], y[o: o + 40000])))
    # lossy codecs: the waveform is the original's to a correlation of 0.998 (aac) / 0.998 (opus) here
    assert np.corrcoef(x[:40000], y[offset: offset + 40000])[0, 1] > 0.99
    assert load_audio(p.read_bytes()).shape == y.shape  # bytes and file objects take the same path
    with open(p, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), y)


def test_m4a_transcribes_like_the_wav(tiny_en, tmp_path):
    x = ldc()
    p = encode(tmp_path / "memo.m4a", x, SAMPLE_RATE, "ipod", "aac")
    assert tiny_en.transcribe(p).text == tiny_en.transcribe(str(LDC)).text


def zero_header_wav(tmp_path: Path) -> Path:
    """The issue's repro: RIFF and data sizes written as 0, as an unfinished recording leaves them."""
    b = bytearray(LDC.read_bytes())
    i = b.find(b"data")
    b[4:8] = b[i + 4: i + 8] = struct.pack("<I", 0)
    p = tmp_path / "zero.wav"
    p.write_bytes(bytes(b))
    return p


def test_wav_whose_header_declares_no_data_is_read_to_the_end(tmp_path):
    p = zero_header_wav(tmp_path)
    with pytest.warns(AudioWarning, match=r"zero\.wav: the WAV header declares no audio data .* read 2\.9 s"):
        y = load_audio(p)
    np.testing.assert_array_equal(y, ldc())  # PCM: the same samples
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), SAMPLE_RATE)  # a header and truly no data: still an error
    with pytest.raises(AudioError, match="zero length"):
        load_audio(empty)


@pytest.mark.parametrize("name, keep, read_s, promised_s", [
    ("ru.wav", 60000, 1.9, 5.7), ("sonnet001.mp3", 200000, 24.9, 53.3), ("jfk.flac", 500000, 4.6, 11.0)])
def test_truncated_file_is_read_as_far_as_it_decodes(tmp_path, name, keep, read_s, promised_s):
    p = tmp_path / f"trunc_{name}"
    p.write_bytes((DATA / name).read_bytes()[:keep])
    with pytest.warns(AudioWarning) as w:
        y = load_audio(p)
    message = str(w[0].message)
    assert f"trunc_{name}: the file is truncated or damaged" in message
    assert f"of the {promised_s:.1f} s its header promises" in message
    assert f"read {read_s:.1f} s" in message and abs(len(y) / SAMPLE_RATE - read_s) < 0.05, message


def test_flac_that_libsndfile_stops_on_is_read_to_the_last_good_frame(tmp_path):
    """libsndfile loses sync inside the first block of 2**18 frames it is asked for; the decoding goes on
    through PyAV from where libsndfile stopped, up to the last good frame (libsndfile read 4096 frames at
    a time gets within a frame of it)."""
    data = (DATA / "jfk.flac").read_bytes()
    p = tmp_path / "cut.flac"
    p.write_bytes(data[: len(data) // 3])
    with pytest.warns(AudioWarning, match="truncated or damaged"):
        y = load_audio(p)
    got = 0
    with sf.SoundFile(p) as f:
        with pytest.raises(sf.LibsndfileError, match="lost sync"):
            while len(block := f.read(4096)):
                got += len(block)
    assert got > 2 ** 17 and abs(len(y) / SAMPLE_RATE - got / 44100) < 4096 / 44100
    # the same decoded samples, resampled 44.1 -> 16 kHz by float32 kernels whose blocking follows the input's
    # length and the thread count (measured up to 8.4e-7 in CI at 2 threads)
    np.testing.assert_allclose(y[:SAMPLE_RATE * 3], load_audio(DATA / "jfk.flac")[:SAMPLE_RATE * 3], rtol=0, atol=2e-6)


def python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, **kw)


def test_stdin_and_pipes_are_read():
    wav = LDC.read_bytes()
    n = len(ldc())
    for path in ("-", "/dev/stdin"):
        r = python(f"from whisperfast.audio import load_audio; print(len(load_audio({path!r})))", input=wav)
        assert r.returncode == 0 and int(r.stdout) == n, r.stderr
    # a real pipe (not a redirected file): `cat x.wav | ...`
    cat = subprocess.Popen(["cat", str(LDC)], stdout=subprocess.PIPE)
    r = python("from whisperfast.audio import load_audio; print(len(load_audio('/dev/stdin')))", stdin=cat.stdout)
    cat.wait()
    assert r.returncode == 0 and int(r.stdout) == n, r.stderr


def test_mp3_decoder_chatter_stays_off_stderr():
    """libmpg123 prints "error: part2_3_length ... too large" for frames of this clip on stderr."""
    r = python("from whisperfast.audio import load_audio; print(len(load_audio('tests/data/multilingual.mp3')))")
    assert r.returncode == 0 and int(r.stdout) == 59.9 * SAMPLE_RATE
    assert r.stderr == b"", r.stderr
    r = python("import soundfile as sf\nwith sf.SoundFile('tests/data/multilingual.mp3') as f:\n"
               "    while len(f.read(2 ** 18)): pass")
    assert b"error:" in r.stderr  # the chatter this test keeps away


def test_arrays_at_another_rate(tiny_en):
    x8 = resample(ldc(), SAMPLE_RATE, 8000)
    np.testing.assert_array_equal(load_audio((x8, 8000)), resample(x8, 8000, SAMPLE_RATE))
    right = tiny_en.transcribe(resample(x8, 8000, SAMPLE_RATE)).text
    assert tiny_en.transcribe((x8, 8000)).text == right
    assert tiny_en.transcribe(x8, sample_rate=8000).text == right
    assert tiny_en.transcribe([x8, (x8, 8000)], sample_rate=8000)[1].text == right
    assert tiny_en.transcribe(x8).text != right  # a bare array is 16 kHz: twice as fast, other words
    with pytest.raises(AudioError, match="sample rate must be a positive int"):
        load_audio((x8, 8000.5))
    with pytest.raises(OptionError, match="sample_rate"):
        tiny_en.transcribe(x8, sample_rate=0)
