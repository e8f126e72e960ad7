"""The user-facing model: `load_model(...)` -> `WhisperModel` with `decode`, `detect_language`, `transcribe`."""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import torch

from .audio import is_array, load_audio
from .decode.engine import Engine
from .decode.options import DecodingOptions, DecodingResult, check_task, verify
from .errors import ModelLoadError, OptionError
from .features import short_form_features
from .model.hub import resolve
from .model.load import load_whisper
from .model.whisper import Whisper
from .tokenizer import Tokenizer
from .longform import transcribe_with
from .plan import make_plan

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"device {device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} was requested but CUDA is not available here; use device='cpu'")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise OptionError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                          f"use 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'")
    if d.type not in ("cpu", "cuda"):
        raise OptionError(f"device {device!r}: whisperfast runs on 'cpu' or 'cuda'")
    return d


OPENAI_ONLY = {  # openai-whisper's transcribe()/decode() keywords this engine does not take, and why
    "prefix": "a forced prefix per window is not implemented",
    "prompt": "use initial_prompt (transcribe) or decode(..., prompt=...)",
    "max_initial_timestamp": "the first timestamp is capped at 1.0 s as in openai-whisper's default",
}


def check_options(where: str, given: dict, accepted) -> None:
    """OptionError naming any keyword in `given` that `where` does not take (not a TypeError from deep inside)."""
    for name in sorted(set(given) & set(OPENAI_ONLY) - set(accepted)):
        raise OptionError(f"{where}: openai-whisper's option {name} is not supported by whisperfast: {OPENAI_ONLY[name]}")
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(accepted))}")


def fp16_dtype(fp16: bool | None, dtype: str | torch.dtype | None) -> str | torch.dtype | None:
    """openai-whisper's `fp16` as a load dtype: False -> float32, True -> the device's default (float16 on
    CUDA, float32 on CPU); an explicit dtype wins."""
    return dtype if dtype is not None or fp16 is not False else "float32"
def resolve_precision(dtype: str | torch.dtype | None, device: torch.device) -> tuple[torch.dtype, bool]:
    """(compute dtype, int8 weights?): "int8" computes in float32 on CPU and float16 on CUDA."""
    if dtype is torch.int8 or (isinstance(dtype, str) and dtype.lower() == "int8"):
        return (torch.float16 if device.type == "cuda" else torch.float32), True
    return resolve_dtype(dtype, device), False


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise OptionError(f"dtype {dtype!r} is not supported; use float32, float16, bfloat16 or int8")


