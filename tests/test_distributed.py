"""Two processes on this CPU (gloo) through torchrun: a real process group, identical structure on
both processes (removal mid-training rebuilds the DDP wrapper), and metrics close to one process
with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

ARGS = ["train", "glue", "--task", "rte", "--max-train-samples", "64", "--max-steps", "12",
        "--max-length", "64", "--max-eval-samples", "200", "--eval-every", "6", "--rank", "4", "--budget", "2",
        "--set", "adapter.prune_every=1", "--set", "adapter.gate_lr=0.5", "--set", "adapter.ramp_start=0",
        "--set", "adapter.ramp_end=0.3", "--set", "adapter.freeze_at=0.8"]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("method", ["salora", "adalora"])
def test_two_processes_match_one(tmp_path, shared_data, method):
    data = ["--data-dir", str(shared_data / "glue"), "--method", method]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "salora_cli"]
    _run([*torchrun, *ARGS, *data, "--batch-size", "4", "--out", str(tmp_path / "two")])
    _run([sys.executable, "-m", "salora_cli", *ARGS, *data, "--batch-size", "8", "--out", str(tmp_path / "one")])

    env = json.loads((tmp_path / "two" / "env.json").read_text())
    assert env["num_processes"] == 2
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two["processes"] == {"count": 2, "structure_agrees": True}
    assert two["eval_examples"] == one["eval_examples"] == 200  # gathered over both processes
    assert abs(two["final"]["metrics"]["accuracy"] - one["final"]["metrics"]["accuracy"]) <= 5.0
    ranks = json.loads((tmp_path / "two" / "ranks.json").read_text())
    assert sum(m["rank"] for m in ranks["modules"]) <= 72
    if method == "salora":  # components were removed during training, not only at the freeze
        totals = [p["total_rank"] for p in ranks["trajectory"]]
        assert any(36 * 4 > t > 72 for t in totals), totals
