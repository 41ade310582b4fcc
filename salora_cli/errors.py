"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""


class SaloraError(Exception):
    """A problem with the user's input (task, config, data, model, files).

    Raise it with a message that names the problem and, where possible, what would fix it.
    """


class Interrupted(SaloraError):
    """Ctrl-C during a command: the message says what was kept and how to continue (exit 130)."""
