"""The papers' GLUE table over fake run folders: eight tasks × five methods, sampled and not-learned
tasks marked, the average only with all eight, per-task and overall verdicts, glue.png and curves."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from salora_cli.reports.budget_tables import build_budget_tables
from salora_cli.reports.glue_overview import (BOOTSTRAP_RESAMPLES, OFFICIAL_METRICS, OFFICIAL_ROWS, PAPER_TASKS,
                                              majority_scores, stratified_bootstrap)
from salora_cli.reports.runs import find_runs
from test_reports import PNG_SIGNATURE, bert_ranks, write_run

SEEDS = {"salora": (0, 1, 2, 3, 4), "lora": (0, 1, 2, 3, 4), "adalora": (0, 1, 2), "full": (0,), "bitfit": (0,)}
BASE = {"mnli": 64.0, "sst2": 82.0, "cola": 30.0, "qqp": 78.0, "qnli": 80.0, "rte": 60.0, "mrpc": 77.0,
        "stsb": 80.0}
MAJORITY = {"mnli": 35.4, "sst2": 50.9, "cola": 0.0, "qqp": 61.7, "qnli": 50.5, "rte": 52.7, "mrpc": 68.4,
            "stsb": 0.0}
OFFSET = {"full": 2.0, "bitfit": -3.0, "lora": 0.0, "adalora": 0.5, "salora": 1.0}


def official(task: str, main: float) -> dict:
    """The task's official metrics: the main one, and the second one a point above."""
    names = OFFICIAL_METRICS[task]
    return {name: main + i for i, name in enumerate(names)}


def write_glue_run(root: Path, task: str, method: str, seed: int, main: float, *, curve: list | None = None,
                   name: str | None = None, **record) -> Path:
    """A GLUE run folder (metrics.json as the training loop writes it) plus fields given in `record`
    (train_examples, eval_examples, majority_baseline)."""
    evals = None
    if curve is not None:
        evals = [{"step": 20 * (i + 1), "split": "dev", "metrics": official(task, v)} for i, v in enumerate(curve)]
    folder = write_run(root / (name or f"glue-{task}_{method}_seed{seed}"), task=f"glue/{task}", method=method,
                       seed=seed,
                       main=OFFICIAL_METRICS[task][0], best=official(task, main), evals=evals,
                       params=(1000, 1000) if method in ("full", "bitfit", "lora") else (1500, 1000))
    if record:
        data = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**data, **record}))
    return folder


def grid(root: Path, scores: dict | None = None, tasks=PAPER_TASKS, seeds=SEEDS, record=None) -> None:
    """Every task × method × seed; `scores[(task, method)]` overrides the main metric per seed (a list
    in seed order, or {seed: score}); `record[task]` adds fields to that task's metrics.json."""
    scores = scores or {}
    for task in tasks:
        for method, method_seeds in seeds.items():
            given = scores.get((task, method))
            if isinstance(given, list):
                given = dict(zip(method_seeds, given))
            for seed in method_seeds:
                value = given[seed] if given else BASE[task] + OFFSET[method] + 0.1 * seed * (-1) ** seed
                write_glue_run(root, task, method, seed, value,
                               **{"majority_baseline": {OFFICIAL_METRICS[task][0]: MAJORITY[task]},
                                  **(record or {}).get(task, {})})


def tables(root: Path):
    runs = find_runs(root).runs
    budget_of = {r.path.name: None if r.method in ("full", "bitfit") else 8 for r in runs}
    return build_budget_tables(runs, budget_of, {8: 12}, lr_selected=False, majority=majority_scores(runs))


def table_lines(md: str, start: str = "## GLUE at a glance", end: str = "### Learned or not") -> list[str]:
    """The Markdown table rows between two headings (to the end without `end`)."""
    text = md[md.index(start):md.index(end) if end else None]
    return [line for line in text.splitlines() if line.startswith("|")]


