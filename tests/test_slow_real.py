"""Real-model checks that take minutes: `make test-slow` (not in the default suite)."""
from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slow


def test_sst2_salora_lands_on_budget_and_learns(tmp_path, capsys, shared_data):
    """Where the task wants the capacity, the final total rank lands within 2 % under the budget."""
    out = tmp_path / "sst2"
    code, _, err = run_cli(["train", "glue", "--task", "sst2", "--config", "configs/demo.yaml",
                            "--method", "salora", "--data-dir", shared_data / "glue", "--out", out,
                            "--max-train-samples", "4000", "--eval-every", "125"], capsys)
    assert code == 0, err
    ranks = json.loads((out / "ranks.json").read_text())
    total = sum(m["rank"] for m in ranks["modules"])
    assert 0.98 * ranks["budget_total"] <= total <= ranks["budget_total"]
    assert len({m["rank"] for m in ranks["modules"]}) > 3  # ranks really differ between matrices
    best = json.loads((out / "metrics.json").read_text())["best"]["metrics"]["accuracy"]
    assert best > 75.0  # majority class: 50.9 %


def test_yelp_smollm2_smoke(tmp_path, capsys, shared_data):
    out = tmp_path / "yelp"
    code, _, err = run_cli(["train", "style", "--task", "yelp", "--data-dir", shared_data / "yelp",
                            "--out", out, "--max-steps", "4", "--max-train-samples", "64",
                            "--max-eval-samples", "8", "--set", "style_scoring=false",
                            "--set", "task_options.max_new_tokens=8"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["examples"] == 1000
    assert json.loads((out / "ranks.json").read_text())["n_matrices"] == 30 * 7
