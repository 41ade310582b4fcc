"""How much data a planned run reads, and how long its examples are, without a model or a tokenizer.

For the plan (salora_cli/grid/plan.py). A split's size is counted from the run's own data files where they
are here (read with the tasks' own readers, so the count is what the run would read), and otherwise
taken from OFFICIAL, the sizes the datasets' authors state, each with its source. Example lengths come
from the texts at hand, full files or samples of the same distribution (glue-sampled/ for MNLI, QQP and
QNLI; Yelp's dev sentences for its train pool), turned into tokens by one stated rule, CHARS_PER_TOKEN:
the real tokenizers (RoBERTa's and GPT-2's BPE, DeBERTa-v3's and LLaMA's SentencePiece) are not
available offline. Only GYAFC (licensed) has no text here: its length is a stated constant.

Nothing here imports transformers or builds a model.
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from salora_cli.core.config import RunConfig
from salora_cli.core.errors import SaloraError

# English BPE / WordPiece / SentencePiece vocabularies of 30k-128k entries average about four characters
# of text per token (the usual rule of thumb for GPT-2's BPE on English prose). One rule for every model:
# it is the plan's largest approximation for DeBERTa-v3's 128k vocabulary (fewer tokens) and for the
# tokenised, lower-cased Yelp text (more).
CHARS_PER_TOKEN = 4.0
SPECIAL_TOKENS = {1: 2, 2: 3}  # a classifier's [CLS] A [SEP] (+ B [SEP]); RoBERTa's pairs have one more, ignored
LENGTH_SAMPLE = 5000  # examples a length distribution is estimated from (evenly spaced)
GYAFC_MEAN_CHARS = 60  # no GYAFC text here (licensed): ~11 words per sentence, as the corpus paper reports
STYLE_PROMPT_CHARS = len("Input: \nWords: \nStyle: informal\nOutput:")  # tasks.prompts' template, Words line included

GLUE_SOURCE = "GLUE (Wang et al. 2019), the released TSVs' row counts"
YELP_SOURCE = "Li et al. 2018 (Delete, Retrieve, Generate), Table 1: the Yelp release's train split"
GYAFC_SOURCE = "Rao & Tetreault 2018 (GYAFC), Table 1"
ALPACA_SOURCE = "Stanford Alpaca's alpaca_data.json: 52,002 records (28 with an empty output)"


@dataclass(frozen=True)
class Official:
    """A split size its authors state, used where the files are not here."""

    examples: int = field(metadata={"help": "Examples the split holds"})
    source: str = field(metadata={"help": "Where the number is stated"})


# Split sizes where the file is missing (the paper profile's full MNLI, QQP, QNLI, Yelp, GYAFC train).
# The GLUE sizes of the files that are here (SST-2, CoLA, MRPC, RTE, STS-B, QNLI dev) are the counts of
# those files (tests/test_plan.py checks them).
OFFICIAL: dict[str, dict[str, Official]] = {
    "glue/mnli": {"train": Official(392_702, GLUE_SOURCE), "dev": Official(9_815 + 9_832, GLUE_SOURCE)},
    "glue/qqp": {"train": Official(363_846, GLUE_SOURCE), "dev": Official(40_430, GLUE_SOURCE)},
    "glue/qnli": {"train": Official(104_743, GLUE_SOURCE), "dev": Official(5_463, GLUE_SOURCE)},
    "glue/sst2": {"train": Official(67_349, GLUE_SOURCE), "dev": Official(872, GLUE_SOURCE)},
    "glue/cola": {"train": Official(8_551, GLUE_SOURCE), "dev": Official(1_043, GLUE_SOURCE)},
    "glue/mrpc": {"train": Official(3_668, GLUE_SOURCE), "dev": Official(408, GLUE_SOURCE)},
    "glue/rte": {"train": Official(2_490, GLUE_SOURCE), "dev": Official(277, GLUE_SOURCE)},
    "glue/stsb": {"train": Official(5_749, GLUE_SOURCE), "dev": Official(1_500, GLUE_SOURCE)},
    # Yelp's official train split per style (0 negative, 1 positive); dev 2,000 + 2,000 and test 500 + 500 are here
    "style/yelp": {"train.0": Official(177_218, YELP_SOURCE), "train.1": Official(266_041, YELP_SOURCE)},
    # GYAFC, per domain: parallel train pairs; tune and test sources per direction (informal→formal + formal→informal)
    "style/gyafc:Family_Relationships": {"train": Official(51_967, GYAFC_SOURCE),
                                         "tune": Official(2_788 + 2_247, GYAFC_SOURCE),
                                         "test": Official(1_332 + 1_019, GYAFC_SOURCE)},
    "style/gyafc:Entertainment_Music": {"train": Official(52_595, GYAFC_SOURCE),
                                        "tune": Official(2_877 + 2_356, GYAFC_SOURCE),
                                        "test": Official(1_416 + 1_082, GYAFC_SOURCE)},
    "instruct/alpaca": {"records": Official(52_002 - 28, ALPACA_SOURCE)},
}


@dataclass(frozen=True)
class Split:
    """One split as a run reads it: how many examples, and how long they are in tokens."""

    examples: int = field(metadata={"help": "Examples the run reads from this split (before its own caps)"})
    lengths: tuple[int, ...] = field(metadata={"help": "Token counts of a sample of its examples (uncapped)"})
    source: str = field(metadata={"help": "Counted from a file, or an official size with its source"})
    generated: tuple[int, ...] = field(default=(), metadata={"help": (
        "Tokens a generated answer takes per example, for splits scored by generation (style); () otherwise")})
    prompt_lengths: tuple[int, ...] = field(default=(), metadata={"help": (
        "Instruction tuning: the prompt's tokens of each sampled example (a prompt over the cutoff drops it)")})


@dataclass(frozen=True)
class TaskData:
    train: Split
    eval: Split  # evaluated during training (GLUE dev, style dev by generation, instruction-tuning dev loss)
    test: Split | None = None  # scored once at the end (style: generated)


def tokens(chars: int) -> int:
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def _sample(items: list) -> list:
    """At most LENGTH_SAMPLE items at evenly spaced positions (the length estimate needs no more)."""
    if len(items) <= LENGTH_SAMPLE:
        return items
    return [items[i * len(items) // LENGTH_SAMPLE] for i in range(LENGTH_SAMPLE)]


def task_data(cfg: RunConfig) -> TaskData:
    """The data a run of `cfg` reads (its data_dir already resolved, as the runner resolves it)."""
    options = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in cfg.task_options.items()))
    return _task_data(cfg.task, cfg.data_dir, options)


@functools.lru_cache(maxsize=None)
def _task_data(task: str, data_dir: str | None, options: tuple) -> TaskData:
    family = task.split("/", 1)[0]
    readers = {"glue": _glue, "style": _style, "instruct": _instruct}
    if family not in readers:
        raise SaloraError(f"the plan does not know how to size task {task}")
    return readers[family](task, data_dir, {k: json.loads(v) for k, v in options})


# ------------------------------------------------------------------------------------------- GLUE
def _glue_lengths(examples: list[dict]) -> tuple[int, ...]:
    out = []
    for ex in _sample(examples):
        texts = [t for t in (ex["text_a"], ex.get("text_b")) if t is not None]
        out.append(sum(tokens(len(t)) for t in texts) + SPECIAL_TOKENS[len(texts)])
    return tuple(out)


def _glue_split(task: str, data_dir: str | None, split: str, options: dict) -> tuple[list[dict] | None, str]:
    """(the split's examples read by the task itself, configured as the run configures it, and where
    from); None when the file is not here."""
    from tasks.classification.glue import get_glue_task

    if not data_dir:
        return None, ""
    glue = get_glue_task(task).configure(**options)
    try:
        examples = glue.load_splits(data_dir, splits=(split,))[split]
    except SaloraError:  # not here, or only a sample here and the run asks for the official files
        return None, ""
    sampled = split in glue.data_summary().get("sampled", [])
    return examples, f"counted: {data_dir}" + (" (a sample of the official rows, as the run reads it)" if sampled else "")


def _glue_sample(task: str, data_dir: str | None) -> tuple[list[dict], str]:
    """Texts of the same distribution where the full train file is missing: the LM-BFF samples in
    glue-sampled/<TASK>/512-13/train.tsv (MNLI, QQP, QNLI), beside the run's data folder or under the
    data root."""
    from tasks.classification.glue import get_glue_task

    glue = get_glue_task(task)
    roots = [Path(data_dir).expanduser()] if data_dir else []
    roots += [root / "glue"] if (root := _data_root()) else []
    for candidate in roots:
        folder = glue._sampled_folder(candidate) if candidate.is_dir() else None
        if folder is not None and (folder / "512-13" / "train.tsv").is_file():
            return glue._read_tsv(folder / "512-13" / "train.tsv", None), str(folder / "512-13" / "train.tsv")
    return [], ""


def _glue(task: str, data_dir: str | None, options: dict) -> TaskData:
    splits = []
    for split in ("train", "dev"):
        examples, source = _glue_split(task, data_dir, split, options)
        if examples is None:
            official = OFFICIAL[task][split]
            sample, where = _glue_sample(task, data_dir)
            lengths = _glue_lengths(sample) if sample else ()
            splits.append(Split(official.examples, lengths, f"official: {official.source}"
                                + (f" (lengths from {where})" if sample and split == "train" else "")))
        else:
            splits.append(Split(len(examples), _glue_lengths(examples), source))
    train, dev = splits
    if not train.lengths:  # neither the file nor a sample: the dev texts stand in
        train = Split(train.examples, dev.lengths, train.source)
    if not dev.lengths:
        dev = Split(dev.examples, train.lengths, dev.source)
    if not train.lengths:
        raise SaloraError(f"no text of {task} here to estimate its lengths from (neither the file nor a sample)")
    return TaskData(train, dev)


def _data_root() -> Path | None:
    from tasks.instruct.instruct_data import PROJECT_DATA

    root = os.environ.get("SALORA_DATA")
    path = Path(root).expanduser() if root else PROJECT_DATA
    return path if path.is_dir() else None


# ------------------------------------------------------------------------------------------- style
def _rewrite_lengths(sentences: list[str], max_new_tokens: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt tokens, generated tokens) of rewriting each sentence: the prompt holds the sentence (its
    content) and the template; the rewrite about as long as the source, then EOS."""
    prompt = tuple(tokens(STYLE_PROMPT_CHARS + len(s)) for s in sentences)
    generated = tuple(min(tokens(len(s)) + 1, max_new_tokens) for s in sentences)
    return prompt, generated


