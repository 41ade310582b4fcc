"""`salora transfer RUN_OR_MODEL --task yelp|gyafc`: zero-shot style transfer of a run or a base model.

RUN_OR_MODEL is either a run folder of a causal LM (config.yaml: an instruction-tuned run, a style run,
any method; its best or final weights are loaded onto its base model as `salora eval` does) or a model
reference (hub id, local model folder, or the offline alias `smollm2-135m`): the base model without any
adapter, a row of its own. The model rewrites the task's test sources zero-shot (tasks.instruct.zero_shot: the
Alpaca template, a fixed instruction per target style), batched (tasks.generation: left padding, KV
cache, EOS or the end of the answer line ends a rewrite); the answer is cut from each generation
(tasks.instruct.zero_shot.cut_answer), then scored (tasks.instruct.transfer_metrics) with the runner's own style
classifier (salora_cli.transfer.style_scoring; it never guides decoding) and, for fluency, the base LM without
adapter (for a bare model: the model itself).

Written (atomically, never over an existing folder without --overwrite) to RUN/transfer/<task>/ for a
run, or to --out (default runs/transfer/<model>/<task>) for a model: config.yaml (the settings and
what was transferred), command.txt, metrics.json (overall and per direction, with the timings of
generation, scoring and scorer setup apart), generations.jsonl (source, references, the raw
continuation, the cut rewrite and its outcome label). `salora eval` on that folder rescores
generations.jsonl (no regeneration) and compares with metrics.json.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from salora_cli.core import atomic
from salora_cli.core import run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.transfer.transfer_config import TransferConfig

TRANSFER_KIND = "transfer"  # metrics.json "kind" of a transfer folder
RUN_SUBFOLDER = "transfer"
CLASSIFIER_FAMILIES = ("glue", "stylecls")  # runs of these tasks are classifiers, not LMs
BASE_METHOD = "base"  # the method name of a model without adapter
REPORTED = ("accuracy", "bleu", "self_bleu", "g_score", "perplexity", "perplexity_sources",
            "perplexity_references", "perplexity_ratio", "share_empty", "share_echo", "share_off_task")


@dataclass(frozen=True)
class Subject:
    """What is transferred: a run's weights on its base model, or a base model alone."""

    ref: str  # as given on the command line
    base_model: str  # the model reference the run was trained from (or `ref` itself)
    method: str  # the run's method, or "base"
    seed: int | None
    run_dir: Path | None  # None for a bare model

    @property
    def label(self) -> str:
        """A folder-safe name for a bare model (alias, folder name, or hub id with / → --)."""
        return Path(self.ref.rstrip("/")).name if Path(self.ref).expanduser().is_dir() else self.ref.replace("/", "--")


def resolve_subject(ref: str) -> Subject:
    """A run folder (config.yaml) or a model reference; anything else is a one-line error."""
    from tasks.models import ALIASES

    path = Path(ref).expanduser()
    if path.is_dir() and (path / "config.yaml").is_file():
        cfg = rd.load_config(path)
        if cfg.task.split("/", 1)[0] in CLASSIFIER_FAMILIES:
            raise SaloraError(f"{ref} is a {cfg.task} run (a classifier); transfer needs a causal LM run "
                              "(e.g. instruct/alpaca or style/*) or a model")
        return Subject(ref=ref, base_model=cfg.model, method=cfg.method, seed=cfg.train.seed, run_dir=path)
    if ref in ALIASES or (path.is_dir() and (path / "config.json").is_file()):
        return Subject(ref=ref, base_model=ref, method=BASE_METHOD, seed=None, run_dir=None)
    if path.exists():
        raise SaloraError(f"{ref} is neither a run folder (config.yaml) nor a model folder (config.json)")
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise SaloraError(f"no run folder or model folder {ref}")
    return Subject(ref=ref, base_model=ref, method=BASE_METHOD, seed=None, run_dir=None)  # a hub id


