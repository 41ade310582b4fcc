"""Bad input through the CLI: one clear `error:` line, a non-zero exit, no traceback, nothing lost.

Most cases fail before training starts (config, task, method, rank, data, model). A few need real run
folders; two tiny runs (a salora run and a full fine-tuning run, 2 steps on 16 SST-2 examples) are
trained once per module and copied before anything is damaged.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import assert_clean_error, run_cli, run_cli_ok
from conftest import FIXTURES

BAD = FIXTURES / "bad_input"
GLUE_BAD = FIXTURES / "glue_bad"
TINY = ["--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--max-train-samples", "16",
        "--max-eval-samples", "16", "--set", "train.eval_batch_size=16", "--set", "train.log_every=1"]
# salora that reaches its final structure within the 2 steps, so best/ exists
SALORA_FLAGS = ["--method", "salora", "--rank", "4", "--budget", "2", "--set", "adapter.prune_every=1",
                "--set", "adapter.ramp_start=0", "--set", "adapter.ramp_end=0.5", "--set", "adapter.freeze_at=0.5"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # a failing command must never write into the repository (default run folders are relative)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def glue(shared_data) -> Path:
    return shared_data / "glue"


def _fail(capsys, args, *fragments: str) -> str:
    code, out, err = run_cli(args, capsys)
    assert_clean_error(code, err, *fragments)
    assert "Traceback" not in out
    return err


def _train(task: str, data, out: Path, *extra) -> list:
    return ["train", "glue", "--task", task, "--data-dir", data, "--out", out, *TINY, *extra]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. task, method, model
@pytest.mark.parametrize("args,fragments", [
    (["--task", "sst3"], ("unknown glue task 'sst3'", "sst2")),
    (["--task", "sst2", "--method", "dora"], ("unknown method 'dora'", "salora")),
], ids=["unknown-task", "unknown-method"])
def test_unknown_task_or_method(capsys, tmp_path, glue, args, fragments):
    out = tmp_path / "run"
    _fail(capsys, ["train", "glue", *args, "--data-dir", glue, "--out", out], *fragments)
    assert not out.exists()  # rejected before the run folder is made


@pytest.mark.parametrize("model,fragments", [
    ("./no/such/model", ("./no/such/model", "does not exist")),
    (str(BAD / "model_no_weights"), ("model_no_weights", "no weights")),
], ids=["missing-path", "config-without-weights"])
def test_unknown_model(capsys, tmp_path, glue, model, fragments):
    _fail(capsys, _train("sst2", glue, tmp_path / "run", "--model", model), *fragments)


# ------------------------------------------------------------------ 2. config files and --set
@pytest.mark.parametrize("extra,fragments", [
    (["--config", BAD / "unknown_key.yaml"], ("unknown config key 'lrr'", "train")),
    (["--set", "train.lrr=1"], ("unknown config key 'lrr'", "train")),
    (["--set", "adapter.rnk=4"], ("unknown config key 'rnk'", "adapter")),
    (["--set", "train.lr=abc"], ("train.lr", "abc")),
    (["--set", "train"], ("--set expects KEY=VALUE", "train")),
    (["--config", BAD / "float_batch_size.yaml"], ("train.batch_size", "int", "2.5")),
    (["--config", BAD / "malformed.yaml"], ("malformed.yaml", "not valid YAML", "line")),
    (["--config", BAD / "list.yaml"], ("list.yaml", "mapping", "list")),
    (["--config", "no/such/config.yaml"], ("config file not found", "no/such/config.yaml")),
], ids=["yaml-unknown-key", "set-unknown-key", "set-unknown-adapter-key", "set-mistyped-value",
        "set-without-value", "yaml-float-batch-size", "yaml-malformed", "yaml-list", "config-missing"])
def test_bad_config(capsys, tmp_path, glue, extra, fragments):
    out = tmp_path / "run"
    # no --batch-size here: the named flag would win over the YAML value under test
    _fail(capsys, ["train", "glue", "--task", "sst2", "--data-dir", glue, "--out", out, "--max-steps", "2",
                   "--max-train-samples", "16", "--max-eval-samples", "16", *extra], *fragments)
    assert not out.exists()


# ------------------------------------------------------------------ 3. ranks, budget, lr
@pytest.mark.parametrize("extra,fragments", [
    (["--rank", "0"], ("rank (r_init) must be a positive integer", "0")),
    (["--rank", "-2"], ("rank (r_init) must be a positive integer", "-2")),
    (["--rank", "4", "--budget", "6"], ("budget", "r_init=4", "6")),
    (["--budget", "0"], ("budget", "got 0")),
    (["--lr", "0"], ("train.lr must be positive", "0")),
    (["--lr", "-1e-3"], ("train.lr must be positive", "-0.001")),
    (["--set", "train.lr=nan"], ("train.lr", "nan")),
    (["--set", "train.lr=inf"], ("train.lr", "inf")),
], ids=["rank-0", "rank-negative", "budget-above-r_init", "budget-0", "lr-0", "lr-negative",
        "lr-nan", "lr-inf"])
def test_bad_numbers(capsys, tmp_path, glue, extra, fragments):
    out = tmp_path / "run"
    _fail(capsys, _train("sst2", glue, out, *extra), *fragments)
    assert not out.exists()


def test_flag_of_wrong_type(capsys, tmp_path, glue):
    _fail(capsys, _train("sst2", glue, tmp_path / "run", "--rank", "2.5"), "--rank", "integer")


# ------------------------------------------------------------------ 4. data
def _data(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A GLUE root in tmp_path assembled from fixture files: {"RTE/dev.tsv": source, ...}."""
    root = tmp_path / "data"
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


