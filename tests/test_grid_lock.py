"""One grid, two invocations: two `salora reproduce` started at once on one profile share its runs
(each run trained once, claimed by a lock beside its folder) and results/ is rebuilt under a lock."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT
from fault_helpers import make_small_glue, make_tiny_model
from salora_cli.core import atomic

PROFILE = """name: twice
description: two invocations at once
defaults:
  model: tinybert
  adapter: {r_init: 4, budget: 2}
  train: {max_steps: 4, batch_size: 8, max_length: 32, max_train_samples: 32, max_eval_samples: 16,
          eval_batch_size: 16}
grid:
  - {task: glue/sst2, methods: [salora, lora], seeds: [0, 1]}
"""
RUNS = [f"glue-sst2_{m}_tinybert_seed{s}" for m in ("salora", "lora") for s in (0, 1)]


def test_a_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    path = tmp_path / "run.lock"
    fd = atomic.try_lock(path)
    assert fd is not None and atomic.lock_holder(path) == str(os.getpid())
    assert atomic.try_lock(path) is None  # held, even against this same process
    atomic.unlock(path, fd)
    assert not path.exists()
    # a holder killed outright leaves no stale claim: the kernel drops its lock
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from salora_cli.core import atomic; "
                               "atomic.try_lock(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "held"
    assert atomic.try_lock(path) is None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    fd = atomic.try_lock(path)
    assert fd is not None
    # `locked` waits for a held lock and says whose it is
    told = []
    waiter = threading.Thread(target=_hold_briefly, args=(path, told))
    waiter.start()
    while not told:
        time.sleep(0.01)
    assert told == [str(os.getpid())] and waiter.is_alive()
    atomic.unlock(path, fd)
    waiter.join(timeout=10)
    assert not waiter.is_alive() and not path.exists()


def _hold_briefly(path: Path, told: list) -> None:
    with atomic.locked(path, on_wait=told.append):
        pass


def test_two_reproduce_invocations_share_one_grid(tmp_path, shared_data):
    make_tiny_model(tmp_path / "tinybert")
    make_small_glue(shared_data / "glue", tmp_path / "data" / "glue")
    (tmp_path / "twice.yaml").write_text(PROFILE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "COLUMNS": "200", "SALORA_DATA": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "salora_cli", "reproduce", "--profile", "twice.yaml", "--out", "runs",
           "--results", "results"]
    # A third party (this test) holds the first run, so both invocations must meet a claimed run,
    # go on with the others, then wait for it and one of them take it over once it is released.
    claim = tmp_path / "runs" / "twice" / f".{RUNS[0]}.lock"
    held = atomic.try_lock(claim)
    logs = [tmp_path / f"invocation{i}.log" for i in (1, 2)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
             for log in logs]
    try:
        _wait_for(lambda: all("being run by another invocation" in log.read_text() for log in logs), procs)
    finally:
        atomic.unlock(claim, held)
    for p in procs:
        p.wait(timeout=300)
    outputs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for name in RUNS:  # each run trained by exactly one invocation, once
        starts = sum(len(re.findall(rf"\d/4 {name}(?!:)", out)) for out in outputs)
        assert starts == 1, (name, outputs)
        assert len((tmp_path / "runs" / "twice" / name / "command.txt").read_text().splitlines()) == 1
    assert all(f"pid {os.getpid()}" in out for out in outputs)  # each said who held the claimed run
    _assert_results_whole(tmp_path)


def _wait_for(condition, procs, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline and all(p.poll() is None for p in procs), "invocations never met the claim"
        time.sleep(0.1)


def _assert_results_whole(root: Path) -> None:
    results = root / "results"
    rows = list(csv.DictReader((results / "glue.csv").open()))
    assert sorted((r["method"], r["n_seeds"]) for r in rows) == [("lora", "2"), ("salora", "2")]
    assert sorted(p.name for p in (results / "runs").iterdir() if p.is_dir()) == sorted(RUNS)
    wall = json.loads((root / "runs" / "twice" / "wall_times.json").read_text())
    assert sorted(wall) == sorted(RUNS) and all(v >= 0 for v in wall.values())
    leftovers = [p for p in [*root.glob(".*"), *results.rglob("*"), *(root / "runs").rglob("*")]
                 if p.name.endswith((".tmp", ".old", ".lock"))]
    assert not leftovers, leftovers


def test_ablate_leaves_a_claimed_run_to_its_holder(tmp_path, shared_data):
    """`salora ablate` claims runs like the grid: a run held elsewhere is skipped, waited for, then
    trained once by whoever takes it over (here the same invocation, after the holder lets go)."""
    profile = (ROOT / "tests" / "fixtures" / "ablations_tiny.yaml").read_text()
    (tmp_path / "tiny.yaml").write_text(profile.replace("seeds: [0, 1]", "seeds: [0]"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "COLUMNS": "200", "SALORA_DATA": str(shared_data)}
    held_run, other_run = "glue-sst2_design_seed0", "glue-sst2_uniform_push_seed0"
    claim = tmp_path / "runs" / "ablations_tiny" / f".{held_run}.lock"
    claim.parent.mkdir(parents=True)
    held = atomic.try_lock(claim)
    log = tmp_path / "ablate.log"
    proc = subprocess.Popen([sys.executable, "-m", "salora_cli", "ablate", "--profile", "tiny.yaml", "--out",
                             "runs", "--results", "results"], cwd=tmp_path, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    try:  # the claimed run is passed over and the other one trained while the claim is held
        _wait_for(lambda: (tmp_path / "runs" / "ablations_tiny" / other_run / "metrics.json").exists(), [proc])
        assert not (tmp_path / "runs" / "ablations_tiny" / held_run / "command.txt").exists()
    finally:
        atomic.unlock(claim, held)
    proc.wait(timeout=300)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert f"{held_run}: being run by another invocation (pid {os.getpid()})" in out
    for name in (held_run, other_run):  # each trained once
        assert len((tmp_path / "runs" / "ablations_tiny" / name / "command.txt").read_text().splitlines()) == 1
    assert "| design |" in (tmp_path / "results" / "ablations_tiny.md").read_text()
    assert not list(tmp_path.rglob("*.lock"))


def test_two_invocations_share_the_transfers(tmp_path, monkeypatch):
    """A zero-shot transfer is claimed before it is generated, like a run: one held by another
    invocation is passed over, waited for, and not generated again once that invocation finished it."""
    import dataclasses
    import io

    from rich.console import Console

    from salora_cli.grid import reproduce
    from salora_cli.grid.protocol import PlannedRun
    from salora_cli.transfer import transfer
    from salora_cli.transfer.transfer_config import TransferConfig
    from tasks.instruct.output_checks import CHECKS_VERSION

    def finish(folder: Path, settings) -> None:
        transfer.write_folder(folder, {"transfer": dataclasses.asdict(settings)},
                              {"kind": transfer.TRANSFER_KIND, "status": "finished",
                               "output_checks_version": CHECKS_VERSION}, [])

    generated: list[Path] = []

    def fake_run_transfer(subject, settings, folder, overwrite, console):
        generated.append(folder)
        finish(folder, settings)
        return folder

    monkeypatch.setattr(transfer, "run_transfer", fake_run_transfer)
    monkeypatch.setattr(reproduce, "CLAIM_POLL_S", 0.01)
    runs_root = tmp_path / "runs"
    planned = [PlannedRun(task="instruct/alpaca", method="salora", seed=0, model="smollm2-135m", layers=[],
                          budget=8, transfer=("yelp",))]
    run = runs_root / planned[0].folder_name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    base_folder = runs_root / "transfer" / transfer.resolve_subject("smollm2-135m").label / "yelp"
    run_folder = run / "transfer" / "yelp"
    claim = runs_root / f".transfer-{'--'.join(base_folder.relative_to(runs_root).parts)}.lock"
    held = atomic.try_lock(claim)  # "another invocation" is generating the base model's transfer
    out = io.StringIO()
    worker = threading.Thread(target=reproduce.run_transfers,
                              args=(planned, runs_root, {}, Console(file=out, width=300)))
    worker.start()
    try:
        deadline = time.time() + 30
        while run_folder not in generated or "being done by another invocation" not in out.getvalue():
            assert time.time() < deadline and worker.is_alive(), out.getvalue()
            time.sleep(0.01)
        assert worker.is_alive()  # it waits for the held transfer
        finish(base_folder, TransferConfig(task="yelp"))  # the holder finishes it, then lets go
    finally:
        atomic.unlock(claim, held)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert generated == [run_folder], out.getvalue()  # the held one was not generated a second time
    assert f"{base_folder}: finished by another invocation, skipped" in out.getvalue()
    assert not list(runs_root.glob(".*.lock"))