def _style_split(n: int, sentences: list[str], source: str, max_new_tokens: int, generated: bool) -> Split:
    prompt, answer = _rewrite_lengths(_sample(sentences), max_new_tokens)
    if generated:
        return Split(n, prompt, source, generated=answer)
    return Split(n, tuple(p + a for p, a in zip(prompt, answer)), source)  # training: prompt + target + EOS


def _style(task: str, data_dir: str | None, options: dict) -> TaskData:
    from tasks.style.style_data import find_yelp_dir

    if task == "style/gyafc":
        return _gyafc(data_dir, options)
    max_new = int(options.get("max_new_tokens", 48))
    folder = _yelp_folder(data_dir, find_yelp_dir)
    if folder is None:
        raise SaloraError("Yelp's dev and test files are not here (SALORA_DATA/yelp): the plan sizes Yelp from them")
    from tasks.style.style_data import read_yelp_labelled, read_yelp_pool, read_yelp_test

    dev = [s for s, _ in read_yelp_labelled(folder, "sentiment.dev")]
    test = [ex["source"] for ex in read_yelp_test(folder)]
    pool_name = options.get("train_pool", "shen2017-test")
    try:
        pool = read_yelp_pool(folder, pool_name)
        per_style = [sum(1 for _, y in pool if y == s) for s in (0, 1)]
        pool_source, pool_texts = f"counted: {folder} ({pool_name})", [s for s, _ in pool]
    except SaloraError:  # the official train files: not here
        per_style = [OFFICIAL[task][f"train.{s}"].examples for s in (0, 1)]
        pool_source, pool_texts = f"official: {YELP_SOURCE}", dev
    # train_balance (the default): as many of each style as the smaller has; sentences whose markers
    # remove nothing are dropped too (train_drop_fallback), which needs the markers: not estimated
    balanced = options.get("train_balance", True)
    n_train = 2 * min(per_style) if balanced else sum(per_style)
    return TaskData(_style_split(n_train, pool_texts, pool_source, max_new, generated=False),
                    _style_split(len(dev), dev, f"counted: {folder}", max_new, generated=True),
                    _style_split(len(test), test, f"counted: {folder}", max_new, generated=True))