def section_rows(md: str, start: str, end: str | None = None) -> dict[str, list[str]]:
    """A section's table rows by their first cell."""
    return {cells(line)[0]: cells(line) for line in table_lines(md, start, end)[2:]}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_eight_tasks_five_methods_in_the_papers_layout(tmp_path):
    grid(tmp_path)
    overview = tables(tmp_path).overviews[0]
    md = overview.markdown()
    lines = table_lines(md)
    header = cells(lines[0])
    assert header == ["Method", "Params", "Seeds", "MNLI Acc-m / Acc-mm", "SST-2 Acc", "CoLA MCC", "QQP Acc / F1",
                      "QNLI Acc", "RTE Acc", "MRPC Acc / F1", "STS-B Pearson / Spearman", "Avg"]
    rows = {cells(line)[0]: cells(line) for line in lines[2:]}
    assert list(rows) == ["Full FT (no budget)", "BitFit (no budget)", "LoRA", "AdaLoRA", "SaLoRA"]
    assert rows["SaLoRA"][1:3] == ["1.50K → 1.00K", "5"] and rows["LoRA"][1] == "1.00K"
    assert rows["AdaLoRA"][2] == "3" and rows["Full FT (no budget)"][2] == "1"
    # cells: mean over seeds of each official metric, main first (MNLI m / mm, STS-B Pearson / Spearman)
    sal = {t: statistics.fmean(BASE[t] + 1.0 + 0.1 * s * (-1) ** s for s in SEEDS["salora"]) for t in PAPER_TASKS}
    assert rows["SaLoRA"][3] == f"{sal['mnli']:.2f} / {sal['mnli'] + 1:.2f}"
    assert rows["SaLoRA"][10] == f"{sal['stsb']:.2f} / {sal['stsb'] + 1:.2f}"
    assert rows["SaLoRA"][5] == f"{sal['cola']:.2f}"
    assert rows["Full FT (no budget)"][11] == f"{statistics.fmean(BASE.values()) + 2.0:.2f}"
    assert rows["SaLoRA"][11] == f"{statistics.fmean(sal.values()):.2f}"
    assert "WNLI is not in the table" in md
    assert "MNLI Acc-m, SST-2 Acc, CoLA MCC, QQP Acc, QNLI Acc, RTE Acc, MRPC Acc, STS-B Pearson" in md


def test_average_column_only_with_all_eight_tasks(tmp_path):
    grid(tmp_path, seeds={"salora": (0, 1), "lora": (0, 1)})
    for run in tmp_path.glob("glue-rte_lora_*"):  # LoRA lacks RTE: no average for it
        for f in run.iterdir():
            f.unlink()
        run.rmdir()
    rows = {cells(line)[0]: cells(line) for line in table_lines(tables(tmp_path).overviews[0].markdown())[2:]}
    assert rows["LoRA"][-1] == "—" and re.fullmatch(r"\d+\.\d\d", rows["SaLoRA"][-1])

    for run in tmp_path.glob("glue-rte_*"):  # no method has RTE: no average column at all
        for f in run.iterdir():
            f.unlink()
        run.rmdir()
    md = tables(tmp_path).overviews[0].markdown()
    header = cells(table_lines(md)[0])
    assert "Avg" not in header and "RTE Acc" in header  # the column stays, empty
    assert {cells(line)[0]: cells(line) for line in table_lines(md)[2:]}["SaLoRA"][header.index("RTE Acc")] == "—"
    assert "no method has all eight yet, so the column is left out (no runs: RTE)" in md


