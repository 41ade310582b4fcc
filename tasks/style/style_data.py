"""Readers for the style-transfer corpora: Yelp sentiment and GYAFC formality.

Every reader returns plain example dicts (see `make_example`); nothing here knows about models or
prompts. Styles are integer labels; `YELP_STYLES[i]` / `GYAFC_STYLES[i]` names label i.

Yelp (Li et al. 2018 release of the Shen et al. 2017 data), one folder:
  sentiment.{train,dev,test}.{0,1}   one tokenised, lower-cased sentence per line (0 negative, 1 positive)
  reference.{0,1}                    `source<TAB>human rewrite`, line i aligned with sentiment.test.{0,1} line i
  shen2017/sentiment.{dev,test}.{0,1}  the original, much larger Shen et al. dev/test files
The official train files are often unavailable (they are too large for most mirrors), so the training
pool is a named choice, see `YELP_TRAIN_POOLS`.

GYAFC (Rao & Tetreault 2018), official layout, from a user-given path only (it is licensed):
  GYAFC_Corpus/<domain>/train/{formal,informal}            parallel, line-aligned
  GYAFC_Corpus/<domain>/{tune,test}/{formal,informal}      sources (not aligned with each other)
  GYAFC_Corpus/<domain>/{tune,test}/{formal,informal}.ref0..3
      `<style>.ref<k>` holds human rewrites INTO <style> of the sources in the OTHER style's file,
      e.g. formal.ref0 line i rewrites informal line i.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from salora.errors import SaloraError

YELP_STYLES = ("negative", "positive")
GYAFC_STYLES = ("informal", "formal")
GYAFC_DOMAINS = ("Family_Relationships", "Entertainment_Music")
GYAFC_DOMAIN_ALIASES = {"fr": "Family_Relationships", "family_relationships": "Family_Relationships",
                        "em": "Entertainment_Music", "entertainment_music": "Entertainment_Music"}
GYAFC_DIRECTIONS = ("both", "informal-to-formal", "formal-to-informal")

# Yelp training pools. "official": sentiment.train.{0,1} of the release, used as released (not available
# offline here).
# "shen2017-test": shen2017/sentiment.test.{0,1}, the offline default; every line whose sentence also
# occurs in the release's dev or test files is dropped so nothing evaluated is trained on (on the real
# files: 126,670 lines → 121,572; 14 lines match test sentences, 5,086 dev sentences, mostly repeated
# short ones). shen2017/sentiment.dev.* is refused: the 1000 reference test sentences were sampled from it.
YELP_TRAIN_POOLS = ("shen2017-test", "official")
YELP_FORBIDDEN_POOLS = {
    "shen2017-dev": "the Yelp reference test sentences were drawn from shen2017/sentiment.dev.*, so "
                    "training on it leaks the test set; use train_pool 'shen2017-test' or 'official'",
}

GYAFC_HOW_TO_GET = (
    "GYAFC is licensed and cannot be downloaded automatically (Rao & Tetreault 2018): request the Yahoo "
    "Answers L6 corpus (Yahoo Webscope, free for research), forward the acknowledgment to the GYAFC "
    "authors as described at github.com/raosudha89/GYAFC-corpus to receive GYAFC_Corpus, then pass "
    "--data-dir pointing at the folder that contains GYAFC_Corpus"
)
# Named in every error about a missing or malformed GYAFC folder (errors stay one line).
GYAFC_LAYOUT = (
    "expected layout: GYAFC_Corpus/<Entertainment_Music|Family_Relationships>/train/{formal,informal} "
    "(line-aligned) and .../{tune,test}/{formal,informal,formal.ref0..3,informal.ref0..3}"
)


def make_example(source: str, source_style: int, target_style: int, target: str | None = None,
                 references: list[str] | None = None, content: str | None = None) -> dict[str, Any]:
    """One example. `content` is the text placed in the prompt (the source itself unless markers were
    deleted); `target` is what training teaches (a parallel rewrite, a reconstruction, or the first
    human reference); `references` are the human rewrites BLEU is scored against (empty if none)."""
    return {
        "source": source,
        "content": source if content is None else content,
        "source_style": source_style,
        "target_style": target_style,
        "target": target,
        "references": list(references or []),
    }


def read_lines(path: Path, hint: str = "") -> list[str]:
    """Lines without surrounding whitespace; empty lines are kept so parallel files stay aligned.
    `hint` is appended to the error when the file is missing or unreadable."""
    tail = f" ({hint})" if hint else ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.strip() for line in handle]
    except FileNotFoundError:
        raise SaloraError(f"data file missing: {path}{tail}") from None
    except OSError as exc:
        raise SaloraError(f"cannot read data file {path}: {exc.strerror}{tail}") from None


def read_strict_lines(path: Path) -> list[str]:
    """Like `read_lines`, but a line that is not UTF-8 is an error naming file and line (Yelp: the
    release is clean UTF-8, so such a line means a damaged or wrong file, not text to guess at)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SaloraError(f"data file missing: {path}") from None
    except OSError as exc:
        raise SaloraError(f"cannot read data file {path}: {exc.strerror}") from None
    lines = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append(line.decode("utf-8").strip())
        except UnicodeDecodeError as exc:
            raise SaloraError(f"{path}, line {number}: not UTF-8 text ({exc.reason})") from None
    return lines


