"""Writes are atomic: concurrent writers of one report never leave a torn or mixed file."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from salora_cli.core import atomic


def _writer(path: str, tag: int, rounds: int) -> None:
    body = {"writer": tag, "rows": [tag] * 5000}  # large enough to take several write calls
    for _ in range(rounds):
        atomic.write_json(path, body)


def test_concurrent_writers_never_tear_a_file(tmp_path):
    target = tmp_path / "results" / "glue.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(target), tag, 60)) for tag in (1, 2)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        if target.exists():
            data = json.loads(target.read_text())  # never a partial file
            assert set(data["rows"]) == {data["writer"]}  # never a mix of two writers
            seen.add(data["writer"])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert json.loads(target.read_text())["writer"] in (1, 2)
    assert not [f for f in Path(target.parent).iterdir() if f.name != "glue.json"]  # no temp files left
    assert target.stat().st_mode & 0o777 == 0o644
