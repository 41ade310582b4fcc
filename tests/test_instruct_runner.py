"""`salora train instruct` end to end on a tiny Llama and the fixture file: every method through the
same loop, the run record (dev loss, data counts), reload, and one-line errors for bad input."""
from __future__ import annotations

import json

import pytest

from cli_helpers import assert_clean_error, run_cli
from tiny_instruct import FIXTURE, save_tiny_llama, one_thread  # noqa: F401 (autouse fixture)

QUICK = ["--max-steps", "4", "--batch-size", "4", "--max-length", "96", "--dev-size", "4", "--eval-every", "2",
         "--set", "train.eval_batch_size=4", "--rank", "4", "--budget", "2"]
RUN_FILES = {"config.yaml", "command.txt", "env.json", "log.jsonl", "metrics.json", "adapter", "best"}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def train(tmp_path, capsys, model, method: str, *extra) -> tuple[int, str, str]:
    return run_cli(["train", "instruct", "--data", FIXTURE, "--model", model, "--method", method,
                    "--out", tmp_path / method, *QUICK, *extra], capsys)


@pytest.mark.parametrize("method", ["salora", "lora"])
def test_train_instruct_records_dev_loss(tmp_path, capsys, tiny_llama, method):
    code, out, err = train(tmp_path, capsys, tiny_llama, method)
    assert code == 0, err + out
    run = tmp_path / method
    assert RUN_FILES | {"ranks.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["main_metric"] == "neg_loss"
    for record in metrics["evals"]:
        m = record["metrics"]
        assert m["neg_loss"] == -m["loss"] and m["perplexity"] > 1
    best = metrics["best"]["metrics"]
    assert best["neg_loss"] == max(e["metrics"]["neg_loss"] for e in metrics["evals"] if e["at_budget"])
    data = metrics["data"]  # the fixture: 22 records, one empty output, two placeholder inputs
    assert data["source"] == str(FIXTURE) and data["records_read"] == 22 and data["skipped_empty_output"] == 1
    assert data["placeholder_inputs"] == 2 and data["dev_size"] == 4
    assert data["after_cutoff"]["train"]["examples"] == metrics["train_examples"] == 17
    assert data["after_cutoff"]["dev"] == {"examples": 4, "dropped_long_prompt": 0, "truncated_response": 0}
    # the recorded dev loss is what `salora eval` recomputes from the run folder
    code, _, err = run_cli(["eval", run], capsys)
    assert code == 0, err
    again = json.loads((run / "eval_dev_best.json").read_text())["metrics"]
    assert again["loss"] == pytest.approx(best["loss"], rel=1e-5)


def test_adalora_and_full_on_a_causal_lm(tmp_path, capsys, tiny_llama):
    for method in ("adalora", "full"):
        code, out, err = train(tmp_path, capsys, tiny_llama, method, "--max-steps", "5")
        assert code == 0, err + out
        assert "neg_loss" in json.loads((tmp_path / method / "metrics.json").read_text())["final"]["metrics"]


def test_bitfit_on_llama_is_a_clean_error(tmp_path, capsys, tiny_llama):
    code, _, err = train(tmp_path, capsys, tiny_llama, "bitfit")
    assert_clean_error(code, err, "bitfit", "no bias terms")
    assert code == 2 and not (tmp_path / "bitfit").exists()


def test_bad_data_is_one_line_naming_file_and_line(tmp_path, capsys, tiny_llama):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    code, _, err = run_cli(["train", "instruct", "--data", bad, "--model", tiny_llama, "--out", tmp_path / "r",
                            *QUICK], capsys)
    assert_clean_error(code, err, str(bad), "line 2", "not valid JSON")
    assert code == 2 and not (tmp_path / "r").exists()
    code, _, err = run_cli(["train", "instruct", "--data", FIXTURE, "--data-dir", tmp_path, "--model", tiny_llama],
                           capsys)
    assert_clean_error(code, err, "not both")
