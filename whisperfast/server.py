"""`whisperfast serve`: an OpenAI-compatible transcription server (the openai client's types are the contract).

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format (json, text, srt,
                                    vtt, verbose_json), temperature, timestamp_granularities[], stream
    POST /v1/audio/translations     file, model, prompt, response_format, temperature
    GET  /v1/models, GET /health

Each served model has one engine worker (whisperfast/server_worker.py) that decodes the requests in its
fixed batch; the event loop only parses, checks and formats. Bodies: json `{"text", "usage"}`; verbose_json
(task, language name, duration, text, segments and/or words, usage); text/srt/vtt are our writers' files
(txt, srt, vtt). `temperature` 0 (the default) is openai-whisper's fallback schedule 0, 0.2, ... 1.0; another
value is that one temperature. `stream=true` sends server-sent events: `transcript.text.delta` per segment
as its window finishes, then `transcript.text.done` and `[DONE]`. Errors are OpenAI's
`{"error": {"message", "type", "param", "code"}}`. Needs the `[server]` extra (starlette, uvicorn,
python-multipart). `model` "whisper-1" means the first served model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .audio import load_audio
from .errors import AudioError, OptionError, WhisperfastError
from .plan import make_plan
from .server_worker import Closed, Job, Worker
from .tokenizer import LANGUAGES, normalize_language
from .writers import WRITERS

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper's temperatures when the request says 0
MAX_UPLOAD = 25 * 1024 * 1024  # OpenAI's limit on an audio upload


class APIError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.body()}, status_code=self.status)


class Server:
    """The served models (name -> worker) and the request handling."""

    def __init__(self, models: dict, batch_size: int = 8, api_key: str | None = None, max_upload: int = MAX_UPLOAD):
        self.workers = {name: Worker(m, name, batch_size) for name, m in models.items()}
        self.api_key, self.max_upload = api_key, max_upload

    def worker(self, name: str | None) -> Worker:
        if not name:
            raise APIError(400, "you must provide a model parameter", "model", "missing_required_parameter")
        if name == "whisper-1":
            return next(iter(self.workers.values()))
        if name not in self.workers:
            raise APIError(404, f"The model `{name}` does not exist; this server serves "
                                f"{', '.join(self.workers)}", "model", "model_not_found")
        return self.workers[name]

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        if not auth:
            raise APIError(401, "You didn't provide an API key: send it as 'Authorization: Bearer <key>'",
                           None, "missing_api_key")
        if auth != f"Bearer {self.api_key}":
            raise APIError(401, "Incorrect API key provided", None, "invalid_api_key")

    async def models(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "whisperfast"} for name in self.workers]})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": {
            name: {**w.stats.to_dict(), "waiting": w.load[0], "active": w.load[1], "batch_size": w.batch_size}
            for name, w in self.workers.items()}})

    async def transcriptions(self, request: Request) -> Response:
        return await self.handle(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        return await self.handle(request, "translate")

    async def handle(self, request: Request, task: str) -> Response:
        self.check_key(request)
        if int(request.headers.get("content-length") or 0) > self.max_upload + 65536:
            raise APIError(413, f"the upload is larger than this server's limit of {self.max_upload} bytes",
                           "file", "file_too_large")
        async with request.form(max_files=1, max_fields=32) as form:
            worker = self.worker(_field(form, "model"))
            fmt, stream, grains, plan = self.parse(form, worker.model, task)
            data = await self.upload(form.get("file"))
        audio = await run_in_threadpool(_load, data)  # decoded off the event loop; a bad file is a 400 here
        job = _AsyncJob.start(worker, plan, audio)
        if stream:
            return StreamingResponse(_events(worker, job), media_type="text/event-stream")
        return render(await job.result(request, worker), fmt, task, grains)

    def parse(self, form, model, task: str):
        """The form's options -> (response_format, stream, granularities, plan); unsupported values are 400s."""
        known = {"file", "model", "language", "prompt", "response_format", "temperature", "stream",
                 "timestamp_granularities[]", "timestamp_granularities"}
        if task == "translate":
            known -= {"language", "timestamp_granularities[]", "timestamp_granularities", "stream"}
        for name in form.keys():
            if name not in known:
                raise APIError(400, f"unsupported parameter {name!r} for this endpoint", name, "unknown_parameter")
        fmt = _field(form, "response_format") or "json"
        if fmt not in FORMATS:
            raise APIError(400, f"response_format {fmt!r} is not supported; use one of {', '.join(FORMATS)}",
                           "response_format", "invalid_value")
        grains = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
        if any(g not in GRANULARITIES for g in grains):
            raise APIError(400, f"timestamp_granularities {grains} : each must be one of {', '.join(GRANULARITIES)}",
                           "timestamp_granularities", "invalid_value")
        if grains and fmt != "verbose_json":
            raise APIError(400, "timestamp_granularities needs response_format 'verbose_json'",
                           "timestamp_granularities", "invalid_value")
        stream = (_field(form, "stream") or "false").lower()
        if stream not in ("true", "false"):
            raise APIError(400, f"stream must be true or false, not {stream!r}", "stream", "invalid_value")
        if stream == "true" and fmt not in ("json", "text"):
            raise APIError(400, f"stream=true sends text events; it takes response_format json or text, not {fmt}",
                           "stream", "invalid_value")
        return fmt, stream == "true", grains, self.plan(form, model, task, grains)

    def plan(self, form, model, task: str, grains: list[str]):
        try:
            t = float(_field(form, "temperature") or 0)
        except ValueError:
            t = float("nan")
        if not 0 <= t <= 1:
            raise APIError(400, f"temperature must be a number from 0 to 1, not {_field(form, 'temperature')!r}",
                           "temperature", "invalid_value")
        if task == "translate" and not model.is_multilingual:
            raise APIError(400, "this model is English-only (.en): it cannot translate; use a multilingual model",
                           "model", "invalid_value")
        try:
            language = normalize_language(_field(form, "language") or None)
        except OptionError as e:
            raise APIError(400, str(e), "language", "invalid_value") from None
        if not model.is_multilingual and language not in (None, "en"):
            raise APIError(400, f"this model is English-only (.en): it cannot transcribe language {language!r}",
                           "language", "invalid_value")
        try:
            return make_plan(model, task=task, language=language, initial_prompt=_field(form, "prompt") or None,
                             temperature=FALLBACK if t == 0 else (t,), word_timestamps="word" in grains)
        except OptionError as e:
            raise APIError(400, str(e), None, "invalid_value") from None

    async def upload(self, file) -> bytes:
        if file is None:
            raise APIError(400, "you must provide a file (multipart field 'file')", "file", "missing_required_parameter")
        if not isinstance(file, UploadFile):
            raise APIError(400, "'file' must be an uploaded file, not a text field", "file", "invalid_value")
        data = await file.read(self.max_upload + 1)
        if len(data) > self.max_upload:
            raise APIError(413, f"the file is larger than this server's limit of {self.max_upload} bytes",
                           "file", "file_too_large")
        return data

    def app(self) -> Starlette:
        routes = [Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                  Route("/v1/audio/translations", self.translations, methods=["POST"]),
                  Route("/v1/models", self.models, methods=["GET"]), Route("/health", self.health, methods=["GET"])]
        handlers = {APIError: lambda r, e: e.response(), HTTPException: _http_error, Exception: _server_error}

        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            for w in self.workers.values():  # uvicorn has finished the in-flight requests
                await run_in_threadpool(w.close)

        return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _field(form, name: str) -> str | None:
    v = form.get(name)
    if v is not None and not isinstance(v, str):
        raise APIError(400, f"{name!r} must be a text field", name, "invalid_value")
    return v


