"""Batch transcription of a corpus on Ray Data (the optional extra `whisperfast[ray]`).

    from whisperfast.distributed import transcribe_dataset
    summary = transcribe_dataset("corpus/", "out.jsonl", model="large-v3", num_workers=8, num_gpus_per_worker=1)

The pipeline: `ray.data.from_items(files)` -> `map(decode_row)` (CPU tasks: read + decode the audio) ->
`map_batches(Transcriber, compute=ActorPoolStrategy(size=num_workers), num_gpus=num_gpus_per_worker)` (each actor
holds one loaded model and calls `model.transcribe(arrays, batch_size=batch_size)`) -> the driver, which writes
the rows (`store.ResultStore`: parts committed atomically, merged at the end). A row is the file's result as
`transcribe` gives it on one machine: path, text, language, duration, segments (with words when asked), error.

Resumable: files that already have a row in `output` are skipped (with `retry_errors=True`, error rows are
retried). A file that cannot be read becomes an error row. Ray restarts an actor that dies and retries its batch
(Ray Data's actors run with max_restarts=-1, max_task_retries=-1); the driver keeps one row per path, so a
retried batch is written once. Importing this module does not import ray; calling transcribe_dataset does.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from .. import errors
from ..decode.options import DecodingOptions
from ..errors import MissingDependencyError, OptionError, WhisperfastError
from ..longform import transcribe_with
from ..plan import make_plan
from .inputs import Item, list_inputs
from .store import ResultStore
from .worker import Transcriber, decode_row

__all__ = ["transcribe_dataset", "Summary"]
JOB_OPTIONS = ("stream", "verbose", "on_error", "batch_size")  # set by the job, not per call


@dataclass
class Summary:
    output: str
    files: int        # listed by `inputs`
    skipped: int      # already had a row in `output`
    transcribed: int  # rows written by this run (errors included)
    errors: int       # error rows written by this run
    audio_seconds: float
    seconds: float    # wall time of this run


def check_options(options: dict) -> None:
    takes = {p.name for f in (transcribe_with, make_plan) for p in inspect.signature(f).parameters.values()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} | {f.name for f in fields(DecodingOptions)}
    takes -= {"model", "audio", *JOB_OPTIONS}
    unknown = sorted(set(options) - takes)
    if unknown:
        raise OptionError(f"transcribe_dataset: unknown option(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(takes))}")


def _positive(name: str, v, kind=int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or v <= 0:
        raise OptionError(f"{name} must be a positive {'number' if kind is float else 'int'}, not {v!r}")


def transcribe_dataset(inputs, output: str | os.PathLike, *, model: str | os.PathLike = "tiny.en",
                       batch_size: int = 8, num_workers: int = 1, num_gpus_per_worker: float = 0,
                       num_cpus_per_worker: float = 1, device: str | None = None, dtype: str | None = None,
                       compile: bool | None = None, threads: int | None = None, address: str | None = None,
                       retry_errors: bool = False, progress: bool = False,
                       on_row: Callable[[dict], None] | None = None, **transcribe_options) -> Summary:
    """Transcribe every file of `inputs` into `output` (.jsonl or .parquet) on Ray; returns a Summary.

    inputs: a path, directory, glob, URI or manifest (JSONL/CSV/TSV/parquet with a path column and optional
    language/task/initial_prompt columns), or a list of them (see `inputs.py`).
    model: name, hub id or directory, loaded by each worker (it must resolve on every node).
    batch_size: the model's batch slots per worker (and files per Ray batch).
    num_workers, num_gpus_per_worker, num_cpus_per_worker: the actor pool (num_gpus may be a fraction).
    device/dtype/compile: as `load_model` (device: cuda when the workers have GPUs, else cpu).
    threads: torch threads per worker (None: Ray's OMP_NUM_THREADS, the worker's CPU count).
    address: `ray.init(address)` when Ray is not initialized yet ('auto', 'ray://head:10001'; None: a local
    Ray, or $RAY_ADDRESS). progress: a bar over files on stderr. on_row(row): called on the driver for each new
    row. Other keywords are `transcribe`'s options (language, task, temperature, word_timestamps, ...).
    """
    check_options(transcribe_options)
    check_values({**transcribe_options, "batch_size": batch_size})
    _positive("batch_size", batch_size)
    _positive("num_workers", num_workers)
    _positive("num_cpus_per_worker", num_cpus_per_worker, float)
    if num_gpus_per_worker != 0:
        _positive("num_gpus_per_worker", num_gpus_per_worker, float)
    start = time.perf_counter()
    store = ResultStore(output)
    items = list_inputs(inputs)
    todo = [it for it in items if not store.done(it.path, retry_errors)]
    summary = Summary(store.output, len(items), len(items) - len(todo), 0, 0, 0.0, 0.0)
    if todo:
        load_options = dict(device=device or ("cuda" if num_gpus_per_worker else "cpu"), dtype=dtype, compile=compile)
        options = {**transcribe_options, "batch_size": batch_size, "on_error": "skip", "verbose": False}
        actor = dict(model=os.fspath(model), load_options=load_options, options=options, threads=threads)
        pool = dict(num_workers=num_workers, num_gpus=num_gpus_per_worker, num_cpus=num_cpus_per_worker)
        _run(todo, store, actor, pool, batch_size, address, progress, on_row, summary)
    store.merge([it.path for it in items])
    summary.seconds = time.perf_counter() - start
    return summary


def _run(todo: list[Item], store: ResultStore, actor: dict, pool: dict, batch_size: int, address, progress,
         on_row, summary: Summary) -> None:
    """Stream the rows of the Ray pipeline into `store`: a part per COMMIT_ROWS rows or COMMIT_SECONDS."""
    import json

    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    ctx.enable_progress_bars = False  # ours counts files and audio hours
    ctx.print_on_execution_start = not progress
    bar = _bar(len(todo)) if progress else None
    pending, last, seen = [], time.monotonic(), set()
    try:
        for batch in _pipeline(ray, todo, actor, pool, batch_size).iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["row"]:
                row = json.loads(text)
                if row["path"] in seen or not store.add(row):
                    continue  # a batch Ray retried after a worker died: this path is already written
                seen.add(row["path"])
                pending.append(row)
                summary.transcribed += 1
                summary.errors += row["error"] is not None
                summary.audio_seconds += row["duration"] or 0.0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{summary.audio_seconds / 3600:.2f} audio h, {summary.errors} errors")
                if on_row is not None:
                    on_row(row)
            if len(pending) >= COMMIT_ROWS or time.monotonic() - last > COMMIT_SECONDS:
                store.commit(pending)
                pending, last = [], time.monotonic()
    except Exception as e:  # noqa: BLE001 -- a whisperfast error raised in a worker is re-raised as itself
        cause = _whisperfast_cause(e)
        if cause is not None:
            raise cause from None
        raise
    finally:
        store.commit(pending)  # what arrived before an interruption is kept for the rerun
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        if bar is not None:
            bar.close()


COMMIT_ROWS, COMMIT_SECONDS = 256, 30.0


def _pipeline(ray, todo: list[Item], actor: dict, pool: dict, batch_size: int):
    items = [dict(path=it.path, source=it.source, options=it.options) for it in todo]
    blocks = min(-(-len(items) // batch_size), 10_000)  # about a Ray batch per block: files stream to the pool
    return (ray.data.from_items(items, override_num_blocks=blocks)
            .map(decode_row)
            .map_batches(Transcriber, fn_constructor_kwargs=actor, batch_size=batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=pool["num_workers"]),
                         num_gpus=pool["num_gpus"] or None, num_cpus=pool["num_cpus"]))


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("transcribe_dataset runs on Ray Data, which is not installed: "
                                     "pip install 'whisperfast[ray]'") from None
    return ray


def _whisperfast_cause(e: BaseException) -> WhisperfastError | None:
    """The whisperfast error behind a Ray error: its cause, or (an actor that died in `__init__`: a bad model or
    option) the last one its traceback text names."""
    seen, text = set(), str(e)
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, WhisperfastError):
            return e
        e = getattr(e, "cause", None) or e.__cause__
    named = re.findall(r"whisperfast\.errors\.(\w+): (.+)", text)
    cls = getattr(errors, named[-1][0], None) if named else None
    return cls(named[-1][1]) if isinstance(cls, type) and issubclass(cls, WhisperfastError) else None


def check_values(options: dict) -> None:
    """The options' values, checked on the driver before any worker starts. The checks that need the model (an
    English-only model asked to translate) run in each worker as it loads it."""
    from types import SimpleNamespace

    shape = SimpleNamespace(config=SimpleNamespace(n_text_layer=0, n_mels=0),
                            tokenizer=SimpleNamespace(multilingual=True))  # what make_plan reads of a model
    try:
        make_plan(shape, **options)
    except OptionError:
        raise
    except Exception:  # noqa: BLE001 -- make_plan read more of the model than the shape holds: the workers check
        pass


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="whisperfast batch", file=sys.stderr)
