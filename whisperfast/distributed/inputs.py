"""What a batch job transcribes: `inputs` (paths, directories, globs, manifests) -> a list of `Item`s.

An input string is a manifest if it ends in .jsonl/.json/.csv/.tsv/.parquet, a directory (audio files found
recursively, sorted), a glob pattern (`*`, `?`, `[`), a URI (`scheme://...`, read with pyarrow.fs), or else one
audio file. A manifest has a `path` column (`audio` or `file` are accepted too) and may have per-file options
(PER_FILE_OPTIONS; an empty or null cell means the job's value); its other columns are ignored. Relative paths in
a manifest are relative to the manifest's directory, other relative paths to the working directory. An item's
`path` is the string as listed (the key of its result row); `source` is what a worker opens (absolute).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass

from ..errors import OptionError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".caf", ".w64",
                    ".rf64", ".au", ".snd")
MANIFEST_EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
PATH_COLUMNS = ("path", "audio", "file")
PER_FILE_OPTIONS = ("language", "task", "initial_prompt")


@dataclass(frozen=True)
class Item:
    path: str          # as listed: the key of the file's result row
    source: str        # what a worker opens: an absolute path or a URI
    options: str = "{}"  # per-file options as JSON (a string keeps Ray's block schema flat)


def is_uri(s: str) -> bool:
    return "://" in s and not os.path.exists(s)


def list_inputs(inputs) -> list[Item]:
    """Every file of `inputs` once (first listing wins), in listing order."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise OptionError(f"inputs must be a path, directory, glob, manifest or a non-empty list of them, not {inputs!r}")
    items: dict[str, Item] = {}
    for entry in inputs:
        for item in _expand(os.fspath(entry)):
            items.setdefault(item.path, item)
    if not items:
        raise OptionError(f"no audio files found in {list(map(str, inputs))} (extensions: {' '.join(AUDIO_EXTENSIONS)})")
    return list(items.values())


def _expand(entry: str) -> list[Item]:
    if is_uri(entry):
        return [Item(entry, entry)]
    if entry.lower().endswith(MANIFEST_EXTENSIONS):
        return read_manifest(entry)
    if os.path.isdir(entry):
        found = [os.path.join(d, f) for d, _, files in os.walk(entry) for f in files
                 if f.lower().endswith(AUDIO_EXTENSIONS)]
        return [Item(p, os.path.abspath(p)) for p in sorted(found)]
    if any(c in entry for c in "*?["):
        found = [p for p in glob.glob(entry, recursive=True) if os.path.isfile(p)]
        return [Item(p, os.path.abspath(p)) for p in sorted(found)]
    return [Item(entry, os.path.abspath(entry))]  # one file; a missing one becomes an error row


def read_manifest(manifest: str) -> list[Item]:
    if not os.path.isfile(manifest):
        raise OptionError(f"manifest {manifest!r} not found; pass a .jsonl/.csv/.tsv/.parquet file with a path column")
    rows = _rows(manifest)
    column = next((c for c in PATH_COLUMNS if rows and c in rows[0]), None)
    if column is None:
        raise OptionError(f"manifest {manifest!r} has no path column; name the column of audio paths one of "
                          f"{', '.join(PATH_COLUMNS)}" + (f" (its columns: {', '.join(rows[0])})" if rows else ""))
    base = os.path.dirname(os.path.abspath(manifest))
    items = []
    for i, row in enumerate(rows):
        path = row.get(column)
        if not isinstance(path, str) or not path:
            raise OptionError(f"manifest {manifest!r}, row {i + 1}: {column!r} is {path!r}, not a path")
        options = {k: row[k] for k in PER_FILE_OPTIONS if row.get(k) not in (None, "")}
        source = path if is_uri(path) else os.path.join(base, path)
        items.append(Item(path, source, json.dumps(options, sort_keys=True)))
    return items


def _rows(manifest: str) -> list[dict]:
    ext = os.path.splitext(manifest)[1].lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq  # pyarrow comes with ray[data]

        return pq.read_table(manifest).to_pylist()
    with open(manifest, newline="", encoding="utf-8") as f:
        if ext in (".csv", ".tsv"):
            return list(csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","))
        rows = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise OptionError(f"manifest {manifest!r}, line {n}: not JSON ({e.msg}); one object per line") from None
        if not all(isinstance(r, dict) for r in rows):
            raise OptionError(f"manifest {manifest!r}: each line must be a JSON object such as {{\"path\": \"a.wav\"}}")
        return rows
