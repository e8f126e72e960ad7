"""Load on `whisperfast serve`: audio seconds transcribed per second and p50 / p95 latency at concurrency 1, 4
and 8, against the same server forced to --batch_size 1, on the same machine in the same run (not a test).

    python bench/serve_load.py [--model tiny.en] [--batch_size 8] [--requests 16] [--device cpu]

Each configuration starts its own server (`python -m whisperfast serve`, 127.0.0.1, a free port) and sends
`--requests` requests over the clips of tests/data (cycled), `concurrency` at a time, with the openai client
(raw HTTP when it is not installed). Prints one line per (batch_size, concurrency) and the throughput
ratio batch_size N / batch_size 1 at each concurrency, plus the server's /health counters (windows, rows,
windows shared by several requests). Run with OMP_NUM_THREADS set as in production.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ["jfk.flac", "LDC93S1.wav", "61-70968-0000.flac", "stereo_diarization.wav", "multilingual.mp3",
         "sonnet001.mp3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, model: str, name: str, data: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n').encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/audio/transcriptions", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = conn.getresponse()
        out = json.loads(r.read())
        assert r.status == 200, out
        return out
    finally:
        conn.close()


def get(port: int, path: str) -> dict | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        return json.loads(r.read()) if r.status == 200 else None
    except OSError:
        return None


def run_load(port: int, model: str, files: list[tuple[str, bytes]], concurrency: int) -> dict:
    def one(item):
        t = time.perf_counter()
        out = post(port, model, *item)
        return time.perf_counter() - t, out["usage"]["seconds"]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, files))
    wall = time.perf_counter() - start
    lat = sorted(d for d, _ in done)
    return {"audio_s_per_s": sum(a for _, a in done) / wall, "p50": statistics.median(lat),
            "p95": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))], "wall": wall}


def serve(args, batch_size: int):
    port = free_port()
    cmd = [sys.executable, "-m", "whisperfast", "serve", "--model", args.model, "--port", str(port),
           "--batch_size", str(batch_size), "--log_level", "warning"] + (["--device", args.device] if args.device else [])
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 300
    while get(port, "/health") is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {cmd}")
        time.sleep(0.5)
    return proc, port


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--device", default=None)
    args = p.parse_args()
    data = {c: (ROOT / "tests" / "data" / c).read_bytes() for c in CLIPS}
    files = [(c, data[c]) for c in (CLIPS * args.requests)[: args.requests]]
    table: dict[tuple[int, int], dict] = {}
    for bs in (1, args.batch_size):
        proc, port = serve(args, bs)
        try:
            post(port, args.model, *files[0])  # warm-up: first allocations (and compiles on CUDA)
            for c in args.concurrency:
                table[bs, c] = r = run_load(port, args.model, files, c)
                print(f"batch_size {bs:2d} concurrency {c:2d}: {r['audio_s_per_s']:7.1f} audio s/s  "
                      f"p50 {r['p50']:6.2f} s  p95 {r['p95']:6.2f} s  wall {r['wall']:6.1f} s", flush=True)
            print(f"  /health: {json.dumps(get(port, '/health')['models'][args.model])}", flush=True)
        finally:
            proc.terminate()
            proc.wait(120)
    for c in args.concurrency:
        ratio = table[args.batch_size, c]["audio_s_per_s"] / table[1, c]["audio_s_per_s"]
        print(f"concurrency {c:2d}: throughput batch_size {args.batch_size} / batch_size 1 = {ratio:.2f}x")
    top = max(args.concurrency)
    print(f"p95 at concurrency {top}, batch {args.batch_size}: {table[args.batch_size, top]['p95']:.2f} s; the "
          f"{args.requests} requests one after another at batch 1 took {table[1, 1]['wall']:.2f} s")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
