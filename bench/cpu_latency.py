"""CPU end-to-end latency on jfk.flac with real weights: whisperfast (float32 and int8) vs transformers vs
faster-whisper (CTranslate2, float32 and int8), same cores, same process, same run; ratios printed.

    python bench/cpu_latency.py [--model tiny.en|base] [--audio tests/data/jfk.flac] [--threads 1] [--repeats 9]
                                [--engines whisperfast,whisperfast-int8,transformers,faster-whisper,faster-whisper-int8]

Settings of the issue's table (#13): greedy, temperature 0, no conditioning on previous text, fallback
thresholds off, timestamps on, English for .en models. All engines get the same 16 kHz samples (loading and
resampling the file is timed for whisperfast only, as its end-to-end path includes it). faster-whisper runs a
CTranslate2 copy of the same checkpoint (converted once with ctranslate2's TransformersConverter into
$WHISPERFAST_CACHE/<model>-fw) with cpu_threads = --threads; torch gets --threads too (whisperfast's
`threads=`). transformers and faster-whisper are optional (skipped when not installed).
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


GREEDY = dict(temperature=0.0, condition_on_previous_text=False, compression_ratio_threshold=None,
              no_speech_threshold=None)


def ct2_copy(ckpt, name: str) -> str:
    """A CTranslate2 (faster-whisper) directory of the HF checkpoint `ckpt`, converted once (float32)."""
    import os
    import shutil
    from pathlib import Path

    from ctranslate2.converters import TransformersConverter

    out = Path(os.environ.get("WHISPERFAST_CACHE", Path.home() / ".cache" / "whisperfast")) / f"{name}-fw"
    if not (out / "model.bin").is_file():
        TransformersConverter(str(ckpt), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(out), quantization="float32", force=True)
    for f in ("tokenizer.json", "preprocessor_config.json"):
        if not (out / f).is_file():
            shutil.copy(Path(ckpt) / f, out / f)
    return str(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--audio", default="tests/data/jfk.flac")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--engines", default="whisperfast,whisperfast-int8,transformers,faster-whisper,faster-whisper-int8")
    args = p.parse_args()
    want = args.engines.split(",")
    torch.set_num_threads(args.threads)

    import whisperfast
    from whisperfast.audio import load_audio
    from whisperfast.model.hub import resolve

    ckpt = resolve(args.model)
    audio = load_audio(args.audio)
    language = "en"  # the clip's language for every engine (no detection pass)
    engines = {}
    for name, dtype in (("whisperfast", "float32"), ("whisperfast-int8", "int8")):
        if name in want:
            model = whisperfast.load_model(ckpt, device="cpu", dtype=dtype, threads=args.threads)
            engines[name] = lambda model=model: model.transcribe(args.audio, language=language, logprob_threshold=None,
                                                                 **GREEDY).text

    try:
        if "transformers" not in want:
            raise LookupError
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
    except LookupError:
        pass

    try:
        from faster_whisper import WhisperModel

        for name, compute in (("faster-whisper", "float32"), ("faster-whisper-int8", "int8")):
            if name not in want:
                continue
            fw = WhisperModel(ct2_copy(ckpt, args.model), device="cpu", compute_type=compute, cpu_threads=args.threads)

            def run_fw(fw=fw):
                segs, _ = fw.transcribe(audio, beam_size=1, language=language, log_prob_threshold=None,
                                        **GREEDY)
                return "".join(s.text for s in segs)
            engines[name] = run_fw
    except ImportError:
        print("faster-whisper not installed: skipped")

    results = interleaved(engines, args.repeats)
    print(f"{args.model}, {args.audio}, {args.threads} threads, median of {args.repeats} (engines interleaved):")
    base = next(iter(results.values()))[0]
    for name, (t, text) in results.items():
        print(f"  {name:20s} {t * 1e3:8.1f} ms   {t / base:5.2f}x of the first row   {str(text)[:60]!r}")
    for ours, theirs in (("whisperfast", "faster-whisper"), ("whisperfast-int8", "faster-whisper-int8")):
        if ours in results and theirs in results:
            print(f"  {theirs} / {ours}: {results[theirs][0] / results[ours][0]:.2f} (above 1: whisperfast faster)")


if __name__ == "__main__":
    main()
