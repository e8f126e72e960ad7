"""README's CPU benchmark table, regenerated from the benchmark outputs under bench/results/ (never typed by hand).

    python bench/readme_table.py           # rewrite the table between the markers in README.md
    python bench/readme_table.py --check   # exit 1 if README.md's table differs from what the files give

Every row reads one section of one output file: `bench/cpu_latency.py` (jfk end to end), `bench/longform.py rtf`
(RTFx and peak RSS; the `#` line above a table says which command made it) and `bench/beam.py`. Files are read in
name order (bench/results/<bench>_<machine>_<date><suffix>.txt), and a later file's section replaces an earlier
one's whole, so the engines of a row always come from one run of the same command (their ratio is a same-run
ratio). A row whose section no file holds is left out.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- cpu-table:begin (python bench/readme_table.py) -->", "<!-- cpu-table:end -->"
COLUMNS = ["whisperfast", "transformers", "openai", "faster-whisper"]  # engine names as the benches print them
HEAD = "| what | whisperfast | transformers | openai-whisper | faster-whisper |\n|---|---|---|---|---|"


def sections(text: str, name: str) -> dict[tuple, dict[str, dict]]:
    """One output file -> {section key: {engine: values}}."""
    out: dict[tuple, dict[str, dict]] = {}
    command, key = "", None
    for line in text.splitlines():
        if line.startswith("#"):
            if "bench/" in line:
                command = line
            continue
        if m := re.match(r"(\S+), tests/data/jfk\.flac, (greedy|beam \d+), \d+ threads", line):
            key = ("latency", m[1], m[2])
            continue
        if m := re.match(r"model (\S+), [\d.]+ s of audio, \d+ threads, cpu, temperature (.+)$", line):
            beam = re.search(r"--beam_size (\d+)", command)
            key = ("longform", m[1], "beam " + beam[1] if beam else "greedy", m[2].strip(),
                   "english" if "--english" in command else "")
            continue
        if m := re.match(r"(\S+) \([\d.]+ s\), beam 5 \+ best_of 5, fallback", line):
            key = ("beam.py", m[1])
            continue
        if key is None:
            continue
        elif key[0] == "latency" and (m := re.match(r"\s+(\S+)\s+([\d.]+) ms", line)):
            out.setdefault(key, {})[m[1]] = {"s": float(m[2]) / 1e3}
        elif key[0] == "longform" and (m := re.match(r"(\S+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+x\s+\d+\s+(\d+)", line)):
            values = {"rtfx": float(m[3]), "rss": int(m[4])}
            if key[4] == "english":  # a WER % column at the end
                values["wer"] = float(line.split()[-1])
            out.setdefault(key, {})[m[1]] = values
        elif key[0] == "beam.py" and (m := re.match(r"\s+(\S+)\s+([\d.]+) s\s+RTFx\s+([\d.]+)", line)):
            engine = {"openai-whisper": "openai"}.get(m[1], m[1])
            out.setdefault(key, {})[engine] = {"rtfx": float(m[3])}
        else:
            continue
        out[key]["_file"] = {"name": name}
    return out


def collect(folder: Path = RESULTS) -> dict[tuple, dict[str, dict]]:
    found: dict[tuple, dict[str, dict]] = {}
    for path in sorted(folder.glob("*.txt")):
        found.update(sections(path.read_text(), path.name))  # a later file's section replaces the whole section
    return found


def row(label: str, section: dict | None, cell, engines=COLUMNS) -> str | None:
    if section is None:
        return None
    cells = [cell(section[e]) if e in section else "" for e in engines]
    return f"| {label} ({section['_file']['name']}) | " + " | ".join(cells) + " |"


def table(found: dict[tuple, dict[str, dict]]) -> str:
    seconds = lambda v: f"{v['s']:.3f}"  # noqa: E731
    rtfx = lambda v: f"{v['rtfx']:.1f}"  # noqa: E731
    greedy_t0 = found.get(("longform", "tiny.en", "greedy", "0.0", ""))
    beam_lf = next((v for k, v in found.items() if k[:3] == ("longform", "tiny.en", "beam 5")), None)
    int8 = {"whisperfast": "whisperfast-int8", "faster-whisper": "faster-whisper-int8"}

    def int8_of(section):
        return None if section is None else {"_file": section["_file"], **{
            e: section[q] for e, q in int8.items() if q in section}}

    def pair(section_a, section_b):  # "a / b" cells from two sections (jfk / sonnet)
        if section_a is None or section_b is None:
            return None
        both = {e: {"txt": f"{section_a[e]['rtfx']:.1f} / {section_b[e]['rtfx']:.1f}"}
                for e in COLUMNS if e in section_a and e in section_b}
        return {"_file": section_a["_file"], **both}

    def rss(section):
        if section is None:
            return None
        cells = {e: {"txt": str(section[e]["rss"]) + (f" / {section[q]['rss']}" if (q := int8.get(e)) in section
                                                      else "")} for e in COLUMNS if e in section}
        return {"_file": section["_file"], **cells}

    text = lambda v: v["txt"]  # noqa: E731
    rows = [
        row("jfk end to end, tiny.en, greedy, seconds (`bench/cpu_latency.py --threads 2`)",
            found.get(("latency", "tiny.en", "greedy")), seconds),
        row("the same, int8 (whisperfast `dtype=\"int8\"`, faster-whisper `compute_type=\"int8\"`)",
            int8_of(found.get(("latency", "tiny.en", "greedy"))), seconds),
        row("the same, base (`--model base`)", found.get(("latency", "base", "greedy")), seconds),
        row("the same, base, int8", int8_of(found.get(("latency", "base", "greedy"))), seconds),
        row("jfk end to end, beam 5, seconds (`bench/cpu_latency.py --beam_size 5`)",
            found.get(("latency", "tiny.en", "beam 5")), seconds),
        row("long-form 150 s, greedy T=0, RTFx (`bench/longform.py rtf --temperature 0.0 --rounds 3`)", greedy_t0,
            rtfx),
        row("the same, int8", int8_of(greedy_t0), rtfx),
        row("long-form 150 s, beam 5 + best_of 5 + fallback, RTFx (`bench/longform.py rtf --beam_size 5`)", beam_lf,
            rtfx),
        row("beam 5 + best_of 5 + fallback, RTFx jfk / sonnet (`bench/beam.py --repeats 5`)",
            pair(found.get(("beam.py", "jfk.flac")), found.get(("beam.py", "sonnet001.mp3"))), text),
        row("peak RSS, long-form 150 s greedy T=0, MB (fp32 / int8)", rss(greedy_t0), text),
    ]
    out = "\n".join([HEAD] + [r for r in rows if r is not None])
    vad = next((v for k, v in found.items() if k[0] == "longform" and k[4] == "english" and "whisperfast-vad" in v),
               None)
    if vad is not None:
        engines = ["whisperfast", "whisperfast-vad", "fw-batched", "fw-batched-int8", "fw-vad"]
        out += ("\n\nOne long English file (152 s: the 4 English clips with 1 s gaps), tiny.en, openai's fallback "
                "settings, RTFx / WER % (`bench/longform.py rtf --english`, " + vad["_file"]["name"] + "):\n\n"
                "| whisperfast sequential | whisperfast `strategy=\"vad\"`, batch 8 | faster-whisper batched, batch 8 "
                "| the same, int8 | faster-whisper `vad_filter` |\n|---|---|---|---|---|\n| "
                + " | ".join(f"{vad[e]['rtfx']:.1f} / {vad[e]['wer']:.2f}" if e in vad else "" for e in engines) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's table is not what the files give")
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    args = ap.parse_args()
    readme = Path(args.readme)
    old = readme.read_text()
    if BEGIN not in old or END not in old:
        sys.exit(f"{readme}: no table markers ({BEGIN} ... {END})")
    head, rest = old.split(BEGIN, 1)
    new = head + BEGIN + "\n" + table(collect()) + "\n" + END + rest.split(END, 1)[1]
    if args.check:
        sys.exit(0 if new == old else f"{readme}: the CPU table differs from bench/results (run bench/readme_table.py)")
    readme.write_text(new)
    print(table(collect()))


if __name__ == "__main__":
    main()
