"""The reproduce protocol: two rank budgets, an lr grid chosen on seed 0, then the other seeds.

Most tests fake the training (a run is a config.yaml and a metrics.json with a chosen score), so the
plan, the choice, the two phases and the reports are checked in seconds; the real run is `slow`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES, ROOT
from salora_cli.grid import protocol
from salora_cli.grid import reproduce
from salora_cli.core import run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.grid.reproduce import load_profile, plan

PROFILE = FIXTURES / "reproduce_protocol.yaml"

# seed-0 dev accuracy per (method, budget, lr); seed s scores s points more (same for both methods)
SCORES = {
    ("salora", 2, 1e-3): 80.0, ("salora", 2, 2e-3): 85.0,  # the larger lr wins
    ("salora", 1, 1e-3): 70.0, ("salora", 1, 2e-3): 70.0,  # a tie: the smaller lr
    ("lora", 2, 1e-3): 82.0, ("lora", 2, 2e-3): 81.0,
    ("lora", 1, 1e-3): 60.0, ("lora", 1, 2e-3): 65.0,
}
CHOSEN = {("salora", 2): 2e-3, ("salora", 1): 1e-3, ("lora", 2): 1e-3, ("lora", 1): 2e-3}


def _score(p: protocol.PlannedRun) -> float:
    return SCORES.get((p.method, p.budget, p.lr), 50.0) + p.seed


def _write_run(folder: Path, p: protocol.PlannedRun, score: float) -> None:
    """What a finished run leaves behind, as far as selection and tables read it."""
    from salora_cli.core.config import build_config, to_yaml

    cfg = build_config(*p.layers)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(to_yaml(cfg))
    (folder / "command.txt").write_text("salora reproduce\n")
    (folder / "metrics.json").write_text(json.dumps({
        "task": p.task, "method": p.method, "seed": p.seed, "model": p.model, "main_metric": "accuracy",
        "evals": [], "best": {"step": 3, "metrics": {"accuracy": score}},
        "final": {"step": 3, "metrics": {"accuracy": score - 1}},
        "trainable_params": {"initial": 100, "final": 90}, "train_time_s": 1.0, "steps": 3, "epochs": 1.0,
        "step_time_s": 0.3, "peak_memory_mb": 10.0, "peak_memory_scope": "run", "status": "finished"}))
    if p.budget is not None:  # what train.py records for a low-rank method
        (folder / "ranks.json").write_text(json.dumps({"budget_avg": float(p.budget), "modules": []}))


def test_plan_has_every_budget_and_lr_in_its_folder_names():
    runs = plan(load_profile(PROFILE), ROOT)
    names = [r.folder_name for r in runs]
    expected = [f"glue-sst2_{m}_b{b}_lr{lr}_minilm-l6_seed{s}"
                for m in ("salora", "lora") for b in (2, 1) for lr in ("1e-03", "2e-03") for s in (0, 1)]
    assert names == expected + ["glue-sst2_bitfit_minilm-l6_seed0"]  # BitFit: no budget, its fixed lr
    from salora_cli.core.config import build_config
    cfgs = {r.folder_name: build_config(*r.layers) for r in runs}
    lora = cfgs["glue-sst2_lora_b1_lr2e-03_minilm-l6_seed1"]
    salora = cfgs["glue-sst2_salora_b1_lr2e-03_minilm-l6_seed1"]
    assert (lora.adapter.r_init, lora.train.lr, lora.train.seed) == (1, 2e-3, 1)  # LoRA's rank is the budget
    assert (salora.adapter.r_init, salora.adapter.budget) == (2, 1)
    assert cfgs["glue-sst2_bitfit_minilm-l6_seed0"].train.lr == 1e-3
    first = protocol.phase_one(runs)
    assert [r.folder_name for r in first] == [n for n in names if n.endswith("seed0")]
    assert protocol.phase_two_count(runs) == 4  # (method, budget) x seed 1, whichever lr is chosen


def test_style_entries_keep_their_lr_unless_asked():
    profile = {"lr_grid": [1.0e-3, 2.0e-3], "budgets": [{"budget": 8, "r_init": 12}]}
    style = {"task": "style/yelp", "methods": ["salora"], "seeds": [0], "budgets": [8]}
    assert protocol.entry_lrs(profile, style, "salora") == [None]
    assert protocol.entry_lrs(profile, {**style, "tune_lr": True}, "salora") == [1e-3, 2e-3]
    glue = {"task": "glue/rte", "methods": ["salora", "full"], "seeds": [0]}
    assert protocol.entry_lrs(profile, glue, "salora") == [1e-3, 2e-3]
    assert protocol.entry_lrs(profile, {**glue, "tune_lr": False}, "salora") == [None]
    assert protocol.entry_lrs(profile, glue, "full") == [None]  # full fine-tuning keeps its lr
    assert protocol.entry_lrs(profile, {**glue, "lr_grid": [4.0e-4, 8.0e-4]}, "lora") == [4e-4, 8e-4]
    assert protocol.entry_budgets(profile, glue, "full") == [None]
    assert protocol.lr_text(1.2e-3) == "1.2e-03" and protocol.lr_text(5e-5) == "5e-05"


@pytest.mark.parametrize("change, fragment", [
    ({"lr_grid": ["5e-4"]}, "lr_grid must be a non-empty list of positive numbers"),
    ({"budgets": [{"budget": 8, "r_init": 4}]}, "0 < B <= R"),
    ({"grid": [{"task": "glue/sst2", "methods": ["lora"], "seeds": [0], "budget": [2]}]}, "unknown key(s) ['budget']"),
    ({"grid": [{"task": "glue/sst2", "methods": ["lora"], "seeds": [0], "budgets": [3]}]}, "some of the profile's budgets"),
    ({"grid": [{"task": "glue/sst2", "methods": ["lora"], "seeds": [1, 2]}]}, "seeds must start with 0"),
])
def test_profile_protocol_errors_name_the_problem(change, fragment):
    profile = {"name": "p", "grid": [{"task": "glue/sst2", "methods": ["lora"], "seeds": [0]}],
               "budgets": [{"budget": 2, "r_init": 4}], "lr_grid": [1.0e-3], **change}
    with pytest.raises(SaloraError) as err:
        protocol.validate(profile, Path("p.yaml"))
    assert fragment in str(err.value)


def test_selection_takes_the_best_seed0_score_ties_to_the_smaller_lr(tmp_path):
    runs = plan(load_profile(PROFILE), ROOT)
    assert all(c.chosen is None for c in protocol.select(runs, tmp_path))  # nothing finished yet
    for p in protocol.phase_one(runs):
        if p.tuned and not (p.method == "lora" and p.budget == 1 and p.lr == 2e-3):
            _write_run(tmp_path / p.folder_name, p, _score(p))
    choices = {(c.method, c.budget): c for c in protocol.select(runs, tmp_path)}
    assert choices[("lora", 1)].chosen is None and choices[("lora", 1)].missing == [2e-3]
    assert {k: c.chosen for k, c in choices.items() if k != ("lora", 1)} == {
        k: v for k, v in CHOSEN.items() if k != ("lora", 1)}
    second, waiting = protocol.phase_two(runs, list(choices.values()))
    assert [(c.method, c.budget) for c in waiting] == [("lora", 1)]  # its seed 1 waits for its grid
    assert {(p.method, p.budget, p.lr, p.seed) for p in second} == {
        (m, b, lr, 1) for (m, b), lr in CHOSEN.items() if (m, b) != ("lora", 1)}


@pytest.fixture
def fake_training(monkeypatch):
    """reproduce with runs faked (scores from SCORES) and the reports that reload models stubbed."""
    import salora_cli.reports as reports
    from salora_cli.reports import efficiency, rank_shares

    calls: list[str] = []

    def run_one(n, p, run, runs_root, data, console):
        calls.append(p.folder_name)
        _write_run(run, p, _score(p))

    class RankStub:
        def __init__(self, path):
            calls.append(f"ranks:{Path(path).name}")

        def write(self, folder):
            return []

    monkeypatch.setattr(reproduce, "_run_one", run_one)
    monkeypatch.setattr(reports, "build_rank_report", RankStub)
    monkeypatch.setattr(reports, "compare_rank_distributions", lambda reports_, out: None)
    monkeypatch.setattr(rank_shares, "write_for_grid", lambda runs, out, lr_grid_runs=(): None)
    monkeypatch.setattr(efficiency, "_inference_section", lambda runs, n, previous: [])
    return calls


def test_two_phases_then_one_table_per_budget(tmp_path, capsys, fake_training):
    calls = fake_training
    results = tmp_path / "results"
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", results]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    trained = [c for c in calls if not c.startswith("ranks:")]
    # phase 1: every seed-0 run (both lrs) and BitFit; phase 2: seed 1 at each group's chosen lr
    assert trained[:9] == [p.folder_name for p in protocol.phase_one(plan(load_profile(PROFILE), ROOT))]
    assert trained[9:] == [f"glue-sst2_{m}_b{b}_lr{protocol.lr_text(lr)}_minilm-l6_seed1"
                           for (m, b), lr in CHOSEN.items()]
    # rank maps show the first budget listed, at its chosen lr
    assert [c for c in calls if c.startswith("ranks:")] == ["ranks:glue-sst2_salora_b2_lr2e-03_minilm-l6_seed0"]

    selection = json.loads((results / "selection.json").read_text())
    assert {(g["method"], g["budget"]): g["chosen_lr"] for g in selection["groups"]} == CHOSEN
    assert "ties go to the smaller lr" in selection["rule"]
    tie = next(g for g in selection["groups"] if (g["method"], g["budget"]) == ("salora", 1))
    assert [(s["lr"], s["score"]) for s in tie["scores"]] == [(1e-3, 70.0), (2e-3, 70.0)]
    assert "**chosen**" in (results / "selection.md").read_text()

    glue = (results / "glue.md").read_text()
    b2, b1 = glue.split("## Budget 2")[1].split("## Budget 1")
    for table, diff in ((b2, "+3.00 (2/2)"), (b1, "+5.00 (2/2)")):
        assert "SaLoRA − LoRA" in table and diff in table  # paired by seed at the chosen lrs
        assert "| glue/sst2 | bitfit (no budget) | 1 |" in table
        assert "| glue/sst2 | salora | 2 |" in table
    # the claim, cell by cell, generated: SaLoRA ahead in both budgets of this fake grid
    claim = glue.split("## SaLoRA against LoRA at the same final rank")[1]
    assert "| 2 | glue/sst2 |" in claim and "| +3.00 | [+3.00, +3.00] | 2/2 | ahead |" in claim
    assert "| 1 | glue/sst2 |" in claim and "| +5.00 | [+5.00, +5.00] | 2/2 | ahead |" in claim
    # only the chosen lr's runs are in the tables; the others are in selection.md
    assert "salora_b2_lr1e-03" not in glue and "salora_b2_lr2e-03_minilm-l6_seed1" in glue
    rows = list(csv.DictReader((results / "glue.csv").open()))
    salora = {(r["budget"], r["lr"], r["n_seeds"]) for r in rows if r["method"] == "salora"}
    assert salora == {("2", "0.002", "2"), ("1", "0.001", "2")}
    assert {(r["budget"], r["budget_free"]) for r in rows if r["method"] == "bitfit"} == {("2", "yes"), ("1", "yes")}
    readme = (results / "README.md").read_text()
    assert "ties go to the smaller lr" in readme and "part of the reported mean" in readme
    assert "Seed 1 then runs at that lr" in readme
    assert "incomplete" not in readme  # every planned run finished

    # a rerun trains nothing and makes the same choice from the run folders
    before = (results / "selection.json").read_text()
    calls.clear()
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert [c for c in calls if not c.startswith("ranks:")] == [] and out.count("skipped") == 13
    assert (results / "selection.json").read_text() == before


def test_later_seeds_wait_for_seed0(tmp_path, capsys, fake_training):
    """SEEDS=1 before any seed 0 finished: nothing to choose from, so nothing runs, and it says why."""
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", tmp_path / "results",
            "--seeds", "1"]
    code, out, err = run_cli(args, capsys)
    assert [c for c in fake_training if not c.startswith("ranks:")] == []
    assert "no lr chosen yet" in out
    assert_clean_error(code, err)  # and no results from nothing


@pytest.mark.slow
def test_protocol_grid_really_runs(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    results = tmp_path / "results"
    args = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", results]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    selection = json.loads((results / "selection.json").read_text())
    assert len(selection["groups"]) == 4 and all(g["chosen_lr"] in (1e-3, 2e-3) for g in selection["groups"])
    chosen = {(g["method"], g["budget"]): g["chosen_lr"] for g in selection["groups"]}
    for (method, budget), lr in chosen.items():
        seed1 = tmp_path / "runs" / "protocol" / f"glue-sst2_{method}_b{budget}_lr{protocol.lr_text(lr)}_minilm-l6_seed1"
        assert rd.is_finished(seed1)
        assert json.loads((seed1 / "ranks.json").read_text())["budget_avg"] == budget
    glue = (results / "glue.md").read_text()
    assert glue.count("SaLoRA − LoRA") >= 2 and "## Budget 1" in glue


def test_a_plain_metrics_report_keeps_grid_runs_apart_and_says_it_mixes_them(tmp_path):
    """`salora report metrics` on a grid folder: no lr's run is taken for a rerun of another."""
    from salora_cli.reports import build_metrics_report, find_runs

    runs = [p for p in plan(load_profile(PROFILE), ROOT) if p.method == "lora" and p.budget == 2 and p.seed == 0]
    for p in runs:
        _write_run(tmp_path / p.folder_name, p, _score(p))
    scan = find_runs(tmp_path)
    assert len(scan.runs) == 2 and not scan.notes  # same task/method/model/seed, other lr: not a rerun
    assert {r.lr for r in scan.runs} == {1e-3, 2e-3} and {r.budget for r in scan.runs} == {2.0}
    assert any("a seed appears more than once" in n for n in build_metrics_report(scan).notes)


