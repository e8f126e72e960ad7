"""GPU decode throughput: whisperfast vs transformers, random weights of real Whisper shapes.

Protocol: batch 1 and 8, 64 new tokens forced (EOT suppressed), timed from log-mel to tokens including
the encoder pass, median of >= 3 runs after warm-up; cold start = the first call (compile + CUDA-graph
capture included). One process per engine and shape (its batches run in it, so a cut process keeps the
rows it finished). fp16 on CUDA; fp32 on CPU, where it only proves the plumbing (`GPU_CHECK_DRY_RUN`).

Engines: whisperfast (compiled step), whisperfast-eager, whisperfast-int8 (the compiled path with the
decoder's weight-only int8, as `load_model(..., dtype="int8")` builds it: activations stay fp16 on CUDA,
fp32 on CPU), transformers-static and transformers-dynamic (its static or dynamic KV cache). Every row
carries "dtype": "int8" for whisperfast-int8, else the float dtype of weights and activations.

    python bench/gpu_throughput.py --configs .gpu/configs --jsonl out.jsonl \\
        --jobs large-v3:whisperfast large-v3:transformers-static --batches 1 8 [--deadline EPOCH_S]

Every result row is appended to `--jsonl` the moment its child prints it. whisperfast rows also carry a
breakdown from CUDA events (encoder, prefill, per-token step) and torch's counters (graph breaks,
recompiles, cudagraph skips: all must be 0). `--configs` holds one directory per shape with config.json,
generation_config.json and tokenizer.json (`python bench/gpu_prepare.py` writes them).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

N_TOKENS = 64  # --tokens
ENGINES = ["whisperfast", "whisperfast-eager", "whisperfast-int8", "transformers-static", "transformers-dynamic"]
COMPILED = ("whisperfast", "whisperfast-int8")  # whisperfast engines with the compiled step
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.float16 if DEVICE == "cuda" else torch.float32


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed_ms(fn, repeat: int = 1) -> float:
    """Milliseconds per call of `fn`: CUDA events on CUDA (no host sync between calls), else wall clock."""
    sync()
    if DEVICE == "cuda":
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(repeat):
            fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / repeat
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) * 1e3 / repeat


def random_init_(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    for name, p in model.named_parameters():
        if "layer_norm" in name:
            p.data.fill_(1.0 if name.endswith("weight") else 0.0)
        else:
            p.data.normal_(0.0, 0.02, generator=g)


class Recompiles(logging.Handler):
    """Counts dynamo's recompile messages (torch has no counter for them)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.n = 0
        torch._logging.set_logs(recompiles=True)
        logging.getLogger("torch._dynamo.guards.__recompiles").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


def compile_counters(recompiles: Recompiles) -> dict:
    from torch._dynamo.utils import counters

    return {"graph_breaks": sum(counters["graph_break"].values()), "recompiles": recompiles.n,
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
            "graphs": counters["stats"]["unique_graphs"]}


def whisperfast_model(cfg_dir: Path, compile: bool, int8: bool = False):
    """The net of config.json with random weights; `int8`: the decoder's weight-only int8 (model/quant.py),
    quantised from the random float weights as load_whisper quantises a checkpoint's, activations in DTYPE."""
    from whisperfast.api import WhisperModel
    from whisperfast.model.load import read_config
    from whisperfast.model.whisper import Whisper
    from whisperfast.tokenizer import Tokenizer

    config = read_config(cfg_dir)
    with torch.device("meta"):
        net = Whisper(config)
    net = net.to_empty(device=DEVICE)
    random_init_(net)
    net = net.to(DTYPE).eval().requires_grad_(False)
    net.prepare_decoder(column_major=DEVICE == "cpu", int8=int8)  # as load_whisper does (fused q/k/v, int8)
    tok = Tokenizer.from_file(cfg_dir / "tokenizer.json", config.num_languages if config.multilingual else 0)
    return WhisperModel(net, tok, cfg_dir, compile=compile)


def whisperfast_runner(model, batch: int):
    from whisperfast.decode.options import DecodingOptions

    tok = model.tokenizer
    opts = DecodingOptions(language="en" if tok.multilingual else None, without_timestamps=True,
                           sample_len=N_TOKENS, suppress_tokens=(-1, tok.eot))
    mel = torch.randn(batch, model.config.n_mels, 3000, device=DEVICE, dtype=DTYPE)

    def run():
        out = model.engine.encode(mel, sample_len=N_TOKENS).decode(opts)
        sync()
        assert all(len(r.tokens) == N_TOKENS for r in out), [len(r.tokens) for r in out]

    def breakdown() -> dict:
        """ms of the encoder (+ cross k/v), the prefill and one step, on the warm path of `run`."""
        from whisperfast.decode.rows import Row

        e = model.engine
        sess = e.encode(mel, sample_len=N_TOKENS).sess
        sot = tuple(tok.sot_sequence(opts.language, "transcribe", False))
        rows = [Row(sot, 0, 0.0, False)] * batch
        with torch.no_grad():
            enc = timed_ms(lambda: e.encode(mel, sample_len=N_TOKENS), 3)
            pre = timed_ms(lambda: e.prefill(sess, rows, opts, False), 3)
            step = e.step_fn(sess, False)
            e.prefill(sess, rows, opts, False)
            per = timed_ms(lambda: step(model.model.decoder, sess), N_TOKENS - 1)
        return {"encoder_ms": enc, "prefill_ms": pre, "step_ms": per}
    return run, breakdown