def test_sampled_tasks_marked_with_the_rows_used(tmp_path):
    grid(tmp_path, seeds={"salora": (0, 1), "lora": (0, 1)}, record={
        "mnli": {"train_examples": 15130, "eval_examples": 2000},
        "qnli": {"train_examples": 9833, "eval_examples": 5463},
        "qqp": {"train_examples": 10117, "eval_examples": 1000},
        "rte": {"train_examples": 2490, "eval_examples": 277},
    })
    # SST-2 recorded nothing, but its config caps the training rows; CoLA recorded nothing at all
    for run in tmp_path.glob("glue-sst2_*"):
        (run / "config.yaml").write_text("task: glue/sst2\nmethod: salora\ntrain: {max_train_samples: 4000}\n")
    overview = tables(tmp_path).overviews[0]
    md = overview.markdown()
    header = cells(table_lines(md)[0])
    assert header[3:11] == ["MNLI§ Acc-m / Acc-mm", "SST-2§ Acc", "CoLA MCC", "QQP§ Acc / F1", "QNLI§ Acc",
                            "RTE Acc", "MRPC Acc / F1", "STS-B Pearson / Spearman"]
    assert ("MNLI: train 15,130 of 392,702, dev 2,000 of 19,647 (matched + mismatched); SST-2: train 4,000 of "
            "67,349, dev not recorded; QQP: train 10,117 of 363,846, dev 1,000 of 40,430; QNLI: train 9,833 of "
            "104,743, dev 5,463 of 5,463.") in md
    learned = section_rows(md, "### Learned or not", "### The verdict")
    assert learned["QQP §"][-2:] == ["10,117 of 363,846", "1,000 of 40,430"]
    assert learned["RTE"][-2:] == ["2,490 of 2,490", "277 of 277"]  # the full files: not marked
    assert learned["CoLA"][-2:] == ["not recorded", "not recorded"]  # unknown: not claimed either way
    assert overview.data["mnli"].sampled and not overview.data["cola"].sampled


