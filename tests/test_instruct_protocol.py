"""Instruction tuning in the reproduce profiles: budgets matched as in GLUE, one lr, the `transfer` hook,
and an instruct grid through `salora reproduce` (finished runs recognised, results/instruct.md)."""
from __future__ import annotations

import json

import pytest
import yaml

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES, ROOT
from salora_cli.core.config import build_config
from salora_cli.core.errors import SaloraError
from salora_cli.grid.reproduce import load_profile, plan
from tiny_instruct import FIXTURE, save_tiny_llama, one_thread  # noqa: F401 (autouse fixture)


def _instruct_runs(profile: str) -> list:
    return [r for r in plan(load_profile(ROOT / "configs" / "reproduce" / f"{profile}.yaml"), ROOT)
            if r.task == "instruct/alpaca"]


def test_cpu_profile_instruct_runs():
    runs = _instruct_runs("cpu")
    assert sorted((r.method, r.seed) for r in runs) == [("lora", 0), ("lora", 1), ("salora", 0), ("salora", 1)]
    for run in runs:
        cfg = build_config(*run.layers)
        assert run.budget == 8 and run.transfer == ("yelp",) and not run.tuned
        assert (cfg.adapter.r_init, cfg.adapter.budget) == ((8 if run.method == "lora" else 12), 8)
        assert cfg.model == "smollm2-135m" and cfg.train.lr == 1e-3  # one lr for every method
        assert (cfg.train.max_length, cfg.train.batch_size, cfg.train.group_by_length) == (256, 4, True)


def test_paper_profile_instruct_runs_at_the_authors_setting():
    runs = _instruct_runs("paper")
    assert {r.method for r in runs} == {"salora", "lora", "adalora"}
    for run in runs:
        cfg = build_config(*run.layers)
        assert run.transfer == ("yelp", "gyafc") and cfg.model == "huggyllama/llama-7b"
        assert (cfg.adapter.r_init, cfg.adapter.budget) == ((32 if run.method == "lora" else 46), 32)
        assert (cfg.adapter.alpha, cfg.adapter.orth_reg) == (64, 0.01)
        assert (cfg.train.epochs, cfg.train.lr, cfg.train.max_length, cfg.train.batch_size) == (3, 3e-4, 256, 4)
    glue = [r for r in plan(load_profile(ROOT / "configs" / "reproduce" / "paper.yaml"), ROOT)
            if r.task.startswith("glue/")]
    assert {r.budget for r in glue} == {8, 2, None}  # the instruction-tuning budget adds no GLUE run


@pytest.mark.parametrize("entry,message", [
    ({"task": "glue/sst2", "methods": ["lora"], "seeds": [0], "transfer": ["yelp"]}, "instruction-tuning entries"),
    ({"task": "instruct/alpaca", "methods": ["lora"], "seeds": [0], "transfer": ["imdb"]}, "transfer must be"),
])
def test_transfer_field_is_checked(tmp_path, entry, message):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "grid": [entry]}))
    with pytest.raises(SaloraError, match=message):
        load_profile(path)


def test_instruct_grid_runs_reports_and_skips_finished_runs(tmp_path, capsys):
    model = save_tiny_llama(tmp_path / "tiny-llama")
    profile = tmp_path / "tinyinstruct.yaml"
    profile.write_text(yaml.safe_dump({"name": "tinyinstruct", "budgets": [{"budget": 2, "r_init": 4}],
                                       "transfer_options": {"data_dir": str(FIXTURES / "gyafc"), "max_new_tokens": 4,
                                                            "num_beams": 1, "batch_size": 4, "fluency": False,
                                                            "style_scoring": False}, "grid": [
        {"task": "instruct/alpaca", "methods": ["salora", "lora"], "seeds": [0], "transfer": ["gyafc"],
         "config": {"model": str(model), "data_dir": str(FIXTURE), "task_options": {"dev_size": 4},
                    "train": {"max_steps": 4, "batch_size": 4, "max_length": 96, "eval_every": 2,
                              "eval_batch_size": 4}}}]}))
    args = ["reproduce", "--profile", profile, "--out", tmp_path / "runs", "--results", tmp_path / "results"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    table = (tmp_path / "results" / "instruct.md").read_text()
    assert "instruct/alpaca" in table and "-loss" in table
    (record,) = (tmp_path / "results" / "runs").glob("instruct-alpaca_salora_b2_*_seed0")  # the model path is in the name
    assert json.loads((record / "metrics.json").read_text())["data"]["skipped_empty_output"] == 1
    # the task-agnostic step: the base model and each tuned run rewrote the GYAFC fixture zero-shot
    runs = tmp_path / "runs" / "tinyinstruct"
    transfers = sorted(p.relative_to(runs).as_posix() for p in runs.glob("**/gyafc/metrics.json"))
    assert len(transfers) == 3 and transfers[0].startswith("instruct-alpaca_lora_b2_"), transfers
    assert transfers[2] == "transfer/tiny-llama/gyafc/metrics.json"
    assert "Zero-shot" in (tmp_path / "results" / "style.md").read_text()
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.count("skipped") == 5  # two runs, three transfers
    # a profile whose transfer settings changed does not table (or overwrite) the old generations
    before = (runs / "transfer" / "tiny-llama" / "gyafc" / "generations.jsonl").read_bytes()
    settings = yaml.safe_load(profile.read_text())
    settings["transfer_options"]["max_samples"] = 2
    profile.write_text(yaml.safe_dump(settings))
    code, out, err = run_cli(args, capsys)
    assert_clean_error(code, err, "was generated with max_samples=None", "the profile now says 2")
    assert (runs / "transfer" / "tiny-llama" / "gyafc" / "generations.jsonl").read_bytes() == before
