"""Batch transcription on Ray Data vs one process: files/s and audio-hours per hour (not a test).

    python bench/ray_batch.py [--model tiny.en] [--copies 2] [--batch_size 4] [--workers 1 2] [--gpu_rate R]

The corpus: the tests/data clips, each `--copies` times (7 files, 143 s of audio per copy; long and short).
Measured on this machine, each with 1 torch thread per worker (the CPU layout of a Ray node: one core each):
  decode      whisperfast.distributed.worker.read_audio on every file (what the CPU decode stage does)
  plain       model.transcribe(paths, batch_size=B) in this process, the model loaded before the clock starts
  ray N       transcribe_dataset(paths, out, num_workers=N, batch_size=B) on a local Ray (num_cpus = N), started
              before the clock; the wall time includes the N workers' start and model load
Texts of every configuration are checked equal to plain's (same files, same options).

Then the projection for N GPUs (on paper, from one GPU's measured rate R in audio-hours per hour: pass --gpu_rate,
measured as `transcribe_dataset(..., num_workers=1, num_gpus_per_worker=1)` on one GPU):
  rate(N) = N * R, if (1) the decode stage keeps up: N * R / D CPU cores for decoding (D = the decode rate below,
  audio-hours per core-hour); (2) storage delivers N * R audio-hours/h (about 58 MB per hour of 128 kbps MP3,
  115 MB of 16 kHz FLAC); (3) the corpus has many more files than N * batch_size, so no worker idles at the tail
  (the tail costs at most one file's transcription time); (4) the driver keeps up: it parses and writes one JSON
  row per file (~2 KB; thousands of rows/s); (5) each worker's model load (seconds) is small against the job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
CLIPS = ["sonnet001.mp3", "multilingual.mp3", "jfk.flac", "61-70968-0000.flac", "stereo_diarization.wav",
         "ru.wav", "LDC93S1.wav"]
if (ROOT / "tests" / ".models").is_dir():
    os.environ.setdefault("WHISPERFAST_CACHE", str(ROOT / "tests" / ".models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def corpus(d: Path, copies: int) -> list[str]:
    out = []
    for k in range(copies):
        for c in CLIPS:
            out.append(str(d / f"{k}-{c}"))
            shutil.copy(DATA / c, out[-1])
    return out


def line(name: str, files: int, audio: float, wall: float) -> None:
    print(f"| {name} | {files} | {audio:.0f} | {wall:.1f} | {files / wall:.3f} | {audio / wall:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gpu_rate", type=float, default=None, help="one GPU's measured audio-hours per hour")
    a = ap.parse_args()

    import torch

    import whisperfast
    from whisperfast.distributed import transcribe_dataset
    from whisperfast.distributed.worker import read_audio

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ray_batch_"))
    try:
        paths = corpus(tmp, a.copies)
        t = time.perf_counter()
        audio = sum(len(read_audio(p)) for p in paths) / 16000
        decode = time.perf_counter() - t
        print(f"{len(paths)} files, {audio:.0f} s of audio; decode stage: {audio / decode:.0f} audio-hours per "
              f"core-hour ({decode:.2f} s for all)\n")
        print("| run | files | audio s | wall s | files/s | audio-hours/hour |\n|---|---|---|---|---|---|")
        model = whisperfast.load_model(a.model, device="cpu")
        model.transcribe(str(DATA / "LDC93S1.wav"))  # warm-up; a worker's first batch has none (counted in)
        print(f"(load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n", flush=True)
        t = time.perf_counter()
        plain = model.transcribe(paths, batch_size=a.batch_size)
        line(f"plain model.transcribe(list, batch_size={a.batch_size}), 1 thread", len(paths), audio,
             time.perf_counter() - t)
        texts = {p: r.text for p, r in zip(paths, plain)}
        import ray

        for n in a.workers:
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
            try:
                out = tmp / f"out{n}.jsonl"
                s = transcribe_dataset(paths, out, model=a.model, batch_size=a.batch_size, num_workers=n, threads=1)
                line(f"transcribe_dataset, {n} CPU worker(s), batch_size={a.batch_size} (load average "
                     f"{os.getloadavg()[0]:.1f})", len(paths), audio, s.seconds)
                import json

                rows = [json.loads(x) for x in out.read_text().splitlines()]
                same = sum(r["text"] == texts[r["path"]] for r in rows)
                print(f"|   texts equal to plain: {same}/{len(paths)} | | | | | |", flush=True)
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_core = audio / decode
    print("\nN GPUs on paper (assumptions in this file's docstring):")
    rate = a.gpu_rate
    for n in (1, 2, 4, 8, 16, 64):
        if rate is None:
            print(f"  N={n:3d}: {n} x R audio-hours/hour; decode needs {n} x R / {per_core:.0f} CPU cores")
        else:
            print(f"  N={n:3d}: {n * rate:,.0f} audio-hours/hour; decode needs {n * rate / per_core:.1f} CPU cores")


if __name__ == "__main__":
    main()