def test_the_protocol_states_what_each_cut_method_covers():
    profile = {"name": "p", "budgets": [{"budget": 2, "r_init": 4}, {"budget": 1, "r_init": 2}], "lr_grid": [1e-3],
               "grid": [{"task": "glue/sst2", "methods": ["salora", "lora"], "seeds": [0, 1, 2]},
                        {"task": "glue/sst2", "methods": ["adalora"], "seeds": [0], "budgets": [2]},
                        {"task": "glue/mrpc", "methods": ["salora", "lora"], "seeds": [0, 1, 2]}]}
    text = protocol.protocol_markdown(profile)
    assert "- **Coverage**: adalora runs seed 0 only, budget 2 only and on glue/sst2 only." in text
    assert "salora runs" not in text and "lora runs" not in text.replace("adalora runs", "")
    # a baseline whose later seeds were cut on some tasks only: each task's seeds are stated
    profile["grid"][1:2] = [{"task": "glue/sst2", "methods": ["adalora"], "seeds": [0, 1, 2], "budgets": [2]},
                            {"task": "glue/mrpc", "methods": ["adalora"], "seeds": [0], "budgets": [2]}]
    text = protocol.protocol_markdown(profile)
    assert "- **Coverage**: adalora runs seeds 0, 1, 2 (seed 0 only on glue/mrpc) and budget 2 only." in text