def test_not_learned_task_stays_marked_with_its_learning_curves(tmp_path):
    from salora_cli.reports.glue_figures import write_glue_figures

    grid(tmp_path, seeds={"salora": (0, 1), "lora": (0, 1), "full": (0,)}, scores={
        ("rte", "salora"): [53.0, 54.0], ("rte", "lora"): [55.0, 52.0], ("rte", "full"): [57.6],  # < 52.7 + 5
        ("cola", "salora"): [19.0, 19.8], ("cola", "lora"): [10.0, 12.0], ("cola", "full"): [19.9],  # < MCC 20
        ("stsb", "salora"): [70.0, 70.0], ("stsb", "lora"): [60.0, 61.0], ("stsb", "full"): [40.0],  # 70: learned
    })
    for seed, curve in enumerate(([50.0, 52.0, 53.0], [51.0, 54.0, 52.0])):  # RTE SaLoRA's dev evaluations
        write_glue_run(tmp_path, "rte", "salora", seed, max(curve), curve=curve,
                       majority_baseline={"accuracy": MAJORITY["rte"]})
    overview = tables(tmp_path).overviews[0]
    assert overview.not_learned == ["cola", "rte"]
    md = overview.markdown()
    header = cells(table_lines(md)[0])
    assert "RTE‡ Acc" in header and "CoLA‡ MCC" in header and "STS-B Pearson / Spearman" in header
    learned = section_rows(md, "### Learned or not", "### The verdict")
    assert learned["RTE"][2:6] == ["52.70", "57.70", "Full FT 57.60", "**no** ([curves](curves/rte.png))"]
    assert learned["CoLA"][2:6] == ["0.00", "20.00 (fixed)", "Full FT 19.90", "**no** ([curves](curves/cola.png))"]
    assert learned["STS-B"][3:6] == ["70.00 (fixed)", "SaLoRA 70.00", "yes"]

    results = tmp_path / "results"
    (results / "curves").mkdir(parents=True)
    (results / "curves" / "mrpc.png").write_bytes(PNG_SIGNATURE)  # left from a build where MRPC was not learned
    written = write_glue_figures([overview], results)
    assert sorted(p.relative_to(results).as_posix() for p in written) == ["curves/cola.png", "curves/rte.png",
                                                                          "glue.png"]
    assert not (results / "curves" / "mrpc.png").exists()
    from salora_cli.reports.glue_figures import _mean_curve
    assert _mean_curve(overview.rows[("rte", "salora")], "accuracy") == ([20, 40, 60], [50.5, 53.0, 52.5])
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_overall_verdict_excludes_zero_when_seeds_agree_within_tasks(tmp_path):
    """SaLoRA far ahead on one task and far behind on another, each with little spread over seeds:
    resampling seeds within each task keeps the mean over tasks (+1) clear of 0; resampling all pairs
    together (ignoring the tasks) would not. A not-learned task's large gap must not enter."""
    seeds = {"salora": (0, 1, 2, 3, 4), "lora": (0, 1, 2, 3, 4)}
    scores = {("sst2", "salora"): [90.0, 91.0, 89.0, 90.0, 90.0], ("sst2", "lora"): [80.0] * 5,
              ("mrpc", "salora"): [70.0, 69.0, 71.0, 70.0, 70.0], ("mrpc", "lora"): [78.0] * 5,
              ("rte", "salora"): [40.0] * 5, ("rte", "lora"): [55.0] * 5}  # RTE: majority 52.7 + 5 not reached
    grid(tmp_path, scores, tasks=("sst2", "mrpc", "rte"), seeds=seeds)
    overview = tables(tmp_path).overviews[0]
    overall = overview.overall("lora")
    assert overall.tasks == ("sst2", "mrpc") and overall.n_pairs == 10
    assert overall.left_out == ("RTE (not learned)",)
    assert overall.mean == pytest.approx(1.0)
    lo, hi = overall.interval
    assert 0 < lo < 1.0 < hi < 2.0 and overall.verdict == "ahead"
    # the spread is the within-task one: sd of the mean over tasks ≈ sqrt(Σ s²(n-1)/n / n) / 2
    within = [[10.0, 11.0, 9.0, 10.0, 10.0], [-8.0, -9.0, -7.0, -8.0, -8.0]]
    sd = sum(statistics.pvariance(d) / len(d) for d in within) ** 0.5 / 2
    assert (hi - lo) / 2 == pytest.approx(1.96 * sd, rel=0.15)
    assert stratified_bootstrap(within) == (lo, hi)  # fixed seed: the same interval every time
    pooled = [d for task in within for d in task]  # one group: the interval spans 0
    assert stratified_bootstrap([pooled])[0] < 0 < stratified_bootstrap([pooled])[1]
    md = overview.markdown()
    assert (f"SaLoRA − LoRA over the learned tasks: +1.00 points (mean over 2 task(s) of the per-task mean paired "
            f"difference; 10 (task, seed) pairs: SST-2 5, MRPC 5), 95 % interval [{lo:+.2f}, {hi:+.2f}] (stratified "
            f"bootstrap over seeds within each task): **ahead**. Left out: RTE (not learned).") in md
    assert f"{BOOTSTRAP_RESAMPLES:,} resamples, numpy default_rng(0)" in md
    # per task: SST-2 ahead, MRPC behind, RTE behind but not learned, so no evidence
    verdicts = section_rows(md, "### The verdict")
    assert verdicts["SST-2"][3:6] == ["+10.00 [+9.12, +10.88]", "5/5", "ahead"]
    assert verdicts["MRPC"][5] == "behind"
    assert verdicts["RTE"][5] == "behind (not learned: no evidence either way)"
    assert overview.verdict_lines()[0] == ("SaLoRA − LoRA per task: SST-2 ahead (+10.00); RTE behind (-15.00, not "
                                           "learned); MRPC behind (-8.00).")
    assert overview.verdict_lines()[2] == "SaLoRA − AdaLoRA: no AdaLoRA runs."


def test_overall_verdict_includes_zero_when_tasks_disagree_within(tmp_path):
    seeds = {"salora": (0, 1, 2, 3, 4), "lora": (0, 1, 2, 3, 4)}
    scores = {("sst2", "salora"): [83.0, 79.0, 82.0, 80.0, 81.5], ("sst2", "lora"): [81.0] * 5,
              ("mrpc", "salora"): [75.0, 79.0, 76.0, 80.0, 77.0], ("mrpc", "lora"): [77.0] * 5}
    grid(tmp_path, scores, tasks=("sst2", "mrpc"), seeds=seeds)
    overall = tables(tmp_path).overviews[0].overall("lora")
    lo, hi = overall.interval
    assert lo < 0 < hi and overall.verdict == "level"
    assert lo < overall.mean < hi


