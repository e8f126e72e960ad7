"""The two stages a batch job runs on Ray, as plain Python (this module does not import ray).

`decode_row` runs as a CPU task: it reads one file (a path, or a URI through pyarrow.fs) and decodes it to
float32 mono 16 kHz, exactly as `transcribe` would; a file that cannot be read gets its error instead. On CPU-only
workers Ray fuses it into the worker (same resources); with GPUs it runs in separate CPU tasks, so decoding
overlaps the GPU's work.

`Transcriber` runs in each actor of the pool: it loads one WhisperModel in `__init__` and, per Ray batch,
transcribes the decoded arrays with `model.transcribe(arrays, batch_size=...)` (the model's fixed batch slots;
a long file keeps long-form semantics, its windows decoded in sequence). Files with different per-file options
are transcribed in separate calls. Its output is one JSON result row per file (`row`), keyed by `path`.
"""

from __future__ import annotations

import json

import numpy as np

from ..api import load_model
from ..audio import open_audio
from ..errors import WhisperfastError
from ..results import TranscriptionResult
from .inputs import is_uri

EMPTY = np.zeros(0, np.float32)


def read_audio(source: str) -> np.ndarray:
    """The file at `source` as `transcribe` decodes it (float32 mono 16 kHz); zero length is not an error."""
    if is_uri(source):
        import pyarrow.fs as pafs

        fs, where = pafs.FileSystem.from_uri(source)
        with fs.open_input_stream(where) as f:
            source_or_bytes = f.read()
        opened = open_audio(source_or_bytes)
    else:
        opened = open_audio(source)
    blocks = list(opened.blocks)
    return np.concatenate(blocks) if blocks else EMPTY


def describe(e: BaseException) -> str:
    return str(e) if isinstance(e, WhisperfastError) else f"{type(e).__name__}: {e}"


def decode_row(row: dict) -> dict:
    """A CPU task: {path, source, options} -> the same with `audio` (float32) and `error` ('' when read)."""
    try:
        audio, error = read_audio(row["source"]), ""
    except Exception as e:  # noqa: BLE001 -- a bad file is an error row; the job goes on
        audio, error = EMPTY, describe(e)
    return {"path": row["path"], "options": row["options"], "audio": audio, "error": error}


def result_row(path: str, result: TranscriptionResult | None = None, error: str | None = None) -> dict:
    if result is None or result.error is not None:
        return dict(path=path, text=None, language=None, duration=None, segments=None,
                    error=error or (result.error if result else "unknown error"))
    return dict(path=path, text=result.text, language=result.language, duration=result.duration,
                segments=[s.to_dict() for s in result.segments], error=None)


class Transcriber:
    """One loaded model per actor; `__call__` transcribes a Ray batch of decoded files."""

    def __init__(self, model: str, load_options: dict, options: dict, threads: int | None = None):
        import torch

        from ..plan import make_plan

        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model, **load_options)
        self.options = options
        make_plan(self.model, **{k: v for k, v in options.items() if k != "verbose"})  # bad options: fail now

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        rows: dict[str, dict] = {}
        groups: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            if batch["error"][i]:
                rows[path] = result_row(path, error=str(batch["error"][i]))
            else:
                groups.setdefault(str(batch["options"][i]), []).append(i)
        for options, members in groups.items():
            arrays = [np.asarray(batch["audio"][i], dtype=np.float32) for i in members]
            for i, row in zip(members, self.transcribe([paths[i] for i in members], arrays, json.loads(options))):
                rows[paths[i]] = row
        return {"path": np.array(paths, dtype=object),
                "row": np.array([json.dumps(rows[p], ensure_ascii=False) for p in paths], dtype=object)}

    def transcribe(self, paths: list[str], arrays: list[np.ndarray], per_file: dict) -> list[dict]:
        """Result rows of one call; if the call fails, each file alone, so one bad file fails only itself."""
        options = {**self.options, **per_file}
        try:
            results = self.model.transcribe(arrays, **options)
            return [result_row(p, r) for p, r in zip(paths, results)]
        except Exception as e:  # noqa: BLE001 -- isolated below; a file that fails alone is an error row
            if len(arrays) == 1:
                return [result_row(paths[0], error=describe(e))]
        return [row for p, a in zip(paths, arrays) for row in self.transcribe([p], [a], per_file)]
