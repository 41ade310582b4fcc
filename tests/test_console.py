"""Progress lines written to a file or a pipe are not wrapped at 80 columns mid-phrase."""
from __future__ import annotations

import io

from salora_cli.core.console import RunConsole

LINE = ("  step 26: 9 components removed since the last report (closed gates) · total rank 294 "
        "· and more words so that the line is well over eighty columns long")


def test_lines_to_a_file_are_not_wrapped():
    out = io.StringIO()
    RunConsole(file=out).print(LINE)
    assert out.getvalue() == LINE + "\n"


def test_a_terminal_still_wraps_at_its_width():
    out = io.StringIO()
    RunConsole(file=out, force_terminal=True, width=80, color_system=None).print(LINE)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


def test_the_cli_and_the_loop_use_it():
    from salora_cli.cli import cli

    assert isinstance(cli.console, RunConsole) and isinstance(cli.err_console, RunConsole)
