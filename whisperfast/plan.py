"""What a transcription call asks for, checked once: decoding options, temperatures, thresholds, batch,
strategy and word-timestamp options (`make_plan`), and the fallback / skip rules of openai-whisper."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .audio import CHUNK_LENGTH, HOP_LENGTH, SAMPLE_RATE
from .decode.options import DecodingOptions, DecodingResult, check_task, check_temperature
from .errors import OptionError
from .vad import VadOptions
from .words import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, WordOptions

STRATEGIES = ("sequential", "chunked", "vad")
TIME_PRECISION = 2 * HOP_LENGTH / SAMPLE_RATE  # 0.02 s per timestamp token (2 mel frames)


@dataclass(frozen=True)
class Thresholds:
    compression_ratio: float | None = 2.4
    logprob: float | None = -1.0
    no_speech: float | None = 0.6

    def needs_fallback(self, r: DecodingResult) -> bool:
        bad = (self.compression_ratio is not None and r.compression_ratio > self.compression_ratio) or (
            self.logprob is not None and r.avg_logprob < self.logprob)
        silence = (self.no_speech is not None and r.no_speech_prob > self.no_speech
                   and self.logprob is not None and r.avg_logprob < self.logprob)
        return bad and not silence

    def should_skip(self, r: DecodingResult) -> bool:
        if self.no_speech is None:
            return False
        return r.no_speech_prob > self.no_speech and not (self.logprob is not None and r.avg_logprob > self.logprob)


def temperatures_of(temperature) -> tuple[float, ...]:
    temps = tuple(temperature) if isinstance(temperature, (list, tuple)) else (temperature,)
    if not temps:
        raise OptionError("temperature must be a number or a non-empty sequence of numbers")
    return tuple(check_temperature(t) for t in temps)


@dataclass(frozen=True)
class Plan:
    """Everything the seek loop needs besides the model and the audio."""

    options: DecodingOptions
    temperatures: tuple[float, ...]
    thresholds: Thresholds
    condition: bool = True
    initial_prompt: str | None = None
    carry_initial_prompt: bool = False
    batch_size: int = 1
    on_error: str = "raise"
    silence_threshold: float | None = -50.0
    strategy: str = "sequential"
    words: WordOptions | None = None  # word timestamps (None: off)
    clip_timestamps: tuple[float, ...] = ()  # start, end, start, ... seconds (an odd count ends at the file's end)
    vad: VadOptions | None = None     # speech detection (vad_filter, strategy="vad"); None: off


def clip_timestamps_of(clip_timestamps) -> tuple[float, ...]:
    """openai-whisper's clip_timestamps: "start,end,..." or a list of seconds -> a tuple (() for "0": all)."""
    where = "clip_timestamps (comma-separated start,end,... seconds, e.g. '0,30,60')"
    if isinstance(clip_timestamps, str):
        try:
            points = [float(t) for t in clip_timestamps.split(",")] if clip_timestamps.strip() else []
        except ValueError:
            raise OptionError(f"{where}: {clip_timestamps!r} is not a list of numbers") from None
    elif isinstance(clip_timestamps, (list, tuple)):
        points = list(clip_timestamps)
    else:
        raise OptionError(f"{where}: not {type(clip_timestamps).__name__}")
    for t in points:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < float("inf"):
            raise OptionError(f"{where}: every time must be a finite number of seconds >= 0, not {t!r}")
    return () if points in ([], [0]) else tuple(float(t) for t in points)


def make_plan(model, *, language=None, task="transcribe", temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
              compression_ratio_threshold=2.4, logprob_threshold=-1.0, no_speech_threshold=0.6,
              condition_on_previous_text=True, initial_prompt=None, carry_initial_prompt=False,
              without_timestamps=False, batch_size=1, on_error="raise", silence_threshold=-50.0,
              strategy="sequential", word_timestamps=False, prepend_punctuations=PREPEND_PUNCTUATIONS,
              append_punctuations=APPEND_PUNCTUATIONS, hallucination_silence_threshold=None,
              clip_timestamps="0", vad_filter=False, vad_parameters=None, **decode_options) -> Plan:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise OptionError(f"batch_size must be a positive int, not {batch_size!r}")
    if on_error not in ("raise", "skip"):
        raise OptionError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if initial_prompt is not None and not isinstance(initial_prompt, str):
        raise OptionError(f"initial_prompt must be a string or None, not {type(initial_prompt).__name__}")
    if strategy not in STRATEGIES:
        raise OptionError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    for name, v in (("compression_ratio_threshold", compression_ratio_threshold),
                    ("logprob_threshold", logprob_threshold), ("no_speech_threshold", no_speech_threshold),
                    ("silence_threshold", silence_threshold)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != v):
            raise OptionError(f"{name} must be a number or None, not {v!r}")
    temps = temperatures_of(temperature)
    clips = clip_timestamps_of(clip_timestamps)
    if clips and strategy != "sequential":
        raise OptionError("clip_timestamps needs strategy='sequential'")
    options = DecodingOptions(task=task, language=language, temperature=temps[0],
                              without_timestamps=without_timestamps, **decode_options)
    check_task(options.task, model.config, model.tokenizer.multilingual)
    for t in temps:  # decode_with_fallback's options at each temperature pass openai's checks
        options.at_temperature(t)
    words = None
    if word_timestamps:
        if strategy != "sequential":
            raise OptionError("word_timestamps=True needs strategy='sequential'")
        if options.task == "translate":
            warnings.warn("Word-level timestamps on translations may not be reliable.", stacklevel=3)
        words = WordOptions(prepend_punctuations, append_punctuations, hallucination_silence_threshold)
    vad = vad_plan(strategy, vad_filter, vad_parameters)
    if clips and vad is not None:
        raise OptionError("clip_timestamps and vad_filter cannot be combined (the clips' times would be of the "
                          "speech-only audio); clip the audio first, or leave one of them out")
    return Plan(options=options, temperatures=temps,
                thresholds=Thresholds(compression_ratio_threshold, logprob_threshold, no_speech_threshold),
                condition=condition_on_previous_text, initial_prompt=initial_prompt,
                carry_initial_prompt=carry_initial_prompt, batch_size=batch_size, on_error=on_error,
                silence_threshold=silence_threshold, strategy=strategy, words=words, vad=vad,
                clip_timestamps=clips)


def vad_plan(strategy: str, vad_filter, vad_parameters) -> VadOptions | None:
    """faster-whisper's choices: `vad_filter` takes VadOptions (a dict of them or the defaults); the "vad"
    strategy, like its BatchedInferencePipeline, caps regions at 30 s and by default ends them after 160 ms of
    silence (not 2 s), whatever max_speech_duration_s it was given."""
    if not isinstance(vad_filter, bool):
        raise OptionError(f"vad_filter must be True or False, not {vad_filter!r}")
    if strategy == "vad":
        if vad_parameters is None:
            return VadOptions(max_speech_duration_s=CHUNK_LENGTH, min_silence_duration_ms=160)
        return VadOptions.of(vad_parameters, max_speech_duration_s=CHUNK_LENGTH)
    if not vad_filter:
        if vad_parameters is not None:
            raise OptionError("vad_parameters needs vad_filter=True (or strategy='vad')")
        return None
    return VadOptions.of(vad_parameters)
