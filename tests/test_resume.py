"""Kill a run with SIGKILL mid-way, resume it, and get exactly the uninterrupted run's results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

ARGS = ["--task", "sst2", "--max-train-samples", "64", "--max-steps", "16", "--batch-size", "8",
        "--max-length", "32", "--max-eval-samples", "32", "--eval-every", "4", "--rank", "4", "--budget", "2",
        "--set", "train.checkpoint_every=2", "--set", "adapter.prune_every=1",
        "--set", "adapter.ramp_start=0.0", "--set", "adapter.ramp_end=0.4", "--set", "adapter.freeze_at=0.75",
        "--set", "train.eval_batch_size=32", "--set", "train.log_every=1"]


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "salora_cli", "train", "glue", *ARGS, "--data-dir", str(data),
            "--out", str(out), *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _results(run: Path) -> tuple[dict, dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    ranks = json.loads((run / "ranks.json").read_text())
    return ({k: metrics[k] for k in ("best", "final", "evals")},
            {m["name"]: m["rank"] for m in ranks["modules"]})


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, shared_data):
    data = shared_data / "glue"
    whole = tmp_path / "whole"
    subprocess.run(_cli(data, whole), check=True, env=_env(), capture_output=True, cwd=ROOT)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(data, killed), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoints" / "last" / "trainer_state.pt"
    while proc.poll() is None:  # no deadline: on a loaded machine the run is slow, not wrong
        # kill once the pruning phase has left a checkpoint behind (step 6 or later)
        if state.exists() and _checkpoint_step(killed) >= 6:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists()

    resumed = subprocess.run(_cli(data, killed, "--resume"), env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert _results(killed) == _results(whole)
    steps = [json.loads(line)["step"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no step logged twice


def _checkpoint_step(run: Path) -> int:
    import torch

    try:
        return torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)["loop"]["step"]
    except Exception:  # being written right now
        return -1
