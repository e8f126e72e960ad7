"""CPU end-to-end latency on jfk.flac with real weights: whisperfast (float32 and int8) vs transformers vs
faster-whisper (CTranslate2, float32 and int8), same cores, same run, each engine in its own process
(bench/isolate.py), interleaved; ratios printed.

    python bench/cpu_latency.py [--model tiny.en|base] [--audio tests/data/jfk.flac] [--threads 1] [--repeats 9]
                                [--beam_size 5]
                                [--engines whisperfast,whisperfast-int8,transformers,faster-whisper,faster-whisper-int8]

Settings of the issue's table (#13): greedy, temperature 0, no conditioning on previous text, fallback
thresholds off, timestamps on, English for .en models (--beam_size 5: the same with beam search, the issue's
(#12) beam row). Every engine's timed call starts from the file path and includes decoding the audio.
faster-whisper runs a CTranslate2 copy of the same checkpoint (converted once with ctranslate2's TransformersConverter into
$WHISPERFAST_CACHE/<model>-fw) with cpu_threads = --threads; torch gets --threads too (whisperfast's
`threads=`). transformers and faster-whisper are optional (skipped when not installed).
"""

from __future__ import annotations

import argparse

import torch

MODULES = {"whisperfast": "whisperfast", "whisperfast-int8": "whisperfast", "transformers": "transformers",
           "faster-whisper": "faster_whisper", "faster-whisper-int8": "faster_whisper"}  # engine -> module it needs
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


def build(name: str, opts: dict):
    """In the engine's own worker process (bench/isolate.py): audio path -> text, with the issue's settings
    (greedy, or beam `beam_size` with --beam_size) and English."""
    threads, model_name, beam = opts["threads"], opts["model"], opts["beam_size"]
    torch.set_num_threads(threads)
    from whisperfast.audio import load_audio
    from whisperfast.model.hub import resolve

    ckpt = resolve(model_name)
    language = "en"  # the clip's language for every engine (no detection pass)
    search = {"beam_size": beam} if beam > 1 else {}
    if name.startswith("whisperfast"):
        import whisperfast

        model = whisperfast.load_model(ckpt, device="cpu", dtype="int8" if name.endswith("int8") else "float32",
                                       threads=threads)
        return lambda path: model.transcribe(path, language=language, logprob_threshold=None, **GREEDY,
                                             **search).text
    if name == "transformers":
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        hf = WhisperForConditionalGeneration.from_pretrained(str(ckpt), dtype=torch.float32).eval()
        proc = WhisperProcessor.from_pretrained(str(ckpt))

        def run_hf(path):
            feats = proc(load_audio(path), sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                ids = hf.generate(feats, return_timestamps=True, num_beams=beam)
            return proc.batch_decode(ids, skip_special_tokens=True)[0]
        return run_hf
    from faster_whisper import WhisperModel

    fw = WhisperModel(ct2_copy(ckpt, model_name), device="cpu",
                      compute_type="int8" if name.endswith("int8") else "float32", cpu_threads=threads)

    def run_fw(path):
        segs, _ = fw.transcribe(load_audio(path), beam_size=beam, language=language, log_prob_threshold=None,
                                **GREEDY)
        return "".join(s.text for s in segs)
    return run_fw


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from isolate import Workers, installed, interleaved

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--audio", default="tests/data/jfk.flac")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--beam_size", type=int, default=1, help="beam search of this width in every engine (1: greedy)")
    p.add_argument("--engines", default=",".join(MODULES))
    args = p.parse_args()
    unknown = set(args.engines.split(",")) - MODULES.keys()
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(MODULES)}")
    names = installed({name: MODULES[name] for name in args.engines.split(",")})
    opts = {"threads": args.threads, "model": args.model, "beam_size": args.beam_size}
    if any(n.startswith("faster-whisper") for n in names):  # converted once, here: not by two workers at once
        from whisperfast.model.hub import resolve

        ct2_copy(resolve(args.model), args.model)
    with Workers(build, names, opts) as workers:
        results = interleaved(workers, args.audio, args.repeats)
    search = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}"
    print(f"{args.model}, {args.audio}, {search}, {args.threads} threads, median of {args.repeats} (each engine in "
          "its own process, interleaved):")
    base = next(iter(results.values()))[0]
    for name, (t, text) in results.items():
        print(f"  {name:20s} {t * 1e3:8.1f} ms   {t / base:5.2f}x of the first row   {str(text)[:60]!r}")
    for ours, theirs in (("whisperfast", "faster-whisper"), ("whisperfast-int8", "faster-whisper-int8")):
        if ours in results and theirs in results:
            print(f"  {theirs} / {ours}: {results[theirs][0] / results[ours][0]:.2f} (above 1: whisperfast faster)")


if __name__ == "__main__":
    main()
