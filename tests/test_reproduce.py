"""`salora reproduce`: plan a grid, run it (resumable), and build every results/ file from the runs."""
from __future__ import annotations

import csv
import json

from cli_helpers import run_cli
from conftest import FIXTURES, ROOT
from salora_cli.reproduce import load_profile, plan

PROFILE = FIXTURES / "reproduce_tiny.yaml"


def test_plan_layers_and_filters():
    runs = plan(load_profile(PROFILE), ROOT)
    assert [(r.task, r.method, r.seed) for r in runs] == [
        ("glue/sst2", "salora", 0), ("glue/sst2", "salora", 1), ("glue/sst2", "lora", 0),
        ("glue/sst2", "lora", 1), ("glue/rte", "salora", 0), ("glue/rte", "bitfit", 0)]
    narrowed = plan(load_profile(PROFILE), ROOT, tasks=["rte"], methods=["salora"], seeds=[0])
    assert [(r.task, r.method) for r in narrowed] == [("glue/rte", "salora")]
    lora = next(r for r in runs if r.method == "lora")
    from salora_cli.config import build_config
    assert build_config(*lora.layers).adapter.r_init == 2  # per-method defaults apply


def test_real_profiles_are_valid():
    for name in ("cpu", "paper"):
        assert plan(load_profile(ROOT / "configs" / "reproduce" / f"{name}.yaml"), ROOT)


def test_grid_runs_then_reports(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", tmp_path / "results"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    results = tmp_path / "results"
    for name in ("glue.md", "glue.csv", "efficiency.md", "README.md", "ranks/distribution.png",
                 "ranks/glue-sst2/ranks_heatmap.png", "ranks/glue-rte/ranks.md"):
        assert (results / name).exists(), name
    rows = list(csv.DictReader((results / "glue.csv").open()))
    sst2_lora = [r for r in rows if r["task"] == "glue/sst2" and r["method"] == "lora"]
    assert sst2_lora and sst2_lora[0]["n_seeds"] == "2" and sst2_lora[0]["seeds"] == "0;1"
    metrics = json.loads((tmp_path / "runs" / "tiny" / "glue-sst2_lora_minilm-l6_seed1" / "metrics.json").read_text())
    assert metrics["seed"] == 1 and metrics["step_time_s"] > 0 and metrics["peak_memory_mb"] > 0
    assert "| glue/sst2 | lora | 2 |" in (results / "efficiency.md").read_text()
    assert "Command:" in (results / "README.md").read_text()
    # a rerun skips every finished run and only rebuilds the reports
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.count("skipped") == 6
