"""This process's random number generators as one dict (Python, NumPy, torch, CUDA), captured and
restored together: gate noise, dropout and data order draw from them, so a checkpoint (salora_cli.run.train)
and a run stepped in turns with another (benchmarks/bench_runs.py) both continue exactly."""
from __future__ import annotations

import random

import numpy as np
import torch


def capture() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
