"""Issue 20: the runner's step reads nothing back from the device (no `.item()`, `float(tensor)`,
`if tensor`) unless it logs or reports: on a GPU each read waits for every kernel queued so far.
Counted with the profiler on a CPU run: a read is one `aten::_local_scalar_dense`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console
from torch.profiler import ProfilerActivity, profile

from fault_helpers import make_small_glue, make_tiny_model
from salora_cli.core import config as cfgmod
from salora_cli.run.train import Trainer


def _reads(steps) -> list:
    """The device reads of the next optimizer step that are the runner's or SaLoRA's, i.e. except
    the optimizers' step counters (CPU tensors by PyTorch's design, read with .item() inside
    Optimizer.step: no device involved) and the model's own code (transformers' BERT checks
    `padding_mask.all()` to pick its attention path, for every method alike)."""
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:  # Python frames as parents
        next(steps)
    reads = [e for e in prof.events() if e.name == "aten::_local_scalar_dense"]
    return [e for e in reads if not _inside(e, ("Optimizer.step", "transformers/"))]


def _inside(event, markers: tuple[str, ...]) -> bool:
    while event is not None:
        if any(m in event.name for m in markers):
            return True
        event = event.cpu_parent
    return False


@pytest.mark.parametrize("method", ["salora", "lora"])
def test_a_step_that_neither_logs_nor_reports_reads_nothing_back(tmp_path, shared_data, method):
    cfg = cfgmod.build_config({
        "task": "glue/sst2", "method": method, "model": str(make_tiny_model(tmp_path / "tiny")),
        "data_dir": str(make_small_glue(shared_data / "glue", tmp_path / "glue")),
        "adapter": {"r_init": 4, "budget": 2, "prune_every": 50, "ramp_removals": 0, "ramp_start": 0.0},
        "train": {"batch_size": 8, "max_steps": 100, "max_length": 32, "eval_every": 1000, "lr": 0.01,
                  "log_every": 10, "seed": 3}})
    trainer = Trainer(cfg, tmp_path / "run", console=Console(file=open(os.devnull, "w")))
    steps = trainer.train_steps()
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # step 1 logs: its loss (and budget state) read
        next(steps)
    assert any(e.name == "aten::_local_scalar_dense" for e in prof.events())
    assert _reads(steps) == []  # step 2: neither logged (every 10th) nor reported (every 5th)
    assert [_reads(steps) == [] for _ in range(3)] == [True, True, False]  # steps 3, 4; 5 reports
    log = Path(tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 1 and '"task_loss"' in log[0]  # the logged step still has its values
