"""A user's table of examples, read (and predictions written) by file extension:

    .csv / .tsv   pandas (quoting, a UTF-8 BOM, CRLF); every cell is text, the header names the columns
    .json         a list of records (objects), through the json module
    .jsonl        JSON Lines, one record per line (blank lines skipped), through the json module

JSON goes through the json module rather than pandas because pandas' reader fills an absent key with
NaN (a missing label would look like a float), converts types, and numbers records past blank lines;
the json module keeps each value's own type and each record's place.

Every row is named the way a user finds it: CSV/TSV "row N" as a spreadsheet numbers it (the header is
row 1, so N is the line number unless a quoted field spans lines), JSON "record i" (0-based, as in the
instruction-data reader), JSON Lines "line N". Problems with the file itself (missing, unknown
extension, not UTF-8, empty, unparseable, a row with more fields than the header) are one-line
SaloraErrors naming the file and, where known, the line; what the cells mean is the caller's business.
"""
from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salora.errors import SaloraError
from tasks.utf8 import first_non_utf8_line

FORMATS = (".csv", ".tsv", ".json", ".jsonl")


@dataclass
class Table:
    path: Path
    columns: list[str]  # in the file's order (JSON: order of first appearance)
    rows: list[dict[str, Any]]  # CSV/TSV: str cells ("" for an empty or absent field); JSON: JSON values
    places: list[str]  # each row's name in messages: "row 2", "record 0", "line 3"

    @property
    def typed(self) -> bool:
        """Whether cells keep a type of their own (JSON) rather than being text (CSV/TSV)."""
        return self.path.suffix.lower() in (".json", ".jsonl")

    def where(self, i: int) -> str:
        return f"{self.path}, {self.places[i]}"


def check_format(path: Path, what: str = "file") -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SaloraError(f"{path}: unknown {what} type '{path.suffix or '(no extension)'}' "
                          f"(use {', '.join(FORMATS[:-1])} or {FORMATS[-1]})")
    return suffix


def read_table(path: str | Path) -> Table:
    path = Path(path)
    suffix = check_format(path)
    if not path.is_file():
        raise SaloraError(f"file not found: {path}" if not path.exists() else f"{path} is not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SaloraError(f"{path}, line {first_non_utf8_line(path)}: not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise SaloraError(f"{path} is empty")
    table = _read_json(path, text, suffix) if suffix in (".json", ".jsonl") else _read_delimited(path, text, suffix)
    if not table.rows:
        raise SaloraError(f"{path}: no rows (only {'a header' if table.columns else 'an empty list'})")
    return table


# ------------------------------------------------------------------ CSV / TSV
_BAD_LINE = re.compile(r"line (\d+): expected (\d+) fields, saw (\d+)", re.IGNORECASE)


def _read_delimited(path: Path, text: str, suffix: str) -> Table:
    import pandas as pd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # every cell as text; an empty cell stays "" (no NaN); index_col=False: a first row with an
            # extra field must not turn the first column into the index
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                                keep_default_na=False, index_col=False, on_bad_lines="warn")
        except pd.errors.ParserError as exc:
            raise SaloraError(f"{path}: unreadable {suffix[1:].upper()} ({_first_line(exc)})") from None
    for warning in caught:  # pandas skips a row with extra fields, and only warns
        bad = _BAD_LINE.search(str(warning.message))
        if bad:
            line, expected, saw = bad.groups()
            raise SaloraError(f"{path}, line {line}: {saw} fields, but the header has {expected}")
        if issubclass(warning.category, pd.errors.ParserWarning):
            raise SaloraError(f"{path}, row 2: more fields than the header")
    columns = [str(c) for c in frame.columns]
    rows = [dict(zip(columns, values)) for values in frame.itertuples(index=False, name=None)]
    return Table(path, columns, rows, [f"row {i + 2}" for i in range(len(rows))])


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ------------------------------------------------------------------ JSON / JSON Lines
def _read_json(path: Path, text: str, suffix: str) -> Table:
    if suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SaloraError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(records, list):
            raise SaloraError(f"{path}: expected a JSON list of records, found a JSON {_json_type(records)} "
                              "(JSON Lines files end in .jsonl)")
        places = [f"record {i}" for i in range(len(records))]
    else:
        records, places = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SaloraError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            places.append(f"line {number}")
    columns: dict[str, None] = {}
    for record, place in zip(records, places):
        if not isinstance(record, dict):
            raise SaloraError(f"{path}, {place}: expected a record (a JSON object), found a JSON {_json_type(record)}")
        columns.update(dict.fromkeys(record))
    return Table(path, list(columns), records, places)


def _json_type(value: Any) -> str:
    return {list: "list", dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# ------------------------------------------------------------------ writing
def table_text(rows: list[dict[str, Any]], columns: list[str], suffix: str) -> str:
    """`rows` as the text of a `suffix` file (.csv, .tsv, .json, .jsonl)."""
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        return pd.DataFrame(rows, columns=columns).to_csv(sep="\t" if suffix == ".tsv" else ",", index=False,
                                                          lineterminator="\n")
    if suffix == ".json":
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
