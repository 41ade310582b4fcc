"""Style transfer through the runner: train, test-set scoring with the runner's own classifier
and fluency LM, generations saved, reports, reload."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES
from tasks.style.style_metrics import corpus_bleu
from test_style_generation import make_model, make_tokenizer


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


QUICK = ["--max-steps", "3", "--batch-size", "4", "--max-length", "48", "--max-eval-samples", "4",
         "--set", "train.eval_batch_size=8", "--set", "task_options.max_new_tokens=6"]
# The tiny pool (18 sentences) needs a lower marker threshold than the real one for markers to exist.
TINY_MARKERS = ["--set", "task_options.marker_threshold=2", "--set", "task_options.marker_smoothing=1"]


def test_yelp_salora_with_scorers(tmp_path, capsys, monkeypatch, tiny_llama):
    monkeypatch.setenv("SALORA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "yelp"
    code, stdout, err = run_cli(["train", "style", "--task", "yelp", "--model", tiny_llama,
                                 "--data-dir", FIXTURES / "yelp_tiny", "--out", out, "--rank", "4",
                                 "--budget", "2", *QUICK, *TINY_MARKERS], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["split"] == "test" and test["examples"] == 4  # yelp_tiny: 2 + 2 test sentences
    assert {"bleu", "self_bleu", "accuracy", "perplexity", "perplexity_sources", "g_score"} <= set(test["metrics"])
    assert 0 <= test["classifier_heldout_accuracy"] <= 100
    # Costs apart: training, generating the test rewrites, scoring them, loading the scorers.
    # times are recorded, whatever they are (no test asserts a duration: rounding can give 0)
    assert metrics["train_time_s"] >= 0
    assert {"generate_time_s", "score_time_s", "scorer_setup_s"} <= set(test)
    assert test["score_time_s"] >= 0 and test["scorer_setup_s"] >= 0
    # Checkpoints are chosen by dev transfer with the word-count classifier; the evaluation classifier
    # ("accuracy") never appears before the test, and dev (no human rewrites) has no BLEU.
    assert metrics["main_metric"] == "selection_score"
    for record in metrics["evals"]:
        assert {"selection_score", "selection_accuracy", "self_bleu"} <= set(record["metrics"])
        assert not {"accuracy", "bleu", "g_score"} & set(record["metrics"])
    # The recipe's options are recorded in the run config (from configs/style/yelp.yaml).
    options = yaml.safe_load((out / "config.yaml").read_text())["task_options"]
    assert options["content_slots"] and options["retrieve_markers"] and options["block_source_markers"]
    assert options["train_balance"] and options["train_drop_fallback"] and options["dev_selection"] == "transfer"
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"source", "target_style", "generation", "references", "words"} <= set(rows[0])
    assert all("___" in r["content"] and "___" not in r["generation"].split() for r in rows)
    # the classifier is a cached run of its own, reused by the next style run
    cached = list((tmp_path / "cache" / "style_classifiers").iterdir())
    assert len(cached) == 1 and (cached[0] / "metrics.json").exists()
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["n_matrices"] == 2 * 7  # Llama: q, k, v, o, gate, up, down per block
    code, _, err = run_cli(["report", "metrics", out, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    table = (tmp_path / "rep" / "metrics.md").read_text()
    assert "style/yelp" in table and rows[0]["generation"] in table  # sample rewrites shown
    # `salora eval` of the test split attaches the same scorers: the recorded test metrics, recomputed
    code, _, err = run_cli(["eval", out, "--split", "test"], capsys)
    assert code == 0, err
    again = json.loads((out / "eval_test_best.json").read_text())["metrics"]
    for name in ("bleu", "self_bleu", "accuracy", "perplexity", "g_score"):
        assert again[name] == pytest.approx(test["metrics"][name]), name


@pytest.mark.parametrize("domain,direction,target", [
    ("Family_Relationships", "informal-to-formal", "formal"),
    ("Family_Relationships", "formal-to-informal", "informal"),
    ("Entertainment_Music", "informal-to-formal", "formal"),
    ("Entertainment_Music", "formal-to-informal", "informal"),
])
def test_gyafc_train_then_eval(tmp_path, capsys, tiny_llama, domain, direction, target):
    """GYAFC_Corpus layout (hand-written fixture, not GYAFC data): train, test BLEU against the four
    references of each source, then `salora eval` of the test split recomputes it."""
    out = tmp_path / "gyafc"
    code, stdout, err = run_cli(["train", "style", "--task", "gyafc", "--model", tiny_llama,
                                 "--data-dir", FIXTURES / "gyafc", "--out", out, "--method", "lora",
                                 "--rank", "2", "--set", "style_scoring=false", "--set",
                                 f"task_options.domain={domain}", "--direction", direction, *QUICK], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert rows and {r["target_style"] for r in rows} == {target}
    assert all(len(r["references"]) == 4 for r in rows)  # four human references per source
    test_dir = FIXTURES / "gyafc" / "GYAFC_Corpus" / domain / "test"
    assert [r["source"] for r in rows] == (test_dir / ("formal" if target == "informal" else "informal")
                                           ).read_text().splitlines()
    bleu = corpus_bleu([r["generation"] for r in rows], [r["references"] for r in rows])
    assert metrics["test"]["metrics"]["bleu"] == pytest.approx(bleu)
    assert "accuracy" not in metrics["test"]["metrics"]  # scoring switched off
    code, _, err = run_cli(["eval", out, "--checkpoint", "final", "--split", "test"], capsys)
    assert code == 0, err
    again = json.loads((out / "eval_test_final.json").read_text())["metrics"]
    assert again["bleu"] == pytest.approx(bleu)


def test_test_split_scored_with_the_best_dev_checkpoint(tmp_path, capsys, tiny_llama):
    """Dev picks the checkpoint, the test split scores it: with an evaluation after every step, the
    test entry names the best dev step, and `salora eval` of the best checkpoint gives the same BLEU."""
    out = tmp_path / "gyafc"
    code, stdout, err = run_cli(["train", "style", "--task", "gyafc", "--model", tiny_llama,
                                 "--data-dir", FIXTURES / "gyafc", "--out", out, "--method", "lora",
                                 "--rank", "2", "--set", "style_scoring=false", *QUICK, "--eval-every", "1",
                                 "--lr", "0.05"], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["evals"]) == 3
    test = metrics["test"]
    assert test["checkpoint"] == "best" and test["checkpoint_step"] == metrics["best"]["step"]
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert test["metrics"]["bleu"] == pytest.approx(
        corpus_bleu([r["generation"] for r in rows], [r["references"] for r in rows]))
    code, _, err = run_cli(["eval", out, "--split", "test"], capsys)
    assert code == 0, err
    assert json.loads((out / "eval_test_best.json").read_text())["metrics"]["bleu"] == \
        pytest.approx(test["metrics"]["bleu"])


def _broken_gyafc(tmp_path, damage: str):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "gyafc", root)
    domain = root / "GYAFC_Corpus" / "Family_Relationships"
    if damage == "no-domain":
        shutil.rmtree(domain)
        shutil.rmtree(root / "GYAFC_Corpus" / "Entertainment_Music")
    elif damage == "no-tune":
        shutil.rmtree(domain / "tune")
    elif damage == "no-train-file":
        (domain / "train" / "formal").unlink()
    elif damage == "no-references":
        for ref in (domain / "test").glob("formal.ref*"):
            ref.unlink()
    elif damage == "misaligned":
        (domain / "train" / "formal").write_text("One line.\n")
    return root


@pytest.mark.parametrize("damage", ["no-domain", "no-tune", "no-train-file", "no-references", "misaligned"])
def test_gyafc_malformed_folder_names_the_layout(tmp_path, capsys, tiny_llama, damage):
    code, _, err = run_cli(["train", "style", "--task", "gyafc", "--model", tiny_llama, "--data-dir",
                            _broken_gyafc(tmp_path, damage), "--out", tmp_path / "run", "--max-steps", "1"], capsys)
    assert_clean_error(code, err, "expected layout: GYAFC_Corpus/<Entertainment_Music|Family_Relationships>/train/")
    assert len([ln for ln in err.strip().splitlines() if ln.strip()]) == 1