def _load(data: bytes):
    try:
        return load_audio(data)
    except AudioError as e:
        raise APIError(400, f"the file is not usable audio: {str(e).removeprefix('<bytes>: ')}", "file",
                       "invalid_value") from None


def _http_error(request: Request, e: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large"}.get(e.status_code)
    return APIError(e.status_code, str(e.detail), None, code).response()


def _server_error(request: Request, e: Exception) -> Response:
    return APIError(500, f"internal error: {type(e).__name__}: {e}", None, None, "server_error").response()


class _AsyncJob:
    """A worker job whose events land in an asyncio queue of the request's event loop."""

    def __init__(self, worker: Worker, plan, audio):
        loop, self.events = asyncio.get_running_loop(), asyncio.Queue()
        self.job = Job(plan, audio, lambda kind, value: loop.call_soon_threadsafe(self.events.put_nowait,
                                                                                    (kind, value)))

    @classmethod
    def start(cls, worker: Worker, plan, audio) -> _AsyncJob:
        self = cls(worker, plan, audio)
        try:
            worker.submit(self.job)
        except Closed as e:
            raise APIError(503, str(e), None, "server_shutting_down", "server_error") from None
        return self

    async def result(self, request: Request, worker: Worker):
        """The finished result; a client that disconnects first cancels the job (its slot is freed)."""
        while True:
            try:
                kind, value = await asyncio.wait_for(self.events.get(), 0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    worker.cancel(self.job)
                    return None
                continue
            if kind == "done":
                return value
            if kind == "error":
                raise _job_error(value)


def _job_error(e: Exception) -> APIError:
    if isinstance(e, WhisperfastError):
        return APIError(400, str(e), "file" if isinstance(e, AudioError) else None, "invalid_value")
    return APIError(500, f"internal error: {type(e).__name__}: {e}", None, None, "server_error")


async def _events(worker: Worker, job: _AsyncJob):
    """Server-sent events of a streamed request; a client that goes away cancels the job."""
    try:
        while True:
            kind, value = await job.events.get()
            if kind == "segments":
                for s in value:
                    yield _sse({"type": "transcript.text.delta", "delta": s.text})
            elif kind == "done":
                yield _sse({"type": "transcript.text.done", "text": value.text})
                yield "data: [DONE]\n\n"
                return
            else:
                yield _sse({"error": _job_error(value).body()})
                return
    finally:
        worker.cancel(job.job)  # no-op once done; frees the slot of a client that disconnected


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event)}\n\n"


