"""README's CPU benchmark table is what `bench/readme_table.py` makes of the files under bench/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_table_is_regenerated_from_bench_results():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "readme_table.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_table_reads_every_kind_of_result():
    sys.path.insert(0, str(ROOT / "bench"))
    import readme_table

    found = readme_table.collect()
    assert ("latency", "tiny.en", "greedy") in found and ("beam.py", "jfk.flac") in found
    assert any(k[0] == "longform" and k[4] == "english" for k in found)
    rows = readme_table.table(found).splitlines()
    assert len(rows) > 10 and all(r.count("|") == 6 for r in rows[:4])
