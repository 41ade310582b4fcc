"""Sample rewrites for the style report: picked by a fixed rule, every method's rewrite side by side.

The rule never looks at an output: per task, the sources of each direction (source style → target style)
are taken in the order of the first method's `generations.jsonl` (the test file's order), and the ones at
evenly spaced positions 0, n/k, 2n/k, … are shown (k = `N_PER_DIRECTION`). Every method's rewrite of that
same source sits in the same row, so a reader compares like with like. Methods are aligned by source and
direction, not by line number, so runs scored on different slices still line up where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

N_PER_DIRECTION = 10  # sample rewrites shown per direction and task

Key = tuple[str, str, str]  # (source, source style, target style)


def evenly_spaced(n: int, k: int) -> list[int]:
    """k positions spread evenly over range(n), starting at 0 (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return [i * n // k for i in range(k)]


def _key(record: dict) -> Key:
    return (str(record.get("source", "")), str(record.get("source_style", "")), str(record.get("target_style", "")))


@dataclass
class MethodGenerations:
    """One method's rewrites of a task's test set (the generations.jsonl of its first seed)."""

    method: str
    seed: int | None
    path: Path
    records: list[dict]


@dataclass
class SampleRow:
    position: int  # index among the direction's sources, in file order
    source: str
    content: str  # what the model was given (the source with its style markers deleted, if any)
    reference: str  # the first human rewrite ("" if none)
    generations: list[str | None]  # one per method, None where that method has no rewrite of this source


@dataclass
class StyleSamples:
    """The sample table of one task (and model): rows per direction, one generation column per method."""

    task: str
    model: str
    methods: list[MethodGenerations]
    directions: dict[tuple[str, str], list[SampleRow]] = field(default_factory=dict)
    direction_sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    identical: int = 0  # sources every method rewrote identically (only counted with two or more methods)
    compared: int = 0  # sources every method rewrote


def build_style_samples(task: str, model: str, methods: list[MethodGenerations],
                        per_direction: int = N_PER_DIRECTION) -> StyleSamples:
    """Pick the samples of one task. The first method with generations sets the order."""
    out = StyleSamples(task=task, model=model, methods=methods)
    anchor = next((m for m in methods if m.records), None)
    if anchor is None:
        return out
    by_method = [{_key(r): r for r in reversed(m.records)} for m in methods]  # first occurrence wins
    by_direction: dict[tuple[str, str], list[dict]] = {}
    seen: set[Key] = set()
    for record in anchor.records:
        key = _key(record)
        if key not in seen:
            seen.add(key)
            by_direction.setdefault((key[1], key[2]), []).append(record)
    for direction in sorted(by_direction):
        records = by_direction[direction]
        out.direction_sizes[direction] = len(records)
        rows = []
        for pos in evenly_spaced(len(records), per_direction):
            r = records[pos]
            refs = r.get("references") or []
            ref = refs[0] if isinstance(refs, list) and refs else (refs if isinstance(refs, str) else "")
            gens = [(table.get(_key(r)) or {}).get("generation") for table in by_method]
            rows.append(SampleRow(position=pos, source=str(r.get("source", "")),
                                  content=str(r.get("content", r.get("source", ""))), reference=str(ref),
                                  generations=[None if g is None else str(g) for g in gens]))
        out.directions[direction] = rows
    with_records = [t for t, m in zip(by_method, methods) if m.records]
    if len(with_records) >= 2:
        for key in seen:
            gens = [t.get(key, {}).get("generation") for t in with_records]
            if all(g is not None for g in gens):
                out.compared += 1
                out.identical += len(set(gens)) == 1
    return out