def test_salora_minus_adalora_pairs_by_the_seeds_both_ran(tmp_path):
    seeds = {"salora": (0, 1, 2, 3, 4), "lora": (0, 1, 2, 3, 4), "adalora": (0, 2, 4, 7)}
    scores = {("sst2", "salora"): [82.0, 90.0, 83.0, 90.0, 84.0], ("sst2", "adalora"): {0: 81.0, 2: 81.5, 4: 82.0,
                                                                                        7: 99.0},
              ("mrpc", "salora"): [77.0, 60.0, 78.0, 60.0, 79.0], ("mrpc", "adalora"): {0: 76.0, 2: 76.5, 4: 78.0,
                                                                                        7: 50.0}}
    grid(tmp_path, scores, tasks=("sst2", "mrpc"), seeds=seeds)
    overview = tables(tmp_path).overviews[0]
    d = overview.paired("sst2", "adalora")
    assert d.n == 3 and d.diffs == (1.0, 1.5, 2.0)  # seeds 0, 2, 4: SaLoRA's 1 and 3, AdaLoRA's 7 unpaired
    overall = overview.overall("adalora")
    assert overall.diffs == ((1.0, 1.5, 2.0), (1.0, 1.5, 1.0)) and overall.n_pairs == 6
    assert overall.mean == pytest.approx((1.5 + 3.5 / 3) / 2)
    assert overall.verdict == "ahead"
    assert any(line.startswith("SaLoRA − AdaLoRA over the learned tasks: +1.33 points") for line in
               overview.verdict_lines())


def test_glue_png_is_written_for_eight_tasks(tmp_path):
    from salora_cli.reports.glue_figures import write_glue_figures

    grid(tmp_path / "runs")
    written = write_glue_figures(tables(tmp_path / "runs").overviews, tmp_path / "results")
    assert [p.name for p in written] == ["glue.png"]  # every task learned: no curves
    assert written[0].read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / "results" / "curves").exists()


def test_majority_class_from_the_dev_labels(tmp_path, monkeypatch):
    """Read through the task's loader with the run's data_dir: accuracy of the most common class
    (MNLI: on the matched half), 0 for CoLA's MCC and STS-B's Pearson; computed once per task and data."""
    from salora_cli.reports import glue_overview

    data = tmp_path / "glue"
    (data / "RTE").mkdir(parents=True)
    (data / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
        f"{i}\ta {i}\tb {i}\t{'entailment' if i < 3 else 'not_entailment'}\n" for i in range(4)))
    (data / "MNLI").mkdir()
    labels = {"m": ["neutral", "neutral", "entailment", "contradiction"],
              "mm": ["entailment", "entailment", "entailment", "neutral"]}
    for tag, name in (("m", "dev_matched.tsv"), ("mm", "dev_mismatched.tsv")):
        (data / "MNLI" / name).write_text("sentence1\tsentence2\tgold_label\n" + "".join(
            f"p {i}\th {i}\t{label}\n" for i, label in enumerate(labels[tag])))
    (data / "CoLA").mkdir()
    (data / "CoLA" / "dev.tsv").write_text("".join(f"src\t{i % 2}\t\ts {i}\n" for i in range(5)))
    (data / "STS-B").mkdir()
    (data / "STS-B" / "dev.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(
        f"a {i}\tb {i}\t{i}.0\n" for i in range(4)))
    runs = tmp_path / "runs"
    for task in ("rte", "mnli", "cola", "stsb"):
        for seed in (0, 1):
            folder = write_glue_run(runs, task, "lora", seed, 50.0)
            (folder / "config.yaml").write_text(f"task: glue/{task}\nmethod: lora\ndata_dir: {data}\n")
    calls = []
    real = glue_overview._constant_predictor_score
    monkeypatch.setattr(glue_overview, "_constant_predictor_score", lambda cfg: calls.append(cfg.task) or real(cfg))
    monkeypatch.setattr(glue_overview, "_MAJORITY_CACHE", {})
    scores = majority_scores(find_runs(runs).runs)
    assert scores == {"glue/rte": 75.0, "glue/mnli": 50.0, "glue/cola": 0.0, "glue/stsb": 0.0}
    majority_scores(find_runs(runs).runs)
    assert sorted(calls) == ["glue/cola", "glue/mnli", "glue/rte", "glue/stsb"]  # once per task and data
    # a recorded score wins; a run without readable data is left out
    write_glue_run(runs, "rte", "salora", 0, 50.0, majority_baseline={"accuracy": 52.7})
    write_glue_run(runs, "qqp", "lora", 0, 50.0)
    scores = majority_scores(find_runs(runs).runs)
    assert scores["glue/rte"] == 52.7 and "glue/qqp" not in scores


