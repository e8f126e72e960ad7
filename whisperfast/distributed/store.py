"""Where a batch job's results live, so that a job can stop at any moment and a rerun finishes it.

OUTPUT (`.jsonl` or `.parquet`) holds one row per file: path, text, language, duration, segments, error.
While a job runs, the driver commits the rows it receives to `OUTPUT.parts/` as whole files (written to a
temporary name, fsync'ed, then renamed: a part is there complete or not at all); at the end, OUTPUT is rewritten
(atomically, the same way) from its previous rows plus every part, one row per path, and the parts are removed.
A rerun reads OUTPUT and any parts an interrupted run left, and skips the files that have a row. A path with
several rows (a batch retried after a worker died, a resumed run) keeps one: the first without an error, else the
last error.
"""

from __future__ import annotations

import json
import os
import time

from ..errors import OptionError

FORMATS = (".jsonl", ".parquet")


class ResultStore:
    def __init__(self, output: str | os.PathLike):
        self.output = os.fspath(output)
        self.format = os.path.splitext(self.output)[1].lower()
        if self.format not in FORMATS:
            raise OptionError(f"output {self.output!r}: name a .jsonl or .parquet file")
        self.parts = self.output + ".parts"
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.seq = 0
        self.rows: dict[str, dict] = {}  # path -> its row, from OUTPUT and every part, deduplicated
        for row in self._read_output() + [r for p in self._part_files() for r in _read_jsonl(p)]:
            self.add(row)

    def add(self, row: dict) -> bool:
        """Keep `row` unless its path already has a row without an error (a retried error row is replaced by the
        retry's row); True if it was kept."""
        old = self.rows.get(row["path"])
        if old is not None and old.get("error") is None:
            return False
        self.rows[row["path"]] = row
        return True

    def done(self, path: str, retry_errors: bool = False) -> bool:
        row = self.rows.get(path)
        return row is not None and (row.get("error") is None or not retry_errors)

    def commit(self, rows: list[dict]) -> None:
        """`rows` as one part file, all or nothing."""
        if not rows:
            return
        os.makedirs(self.parts, exist_ok=True)
        self.seq += 1
        name = os.path.join(self.parts, f"part-{self.run}-{self.seq:06d}.jsonl")
        _write_atomic(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())

    def merge(self, order: list[str]) -> None:
        """OUTPUT := every row, those of `order`'s paths in that order after the others; then drop the parts."""
        rank = {p: i for i, p in enumerate(order)}
        rows = sorted(self.rows.values(), key=lambda r: rank.get(r["path"], -1))  # stable: others keep their order
        if self.format == ".jsonl":
            _write_atomic(self.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            tmp = f"{self.output}.tmp-{os.getpid()}"
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            _fsync_and_rename(tmp, self.output)
        for p in self._part_files():
            os.remove(p)
        if os.path.isdir(self.parts) and not os.listdir(self.parts):
            os.rmdir(self.parts)

    def _part_files(self) -> list[str]:
        if not os.path.isdir(self.parts):
            return []
        return sorted(os.path.join(self.parts, f) for f in os.listdir(self.parts) if f.endswith(".jsonl"))

    def _read_output(self) -> list[dict]:
        if not os.path.exists(self.output):
            return []
        if self.format == ".jsonl":
            return _read_jsonl(self.output)
        import pyarrow.parquet as pq

        return pq.read_table(self.output).to_pylist()


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise OptionError(f"{path}, line {n}: not a result row ({e.msg}); fix or remove the file") from None
                if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                    raise OptionError(f"{path}, line {n}: a result row needs a 'path'; is this another job's file?")
                rows.append(row)
    return rows


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    _fsync_and_rename(tmp, path)


def _fsync_and_rename(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # the rename itself is durable once the directory is synced
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
