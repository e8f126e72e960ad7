"""Silero VAD speed on CPU: whisperfast's pure-torch module vs silero-vad's ONNX model through onnxruntime.

    python bench/vad.py [--minutes 60] [--threads 2] [--rounds 3]

The tests/data clips at 16 kHz, concatenated and repeated to `--minutes` of audio, go through
`whisperfast.vad.speech_timestamps` (probabilities streamed 2048 frames per forward + faster-whisper's region
rule) and, for a ratio in the same run, faster-whisper's `get_speech_timestamps` (its bundled ONNX v6 model,
one frame batch per 10,000 frames, 1 onnxruntime thread as faster-whisper sets it; skipped when not installed).
Rounds are interleaved; the median is printed as minutes of audio per wall second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whisperfast.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisperfast.vad import speech_timestamps  # noqa: E402


def audio_of(minutes: float) -> np.ndarray:
    clips = [load_audio(str(p)) for p in sorted((ROOT / "tests" / "data").iterdir()) if p.suffix in (".flac", ".wav", ".mp3")]
    one = np.concatenate(clips)
    n = int(minutes * 60 * SAMPLE_RATE)
    return np.tile(one, -(-n // len(one)))[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    audio = audio_of(a.minutes)
    engines = {"whisperfast": lambda: speech_timestamps(audio)}
    try:
        from faster_whisper.vad import get_speech_timestamps

        engines["faster-whisper"] = lambda: get_speech_timestamps(audio)
    except ImportError:
        print("faster-whisper not installed: skipped")
    short = audio[: 10 * SAMPLE_RATE]
    speech_timestamps(short)  # warm-up: model loads
    if "faster-whisper" in engines:
        get_speech_timestamps(short)
    times: dict[str, list[float]] = {k: [] for k in engines}
    regions = {}
    for _ in range(a.rounds):
        for name, run in engines.items():
            t = time.perf_counter()
            regions[name] = run()
            times[name].append(time.perf_counter() - t)
    print(f"{a.minutes:g} min of audio, {a.threads} torch thread(s), median of {a.rounds} interleaved rounds")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:15s} {t:7.2f} s   {a.minutes / t:7.1f} min of audio per s   {len(regions[name])} regions")


if __name__ == "__main__":
    main()
