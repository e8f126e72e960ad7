"""The GPU kit's plumbing, on CPU: `bench/gpu_check.sh` in dry-run mode in a fresh venv that holds only
what the device image holds of our dependencies (no soundfile, no cffi), with the carried wheels installed
as the device run installs them. A lent GPU is rare and short; this keeps the one call from failing on
plumbing. Needs PyPI (the prepare step downloads the wheels; the venv installs torch & co.)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path, tiny_en_dir):
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_BUDGET": "1500",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # the script's python3:
    # this interpreter, whether or not its venv was activated (the dry run pins what it has installed)
    subprocess.run([sys.executable, "bench/gpu_prepare.py"], cwd=ROOT, env=env, check=True, timeout=600)
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if "step" in r}
    assert steps["env"]["device"] == "cpu (dry run)" and "error" not in steps["env"], steps["env"]
    bench = [r for r in rows if "engine" in r]
    assert {(r["shape"], r["engine"], r["batch"]) for r in bench} == {
        ("toy", e, b) for e in ("whisperfast", "transformers-static", "whisperfast-int8", "whisperfast-eager")
        for b in (1, 2)}
    assert not [r for r in bench if "error" in r], bench
    for r in bench:
        assert r["tok_s"] > 0 and r["median_s"] > 0
        if r["engine"].startswith("whisperfast"):
            assert r["step_ms"] > 0 and r["prefill_ms"] > 0 and r["encoder_ms"] > 0
            assert (r["graph_breaks"], r["recompiles"], r["cudagraph_skips"]) == (0, 0, 0), r
    assert {r["dtype"] for r in bench if r["engine"] != "whisperfast-int8"} == {"float32"}, bench
    int8 = [r for r in bench if r["engine"] == "whisperfast-int8"]
    assert len(int8) == 2 and all(r["dtype"] == "int8" for r in int8), int8  # the weight-only int8 rows
    compiled = [r for r in bench if r["engine"] in ("whisperfast", "whisperfast-int8")]
    assert len(compiled) == 4 and all(r["graphs"] > 0 for r in compiled)  # the compiled engines did compile
    assert steps["cuda_tests"]["rc"] == "0" and "skipped" in steps["cuda_tests"]["summary"], steps["cuda_tests"]
    assert "seconds" in steps["done"]
