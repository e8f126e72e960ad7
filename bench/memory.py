"""Peak memory (RSS) of long-form featurisation: streamed from the file vs load-then-featurise.

    python bench/memory.py [--minutes 10 60] [--sr 16000] [--channels 1] [--no-model]

Each measurement is a fresh subprocess: import whisperfast, load tiny.en (fp32, CPU; skipped with
--no-model), note the RSS, reset the peak (Linux /proc/self/clear_refs), then featurise and read the peak:
  streamed  features.long_form_features_from_file(path)       (decode -> resample -> STFT in blocks)
  loaded    long_form_features(load_audio(path))              (the whole waveform in memory first)
The audio is the tests/data clips concatenated (at 16 kHz) to N minutes, written to a temporary FLAC at
--sr Hz with --channels channels. The log-mel itself is 80 x 100 frames/s x 4 bytes = 32 KB per second of
audio (the transcript needs it whole); the "above base+mel" column is the featuriser's working memory
(libsndfile, FFT and resampler tables included): constant when streaming, + 3.7 MB per minute of audio
(the float32 samples at 16 kHz) when loading first. Timings use one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MEL_BYTES_PER_S = 80 * 100 * 4


def write_flac(path: Path, minutes: float, sr: int, channels: int) -> float:
    """Concatenate the test clips to `minutes` of audio and write them block by block -> seconds written."""
    import numpy as np
    import soundfile as sf

    from whisperfast.audio import SAMPLE_RATE, load_audio, resample

    clips = [load_audio(p) for p in sorted(DATA.glob("*")) if p.suffix in (".flac", ".wav", ".mp3")]
    if sr != SAMPLE_RATE:
        clips = [resample(c, SAMPLE_RATE, sr) for c in clips]
    need, i = int(minutes * 60 * sr), 0
    with sf.SoundFile(path, "w", sr, channels, format="FLAC", subtype="PCM_16") as f:
        while need > 0:
            x = clips[i % len(clips)][:need]
            f.write(np.repeat(x[:, None], channels, axis=1))
            need, i = need - len(x), i + 1
    return minutes * 60


def _status(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux), or the lifetime peak where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, path: str, model: bool) -> None:
    """One measurement in this process: print {"base_mb", "peak_mb", "seconds", "frames"}."""
    import torch

    from whisperfast.audio import load_audio
    from whisperfast.features import long_form_features, long_form_features_from_file

    torch.set_num_threads(1)  # steadier timings on a shared machine; memory does not depend on it
    if model:
        os.environ.setdefault("WHISPERFAST_CACHE", str(ROOT / "tests" / ".models"))
        import whisperfast
        from whisperfast.model.hub import packaged_model

        whisperfast.load_model(packaged_model("tiny.en"), device="cpu", dtype="float32")
    base = _status("VmRSS")
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from the current RSS: model loading's transients drop out
    t = time.perf_counter()
    if mode == "streamed":
        mel = long_form_features_from_file(path, 80).mel
    elif mode == "loaded":
        mel = long_form_features(load_audio(path), 80)
    else:
        mel = torch.zeros(0)
    seconds = time.perf_counter() - t
    print(json.dumps({"base_mb": base, "peak_mb": _status("VmHWM"), "seconds": seconds, "frames": mel.shape[-1]}))


def measure(mode: str, path: Path, model: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(path)] + ([] if model else ["--no-model"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    p.add_argument("--sr", type=int, default=16000, help="sample rate of the FLAC written")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--no-model", dest="model", action="store_false", help="skip loading tiny.en")
    p.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child, args.model)
    sys.path.insert(0, str(ROOT))
    print(f"RSS after import{' + tiny.en' if args.model else ''}: "
          f"{measure('baseline', DATA / 'LDC93S1.wav', args.model)['base_mb']:.0f} MB; "
          f"audio written at {args.sr} Hz, {args.channels} channel(s)")
    print(f"{'audio':>8} {'file MB':>8} {'mel MB':>7} | {'mode':>9} {'base MB':>8} {'peak MB':>8} {'above base':>10} "
          f"{'above base+mel':>14} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            secs = write_flac(path, minutes, args.sr, args.channels)
            mel_mb = secs * MEL_BYTES_PER_S / 2**20
            for mode in ("streamed", "loaded"):
                r = measure(mode, path, args.model)
                above = r["peak_mb"] - r["base_mb"]
                print(f"{minutes:>6g}min {path.stat().st_size / 2**20:>8.0f} {mel_mb:>7.0f} | {mode:>9} "
                      f"{r['base_mb']:>8.0f} {r['peak_mb']:>8.0f} {above:>10.0f} {above - mel_mb:>14.0f} "
                      f"{r['seconds']:>6.1f}")
            path.unlink()
    print(f"(samples at 16 kHz float32 would be {16000 * 4 * 60 / 2**20:.1f} MB per minute; "
          f"the mel is {MEL_BYTES_PER_S * 60 / 2**20:.2f} MB per minute)")


if __name__ == "__main__":
    main()
