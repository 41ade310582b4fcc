"""`salora ablate`: one command runs every design variant and writes results/<profile name>.md."""
from __future__ import annotations

import json

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES
from salora_cli.grid.ablations import load_profile, plan
from salora_cli.core.config import build_config

PROFILE = FIXTURES / "ablations_tiny.yaml"


def test_plan_applies_each_variant_on_top_of_the_design():
    runs = plan(load_profile(PROFILE))
    assert [r.folder_name for r in runs] == [
        "glue-sst2_design_seed0", "glue-sst2_design_seed1",
        "glue-sst2_uniform_push_seed0", "glue-sst2_uniform_push_seed1"]
    pushes = {r.variant: build_config(*r.layers).adapter.budget_push for r in runs}
    assert pushes == {"design": "ranked", "uniform_push": "uniform"}
    assert plan(load_profile(PROFILE), seeds=[1])[0].folder_name == "glue-sst2_design_seed1"
    assert [r.variant for r in plan(load_profile(PROFILE), variants=["uniform_push"])] == ["uniform_push"] * 2


def test_labelled_task_entries_and_a_reference_method(tmp_path):
    """One task at two lengths (labels) and a LoRA reference row (a variant that sets `method`)."""
    profile = tmp_path / "lengths.yaml"
    profile.write_text(PROFILE.read_text().replace(
        "  - {task: glue/sst2}\n",
        "  - {task: glue/sst2, label: sst2-short, config: {train: {max_steps: 4}}}\n"
        "  - {task: glue/sst2, label: sst2-long}\n").replace(
        "  uniform_push:", "  lora: {method: lora, adapter: {r_init: 2}}\n  uniform_push:"))
    runs = plan(load_profile(profile), seeds=[0])
    assert [r.folder_name for r in runs] == [
        "sst2-short_design_seed0", "sst2-short_lora_seed0", "sst2-short_uniform_push_seed0",
        "sst2-long_design_seed0", "sst2-long_lora_seed0", "sst2-long_uniform_push_seed0"]
    configs = {r.folder_name: build_config(*r.layers) for r in runs}
    assert configs["sst2-short_lora_seed0"].method == "lora"
    assert configs["sst2-short_design_seed0"].train.max_steps == 4
    assert configs["sst2-long_design_seed0"].train.max_steps == 6
    assert [r.label for r in plan(load_profile(profile), tasks=["sst2-long"])] == ["sst2-long"] * 6


def test_ablate_runs_then_writes_the_table(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    args = ["ablate", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", tmp_path / "results"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    table = (tmp_path / "results" / "ablations_tiny.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"design", "uniform_push"}
    # a score with its spread for the reference, a paired Δ for the variant
    assert " ± " in rows["design"] and "(+" in rows["uniform_push"] or "(-" in rows["uniform_push"]
    copied = tmp_path / "results" / "ablations_tiny" / "runs" / "glue-sst2_uniform_push_seed1"
    assert json.loads((copied / "metrics.json").read_text())["status"] == "finished"
    # a second invocation runs nothing again and rewrites the same table
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "finished earlier, skipped" in out
    assert (tmp_path / "results" / "ablations_tiny.md").read_text() == table


def test_profile_without_the_reference_variant_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE.read_text().replace("  design: {}\n", ""))
    code, out, err = run_cli(["ablate", "--profile", bad], capsys)
    assert_clean_error(code, err, "design")


def test_a_one_class_checkpoint_is_marked_in_the_summary(tmp_path):
    from salora_cli.grid.ablations import run_summary
    from salora_cli.core.config import build_config, to_yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(build_config({"task": "glue/mrpc", "method": "lora"})))
    (run / "ranks.json").write_text("{}")
    for one_class in (True, False):
        best = {"metrics": {"accuracy": 68.38}, **({"degenerate": True} if one_class else {})}
        (run / "metrics.json").write_text(json.dumps({"main_metric": "accuracy", "steps": 3, "best": best}))
        assert run_summary(run)["degenerate"] is one_class