def _yelp_folder(data_dir: str | None, find) -> Path | None:
    root = data_dir or (str(_data_root()) if _data_root() else None)
    try:
        return find(root)
    except SaloraError:
        return None


def _gyafc(data_dir: str | None, options: dict) -> TaskData:
    from tasks.style.style_data import check_direction, find_gyafc_domain_dir, read_gyafc_split, resolve_gyafc_domain

    domain = resolve_gyafc_domain(options.get("domain", "Family_Relationships"))
    direction = check_direction(options.get("direction", "both"))
    directions = 2 if direction == "both" else 1
    max_new = int(options.get("max_new_tokens", 64))
    try:
        folder = find_gyafc_domain_dir(data_dir, domain)
    except SaloraError:
        folder = None
    if folder is not None:
        splits = {s: read_gyafc_split(folder, s, direction) for s in ("train", "tune", "test")}
        return TaskData(*(_style_split(len(ex), [e["source"] for e in ex], f"counted: {folder}", max_new,
                                       generated=(s != "train")) for s, ex in splits.items()))
    official = OFFICIAL[f"style/gyafc:{domain}"]
    texts = ["x" * GYAFC_MEAN_CHARS]
    source = f"official: {GYAFC_SOURCE}; length {GYAFC_MEAN_CHARS} characters a sentence (stated, no text here)"
    # each parallel pair trains both directions with "both"; tune and test hold both directions' sources
    share = 1.0 if direction == "both" else 0.5
    return TaskData(_style_split(official["train"].examples * directions, texts, source, max_new, generated=False),
                    _style_split(round(official["tune"].examples * share), texts, source, max_new, generated=True),
                    _style_split(round(official["test"].examples * share), texts, source, max_new, generated=True))


