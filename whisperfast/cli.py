"""The `whisperfast` command: openai-whisper's `whisper` command line on this engine.

Option names, defaults and output files follow `whisper` (its transcribe.py `cli()`), so a command line
moves over by changing the program name. Beyond `whisper`: `--dtype`, `--batch_size`, `--compile`,
`--without_timestamps`, `--on_error`, `--seed`, `--vad_filter` / `--vad_parameters` (faster-whisper's, the
latter as JSON), `--stdout` (same as `--output_dir -`: print one format instead of writing files), every
`--option_name` may be spelled `--option-name`, and a True/False option given with no value means True. The default model is tiny.en; `--beam_size 5 --best_of 5` are whisper's defaults
(beams at temperature 0, best-of-5 sampling on fallback; the Python API stays greedy unless asked);
`--repetition_guard N` stops a window whose last N tokens loop one n-gram. An audio path `-` is standard
input (its outputs are named stdin.txt, ...). `--dtype float16` on CPU warns as whisper does and runs float32.

stdout carries only transcripts: with no --output_dir the text of each file is printed as well as
written, and with --output_dir - the chosen format is printed; progress, --verbose segment lines and
warnings (`whisperfast: warning: ...`) go to stderr. The output directory is checked before any decoding.
Files are written atomically as each batch of `--batch_size` files finishes, and Ctrl-C while a
file's outputs are being written waits for them, so an interrupted run leaves every finished file with
all of its outputs complete and no partial or temporary files. Usage errors are one line. Exit status:
0 done, 1 some files skipped (--on_error skip), 2 a usage or input error (`whisperfast: error: ...`),
130 interrupted, 141 stdout closed by its reader (`| head`; quietly, as a program killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import warnings

import numpy as np

from .decode.options import DecodingOptions
from .errors import AudioError, OptionError, WhisperfastError
from .plan import clip_timestamps_of
from .writers import FORMATS, WRITERS, get_writer

WORD_OPTIONS = ("highlight_words", "max_line_count", "max_line_width", "max_words_per_line")
UNSUPPORTED_WHISPER_OPTIONS: tuple[str, ...] = ()
STDIN_NAME = "stdin"  # the output files' name for audio read from standard input ("-")


def str2bool(string: str) -> bool:
    values = {"true": True, "false": False}
    if string.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected True or False, got {string!r}")
    return values[string.lower()]


def optional_int(string: str) -> int | None:
    return None if string == "None" else int(string)


def optional_float(string: str) -> float | None:
    return None if string == "None" else float(string)


def optional_str(string: str) -> str | None:
    return None if string == "None" else string


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" only where the help does not already say what the default is."""

    def _get_help_string(self, action):
        help = action.help or ""
        if "default" in help or action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return help
        return super()._get_help_string(action)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("whisperfast")
    except PackageNotFoundError:
        return "unknown (not installed)"