def test_constants_agree_with_the_metrics_and_the_official_files(shared_data):
    import tasks
    from tasks.metrics import GLUE_EXTRA_METRICS, GLUE_MAIN_METRIC

    assert set(OFFICIAL_METRICS) == set(GLUE_MAIN_METRIC) == set(PAPER_TASKS) == set(OFFICIAL_ROWS)
    for task, names in OFFICIAL_METRICS.items():
        assert names[0] == GLUE_MAIN_METRIC[task]
        assert set(names[1:]) <= set(GLUE_EXTRA_METRICS[task])
    for task, folder in (("cola", "CoLA"), ("sst2", "SST-2"), ("mrpc", "MRPC"), ("stsb", "STS-B"), ("rte", "RTE")):
        splits = tasks.get(f"glue/{task}").load_splits(shared_data / "glue")
        assert (len(splits["train"]), len(splits["dev"])) == OFFICIAL_ROWS[task], task
    qnli = tasks.get("glue/qnli").load_splits(shared_data / "glue", splits=("dev",))
    assert len(qnli["dev"]) == OFFICIAL_ROWS["qnli"][1]


def test_claim_marks_a_task_below_its_fixed_bar(tmp_path):
    grid(tmp_path, seeds={"salora": (0, 1), "lora": (0, 1)}, tasks=("cola",),
         scores={("cola", "salora"): [15.0, 16.0], ("cola", "lora"): [12.0, 14.0]})
    claim = tables(tmp_path).claim_markdown()
    assert "| 8 | glue/cola | 15.50 | 13.00 | 0.00 | +2.50 |" in claim
    assert "(neither method reaches MCC 20: not learned, little evidence either way)" in claim


