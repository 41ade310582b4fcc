"""End to end through the CLI: train a few steps on real slices and fixtures, eval, report, export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_helpers import QUICK, run_cli
from conftest import FIXTURES


def _train(capsys, tmp_path: Path, task: str, method: str, data: Path, *extra: str) -> Path:
    out = tmp_path / f"{task}_{method}"
    code, stdout, err = run_cli(["train", "glue", "--task", task, "--method", method, "--data-dir", data,
                                 "--out", out, "--max-train-samples", "32", *QUICK, *extra], capsys)
    assert code == 0, err + stdout
    return out


def test_salora_sst2_end_to_end(tmp_path, capsys, shared_data):
    run = _train(capsys, tmp_path, "sst2", "salora", shared_data / "glue",
                 "--set", "adapter.prune_every=1", "--set", "adapter.ramp_start=0", "--rank", "4",
                 "--budget", "2", "--eval-every", "2")
    for name in ("config.yaml", "command.txt", "env.json", "log.jsonl", "metrics.json", "ranks.json",
                 "adapter/adapter_model.safetensors", "best/salora_adapter.json"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["eval_examples"] == 24
    assert [e["step"] for e in metrics["evals"]] == [2, 4]
    assert 0 <= metrics["final"]["metrics"]["accuracy"] <= 100
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["n_matrices"] == 36 and ranks["budget_total"] == 72
    assert sum(m["rank"] for m in ranks["modules"]) <= 72  # structure frozen at or under budget
    assert ranks["trajectory"][0]["total_rank"] == 36 * 4
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"loss", "task_loss", "expected_rank", "target_rank", "multiplier"} <= set(log[0])
    assert "--rank 4" in (run / "command.txt").read_text()

    # eval reloads from the folder alone and reproduces the recorded final metric
    code, out, err = run_cli(["eval", run, "--checkpoint", "final"], capsys)
    assert code == 0, err
    again = json.loads((run / "eval_dev_final.json").read_text())["metrics"]
    assert again == pytest.approx(metrics["final"]["metrics"], abs=1e-6)

    # reports
    code, out, err = run_cli(["report", "ranks", run], capsys)
    assert code == 0, err
    assert (run / "ranks_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run_cli(["report", "metrics", run, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    assert "sst2" in (tmp_path / "rep" / "metrics.md").read_text()

    # export: vanilla peft reproduces the run's model
    code, out, err = run_cli(["export", run, tmp_path / "peft", "--checkpoint", "final"], capsys)
    assert code == 0, err
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from salora_cli.run.evaluation import reload_run
    from tasks.models import resolve_model

    _, _, method, tok = reload_run(run, "final")
    batch = tok(["a gorgeous, witty film", "dull and lifeless"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ours = method.model.eval()(**batch).logits
        base = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm-l6"), num_labels=2)
        peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
        theirs = peft_model(**batch).logits
    assert torch.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("task,method", [("mrpc", "lora"), ("rte", "adalora")])
def test_real_slices_other_methods(tmp_path, capsys, shared_data, task, method):
    run = _train(capsys, tmp_path, task, method, shared_data / "glue", "--rank", "4", "--budget", "2")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"] is not None
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["n_matrices"] == 36
    if method == "lora":
        assert {m["rank"] for m in ranks["modules"]} == {4}
    else:  # AdaLoRA's final allocation respects its budget
        assert sum(m["rank"] for m in ranks["modules"]) <= 72
    code, out, err = run_cli(["eval", run], capsys)
    assert code == 0, err
    again = json.loads((run / "eval_dev_best.json").read_text())["metrics"]
    assert again == pytest.approx(metrics["best"]["metrics"], abs=1e-6)


@pytest.mark.parametrize("task,method,metric", [("cola", "bitfit", "matthews_corrcoef"),
                                                ("stsb", "full", "pearson"),
                                                ("qqp", "salora", "f1"),
                                                ("mnli", "lora", "accuracy_mm")])
def test_fixture_tasks(tmp_path, capsys, task, method, metric):
    run = _train(capsys, tmp_path, task, method, FIXTURES / "glue")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metric in metrics["final"]["metrics"]
    if method in ("full", "bitfit"):
        assert not (run / "ranks.json").exists()
        full = json.loads((run / "metrics.json").read_text())["trainable_params"]
        assert (full["initial"] > 20_000_000) == (method == "full")
    code, out, err = run_cli(["eval", run, "--checkpoint", "final"], capsys)
    assert code == 0, err
    again = json.loads((run / "eval_dev_final.json").read_text())["metrics"]
    assert again == pytest.approx(metrics["final"]["metrics"], abs=1e-6)


def test_eval_start_skips_the_evaluations_before_it(tmp_path, capsys, shared_data):
    """Evaluations every step of 4: from step 2 on with train.eval_start 0.5, from step 3 with 0.75."""
    for start, steps in (("0.5", [2, 3, 4]), ("0.75", [3, 4])):
        run = _train(capsys, tmp_path / start, "sst2", "lora", shared_data / "glue", "--eval-every", "1",
                     "--set", f"train.eval_start={start}")
        assert [e["step"] for e in json.loads((run / "metrics.json").read_text())["evals"]] == steps
