"""Typed results. `to_dict()` gives openai-whisper's result layout, and each result also answers
dict-style access with openai's keys (`result["text"]`, `result["segments"][0]["start"]`, `"words" in
segment`, `.get`, `.keys()`, `.items()`), so code written against `whisper.transcribe()`'s dicts runs
unchanged; attributes stay the typed interface."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class DictAccess:
    """Read (and write) the openai-whisper keys of a result as if it were that dict."""

    def keys(self) -> list[str]:
        raise NotImplementedError

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value) -> None:
        if key not in self.keys():
            raise KeyError(f"{key!r}: not one of the keys of this result ({', '.join(self.keys())})")
        setattr(self, key, value)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self.keys() else default

    def values(self) -> list:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple]:
        return [(k, getattr(self, k)) for k in self.keys()]


@dataclass(eq=True)
class Word(DictAccess):
    start: float
    end: float
    word: str
    probability: float

    def keys(self) -> list[str]:  # openai-whisper's key order
        return ["word", "start", "end", "probability"]

    def to_dict(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end, "probability": self.probability}


SEGMENT_KEYS = ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
                "no_speech_prob"]


@dataclass(eq=True)
class Segment(DictAccess):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]          # sampled ids of this segment, timestamp tokens included
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None

    def keys(self) -> list[str]:  # "words" only with word timestamps, as in openai-whisper
        return SEGMENT_KEYS if self.words is None else SEGMENT_KEYS + ["words"]

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.words is None:
            d.pop("words")
        return d


@dataclass(eq=True)
class TranscriptionResult(DictAccess):
    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)
    language_probs: dict | None = None
    duration: float = 0.0
    source: str | None = None
    error: str | None = None   # set for a failed file of a batch with on_error="skip"

    def keys(self) -> list[str]:
        return ["text", "segments", "language"]

    def to_dict(self) -> dict:
        return {"text": self.text, "segments": [s.to_dict() for s in self.segments], "language": self.language}