def render(result, fmt: str, task: str, grains: list[str]) -> Response:
    if result is None:  # the client went away
        return Response(status_code=499)
    if fmt in ("text", "srt", "vtt"):
        f = io.StringIO()
        WRITERS["txt" if fmt == "text" else fmt](".").write_result(result, f)
        kind = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}[fmt]
        return PlainTextResponse(f.getvalue(), media_type=f"{kind}; charset=utf-8")
    usage = {"type": "duration", "seconds": result.duration}
    if fmt == "json":
        return JSONResponse({"text": result.text, "usage": usage})
    body = {"task": task, "language": LANGUAGES.get(result.language, result.language), "duration": result.duration,
            "text": result.text}
    if "segment" in grains or not grains:  # OpenAI's default granularity is the segment
        body["segments"] = [{k: v for k, v in s.to_dict().items() if k != "words"} for s in result.segments]
    if "word" in grains:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for s in result.segments for w in s.words or []]
    return JSONResponse(body | {"usage": usage})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whisperfast serve", description="Serve Whisper models over OpenAI's audio API.")
    a = p.add_argument
    a("--model", action="append", help="a model to serve (short name, hub id or local directory); repeat for more; "
                                       "the form's `model` names it as given (default: tiny.en)")
    a("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    a("--port", type=int, default=8000)
    a("--batch_size", type=int, default=8, help="streams (requests) decoded together per model")
    a("--device", default=None, help="cpu, cuda or cuda:N; cuda when available by default")
    a("--dtype", default=None, help="float32, float16 or bfloat16")
    a("--api_key", default=os.environ.get("WHISPERFAST_API_KEY"),
      help="require 'Authorization: Bearer <key>' (default: $WHISPERFAST_API_KEY; none: no check)")
    a("--max_upload_mb", type=float, default=MAX_UPLOAD / 2**20, help="largest accepted upload, in MiB")
    a("--log_level", default="info")
    return p


def main(argv: list[str]) -> int:
    import uvicorn

    from .api import load_model

    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        print("whisperfast serve: error: --batch_size must be at least 1", file=sys.stderr)
        return 2
    try:
        models = {name: load_model(name, device=args.device, dtype=args.dtype) for name in args.model or ["tiny.en"]}
    except WhisperfastError as e:
        print(f"whisperfast serve: error: {e}", file=sys.stderr)
        return 2
    server = Server(models, args.batch_size, args.api_key, int(args.max_upload_mb * 2**20))
    uvicorn.run(server.app(), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=300)
    return 0
