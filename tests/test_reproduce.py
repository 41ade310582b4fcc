"""`salora reproduce`: plan a grid, run it (resumable), and build every results/ file from the runs."""
from __future__ import annotations

import csv
import json
import re

import pytest

from cli_helpers import run_cli
from conftest import FIXTURES, ROOT
from salora_cli.grid.reproduce import load_profile, plan

PROFILE = FIXTURES / "reproduce_tiny.yaml"


def test_plan_layers_and_filters():
    runs = plan(load_profile(PROFILE), ROOT)
    assert [(r.task, r.method, r.seed) for r in runs] == [
        ("glue/sst2", "salora", 0), ("glue/sst2", "salora", 1), ("glue/sst2", "lora", 0),
        ("glue/sst2", "lora", 1), ("glue/rte", "salora", 0), ("glue/rte", "bitfit", 0)]
    narrowed = plan(load_profile(PROFILE), ROOT, tasks=["rte"], methods=["salora"], seeds=[0])
    assert [(r.task, r.method) for r in narrowed] == [("glue/rte", "salora")]
    lora = next(r for r in runs if r.method == "lora")
    from salora_cli.core.config import build_config
    assert build_config(*lora.layers).adapter.r_init == 2  # the method override applies


def _planned(name: str) -> list:
    from salora_cli.core.config import build_config

    runs = plan(load_profile(ROOT / "configs" / "reproduce" / f"{name}.yaml"), ROOT)
    assert runs
    return [build_config(*r.layers) for r in runs]


def test_cpu_profile_matches_the_final_budget_across_methods():
    from salora_cli.core.config import build_config

    starts = {8: 12, 2: 4}  # final average rank -> where SaLoRA and AdaLoRA start
    for run in plan(load_profile(ROOT / "configs" / "reproduce" / "cpu.yaml"), ROOT):
        a = build_config(*run.layers).adapter
        if run.method == "lora":  # config files (yelp.yaml says r_init 12) must not undo this
            assert a.r_init == run.budget, run.folder_name
        elif run.method in ("salora", "adalora"):
            assert (a.r_init, a.budget) == (starts[run.budget], run.budget), run.folder_name
        else:
            assert run.budget is None, run.folder_name


def test_cpu_profile_has_five_seeds_for_salora_and_lora_on_every_glue_cell():
    """Issue 19's power: 5 seeds per (task, budget) for SaLoRA and LoRA (AdaLoRA's coverage is cut first)."""
    runs = plan(load_profile(ROOT / "configs" / "reproduce" / "cpu.yaml"), ROOT)
    cells: dict[tuple, set] = {}
    for run in runs:
        if run.task.startswith("glue/") and run.method in ("salora", "lora"):
            cells.setdefault((run.task, run.method, run.budget), set()).add(run.seed)
    assert cells and all(seeds == {0, 1, 2, 3, 4} for seeds in cells.values()), cells
    assert {budget for _, _, budget in cells} == {8, 2}


def test_paper_profile_keeps_full_finetuning_at_its_own_lr():
    cfgs = _planned("paper")
    assert {c.train.lr for c in cfgs if c.method == "full"} == {2e-5}
    rte = [c for c in cfgs if c.task == "glue/rte" and c.method == "salora"]
    assert {c.train.lr for c in rte} == {6e-4, 1.2e-3, 2.4e-3}  # [lr/2, lr, 2 lr] around the scripts' 1.2e-3
    assert {(c.train.epochs, c.train.max_length) for c in rte} == {(50, 320)}


