"""whisperfast: a from-scratch PyTorch Whisper inference engine (static k/v cache, CUDA-graph decoding)."""

from __future__ import annotations

from .api import WhisperModel, fp16_dtype, load_model
from .decode.options import DecodingOptions, DecodingResult
from .errors import AudioError, ModelLoadError, OptionError, WhisperfastError
from .results import Segment, TranscriptionResult, Word

__all__ = ["load_model", "transcribe", "WhisperModel", "DecodingOptions", "DecodingResult", "Segment", "Word",
           "TranscriptionResult", "WhisperfastError", "AudioError", "ModelLoadError", "OptionError"]
__version__ = "0.1.0"

_loaded: dict[tuple, WhisperModel] = {}


def transcribe(audio, model: str | WhisperModel = "tiny.en", *, device=None, dtype=None, compile=None, **kwargs):
    """Transcribe a file, array or bytes (or a list of them) with a model name, path, or loaded model.

    A bare array or tensor is 16 kHz audio; pass `(array, sample_rate)` or `sample_rate=` for another rate.

    Keyword arguments are those of `WhisperModel.transcribe` (language, task, temperature, threads, ...),
    which takes openai-whisper's transcribe() keywords too (`fp16=False` loads a model by name in float32).
    A model loaded by name is kept for later calls in this process.
    """
    if not isinstance(model, WhisperModel):
        dtype = fp16_dtype(kwargs.get("fp16"), dtype)
        key = (str(model), str(device), str(dtype), compile)
        if key not in _loaded:
            _loaded[key] = load_model(model, device=device, dtype=dtype, compile=compile)
        model = _loaded[key]
    return model.transcribe(audio, **kwargs)
