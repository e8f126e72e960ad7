"""Engines timed each in its own process, in interleaved rounds (a bench helper, not a test).

In one process, engines disturb each other: after faster-whisper ran, whisperfast's beam-5 jfk run took 0.97 s
instead of 0.76 s on 2 cores (ctranslate2 brings its own OpenMP runtime, whose workers stay around and
spin), and importing openai-whisper alongside did the same. Here each engine lives in a spawned worker
process that builds it once (`build(name, opts)` -> a function of the input), and the parent asks the workers
in turn, round after round, so a slow spell of a shared machine still hits every engine alike. Before each
timed call the parent idles SETTLE seconds: the previous worker's OpenMP threads spin-wait for a while after
their last parallel region, and on 2 cores that would bill the next engine for them.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable, Sequence

SETTLE = 0.5


def installed(modules: dict[str, str]) -> list[str]:
    """The engine names (keys) whose module (value) this environment can import; the others said skipped."""
    names = [name for name, module in modules.items() if importlib.util.find_spec(module) is not None]
    for name in modules.keys() - set(names):
        print(f"{name}: {modules[name]} not installed, skipped", file=sys.stderr)
    return names


def _serve(build: Callable, name: str, opts: dict, conn) -> None:
    fn = build(name, opts)
    conn.send("ready")
    while (x := conn.recv()) is not None:
        t = time.perf_counter()
        out = fn(x)
        conn.send((time.perf_counter() - t, out))


class Workers:
    """One spawned process per engine name; `call(name, x)` -> (seconds inside the worker, output)."""

    def __init__(self, build: Callable, names: Sequence[str], opts: dict):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = {}, {}
        for name in names:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(build, name, opts, child), daemon=True)
            p.start()
            self.conns[name], self.procs[name] = parent, p
        for name in names:
            if self.conns[name].recv() != "ready":
                raise RuntimeError(f"engine {name} did not start")

    def call(self, name: str, x) -> tuple[float, object]:
        self.conns[name].send(x)
        return self.conns[name].recv()

    def close(self) -> None:
        for name, conn in self.conns.items():
            conn.send(None)
            self.procs[name].join(timeout=30)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def interleaved(workers: Workers, x, repeats: int) -> dict[str, tuple[float, object]]:
    """Median seconds and last output per engine: one warm-up call each, then `repeats` rounds in turn."""
    outs = {name: workers.call(name, x)[1] for name in workers.conns}
    times: dict[str, list[float]] = {name: [] for name in workers.conns}
    for _ in range(repeats):
        for name in workers.conns:
            time.sleep(SETTLE)
            t, outs[name] = workers.call(name, x)
            times[name].append(t)
    return {name: (statistics.median(times[name]), outs[name]) for name in workers.conns}
