"""`salora reproduce --plan`: every run a profile would start with its steps, tokens, estimated hours and
disk, in seconds and without loading a model; the stated model shapes and data sizes it rests on."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from cli_helpers import run_cli
from conftest import FIXTURES, ROOT
from salora_cli.grid import protocol
from salora_cli.grid.reproduce import load_profile, plan

PROFILE = FIXTURES / "plan_tiny.yaml"


@pytest.fixture(scope="module")
def tiny_plan(shared_data):
    from salora_cli.grid.plan import build_plan

    return build_plan(PROFILE, str(shared_data))


def test_the_plan_holds_the_runs_the_protocol_would_start(tiny_plan):
    planned = plan(load_profile(PROFILE), ROOT)
    first = protocol.phase_one(planned)
    assert tiny_plan.runs == len(first) + protocol.phase_two_count(planned)
    runs = [r for r in tiny_plan.rows if r.stage != "transfer"]
    assert [r.name for r in runs[:len(first)]] == [p.folder_name for p in first]
    later = runs[len(first):]
    assert {r.stage for r in later} == {"chosen lr"} and len({(r.name.split("_lr")[0], r.seed) for r in later}) == len(later)
    # each transferring run and the base model (once per model and task) rewrite Yelp zero-shot
    transfers = [r.name for r in tiny_plan.rows if r.stage == "transfer"]
    assert "transfer/smollm2-135m/yelp" in transfers
    assert "instruct-alpaca_salora_b8_smollm2-135m_seed1/transfer/yelp" in transfers and len(transfers) == 6


def test_steps_follow_the_training_loop_and_the_data_s_real_size(tiny_plan):
    steps = {r.name: r.steps for r in tiny_plan.rows}
    assert steps["glue-sst2_salora_b8_lr5e-04_minilm-l6_seed0"] == 250  # 4,000 of SST-2's 67,349 at batch 16
    assert steps["glue-mrpc_full_minilm-l6_seed0"] == 230  # MRPC's 3,668 pairs, 2 epochs of ceil(3668 / 32)
    assert steps["instruct-alpaca_salora_b8_smollm2-135m_seed0"] == 80  # 320 records at batch 4


def test_totals_add_up(tiny_plan):
    parts, total = tiny_plan.parts(), tiny_plan.total()
    for key in ("runs", "steps", "disk_bytes"):
        assert sum(getattr(p, key) for p in parts.values()) == getattr(total, key) == sum(
            getattr(r, key, 1) for r in tiny_plan.rows)
    for key in ("tokens", "gpu_hours", "cpu_hours"):
        assert math.isclose(sum(getattr(p, key) for p in parts.values()), getattr(total, key))
        assert math.isclose(sum(getattr(r, key) for r in tiny_plan.rows), getattr(total, key))
    # the parts are results/README.md's wall-time parts: a folder's task prefix, and the transfers
    assert set(parts) == {"glue-sst2", "glue-mrpc", "style-yelp", "instruct-alpaca", "zero-shot transfers"}
    # a model without stated shapes is planned but not costed, and the plan says so
    unknown = [r for r in tiny_plan.rows if r.model == "some/unknown-model"]
    assert unknown and all(not r.known_size and r.gpu_hours == 0 for r in unknown)


def test_part_estimates_are_the_plans_parts(shared_data, tiny_plan):
    from salora_cli.grid.plan import part_estimates

    estimates = part_estimates(PROFILE, str(shared_data))
    assert {k: round(v.cpu_hours, 9) for k, v in estimates.items()} == {
        k: round(v.cpu_hours, 9) for k, v in tiny_plan.parts().items()}


def test_the_cost_model_s_arithmetic():
    from salora_cli.grid import cost_model as cm
    from salora_cli.grid.model_specs import SPECS

    roberta = SPECS["roberta-base"]
    # ≈ 6·N a token for full fine-tuning, ≈ 4·N for a frozen base (no adapter work, no context)
    assert cm.train_flops(roberta, "full", 0, 0) == pytest.approx(6 * roberta.matmul_params)
    assert cm.train_flops(roberta, "bitfit", 0, 0) == pytest.approx(4 * roberta.matmul_params)
    assert cm.train_flops(roberta, "salora", 0, 0) == pytest.approx(4 * roberta.matmul_params * 1.07)
    flops = 1e18
    assert cm.hours(flops, 0, 0, roberta, cm.REFERENCE_GPU) == pytest.approx(flops / (312e12 * 0.15) / 3600)
    # a full fine-tuning run keeps the whole model three times (adapter/, best/, checkpoint) plus AdamW's moments
    assert cm.run_bytes(1000, 0, checkpointed=True) == 1000 * 5 * 4


def test_a_batch_is_padded_to_its_expected_longest():
    from salora_cli.grid.plan import expected_batch_max

    assert expected_batch_max([7, 7, 7], 32) == pytest.approx(7)
    assert expected_batch_max([1, 2, 3, 4], 1) == pytest.approx(2.5)  # one example: the mean
    assert 3.9 < expected_batch_max([1, 2, 3, 4], 32) <= 4  # many: nearly the longest


def test_stated_model_shapes_match_models_built_from_them():
    """Each stated count is the count of a model of those shapes (built on the meta device: no memory,
    no download), and the adapted matrices are the ones the adapters' role map finds in it."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from salora.config import AdapterConfig
    from salora.model import find_targets
    from salora_cli.grid.model_specs import SPECS

    for s in SPECS.values():
        sizes = s.config_sizes()
        if s.model_type == "roberta":
            sizes["max_position_embeddings"] = 514
        config = AutoConfig.for_model(s.model_type, vocab_size=s.vocab, **sizes, **s.config_flags)
        with torch.device("meta"):
            model = (AutoModelForCausalLM if s.causal else AutoModel).from_config(config)
        assert sum(p.numel() for p in model.parameters()) == s.params, s.name
        targets = find_targets(model, AdapterConfig(method="lora"))
        assert len(targets) == s.adapted_matrices, s.name
        shapes = {n: model.get_submodule(n).weight.shape for n, _ in targets}
        assert sum(sum(shape) for shape in shapes.values()) == s.rank_one_params, s.name