def test_grid_runs_then_reports(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", tmp_path / "results"]
    results = tmp_path / "results"
    # an earlier grid's report files this grid does not write go; another target's files stay
    for name in ("instruct.md", "ranks/glue-cola/ranks.md", "curves/glue-cola.png", "ablations.md", "lengths/x.json"):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_text("earlier")
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    assert not any((results / name).exists() for name in ("instruct.md", "ranks/glue-cola", "curves"))
    assert (results / "ablations.md").read_text() == (results / "lengths/x.json").read_text() == "earlier"
    for name in ("glue.md", "glue.csv", "efficiency.md", "README.md", "ranks/distribution.png",
                 "ranks/glue-sst2/ranks_heatmap.png", "ranks/glue-rte/ranks.md", "magnitudes.png"):
        assert (results / name).exists(), name
    listed = set(re.findall(r"^- `([^`]+)`$", (results / "README.md").read_text(), re.M))
    on_disk = {str(f.relative_to(results)) for f in results.rglob("*") if f.is_file()}
    # every report file on disk is one README lists, besides the run records and the other targets' files
    assert on_disk - listed - {"README.md", "ablations.md", "lengths/x.json"} == {
        f for f in on_disk if f.startswith("runs/")}
    # SaLoRA's component sizes beside LoRA's, same task and seed, read from the saved adapters
    magnitudes = (results / "magnitudes.md").read_text()
    assert "glue-sst2_salora_minilm-l6_seed0" in magnitudes and "glue-sst2_lora_minilm-l6_seed0" in magnitudes
    assert "| component_sizes |" in magnitudes  # SaLoRA's own sizes (s·|λẑ|·‖a‖·‖b‖)
    rows = list(csv.DictReader((results / "glue.csv").open()))
    sst2_lora = [r for r in rows if r["task"] == "glue/sst2" and r["method"] == "lora"]
    assert sst2_lora and sst2_lora[0]["n_seeds"] == "2" and sst2_lora[0]["seeds"] == "0;1"
    metrics = json.loads((tmp_path / "runs" / "tiny" / "glue-sst2_lora_minilm-l6_seed1" / "metrics.json").read_text())
    # times are recorded, whatever they are (a fast machine rounds a tiny run's step time to 0)
    assert metrics["seed"] == 1 and metrics["step_time_s"] >= 0 and metrics["peak_memory_mb"] > 0
    assert metrics["step_time_median_s"] >= 0  # the median over the run's steps of each step's wall time
    assert metrics["peak_memory_scope"] == "run"
    assert "| glue/sst2 | lora | 2 |" in (results / "efficiency.md").read_text()
    # what each number rests on is committed with it: the tables link results/runs/, not runs/
    record = results / "runs" / "glue-sst2_lora_minilm-l6_seed1"
    assert (record / "config.yaml").is_file() and (record / "command.txt").is_file()
    assert not (record / "adapter").exists()
    assert "](runs/glue-sst2_lora_minilm-l6_seed1/config.yaml)" in (results / "glue.md").read_text()
    readme = (results / "README.md").read_text()
    assert "This file was last written by:" in readme and "Wall time of the grid:" in readme
    assert "To regenerate it: `make reproduce PROFILE=" in readme  # the command a user runs, no machine path
    # each part's measured time beside the plan's estimate, with the ratio once the part is whole
    # (runs one after another: the wall-clock time is the runs' sum, up to the gaps between them)
    for part, runs in (("glue-sst2", 4), ("glue-rte", 2)):
        row = re.search(rf"\| {part} \| {runs} / {runs} \| ([0-9.]+) \| ([0-9.]+) \| [0-9.]+ \| [0-9.]+ \|", readme)
        assert row and float(row[2]) <= float(row[1]) + 0.1, readme
    assert "Wall-clock time of the parts timed that way:" in readme
    wall = json.loads((tmp_path / "runs" / "tiny" / "wall_times.json").read_text())
    assert len(wall) == 6 and all(v >= 0 for v in wall.values())
    spans = json.loads((tmp_path / "runs" / "tiny" / "run_spans.json").read_text())
    assert sorted(spans) == sorted(wall)
    assert all(len(s) == 1 and s[0][1] - s[0][0] == pytest.approx(wall[name], abs=0.2) for name, s in spans.items())
    efficiency = (results / "efficiency.md").read_text()
    # merged-vs-base inference measured for both tasks: found by row label and shape, never by how
    # fast it was (a timing says nothing about correctness and varies with the machine's load)
    inference = efficiency.split("## Inference", 1)[-1]
    rows = [line for line in inference.splitlines()
            if re.fullmatch(r"\| glue/(sst2|rte) \| glue-\1_salora_\S+_seed0( \| [0-9.]+){3} \|", line)]
    assert len(rows) == 2, efficiency
    # a rerun skips every finished run and only rebuilds the reports
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.count("skipped") == 6
    # a later sitting on a fresh machine (no runs/): the committed records are restored, not rerun,
    # and the tables come out the same (the inference timing says it has no weights to time)
    import shutil
    glue_md, efficiency = (results / "glue.md").read_text(), (results / "efficiency.md").read_text()
    rows = [line for line in efficiency.splitlines() if re.fullmatch(r"\| glue/(sst2|rte) \| glue-.*\|", line)]
    shutil.rmtree(tmp_path / "runs")
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "6 finished run(s) taken from" in out and out.count("skipped") == 6
    assert (results / "glue.md").read_text() == glue_md
    assert json.loads((tmp_path / "runs" / "tiny" / "wall_times.json").read_text()) == wall
    assert json.loads((tmp_path / "runs" / "tiny" / "run_spans.json").read_text()) == spans
    # one part run alone on a fresh machine keeps the other parts committed before it
    shutil.rmtree(tmp_path / "runs")
    code, out, err = run_cli([*args, "--tasks", "rte"], capsys)
    assert code == 0, err
    assert "6 finished run(s) taken from" in out and out.count("skipped") == 2
    assert (results / "glue.md").read_text() == glue_md
    assert (results / "runs" / "glue-sst2_lora_minilm-l6_seed1" / "metrics.json").is_file()
    # what needs the weights keeps what was measured from these same runs when they were made
    assert [line for line in (results / "efficiency.md").read_text().splitlines() if line in rows] == rows
    assert (results / "magnitudes.md").read_text() == magnitudes
    # and without that earlier measurement it says so, never a number from other runs
    (results / "efficiency.md").write_text(efficiency.replace("seed0 |", "seed9 |"))
    (results / "magnitudes.md").write_text(magnitudes.replace("_seed0)", "_seed9)"))
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "not measured: the run's weights are not on this machine" in (results / "efficiency.md").read_text()
    assert not (results / "magnitudes.md").exists() and not (results / "magnitudes.png").exists()


def test_rerun_refuses_a_finished_run_whose_profile_changed(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    profile = tmp_path / "one.yaml"
    text = PROFILE.read_text().replace("methods: [salora, lora], seeds: [0, 1]", "methods: [lora], seeds: [0]")
    text = text.split("  - {task: glue/rte")[0]
    profile.write_text(text)
    args = ["reproduce", "--profile", profile, "--out", tmp_path / "runs", "--results", tmp_path / "results"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    metrics = tmp_path / "runs" / "tiny" / "glue-sst2_lora_minilm-l6_seed0" / "metrics.json"
    before = metrics.read_bytes()
    # the same data under another path (another checkout, another machine) is not a changed run
    (tmp_path / "elsewhere").symlink_to(shared_data)
    monkeypatch.setenv("SALORA_DATA", str(tmp_path / "elsewhere"))
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "skipped" in out, err
    profile.write_text(text.replace("lora: {adapter: {r_init: 2}}", "lora: {adapter: {r_init: 3}}"))
    code, out, err = run_cli(args, capsys)
    assert code != 0
    assert "adapter.r_init=2" in err and "now says 3" in err and "Traceback" not in err + out
    assert metrics.read_bytes() == before


def test_peak_memory_is_per_run_when_runs_share_a_process():
    import pytest
    import torch

    from salora_cli.run.train import peak_memory_mb, reset_peak_memory

    big = torch.ones(300 * 2**20 // 4)  # 300 MB, touched
    high = peak_memory_mb()
    del big
    if reset_peak_memory() != "run":
        pytest.skip("this platform cannot reset the peak")
    assert peak_memory_mb() < high - 200


def test_a_grid_stopped_by_sigterm_records_the_interrupted_runs_time(tmp_path, capsys, shared_data, monkeypatch):
    """`kill PID` on a long grid: the run in progress keeps the time it spent (the resumed run adds its
    own), and the command ends with the one-line "run the same command again", not a traceback."""
    import os
    import signal

    from salora_cli.run import train

    monkeypatch.setenv("SALORA_DATA", str(shared_data))

    def killed(self):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before kill returns

    monkeypatch.setattr(train.Trainer, "run", killed)
    before = signal.getsignal(signal.SIGTERM)
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", tmp_path / "results",
            "--tasks", "sst2", "--methods", "lora", "--seeds", "0"]
    code, out, err = run_cli(args, capsys)
    assert code != 0 and "run the same command again" in err + out and "Traceback" not in err + out
    wall = json.loads((tmp_path / "runs" / "tiny" / "wall_times.json").read_text())
    assert list(wall) == ["glue-sst2_lora_minilm-l6_seed0"] and wall["glue-sst2_lora_minilm-l6_seed0"] >= 0
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the grid's only


def test_a_parts_wall_clock_counts_runs_side_by_side_once():
    from salora_cli.grid.reproduce import clock_minutes, part_clocks

    # two invocations: 0-60 s and 30-120 s overlap, 200-260 s alone; a resumed run has two spans
    assert clock_minutes([[200, 260], [0, 60], [30, 120]]) == pytest.approx(3.0)
    assert clock_minutes([[0, 60], [10, 20]]) == pytest.approx(1.0)  # one span inside another
    assert clock_minutes([]) == 0
    times = {"glue-sst2_a": 60.0, "glue-sst2_b": 90.0, "glue-rte_a": 30.0, "glue-rte_b": 30.0}
    spans = {"glue-sst2_a": [[0, 60]], "glue-sst2_b": [[30, 120]], "glue-rte_a": [[500, 530]]}
    # glue-rte_b was timed before spans were recorded: its part's wall-clock time is unknown, not short
    assert part_clocks(times, spans) == {"glue-sst2": pytest.approx(2.0)}


def test_the_grid_total_counts_only_the_profiles_runs_and_their_transfers(tmp_path):
    from salora_cli.grid.reproduce import WALL_TIMES, _grid_wall_times

    every = plan(load_profile(PROFILE), ROOT)
    kept = every[0].folder_name
    times = {kept: 60.0, "glue-sst2_adalora_minilm-l6_seed0": 50.0,  # a run the profile no longer holds
             f"transfer:{kept}/transfer/yelp": 30.0, "transfer:transfer/smollm2-135m/yelp": 20.0,
             "transfer:glue-sst2_adalora_minilm-l6_seed0/transfer/yelp": 10.0}
    (tmp_path / WALL_TIMES).write_text(json.dumps(times))
    assert _grid_wall_times(tmp_path, every) == {kept: 60.0, f"transfer:{kept}/transfer/yelp": 30.0,
                                                "transfer:transfer/smollm2-135m/yelp": 20.0}
