"""Faults. A run SIGKILLed anywhere (mid-epoch, at a removal, while a checkpoint is written, during
an evaluation, one of two DDP processes) and resumed ends bit for bit where the uninterrupted run
ends; a failed write (full disk, unwritable folder) stops it with one line and keeps every file
written before; a non-finite loss stops it cleanly.

Kill points come from SALORA_FAULT (salora_cli/core/faults.py); the runs are real `salora` processes
started by fault_helpers.Launcher, on a tiny BERT, 24 steps each.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from cli_helpers import QUICK, assert_clean_error, run_cli
from fault_helpers import Launcher, make_small_glue, make_tiny_model
from salora import files
from salora_cli.core import atomic
from salora_cli.core.errors import SaloraError

# 64 examples, batch 8: 8 steps an epoch, 24 steps. Checkpoints every 2 steps, evaluations every 4;
# components are removed from step ~5 on (prune_every 1, ramp to 40 %), the structure freezes at 18.
ARGS = ["train", "glue", "--task", "sst2", "--max-train-samples", "64", "--max-steps", "24",
        "--max-length", "32", "--max-eval-samples", "32", "--eval-every", "4", "--rank", "4", "--budget", "2",
        "--lr", "0.01", "--set", "train.checkpoint_every=2", "--set", "adapter.prune_every=1",
        "--set", "adapter.ramp_start=0.0", "--set", "adapter.ramp_end=0.4", "--set", "adapter.freeze_at=0.75",
        "--set", "train.eval_batch_size=32", "--set", "train.log_every=1"]
VOLATILE = ("train_time_s", "step_time_s", "step_time_median_s", "peak_memory_mb", "peak_memory_scope")  # clocks, not results


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("faults")
    model = make_tiny_model(base / "tinybert")
    glue = make_small_glue(shared_data / "glue", base / "glue")
    launcher = Launcher()
    yield launcher, ["--model", model, "--data-dir", glue]
    launcher.close()


def _argv(setup, out: Path, *extra, processes: int = 1) -> list:
    """The run's command line; the global batch is 8 whatever the process count (a later flag wins)."""
    return [*ARGS, *setup[1], "--batch-size", 8 // processes, "--out", out, *extra]


def _launch(setup, out: Path, fault: str | None = None, processes: int = 1, resume: bool = False) -> list[int]:
    argv = _argv(setup, out, *(["--resume"] if resume else []), processes=processes)
    return setup[0].run(argv, out.with_suffix(".log"), fault, processes)


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """The uninterrupted runs the faulted ones must match, one per process count (made once)."""
    made = {}

    def get(processes: int) -> dict:
        if processes not in made:
            out = tmp_path_factory.mktemp("reference") / f"run{processes}"
            assert _launch(setup, out, processes=processes) == [0] * processes, out.with_suffix(".log").read_text()
            made[processes] = _outcome(out)
        return made[processes]
    return get


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outcome(run: Path) -> dict:
    """Everything a run reports, exactly: metrics, ranks and trajectory, every logged step (losses,
    expected rank, multiplier) and the bytes of the final and best weights."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {"metrics": {k: v for k, v in metrics.items() if k not in VOLATILE},
            "ranks": json.loads((run / "ranks.json").read_text()),
            "log": [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()],
            "weights": {f: _digest(run / f) for f in ("adapter/adapter_model.safetensors",
                                                      "best/adapter_model.safetensors")}}


def _checkpoint_step(folder: Path) -> int:
    return torch.load(folder / "trainer_state.pt", weights_only=False)["loop"]["step"]


KILLS = {  # name: (SALORA_FAULT, what the run folder holds when the process dies)
    "mid_epoch": ("after_step:13", "last"),          # step 13 logged; resumes at 12, 4 batches into epoch 2
    "at_removal": ("removal:3", "last"),             # components removed in memory, shapes changed
    "checkpoint_write": ("checkpoint_write:3", "last+tmp"),  # step 6's half written beside step 4's
    "checkpoint_swap": ("last_swap:2", "old+tmp"),   # step 4's moved aside, step 6's not yet in place
    "eval": ("eval:5", "last"),                      # the first evaluation at the final budget (step 20)
}


@pytest.mark.parametrize("name", list(KILLS))
def test_sigkill_then_resume_ends_bit_for_bit_as_uninterrupted(setup, reference, tmp_path, name):
    fault, left = KILLS[name]
    out = tmp_path / name
    assert _launch(setup, out, fault) == [-9], out.with_suffix(".log").read_text()[-3000:]
    assert not (out / "metrics.json").exists()
    _assert_checkpoint_left(out / "checkpoints", left)
    assert _launch(setup, out, resume=True) == [0], out.with_suffix(".log").read_text()[-3000:]
    assert "resumed from" in out.with_suffix(".log").read_text()
    assert _outcome(out) == reference(1)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last"]


def _assert_checkpoint_left(checkpoints: Path, left: str) -> None:
    """The fault hit the intended moment, and a complete earlier checkpoint is there to resume from."""
    names = sorted(p.name for p in checkpoints.iterdir())
    expected = {"last": ["last"], "last+tmp": ["last", "last.tmp"], "old+tmp": ["last.old", "last.tmp"]}[left]
    assert names == expected, names
    usable = checkpoints / ("last.old" if left == "old+tmp" else "last")
    if left != "last":
        assert _checkpoint_step(usable) == 4


DDP_KILLS = {"rank1_mid_epoch": "after_step:7@1", "rank0_checkpoint_write": "checkpoint_write:3@0"}


@pytest.mark.parametrize("name", list(DDP_KILLS))
def test_sigkill_one_of_two_ddp_processes_then_resume_both(setup, reference, tmp_path, name):
    out = tmp_path / name
    codes = _launch(setup, out, DDP_KILLS[name], processes=2)
    killed = int(DDP_KILLS[name].rsplit("@", 1)[1])
    assert codes[killed] == -9 and codes[1 - killed] != 0, codes  # the survivor is stopped too
    assert not (out / "metrics.json").exists()
    assert _launch(setup, out, processes=2, resume=True) == [0, 0], out.with_suffix(".log").read_text()[-3000:]
    result = _outcome(out)
    assert result["metrics"]["processes"] == {"count": 2, "structure_agrees": True}
    assert result == reference(2)


# ------------------------------------------------------------------ failed writes
def _hashes(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): _digest(p) for p in sorted(run.rglob("*")) if p.is_file()}


def _fail_commit(monkeypatch, name: str, nth: int, code: int, seen: dict) -> None:
    """The nth atomic write of a file called `name` fails with `code`; the run folder is hashed
    just before it (files in flight, *.tmp, left out)."""
    commit = files._commit
    count = {"n": 0}

    def failing(tmp: Path, target: Path) -> None:
        if target.name == name:
            count["n"] += 1
            if count["n"] == nth:
                run = next(p for p in target.parents if (p / "config.yaml").exists())
                seen["before"] = {k: v for k, v in _hashes(run).items() if ".tmp" not in k}
                raise OSError(code, os.strerror(code))
        commit(tmp, target)

    monkeypatch.setattr(files, "_commit", failing)


WRITE_FAILURES = {  # name: (file, nth write of it, errno, what the error names)
    "disk_full_in_checkpoint": ("trainer_state.pt", 3, errno.ENOSPC, "No space left on device"),
    "unwritable_at_results": ("metrics.json", 1, errno.EACCES, "Permission denied"),
}


@pytest.mark.parametrize("name", list(WRITE_FAILURES))
def test_failed_write_stops_with_one_line_and_keeps_earlier_files(setup, tmp_path, capsys, monkeypatch, name):
    filename, nth, code, reason = WRITE_FAILURES[name]
    out = tmp_path / "run"
    seen: dict = {}
    _fail_commit(monkeypatch, filename, nth, code, seen)
    argv = _argv(setup, out, "--max-steps", "8")  # checkpoints at steps 2, 4, 6
    exit_code, _, err = run_cli(argv, capsys)
    assert_clean_error(exit_code, err, "cannot write", filename, reason)
    assert exit_code == 2 and len(err.strip().splitlines()) == 1, err
    assert _hashes(out) == seen["before"]  # every earlier file intact, nothing half-written left
    assert not (out / "metrics.json").exists()
    if filename == "trainer_state.pt":  # the last good checkpoint (step 4) is the one to resume from
        assert _checkpoint_step(out / "checkpoints" / "last") == 4
        monkeypatch.undo()
        exit_code, stdout, err = run_cli([*argv, "--resume"], capsys)
        assert exit_code == 0, err
        assert "at step 4" in stdout and (out / "metrics.json").exists()


def test_a_full_disk_reported_by_torch_save_is_a_clean_error(tmp_path, monkeypatch):
    """torch.save (and safetensors) turn ENOSPC into their own errors; on a full disk those become
    the same one-line error, anywhere else they stay what they are."""
    def save(tmp):
        torch.save({"w": torch.ones(4)}, tmp)
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")

    monkeypatch.setattr(files, "_disk_full", lambda folder: True)
    with pytest.raises(SaloraError, match="cannot write .*state.pt: No space left on device"):
        with atomic.atomic_path(tmp_path / "state.pt") as tmp:
            save(tmp)
    monkeypatch.setattr(files, "_disk_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="enforce fail"):
        with atomic.atomic_path(tmp_path / "state.pt") as tmp:
            save(tmp)
    assert list(tmp_path.iterdir()) == []  # neither left a temporary file


# (extra options, the last good checkpoint's step or None). Logging every step, step 3 reads its loss
# and stops before its backward. Logging every 4th step of 40 (console reports every 2nd), step 3
# reads nothing back: its non-finite loss is kept on the device and raised before step 3's
# checkpoint, or, checkpointing every 10th step, at step 4's read; either way it names step 3.
NAN_CASES = {"every step": ([], 2),
             "step 3 reads nothing, checkpoint each step": (["--max-steps", "40", "--set", "train.log_every=4"], 2),
             "step 3 reads nothing, caught at step 4": (["--max-steps", "40", "--set", "train.log_every=4",
                                                         "--set", "train.checkpoint_every=10"], None)}


@pytest.mark.parametrize("case", NAN_CASES)
def test_nan_loss_stops_cleanly_and_keeps_the_checkpoint(tmp_path, capsys, shared_data, monkeypatch, case):
    extra, last_good = NAN_CASES[case]
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
                            "--max-steps", "6", *extra], capsys)
    assert_clean_error(code, err, "non-finite loss", "step 3")
    if last_good is None:
        assert not (out / "checkpoints").exists()
    else:
        state = torch.load(out / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
        assert state["loop"]["step"] == last_good  # the last good step
    assert (out / "config.yaml").exists() and not (out / "metrics.json").exists()


GROUPED = ("--set", "train.group_by_length=true")


@pytest.mark.parametrize("processes", [1, 2])
def test_length_grouped_batches_resume_mid_epoch_bit_for_bit(setup, tmp_path, processes):
    """The length-grouped sampler is seeded per epoch, so a resumed run skips into the same order."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    def launch(out, fault=None, resume=False):
        argv = _argv(setup, out, *GROUPED, *(["--resume"] if resume else []), processes=processes)
        return setup[0].run(argv, out.with_suffix(".log"), fault, processes)

    assert launch(whole) == [0] * processes, whole.with_suffix(".log").read_text()[-3000:]
    codes = launch(killed, "after_step:13" if processes == 1 else "after_step:7@1")
    assert -9 in codes, codes
    assert launch(killed, resume=True) == [0] * processes, killed.with_suffix(".log").read_text()[-3000:]
    assert _outcome(killed) == _outcome(whole)
