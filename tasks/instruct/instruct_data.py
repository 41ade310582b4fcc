"""Readers for Alpaca-format instruction data: records {"instruction", "input", "output"}.

Where the records come from (`find_instruct_file`, `read_instruct_file`, `read_hub_dataset`):
- a local file: a JSON list of records (the layout of alpaca_data.json) or JSON Lines (one record per
  line), told apart by the first non-blank character ("[" starts a JSON list);
- a folder: its `alpaca_data.json`, or `instruct/alpaca_data.json` below it (a data root such as
  ../shared/data);
- nothing given: $SALORA_DATA/instruct/alpaca_data.json, else ../shared/data/instruct/alpaca_data.json
  beside the project (the offline copy of the original Alpaca release);
- the Hugging Face hub, only when asked for by name (task option `hub_dataset`, e.g. tatsu-lab/alpaca).

The record rules, the same for every source:
- an error, one line naming the file and the record (JSON list: its 0-based index; JSON Lines: its
  line): bytes that are not UTF-8, malformed JSON, a record that is not an object, `instruction` or
  `output` missing or not a string, `input` present but not a string, an instruction that is empty;
- skipped and counted: a record whose `output` is empty or only whitespace (28 in the original Alpaca
  release): there is nothing to learn from it;
- kept without its input, and counted: an `input` that is a placeholder for "no input" (`is_placeholder`:
  its letters spell "no input", whatever the case, spaces and punctuation around them: "<noinput>",
  "No input.", "(no input)"; 599 records of the original release), and an empty or absent input.
Extra fields are ignored.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from salora.errors import SaloraError

DEFAULT_FILE = "alpaca_data.json"
FAMILY_FOLDER = "instruct"  # under a data root ($SALORA_DATA, ../shared/data)
PROJECT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REQUIRED_FIELDS = ("instruction", "output")
# Only letters "no input" with nothing but spaces and punctuation around them: "<noinput>", "No Input.",
# '"<noinput>"'. A list such as "[3, 4, <noinput>]" is real input and stays.
PLACEHOLDER = re.compile(r"[\W_]*no\s*input[\W_]*", re.IGNORECASE)

Record = dict[str, Any]


@dataclass
class InstructData:
    """The usable records of one source, and what was set aside on the way (for the run's record)."""

    source: str  # the file's absolute path, or "hub:<dataset id>"
    records: list[Record] = field(default_factory=list)  # {"instruction", "input" (str | None), "output", "index"}
    read: int = 0  # records in the source
    skipped_empty_output: int = 0
    placeholder_inputs: int = 0  # kept, without their input

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "records_read": self.read, "records_usable": len(self.records),
                "skipped_empty_output": self.skipped_empty_output, "placeholder_inputs": self.placeholder_inputs}


def is_placeholder(text: str) -> bool:
    """Whether an input only says that there is no input."""
    return PLACEHOLDER.fullmatch(text.strip()) is not None


# ------------------------------------------------------------------------------ finding the file
def find_instruct_file(data_dir: str | os.PathLike | None) -> Path:
    """The data file: `data_dir` itself (a file), inside it (a folder), or the offline defaults."""
    if data_dir:
        given = Path(data_dir).expanduser()
        if given.is_file():
            return given
        if given.is_dir():
            for candidate in (given / DEFAULT_FILE, given / FAMILY_FOLDER / DEFAULT_FILE):
                if candidate.is_file():
                    return candidate
            raise SaloraError(f"no {DEFAULT_FILE} in {given} (nor in {given / FAMILY_FOLDER}): pass the data file "
                              "itself with --data FILE (JSON list or JSON Lines of instruction/input/output)")
        raise SaloraError(f"instruction data not found: {given} does not exist")
    roots = [Path(os.environ["SALORA_DATA"]).expanduser()] if os.environ.get("SALORA_DATA") else []
    for root in [*roots, PROJECT_DATA]:
        candidate = root / FAMILY_FOLDER / DEFAULT_FILE
        if candidate.is_file():
            return candidate
    raise SaloraError(f"no instruction data given and no {FAMILY_FOLDER}/{DEFAULT_FILE} under $SALORA_DATA or "
                      f"{PROJECT_DATA}: pass --data FILE, or --set task_options.hub_dataset=tatsu-lab/alpaca")


# ------------------------------------------------------------------------------ reading
def read_instruct_file(path: Path) -> InstructData:
    """Every record of a JSON list or JSON Lines file, checked (see the module's rules)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SaloraError(f"cannot read instruction data {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is tolerated, nothing else
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SaloraError(f"{path}, line {line}: not UTF-8 text ({exc.reason})") from None
    data = InstructData(source=str(path.absolute()))
    if text.lstrip().startswith("["):
        rows = _json_list(path, text)
    else:
        rows = _json_lines(path, text)
    _collect(data, rows)
    if not data.read:
        raise SaloraError(f"{path}: no records (expected a JSON list or JSON Lines of instruction/input/output)")
    return data


def _json_list(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SaloraError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    return ((f"{path}, record {i}", r) for i, r in enumerate(records))


def _json_lines(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SaloraError(f"{path}, line {number}: not valid JSON ({exc.msg}; a JSON Lines file holds "
                              "one record object per line)") from None
        yield f"{path}, line {number}", record


def read_hub_dataset(dataset_id: str) -> InstructData:
    """The train split of a hub dataset with Alpaca's columns, checked by the same rules."""
    from tasks.models import hub_endpoint, hub_unavailable

    if hub_unavailable():  # fail now, not after a minute of retries
        raise SaloraError(f"the Hugging Face hub ({hub_endpoint()}) is unreachable, so {dataset_id} cannot be "
                          "downloaded: pass a local file with --data FILE")
    try:
        import datasets

        rows = datasets.load_dataset(dataset_id, split="train")
    except Exception as exc:  # network, auth, unknown id: all mean "no hub data here"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SaloraError(f"could not load {dataset_id} from the Hugging Face hub: {first}") from exc
    data = InstructData(source=f"hub:{dataset_id}")
    _collect(data, ((f"{dataset_id}, row {i}", dict(r)) for i, r in enumerate(rows)))
    return data


def _collect(data: InstructData, rows: Iterable[tuple[str, Any]]) -> None:
    for index, (where, record) in enumerate(rows):
        data.read += 1
        instruction, input_, output = _checked(where, record)
        if not output.strip():
            data.skipped_empty_output += 1
            continue
        if input_ is not None and is_placeholder(input_):
            data.placeholder_inputs += 1
            input_ = None
        data.records.append({"instruction": instruction, "input": input_ if input_ and input_.strip() else None,
                             "output": output, "index": index})


def _checked(where: str, record: Any) -> tuple[str, str | None, str]:
    """(instruction, input or None, output) of one record, or a one-line error naming it."""
    if not isinstance(record, dict):
        raise SaloraError(f"{where}: expected an object with instruction/input/output, got {type(record).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise SaloraError(f"{where}: missing field '{name}'")
        if not isinstance(record[name], str):
            raise SaloraError(f"{where}: field '{name}' must be a string, got {type(record[name]).__name__}")
    input_ = record.get("input")
    if "input" in record and not isinstance(input_, str):
        raise SaloraError(f"{where}: field 'input' must be a string, got {type(input_).__name__}")
    if not record["instruction"].strip():
        raise SaloraError(f"{where}: empty instruction")
    return record["instruction"], input_, record["output"]