def read_sentences(path: Path) -> list[str]:
    """A one-sentence-per-line file; an empty line inside it or a tab is an error naming the line
    (the official Yelp files have neither; trailing empty lines are fine)."""
    lines = _drop_trailing_empty(read_strict_lines(path))
    for number, line in enumerate(lines, 1):
        if not line:
            raise SaloraError(f"{path}, line {number}: empty sentence")
        if "\t" in line:
            raise SaloraError(f"{path}, line {number}: expected one sentence, found tab-separated fields")
    return lines


def subsample(items: list, k: int | None, seed: int) -> list:
    """A seeded random subset of size k (all items if k is None or >= len)."""
    if k is None or k >= len(items):
        return list(items)
    if k < 1:
        raise SaloraError(f"max_train_samples must be at least 1 (got {k})")
    return random.Random(seed).sample(items, k)


# --------------------------------------------------------------------------------------------- Yelp

def find_yelp_dir(data_dir: str | os.PathLike | None) -> Path:
    """The folder holding sentiment.test.0: `data_dir` itself, `data_dir/yelp`, or $SALORA_DATA/yelp."""
    bases = [Path(data_dir).expanduser()] if data_dir else []
    if not bases and os.environ.get("SALORA_DATA"):
        bases = [Path(os.environ["SALORA_DATA"]).expanduser()]
    for base in bases:
        for cand in (base, base / "yelp"):
            if (cand / "sentiment.test.0").is_file():
                return cand
    where = f" under {bases[0]}" if bases else ""
    raise SaloraError(
        f"Yelp data not found{where}: pass --data-dir pointing at the folder with "
        "sentiment.{dev,test}.{0,1} and reference.{0,1} (or at its parent holding yelp/)"
    )


def read_yelp_labelled(folder: Path, prefix: str) -> list[tuple[str, int]]:
    """(sentence, style) pairs from `<prefix>.0` and `<prefix>.1` (see `read_sentences`)."""
    pairs = []
    for style in (0, 1):
        pairs += [(s, style) for s in read_sentences(folder / f"{prefix}.{style}")]
    return pairs


def read_yelp_pool(folder: Path, pool: str) -> list[tuple[str, int]]:
    """The non-parallel training sentences of the named pool (see YELP_TRAIN_POOLS)."""
    if pool in YELP_FORBIDDEN_POOLS:
        raise SaloraError(f"train_pool '{pool}' is not allowed: {YELP_FORBIDDEN_POOLS[pool]}")
    if pool == "official":
        if not (folder / "sentiment.train.0").is_file():
            raise SaloraError(
                f"train_pool 'official' needs sentiment.train.{{0,1}} in {folder} (missing); "
                "add them or use train_pool 'shen2017-test'"
            )
        return read_yelp_labelled(folder, "sentiment.train")
    if pool == "shen2017-test":
        if not (folder / "shen2017" / "sentiment.test.0").is_file():
            raise SaloraError(
                f"train_pool 'shen2017-test' needs shen2017/sentiment.test.{{0,1}} in {folder} (missing)"
            )
        pairs = read_yelp_labelled(folder / "shen2017", "sentiment.test")
        # Drop every copy of a sentence that is also evaluated (dev or test).
        held_out = {s for s, _ in read_yelp_labelled(folder, "sentiment.dev")}
        held_out |= {s for s, _ in read_yelp_labelled(folder, "sentiment.test")}
        return [(s, y) for s, y in pairs if s not in held_out]
    raise SaloraError(f"unknown Yelp train_pool '{pool}' (choose from: {', '.join(YELP_TRAIN_POOLS)})")


def read_yelp_test(folder: Path) -> list[dict[str, Any]]:
    """Test examples: source in style s → target style 1-s, one human reference each."""
    examples = []
    for style in (0, 1):
        sources = read_sentences(folder / f"sentiment.test.{style}")
        rows = _drop_trailing_empty(read_strict_lines(folder / f"reference.{style}"))
        if len(rows) != len(sources):
            raise SaloraError(
                f"reference.{style} has {len(rows)} lines but sentiment.test.{style} has {len(sources)} "
                f"in {folder}: they must be line-aligned"
            )
        for i, (src, row) in enumerate(zip(sources, rows)):
            parts = row.split("\t")
            if len(parts) != 2 or not parts[1].strip():
                raise SaloraError(f"{folder / f'reference.{style}'} line {i + 1}: expected "
                                  "'source<TAB>rewrite' (two fields, the rewrite not empty)")
            if parts[0].split() != src.split():
                raise SaloraError(f"{folder / f'reference.{style}'} line {i + 1}: source column differs "
                                  f"from sentiment.test.{style} line {i + 1} (files not aligned)")
            examples.append(make_example(src, style, 1 - style, target=parts[1].strip(),
                                         references=[parts[1].strip()]))
    return examples


def _drop_trailing_empty(lines: list[str]) -> list[str]:
    """Without empty lines at the end (a stray final newline must not break the alignment check)."""
    end = len(lines)
    while end and not lines[end - 1]:
        end -= 1
    return lines[:end]


