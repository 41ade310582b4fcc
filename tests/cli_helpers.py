"""Run the `salora` CLI in-process (fast) the way a user would, capturing exit code and output."""
from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import pytest

from salora_cli.cli import cli


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["salora", *map(str, args)]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    """Non-zero exit, one error line naming the problem, no traceback."""
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), err
    text = " ".join(lines)
    for f in fragments:
        assert f in text, (f, err)


class _Sink:
    """Stands in for capsys where there is none (a module-scoped fixture): the output goes to a buffer."""

    def readouterr(self):
        return SimpleNamespace(out="", err="")


def run_cli_ok(args: list[str]) -> None:
    """Run a command that must succeed, without capsys (a module-scoped fixture); its output is shown only
    when it fails."""
    buf = io.StringIO()
    with redirect_stdout(buf), redirect_stderr(buf):
        code, _, _ = run_cli(args, _Sink())
    assert code == 0, buf.getvalue()


QUICK = ["--max-steps", "4", "--batch-size", "8", "--max-length", "32", "--max-eval-samples", "24",
         "--set", "train.eval_batch_size=24", "--set", "train.log_every=1"]

__all__ = ["run_cli", "run_cli_ok", "assert_clean_error", "QUICK", "pytest"]
