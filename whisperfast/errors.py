"""Typed errors a user can cause. Each message says what went wrong and what to do."""


class WhisperfastError(Exception):
    """Base class of every error whisperfast raises on purpose."""


class AudioError(WhisperfastError, ValueError):
    """The audio could not be read or is not usable (names the file and the problem)."""


class ModelLoadError(WhisperfastError, RuntimeError):
    """A checkpoint could not be found or loaded (names the file and, where known, the key)."""


class OptionError(WhisperfastError, ValueError):
    """An option has an invalid value (names the option and the accepted values)."""


class AudioWarning(UserWarning):
    """The audio was read only in part (a truncated or damaged file) or its header was wrong."""


class MissingDependencyError(WhisperfastError, ImportError):
    """An optional extra is needed and not installed (names the pip command)."""