def json_dict(string: str) -> dict:
    import json

    value = json.loads(string)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {string!r}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage error is one line on stderr (not the whole usage text) and exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="whisperfast", formatter_class=HelpFormatter,
                                description="Transcribe or translate audio files with Whisper.",
                                epilog="Every --option_name may also be written --option-name.")
    a = p.add_argument
    # fmt: off
    a("audio", nargs="+", type=str, help="audio file(s) to transcribe; - reads standard input")
    a("--version", action="version", version=f"%(prog)s {version()}")
    a("--model", default="tiny.en", help="model name (tiny.en, base, large-v3, ...), hub id, or local directory")
    a("--model_dir", type=str, default=None, help="where converted models are kept; $WHISPERFAST_CACHE or ~/.cache/whisperfast by default")
    a("--device", default=None, help="cpu, cuda or cuda:N; cuda when available by default")
    a("--dtype", default=None, help="float32, float16, bfloat16 or int8 (weight-only int8 decoder); float16 on cuda, float32 on cpu by default")
    a("--output_dir", "-o", type=str, default=None, help="directory to save the outputs ('.' when not given, and the text is printed too); '-' prints one format to stdout")
    a("--output_format", "-f", type=str, default=None, choices=FORMATS, help="format of the output file; all formats when writing files, txt when printing (default: all)")
    a("--stdout", action="store_true", help="print the output format to stdout instead of writing files (same as --output_dir -)")
    a("--verbose", type=str2bool, default=True, help="whether to print out the progress and the segments as they are decoded (to stderr)")
    a("--task", type=str, default="transcribe", choices=["transcribe", "translate"], help="whether to perform X->X speech recognition ('transcribe') or X->English translation ('translate')")
    a("--language", type=optional_str, default=None, help="language spoken in the audio (code or name), or None to detect it")
    a("--temperature", type=float, default=0, help="temperature to use for sampling")
    a("--best_of", type=optional_int, default=5, help="number of candidates when sampling with non-zero temperature")
    a("--beam_size", type=optional_int, default=5, help="number of beams in beam search, only applicable when temperature is zero")
    a("--patience", type=float, default=None, help="optional patience value to use in beam decoding, as in https://arxiv.org/abs/2204.05424, the default (1.0) is equivalent to conventional beam search")
    a("--length_penalty", type=float, default=None, help="optional token length penalty coefficient (alpha) as in https://arxiv.org/abs/1609.08144, uses simple length normalization by default")
    a("--suppress_tokens", type=str, default="-1", help="comma-separated list of token ids to suppress during sampling; '-1' will suppress most special characters except common punctuations")
    a("--initial_prompt", type=str, default=None, help="optional text to provide as a prompt for the first window.")
    a("--carry_initial_prompt", type=str2bool, default=False, help="if True, prepend initial_prompt to every window's prompt")
    a("--condition_on_previous_text", type=str2bool, default=True, help="if True, provide the previous output of the model as a prompt for the next window")
    a("--fp16", type=str2bool, default=True, help="False runs in float32 (when --dtype is not given)")
    a("--temperature_increment_on_fallback", type=optional_float, default=0.2, help="temperature to increase when falling back when the decoding fails to meet either of the thresholds below")
    a("--compression_ratio_threshold", type=optional_float, default=2.4, help="if the gzip compression ratio is higher than this value, treat the decoding as failed")
    a("--logprob_threshold", type=optional_float, default=-1.0, help="if the average log probability is lower than this value, treat the decoding as failed")
    a("--no_speech_threshold", type=optional_float, default=0.6, help="if the probability of the <|nospeech|> token is higher than this value AND the decoding has failed due to `logprob_threshold`, consider the segment as silence")
    a("--word_timestamps", type=str2bool, default=False, help="extract word-level timestamps")
    a("--prepend_punctuations", type=str, default="\"'“¿([{-", help="if word_timestamps is True, merge these punctuation symbols with the next word")
    a("--append_punctuations", type=str, default="\"'.。,，!！?？:：”)]}、", help="if word_timestamps is True, merge these punctuation symbols with the previous word")
    a("--highlight_words", type=str2bool, default=False, help="(requires --word_timestamps True) underline each word as it is spoken in srt and vtt")
    a("--max_line_width", type=optional_int, default=None, help="(requires --word_timestamps True) the maximum number of characters in a line before breaking the line")
    a("--max_line_count", type=optional_int, default=None, help="(requires --word_timestamps True) the maximum number of lines in a segment")
    a("--max_words_per_line", type=optional_int, default=None, help="(requires --word_timestamps True, no effect with --max_line_width) the maximum number of words in a segment")
    a("--threads", type=optional_int, default=0, help="number of threads used by torch for CPU inference; 0: OMP_NUM_THREADS when set, else the cores this process may run on")
    a("--batch_size", type=int, default=1, help="files decoded together; outputs are written as each batch finishes")
    a("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the decode step (default: on cuda)")
    a("--without_timestamps", type=str2bool, default=False, help="decode without timestamp tokens (one segment per 30 s window)")
    a("--clip_timestamps", type=str, default="0", help="comma-separated list start,end,start,end,... timestamps (in seconds) of clips to process, where the last end timestamp defaults to the end of the file")
    a("--hallucination_silence_threshold", type=optional_float, default=None, help="(requires --word_timestamps True) skip silent periods longer than this threshold (in seconds) when a possible hallucination is detected")
    a("--repetition_guard", type=optional_int, default=None, help="stop a window whose last N tokens loop one n-gram (N >= 8; off by default)")
    a("--seed", type=int, default=0, help="seed of the sampling that temperature fallback uses: the same seed and input give the same output at any --batch_size")
    a("--on_error", choices=["raise", "skip"], default="raise", help="on a file that cannot be read: stop (raise), or report it and go on (skip)")
    a("--vad_filter", type=str2bool, default=False, help="remove non-speech (Silero VAD) before decoding; times stay those of the file")
    a("--vad_parameters", type=json_dict, default=None, help='VAD options as JSON, e.g. \'{"min_silence_duration_ms": 500}\' (faster-whisper\'s VadOptions)')
    # fmt: on
    return p


