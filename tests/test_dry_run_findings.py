"""What the paper profile's dry run found broken, each fixed and pinned here (issue 38).

- DeBERTa's sequence classifier adds a pooler the DeBERTa-v3 checkpoint does not have: it stayed at its
  random initialisation, frozen under SaLoRA, LoRA, AdaLoRA and BitFit and missing from their saved
  weights, so a reloaded run was not the trained one (`salora eval` disagreed with the run).
- AdaLoRA's rank trajectory started at 0: peft starts every singular value at 0, and the runner counted
  nonzero values as the rank.
- `salora eval` of a mixed-precision run scored in fp32 what the run had scored under bf16 autocast.
- The paper profile's GYAFC transfer (`transfer: [yelp, gyafc]`) had no way to find GYAFC's folder.
- A run of a local model folder was named after its whole path (the dry run's stand-ins are folders).
- A process that had run an fp32 run could not run a bf16 one (accelerate keeps one precision per
  process): the dry run failed in the suite after the fp32 tests, as `make lengths` would at its bf16 rows.
"""
from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURES
from salora_cli.core import config as cfgmod
from tiny_models import tiny, tokens


@pytest.fixture(scope="module")
def deberta_folder(tmp_path_factory):
    """A DeBERTa-v2 base model saved without any head, as microsoft/deberta-v3-base is released, with
    an offline tokenizer beside it (the test feeds token ids of its own)."""
    from transformers import AutoTokenizer

    from tasks.models import resolve_model

    folder = tmp_path_factory.mktemp("deberta")
    tiny("deberta-v2").deberta.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model("minilm-l6")).save_pretrained(folder)
    return folder


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**tokens()).logits


@pytest.mark.parametrize("method", ["lora", "salora", "adalora", "bitfit"])
def test_deberta_s_pooler_trains_and_is_saved(deberta_folder, tmp_path, method):
    from salora_cli.methods import build_method, load_method
    from tasks.classification.glue import get_glue_task

    cfg = cfgmod.build_config({"task": "glue/rte", "method": method, "model": str(deberta_folder),
                               "adapter": {"r_init": 2, "budget": 1}})
    task = get_glue_task("rte")
    torch.manual_seed(0)
    model, _ = task.build_model(cfg.model)
    trained = build_method(model, cfg, total_steps=10)
    pooler = [p for n, p in trained.model.named_parameters()  # (peft keeps a frozen original beside its copy)
              if "pooler" in n and n.endswith("weight") and "original_module" not in n]
    assert pooler and all(p.requires_grad for p in pooler), "the new pooler must train"
    with torch.no_grad():  # as a step would move it
        for p in pooler:
            p.add_(0.5)
    expected = _logits(trained.model)
    trained.save(tmp_path / "best")
    for seed in (1, 2):  # a weight the folder does not hold would come out of another draw each time
        torch.manual_seed(seed)
        reloaded = load_method(task.build_model(cfg.model)[0], cfg, tmp_path / "best")
        assert torch.allclose(_logits(reloaded.model), expected, atol=1e-6)


def test_the_head_is_all_that_is_new_for_a_checkpoint_with_its_pooler():
    """MiniLM (BERT) ships its pooler: only the classifier is new, so the cpu grid trains what it did."""
    from salora_cli.methods.base import head_modules
    from tasks.classification.glue import get_glue_task

    model, _ = get_glue_task("sst2").build_model("minilm-l6")
    assert head_modules(model) == ["classifier"]


def test_adalora_s_rank_trajectory_starts_at_r_init():
    from salora_cli.methods import build_method

    model = tiny("roberta").train()
    cfg = cfgmod.build_config({"task": "glue/sst2", "method": "adalora", "adapter": {"r_init": 4, "budget": 2,
                                                                                     "ramp_start": 0.0, "ramp_end": 0.5}})
    method = build_method(model, cfg, total_steps=8)
    n = len(method.rank_modules())
    assert method.rank_point(0)["total_rank"] == 4 * n  # nothing pruned before the first step
    optimizer = torch.optim.AdamW(method.param_groups(1e-2, 0.0), lr=1e-2)
    batch = {**tokens(), "labels": torch.tensor([0, 1, 0])}
    for step in range(1, 9):
        method.model(**batch).loss.backward()
        optimizer.step()
        method.after_step(step, optimizer)
        optimizer.zero_grad()
    assert method.rank_point(8)["total_rank"] == 2 * n  # the allocator met the budget


def test_salora_eval_scores_a_mixed_precision_run_under_its_autocast():
    from salora_cli.run.evaluation import run_precision

    bf16 = cfgmod.build_config({"train": {"mixed_precision": "bf16"}})
    with run_precision(bf16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with run_precision(cfgmod.build_config({})):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_transfer_finds_gyafc_under_salora_data(tmp_path, monkeypatch):
    from salora_cli.transfer.transfer import load_examples
    from salora_cli.transfer.transfer_config import TransferConfig

    (tmp_path / "gyafc").mkdir()
    (tmp_path / "gyafc" / "GYAFC_Corpus").symlink_to(FIXTURES / "gyafc" / "GYAFC_Corpus")
    monkeypatch.setenv("SALORA_DATA", str(tmp_path))
    examples, folder = load_examples(TransferConfig(task="gyafc"))  # as the paper profile's transfer step asks
    assert examples and folder.endswith("Family_Relationships")


def test_a_local_model_folder_names_its_runs_by_its_own_name():
    from salora_cli.grid.protocol import PlannedRun

    def name(model: str) -> str:
        return PlannedRun("glue/sst2", "lora", 0, model, [], budget=8).folder_name

    assert name("/data/models/roberta-base") == name("roberta-base") == "glue-sst2_lora_b8_roberta-base_seed0"
    assert name("microsoft/deberta-v3-base") == "glue-sst2_lora_b8_microsoft-deberta-v3-base_seed0"


def test_runs_of_two_precisions_share_one_process(tmp_path, shared_data):
    """accelerate keeps one mixed precision per process: a grid (or the suite) that ran an fp32 run
    stopped at its first bf16 run ("AcceleratorState has already been initialized")."""
    from salora_cli.run.train import Trainer

    for precision in ("no", "bf16"):
        cfg = cfgmod.build_config({"task": "glue/sst2", "method": "lora", "model": "minilm-l6",
                                   "data_dir": str(shared_data / "glue"), "adapter": {"r_init": 2},
                                   "train": {"max_steps": 2, "batch_size": 4, "max_length": 32,
                                             "max_train_samples": 8, "max_eval_samples": 8,
                                             "mixed_precision": precision}})
        metrics = Trainer(cfg, tmp_path / precision).run()
        assert metrics["status"] == "finished"
        assert json.loads((tmp_path / precision / "env.json").read_text())["mixed_precision"] == precision
