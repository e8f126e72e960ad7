"""Offline weight tools for whisperfast (never imported by the `whisperfast` package).

Run `python -m weights_tools --help`. Sub-commands: import-ct2, import-openai, export-openai,
inspect, random, and reference (wraps weights_tools/reference.py). Every tool writes or reads the Hugging Face Whisper layout (config.json,
generation_config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json,
model.safetensors or sharded model-0000i-of-0000N.safetensors + model.safetensors.index.json).
"""

from .errors import (CheckpointError, CT2FormatError, CT2TruncatedError, MissingPackageError, SourceNotFoundError,
                     TokenizerError, UnknownVariableError, WeightsToolError)

__all__ = [
    "WeightsToolError", "SourceNotFoundError", "CT2FormatError", "CT2TruncatedError", "UnknownVariableError",
    "CheckpointError", "TokenizerError", "MissingPackageError",
]
