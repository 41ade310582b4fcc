"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""
from salora.errors import SaloraError  # the library's; the runner raises the same type

__all__ = ["Interrupted", "SaloraError"]


class Interrupted(SaloraError):
    """Ctrl-C during a command: the message says what was kept and how to continue (exit 130)."""