def test_no_report_runs_without_building_results(tmp_path, capsys, fake_training):
    results = tmp_path / "results"
    base = ["reproduce", "--profile", PROFILE, "--out", tmp_path / "runs", "--results", results]
    code, out, err = run_cli([*base, "--no-report"], capsys)
    assert code == 0, err + out
    assert [c for c in fake_training if not c.startswith("ranks:")] and not results.exists()
    # a later invocation finds every run finished and builds the reports from them
    fake_training.clear()
    code, out, err = run_cli(base, capsys)
    assert code == 0, err + out
    assert not [c for c in fake_training if not c.startswith("ranks:")] and (results / "glue.md").is_file()


def test_edge_choices_widen_the_grid_then_the_rule_chooses_again(tmp_path, capsys, fake_training, monkeypatch):
    """widen_lr_grid: a best lr at the grid's edge runs seed 0 one grid step beyond it (at most the
    allowed steps), and only then do the other seeds run; BitFit takes its own grid by the same rule."""
    profile = tmp_path / "widen.yaml"
    text = PROFILE.read_text().replace("method_overrides:\n  bitfit: {train: {lr: 1.0e-3}}\n",
                                       "method_lr_grids: {bitfit: [1.0e-3, 2.0e-3]}\nwiden_lr_grid: 1\n")
    profile.write_text(text.replace("methods: [bitfit], seeds: [0]", "methods: [bitfit], seeds: [0, 1]"))
    extra = {("salora", 2, 4e-3): 90.0, ("lora", 2, 5e-4): 83.0,  # each better one step beyond the edge
             ("lora", 1, 4e-3): 64.0, ("bitfit", None, 2e-3): 60.0, ("bitfit", None, 4e-3): 55.0}
    monkeypatch.setattr(__import__(__name__), "SCORES", {**SCORES, **extra})
    results = tmp_path / "results"
    args = ["reproduce", "--profile", profile, "--out", tmp_path / "runs", "--results", results]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err + out
    chosen = {(g["method"], g["budget"]): g["chosen_lr"]
              for g in json.loads((results / "selection.json").read_text())["groups"]}
    # salora b2: 2e-3 was the top edge, 4e-3 wins and stays the edge (1 step allowed): kept and marked;
    # lora b2: 1e-3 was the bottom edge, 5e-4 wins; salora b1's tie at 1e-3 widens down to 5e-4 (50 < 70);
    # lora b1: 2e-3 at the top, 4e-3 loses (64 < 65): back inside; bitfit: 2e-3 at the top, 4e-3 loses
    assert chosen == {("salora", 2): 4e-3, ("salora", 1): 1e-3, ("lora", 2): 5e-4, ("lora", 1): 2e-3,
                      ("bitfit", None): 2e-3}
    trained = [c for c in fake_training if not c.startswith("ranks:")]
    widened = [c for c in trained if "lr4e-03" in c or "lr5e-04" in c]
    assert all(c.endswith("seed0") for c in widened[:5]) and len([c for c in widened if c.endswith("seed0")]) == 5
    assert "glue-sst2_salora_b2_lr4e-03_minilm-l6_seed1" in trained  # seed 1 at the widened choice
    assert "glue-sst2_bitfit_lr2e-03_minilm-l6_seed1" in trained
    assert "(at the edge of its grid)" in (results / "selection.md").read_text()
    assert "one grid step beyond it" in (results / "README.md").read_text()
    # the report step finds the widened runs again from the folders alone
    fake_training.clear()
    code, out, err = run_cli(args, capsys)
    assert code == 0 and [c for c in fake_training if not c.startswith("ranks:")] == [], err


