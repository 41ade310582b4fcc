"""Scorers for style transfer: a style classifier trained by this runner, and a fixed fluency LM.

The classifier is a normal salora run (task "stylecls/<style>", LoRA on MiniLM-L6), trained once
per data folder and settings and cached under $SALORA_CACHE/style_classifiers/; its own held-out
accuracy (dev split) is reported beside every style-transfer result that uses it. Fluency is the
perplexity of the outputs under the run's base model without its adapter (fixed across methods).

Both are attached to the task only for the final test scoring (train.Trainer._final_test, after the
last checkpoint is chosen): the evaluation classifier is never used for training, checkpoint
selection or decoding. Yelp selects checkpoints with its own word-count classifier (tasks.style.selection).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

from salora_cli.core import config as cfgmod
from salora_cli.core import run_dir as rd
from tasks.models import cache_dir

CLASSIFIER = {
    "model": "minilm-l6",
    "method": "lora",
    "adapter": {"r_init": 8, "alpha": 16},
    "train": {"lr": 1.0e-3, "epochs": 1, "batch_size": 32, "max_length": 64,
              "max_train_samples": 8000, "max_eval_samples": 2000},
}
DATA_OPTIONS = ("train_pool", "domain")  # the style task options that change the classifier's data


def classifier_run(style_task: str, data_dir: str | None, task_options: dict, console: Console) -> Path:
    """Folder of a finished style-classifier run for this data, training it first if needed."""
    from salora_cli.run.train import train

    style = style_task.split("/", 1)[1]
    options = {k: v for k, v in task_options.items() if k in DATA_OPTIONS}
    data = str(Path(data_dir).resolve()) if data_dir else os.environ.get("SALORA_DATA", "hub")
    key = hashlib.sha1(json.dumps([style, data, options, CLASSIFIER], sort_keys=True).encode()).hexdigest()[:12]
    run = cache_dir() / "style_classifiers" / f"{style}-{key}"
    if rd.is_finished(run):
        return run
    cfg = cfgmod.build_config(CLASSIFIER, {"task": f"stylecls/{style}", "data_dir": data_dir,
                                           "task_options": options})
    rd.prepare(run, cfg, resume=False, overwrite=True)
    console.print(f"training the {style} style classifier once (cached in {run})")
    train(cfg, run, console)
    return run


def load_classifier(run: Path, batch_size: int = 64) -> tuple[Callable[[list[str]], list[int]], float]:
    """(texts -> predicted style indices, the classifier's own held-out accuracy)."""
    from salora_cli.run.evaluation import reload_run

    cfg, _, method, tokenizer = reload_run(run, "best")
    model = method.model.eval()
    device = next(model.parameters()).device

    def classify(texts: list[str]) -> list[int]:
        preds: list[int] = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=cfg.train.max_length,
                                padding=True, return_tensors="pt").to(device)
                preds += model(**enc).logits.argmax(-1).tolist()
        return preds

    held_out = json.loads((run / "metrics.json").read_text())["best"]["metrics"]["accuracy"]
    return classify, float(held_out)


def attach_scorers(task: Any, cfg: cfgmod.RunConfig, console: Console) -> dict[str, Any]:
    """Give a style task its classifier and fluency LM; returns what was used, for the record."""
    run = classifier_run(cfg.task, cfg.data_dir, cfg.task_options, console)
    classify, held_out = load_classifier(run)
    fluency_model, fluency_tok = task.build_model(cfg.model)
    task.configure(style_classifier=classify, fluency_lm=(fluency_model.eval(), fluency_tok))
    return {"style_classifier": str(run), "classifier_heldout_accuracy": held_out,
            "fluency_lm": f"{cfg.model} (base model, no adapter)"}
