"""`whisperfast batch INPUT... --output OUT [--address auto|ray://...] [--num_workers N] [--num_gpus_per_worker G]
[every option of `whisperfast`]`: transcribe_dataset from the command line.

The `whisperfast` command hands `batch` over to `batch_main` with its own option parsing, so `batch` takes the
same options with the same defaults (beam_size 5 / best_of 5 as `whisper`) and gives the same results. Progress
(files, audio hours, errors) goes to stderr unless --verbose False. Exit status: 0 done, 1 some files have error
rows, 2 a usage or input error, 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import WhisperfastError

NOT_FOR_BATCH = ("__output_dir", "_o", "__output_format", "_f", "__stdout", "__model_dir")  # "-" read as "_"
JOB_OPTIONS = ("batch_size", "on_error", "verbose")
BATCH_SIZE = 8  # --batch_size of `batch` when not given (`whisperfast`'s is 1: one file at a time)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whisperfast batch", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                usage="whisperfast batch INPUT [INPUT ...] --output OUT [options]",
                                description="Transcribe a corpus (files, directories, globs or JSONL/CSV/parquet "
                                            "manifests) on a Ray cluster into one .jsonl or .parquet file.",
                                epilog="Every option of `whisperfast` is taken too (--model, --language, "
                                       "--batch_size, --beam_size, --word_timestamps, ...): see `whisperfast --help`. "
                                       f"--batch_size (the model's batch slots per worker) is {BATCH_SIZE} unless given.")
    a = p.add_argument
    a("--output", required=True, help="results file, .jsonl or .parquet; rerun with the same file to resume")
    a("--address", default=None, help="Ray cluster to join: auto, ray://HEAD:10001; None: $RAY_ADDRESS, else a local Ray")
    a("--num_workers", "--num-workers", type=int, default=1, help="model replicas (Ray actors)")
    a("--num_gpus_per_worker", "--num-gpus-per-worker", type=float, default=0, help="GPUs per worker (0: CPU; 0.5: two per GPU)")
    a("--num_cpus_per_worker", "--num-cpus-per-worker", type=float, default=1, help="CPUs reserved per worker")
    a("--retry_errors", "--retry-errors", action="store_true", help="on a rerun, transcribe again the files that have an error row")
    return p


def batch_main(argv: list[str], parse_args: Callable, transcribe_options: Callable) -> int:
    """`parse_args`/`transcribe_options`: the `whisperfast` command's, for the options both commands share."""
    try:
        own, rest = build_parser().parse_known_args(argv)
        args = parse_args(rest)
    except SystemExit as e:  # --help, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 2
    names = {t.split("=")[0].replace("-", "_"): t.split("=")[0] for t in rest if t.startswith("-")}
    given = [names[o] for o in NOT_FOR_BATCH if o in names]
    if given:
        print(f"whisperfast batch: error: {given[0]} is not a batch option; results go to --output", file=sys.stderr)
        return 2
    if "__batch_size" not in names:
        args.batch_size = BATCH_SIZE
    try:
        return run(own, args, transcribe_options(args))
    except WhisperfastError as e:
        print(f"whisperfast batch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nwhisperfast batch: interrupted; the rows received so far are kept: rerun the same command to "
              "resume", file=sys.stderr)
        return 130


def run(own: argparse.Namespace, args: argparse.Namespace, kw: dict) -> int:
    from tqdm import tqdm

    from . import transcribe_dataset

    for k in JOB_OPTIONS:
        kw.pop(k, None)

    def report(row: dict) -> None:
        if row["error"] is not None:  # above the progress bar, which goes on below
            tqdm.write(f"whisperfast batch: {row['path']}: {row['error']}", file=sys.stderr)

    s = transcribe_dataset(args.audio, own.output, model=args.model, batch_size=args.batch_size,
                           num_workers=own.num_workers, num_gpus_per_worker=own.num_gpus_per_worker,
                           num_cpus_per_worker=own.num_cpus_per_worker, device=args.device,
                           dtype=args.dtype or (None if args.fp16 else "float32"), compile=args.compile,
                           threads=args.threads or None, address=own.address, retry_errors=own.retry_errors,
                           progress=args.verbose, on_row=report, **kw)
    print(f"whisperfast batch: {s.files} files: {s.transcribed - s.errors} transcribed, {s.errors} errors, "
          f"{s.skipped} already in {s.output} ({s.audio_seconds / 3600:.3f} audio hours in {s.seconds:.0f} s)",
          file=sys.stderr)
    return 1 if s.errors else 0
