"""`make gpu-check` in its CPU smoke form: the prepared GPU script's whole code path on tiny shapes (the
GPU form is the same code at full shapes on CUDA; no GPU has been lent to this project's sessions yet)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def test_the_gpu_check_s_smoke_form_reports_every_measure(tmp_path, shared_data):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SALORA_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "gpu_check.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report, results = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    assert [c["case"] for c in results["cases"]] == ["RoBERTa shape (tiny, smoke)", "LLaMA shape (tiny, smoke)"]
    for case in results["cases"]:
        ranks = case["salora_total_rank"]
        assert ranks[-1] < ranks[0] and case["removal_steps"], case  # SaLoRA removed components
        low, high = case["ratio"]["whole run"]["interval"]
        assert low <= case["ratio"]["whole run"]["median"] <= high
    assert re.search(r"\| whole run \| [\d.]+ \| [\d.]+–[\d.]+ \| 16 \|", report)
    assert "components removed on the device at steps" in report
    compiled = results["compile"]
    assert compiled["graph_breaks"] == 0 and compiled["graphs_compiled"] >= 1 and compiled["steps_done"] == 9
    assert "torch.compile" in report and "LOAD REPORT" not in done.stdout + done.stderr


def test_the_gpu_check_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: make gpu-check runs the real thing")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: --device cuda, but torch sees no GPU")
