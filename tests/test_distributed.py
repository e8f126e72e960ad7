"""whisperfast.distributed: a corpus transcribed on a local Ray cluster (2 CPUs, started once for the module)
gives one row per file, the same as `transcribe` on one machine, survives a resumed job and a killed worker,
and the package imports without ray."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clip

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["LDC93S1.wav", "61-70968-0000.flac", "stereo_diarization.wav", "jfk.flac"]
# A worker runs with 1 torch thread and this process with torch's default: a float reduction may take another
# order, so log-probabilities may differ in their last bits; ids, texts and times must not.
FLOAT_TOL = {"avg_logprob": 1e-4, "no_speech_prob": 1e-4}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="pip install 'whisperfast[ray]'")
    saved = dict(os.environ)
    # The workers import this checkout's whisperfast (the venv may hold an editable install of another one).
    path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    # num_gpus=1 is a logical GPU (none is used): a worker that asks for it runs the GPU-shaped pipeline, decoding
    # in separate CPU tasks whose arrays reach the worker through the object store (Ray fuses them otherwise).
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
    for k in set(os.environ) - set(saved):  # ray.init sets RAY_* variables and PYTHONBREAKPOINT
        del os.environ[k]
    os.environ.update(saved)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for name in SHORT + ["sonnet001.mp3"]:
        shutil.copy(clip(name), d / name)
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(400))  # a header, then noise
    return d


@pytest.fixture(scope="module")
def local(tiny_en):
    """name -> `transcribe` of that clip on this machine (the reference)."""
    cache: dict = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = tiny_en.transcribe(clip(name)).to_dict()
        return cache[name]
    return get


def job(ray_cluster, tiny_en_dir, inputs, output, **kw):
    from whisperfast.distributed import transcribe_dataset

    return transcribe_dataset(inputs, output, model=str(tiny_en_dir), threads=1, **kw)


def rows_of(output: Path) -> list[dict]:
    return [json.loads(line) for line in output.read_text().splitlines()]


def assert_like_local(row: dict, ref: dict) -> None:
    assert row["error"] is None, row["error"]
    assert (row["text"], row["language"]) == (ref["text"], ref["language"])
    from conftest import assert_matches

    assert_matches(row["segments"], ref["segments"], FLOAT_TOL, where=row["path"])


def test_six_files_one_row_each_like_local(ray_cluster, tiny_en_dir, corpus, local, tmp_path):
    files = [str(corpus / n) for n in SHORT + ["sonnet001.mp3", "corrupt.wav"]]
    out = tmp_path / "out.jsonl"
    s = job(ray_cluster, tiny_en_dir, files, out, batch_size=2, num_gpus_per_worker=1, device="cpu")
    rows = rows_of(out)
    assert [r["path"] for r in rows] == files  # one row per file, in input order
    assert (s.files, s.skipped, s.transcribed, s.errors) == (6, 0, 6, 1)
    for r in rows[:-1]:
        assert_like_local(r, local(Path(r["path"]).name))
    assert rows[4]["duration"] == 53.26 and len(rows[4]["segments"]) > 2  # long-form: several windows
    bad = rows[-1]
    assert bad["text"] is None and bad["segments"] is None and "corrupt.wav" in bad["error"]
    assert "not a supported audio file" in bad["error"]
    assert not Path(f"{out}.parts").exists()  # merged, parts removed


def test_resume_writes_every_file_exactly_once(ray_cluster, tiny_en_dir, corpus, local, tmp_path):
    lines = [{"path": n, "language": "en"} for n in SHORT[:3]] + [{"path": "corrupt.wav"},
                                                                   {"path": "jfk.flac", "language": "xx"}]
    manifest = corpus / "manifest.jsonl"  # its paths are relative to its directory
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines[:2]))
    out = tmp_path / "out.jsonl"
    first = job(ray_cluster, tiny_en_dir, manifest, out, batch_size=2)
    assert (first.files, first.skipped, first.transcribed) == (2, 0, 2)
    before = rows_of(out)
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    second = job(ray_cluster, tiny_en_dir, manifest, out, batch_size=2)
    assert (second.files, second.skipped, second.transcribed, second.errors) == (5, 2, 3, 2)
    rows = rows_of(out)
    assert [r["path"] for r in rows] == SHORT[:3] + ["corrupt.wav", "jfk.flac"]
    assert rows[:2] == before  # not transcribed again
    for r in rows[:3]:
        assert_like_local(r, local(r["path"]))
    assert "corrupt.wav" in rows[3]["error"] and "'xx'" in rows[4]["error"]  # a bad per-file option fails its file
    third = job(ray_cluster, tiny_en_dir, manifest, out)  # nothing left: Ray is not even asked
    assert (third.skipped, third.transcribed) == (5, 0) and rows_of(out) == rows


def worker_pids() -> list[int]:
    """Ray Data's map workers among this process's descendants (their title is `ray::MapWorker(...)`)."""
    parents, titles = {}, {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(p.name)] = (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False
    return [pid for pid, t in titles.items() if t.startswith("ray::MapWorker") and ours(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker's process in /proc")
def test_killed_worker_loses_no_file_and_writes_none_twice(ray_cluster, tiny_en_dir, corpus, local, tmp_path):
    files = []
    for i in range(6):  # six files, each a few seconds of work for one worker
        name = SHORT[i % 2]
        files.append(str(tmp_path / f"{i}-{name}"))
        shutil.copy(clip(name), files[-1])
    killed: list[int] = []
    seen_after: set[int] = set()

    def kill_worker_on_first_row(row):
        if killed:
            seen_after.update(worker_pids())
            return
        killed.extend(worker_pids())
        assert killed, "no Ray map worker found to kill"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    out = tmp_path / "out.jsonl"
    s = job(ray_cluster, tiny_en_dir, files, out, batch_size=1, on_row=kill_worker_on_first_row)
    assert killed
    assert seen_after - set(killed), "no restarted worker delivered a row after the kill: it came too late to test"
    rows = rows_of(out)
    assert [r["path"] for r in rows] == files and s.transcribed == 6 and s.errors == 0
    for r in rows:
        assert_like_local(r, local(Path(r["path"]).name.split("-", 1)[1]))


def test_cli_batch_directory(ray_cluster, tiny_en_dir, tmp_path, local, capsys):
    from whisperfast.cli import main

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(clip("LDC93S1.wav"), d / "a.wav")
    (d / "notes.txt").write_text("not audio: not listed")
    out = tmp_path / "out.parquet"
    code = main(["batch", str(d), "--output", str(out), "--model", str(tiny_en_dir), "--num-workers", "1",
                 "--threads", "1", "--beam_size", "None", "--best_of", "None", "--verbose", "False"])
    assert code == 0, capsys.readouterr().err
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    assert [r["path"] for r in rows] == [str(d / "a.wav")]
    assert_like_local(rows[0], local("LDC93S1.wav"))
    assert "1 transcribed, 0 errors" in capsys.readouterr().err


def test_cli_batch_usage_errors(capsys):
    from whisperfast.cli import main

    assert main(["batch", "x.wav"]) == 2  # --output is required
    assert "--output" in capsys.readouterr().err
    assert main(["batch", "x.wav", "--output", "o.jsonl", "--output_dir", "d"]) == 2
    assert "--output_dir is not a batch option" in capsys.readouterr().err
    assert main(["batch", "x.wav", "--output", "o.csv"]) == 2
    assert ".jsonl or .parquet" in capsys.readouterr().err


def test_store_keeps_one_row_per_path_across_parts(tmp_path):
    from whisperfast.distributed.store import ResultStore

    out = tmp_path / "r.jsonl"
    a = ResultStore(out)
    a.add({"path": "x", "error": "boom"})
    a.commit([{"path": "x", "error": "boom"}, {"path": "y", "error": None, "text": "1"}])
    a.commit([{"path": "y", "error": None, "text": "2"}, {"path": "x", "error": None, "text": "ok"},
              {"path": "z", "error": "first"}])
    a.commit([{"path": "z", "error": "retried"}])
    b = ResultStore(out)  # a rerun after the driver died before merging: the parts are read back
    assert b.rows == {"x": {"path": "x", "error": None, "text": "ok"}, "y": {"path": "y", "error": None, "text": "1"},
                      "z": {"path": "z", "error": "retried"}}
    assert b.done("x") and b.done("y") and b.done("z") and not b.done("z", retry_errors=True) and not b.done("w")
    b.merge(["y", "x"])
    assert rows_of(out) == [b.rows["z"], b.rows["y"], b.rows["x"]] and not Path(f"{out}.parts").exists()


def test_retry_errors_replaces_an_error_row(ray_cluster, tiny_en_dir, local, tmp_path):
    wav = tmp_path / "late.wav"
    wav.write_bytes(b"not yet")
    out = tmp_path / "out.jsonl"
    assert job(ray_cluster, tiny_en_dir, [str(wav)], out).errors == 1
    shutil.copy(clip("LDC93S1.wav"), wav)  # the file is fixed
    assert job(ray_cluster, tiny_en_dir, [str(wav)], out).skipped == 1  # an error row is a result...
    s = job(ray_cluster, tiny_en_dir, [str(wav)], out, retry_errors=True)  # ...unless asked to retry it
    assert (s.skipped, s.transcribed, s.errors) == (0, 1, 0)
    rows = rows_of(out)
    assert len(rows) == 1
    assert_like_local(rows[0], local("LDC93S1.wav"))


def test_package_imports_without_ray(tmp_path):
    code = """