def default_out(subject: Subject, task: str) -> Path:
    if subject.run_dir is not None:
        return subject.run_dir / RUN_SUBFOLDER / task
    return Path("runs") / RUN_SUBFOLDER / subject.label / task


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any model is loaded, a folder that holds something other than an earlier
    transfer, and an earlier transfer without --overwrite."""
    if out.exists() and not out.is_dir():
        raise SaloraError(f"{out} is an existing file; choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_transfer_folder(out):
        raise SaloraError(f"{out} already exists and is not a transfer folder; refusing to replace it: "
                          "choose another --out")
    if not overwrite:
        raise SaloraError(f"{out} already holds a transfer; pass --overwrite to replace it, or choose another --out")


def is_transfer_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("kind") == TRANSFER_KIND
    except (OSError, ValueError, AttributeError):
        return False


# ------------------------------------------------------------------------------------------------ data
def task_data_dir(tc: TransferConfig) -> str | None:
    """The transfer's data_dir, or else the task's folder under $SALORA_DATA as a style run of that task
    finds it (yelp/, gyafc/): a profile's `transfer: [yelp, gyafc]` names no folder."""
    import os

    from salora_cli.core.config import default_data_dir

    return tc.data_dir or default_data_dir(os.environ.get("SALORA_DATA"), f"style/{tc.task}")


