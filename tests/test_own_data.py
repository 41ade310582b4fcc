"""Your own data (`salora train classify`, `salora predict`): the readers, the label rules, every bad input as
one CLI error line, the run features through the same loop (eval, predict, export, ranks, resume, trackers,
every method), and a real labelled file that is not a GLUE file (Yelp sentences) learned well above the
majority class.

The plumbing runs on a tiny random BERT (fault_helpers.make_tiny_model); the example files and Yelp run on
the offline MiniLM-L6.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_clean_error, run_cli, run_cli_ok
from conftest import ROOT, SHARED_DATA
from fault_helpers import make_tiny_model
from salora_cli.core.errors import SaloraError
from tasks.classification.own_data import OwnDataTask

EXAMPLES = ROOT / "examples"
TRAIN, DEV, NEW = (EXAMPLES / f"reviews_{name}.csv" for name in ("train", "dev", "new"))
TINY_RUN = ["--max-steps", "4", "--batch-size", "8", "--max-length", "32", "--rank", "4", "--budget", "2",
            "--set", "train.eval_batch_size=16", "--set", "train.checkpoint_every=2",
            "--set", "adapter.prune_every=1", "--set", "adapter.ramp_start=0", "--set", "adapter.ramp_end=0.5",
            "--set", "adapter.freeze_at=0.5"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder (runs/...) must never land in the repository


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (conftest sets two): on a busy two-core machine two threads wait on each other, and
    the MiniLM runs below took two minutes instead of ten seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tinybert")


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: Path, records: list[dict]) -> Path:
    text = (json.dumps(records) if path.suffix == ".json" else "".join(json.dumps(r) + "\n" for r in records))
    path.write_text(text, encoding="utf-8")
    return path


def classify(train: Path, dev: Path, out: Path, *extra) -> list:
    return ["train", "classify", "--train-file", train, "--validation-file", dev, "--out", out, *extra]


def task_for(**options) -> OwnDataTask:
    return OwnDataTask().configure(**{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ reading: formats, columns, labels
ROWS = [{"review": "tasty soup", "label": "pos"}, {"review": "cold fries", "label": "neg"},
        {"review": "kind staff", "label": "pos"}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
def test_every_format_reads_the_same_examples(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    if suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, ["review", "label"], delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(ROWS)
    else:
        write_json(path, ROWS)
    data = task_for(train_file=path, validation_file=path).load_splits(None)
    assert data["train"] == [{"text_a": "tasty soup", "text_b": None, "label": 1},
                             {"text_a": "cold fries", "text_b": None, "label": 0},
                             {"text_a": "kind staff", "text_b": None, "label": 1}]


@pytest.mark.parametrize("header,expected,how", [
    (["idx", "question", "sentence", "label"], ("question", "sentence"), "GLUE-like names"),
    (["sentence2", "sentence1", "label"], ("sentence1", "sentence2"), "GLUE-like names"),
    (["id", "title", "body", "notes", "label"], ("title", "body"), "the first two text columns"),
    (["id", "body", "label"], ("body",), "the first text column"),
], ids=["qnli-like", "pair-order", "first-two-text", "one-text"])
def test_default_text_columns(tmp_path, header, expected, how):
    row = [7 if h in ("id", "idx") else "yes" if h == "label" else f"some {h}" for h in header]
    other = [8 if h in ("id", "idx") else "no" if h == "label" else f"more {h}" for h in header]
    path = write_csv(tmp_path / "t.csv", header, [row, other])
    added, note = task_for(train_file=path, validation_file=path).settle_options(None)
    assert tuple(added["text_columns"]) == expected
    assert how in note and "choose with --text-columns" in note


@pytest.mark.parametrize("values,labels,problem", [
    (["b", "a", "c", "a"], ["a", "b", "c"], "classification"),
    ([10, 2, 2, 10], [2, 10], "classification"),  # by value, not as text ("10" < "2")
    ([True, False, True], [False, True], "classification"),
    ([0.5, 1, 2.25], None, "regression"),  # an integer beside decimals: numbers
], ids=["text-sorted", "integers-by-value", "booleans-false-first", "floats-regression"])
def test_labels_in_a_stated_order(tmp_path, values, labels, problem):
    records = [{"text": f"row {i}", "label": v} for i, v in enumerate(values)]
    for path in (write_json(tmp_path / "t.jsonl", records),
                 write_csv(tmp_path / "t.csv", ["text", "label"], [[r["text"], r["label"]] for r in records])):
        added, _ = task_for(train_file=path, validation_file=path).settle_options(None)
        assert (added["labels"], added["problem"]) == (labels, problem), path.suffix


def test_integer_scores_as_a_regression_target(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["text", "stars"], [["a", 1], ["b", 5], ["c", 3]])
    task = task_for(train_file=path, validation_file=path, label_column="stars", problem="regression")
    assert [ex["label"] for ex in task.load_splits(None)["train"]] == [1.0, 5.0, 3.0]
    assert task.main_metric == "pearson" and task.num_labels == 1


def test_recorded_layout_needs_no_training_file(tmp_path):
    """eval, predict and export rebuild the head from config.yaml alone."""
    task = task_for(train_file=tmp_path / "gone.csv", validation_file=tmp_path / "gone.csv",
                    text_columns=["review"], problem="classification", labels=[False, True])
    assert task.head_labels() == ["false", "true"] and task.num_labels == 2


def test_metrics_with_baseline():
    task = task_for(train_file="t.csv", validation_file="t.csv", text_columns=["t"], problem="classification",
                    labels=["a", "b", "c"])
    examples = [{"label": y} for y in (0, 0, 0, 1, 2)]
    scores = task.score(examples, [0, 0, 1, 1, 2])
    assert scores["accuracy"] == 80.0 and scores["baseline_accuracy"] == 60.0
    assert "macro_f1" in scores and "matthews_corrcoef" not in scores  # Matthews for two classes only
    assert task.baseline_note(scores) == "majority class 60.00"


# ------------------------------------------------------------------ every bad input: one line, exit 2
def _bad_case(tmp_path: Path, case: str) -> tuple[list, tuple[str, ...]]:
    """(command-line arguments after `train classify`, fragments of the error) for one bad input."""
    dev = write_csv(tmp_path / "dev.csv", ["review", "label"], [["fine food", "positive"], ["awful", "negative"]])
    rows = [["tasty soup", "positive"], ["cold fries", "negative"], ["kind staff", "positive"]]
    if case == "missing-file":
        return [tmp_path / "nope.csv", dev], ("file not found", "nope.csv")
    if case == "unknown-extension":
        (tmp_path / "train.xlsx").write_bytes(b"PK\x03\x04")
        return [tmp_path / "train.xlsx", dev], ("train.xlsx", "unknown file type '.xlsx'", ".csv", ".jsonl")
    if case == "label-column-absent":
        train = write_csv(tmp_path / "train.csv", ["review", "stars"], rows)
        return [train, dev], ("train.csv", "no label column 'label'", "columns: review, stars", "--label-column")
    if case == "text-column-absent":
        train = write_csv(tmp_path / "train.csv", ["review", "label"], rows)
        return [train, dev, "--text-columns", "body"], ("train.csv", "no text column 'body'",
                                                         "columns: review, label")
    if case == "empty-text":
        train = write_csv(tmp_path / "train.csv", ["review", "label"], [rows[0], ["  ", "negative"], rows[2]])
        return [train, dev], ("train.csv, row 3", "empty text in column 'review'")
    if case == "unseen-validation-label":
        dev = write_csv(tmp_path / "dev.csv", ["review", "label"], [["fine", "positive"], ["meh", "neutral"]])
        train = write_csv(tmp_path / "train.csv", ["review", "label"], rows)
        return [train, dev], ("dev.csv, row 3", "label 'neutral' never occurs in the training file",
                              "negative, positive")
    if case == "mixed-label-types":
        train = write_json(tmp_path / "train.json", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"},
                                                      {"text": "c", "label": 1}])
        return [train, dev], ("train.json", "mixes label types", "record 0", "'pos' (text)", "record 2",
                              "1 (an integer)")
    if case == "mixed-label-types-across-files":
        dev = write_csv(tmp_path / "dev.csv", ["review", "label"], [["fine", "1"], ["meh", "0"]])
        train = write_csv(tmp_path / "train.csv", ["review", "label"], rows)
        return [train, dev], ("dev.csv, row 2", "is an integer", "training labels are text")
    if case == "one-class":
        train = write_csv(tmp_path / "train.csv", ["review", "label"], [[r[0], "positive"] for r in rows])
        return [train, dev], ("train.csv", "column 'label' holds one class only ('positive')")
    if case == "not-utf8":
        train = tmp_path / "train.csv"
        train.write_bytes(b"review,label\ntasty soup,positive\ncaf\xe9 au lait,negative\n")
        return [train, dev], ("train.csv, line 3", "not UTF-8")
    if case == "empty-file":
        (tmp_path / "train.jsonl").write_bytes(b"")
        return [tmp_path / "train.jsonl", dev], ("train.jsonl is empty",)
    if case == "header-only":
        train = write_csv(tmp_path / "train.csv", ["review", "label"], [])
        return [train, dev], ("train.csv", "no rows")
    if case == "extra-field":
        train = tmp_path / "train.csv"
        train.write_text("review,label\ntasty soup,positive\ncold, soggy fries,negative\n", encoding="utf-8")
        return [train, dev], ("train.csv, line 3", "3 fields, but the header has 2")
    raise ValueError(case)


REQUIRED_CASES = ["missing-file", "unknown-extension", "label-column-absent", "text-column-absent", "empty-text",
                  "unseen-validation-label", "mixed-label-types", "one-class", "not-utf8", "empty-file"]
MORE_CASES = ["mixed-label-types-across-files", "header-only", "extra-field"]


@pytest.mark.parametrize("case", REQUIRED_CASES + MORE_CASES)
def test_bad_input_is_one_line(capsys, tmp_path, tiny_model, case):
    (train, dev, *extra), fragments = _bad_case(tmp_path, case)
    out = tmp_path / "run"
    code, stdout, err = run_cli(classify(train, dev, out, "--model", tiny_model, *extra), capsys)
    assert code == 2
    assert_clean_error(code, err, *fragments)
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_bad_input_leaves_an_existing_run_untouched(capsys, tmp_path, tiny_model, example_run):
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    before = hashes(run)
    (train, dev), _ = _bad_case(tmp_path, "unseen-validation-label")
    code, _, err = run_cli(classify(train, dev, run, "--model", tiny_model, "--overwrite"), capsys)
    assert_clean_error(code, err, "never occurs in the training file")
    assert hashes(run) == before


def test_validation_file_is_required(capsys, tmp_path):
    code, _, err = run_cli(["train", "classify", "--train-file", TRAIN, "--out", tmp_path / "run"], capsys)
    assert_clean_error(code, err, "validation file", "--validation-file")


# ------------------------------------------------------------------ a run through every feature
@pytest.fixture(scope="module")
def example_run(tmp_path_factory, tiny_model) -> Path:
    """The example files on the tiny model: salora, with a test file, checkpoints every 2 of 4 steps."""
    run = tmp_path_factory.mktemp("runs") / "reviews"
    run_cli_ok(classify(TRAIN, DEV, run, "--test-file", DEV, "--model", tiny_model, *TINY_RUN))
    return run


def test_run_folder_records_files_columns_and_labels(example_run):
    options = yaml.safe_load((example_run / "config.yaml").read_text())["task_options"]
    assert options == {"train_file": str(TRAIN), "validation_file": str(DEV), "test_file": str(DEV),
                       "text_columns": ["review"], "label_column": "label", "problem": "classification",
                       "labels": ["negative", "positive"]}
    metrics = json.loads((example_run / "metrics.json").read_text())
    assert metrics["task"] == "classify/file" and metrics["main_metric"] == "accuracy"
    assert set(metrics["final"]["metrics"]) == {"accuracy", "macro_f1", "matthews_corrcoef", "baseline_accuracy"}
    assert metrics["final"]["metrics"]["baseline_accuracy"] == 50.0
    assert metrics["test"]["split"] == "test" and "baseline_accuracy" in metrics["test"]["metrics"]
    assert metrics["data"]["splits"]["train"] == {"file": str(TRAIN), "rows": 48,
                                                  "label_counts": {"negative": 24, "positive": 24}}
    assert not (example_run / "generations.jsonl").exists()  # a classifier has no generations


@pytest.mark.parametrize("split", ["dev", "test"])
def test_eval_recomputes_the_recorded_metrics(capsys, tmp_path, example_run, split):
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    code, out, err = run_cli(["eval", run, "--split", split], capsys)
    assert code == 0, err
    recorded = json.loads((run / "metrics.json").read_text())
    want = (recorded["test"] if split == "test" else recorded["best"])["metrics"]
    got = json.loads((run / f"eval_{split}_best.json").read_text())["metrics"]
    assert got == pytest.approx(want, abs=1e-6)


def test_predict_prints_csv_in_input_order(capsys, example_run):
    code, out, err = run_cli(["predict", example_run, NEW], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["review"] for r in rows] == [r["review"] for r in csv.DictReader(NEW.open())]
    assert list(rows[0]) == ["review", "predicted_label", "prob_negative", "prob_positive"]
    for r in rows:
        assert r["predicted_label"] in ("negative", "positive")
        assert float(r["prob_negative"]) + float(r["prob_positive"]) == pytest.approx(1.0, abs=1e-5)
    assert "predicted 4 rows" in err


def test_predict_writes_the_format_of_out(capsys, tmp_path, example_run):
    out = tmp_path / "predictions.json"
    code, stdout, err = run_cli(["predict", example_run, DEV, "--out", out], capsys)
    assert code == 0, err
    records = json.loads(out.read_text())
    assert len(records) == 16 and records[0]["label"] == "positive"  # the input's columns are kept
    assert set(records[0]) == {"review", "label", "predicted_label", "prob_negative", "prob_positive"}
    code, _, err = run_cli(["predict", example_run, DEV, "--out", out], capsys)
    assert_clean_error(code, err, "already exists", "--overwrite")


@pytest.mark.parametrize("case", ["text-column-absent", "unknown-out-extension", "out-is-input", "not-own-data"])
def test_predict_bad_input(capsys, tmp_path, example_run, case):
    args, fragments = {
        "text-column-absent": ([write_csv(tmp_path / "new.csv", ["body"], [["hi"]])],
                               ("new.csv", "no text column 'review'", "columns: body")),
        "unknown-out-extension": ([NEW, "--out", tmp_path / "p.xlsx"], ("p.xlsx", "unknown output type")),
        "out-is-input": ([tmp_path / "in.csv", "--out", tmp_path / "in.csv", "--overwrite"], ("is the input file",)),
        "not-own-data": (None, ("predict needs a run trained with `salora train classify`", "glue/sst2")),
    }[case]
    run = example_run
    if case == "out-is-input":
        shutil.copyfile(NEW, tmp_path / "in.csv")
    if case == "not-own-data":
        run = tmp_path / "glue_run"
        shutil.copytree(example_run, run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "task": "glue/sst2", "task_options": {}}))
        args = [NEW]
    before = hashes(example_run)
    code, _, err = run_cli(["predict", run, *args], capsys)
    assert_clean_error(code, err, *fragments)
    assert hashes(example_run) == before


def test_export_and_rank_report(capsys, tmp_path, example_run):
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    code, _, err = run_cli(["export", run, tmp_path / "peft"], capsys)
    assert code == 0, err
    assert (tmp_path / "peft" / "adapter_config.json").is_file()
    code, _, err = run_cli(["report", "ranks", run], capsys)
    assert code == 0, err
    assert (run / "ranks.md").is_file()


def test_resume_continues_from_the_checkpoint(capsys, tmp_path, tiny_model, example_run):
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    (run / "metrics.json").unlink()  # as if stopped after the checkpoint at step 2
    args = classify(TRAIN, DEV, run, "--test-file", DEV, "--model", tiny_model, *TINY_RUN, "--resume")
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "resumed from" in out and "at step 2" in out
    again, whole = (json.loads(p.read_text()) for p in (run / "metrics.json", example_run / "metrics.json"))
    assert again["final"] == whole["final"] and again["best"] == whole["best"]


def test_resume_refuses_a_changed_training_file(capsys, tmp_path, tiny_model, example_run):
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    (run / "metrics.json").unlink()
    train = tmp_path / TRAIN.name
    train.write_text(TRAIN.read_text().replace(",negative", ",bad").replace(",positive", ",good"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["task_options"]["train_file"] = str(train)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = hashes(run)
    code, _, err = run_cli(classify(train, DEV, run, "--test-file", DEV, "--model", tiny_model, *TINY_RUN,
                                    "--resume"), capsys)
    assert_clean_error(code, err, "config differs", "task_options.labels")
    assert hashes(run) == before


@pytest.mark.parametrize("method", ["lora", "adalora", "full", "bitfit"])
def test_every_method(capsys, tmp_path, tiny_model, method):
    out = tmp_path / method
    code, stdout, err = run_cli(classify(TRAIN, DEV, out, "--model", tiny_model, "--method", method,
                                         "--max-steps", "2", "--batch-size", "8", "--max-length", "32",
                                         "--rank", "4", "--budget", "2"), capsys)
    assert code == 0, err
    assert "majority class 50.00" in stdout
    assert json.loads((out / "metrics.json").read_text())["method"] == method


def test_regression_from_json_lines(capsys, tmp_path, tiny_model):
    records = [{"sentence1": f"a cat sat on mat {i}", "sentence2": f"a dog on a rug {i % 3}", "score": i / 4}
               for i in range(12)]
    data = write_json(tmp_path / "pairs.jsonl", records)
    out = tmp_path / "run"
    code, stdout, err = run_cli(classify(data, data, out, "--label-column", "score", "--model", tiny_model,
                                         "--max-steps", "2", "--batch-size", "4", "--max-length", "32"), capsys)
    assert code == 0, err
    assert "'sentence1' + 'sentence2' (GLUE-like names" in stdout and "regression target" in stdout
    final = json.loads((out / "metrics.json").read_text())["final"]["metrics"]
    assert set(final) == {"pearson", "spearman", "rmse", "baseline_rmse"}
    code, predicted, err = run_cli(["predict", out, data], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(predicted)))
    assert len(rows) == 12 and all(float(r["predicted_score"]) == float(r["predicted_score"]) for r in rows)


def test_tracker_files(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(classify(TRAIN, DEV, out, "--model", tiny_model, "--max-steps", "2", "--batch-size",
                                    "8", "--max-length", "32", "--report-to", "tensorboard"), capsys)
    assert code == 0, err
    assert list((out / "tracking").rglob("events.out.tfevents.*"))


def test_two_processes(tmp_path, tiny_model):
    """torchrun, two processes on this CPU (gloo): both settle the same options, predictions are gathered."""
    out = tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "salora_cli"]
    done = subprocess.run([*torchrun, *map(str, classify(TRAIN, DEV, out, "--model", tiny_model, *TINY_RUN))],
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == {"count": 2, "structure_agrees": True}
    assert metrics["eval_examples"] == 16


# ------------------------------------------------------------------ real text, the offline encoder
def test_example_files_learn_with_the_readme_command(capsys, tmp_path):
    """The README's command on examples/ (MiniLM-L6): seconds, and well above the majority class."""
    out = tmp_path / "reviews"
    code, stdout, err = run_cli(classify(TRAIN, DEV, out, "--epochs", "10", "--batch-size", "8"), capsys)
    assert code == 0, err
    assert "data: text 'review' (the first text column" in stdout
    best = json.loads((out / "metrics.json").read_text())["best"]["metrics"]
    assert best["accuracy"] >= best["baseline_accuracy"] + 25