# ------------------------------------------------------------------------------------ instruction tuning
def _instruct(task: str, data_dir: str | None, options: dict) -> TaskData:
    from tasks.instruct.alpaca_template import alpaca_prompt
    from tasks.instruct.instruct_data import find_instruct_file, read_instruct_file

    dev_size = int(options.get("dev_size", 200))
    try:
        data = read_instruct_file(find_instruct_file(data_dir))
        records, source = data.records, f"counted: {data.source}"
    except SaloraError:
        records, source = [], ""
    if not records:
        raise SaloraError("no Alpaca-format file here to size instruction tuning from (SALORA_DATA/instruct)")
    sample = _sample(records)
    prompts = tuple(tokens(len(alpaca_prompt(r["instruction"], r["input"]))) + 1 for r in sample)  # + BOS
    whole = tuple(p + tokens(len(r["output"])) + 1 for p, r in zip(prompts, sample))  # + EOS
    n = len(records)
    return TaskData(Split(n - dev_size, whole, source, prompt_lengths=prompts),
                    Split(dev_size, whole, source, prompt_lengths=prompts))


def transfer_lengths(task: str, data_dir: str | None, max_new_tokens: int) -> Split:
    """A zero-shot transfer's test split (salora transfer): the style task's test sources, each in the Alpaca
    prompt (tasks.instruct.zero_shot) instead of the style template, and a rewrite about as long as the source."""
    from tasks.instruct.zero_shot import transfer_prompt

    test = _task_data(f"style/{task}", data_dir, (("max_new_tokens", json.dumps(max_new_tokens)),)).test
    longer = tokens(len(transfer_prompt("Please rewrite the following sentence to be more informal.", ""))) \
        - tokens(STYLE_PROMPT_CHARS)
    return Split(test.examples, tuple(p + longer for p in test.lengths), test.source, generated=test.generated)
