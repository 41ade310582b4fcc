"""`--report-to tensorboard`: a real (tiny) run writes TensorBoard event files that read back with the
losses, the budget state, ranks per role, eval metrics and the run config; unknown or missing
trackers are one-line errors."""
from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli_helpers import QUICK, assert_clean_error, run_cli
from fault_helpers import make_small_glue, make_tiny_model


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("tracking")
    model = make_tiny_model(base / "tinybert")
    glue = make_small_glue(shared_data / "glue", base / "glue")
    run = base / "run"
    args = ["train", "glue", "--task", "sst2", "--model", model, "--data-dir", glue, "--out", run,
            *QUICK, "--max-steps", "12", "--eval-every", "6", "--rank", "4", "--budget", "2",
            "--set", "adapter.ramp_start=0.0", "--set", "adapter.ramp_end=0.5", "--set", "adapter.prune_every=1",
            "--set", "train.report_to=tensorboard"]
    return run, args


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    folders = [p.parent for p in (run / "tracking").rglob("events.out.tfevents.*")]
    assert folders, list((run / "tracking").rglob("*"))
    out: dict[str, list[tuple[int, float]]] = {}
    for folder in set(folders):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_tensorboard_event_files_hold_losses_ranks_and_metrics(tracked_run, capsys):
    run, args = tracked_run
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    scalars = _scalars(run)
    for tag in ("train/loss", "train/task_loss", "train/orth", "train/expected_rank", "train/target_rank",
                "train/multiplier", "rank/total_rank", "rank/target_total", "rank/removed_by_gates",
                "rank/role/query", "rank/role/ffn_in", "eval/accuracy"):
        assert tag in scalars, (tag, sorted(scalars))
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 13))
    ranks = dict(scalars["rank/total_rank"])
    assert ranks[max(ranks)] < ranks[0]  # removals are visible in the tracker too
    assert {s for s, _ in scalars["eval/accuracy"]} == {6, 12}
    # the run config travels as hyperparameters (TensorBoard's hparams plugin)
    hparams = list((run / "tracking").rglob("hparams.yml"))
    assert hparams and "adapter.r_init: 4" in hparams[0].read_text()


def test_unknown_tracker_is_a_one_line_error(tracked_run, capsys, tmp_path):
    _, args = tracked_run
    bad = [a if a != "train.report_to=tensorboard" else "train.report_to=tensorbored" for a in args]
    bad[bad.index("--out") + 1] = tmp_path / "bad"
    code, _, err = run_cli(bad, capsys)
    assert_clean_error(code, err, "tensorbored", "tensorboard, wandb, mlflow")
    assert not (tmp_path / "bad").exists()


def test_missing_tracker_package_is_a_one_line_error(tracked_run, capsys, tmp_path, monkeypatch):
    import importlib.util

    _, args = tracked_run
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    bad = [a if a != "train.report_to=tensorboard" else "train.report_to=wandb" for a in args]
    bad[bad.index("--out") + 1] = tmp_path / "bad"
    code, _, err = run_cli(bad, capsys)
    assert_clean_error(code, err, "wandb", "pip install wandb")
    assert not (tmp_path / "bad").exists()