def transformers_runner(cfg_dir: Path, batch: int, static: bool):
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(cfg_dir)
    with torch.device(DEVICE):
        model = WhisperForConditionalGeneration(config).to(DTYPE).eval()
    random_init_(model)
    model.generation_config = GenerationConfig.from_pretrained(cfg_dir)
    mel = torch.randn(batch, config.num_mel_bins, 3000, device=DEVICE, dtype=DTYPE)
    kwargs = dict(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, return_timestamps=False)
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(language="en", task="transcribe")
    if static:
        kwargs.update(cache_implementation="static")

    def run():
        with torch.no_grad():
            out = model.generate(mel, **kwargs)
        sync()
        return out
    return run


def measure(run, batch: int, repeats: int) -> dict:
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
    return {"batch": batch, "cold_s": cold, "median_s": med, "tok_s": batch * N_TOKENS / med}


def child(args) -> None:
    """One engine and shape, every batch in turn; a RESULT line per batch as soon as it is measured."""
    cfg_dir, recompiles = Path(args.configs) / args.shape, Recompiles()
    wf = args.engine.startswith("whisperfast")
    int8 = args.engine == "whisperfast-int8"
    model = whisperfast_model(cfg_dir, compile=args.engine in COMPILED, int8=int8) if wf else None
    dtype = "int8" if int8 else str(DTYPE).removeprefix("torch.")
    for batch in args.batches:
        if wf:
            run, breakdown = whisperfast_runner(model, batch)
            row = measure(run, batch, args.repeats)
            row.update(breakdown())
        else:
            row = measure(transformers_runner(cfg_dir, batch, args.engine == "transformers-static"), batch,
                          args.repeats)
        row.update(compile_counters(recompiles))
        print("RESULT " + json.dumps({"shape": args.shape, "engine": args.engine, "dtype": dtype, "device": DEVICE,
                                      **row}),
              flush=True)


def run_job(args, shape: str, engine: str, sink) -> list[dict]:
    """A child process for one (shape, engine); rows are appended to `sink` as they come."""
    timeout = args.timeout if args.deadline is None else min(args.timeout, args.deadline - time.time())
    if timeout < 10:
        rows = [{"shape": shape, "engine": engine, "error": "no time left"}]
        sink(rows[0])
        return rows
    cmd = [sys.executable, __file__, "--child", "--engine", engine, "--shape", shape, "--configs", args.configs,
           "--repeats", str(args.repeats), "--tokens", str(args.tokens), "--batches", *map(str, args.batches)]
    rows: list[dict] = []
    with tempfile.TemporaryFile("w+") as log:  # stderr to a file: a full pipe would stall the child
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        for line in proc.stdout:  # streamed: a row exists the moment the child prints it
            if line.startswith("RESULT "):
                rows.append(json.loads(line[7:]))
                sink(rows[-1])
        proc.wait()
        watchdog.cancel()
        log.seek(0)
        err = log.read().strip().splitlines()
    if proc.returncode == -9:  # the watchdog
        err = [f"killed after {timeout:.0f} s (timeout)"]
    done = {r["batch"] for r in rows}
    for b in args.batches:
        if b not in done:
            rows.append({"shape": shape, "engine": engine, "batch": b,
                         "error": f"rc {proc.returncode}: {(err or ['?'])[-1][:200]}"})
            sink(rows[-1])
    return rows


def show(r: dict) -> str:
    head = f"{r['shape']:16s} b={r.get('batch', '?')!s:<2s} {r['engine']:21s} {r.get('dtype', ''):7s} "
    if "error" in r:
        return head + r["error"]
    s = head + f"{r['tok_s']:9.0f} tok/s  median {r['median_s'] * 1e3:8.1f} ms  cold {r['cold_s']:6.1f} s"
    if "step_ms" in r:
        s += (f"  | enc {r['encoder_ms']:.2f} ms  prefill {r['prefill_ms']:.2f} ms  step {r['step_ms']:.3f} ms"
              f"  | breaks {r['graph_breaks']} recompiles {r['recompiles']} cg-skips {r['cudagraph_skips']}")
    return s


def main() -> None:
    global N_TOKENS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=".gpu/configs")
    p.add_argument("--jobs", nargs="+", default=[f"{s}:{e}" for s in ("large-v3", "large-v3-turbo",
                   "distil-large-v3", "tiny") for e in ("whisperfast", "transformers-static")],
                   help="shape:engine, run in this order")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", type=int, default=N_TOKENS, help="new tokens forced per row")
    p.add_argument("--timeout", type=float, default=300, help="seconds per (shape, engine) process")
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds: no process runs past it")
    p.add_argument("--jsonl", default=None, help="append each result row here as one JSON line")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=ENGINES), p.add_argument("--shape")
    args = p.parse_args()
    N_TOKENS = args.tokens
    if args.child:
        return child(args)

    def sink(row: dict) -> None:
        print(show(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")

    rows = [r for job in args.jobs for r in run_job(args, *job.split(":"), sink)]
    print("\nratios (whisperfast tok/s over each other engine, same device, same run):")
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for batch in args.batches:
            got = {r["engine"]: r for r in rows if r["shape"] == shape and r.get("batch") == batch and "error" not in r}
            if "whisperfast" in got:
                parts = [f"vs {e}: {got['whisperfast']['tok_s'] / got[e]['tok_s']:.2f}x" for e in got if e != "whisperfast"]
                print(f"  {shape:16s} b={batch:<2d} {got['whisperfast']['tok_s']:8.0f} tok/s  " + "  ".join(parts))


if __name__ == "__main__":
    main()