def test_official_sizes_are_the_files_counts_where_the_files_are_here(shared_data):
    from salora_cli.grid.plan_data import OFFICIAL
    from tasks.classification.glue import get_glue_task
    from tasks.instruct.instruct_data import read_instruct_file

    for task in ("glue/sst2", "glue/cola", "glue/mrpc", "glue/rte", "glue/stsb"):
        splits = get_glue_task(task).load_splits(str(shared_data / "glue"))
        assert {k: len(v) for k, v in splits.items()} == {k: v.examples for k, v in OFFICIAL[task].items()}, task
    qnli_dev = get_glue_task("glue/qnli").load_splits(str(shared_data / "glue"), splits=("dev",))["dev"]
    assert len(qnli_dev) == OFFICIAL["glue/qnli"]["dev"].examples
    alpaca = read_instruct_file(shared_data / "instruct" / "alpaca_data.json")
    assert len(alpaca.records) == OFFICIAL["instruct/alpaca"]["records"].examples


def test_the_paper_plan_prints_in_seconds_without_a_model(shared_data):
    """No transformers import at all (so no model class is ever built), and a total line of its own."""
    code = ("import sys, time; t = time.time(); from pathlib import Path; from salora_cli.grid.plan import build_plan, "
            "total_line; plan = build_plan(Path('configs/reproduce/paper.yaml'), sys.argv[1]); "
            "print(total_line(plan)); print(round(time.time() - t, 1)); "
            "assert 'transformers' not in sys.modules, 'the plan imported transformers'")
    done = subprocess.run([sys.executable, "-c", code, str(shared_data)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    total, seconds = done.stdout.strip().splitlines()
    assert total.startswith("total: 859 runs and 20 transfers, ") and "GPU-hours" in total, total
    assert float(seconds) < 60, seconds  # ~5 s alone on 2 cores; generous for a shared machine


def test_reproduce_plan_on_the_command_line(capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    code, out, err = run_cli(["reproduce", "--profile", PROFILE, "--plan"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    total = [line for line in lines if line.startswith("total: ")]
    assert len(total) == 1 and total[0].startswith("total: 29 runs and 6 transfers, ")
    assert any("glue-mrpc_full_minilm-l6_seed1" in line for line in lines)
    assert any("not covered by --dry-run for smollm2-135m" in line for line in lines)
    assert "not costed (no stated shapes in salora_cli/grid/model_specs.py): some/unknown-model" in out
    code, _, err = run_cli(["reproduce", "--profile", PROFILE, "--plan", "--dry-run"], capsys)
    assert code == 2 and "give one" in err


def test_the_paper_plan_counts_the_official_sizes_where_only_samples_are_here(shared_data):
    """The paper's MNLI, QQP and QNLI train on the official files (task_options samples: false), so the
    plan sizes them from GLUE's stated counts, not from the LM-BFF samples that ../shared/data holds."""
    from salora_cli.grid.plan import build_plan
    from salora_cli.grid.plan_data import OFFICIAL

    paper = build_plan(ROOT / "configs" / "reproduce" / "paper.yaml", str(shared_data), tasks=["mnli", "qqp", "qnli"])
    for task in ("glue/mnli", "glue/qqp", "glue/qnli"):
        assert paper.data_sources[task].startswith("official: "), (task, paper.data_sources[task])
    mnli = next(r for r in paper.rows if r.name.startswith("glue-mnli_lora_b8") and r.name.endswith("seed1"))
    assert mnli.steps == math.ceil(OFFICIAL["glue/mnli"]["train"].examples / 32) * 7  # batch 32, 7 epochs
    cpu = build_plan(ROOT / "configs" / "reproduce" / "cpu.yaml", str(shared_data), tasks=["mnli"])
    assert cpu.data_sources["glue/mnli"].endswith("(a sample of the official rows, as the run reads it)")


def test_the_gpu_day_profile_fits_one_gpu_day(shared_data):
    """Issue 38: one of the paper's encoders, SaLoRA / LoRA / AdaLoRA at budget 8, at least 3 seeds,
    ≤ 24 GPU-hours by the plan's estimate on the reference accelerator."""
    from salora_cli.grid.plan import build_plan

    day = build_plan(ROOT / "configs" / "reproduce" / "gpu-day.yaml", str(shared_data))
    assert day.total().gpu_hours <= 24
    runs = [r for r in day.rows if r.stage != "transfer"]
    assert {r.model for r in runs} == {"microsoft/deberta-v3-base"}
    assert {r.method for r in runs} == {"salora", "lora", "adalora"} and {r.budget for r in runs} == {8}
    assert len({r.seed for r in runs}) >= 3 and all(r.part.startswith("glue-") for r in runs)
