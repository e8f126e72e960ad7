"""Voice activity detection: Silero VAD v6 as a pure-torch module (model.py) and faster-whisper's speech
regions, chunk packing and time map on top of it (timestamps.py)."""

from .model import FRAME, ProbStream, SileroVAD, default_vad, load_vad, speech_probs
from .timestamps import TimeMap, VadOptions, pack_chunks, speech_timestamps

__all__ = ["FRAME", "ProbStream", "SileroVAD", "default_vad", "load_vad", "speech_probs", "TimeMap", "VadOptions",
           "pack_chunks", "speech_timestamps"]
