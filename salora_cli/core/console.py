"""The runner's console: rich on a terminal, plain unwrapped lines everywhere else.

Rich wraps every printed line at the console width, and a file or a pipe has no width, so it
assumes 80 columns: progress lines in a run's log were cut mid-phrase ("… · total \\nrank 386"),
which also breaks grepping them. Off a terminal, lines are therefore never wrapped (soft wrap);
on a terminal nothing changes.
"""
from __future__ import annotations

from rich.console import Console


class RunConsole(Console):
    # rich reads `soft_wrap` at each print; it is decided per print here because the console is
    # created at import and the output may be redirected later (pytest, CliRunner)
    @property
    def soft_wrap(self) -> bool:
        return self._soft_wrap_always or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap_always = bool(value)


def print_columns(console: Console, title: str, head: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> None:
    """A title, then plain aligned columns: the first `left` flush left, the others (numbers) flush right.
    Never cropped to the console's width, unlike a rich Table: long run folder names stay whole in a
    terminal and in a file alike."""
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    console.print(title, highlight=False, soft_wrap=True, markup=False)
    for cells in [head, *rows]:
        console.print(line(cells).rstrip(), highlight=False, soft_wrap=True, markup=False)