def test_rank_maps_for_every_task(tmp_path):
    from salora_cli.reports import build_rank_report, compare_rank_distributions

    reports = []
    for i, task in enumerate(PAPER_TASKS):
        run = write_run(tmp_path / task, task=f"glue/{task}", method="salora", seed=0, main=OFFICIAL_METRICS[task][0],
                        best=official(task, 70.0),
                        ranks=bert_ranks([[(i + j + k) % 13 for k in range(6)] for j in range(6)], budget_total=288))
        report = build_rank_report(run)
        assert all(p.is_file() for p in report.write(tmp_path / "ranks" / f"glue-{task}"))
        reports.append(report)
    out = compare_rank_distributions(reports, tmp_path / "ranks" / "distribution.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_results_rebuilt_from_run_folders_alone(tmp_path, monkeypatch):
    """build_results (what `make reproduce` does once the runs exist) over finished run folders: the
    overview opens glue.md, glue.png and the curves of the task not learned are written, and README
    states the verdicts. No training: the folders are written here."""
    from rich.console import Console

    from salora_cli.grid import reproduce
    from salora_cli.reports import efficiency

    profile = tmp_path / "two.yaml"
    profile.write_text("name: two\ndescription: two tasks\ndefaults: {model: minilm-l6}\n"
                       "budgets: [{budget: 8, r_init: 12}]\ngrid:\n"
                       "  - {task: glue/sst2, methods: [salora, lora], seeds: [0, 1, 2]}\n"
                       "  - {task: glue/rte, methods: [salora, lora, full], seeds: [0, 1, 2]}\n")
    loaded = reproduce.load_profile(profile)
    runs_root = tmp_path / "runs" / "two"
    scores = {"sst2": {"salora": [84.0, 85.0, 83.5], "lora": [82.0, 82.5, 82.0]},
              "rte": {"salora": [53.0, 54.0, 52.0], "lora": [54.0, 53.0, 53.5], "full": [55.0, 56.0, 54.0]}}
    for p in reproduce.plan(loaded, Path(".")):
        task = p.task.removeprefix("glue/")
        folder = write_glue_run(runs_root, task, p.method, p.seed, scores[task][p.method][p.seed],
                                name=p.folder_name, majority_baseline={"accuracy": MAJORITY[task]})
        if p.method == "salora":
            (folder / "ranks.json").write_text(json.dumps(bert_ranks([[8] * 6] * 6, budget_total=288)))
    monkeypatch.setattr(efficiency, "_inference_section", lambda runs, n, previous: [])  # no adapters to time
    results = tmp_path / "results"
    front = tmp_path / "README.md"
    from salora_cli.reports.front_page import END, START

    front.write_text(f"# salora\n\n## Results\n\n{START}\nan old summary\n{END}\n\n## Library\nkept\n")
    reproduce.build_results(runs_root, results, loaded, Console(file=open(tmp_path / "log", "w")), command="t",
                            front_page=front)

    md = (results / "glue.md").read_text()
    assert md.index("## GLUE at a glance (budget 8)") < md.index("## Budget 8: average rank 8 per matrix")
    assert (results / "glue.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (results / "curves" / "rte.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not (results / "curves" / "sst2.png").exists()
    readme = (results / "README.md").read_text()
    verdict = readme[readme.index("## Verdict (GLUE, from `glue.md`)"):readme.index("## Files")]
    assert "- SaLoRA − LoRA per task: SST-2 ahead (+2.00); RTE level (-0.50, not learned)." in verdict
    assert "- SaLoRA − LoRA over the learned tasks: +2.00 points" in verdict
    assert "Left out: RTE (not learned)" in verdict
    assert "- SaLoRA − AdaLoRA: no AdaLoRA runs." in verdict
    assert "`glue.png`" in readme and "- `curves/rte.png`" in readme

    # the front page's summary: rebuilt between its markers from the same overview, the rest kept
    page = front.read_text()
    assert page.startswith("# salora\n\n## Results\n\n") and page.endswith(f"{END}\n\n## Library\nkept\n")
    assert "an old summary" not in page and "[results/glue.md](results/glue.md)" in page
    summary = section_rows(page, START, END)
    assert summary["SaLoRA"] == ["SaLoRA", "1.50K → 1.00K", "3", "84.17", "53.00"]
    assert summary["Full FT (no budget)"][3:] == ["—", "55.00"]
    assert summary["SST-2"][1].startswith("+2.00 [") and summary["SST-2"][1].endswith("] ahead")
    assert summary["**all learned tasks**"][1].startswith("**+2.00 [") and summary["**all learned tasks**"][2] == "—"
    assert "Left out of the overall verdicts: RTE (not learned)" in page
    before = page
    reproduce.build_results(runs_root, results, loaded, Console(file=open(tmp_path / "log", "w")), command="t",
                            front_page=front)
    assert front.read_text() == before  # rebuilt byte for byte


def test_front_page_summary_only_for_the_projects_results(tmp_path):
    from salora_cli.reports.front_page import write_summary

    assert reproduce_front_page(tmp_path, tmp_path / "results") == tmp_path / "README.md"
    assert reproduce_front_page(tmp_path, tmp_path / "elsewhere") is None
    plain = tmp_path / "README.md"
    plain.write_text("# a README without the markers\n")
    grid(tmp_path / "runs", tasks=("sst2",))
    assert write_summary(plain, tables(tmp_path / "runs").overviews, "cpu") is None
    assert plain.read_text() == "# a README without the markers\n"


def reproduce_front_page(root: Path, results: Path) -> Path | None:
    from salora_cli.grid.reproduce import front_page_of

    return front_page_of(results, root)
