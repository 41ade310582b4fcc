"""The batches `make bench` times: the 16 × 64 random batch, and a real short SST-2 batch.

The short case is what the cpu grid trains SST-2 on (configs/reproduce/cpu.yaml: the first 4,000
training sentences, batch 16, max length 64, length-grouped): the runner's own loader, tokenizer and
LengthGroupedSampler, and of that epoch's batches the one whose padded length is nearest the
epoch's mean (16 × 14 tokens: SST-2 is mostly short phrases).
On such a batch the fixed per-step work of a method weighs most.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

BATCH, LENGTH = 16, 64
SST2_SAMPLES, SST2_MAX_LENGTH, SEED = 4000, 64, 0


def random_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20000, (BATCH, LENGTH), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 2, (BATCH,), generator=g)}


def glue_dir() -> Path:
    root = Path(os.environ.get("SALORA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root / "glue"


def sst2_batch() -> dict[str, torch.Tensor] | None:
    """The mean-length batch of the cpu grid's SST-2 epoch; None if the data are not at hand."""
    if not (glue_dir() / "SST-2" / "train.tsv").exists():
        return None
    import tasks
    from salora_cli.run.batching import LengthGroupedSampler
    from tasks.models import load_pretrained, resolve_model
    from transformers import AutoTokenizer

    task = tasks.get("glue/sst2")
    train = task.load_splits(str(glue_dir()), max_train_samples=SST2_SAMPLES, seed=SEED, splits=("train",))["train"]
    tokenizer = load_pretrained(AutoTokenizer, resolve_model("minilm-l6"))
    lengths = [task.collate(tokenizer, [ex], max_length=SST2_MAX_LENGTH)["input_ids"].shape[-1] for ex in train]
    order = list(LengthGroupedSampler(lengths, BATCH, SEED))
    batches = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    padded = [max(lengths[i] for i in b) for b in batches]
    mean = sum(padded) / len(padded)  # the epoch's time is spread over its batches by their length
    chosen = batches[min(range(len(batches)), key=lambda k: (abs(padded[k] - mean), k))]
    return task.collate(tokenizer, [train[i] for i in chosen], max_length=SST2_MAX_LENGTH)


def describe(data: dict[str, torch.Tensor]) -> str:
    n, length = data["input_ids"].shape
    return f"{n}×{length}"
