"""The library's one exception type: a problem with the caller's input, said in one line."""


class SaloraError(Exception):
    """A problem with the user's input (config, model, adapter files, paths).

    Raised with a message that names the problem and, where possible, what would fix it; the
    runner (salora_cli) prints it as one line and exits non-zero.
    """