VALID = BAD / "valid_train"
BAD_DATA = {
    # id: (task, {file in the data root: source}, fragments of the error)
    "missing-dev": ("sst2", {"SST-2/train.tsv": VALID / "SST-2/train.tsv"}, ("missing file", "dev.tsv")),
    "missing-dev-mismatched": ("mnli", None, ("missing file", "dev_mismatched.tsv")),
    "missing-column": ("sst2", {"SST-2/train.tsv": VALID / "SST-2/train.tsv",
                                "SST-2/dev.tsv": GLUE_BAD / "missing_column/SST-2/dev.tsv"},
                       ("required column 'label' missing", "labl")),
    "label-outside-rte": ("rte", {"RTE/train.tsv": VALID / "RTE/train.tsv",
                                  "RTE/dev.tsv": GLUE_BAD / "bad_label/RTE/dev.tsv"},
                          ("line 3", "label 'entailed'", "not_entailment")),
    "label-outside-cola": ("cola", {"CoLA/train.tsv": FIXTURES / "glue/CoLA/train.tsv",
                                    "CoLA/dev.tsv": GLUE_BAD / "bad_label/CoLA/dev.tsv"},
                           ("line 3", "label '2'")),
    "label-outside-mnli": ("mnli", {"MNLI/train.tsv": FIXTURES / "glue/MNLI/train.tsv",
                                    "MNLI/dev_matched.tsv": GLUE_BAD / "bad_label/MNLI/dev_matched.tsv",
                                    "MNLI/dev_mismatched.tsv": FIXTURES / "glue/MNLI/dev_mismatched.tsv"},
                           ("dev_matched.tsv", "label '-'", "contradiction")),
    "bad-score": ("stsb", None, ("train.tsv", "line 3", "'n/a' is not a number")),
    "field-count": ("mrpc", {"MRPC/train.tsv": VALID / "MRPC/train.tsv",
                             "MRPC/dev.tsv": GLUE_BAD / "field_count/MRPC/dev.tsv"},
                    ("dev.tsv, line 4", "expected 5", "found 4")),
    "empty-train-file": ("qqp", None, ("train.tsv", "is empty")),
    "empty-dev-split": ("qqp", {"QQP/train.tsv": FIXTURES / "glue/QQP/train.tsv",
                                "QQP/dev.tsv": GLUE_BAD / "empty_split/QQP/dev.tsv"},
                        ("dev.tsv", "no examples (empty split)")),
}
FIXTURE_ROOTS = {"missing-dev-mismatched": GLUE_BAD / "missing_file", "bad-score": GLUE_BAD / "bad_score",
                 "empty-train-file": GLUE_BAD / "empty_split"}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data(capsys, tmp_path, case):
    task, files, fragments = BAD_DATA[case]
    root = FIXTURE_ROOTS[case] if files is None else _data(tmp_path, files)
    _fail(capsys, _train(task, root, tmp_path / "run"), *fragments)


