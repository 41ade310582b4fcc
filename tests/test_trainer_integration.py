"""SaLoRA inside `transformers.Trainer.train()`: a tiny BERT on a real SST-2 slice ends at the budget
with ranks removed during training (optimizer state sliced), logs the structure through Trainer's own
logging, saves in our format and exports to plain peft."""
from __future__ import annotations

import csv

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

import salora
from salora.integrations.transformers import SaLoRATrainer
from tasks.models import resolve_model
from tiny_models import tiny

STEPS = 40


def _sst2(shared_data, n: int) -> list[tuple[str, int]]:
    with open(shared_data / "glue" / "SST-2" / "train.tsv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:n + 1]
    return [(sentence, int(label)) for sentence, label in rows]


def _model(tokenizer):
    model = tiny("bert")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return model


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    data = [dict(tokenizer(s, truncation=True, max_length=32), labels=y) for s, y in _sst2(shared_data, 320)]
    model = _model(tokenizer)
    config = salora.AdapterConfig(r_init=4, budget=2, ramp_start=0.0, ramp_end=0.5, freeze_at=0.75,
                                  prune_every=1)
    handle = salora.attach(model, config, modules_to_save=["classifier"])
    out = tmp_path_factory.mktemp("trainer")
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=STEPS, per_device_train_batch_size=16,
                             learning_rate=1e-2, logging_steps=5, save_strategy="no", report_to=[],
                             use_cpu=True, seed=0, disable_tqdm=True)
    trainer = SaLoRATrainer(handle=handle, model=model, args=args, train_dataset=data,
                            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.train()
    return trainer, handle, tokenizer, out


def test_ends_at_the_budget_with_ranks_removed_during_training(trained):
    trainer, handle, _, _ = trained
    adapters = handle.adapters
    assert adapters.total_rank() == 2 * len(adapters)  # budget 2 per matrix, 12 matrices
    assert adapters.structure_frozen and handle.steps_done == STEPS
    freeze_step = int(0.75 * STEPS)
    removals = [(step, e["removed_by_gates"]) for step, e in trainer.salora.events if e.get("removed_by_gates")]
    # the gates closed components over several steps before the freeze, which trims nothing here
    assert len({s for s, _ in removals if s < freeze_step}) >= 3, trainer.salora.events
    assert handle.removed["projection"] <= 0.02 * 4 * len(adapters)
    ranks = [r for _, r in trainer.salora.trajectory]  # physical total rank after each step
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[freeze_step - 1]
    assert ranks[freeze_step - 1] <= 1.05 * 2 * len(adapters)  # on the budget before the freeze


def test_trainers_optimizer_holds_the_sliced_adapters(trained):
    trainer, handle, _, _ = trained
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    held = {id(p) for g in inner.param_groups for p in g["params"]}
    # every layer's A and B, and the pool's one λ tensor (salora.pool: the layers' λ are its views)
    current = [p for layer in handle.adapters for p in (layer.lora_A, layer.lora_B)]
    for p in current + [handle.adapters.pool.lora_lambda]:
        assert id(p) in held  # the new, smaller tensors, not the ones removal replaced
        state = inner.state.get(p)
        if state and p.numel():
            assert state["exp_avg"].shape == p.shape
    gates = {id(g) for g in handle.adapters.gate_parameters()}
    assert not gates & held  # never stepped by Trainer's optimizer


def test_structure_reaches_trainers_logs(trained):
    trainer, _, _, _ = trained
    logged = [h for h in trainer.state.log_history if "total_rank" in h]
    assert logged and {"orth", "removed_by_gates"} <= set(logged[0])
    assert "target_rank" in logged[0] and "multiplier" in logged[0]
    assert logged[-1]["total_rank"] < logged[0]["total_rank"]


def test_saves_and_exports_to_plain_peft(trained):
    from peft import PeftModel

    trainer, handle, tokenizer, out = trained
    trainer.save_model(str(out / "adapter"))
    batch = tokenizer(["a gripping , funny film", "dull and lifeless"], padding=True, return_tensors="pt")
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**batch).logits
        reloaded = _model(tokenizer)
        salora.load(reloaded, out / "adapter")
        assert torch.allclose(reloaded.eval()(**batch).logits, expected, atol=1e-5)
        ranks = handle.export_peft(out / "peft")
        assert sum(ranks.values()) == handle.adapters.total_rank()
        peft_model = PeftModel.from_pretrained(_model(tokenizer), str(out / "peft")).eval()
        assert torch.allclose(peft_model(**batch).logits, expected, atol=1e-5)
        assert torch.allclose(peft_model.merge_and_unload()(**batch).logits, expected, atol=1e-5)