# -------------------------------------------------------------------------------------------- GYAFC

def resolve_gyafc_domain(domain: str) -> str:
    if domain in GYAFC_DOMAINS:
        return domain
    if domain.lower() in GYAFC_DOMAIN_ALIASES:
        return GYAFC_DOMAIN_ALIASES[domain.lower()]
    raise SaloraError(f"unknown GYAFC domain '{domain}' (choose from: {', '.join(GYAFC_DOMAINS)})")


def find_gyafc_domain_dir(data_dir: str | os.PathLike | None, domain: str) -> Path:
    """`<data_dir>/GYAFC_Corpus/<domain>`, also accepting data_dir = GYAFC_Corpus or the domain folder."""
    domain = resolve_gyafc_domain(domain)
    if not data_dir:
        raise SaloraError(f"GYAFC data not given: {GYAFC_HOW_TO_GET}; {GYAFC_LAYOUT}")
    base = Path(data_dir).expanduser()
    for cand in (base / "GYAFC_Corpus" / domain, base / domain, base):
        if cand.name == domain and (cand / "train").is_dir():
            return cand
    if (base / "GYAFC_Corpus").is_dir() or base.name == "GYAFC_Corpus":
        raise SaloraError(f"GYAFC domain folder {domain}/train not found under {base}; {GYAFC_LAYOUT}")
    raise SaloraError(f"GYAFC not found under {base}: {GYAFC_HOW_TO_GET}; {GYAFC_LAYOUT}")


def check_direction(direction: str) -> str:
    if direction not in GYAFC_DIRECTIONS:
        raise SaloraError(f"unknown GYAFC direction '{direction}' (choose from: {', '.join(GYAFC_DIRECTIONS)})")
    return direction


def _target_styles(direction: str) -> list[int]:
    """Styles written INTO for a direction: informal-to-formal writes formal (1)."""
    return {"both": [1, 0], "informal-to-formal": [1], "formal-to-informal": [0]}[check_direction(direction)]


def read_gyafc_parallel(split_dir: Path, direction: str) -> list[dict[str, Any]]:
    """Examples from line-aligned `informal`/`formal` files (the train split)."""
    informal = read_lines(split_dir / "informal", GYAFC_LAYOUT)
    formal = read_lines(split_dir / "formal", GYAFC_LAYOUT)
    if len(informal) != len(formal):
        raise SaloraError(f"{split_dir}: informal has {len(informal)} lines, formal {len(formal)}; "
                          f"the parallel files must be line-aligned ({GYAFC_LAYOUT})")
    sides = {0: informal, 1: formal}
    examples = []
    for tgt in _target_styles(direction):
        src = 1 - tgt
        examples += [make_example(s, src, tgt, target=t) for s, t in zip(sides[src], sides[tgt]) if s and t]
    return examples


def read_gyafc_with_references(split_dir: Path, direction: str) -> list[dict[str, Any]]:
    """Examples for tune/test: sources from `<other style>`, references `<target style>.ref0..N`."""
    examples = []
    for tgt in _target_styles(direction):
        src = 1 - tgt
        src_name, tgt_name = GYAFC_STYLES[src], GYAFC_STYLES[tgt]
        sources = read_lines(split_dir / src_name, GYAFC_LAYOUT)
        ref_files = sorted(split_dir.glob(f"{tgt_name}.ref*"), key=lambda p: p.name)
        ref_files = [p for p in ref_files if p.name[len(tgt_name) + 4:].isdigit()]
        if not ref_files:
            raise SaloraError(f"{split_dir}: no reference files {tgt_name}.ref0..3 for {src_name}→{tgt_name} "
                              f"({GYAFC_LAYOUT})")
        streams = [read_lines(p, GYAFC_LAYOUT) for p in ref_files]
        for p, stream in zip(ref_files, streams):
            if len(stream) != len(sources):
                raise SaloraError(f"{p} has {len(stream)} lines but {split_dir / src_name} has "
                                  f"{len(sources)}: references must be line-aligned with the sources ({GYAFC_LAYOUT})")
        for i, source in enumerate(sources):
            refs = [stream[i] for stream in streams if stream[i]]
            if source and refs:
                examples.append(make_example(source, src, tgt, target=refs[0], references=refs))
    return examples


def read_gyafc_split(domain_dir: Path, split: str, direction: str) -> list[dict[str, Any]]:
    """train: parallel pairs; tune/test: reference-scored sources (tune falls back to parallel pairs
    when it has no reference files and its two files are line-aligned)."""
    split_dir = domain_dir / split
    if not split_dir.is_dir():
        raise SaloraError(f"GYAFC split folder missing: {split_dir} ({GYAFC_LAYOUT})")
    if split == "train":
        return read_gyafc_parallel(split_dir, direction)
    if split == "tune" and not any(split_dir.glob("*.ref0")):
        examples = read_gyafc_parallel(split_dir, direction)
        for ex in examples:
            ex["references"] = [ex["target"]]
        return examples
    return read_gyafc_with_references(split_dir, direction)