def test_widening_stops_after_its_steps_when_every_lr_ties(tmp_path, capsys, fake_training, monkeypatch):
    """A method that scores the same at every lr (BitFit stuck at the majority class) chooses the smaller
    lr at every step, so its choice stays at the bottom edge: widen_lr_grid 2 adds exactly two steps
    below the profile's grid, counted from that grid, not from the last widened one (CoLA's BitFit ran
    six steps down before)."""
    profile = tmp_path / "ties.yaml"
    text = PROFILE.read_text().replace("method_overrides:\n  bitfit: {train: {lr: 1.0e-3}}\n",
                                       "method_lr_grids: {bitfit: [1.0e-3, 2.0e-3]}\nwiden_lr_grid: 2\n")
    profile.write_text(text)
    monkeypatch.setattr(__import__(__name__), "SCORES", {**SCORES, **{("bitfit", None, lr): 50.0 for lr in
                                                                     (1e-3, 2e-3, 5e-4, 2.5e-4, 1.25e-4)}})
    results = tmp_path / "results"
    code, out, err = run_cli(["reproduce", "--profile", profile, "--out", tmp_path / "runs", "--results", results],
                             capsys)
    assert code == 0, err + out
    bitfit = sorted(c for c in fake_training if "bitfit" in c)
    assert bitfit == sorted(f"glue-sst2_bitfit_lr{lr}_minilm-l6_seed0" for lr in ("1e-03", "2e-03", "5e-04", "2.5e-04"))
    chosen = {g["method"]: g["chosen_lr"] for g in json.loads((results / "selection.json").read_text())["groups"]}
    assert chosen["bitfit"] == 2.5e-4
