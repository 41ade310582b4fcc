"""Style transfer through the runner: train, test-set scoring with the runner's own classifier
and fluency LM, generations saved, reports, reload."""
from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from conftest import FIXTURES
from test_style_generation import make_model, make_tokenizer


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


QUICK = ["--max-steps", "3", "--batch-size", "4", "--max-length", "48", "--max-eval-samples", "4",
         "--set", "train.eval_batch_size=8", "--set", "task_options.max_new_tokens=6"]


def test_yelp_salora_with_scorers(tmp_path, capsys, monkeypatch, tiny_llama):
    monkeypatch.setenv("SALORA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "yelp"
    code, stdout, err = run_cli(["train", "style", "--task", "yelp", "--model", tiny_llama,
                                 "--data-dir", FIXTURES / "yelp_tiny", "--out", out, "--rank", "4",
                                 "--budget", "2", *QUICK], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["split"] == "test" and test["examples"] == 4  # yelp_tiny: 2 + 2 test sentences
    assert {"bleu", "self_bleu", "accuracy", "perplexity", "perplexity_sources", "g_score"} <= set(test["metrics"])
    assert 0 <= test["classifier_heldout_accuracy"] <= 100
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"source", "target_style", "generation", "references"} <= set(rows[0])
    # the classifier is a cached run of its own, reused by the next style run
    cached = list((tmp_path / "cache" / "style_classifiers").iterdir())
    assert len(cached) == 1 and (cached[0] / "metrics.json").exists()
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["n_matrices"] == 2 * 7  # Llama: q, k, v, o, gate, up, down per block
    code, _, err = run_cli(["report", "metrics", out, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    table = (tmp_path / "rep" / "metrics.md").read_text()
    assert "style/yelp" in table and rows[0]["generation"] in table  # sample rewrites shown


def test_gyafc_one_direction_lora(tmp_path, capsys, tiny_llama):
    out = tmp_path / "gyafc"
    code, stdout, err = run_cli(["train", "style", "--task", "gyafc", "--model", tiny_llama,
                                 "--data-dir", FIXTURES / "gyafc", "--out", out, "--method", "lora",
                                 "--rank", "2", "--set", "style_scoring=false",
                                 "--direction", "informal-to-formal", *QUICK], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert {r["target_style"] for r in rows} == {"formal"}
    assert all(len(r["references"]) == 4 for r in rows)  # four human references per source
    assert "accuracy" not in metrics["test"]["metrics"]  # scoring switched off
    code, _, err = run_cli(["eval", out, "--checkpoint", "final"], capsys)
    assert code == 0, err
