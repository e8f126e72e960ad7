"""Typed results. `to_dict()` gives openai-whisper's result layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float

    def to_dict(self) -> dict:  # openai-whisper's key order
        return {"word": self.word, "start": self.start, "end": self.end, "probability": self.probability}


@dataclass
class Segment:
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

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.words is None:
            d.pop("words")
        return d


@dataclass
class TranscriptionResult:
    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)
    language_probs: dict | None = None
    duration: float = 0.0
    source: str | None = None
    error: str | None = None   # set for a failed file of a batch with on_error="skip"

    def to_dict(self) -> dict:
        return {"text": self.text, "segments": [s.to_dict() for s in self.segments], "language": self.language}