def test_missing_data_dir(capsys, tmp_path):
    missing = tmp_path / "no_such_glue"
    _fail(capsys, _train("sst2", missing, tmp_path / "run"), "does not exist", str(missing))


# ------------------------------------------------------------------ 5. task / data mismatch
@pytest.mark.parametrize("task,root,fragments", [
    ("rte", BAD / "sst2_only", ("RTE", "not found", "RTE/train.tsv")),
    ("mrpc", BAD / "sst2_as_mrpc", ("MRPC/train.tsv", "required column '#1 String' missing", "sentence")),
    ("mrpc", BAD / "sst2_only/SST-2", ("SST-2/MRPC", "not found")),
], ids=["rte-on-sst2-folder", "sst2-files-as-mrpc", "task-folder-as-root"])
def test_task_data_mismatch(capsys, tmp_path, task, root, fragments):
    _fail(capsys, _train(task, root, tmp_path / "run"), *fragments)


# ------------------------------------------------------------------ 8. GYAFC is licensed
@pytest.mark.parametrize("given", [True, False], ids=["empty-data-dir", "no-data-dir"])
def test_gyafc_missing(capsys, tmp_path, monkeypatch, given):
    monkeypatch.delenv("SALORA_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    data = ["--data-dir", empty] if given else []
    _fail(capsys, ["train", "style", "--task", "gyafc", *data, "--out", tmp_path / "run", "--max-steps", "1"],
          "GYAFC", "licensed", "--data-dir")


# ------------------------------------------------------------------ finished runs (6, 7)
@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data) -> dict[str, Path]:
    """Two finished tiny runs on SST-2: salora (adapters, ranks.json) and full fine-tuning."""
    root = tmp_path_factory.mktemp("runs")
    glue = shared_data / "glue"
    out = {}
    for method, extra in (("salora", SALORA_FLAGS), ("full", ["--method", "full"])):
        run = root / method
        run_cli_ok(_train("sst2", glue, run, *extra))
        out[method] = run
    assert (out["salora"] / "best" / "adapter_model.safetensors").exists()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / run.name
    shutil.copytree(run, dst)
    return dst


def test_eval_corrupted_adapter(capsys, tmp_path, runs):
    run = _copy(runs["salora"], tmp_path)
    weights = run / "best" / "adapter_model.safetensors"
    weights.write_bytes(b"\x00garbage, not safetensors" * 40)
    before = _hashes(run)
    _fail(capsys, ["eval", run], "adapter_model.safetensors", "corrupted")
    assert _hashes(run) == before


def _damage_json(meta: dict, how: str) -> None:
    first = next(iter(meta["modules"]))
    if how == "rank-text":
        meta["modules"][first]["rank"] = "x"
    elif how == "rank-negative":
        meta["modules"][first]["rank"] = -1
    elif how == "rank-missing":
        del meta["modules"][first]["rank"]
    elif how == "modules-list":
        meta["modules"] = list(meta["modules"])


