"""The label column of a user's table: the one kind of value it holds, and the classes in id order.

Kinds: "text", "integer" and "boolean" are classes; "number" (a float) is a regression target. JSON
values keep their own type (an integer beside a float makes the column "number", as in arithmetic);
CSV/TSV cells are text and take the kind they spell: true/false in any case, an integer, a decimal
number, else text. A column holds one kind: "pos" beside 1, or true beside 0, is a mistake in the data
(said with a row of each), not two classes. Classes are ordered by value: text by its characters,
integers by size, false before true; that order is the head's id order and is recorded with the run.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from salora.errors import SaloraError
from tasks.tables import Table

CLASS_KINDS = ("text", "integer", "boolean")
REGRESSION_KINDS = ("integer", "number")  # integer scores may be a regression target when asked for
KIND_NAMES = {"text": "text", "integer": "an integer", "boolean": "a boolean", "number": "a number"}
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # no nan / inf: those are not scores
_BOOLEAN = {"true": True, "false": False}


@dataclass(frozen=True)
class LabelColumn:
    """One file's labels: their kind and the value of each row (bool, int, float or stripped str)."""

    kind: str
    values: list[Any]


def value_kind(value: Any) -> str:
    """The kind of a parsed label value (e.g. one recorded in a run's config)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "number" if isinstance(value, float) else "text"


def label_name(value: Any) -> str:
    """How a label is shown and written: booleans as false / true, numbers and text as they read."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_cell(value: Any, typed: bool) -> Any:
    """A cell as a label value: None when empty; JSON values as they are; CSV text by what it spells."""
    if value is None:
        return None
    if not typed:
        text = str(value).strip()
        if not text:
            return None
        if text.lower() in _BOOLEAN:
            return _BOOLEAN[text.lower()]
        if _INTEGER.fullmatch(text):
            return int(text)
        return float(text) if _NUMBER.fullmatch(text) else text
    if isinstance(value, str):
        return value.strip() or None
    return value


def read_labels(table: Table, column: str) -> LabelColumn:
    """Every row's label in `column`, all of one kind; one-line errors name the file and the row."""
    values: list[Any] = []
    first_of: dict[str, int] = {}  # each kind's first row
    for i, row in enumerate(table.rows):
        value = parse_cell(row.get(column), table.typed)
        if value is None:
            raise SaloraError(f"{table.where(i)}: empty label in column '{column}'")
        if isinstance(value, (list, dict)):
            raise SaloraError(f"{table.where(i)}: label {value!r} in column '{column}' is not text, a number or a "
                              "boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise SaloraError(f"{table.where(i)}: label {value!r} in column '{column}' is not a finite number")
        first_of.setdefault(value_kind(value), i)
        values.append(value)
    kinds = set(first_of)
    if kinds == {"integer", "number"}:  # 1 beside 2.5: numbers
        return LabelColumn("number", [float(v) for v in values])
    if len(kinds) > 1:
        (a, i), (b, j) = sorted(first_of.items(), key=lambda item: item[1])[:2]
        raise SaloraError(f"{table.path}: column '{column}' mixes label types: {table.places[i]} has "
                          f"{values[i]!r} ({KIND_NAMES[a]}), {table.places[j]} has {values[j]!r} ({KIND_NAMES[b]})")
    return LabelColumn(kinds.pop(), values)


def ordered_classes(values: list[Any]) -> list[Any]:
    """The distinct labels in id order (sorted by value; false before true)."""
    return sorted(set(values))