def load_examples(tc: TransferConfig) -> tuple[list[dict[str, Any]], str]:
    """(examples with style names and, if asked, lower-cased references; the data folder read)."""
    from tasks.style.style_data import (GYAFC_STYLES, YELP_STYLES, find_gyafc_domain_dir, find_yelp_dir,
                                  read_gyafc_split, read_yelp_test, resolve_gyafc_domain)

    data_dir = task_data_dir(tc)
    if tc.task == "yelp":
        folder = find_yelp_dir(data_dir)
        examples, names = read_yelp_test(folder), YELP_STYLES
    else:
        folder = find_gyafc_domain_dir(data_dir, resolve_gyafc_domain(tc.domain))
        split = "test" if tc.split == "test" else "tune"
        examples, names = read_gyafc_split(folder, split, tc.direction), GYAFC_STYLES
    if tc.max_samples is not None and tc.max_samples < len(examples):
        # evenly spaced positions: both directions (they follow each other in the file order) are covered
        examples = [examples[i * len(examples) // tc.max_samples] for i in range(tc.max_samples)]
    out = []
    for ex in examples:
        refs = [r.lower() if tc.lowercase else r for r in ex["references"]]
        out.append({"source": ex["source"], "source_style": names[ex["source_style"]],
                    "target_style": names[ex["target_style"]], "references": refs,
                    "content": ex["source"].lower() if tc.lowercase else ex["source"]})
    return out, str(folder.resolve())


# ---------------------------------------------------------------------------------------------- models
def load_causal_lm(model_ref: str):
    """(model, tokenizer) of a causal LM, tokenizer padded on the left for generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.models import load_pretrained
    from tasks.style.style import prepare_tokenizer

    tokenizer = load_pretrained(AutoTokenizer, model_ref)
    model = load_pretrained(AutoModelForCausalLM, model_ref, dtype=torch.float32)
    prepare_tokenizer(tokenizer, model)
    return model.eval(), tokenizer


def load_subject_model(subject: Subject, checkpoint: str):
    """(model to transfer with, tokenizer): a run's weights on its base model, or the base model."""
    from salora_cli.run.evaluation import CHECKPOINTS
    from salora_cli.methods import load_method

    if subject.run_dir is None:
        return load_causal_lm(subject.base_model)
    folder = subject.run_dir / CHECKPOINTS[checkpoint]
    if not folder.exists():
        raise SaloraError(f"{subject.run_dir} has no {checkpoint} checkpoint ({folder.name}/ missing)")
    cfg = rd.load_config(subject.run_dir)
    model, tokenizer = load_causal_lm(cfg.model)
    return load_method(model, cfg, folder).model.eval(), tokenizer


def classifier_for(tc: TransferConfig, data_folder: str, console: Console):
    """(texts → style indices, held-out accuracy, classifier run folder): the runner's own classifier,
    with the data options style runs use, so the cached one is shared with them. Yelp rewrites are put
    in the Yelp release's tokenised form first, the form the classifier was trained on."""
    from salora_cli.transfer.style_scoring import classifier_run, load_classifier
    from tasks.style.style_metrics import yelp_normalize

    options = {"train_pool": "shen2017-test"} if tc.task == "yelp" else {"domain": tc.domain}
    data_dir = data_folder if tc.task == "yelp" else task_data_dir(tc)
    run = classifier_run(f"style/{tc.task}", data_dir, options, console)
    classify, held_out = load_classifier(run, batch_size=tc.score_batch_size)
    if tc.task == "yelp":
        return (lambda texts: classify([yelp_normalize(t) for t in texts])), held_out, run
    return classify, held_out, run


# ------------------------------------------------------------------------------------------- the steps
def generate(model, tokenizer, examples: list[dict], tc: TransferConfig) -> list[str]:
    """The raw continuations (after the prompt, up to EOS or the end of the answer line)."""
    import torch

    from tasks.generation import generate_texts
    from tasks.instruct.zero_shot import answer_complete, transfer_prompt

    torch.manual_seed(tc.seed)
    prompts = [transfer_prompt(tc.instruction(ex["target_style"]), ex["source"], tc.lowercase) for ex in examples]
    done = (lambda i, text: answer_complete(text, examples[i]["source"])) if tc.stop_at_answer_end else None
    return generate_texts(model, tokenizer, prompts, batch_size=tc.batch_size, max_new_tokens=tc.max_new_tokens,
                          options=tc.generation_options(), stop_when=done, clean=None)


def with_cut(examples: list[dict], raw: list[str]) -> list[dict]:
    """generations.jsonl records: the example, its raw continuation, the cut rewrite, its outcome."""
    from tasks.instruct.zero_shot import cut_answer

    return [labelled({**ex, "raw": text, "generation": cut_answer(text, ex["source"])})
            for ex, text in zip(examples, raw)]


def labelled(record: dict) -> dict:
    """`record` with its outcome label (tasks.instruct.output_checks) and the phrase that matched, if any."""
    from tasks.instruct.output_checks import check_output

    check = check_output(record["generation"], record["source"])
    record = {k: v for k, v in record.items() if k not in ("outcome", "matched")}
    matched = check.refusal or check.comment
    return {**record, "outcome": check.outcome, **({"matched": matched} if matched else {})}


def needs_relabelling(folder: Path) -> bool:
    """A finished transfer whose outcome labels an older version of the output checks made."""
    from salora_cli.reports.runs import read_json
    from tasks.instruct.output_checks import CHECKS_VERSION

    return read_json(folder / "metrics.json", "metrics.json").get("output_checks_version", 1) < CHECKS_VERSION


def relabel_folder(folder: Path) -> dict:
    """The outcome labels and shares of a finished transfer recomputed by today's output checks, from its
    generations.jsonl: nothing is generated or scored again (accuracy, BLEU and perplexity do not
    depend on the labels). The folder is swapped in whole, its command.txt kept; metrics.json says
    what was redone. Returns the new overall shares."""
    from salora_cli.reports.runs import read_generations, read_json
    from tasks.instruct.output_checks import CHECKS_VERSION, outcome_shares
    from tasks.instruct.transfer_metrics import direction_name

    metrics = read_json(folder / "metrics.json", "metrics.json")
    settings = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    records = [labelled(r) for r in read_generations(folder / "generations.jsonl")]
    test = metrics["test"]
    test["metrics"].update(outcome_shares([r["generation"] for r in records], [r["source"] for r in records]))
    for name, block in (test.get("directions") or {}).items():
        rows = [r for r in records if direction_name(r["source_style"], r["target_style"]) == name]
        block.update(outcome_shares([r["generation"] for r in rows], [r["source"] for r in rows]))
    was = metrics.get("output_checks_version", 1)
    metrics["output_checks_version"] = CHECKS_VERSION
    metrics["relabelled"] = (f"outcome labels and shares recomputed from generations.jsonl by output checks version "
                             f"{CHECKS_VERSION} (they were version {was}); nothing generated or scored again")
    command = (folder / "command.txt").read_text(encoding="utf-8")
    write_folder(folder, settings, metrics, records, command=command)
    return test["metrics"]


def score(records: list[dict], tc: TransferConfig, classify, fluency_lm) -> tuple[dict, dict]:
    from tasks.style.style_data import GYAFC_STYLES, YELP_STYLES
    from tasks.style.style_metrics import yelp_normalize
    from tasks.instruct.transfer_metrics import score_transfer

    yelp = tc.task == "yelp"
    return score_transfer(records, normalize=yelp_normalize if yelp else None, lowercase=True, classify=classify,
                          style_names=YELP_STYLES if yelp else GYAFC_STYLES, fluency_lm=fluency_lm,
                          batch_size=tc.score_batch_size)


def scorers(subject_base: str, tc: TransferConfig, data_folder: str, console: Console, model=None, tokenizer=None):
    """(classify or None, (fluency LM, tokenizer) or None, what was used): the fluency LM is the base
    model without adapter: `model` itself when the subject is a bare model (no second copy)."""
    used: dict[str, Any] = {}
    classify = None
    if tc.style_scoring:
        classify, held_out, run = classifier_for(tc, data_folder, console)
        used.update(style_classifier=str(run), classifier_heldout_accuracy=held_out)
    fluency = None
    if tc.fluency:
        fluency = (model, tokenizer) if model is not None else _base_lm(subject_base)
        used["fluency_lm"] = f"{subject_base} (base model, no adapter)"
    return classify, fluency, used


_BASE_LMS: dict[str, tuple] = {}  # one fluency LM per base model and process (make reproduce scores six transfers)


def _base_lm(name: str) -> tuple:
    if name not in _BASE_LMS:
        model, tokenizer = load_causal_lm(name)
        _BASE_LMS[name] = (model.eval(), tokenizer)
    return _BASE_LMS[name]


def run_transfer(ref: str, tc: TransferConfig, out: Path | None, overwrite: bool, console: Console) -> Path:
    """The whole command: check, load, generate, cut, score, write; returns the folder written."""
    from tasks.instruct.output_checks import CHECKS_VERSION

    tc.validate()
    if tc.data_dir:  # recorded as an absolute path: `salora eval` may run from elsewhere
        tc.data_dir = str(Path(tc.data_dir).expanduser().absolute())
    subject = resolve_subject(ref)
    out = out or default_out(subject, tc.task)
    check_out(out, overwrite)
    examples, data_folder = load_examples(tc)  # read and checked before any model is loaded
    console.print(f"[bold]salora transfer[/] {subject.ref} ({subject.method}) · {tc.task} {tc.split} · "
                  f"{len(examples)} sources → {out}", highlight=False)
    model, tokenizer = load_subject_model(subject, tc.checkpoint)
    started = time.perf_counter()
    raw = generate(model, tokenizer, examples, tc)
    generate_s = time.perf_counter() - started
    records = with_cut(examples, raw)
    started = time.perf_counter()
    bare = subject.run_dir is None
    classify, fluency, used = scorers(subject.base_model, tc, data_folder, console,
                                      *((model, tokenizer) if bare else (None, None)))
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    overall, directions = score(records, tc, classify, fluency)
    score_s = time.perf_counter() - started
    metrics = {
        "kind": TRANSFER_KIND, "status": "finished", "task": f"{TRANSFER_KIND}/{tc.task}", "method": subject.method,
        "seed": subject.seed, "model": subject.base_model, "subject": subject.ref,
        "subject_run": str(subject.run_dir.resolve()) if subject.run_dir else None,
        "checkpoint": tc.checkpoint if subject.run_dir else None,
        "main_metric": "g_score" if classify is not None else "bleu",
        "output_checks_version": CHECKS_VERSION,
        "test": {"split": tc.split, "examples": len(records), "metrics": overall, "directions": directions,
                 "generate_time_s": round(generate_s, 3), "score_time_s": round(score_s, 3),
                 "scorer_setup_s": round(setup_s, 3),
                 "generate_s_per_1000": round(1000 * generate_s / max(len(records), 1), 1), **used},
    }
    settings = {"subject": subject.ref, "method": subject.method, "base_model": subject.base_model,
                "data_folder": data_folder, "transfer": tc.to_dict()}
    write_folder(out, settings, metrics, records)
    print_summary(metrics, console)
    return out


def write_folder(out: Path, settings: dict, metrics: dict, records: list[dict], command: str | None = None) -> None:
    """Swap the complete folder in at once (an earlier transfer there is replaced only as a whole).
    `command`: command.txt's text (default: this process's command line)."""
    def write(tmp: Path) -> None:
        atomic.write_text(tmp / "config.yaml", yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        atomic.write_text(tmp / "command.txt", command if command is not None else shlex.join(sys.argv) + "\n")
        atomic.write_text(tmp / "generations.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        atomic.write_json(tmp / "metrics.json", metrics)

    out.parent.mkdir(parents=True, exist_ok=True)
    rd.replace_folder(out, write)


def print_summary(metrics: dict, console: Console, recorded: dict | None = None) -> None:
    test = metrics["test"]
    blocks = {"all": test["metrics"], **test["directions"]}
    table = Table(title=f"{metrics['task']} · {metrics['method']} · {metrics['subject']}")
    table.add_column("metric")
    for name in blocks:
        table.add_column(name, justify="right")
    if recorded is not None:
        table.add_column("recorded (all)", justify="right")
    for key in REPORTED:
        if key in test["metrics"]:
            cells = [f"{b.get(key, float('nan')):.2f}" for b in blocks.values()]
            if recorded is not None:
                cells.append(f"{recorded[key]:.2f}" if key in recorded else "")
            table.add_row(key, *cells)
    console.print(table)
    if "generate_s_per_1000" in test:
        console.print(f"generation {test['generate_time_s']:.1f} s ({test['generate_s_per_1000']:.0f} s per 1,000 "
                      f"sentences), scorer setup {test['scorer_setup_s']:.1f} s, scoring {test['score_time_s']:.1f} s",
                      highlight=False)


# ---------------------------------------------------------------------------------------------- eval
def rescore_folder(folder: Path, console: Console) -> tuple[dict, Path]:
    """`salora eval` of a transfer folder: the metrics recomputed from generations.jsonl (the rewrites
    are not generated again) with the same scorers, compared with metrics.json; written to
    eval_<split>.json beside it."""
    from salora_cli.reports.runs import read_generations, read_json

    metrics = read_json(folder / "metrics.json", "metrics.json")
    settings = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    tc = TransferConfig.from_dict(settings.get("transfer") or {})
    records = read_generations(folder / "generations.jsonl")
    if not records:
        raise SaloraError(f"{folder / 'generations.jsonl'} is missing or empty: nothing to rescore")
    data_folder = settings.get("data_folder") or ""
    if tc.style_scoring and not Path(data_folder).exists():
        raise SaloraError(f"data folder {data_folder} (from {folder / 'config.yaml'}) does not exist: the "
                          "style classifier is found by its training data")
    classify, fluency, _ = scorers(metrics["model"], tc, data_folder, console)
    overall, directions = score(records, tc, classify, fluency)
    now = {**metrics, "test": {"split": tc.split, "metrics": overall, "directions": directions}}
    print_summary(now, console, recorded=metrics["test"]["metrics"])
    written = folder / f"eval_{tc.split}.json"
    atomic.write_json(written, {"split": tc.split, "rescored_from": "generations.jsonl", "metrics": overall,
                                "directions": directions})
    return overall, written