@pytest.mark.parametrize("how,fragments", [
    ("truncated", ("corrupted", "line 1")),
    ("rank-text", ("corrupted", "rank 'x'")),
    ("rank-negative", ("corrupted", "rank -1")),
    ("rank-missing", ("corrupted", "rank None")),
    ("modules-list", ("corrupted", "modules")),
])
def test_eval_corrupted_adapter_config(capsys, tmp_path, runs, how, fragments):
    run = _copy(runs["salora"], tmp_path)
    path = run / "best" / "salora_adapter.json"
    if how == "truncated":
        path.write_text('{"format": "salora-adapter/1", "adapter": {')
    else:
        meta = json.loads(path.read_text())
        _damage_json(meta, how)
        path.write_text(json.dumps(meta))
    before = _hashes(run)
    _fail(capsys, ["eval", run], "salora_adapter.json", *fragments)
    assert _hashes(run) == before


@pytest.mark.parametrize("text,fragments", [
    ("task: glue/sst2\nadapter: {r_init: [4\n", ("config.yaml", "not valid YAML")),
    ("- task\n- glue/sst2\n", ("config.yaml", "mapping")),
    ("task: glue/sst2\ntrain:\n  lrr: 0.1\n", ("config.yaml", "unknown config key 'lrr'")),
    ("", ("config.yaml", "empty")),
], ids=["invalid-yaml", "list", "unknown-key", "empty"])
def test_eval_corrupted_run_config(capsys, tmp_path, runs, text, fragments):
    run = _copy(runs["salora"], tmp_path)
    (run / "config.yaml").write_text(text)
    before = _hashes(run)
    _fail(capsys, ["eval", run], *fragments)
    assert _hashes(run) == before


def test_eval_not_a_run(capsys, tmp_path):
    folder = tmp_path / "just_a_folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    _fail(capsys, ["eval", folder], "not a run folder", "just_a_folder")
    _fail(capsys, ["eval", tmp_path / "missing"], "run folder", "missing", "does not exist")


def test_report_ranks_without_ranks_json(capsys, runs):
    before = _hashes(runs["full"])
    _fail(capsys, ["report", "ranks", runs["full"]], "ranks.json", str(runs["full"]))
    assert _hashes(runs["full"]) == before


def test_export_full_fine_tuning_run(capsys, tmp_path, runs):
    _fail(capsys, ["export", runs["full"], tmp_path / "peft"], "export needs a salora or lora run", "full")
    assert not (tmp_path / "peft").exists()


# ------------------------------------------------------------------ 7. no run folder is overwritten
def test_existing_run_not_overwritten(capsys, tmp_path, runs, glue):
    run = _copy(runs["salora"], tmp_path)
    before = _hashes(run)
    _fail(capsys, _train("sst2", glue, run, *SALORA_FLAGS), str(run), "already exists", "--resume", "--overwrite")
    assert _hashes(run) == before


def test_resume_unfinished_run_with_other_config(capsys, tmp_path, runs, glue):
    run = _copy(runs["salora"], tmp_path)
    (run / "metrics.json").unlink()  # as if interrupted
    before = _hashes(run)
    _fail(capsys, _train("sst2", glue, run, *SALORA_FLAGS, "--resume", "--lr", "0.123"), "config differs", str(run))
    assert _hashes(run) == before


def test_resume_finished_run_with_other_config(capsys, tmp_path, runs, glue):
    run = _copy(runs["salora"], tmp_path)
    before = _hashes(run)
    try:
        _fail(capsys, _train("sst2", glue, run, *SALORA_FLAGS, "--resume", "--lr", "0.123"), "config differs")
    finally:
        assert _hashes(run) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path, glue):
    folder = tmp_path / "my_thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    _fail(capsys, _train("sst2", glue, folder, "--overwrite"), "my_thesis", "not a run folder")
    assert (folder / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_is_a_file(capsys, tmp_path, glue, where):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    out = f if where == "file" else f / "run"
    _fail(capsys, _train("sst2", glue, out), "results.txt")
    assert f.read_text() == "keep me"
