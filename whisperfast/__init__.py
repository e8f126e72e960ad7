"""whisperfast: a from-scratch PyTorch Whisper inference engine (static k/v cache, CUDA-graph decoding)."""

from __future__ import annotations

from .api import WhisperModel, load_model
from .decode.options import DecodingOptions, DecodingResult
from .errors import AudioError, ModelLoadError, OptionError, WhisperfastError
from .results import Segment, TranscriptionResult, Word

__all__ = ["load_model", "transcribe", "WhisperModel", "DecodingOptions", "DecodingResult", "Segment", "Word",
           "TranscriptionResult", "WhisperfastError", "AudioError", "ModelLoadError", "OptionError"]
__version__ = "0.1.0"

_loaded: dict[tuple, WhisperModel] = {}


def transcribe(audio, model: str | WhisperModel = "tiny.en", *, device=None, dtype=None, compile=None, **kwargs):
    """Transcribe a file, array or bytes (or a list of them) with a model name, path, or loaded model.

    Keyword arguments are those of `WhisperModel.transcribe` (language, task, temperature, threads, ...).
    A model loaded by name is kept for later calls in this process.
    """
    if not isinstance(model, WhisperModel):
        key = (str(model), str(device), str(dtype), compile)
        if key not in _loaded:
            _loaded[key] = load_model(model, device=device, dtype=dtype, compile=compile)
        model = _loaded[key]
    return model.transcribe(audio, **kwargs)
