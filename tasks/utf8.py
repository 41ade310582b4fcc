"""Where a text file stops being UTF-8, for error messages that name the line."""
from __future__ import annotations

from pathlib import Path


def first_non_utf8_line(path: Path) -> int:
    """1-based number of the first line that is not valid UTF-8 (a text reader decodes in chunks, so
    its error position is no use for finding the line); 0 if every line decodes."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0
