"""A non-finite loss stops the run with a clear message naming the step; what was saved stays."""
from __future__ import annotations

import torch

from cli_helpers import QUICK, assert_clean_error, run_cli


def test_nan_loss_stops_cleanly_and_keeps_the_checkpoint(tmp_path, capsys, shared_data, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}

    # Poison the loss from the 3rd training forward on (two good steps, checkpointed each step).
    from transformers import BertForSequenceClassification

    original = BertForSequenceClassification.forward

    def poisoned(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 3 and result.loss is not None:
                result.loss = result.loss * float("nan")
        return result

    monkeypatch.setattr(BertForSequenceClassification, "forward", poisoned)
    code, _, err = run_cli(["train", "glue", "--task", "sst2", "--data-dir", shared_data / "glue", "--out", out,
                            "--max-train-samples", "32", *QUICK, "--set", "train.checkpoint_every=1",
                            "--max-steps", "6"], capsys)
    assert_clean_error(code, err, "non-finite loss", "step 3")
    assert (out / "checkpoints" / "last" / "trainer_state.pt").exists()
    state = torch.load(out / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
    assert state["loop"]["step"] == 2  # the last good step
    assert (out / "config.yaml").exists() and not (out / "metrics.json").exists()
