"""Shared test helpers: where the real data lives, and tiny offline models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# CI clones main with ../shared beside it; SALORA_SHARED overrides for other layouts.
SHARED_DATA = Path(os.environ.get("SALORA_SHARED", ROOT.parent / "shared")) / "data"
FIXTURES = ROOT / "tests" / "fixtures"

torch.set_num_threads(2)
# The suite is offline by design: fail fast instead of waiting on hub retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"real data folder missing: {SHARED_DATA} (CI expects ../shared beside the repo)")
    return SHARED_DATA
