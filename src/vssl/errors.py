"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with ``exit_code``."""

from __future__ import annotations


class VsslError(Exception):
    """Base class for user-facing errors. ``str()`` is always one line (the CLI prints it as is)."""

    exit_code = 1

    def __str__(self) -> str:
        return " ".join(line.strip() for line in super().__str__().splitlines() if line.strip())


class ConfigError(VsslError):
    """Unknown key, wrong type or bad value in a config file, an override or a command-line option
    (exit status 2)."""

    exit_code = 2


class AnnotationError(VsslError):
    """A malformed annotation file; the message names file and line."""


class CheckpointError(VsslError):
    """A checkpoint that cannot be loaded as asked (missing/unexpected keys, shape mismatch), or
    written (full disk)."""


class NumericalError(VsslError):
    """A training run stopped on a NaN/Inf loss or non-finite weights; the message names the step
    and the last good checkpoint."""


# torch's weights_only refusal wraps the one line that matters in advice vssl must not repeat
# ("re-run with weights_only=False" is exactly how an untrusted file gets to run code)
_BOILERPLATE = ("Weights only load failed", "weights_only", "file an issue", "Check the documentation",
                "trust")


def load_failure_reason(error: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` (or safetensors) refused a file.

    A pickled global outside the allow-list becomes ``refusing to unpickle <module.name>``; other
    failures keep their first informative line, without torch's advice to load unsafely.
    """
    import re

    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"refusing to unpickle {found.group(1)} (only tensors and plain data are ever loaded)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln.replace("WeightsUnpickler error:", "").strip() for ln in lines
             if not any(phrase in ln for phrase in _BOILERPLATE)]
    lines = [ln for ln in lines if ln]
    if not lines:
        return f"empty or truncated file ({type(error).__name__})"
    reason = lines[0].split(". ")[0]  # first sentence: miniz appends a paragraph of guesses
    if reason.startswith("Unsupported operand"):
        reason = f"{reason.lower().replace('operand', 'pickle opcode')}: random bytes or not a torch file"
    return reason[:200]
