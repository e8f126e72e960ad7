"""What a caller may ask of one decoding pass, and what it gets back."""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import asdict, dataclass, field, replace

from ..errors import OptionError
from ..tokenizer import TASKS, normalize_language


@dataclass(frozen=True)
class DecodingOptions:
    task: str = "transcribe"
    language: str | None = None            # None: detect (multilingual) / English (.en)
    temperature: float = 0.0               # 0: greedy; > 0: sampling
    sample_len: int | None = None          # max new tokens per window; None: n_text_ctx // 2 (224)
    without_timestamps: bool = False
    suppress_tokens: str | tuple | None = "-1"  # "-1": the checkpoint's list (non-speech symbols)
    suppress_blank: bool = True
    repetition_guard: int | None = None    # stop a window whose last N tokens loop one n-gram (N >= 8)
    seed: int = 0                          # sampling (temperature > 0) is a function of the seed and the input
    beam_size: int | None = None           # beams at T = 0 (None: greedy)
    best_of: int | None = None             # independent samples at T > 0, the ranker picks one
    patience: float | None = None          # beam search stops a window at round(beam_size * patience) finished
    length_penalty: float | None = None    # ranker: None = sum_logprob / length; a: / ((5 + length) / 6) ** a

    def __post_init__(self):
        if self.task not in TASKS:
            raise OptionError(f"task must be one of {TASKS}, not {self.task!r}")
        object.__setattr__(self, "language", normalize_language(self.language))
        check_temperature(self.temperature)
        object.__setattr__(self, "suppress_tokens", parse_suppress(self.suppress_tokens))
        if self.repetition_guard is not None and not (
                isinstance(self.repetition_guard, int) and self.repetition_guard >= 8):
            raise OptionError(f"repetition_guard must be None or an int >= 8, not {self.repetition_guard!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise OptionError(f"seed must be an int in [0, 2**63), not {self.seed!r}")
        if self.sample_len is not None and not (isinstance(self.sample_len, int) and self.sample_len > 0):
            raise OptionError(f"sample_len must be a positive int, not {self.sample_len!r}")
        check_search(self)

    def at_temperature(self, t: float) -> DecodingOptions:
        """whisper.transcribe's decode_with_fallback: beams (beam_size, patience) only at T = 0, best_of only
        at T > 0; the result passes openai's checks (`verify`)."""
        o = replace(self, temperature=t, beam_size=None, patience=None) if t > 0 else replace(
            self, temperature=t, best_of=None)
        return verify(o)


def check_search(o: DecodingOptions) -> None:
    """Types and ranges of the search options (each on its own; `verify` checks how they combine)."""
    for name in ("beam_size", "best_of"):
        v = getattr(o, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise OptionError(f"{name} must be None or an int >= 1, not {v!r}")
    p, a = o.patience, o.length_penalty
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0):
        raise OptionError(f"patience must be None or a number > 0, not {p!r}")
    if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1):
        raise OptionError(f"length_penalty (alpha) must be None or a number between 0 and 1, not {a!r}")
    if o.beam_size is not None and round(o.beam_size * (p or 1.0)) < 1:
        raise OptionError(f"beam_size {o.beam_size} with patience {p} keeps no finished candidate; "
                          "use beam_size * patience >= 0.5")


def verify(o: DecodingOptions) -> DecodingOptions:
    """openai-whisper's DecodingTask._verify_options, as OptionError."""
    if o.beam_size is not None and o.best_of is not None:
        raise OptionError("beam_size and best_of can't be given together (beams at T = 0, best_of at T > 0)")
    if o.temperature == 0 and o.best_of is not None:
        raise OptionError("best_of with greedy sampling (T=0) is not compatible; give a temperature > 0")
    if o.patience is not None and o.beam_size is None:
        raise OptionError("patience requires beam_size to be given")
    return o


def check_task(task: str, config, multilingual: bool) -> None:
    """English-only (.en) checkpoints cannot translate (OptionError); large-v3-turbo's shape (4 decoder
    layers, 128 mel bins) was not trained to translate: a warning, the output is often a transcription."""
    if task != "translate":
        return
    if not multilingual:
        raise OptionError("this checkpoint is English-only (.en): it cannot translate; use a multilingual model")
    if config.n_text_layer == 4 and config.n_mels == 128:
        warnings.warn("this checkpoint has large-v3-turbo's shape (4 decoder layers, 128 mel bins), which was not "
                      "trained to translate: expect a transcription or a poor translation; use large-v3 or medium",
                      stacklevel=3)


def parse_suppress(value) -> tuple[int, ...]:
    """'-1' / '1,2,-1' / [1, 2] / None -> a tuple of ids (-1 = the checkpoint's non-speech list)."""
    if value is None or value == "":
        return ()
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(int(str(t).strip()) for t in items)
    except (TypeError, ValueError):
        raise OptionError(f"suppress_tokens must be '-1', comma-separated token ids, or a list of ids; "
                          f"got {value!r}") from None


def check_temperature(t) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise OptionError(f"temperature must be a finite number >= 0 (0 = greedy), not {t!r}")
    return float(t)


@dataclass
class DecodingResult:
    """One window's decode. `tokens`: the sampled ids (timestamps included), no prompt, no EOT."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    language: str | None = None
    avg_logprob: float = math.nan
    sum_logprob: float = math.nan
    compression_ratio: float = math.nan
    no_speech_prob: float = math.nan
    temperature: float = 0.0
    language_probs: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def compression_ratio(text: str) -> float:
    """openai-whisper's: bytes of the UTF-8 text over bytes of its zlib compression."""
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0