def default_threads() -> int:
    """OMP_NUM_THREADS when set (the user's choice, as torch and CTranslate2 read it), else the cores this
    process may run on (its CPU affinity, which a container or `taskset` narrows; not the machine's count)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def resolve_threads(threads: int | None) -> int:
    """`threads` of load_model: None or 0 (whisper's `--threads 0`) -> default_threads(), else a count >= 1."""
    if threads is None or (type(threads) is int and threads == 0):
        return default_threads()
    if type(threads) is not int or threads < 0:
        raise OptionError(f"threads={threads!r}: use a positive number of CPU threads, or None / 0 for the "
                          f"cores this process may run on ({default_threads()} here)")
    return threads


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads, then put back the caller's count (the thread count is
    process-wide: a model's setting must not outlive its call)."""
    saved = torch.get_num_threads()
    if n != saved:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def threaded(gen: Iterator, n: int) -> Iterator:
    """`gen` advanced under torch_threads(n); the caller's count is back in force at every yield."""
    while True:
        with torch_threads(n):
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item


class WhisperModel:
    """A loaded checkpoint: network, tokenizer, and the decode engine with its static caches."""

    def __init__(self, model: Whisper, tokenizer: Tokenizer, path: Path, *, compile: bool | None = None,
                 threads: int | None = None):
        self.model, self.tokenizer, self.path = model, tokenizer, path
        self.threads = resolve_threads(threads)  # torch threads of every call (CPU work), restored after it
        self.engine = Engine(model, tokenizer, compile=compile)

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_multilingual(self) -> bool:
        return self.tokenizer.multilingual

    def decode(self, audio, *, language: str | None = None, task: str = "transcribe",
               without_timestamps: bool = False, temperature: float = 0.0, prompt=None,
               **options) -> DecodingResult | list[DecodingResult]:
        """Decode the first 30 s of each input (audio zero-padded to 30 s, then log-mel) in one batch.

        `audio`: a path, an array, bytes, or a list of them (-> a list of results).
        """
        check_task(task, self.config, self.is_multilingual)
        check_options("decode", options, [f.name for f in fields(DecodingOptions)])
        if prompt is not None and not isinstance(prompt, (str, list, tuple)):
            raise OptionError(f"decode: prompt must be a str, a list of token ids or None, not {type(prompt).__name__}")
        batch = isinstance(audio, list) or (isinstance(audio, tuple) and not is_array(audio))
        items = list(audio) if batch else [audio]
        opts = DecodingOptions(task=task, language=language, temperature=temperature,
                               without_timestamps=without_timestamps, **options)
        verify(opts)  # openai's decode() checks: no best_of at T = 0, not with beam_size; patience needs beams
        with torch_threads(self.threads):
            mel = short_form_features([load_audio(a) for a in items], self.config.n_mels)
            enc = self.engine.encode(mel, sample_len=opts.sample_len)
            results = enc.decode(opts, prompts=[prompt] * len(items))
        return results if batch else results[0]

    def detect_language(self, audio) -> tuple[str, dict[str, float]]:
        """(best language code, {code: probability}) from the first 30 s (openai-whisper's method)."""
        if not self.is_multilingual:
            raise OptionError("this checkpoint is English-only (.en): there is no language to detect")
        with torch_threads(self.threads):
            if isinstance(audio, torch.Tensor) and audio.dim() == 2 and audio.shape[0] == self.config.n_mels:
                mel = audio[None, :, :3000]
            else:
                mel = short_form_features([load_audio(audio)], self.config.n_mels)
            return self.engine.encode(mel).detect_language()[0]

    def transcribe(self, audio, *, threads: int | None = None, fp16: bool | None = None, **kwargs):
        """See `whisperfast.transcribe`. `threads` overrides the model's count for this call. `fp16`:
        openai-whisper's switch, checked against the dtype the model was loaded in (True on CPU warns as whisper
        does and runs float32; False on a float16 model is an OptionError: load it with dtype="float32")."""
        self._check_fp16(fp16)
        takes = [p.name for f in (transcribe_with, make_plan) for p in inspect.signature(f).parameters.values()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("model", "audio")]
        check_options("transcribe", kwargs, takes + [f.name for f in fields(DecodingOptions)])
        n = self.threads if threads is None else resolve_threads(threads)
        with torch_threads(n):
            out = transcribe_with(self, audio, **kwargs)  # a generator when stream=True: runs on iteration
        return threaded(out, n) if kwargs.get("stream") else out

    def _check_fp16(self, fp16: bool | None) -> None:
        if fp16 is None:
            return
        if not isinstance(fp16, bool):
            raise OptionError(f"fp16 must be True or False, not {fp16!r}")
        dtype = self.model.dtype
        if fp16 and self.device.type == "cpu":
            if dtype != torch.float32:
                return
            warnings.warn("FP16 is not supported on CPU; using FP32 instead", stacklevel=3)
        elif fp16 and dtype == torch.float32:
            warnings.warn("fp16=True: this model was loaded as float32 and runs so; load it with "
                          "dtype='float16' for half precision", stacklevel=3)
        elif not fp16 and dtype != torch.float32:
            raise OptionError(f"fp16=False: this model was loaded as {str(dtype).removeprefix('torch.')}; load "
                              "it with load_model(..., dtype='float32') to run in full precision")


def load_model(name_or_path: str | os.PathLike = "tiny.en", device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, *, compile: bool | None = None,
               threads: int | None = None) -> WhisperModel:
    """A Whisper checkpoint by short name ('tiny.en', 'large-v3', ...), hub id, or local directory.

    `threads`: torch's CPU threads during each call of the model (set for the call, then restored); None
    or 0: OMP_NUM_THREADS when set, else the cores this process may run on."""
    if compile not in (None, True, False):
        raise OptionError(f"compile={compile!r}: use True, False or None (compile on CUDA only)")
    threads = resolve_threads(threads)
    dev = resolve_device(device)
    dt, int8 = resolve_precision(dtype, dev)
    path = resolve(name_or_path)
    model = load_whisper(path, device=dev, dtype=dt, int8=int8)
    c = model.config
    tokenizer = Tokenizer.from_file(path / "tokenizer.json", c.num_languages if c.multilingual else 0)
    if tokenizer.timestamp_begin + 1501 != c.n_vocab:  # 1501 timestamps end every Whisper vocabulary
        raise ModelLoadError(f"{path / 'tokenizer.json'}: its special tokens imply a vocabulary of "
                             f"{tokenizer.timestamp_begin + 1501} ids but config.json says {c.n_vocab}; "
                             "the tokenizer belongs to another model (copy the one of this model)")
    return WhisperModel(model, tokenizer, path, compile=compile, threads=threads)
