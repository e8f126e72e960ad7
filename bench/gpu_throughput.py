"""GPU decode throughput: whisperfast vs transformers, random fp16 weights of real Whisper shapes.

Protocol (issue: CUDA-graph decode step): batch 1 and 8, 64 new tokens forced (EOT suppressed), timed
from log-mel to tokens including the encoder pass, median of >= 3 runs after warm-up; cold start = the
first call (compile + CUDA-graph capture included). Each engine runs in its own process.

    python bench/gpu_throughput.py --configs .gpu/configs [--shapes tiny large-v3 ...] [--batches 1 8]

`--configs` holds one directory per shape with config.json, generation_config.json and tokenizer.json
(`python bench/gpu_prepare.py` writes them; the weights are drawn at random on the GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

N_TOKENS = 64
SHAPES = ["tiny", "large-v3", "large-v3-turbo", "distil-large-v3"]


def random_init_(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator(device="cuda").manual_seed(seed)
    for name, p in model.named_parameters():
        if "layer_norm" in name:
            p.data.fill_(1.0 if name.endswith("weight") else 0.0)
        else:
            p.data.normal_(0.0, 0.02, generator=g)


def whisperfast_runner(cfg_dir: Path, batch: int, compile: bool):
    from whisperfast.api import WhisperModel
    from whisperfast.decode.options import DecodingOptions
    from whisperfast.decode.window import decode_windows
    from whisperfast.model.load import read_config
    from whisperfast.model.whisper import Whisper
    from whisperfast.tokenizer import Tokenizer

    config = read_config(cfg_dir)
    with torch.device("meta"):
        net = Whisper(config)
    net = net.to_empty(device="cuda")
    random_init_(net)
    net = net.half().eval().requires_grad_(False)
    net.prepare_decoder(column_major=False)  # as load_whisper does on CUDA (fused q/k/v)
    tok = Tokenizer.from_file(cfg_dir / "tokenizer.json", config.num_languages if config.multilingual else 0)
    model = WhisperModel(net, tok, cfg_dir, compile=compile)
    opts = DecodingOptions(language="en" if tok.multilingual else None, without_timestamps=True,
                           sample_len=N_TOKENS, suppress_tokens=(-1, tok.eot))
    mel = torch.randn(batch, config.n_mels, 3000, device="cuda", dtype=torch.float16)

    def run():
        out = decode_windows(model.engine, mel, opts)
        torch.cuda.synchronize()
        assert all(len(r.tokens) == N_TOKENS for r in out), [len(r.tokens) for r in out]
    return run


def transformers_runner(cfg_dir: Path, batch: int, static: bool):
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(cfg_dir)
    with torch.device("cuda"):
        model = WhisperForConditionalGeneration(config).half().eval()
    random_init_(model)
    model.generation_config = GenerationConfig.from_pretrained(cfg_dir)
    mel = torch.randn(batch, config.num_mel_bins, 3000, device="cuda", dtype=torch.float16)
    kwargs = dict(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, return_timestamps=False)
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(language="en", task="transcribe")
    if static:
        kwargs.update(cache_implementation="static")

    def run():
        with torch.no_grad():
            out = model.generate(mel, **kwargs)
        torch.cuda.synchronize()
        return out
    return run


def measure(engine: str, cfg_dir: Path, batch: int, repeats: int) -> dict:
    build = {"whisperfast": lambda: whisperfast_runner(cfg_dir, batch, compile=True),
             "whisperfast-eager": lambda: whisperfast_runner(cfg_dir, batch, compile=False),
             "transformers-dynamic": lambda: transformers_runner(cfg_dir, batch, static=False),
             "transformers-static": lambda: transformers_runner(cfg_dir, batch, static=True)}[engine]
    run = build()
    t = time.perf_counter()
    run()
    cold = time.perf_counter() - t
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"engine": engine, "batch": batch, "cold_s": cold, "median_s": med, "tok_s": batch * N_TOKENS / med}


def child(args) -> None:
    res = measure(args.engine, Path(args.configs) / args.shape, args.batch, args.repeats)
    print("RESULT " + json.dumps({"shape": args.shape, **res}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=".gpu/configs")
    p.add_argument("--shapes", nargs="+", default=SHAPES)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--engines", nargs="+", default=["whisperfast", "transformers-static", "transformers-dynamic"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=int, default=240, help="seconds per engine/shape/batch process")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine"), p.add_argument("--shape"), p.add_argument("--batch", type=int)
    args = p.parse_args()
    if args.child:
        return child(args)
    rows = []
    for shape in args.shapes:
        for batch in args.batches:
            for engine in args.engines:
                cmd = [sys.executable, __file__, "--child", "--engine", engine, "--shape", shape, "--batch",
                       str(batch), "--configs", args.configs, "--repeats", str(args.repeats)]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
                    if lines:
                        rows.append(json.loads(lines[-1][7:]))
                    else:
                        err = (done.stderr.strip().splitlines() or ["?"])[-1][:160]
                        rows.append({"shape": shape, "batch": batch, "engine": engine, "error": f"rc {done.returncode}: {err}"})
                except subprocess.TimeoutExpired:
                    rows.append({"shape": shape, "batch": batch, "engine": engine, "error": "timeout"})
                r = rows[-1]
                print(f"{shape:16s} b={batch:<2d} {engine:22s} " + (
                    f"{r['tok_s']:9.0f} tok/s  median {r['median_s'] * 1e3:8.1f} ms  cold {r['cold_s']:6.1f} s"
                    if "error" not in r else r["error"]), flush=True)
    print("\nratios (whisperfast tok/s over each transformers mode, same GPU, same run):")
    for shape in args.shapes:
        for batch in args.batches:
            got = {r["engine"]: r for r in rows if r["shape"] == shape and r["batch"] == batch and "error" not in r}
            if "whisperfast" not in got:
                continue
            parts = [f"vs {e}: {got['whisperfast']['tok_s'] / got[e]['tok_s']:.2f}x"
                     for e in got if e.startswith("transformers")]
            print(f"  {shape:16s} b={batch:<2d} {got['whisperfast']['tok_s']:8.0f} tok/s  " + "  ".join(parts))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(0), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