@pytest.mark.skipif(not (SHARED_DATA / "yelp").is_dir(), reason=f"no Yelp data under {SHARED_DATA}")
def test_real_yelp_sentences_learn_well_above_the_majority_class(capsys, tmp_path):
    """Yelp sentiment dev sentences (not a GLUE file) written to a CSV with a label column of our naming:
    400 to train, 200 to validate, one epoch of salora on MiniLM-L6."""
    yelp = SHARED_DATA / "yelp"
    neg, pos = ((yelp / f"sentiment.dev.{i}").read_text(encoding="utf-8").splitlines() for i in (0, 1))

    def sentences(lo: int, hi: int) -> list[list[str]]:
        return [row for n, p in zip(neg[lo:hi], pos[lo:hi]) for row in ([n, "negative"], [p, "positive"])]

    train = write_csv(tmp_path / "yelp_train.csv", ["text", "sentiment"], sentences(0, 200))
    dev = write_csv(tmp_path / "yelp_dev.csv", ["text", "sentiment"], sentences(200, 300))
    out = tmp_path / "run"
    code, stdout, err = run_cli(classify(train, dev, out, "--label-column", "sentiment", "--epochs", "1",
                                         "--batch-size", "16", "--max-length", "32", "--lr", "3e-3"), capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best"]["metrics"]
    assert metrics["train_examples"] == 400 and metrics["eval_examples"] == 200 and metrics["steps"] == 25
    assert best["baseline_accuracy"] == 50.0
    assert best["accuracy"] >= 75.0, best
