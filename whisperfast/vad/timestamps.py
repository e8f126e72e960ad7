"""Speech regions from the VAD's probabilities, as faster-whisper's `get_speech_timestamps` finds them
(its VadOptions and defaults), the regions packed into chunks of at most N seconds (its `collect_chunks`),
and the map from a time in the speech-only audio back to the original timeline (its `SpeechTimestampsMap`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import OptionError
from .model import FRAME, SileroVAD, speech_probs


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's VadOptions: probabilities >= threshold start speech, < neg_threshold (default
    max(threshold - 0.15, 0.01)) end it after min_silence_duration_ms; regions shorter than
    min_speech_duration_ms are dropped, longer than max_speech_duration_s split (at a silence > 98 ms when
    there is one); each region is padded by speech_pad_ms on both sides."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = float("inf")
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name == "neg_threshold":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise OptionError(f"vad_parameters: {f.name} must be a number, not {v!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise OptionError(f"vad_parameters: threshold must be in [0, 1], not {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise OptionError(f"vad_parameters: neg_threshold must be in [0, threshold={self.threshold}], "
                              f"not {self.neg_threshold}")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise OptionError(f"vad_parameters: {name} must be >= 0, not {getattr(self, name)}")
        if not self.max_speech_duration_s > 0:
            raise OptionError(f"vad_parameters: max_speech_duration_s must be > 0, not {self.max_speech_duration_s}")

    @classmethod
    def of(cls, given: VadOptions | Mapping | None, **overrides) -> VadOptions:
        """VadOptions from a VadOptions, a dict of its fields, or None (the defaults), then `overrides`."""
        if given is None:
            given = cls()
        elif isinstance(given, Mapping):
            unknown = sorted(set(given) - {f.name for f in fields(cls)})
            if unknown:
                raise OptionError(f"vad_parameters: unknown option(s) {', '.join(map(str, unknown))}; it takes "
                                  f"{', '.join(f.name for f in fields(cls))}")
            given = cls(**given)
        elif not isinstance(given, cls):
            raise OptionError(f"vad_parameters must be a dict or a VadOptions, not {type(given).__name__}")
        return replace(given, **overrides) if overrides else given


def speech_timestamps(audio: np.ndarray, options: VadOptions | Mapping | None = None, *,
                      probs: np.ndarray | None = None, model: SileroVAD | None = None) -> list[dict[str, int]]:
    """[{"start": sample, "end": sample}, ...] of the speech in 16 kHz `audio` (faster-whisper's algorithm).
    `probs`: the VAD's probabilities if already computed (`speech_probs(audio)`)."""
    o = VadOptions.of(options)
    n = len(audio)
    probs = speech_probs(audio, model) if probs is None else probs
    speeches = _regions(probs, o, n)
    _pad(speeches, o.speech_pad_ms * SAMPLE_RATE / 1000, n)
    return speeches


def _regions(probs: np.ndarray, o: VadOptions, n: int) -> list[dict]:
    """faster-whisper's loop over the frames, line for line: regions before padding."""
    sr, w = SAMPLE_RATE, FRAME
    min_speech = sr * o.min_speech_duration_ms / 1000
    max_speech = sr * o.max_speech_duration_s - w - 2 * (sr * o.speech_pad_ms / 1000)
    min_silence, min_silence_at_max = sr * o.min_silence_duration_ms / 1000, sr * 98 / 1000
    neg = max(o.threshold - 0.15, 0.01) if o.neg_threshold is None else o.neg_threshold
    triggered, speeches, cur = False, [], {}
    temp_end = prev_end = next_start = 0
    for i, p in enumerate(probs.tolist()):
        if p >= o.threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = w * i
        if p >= o.threshold and not triggered:
            triggered, cur["start"] = True, w * i
            continue
        if triggered and w * i - cur["start"] > max_speech:
            if prev_end:
                cur["end"] = prev_end
                speeches.append(cur)
                cur = {}
                if next_start < prev_end:  # silence since prev_end: not speech again yet
                    triggered = False
                else:
                    cur["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                cur["end"] = w * i
                speeches.append(cur)
                cur, prev_end, next_start, temp_end, triggered = {}, 0, 0, 0, False
                continue
        if p < neg and triggered:
            temp_end = temp_end or w * i
            if w * i - temp_end > min_silence_at_max:
                prev_end = temp_end
            if w * i - temp_end < min_silence:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                speeches.append(cur)
            cur, prev_end, next_start, temp_end, triggered = {}, 0, 0, 0, False
    if cur and n - cur["start"] > min_speech:
        cur["end"] = n
        speeches.append(cur)
    return speeches


def _pad(speeches: list[dict], pad: float, n: int) -> None:
    """faster-whisper's padding: pad each side, or split a gap shorter than two pads between neighbours."""
    for i, s in enumerate(speeches):
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - s["end"]
            if gap < 2 * pad:
                s["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                s["end"] = int(min(n, s["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            s["end"] = int(min(n, s["end"] + pad))


def pack_chunks(speeches: list[dict], max_samples: float) -> list[list[dict]]:
    """faster-whisper's `collect_chunks` rule: consecutive regions, in order, grouped so that each group's
    total length stays <= max_samples (a region longer than that is a group alone)."""
    groups: list[list[dict]] = []
    size = 0
    for s in speeches:
        if groups and size + s["end"] - s["start"] <= max_samples:
            groups[-1].append(s)
            size += s["end"] - s["start"]
        else:
            groups.append([s])
            size = s["end"] - s["start"]
    return groups


class TimeMap:
    """Seconds in the speech-only audio (the regions concatenated) -> seconds in the original audio
    (faster-whisper's SpeechTimestampsMap; it rounds to 10 ms, here to 1 ms: `precision` decimals)."""

    def __init__(self, speeches: list[dict], precision: int = 3, slack: float = 0.3):
        self.precision, self.slack = precision, slack
        self.ends: list[int] = []           # end of each region, in speech-only samples
        self.last = [s["end"] / SAMPLE_RATE for s in speeches]  # end of each region in the original, seconds
        self.silence: list[float] = []      # seconds removed before each region
        removed = last = 0
        for s in speeches:
            removed += s["start"] - last
            last = s["end"]
            self.ends.append(s["end"] - removed)
            self.silence.append(removed / SAMPLE_RATE)

    def chunk(self, t: float, is_end: bool = False) -> int:
        """The region a speech-only time falls in; an end exactly at a region's end stays in that region."""
        sample = int(t * SAMPLE_RATE)
        if is_end and sample in self.ends:
            return self.ends.index(sample)
        return min(bisect.bisect(self.ends, sample), len(self.ends) - 1)

    def original(self, t: float, chunk: int | None = None, is_end: bool = False) -> float:
        if not self.ends:
            return t
        k = self.chunk(t, is_end) if chunk is None else chunk
        return round(self.silence[k] + t, self.precision)

    def bounds(self, k: int) -> tuple[float, float]:
        """Region k in the speech-only timeline, seconds."""
        return (self.ends[k - 1] if k else 0) / SAMPLE_RATE, self.ends[k] / SAMPLE_RATE

    def span(self, a: float, b: float) -> tuple[float, float]:
        """A segment [a, b] of the speech-only timeline -> its times in the original. Whisper puts a segment
        boundary anywhere in the padding around a cut (the two regions' pads are silence side by side), which
        faster-whisper's point-wise map turns into a segment that starts (or ends) a whole removed gap before
        (after) its speech. Here the segment spans the regions it overlaps by more than `slack` seconds (the
        padding + 0.3 s; the one it overlaps most if none), clipped to them."""
        if not self.ends:
            return a, b
        first = self.chunk(a)
        last = max(first, self.chunk(b, is_end=True))  # a zero-length segment at a cut: the next region
        overlap = {k: min(b, self.bounds(k)[1]) - max(a, self.bounds(k)[0]) for k in range(first, last + 1)}
        keep = [k for k, o in overlap.items() if o > self.slack] or [max(overlap, key=overlap.get)]
        start = max(a, self.bounds(keep[0])[0])
        end = max(start, min(b, self.bounds(keep[-1])[1])) if keep[-1] == keep[0] else min(b, self.bounds(keep[-1])[1])
        return self._inside(start, keep[0]), self._inside(end, keep[-1])

    def word(self, a: float, b: float) -> tuple[float, float]:
        """A word [a, b] -> the original timeline, both ends in the region of its middle, clipped to it."""
        if not self.ends:
            return a, b
        k = self.chunk((a + b) / 2)
        lo, hi = self.bounds(k)
        a, b = min(max(a, lo), hi), min(max(b, lo), hi)
        return self._inside(a, k), self._inside(b, k)

    def _inside(self, t: float, k: int) -> float:
        """`original(t, k)` for a t inside region k: never past its end (the rounding could step over it)."""
        return min(self.original(t, k), self.last[k])
