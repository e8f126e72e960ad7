"""One engine worker per served model: a thread that owns the model and turns requests into streams of the
fixed batch that multi-file `transcribe` uses (`sequential.run_pending`).

A request is a `Job`: its plan (checked by `make_plan`), its audio, and a callback `deliver(kind, value)`
that receives ("segments", [Segment]) after each of its windows, then ("done", TranscriptionResult) or
("error", WhisperfastError | Exception). The worker takes the oldest waiting job, and with it every job
waiting behind it whose options share a batch (the same `batch_key`: everything but the language and the
prompt, which the seek loop keeps per stream); a job that arrives while they decode joins at the next window
boundary if a slot is free and no job of other options waits ahead of it (jobs of other options queue, in
order, and run when the batch drains). Each job's result is the one `model.transcribe(audio, **same options)`
gives: rows of a batch are independent (per-row prompts, temperatures, seeds).

`cancel(job)` drops a waiting job, or frees an active job's slot at the next window boundary. `close()`
refuses new jobs, lets the worker finish the ones it has, and joins the thread. Torch work runs only on
this thread; `stats` (windows, rows, most rows in one window, windows shared by two or more requests) is
read without a lock (ints, for /health).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import AudioError, WhisperfastError
from .plan import Plan
from .sequential import Stream, result_of, run_pending

log = logging.getLogger("whisperfast.server")


def batch_key(plan: Plan) -> str:
    """Jobs with equal keys share a batch: their plans differ at most in language and initial prompt."""
    return repr(dataclasses.replace(plan, options=dataclasses.replace(plan.options, language=None),
                                    initial_prompt=None, batch_size=1, on_error="skip"))


class Closed(WhisperfastError):
    """The worker no longer takes jobs (the server is shutting down)."""


@dataclass(eq=False)
class Job:
    plan: Plan
    audio: object                                   # what `open_stream` reads: an array, bytes or a path
    deliver: Callable[[str, object], None]
    key: str = ""
    index: int = -1
    cancelled: bool = False
    stream: Stream | None = field(default=None, repr=False)

    def __post_init__(self):
        self.key = self.key or batch_key(self.plan)


@dataclass
class Stats:
    windows: int = 0      # windows decoded (each a batch of rows)
    rows: int = 0         # rows decoded, summed over windows
    max_rows: int = 0     # most rows in one window
    shared: int = 0       # windows whose rows came from two or more requests
    jobs: int = 0         # jobs finished (done, failed or cancelled)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Worker:
    """The thread that owns `model` and decodes jobs in batches of `batch_size` streams."""

    def __init__(self, model, name: str, batch_size: int = 8):
        self.model, self.name, self.batch_size = model, name, batch_size
        self.stats = Stats()
        self._cv = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: dict[int, Job] = {}
        self._closed = False
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name=f"whisperfast-worker-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closed:
                raise Closed("the server is shutting down and takes no new requests")
            job.index = next(self._ids)
            self._waiting.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """Drop `job`: taken out of the queue, or its slot freed at the next window boundary."""
        with self._cv:
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
                self.stats.jobs += 1

    @property
    def load(self) -> tuple[int, int]:
        """(jobs waiting, jobs decoding)."""
        return len(self._waiting), len(self._active)

    def close(self, timeout: float | None = None) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    # --- the worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if not self._waiting:
                    return
                first = self._waiting[0]
            self._serve(first)

    def _serve(self, first: Job) -> None:
        """Decode `first`'s batch until no job of its key is active or next in line."""
        plan = dataclasses.replace(first.plan, options=dataclasses.replace(first.plan.options, language=None),
                                   initial_prompt=None, batch_size=self.batch_size, on_error="skip")
        try:
            for s, segs in run_pending(self.model, _Pending(self, first.key), plan, on_window=self._count):
                job = self._active[s.index]
                if segs is None:
                    del self._active[s.index]
                    self._finish(job, result_of(self.model, s))
                elif job.cancelled:
                    s.seek = s.content_frames  # retired at the next window boundary
                elif segs:
                    self._deliver(job, "segments", segs)
        except Exception as e:  # noqa: BLE001 -- a bug or an out-of-memory fails this batch, not the server
            log.exception("worker %s: a batch failed", self.name)
            for job in self._active.values():
                self._deliver(job, "error", e)
            self._active.clear()

    def _take(self, key: str) -> Job | None:
        """The next waiting job if it shares the batch (`key`); called by `fill` at a window boundary."""
        with self._cv:
            if not self._waiting or self._waiting[0].key != key:
                return None
            job = self._waiting.popleft()
            self._active[job.index] = job
            return job

    def _finish(self, job: Job, result) -> None:
        self.stats.jobs += 1
        if job.cancelled:
            return
        if result.error is not None:
            self._deliver(job, "error", AudioError(result.error))
        else:
            self._deliver(job, "done", result)

    def _deliver(self, job: Job, kind: str, value) -> None:
        try:
            job.deliver(kind, value)
        except Exception:  # noqa: BLE001 -- the client's side is gone (its event loop closed)
            log.debug("worker %s: job %d could not be told %s", self.name, job.index, kind)

    def _count(self, streams: list[Stream]) -> None:
        st = self.stats
        st.windows += 1
        st.rows += len(streams)
        st.max_rows = max(st.max_rows, len(streams))
        st.shared += len({s.index for s in streams}) > 1
        log.debug("worker %s: window of %d rows (jobs %s)", self.name, len(streams), [s.index for s in streams])


class _Pending:
    """The iterator `fill` polls: (index, audio, plan) of the next job of the batch's key, or nothing for now
    (it stops and may have more at the next poll)."""

    def __init__(self, worker: Worker, key: str):
        self.worker, self.key = worker, key

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, object, Plan]:
        job = self.worker._take(self.key)
        if job is None:
            raise StopIteration
        return job.index, job.audio, job.plan
