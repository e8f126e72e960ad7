"""What the beam k/v reorder costs per step (not a test): one beam step vs the reorder of every cache slot
vs the reorder of the slots written so far (`beam.written`), tiny.en on CPU, K = 5, one window.

    python bench/beam_reorder.py [--model tiny.en] [--beams 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import whisperfast
from whisperfast.decode.beam import beam_step, pool_of, reorder, written
from whisperfast.decode.options import DecodingOptions
from whisperfast.features import short_form_features
from whisperfast.audio import load_audio


def ms(fn, n: int = 30) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--beams", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--audio", default="tests/data/jfk.flac")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = whisperfast.load_model(a.model, device="cpu")
    K = a.beams
    o = DecodingOptions(beam_size=K)
    with torch.no_grad():
        enc = m.engine.encode(short_form_features([load_audio(a.audio)], m.config.n_mels))
        enc.run([None], o)  # allocates the K-row session and its pool
        sess = enc.rows(K)
        beams = pool_of(m.engine, sess, K, K)
        capacity = sess.cache.layer("self_k", 0).shape[2]
        step = ms(lambda: beam_step(m.model.decoder, sess, beams))
        full = ms(lambda: reorder(sess, beams, capacity))
        rows = [("step (beam update included)", step), (f"reorder, all {capacity} slots", full)]
        for n in (4 + 30, 4 + 60, 4 + 120):
            rows.append((f"reorder, {n} written -> {written(n, capacity)} slots", ms(lambda: reorder(sess, beams, written(n, capacity)))))
    print(f"{a.model}, K={K}, {a.threads} thread(s), torch {torch.__version__}")
    for name, t in rows:
        print(f"  {name:<40} {t:7.3f} ms  ({t / step:5.1%} of a step)")


if __name__ == "__main__":
    main()
