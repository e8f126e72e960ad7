"""`whisperfast serve` as a real server on 127.0.0.1, called by the official `openai` client (and raw multipart
for the bad requests the client would not send): every response_format, words, translation, streaming,
errors in OpenAI's shape, a disconnecting stream client, and concurrent requests that share a batch and
each equal `model.transcribe` of that file alone. Skipped only without the `[server]` extra / openai."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="pip install 'whisperfast[server]'")
pytest.importorskip("uvicorn", reason="pip install 'whisperfast[server]'")
pytest.importorskip("multipart", reason="pip install 'whisperfast[server]'")
openai = pytest.importorskip("openai", reason="pip install openai (test extra)")

from conftest import assert_matches, clip  # noqa: E402

from whisperfast.writers import WRITERS  # noqa: E402

KEY = "sk-test-" + uuid.uuid4().hex[:8]
# Rows decoded in a batch of 4 (the server) vs alone (the reference) sum their float32 dot products in another
# order: log-probabilities and no-speech probabilities agree to ~1e-6 (seen: 6e-7), token ids and texts exactly.
FLOAT_TOL = {"avg_logprob": 1e-4, "no_speech_prob": 1e-4}
MAX_UPLOAD_MB = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(server_process) -> int:
    return server_process[0]


@pytest.fixture(scope="module")
def server_process(tiny_en_dir, base_dir, tmp_path_factory):
    """`python -m whisperfast serve` serving tiny.en and base (batch 4, an API key, a 4 MiB upload limit)."""
    with start_server(tmp_path_factory.mktemp("server"), "--model", "tiny.en", "--model", "base") as (port, proc):
        yield port, proc


@contextlib.contextmanager
def start_server(folder: Path, *args: str):
    port, log = free_port(), folder / "server.log"
    # unbuffered: the server's log lines reach the file before it exits (by re-raising SIGTERM: no flush at exit)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WHISPERFAST_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "whisperfast", "serve", *args, "--host", "127.0.0.1", "--port", str(port),
           "--batch_size", "4", "--max_upload_mb", str(MAX_UPLOAD_MB)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 120
        while health(port) is None:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.25)
        yield port, proc
    finally:
        proc.terminate()  # SIGTERM: uvicorn finishes in-flight requests, the workers stop, then it re-raises
        assert proc.wait(60) in (0, -signal.SIGTERM), log.read_text()


def health(port: int) -> dict | None:
    try:
        status, body, _ = request(port, "GET", "/health")
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def request(port: int, method: str, path: str, fields: list | None = None, file: tuple | None = None,
            key: str | None = KEY, timeout: float = 120) -> tuple[int, bytes, dict]:
    """A raw HTTP request (multipart when `fields`/`file` are given): (status, body, headers)."""
    headers, body = {}, b""
    if fields is not None or file is not None:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields or []]
        if file is not None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file[0]}"\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n".encode() + file[1] + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key=KEY, max_retries=0, timeout=180)


def audio(name: str) -> tuple[str, bytes]:
    return name, Path(clip(name)).read_bytes()


def writer_text(result, fmt: str) -> str:
    f = io.StringIO()
    WRITERS[fmt](".").write_result(result, f)
    return f.getvalue()


def verbose_of(result) -> dict:
    """What verbose_json's segments hold, from a reference TranscriptionResult."""
    return {"text": result.text, "duration": result.duration,
            "segments": [{k: v for k, v in s.to_dict().items() if k != "words"} for s in result.segments]}


def test_models_and_every_response_format(client, tiny_en):
    assert [m.id for m in client.models.list()] == ["tiny.en", "base"]
    ref = tiny_en.transcribe(clip("jfk.flac"))
    j = client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac"))
    assert j.text == ref.text and j.usage.type == "duration" and j.usage.seconds == ref.duration == 11.0
    for fmt, writer in (("text", "txt"), ("srt", "srt"), ("vtt", "vtt")):
        body = client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac"), response_format=fmt)
        assert body == writer_text(ref, writer), fmt
    v = client.audio.transcriptions.create(model="whisper-1", file=audio("jfk.flac"), response_format="verbose_json")
    assert v.task == "transcribe" and v.language == "english" and v.words is None
    assert_matches(v.model_dump(include={"text", "duration", "segments"}), verbose_of(ref), FLOAT_TOL)