import sys
sys.modules['ray'] = None  # as if ray were not installed
import whisperfast, whisperfast.cli, whisperfast.distributed
from whisperfast.distributed import transcribe_dataset
from whisperfast.errors import MissingDependencyError
try:
    transcribe_dataset([sys.argv[1]], sys.argv[2])
except MissingDependencyError as e:
    print("missing:", e)
"""
    wav = clip("LDC93S1.wav")
    r = subprocess.run([sys.executable, "-c", code, wav, str(tmp_path / "o.jsonl")], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "missing:" in r.stdout and "pip install 'whisperfast[ray]'" in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, whisperfast, whisperfast.cli, whisperfast.distributed; "
                        "print('ray' in sys.modules)"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.stdout.strip() == "False", r.stderr  # the package never imports ray on its own


def test_bad_options_fail_before_any_work(tmp_path):
    from whisperfast.distributed import transcribe_dataset
    from whisperfast.errors import OptionError

    wav = clip("LDC93S1.wav")
    for bad, message in ((dict(temperature=-1), "temperature"), (dict(foo=1), "unknown option(s) foo"),
                         (dict(num_workers=0), "num_workers"), (dict(language="xx"), "unknown language 'xx'")):
        with pytest.raises(OptionError, match=re.escape(message)):
            transcribe_dataset([wav], tmp_path / "o.jsonl", **bad)  # checked on the driver: Ray is not started
    with pytest.raises(OptionError, match="no audio files found"):
        transcribe_dataset([str(tmp_path / "*.flac")], tmp_path / "o.jsonl")
    assert not list(tmp_path.iterdir())


def test_worker_error_is_raised_as_itself(ray_cluster, tiny_en_dir, tmp_path):
    from whisperfast.errors import OptionError

    with pytest.raises(OptionError, match=r"English-only \(\.en\): it cannot translate"):  # found as tiny.en loads
        job(ray_cluster, tiny_en_dir, [clip("LDC93S1.wav")], tmp_path / "o.jsonl", task="translate")
