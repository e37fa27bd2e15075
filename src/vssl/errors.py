"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with ``exit_code``."""


class VsslError(Exception):
    """Base class for user-facing errors."""

    exit_code = 1


class ConfigError(VsslError):
    """Unknown key, wrong type or bad value in a config file or an override (exit status 2)."""

    exit_code = 2


class AnnotationError(VsslError):
    """A malformed annotation file; the message names file and line."""


class CheckpointError(VsslError):
    """A checkpoint that cannot be loaded as asked (missing/unexpected keys, shape mismatch)."""