def test_word_granularity(client, tiny_en):
    ref = tiny_en.transcribe(clip("jfk.flac"), word_timestamps=True)
    v = client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac"), response_format="verbose_json",
                                           timestamp_granularities=["word", "segment"])
    want = [{"word": w.word, "start": w.start, "end": w.end} for s in ref.segments for w in s.words]
    assert len(want) == 22
    # word times come from the alignment heads' attention, rounded to 0.01 s: batched float sums may move one
    # boundary by a frame (0.02 s); the words themselves are exact
    assert_matches([w.model_dump() for w in v.words], want, {"start": 0.021, "end": 0.021})
    assert_matches(v.model_dump(include={"text", "duration", "segments"}), verbose_of(ref), FLOAT_TOL)
    words_only = client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac"),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.segments is None and [w.word for w in words_only.words] == [w["word"] for w in want]


def test_translation(client, base):
    ref = base.transcribe(clip("ru.wav"), task="translate")
    t = client.audio.translations.create(model="base", file=audio("ru.wav"), response_format="verbose_json")
    assert t.task == "translate" and t.language == "russian" and t.text == ref.text and t.text.strip() != ""
    assert_matches(t.model_dump(include={"text", "duration", "segments"}), verbose_of(ref), FLOAT_TOL)


def test_stream(client, tiny_en):
    ref = tiny_en.transcribe(clip("jfk.flac"))
    events = list(client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac"), stream=True))
    assert [e.type for e in events] == ["transcript.text.delta"] * len(ref.segments) + ["transcript.text.done"]
    assert [e.delta for e in events[:-1]] == [s.text for s in ref.segments]
    assert events[-1].text == ref.text == "".join(e.delta for e in events[:-1])


BAD = [  # (what, fields, file, key, status, param, code)
    ("no file", [("model", "tiny.en")], None, KEY, 400, "file", "missing_required_parameter"),
    ("file as a text field", [("model", "tiny.en"), ("file", "hello")], None, KEY, 400, "file", "invalid_value"),
    ("empty file", [("model", "tiny.en")], ("a.wav", b""), KEY, 400, "file", "invalid_value"),
    ("text file", [("model", "tiny.en")], ("a.wav", b"not audio at all\n" * 20), KEY, 400, "file", "invalid_value"),
    ("huge upload", [("model", "tiny.en")], ("a.wav", b"\0" * (MAX_UPLOAD_MB * 2**20 + 1)), KEY, 413, "file",
     "file_too_large"),
    ("no model", [], ("jfk.flac", None), KEY, 400, "model", "missing_required_parameter"),
    ("unknown model", [("model", "tiny")], ("jfk.flac", None), KEY, 404, "model", "model_not_found"),
    ("bad response_format", [("model", "tiny.en"), ("response_format", "xml")], ("jfk.flac", None), KEY, 400,
     "response_format", "invalid_value"),
    ("temperature above 1", [("model", "tiny.en"), ("temperature", "1.5")], ("jfk.flac", None), KEY, 400,
     "temperature", "invalid_value"),
    ("temperature not a number", [("model", "tiny.en"), ("temperature", "hot")], ("jfk.flac", None), KEY, 400,
     "temperature", "invalid_value"),
    ("bad granularity", [("model", "tiny.en"), ("response_format", "verbose_json"),
                         ("timestamp_granularities[]", "sentence")], ("jfk.flac", None), KEY, 400,
     "timestamp_granularities", "invalid_value"),
    ("words without verbose_json", [("model", "tiny.en"), ("timestamp_granularities[]", "word")], ("jfk.flac", None),
     KEY, 400, "timestamp_granularities", "invalid_value"),
    ("unknown language", [("model", "base"), ("language", "klingon")], ("jfk.flac", None), KEY, 400, "language",
     "invalid_value"),
    ("German on an .en model", [("model", "tiny.en"), ("language", "de")], ("jfk.flac", None), KEY, 400,
     "language", "invalid_value"),
    ("stream with srt", [("model", "tiny.en"), ("stream", "true"), ("response_format", "srt")], ("jfk.flac", None),
     KEY, 400, "stream", "invalid_value"),
    ("unknown option", [("model", "tiny.en"), ("beam_size", "5")], ("jfk.flac", None), KEY, 400, "beam_size",
     "unknown_parameter"),
    ("wrong key", [("model", "tiny.en")], ("jfk.flac", None), "sk-wrong", 401, None, "invalid_api_key"),
    ("no key", [("model", "tiny.en")], ("jfk.flac", None), None, 401, None, "missing_api_key"),
]


def test_bad_requests(server):
    jfk = Path(clip("jfk.flac")).read_bytes()
    header_only = ("jfk.flac", jfk[:40])  # a FLAC cut inside its header: nothing decodable
    cases = BAD + [("header-only audio", [("model", "tiny.en")], header_only, KEY, 400, "file", "invalid_value"),
                   ("translate on an .en model", [("model", "tiny.en")], ("jfk.flac", None), KEY, 400, "model",
                    "invalid_value")]
    for what, fields, file, key, status, param, code in cases:
        if file is not None and file[1] is None:
            file = (file[0], jfk)
        path = "/v1/audio/translations" if what.startswith("translate") else "/v1/audio/transcriptions"
        got, body, _ = request(server, "POST", path, fields, file, key)
        err = json.loads(body)["error"]
        assert (got, err["param"], err["code"]) == (status, param, code), (what, got, err)
        assert set(err) == {"message", "type", "param", "code"} and len(err["message"]) > 10, (what, err)
        assert health(server)["status"] == "ok", what
    assert request(server, "GET", "/v1/nowhere")[0] == 404
    assert request(server, "GET", "/v1/models", key=None)[0] == 401


def test_truncated_upload_is_transcribed_as_far_as_it_decodes(client, tiny_en):
    """A cut file is salvaged as `transcribe` salvages it (the part that decodes), not refused."""
    cut = Path(clip("jfk.flac")).read_bytes()
    cut = cut[: len(cut) // 2]
    with pytest.warns(UserWarning, match="read"):
        ref = tiny_en.transcribe(cut)
    got = client.audio.transcriptions.create(model="tiny.en", file=("jfk.flac", cut))
    assert got.text == ref.text and 0 < len(ref.text) < len(tiny_en.transcribe(clip("jfk.flac")).text)


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.transcriptions.create(model="large-v9", file=audio("jfk.flac"))
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="tiny.en", file=("a.wav", b"RIFF...."))
    assert e.value.param == "file"


def test_disconnect_mid_stream_frees_the_slot(server, client, tiny_en):
    """A streamed 5 min file (10 windows) whose client leaves after the first delta stops being decoded (a
    window or two may still run while the server notices: the event loop and the worker share a busy CPU)."""
    import numpy as np
    import soundfile as sf

    from whisperfast.audio import load_audio

    ogg = io.BytesIO()
    x = np.tile(load_audio(clip("multilingual.mp3")), 5)
    with sf.SoundFile(ogg, "w", 16000, 1, format="OGG", subtype="VORBIS") as f:
        for i in range(0, len(x), 16000):  # a second per write: libsndfile's vorbis writer crashes on big writes
            f.write(x[i:i + 16000])
    before = health(server)["models"]["tiny.en"]
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny.en\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.ogg"\r\n\r\n').encode()
    body += ogg.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    conn.request("POST", "/v1/audio/transcriptions", body, {"Authorization": f"Bearer {KEY}",
                                                            "Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = conn.getresponse()
    assert r.status == 200 and r.readline().startswith(b'data: {"type": "transcript.text.delta"')
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 60
    while (h := health(server)["models"]["tiny.en"])["jobs"] == before["jobs"] or h["active"]:
        assert time.monotonic() < deadline, h
        time.sleep(0.1)
    assert h["windows"] - before["windows"] <= 4, (before, h)  # 6 of the 10 windows were never decoded
    ref = tiny_en.transcribe(clip("jfk.flac"))
    assert client.audio.transcriptions.create(model="tiny.en", file=audio("jfk.flac")).text == ref.text


def test_concurrent_requests_share_a_batch_and_equal_transcribe(server, client, tiny_en):
    """8 requests at once (one with a prompt: prompts and languages stay per row): each result equals
    `tiny_en.transcribe` of its file alone, and the worker decoded windows holding several requests (rows of
    2.9 to 11 s: the batch's long rows finish compacted into smaller buckets, see tests/test_compact.py)."""
    jobs = [("jfk.flac", None), ("LDC93S1.wav", None), ("61-70968-0000.flac", None),
            ("stereo_diarization.wav", None), ("jfk.flac", "Fellow Americans, listen."), ("LDC93S1.wav", None),
            ("61-70968-0000.flac", None), ("jfk.flac", None)]
    refs = [tiny_en.transcribe(clip(name), initial_prompt=prompt) for name, prompt in jobs]
    before = health(server)["models"]["tiny.en"]

    def call(job):
        name, prompt = job
        kw = {"prompt": prompt} if prompt else {}
        return client.audio.transcriptions.create(model="tiny.en", file=audio(name), response_format="verbose_json",
                                                  **kw)

    start = time.monotonic()
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(call, jobs))
    elapsed = time.monotonic() - start
    for (name, _), g, ref in zip(jobs, got, refs):
        assert_matches(g.model_dump(include={"text", "duration", "segments"}), verbose_of(ref), FLOAT_TOL, name)
    after = health(server)["models"]["tiny.en"]
    assert after["jobs"] - before["jobs"] == len(jobs)
    assert after["shared"] > before["shared"] and after["max_rows"] >= 3, (before, after)
    assert after["windows"] - before["windows"] < len(jobs), (before, after)  # 8 one-window files, fewer windows
    assert elapsed < 120, elapsed


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's RSS from /proc")
def test_bounded_load(server_process):
    """200 requests at concurrency 16 (1 s of digital silence: the seek loop skips it without decoding, so this
    loads the HTTP, queue and worker machinery, not the model): every one answered, in bounded time, and the
    server's memory does not grow with the number of requests served."""
    import numpy as np
    import soundfile as sf

    port, proc = server_process
    f = io.BytesIO()
    sf.write(f, np.zeros(16000, np.float32), 16000, format="WAV", subtype="PCM_16")
    silence = f.getvalue()

    def one(_):
        status, body, _ = request(port, "POST", "/v1/audio/transcriptions", [("model", "tiny.en")],
                                  ("s.wav", silence), timeout=60)
        return status, json.loads(body)

    before, start, rss = health(port)["models"]["tiny.en"], time.monotonic(), []
    with ThreadPoolExecutor(16) as pool:
        for _ in range(2):
            got = list(pool.map(one, range(100)))
            assert got == [(200, {"text": "", "usage": {"type": "duration", "seconds": 1.0}})] * 100
            rss.append(rss_mb(proc.pid))
    assert time.monotonic() - start < 120
    assert rss[1] - rss[0] < 30, rss  # the second hundred requests left no per-request residue
    after = health(port)["models"]["tiny.en"]
    assert (after["jobs"] - before["jobs"], after["waiting"], after["active"]) == (200, 0, 0), after


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(tiny_en_dir, tiny_en, tmp_path):
    ref = tiny_en.transcribe(clip("multilingual.mp3"))
    with start_server(tmp_path, "--model", "tiny.en") as (port, proc), ThreadPoolExecutor(1) as pool:
        data = Path(clip("multilingual.mp3")).read_bytes()
        pending = pool.submit(request, port, "POST", "/v1/audio/transcriptions", [("model", "tiny.en")],
                              ("m.mp3", data))
        deadline = time.monotonic() + 60
        while health(port)["models"]["tiny.en"]["active"] == 0:  # its first window is decoding
            assert time.monotonic() < deadline and not pending.done()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        status, body, _ = pending.result(120)
        assert status == 200 and json.loads(body)["text"] == ref.text
        assert proc.wait(60) in (0, -signal.SIGTERM)
        log = (tmp_path / "server.log").read_text()
        assert "Shutting down" in log and "Application shutdown complete" in log, log  # graceful: lifespan ran
        with pytest.raises(OSError):  # the listening socket is closed
            request(port, "GET", "/health")