BOOL_OPTIONS = ("--verbose", "--carry_initial_prompt", "--condition_on_previous_text", "--fp16",
                "--word_timestamps", "--highlight_words", "--without_timestamps", "--vad_filter")


BOOLISH = ("true", "false", "1", "0", "yes", "no", "y", "n", "on", "off", "t", "f")  # values, not file names


def normalize_argv(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--option-name` -> `--option_name`; a bare True/False option (`--word_timestamps`) -> `... True`."""
    aliases = {o.replace("_", "-"): o for o in parser._option_string_actions if "_" in o}
    out: list[str] = []
    for i, tok in enumerate(argv):
        if tok == "--":
            return out + argv[i:]
        name, eq, value = tok.partition("=")
        tok = aliases.get(name, name) + eq + value
        out.append(tok)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok in BOOL_OPTIONS and (nxt is None or nxt.lower() not in BOOLISH):
            out.append("True")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed options, with output_dir/output_format resolved and `temperatures` built like whisper's."""
    parser = build_parser()
    args = parser.parse_intermixed_args(normalize_argv(list(sys.argv[1:] if argv is None else argv), parser))
    if args.stdout and args.output_dir not in (None, "-"):
        parser.error("--stdout prints instead of writing files: drop --output_dir or --stdout")
    args.to_stdout = args.stdout or args.output_dir == "-"
    args.print_text = args.output_dir is None
    args.output_dir = args.output_dir or "."
    args.output_format = args.output_format or ("txt" if args.to_stdout else "all")
    if args.to_stdout and args.output_format == "all":
        parser.error(f"printing to stdout takes one --output_format ({', '.join(WRITERS)}), not all")
    if not args.word_timestamps:
        for option in WORD_OPTIONS:
            if getattr(args, option):
                parser.error(f"--{option} requires --word_timestamps True")
    for option in ("batch_size", "max_line_width", "max_line_count", "max_words_per_line"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, not {getattr(args, option)}")
    for option in ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold"):
        if getattr(args, option) is not None and getattr(args, option) != getattr(args, option):
            parser.error(f"--{option} must be a number or None, not nan")
    if args.threads is not None and args.threads < 0:
        parser.error(f"--threads must be 0 (the cores this process may run on) or a positive number of threads, "
                     f"not {args.threads}")
    if not re.fullmatch(r"\s*-?\d+\s*(,\s*-?\d+\s*)*", args.suppress_tokens):
        parser.error(f"--suppress_tokens takes comma-separated token ids such as '-1' or '-1,50257', "
                     f"not {args.suppress_tokens!r}")
    try:
        clip_timestamps_of(args.clip_timestamps)
        args.temperatures = temperatures(args.temperature, args.temperature_increment_on_fallback)
        search = DecodingOptions(beam_size=args.beam_size, best_of=args.best_of, patience=args.patience,
                                 length_penalty=args.length_penalty)
        for t in args.temperatures:  # whisper checks each fallback temperature's options as it decodes
            search.at_temperature(t)
    except OptionError as e:
        parser.error(str(e))
    return args


def temperatures(temperature: float, increment: float | None) -> tuple[float, ...]:
    """whisper's schedule: temperature, temperature + increment, ... up to 1.0 (just it without increment)."""
    if not 0 <= temperature < float("inf"):
        raise OptionError(f"--temperature must be a finite number >= 0 (0 = greedy), not {temperature}")
    if increment is None:
        return (temperature,)
    if not increment > 0:
        raise OptionError(f"--temperature_increment_on_fallback must be > 0 or None, not {increment}")
    return tuple(float(t) for t in np.arange(temperature, 1.0 + 1e-6, increment)) or (temperature,)


def warn(message: str) -> None:
    print(f"whisperfast: warning: {message}", file=sys.stderr)


def transcribe_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of `model.transcribe` for these options (word timing ones only when asked)."""
    kw = dict(language=args.language, task=args.task, temperature=args.temperatures,
              compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
              no_speech_threshold=args.no_speech_threshold, condition_on_previous_text=args.condition_on_previous_text,
              initial_prompt=args.initial_prompt, carry_initial_prompt=args.carry_initial_prompt,
              without_timestamps=args.without_timestamps, batch_size=args.batch_size, on_error=args.on_error,
              verbose=args.verbose, best_of=args.best_of, beam_size=args.beam_size, patience=args.patience,
              length_penalty=args.length_penalty)
    if args.clip_timestamps != "0":
        kw["clip_timestamps"] = args.clip_timestamps
    if args.word_timestamps:
        kw.update(word_timestamps=True, prepend_punctuations=args.prepend_punctuations,
                  append_punctuations=args.append_punctuations,
                  hallucination_silence_threshold=args.hallucination_silence_threshold)
    if args.repetition_guard is not None:
        kw["repetition_guard"] = args.repetition_guard
    if args.seed != 0:
        kw["seed"] = args.seed
    if args.suppress_tokens != "-1":
        kw["suppress_tokens"] = args.suppress_tokens
    if args.vad_filter:
        kw.update(vad_filter=True, vad_parameters=args.vad_parameters)
    elif args.vad_parameters is not None:
        kw["vad_parameters"] = args.vad_parameters  # make_plan says it needs --vad_filter True
    return kw


def check_inputs(args: argparse.Namespace) -> None:
    """Fail before the (slow) model load on what can be checked without it."""
    from .tokenizer import normalize_language

    language = normalize_language(args.language)
    if str(args.model).endswith(".en") and language not in (None, "en"):
        warn(f"{args.model} is an English-only model but received language {args.language!r}; using English")
        args.language = "en"
    if args.audio.count("-") > 1:
        raise OptionError("standard input (-) can be read once; give - at most once")
    if args.on_error == "raise":
        for path in args.audio:
            if path != "-" and not os.path.exists(path):
                raise AudioError(f"{path}: no such file (check the path, or use --on_error skip to go on without it)")
    if args.max_line_count and not args.max_line_width:
        warn("--max_line_count has no effect without --max_line_width")
    if args.max_words_per_line and args.max_line_width:
        warn("--max_words_per_line has no effect with --max_line_width")
    if not args.to_stdout:
        check_output_dir(args.output_dir)


def check_output_dir(output_dir: str) -> None:
    """Create --output_dir and prove it writable, before the model loads and anything is decoded."""
    import tempfile

    try:
        os.makedirs(output_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=output_dir).close()
    except OSError as e:
        raise OptionError(f"cannot write into --output_dir {output_dir!r}: {e.strerror or e}") from None


def load(args: argparse.Namespace):
    import torch

    from . import load_model
    from .api import DTYPES, resolve_device

    dtype = args.dtype or (None if args.fp16 else "float32")
    if DTYPES.get(str(dtype).lower()) == torch.float16 and resolve_device(args.device).type == "cpu":
        warn("FP16 is not supported on CPU; using FP32 instead")  # whisper's warning; fp16 is 3-4x slower here
        dtype = "float32"
    kw = dict(device=args.device, dtype=dtype, compile=args.compile, threads=args.threads)  # threads: per call
    if not args.model_dir:
        return load_model(args.model, **kw)
    saved = os.environ.get("WHISPERFAST_CACHE")
    os.environ["WHISPERFAST_CACHE"] = args.model_dir  # where the model is converted and kept
    try:
        return load_model(args.model, **kw)
    finally:
        if saved is None:
            del os.environ["WHISPERFAST_CACHE"]
        else:
            os.environ["WHISPERFAST_CACHE"] = saved


def transcribe_batch(model, paths: list[str], kw: dict) -> list:
    """One batch; engine output (progress, --verbose lines) goes to stderr so stdout holds only transcripts."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return model.transcribe(list(paths), **kw)
    except TypeError as e:  # an option this engine version does not take yet
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m and m.group(1) in kw:
            raise OptionError(f"--{m.group(1)} is not supported by this version of whisperfast") from None
        raise


@contextlib.contextmanager
def sigint_deferred():
    """Hold back Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    check_inputs(args)
    model = load(args)
    kw = transcribe_options(args)
    writer_options = {o: getattr(args, o) for o in WORD_OPTIONS}
    if not args.to_stdout:
        write = get_writer(args.output_format, args.output_dir)
    skipped = 0
    for i in range(0, len(args.audio), args.batch_size):
        paths = args.audio[i: i + args.batch_size]
        for path, result in zip(paths, transcribe_batch(model, paths, kw)):
            if result.error is not None:
                print(f"whisperfast: skipped {path}: {result.error}", file=sys.stderr)
                skipped += 1
            elif args.to_stdout:
                WRITERS[args.output_format](".").write_result(result, sys.stdout, writer_options)
                if args.output_format == "json":
                    print()  # one JSON document per line
                sys.stdout.flush()
            else:
                try:
                    with sigint_deferred():  # a file's outputs appear all together, or (on Ctrl-C before) none
                        write(result, STDIN_NAME if path == "-" else path, writer_options)
                except OSError as e:
                    raise OptionError(f"cannot write the outputs of {path} into {args.output_dir!r}: {e}") from None
                if args.print_text:
                    print(result.text.strip(), flush=True)
    return 1 if skipped else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `whisperfast` and `python -m whisperfast`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # `whisperfast serve ...`: the OpenAI-compatible server (whisperfast/server.py)
        return serve(argv[1:])
    if argv[:1] == ["batch"]:  # `whisperfast batch ...`: a corpus on Ray (whisperfast/distributed/command.py)
        from .distributed.command import batch_main

        return batch_main(argv[1:], parse_args, transcribe_options)
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return run(args)
    except WhisperfastError as e:
        print(f"whisperfast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nwhisperfast: interrupted (outputs already written are complete)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`| head -1`): stop quietly
        with contextlib.suppress(OSError, ValueError):  # nothing more may reach the closed pipe at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (a truncated file, word timestamps on translations, ...) as one `whisperfast:
    warning:` line each, without the source path."""
    warn(str(message))


def serve(argv: list[str]) -> int:
    try:
        from .server import main as serve_main
    except ModuleNotFoundError as e:
        print(f"whisperfast serve: error: {e.name} is missing; install the server extra: "
              "pip install 'whisperfast[server]'", file=sys.stderr)
        return 2
    return serve_main(argv)
