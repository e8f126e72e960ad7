"""The engine worker of `whisperfast serve` (whisperfast/server_worker.py) in-process, without HTTP: a job that
arrives while another decodes joins its batch at the next window boundary, results equal `transcribe` alone,
options that cannot share a batch queue, a cancelled job is dropped. Needs no extra."""

from __future__ import annotations

import threading
import time

from conftest import assert_matches, clip

from whisperfast.audio import load_audio
from whisperfast.plan import make_plan
from whisperfast.server_worker import Job, Worker, batch_key

# rows decoded in a batch vs alone: float32 sums in another order (seen: 6e-7); ids and texts exact
FLOAT_TOL = {"avg_logprob": 1e-4, "no_speech_prob": 1e-4}


class Recorder:
    """A job's callback: its events, the order jobs finished in, and an event per finished job."""

    def __init__(self):
        self.events, self.finished, self.cv = {}, [], threading.Condition()

    def job(self, name: str, model, **options) -> Job:
        self.events[name] = []

        def deliver(kind, value):
            with self.cv:
                self.events[name].append((kind, value))
                if kind != "segments":
                    self.finished.append(name)
                self.cv.notify_all()

        return Job(make_plan(model, **options), load_audio(clip(name.split("#")[0])), deliver)

    def wait(self, until, timeout: float = 120) -> None:
        with self.cv:
            assert self.cv.wait_for(until, timeout), (self.finished, {k: len(v) for k, v in self.events.items()})

    def result(self, name: str):
        kind, value = self.events[name][-1]
        assert kind == "done", value
        return value


def test_a_job_joins_a_running_batch_at_the_next_window(tiny_en):
    refs = {n: tiny_en.transcribe(clip(n)) for n in ("multilingual.mp3", "jfk.flac")}
    worker, rec = Worker(tiny_en, "tiny.en", batch_size=2), Recorder()
    try:
        worker.submit(rec.job("multilingual.mp3", tiny_en))  # 60 s: three windows
        rec.wait(lambda: rec.events["multilingual.mp3"])      # its first window is out, the next one decodes
        worker.submit(rec.job("jfk.flac", tiny_en))
        rec.wait(lambda: len(rec.finished) == 2)
    finally:
        worker.close(60)
    # the long file decodes 3 windows; the short one rode along in one of them instead of waiting for a window
    # of its own after the long file (that would be 4 windows, none shared)
    assert sorted(rec.finished) == ["jfk.flac", "multilingual.mp3"]
    assert worker.stats.shared == 1 and worker.stats.windows == 3 and worker.stats.rows == 4, worker.stats
    for name, ref in refs.items():
        assert_matches(rec.result(name).to_dict(), ref.to_dict(), FLOAT_TOL, name)
    streamed = [s for kind, segs in rec.events["multilingual.mp3"][:-1] for s in segs]
    assert [s.to_dict() for s in streamed] == [s.to_dict() for s in rec.result("multilingual.mp3").segments]


def test_other_options_queue_and_a_cancelled_job_is_dropped(tiny_en):
    words = make_plan(tiny_en, word_timestamps=True)
    assert batch_key(words) != batch_key(make_plan(tiny_en))
    assert batch_key(make_plan(tiny_en, initial_prompt="Hi.", language="en")) == batch_key(make_plan(tiny_en))
    worker, rec = Worker(tiny_en, "tiny.en", batch_size=4), Recorder()
    try:
        worker.submit(rec.job("LDC93S1.wav", tiny_en))
        worker.submit(rec.job("jfk.flac", tiny_en, word_timestamps=True))  # cannot share: waits for the batch
        gone = rec.job("61-70968-0000.flac", tiny_en, word_timestamps=True)
        worker.submit(gone)
        worker.cancel(gone)
        rec.wait(lambda: len(rec.finished) == 2)
        time.sleep(0.2)
    finally:
        worker.close(60)
    assert rec.finished == ["LDC93S1.wav", "jfk.flac"] and rec.events["61-70968-0000.flac"] == []
    assert worker.stats.windows == 2 and worker.stats.shared == 0 and worker.stats.jobs == 3, worker.stats
    ref = tiny_en.transcribe(clip("jfk.flac"), word_timestamps=True)
    assert [w.word for s in rec.result("jfk.flac").segments for w in s.words] == [w.word for s in ref.segments
                                                                                    for w in s.words]
