"""Reports over fake run folders: metric tables (mean ± std over seeds), rank reports, figures."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from salora_cli.core.errors import SaloraError
from salora_cli.reports.style_samples import evenly_spaced
from salora_cli.reports import (build_metrics_report, build_rank_report, compare_rank_distributions,
                                find_runs, load_run)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GLUE_MAIN = {"cola": "matthews_corrcoef", "sst2": "accuracy", "mrpc": "accuracy", "qqp": "accuracy",
             "stsb": "pearson", "mnli": "accuracy_m", "qnli": "accuracy", "rte": "accuracy"}
ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def write_run(folder: Path, *, task: str, method: str, seed: int, best: dict, final: dict | None = None,
              main: str = "accuracy", params=(1000, 800), time_s: float = 10.0, status: str = "finished",
              model: str = "minilm-l6", evals: list | None = None, generations: list | None = None,
              ranks: dict | None = None) -> Path:
    """A run folder with the training loop's schema (metrics.json, optional ranks / generations)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = final if final is not None else best
    metrics = {
        "task": task, "method": method, "seed": seed, "model": model, "main_metric": main,
        "evals": evals if evals is not None else [
            {"step": 50, "epoch": 0.5, "split": "dev", "metrics": best},
            {"step": 100, "epoch": 1.0, "split": "dev", "metrics": final}],
        "best": {"step": 50, "metrics": best}, "final": {"step": 100, "metrics": final},
        "trainable_params": {"initial": params[0], "final": params[1]},
        "train_time_s": time_s, "steps": 100, "status": status,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.yaml").write_text(f"task: {task}\nmethod: {method}\n")
    (folder / "command.txt").write_text("salora train\n")
    if generations is not None:
        (folder / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))
    if ranks is not None:
        (folder / "ranks.json").write_text(json.dumps(ranks))
    return folder


def bert_ranks(ranks_by_layer: list[list[int]], r_init: int = 12, budget_total: int | None = None,
               method: str = "salora") -> dict:
    modules = [{"name": f"bert.encoder.layer.{layer}.{role}", "role": role, "layer": layer,
                "rank": rank, "r_init": r_init}
               for layer, row in enumerate(ranks_by_layer) for role, rank in zip(ROLES, row)]
    n = len(modules)
    total = sum(m["rank"] for m in modules)
    return {"method": method, "r_init": r_init, "budget_avg": (budget_total or 0) / n,
            "budget_total": budget_total, "n_matrices": n, "modules": modules,
            "trajectory": [
                {"step": 0, "total_rank": n * r_init, "expected_rank_total": n * r_init - 0.5,
                 "target_total": float(n * r_init), "per_role": {r: len(ranks_by_layer) * r_init for r in ROLES}},
                {"step": 100, "total_rank": total, "expected_rank_total": total + 0.3,
                 "target_total": float(budget_total or total),
                 "per_role": {r: sum(row[i] for row in ranks_by_layer) for i, r in enumerate(ROLES)}}]}


def llama_ranks() -> dict:
    """Two Llama layers: ffn_in is gate_proj + up_proj, so its cells hold two matrices."""
    names = {"query": ["self_attn.q_proj"], "key": ["self_attn.k_proj"], "value": ["self_attn.v_proj"],
             "attn_out": ["self_attn.o_proj"], "ffn_in": ["mlp.gate_proj", "mlp.up_proj"],
             "ffn_out": ["mlp.down_proj"]}
    ranks = {0: {"query": 8, "key": 2, "value": 6, "attn_out": 5, "mlp.gate_proj": 7, "mlp.up_proj": 3,
                 "ffn_out": 4},
             1: {"query": 1, "key": 0, "value": 8, "attn_out": 6, "mlp.gate_proj": 8, "mlp.up_proj": 8,
                 "ffn_out": 2}}
    modules = []
    for layer in (0, 1):
        for role in ROLES:
            for name in names[role]:
                rank = ranks[layer].get(name, ranks[layer].get(role))
                modules.append({"name": f"model.layers.{layer}.{name}", "role": role, "layer": layer,
                                "rank": rank, "r_init": 8})
    return {"method": "salora", "r_init": 8, "budget_avg": 5.0, "budget_total": 70, "n_matrices": 14,
            "modules": modules, "trajectory": []}


def glue_scores(task: str, value: float) -> dict:
    metrics = {GLUE_MAIN[task]: value}
    if task in ("mrpc", "qqp"):
        metrics["f1"] = value + 3
    return metrics


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ----------------------------------------------------------------- runs


def test_find_runs_recursive_skips_unfinished(tmp_path):
    write_run(tmp_path / "a" / "sst2_s0", task="glue/sst2", method="salora", seed=0, best={"accuracy": 90})
    write_run(tmp_path / "b" / "deep" / "sst2_s1", task="glue/sst2", method="salora", seed=1,
              best={"accuracy": 92})
    write_run(tmp_path / "a" / "sst2_s2", task="glue/sst2", method="salora", seed=2,
              best={"accuracy": 10}, status="running")
    scan = find_runs([tmp_path, tmp_path / "a"])  # overlapping paths list each run once
    assert sorted(r.seed for r in scan) == [0, 1]
    assert len(scan.notes) == 1 and "sst2_s2" in scan.notes[0] and "running" in scan.notes[0]
    report = build_metrics_report(scan)
    assert report.rows[0].n == 2
    assert any("running" in n for n in report.notes)
    assert "## Notes" in report.markdown


def test_find_runs_errors(tmp_path):
    with pytest.raises(SaloraError, match="no runs found"):
        find_runs(tmp_path)
    with pytest.raises(SaloraError, match="no such file"):
        find_runs(tmp_path / "nowhere")
    write_run(tmp_path / "r", task="glue/sst2", method="lora", seed=0, best={"accuracy": 1}, status="failed")
    with pytest.raises(SaloraError, match="no finished runs"):
        find_runs(tmp_path)


def test_missing_and_corrupted_metrics_raise(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaloraError, match="metrics.json missing"):
        load_run(tmp_path / "empty")
    bad = write_run(tmp_path / "bad", task="glue/sst2", method="lora", seed=0, best={"accuracy": 1})
    (bad / "metrics.json").write_text('{"task": "glue/sst2", "method": ')
    with pytest.raises(SaloraError, match="corrupted") as info:
        find_runs(tmp_path)
    assert "\n" not in str(info.value)
    (bad / "metrics.json").write_text('{"seed": 0}')
    with pytest.raises(SaloraError, match="corrupted"):
        load_run(bad)


def test_duplicate_seed_counted_once(tmp_path):
    import os

    old = write_run(tmp_path / "old", task="glue/rte", method="lora", seed=0, best={"accuracy": 50})
    write_run(tmp_path / "new", task="glue/rte", method="lora", seed=0, best={"accuracy": 70})
    os.utime(old / "metrics.json", (1, 1))
    scan = find_runs(tmp_path)
    assert [r.best["accuracy"] for r in scan] == [70]
    assert any("old" in n for n in scan.notes)


# -------------------------------------------------------------- metrics


def test_mean_std_over_seeds(tmp_path):
    for seed, (acc, fin, pfinal, t) in enumerate([(90, 89, 200, 10), (92, 91, 210, 20), (94, 93, 220, 30)]):
        write_run(tmp_path / f"sst2_{seed}", task="glue/sst2", method="salora", seed=seed,
                  best={"accuracy": acc}, final={"accuracy": fin}, params=(300, pfinal), time_s=t)
    for seed, (acc, f1) in enumerate([(85, 80), (87, 83)]):
        write_run(tmp_path / f"mrpc_{seed}", task="glue/mrpc", method="lora", seed=seed,
                  best={"accuracy": acc, "f1": f1})
    write_run(tmp_path / "rte_0", task="glue/rte", method="lora", seed=0, best={"accuracy": 66.5})

    report = build_metrics_report(find_runs(tmp_path))
    rows = {(r.task, r.method): r for r in report.rows}
    sst2 = rows["glue/sst2", "salora"]
    assert sst2.n == 3 and sst2.seeds == [0, 1, 2]
    assert sst2.best_main.mean == pytest.approx(92.0) and sst2.best_main.std == pytest.approx(2.0)
    assert sst2.final_main.mean == pytest.approx(91.0) and sst2.final_main.std == pytest.approx(2.0)
    assert sst2.params_initial == 300 and sst2.params_final == pytest.approx(210)
    assert sst2.train_time_s == pytest.approx(20)
    mrpc = rows["glue/mrpc", "lora"]
    assert mrpc.best["f1"].mean == pytest.approx(81.5)
    assert mrpc.best["f1"].std == pytest.approx(math.sqrt(4.5))  # (1.5² + 1.5²) / (2 - 1)
    rte = rows["glue/rte", "lora"]
    assert rte.best_main.std is None  # one seed: no std

    md = report.markdown
    assert "92.00 ± 2.00" in md and "91.00 ± 2.00" in md
    assert "F1 81.50 ± 2.12" in md
    assert "| 66.50 |" in md and "66.50 ±" not in md
    assert "best dev checkpoint" in md and "ddof = 1" in md
    # Table rows follow the GLUE task order (sst2 before mrpc before rte).
    assert md.index("glue/sst2") < md.index("glue/mrpc") < md.index("glue/rte")
    assert "GLUE avg" not in md  # no method has all eight tasks


def test_glue_average_only_when_complete(tmp_path):
    values = {t: 60.0 + 3 * i for i, t in enumerate(GLUE_MAIN)}
    for task, value in values.items():
        for seed in (0, 1):
            write_run(tmp_path / f"salora_{task}_{seed}", task=f"glue/{task}", method="salora", seed=seed,
                      main=GLUE_MAIN[task], best=glue_scores(task, value + (1 if seed else -1)),
                      final=glue_scores(task, value - 2))
        if task != "rte":  # lora lacks RTE: no average for it
            write_run(tmp_path / f"lora_{task}", task=f"glue/{task}", method="lora", seed=0,
                      main=GLUE_MAIN[task], best=glue_scores(task, value))
    report = build_metrics_report(find_runs(tmp_path))
    assert [a.method for a in report.glue_averages] == ["salora"]
    expected = sum(values.values()) / 8
    assert report.glue_averages[0].best == pytest.approx(expected)
    assert report.glue_averages[0].final == pytest.approx(expected - 2)

    rows = read_csv(report.csv)
    averages = [r for r in rows if r["task"] == "glue/average"]
    assert [(r["method"], float(r["main_best_mean"])) for r in averages] == [("salora", pytest.approx(expected))]
    md = report.markdown
    assert md.count("| GLUE avg |") == 1
    summary = md[md.index("## GLUE summary"):]
    salora_line = next(l for l in summary.splitlines() if l.startswith("| salora"))
    lora_line = next(l for l in summary.splitlines() if l.startswith("| lora"))
    assert salora_line.rstrip(" |").endswith(f"{expected:.2f}")
    assert lora_line.rstrip(" |").endswith("—")  # Avg column blank for the incomplete method
    # The main metric of each task enters the average: CoLA's MCC, STS-B's Pearson, MNLI's acc-m.
    assert "CoLA MCC" in md and "STS-B Pearson" in md and "MNLI Acc-m" in md


def test_salora_minus_lora_paired_by_seed(tmp_path):
    for seed, (sal, lora) in enumerate([(90.0, 89.0), (91.0, 92.0), (88.0, 85.0)]):
        write_run(tmp_path / f"s{seed}", task="glue/sst2", method="salora", seed=seed, best={"accuracy": sal})
        write_run(tmp_path / f"l{seed}", task="glue/sst2", method="lora", seed=seed, best={"accuracy": lora})
    write_run(tmp_path / "rte_s", task="glue/rte", method="salora", seed=0, best={"accuracy": 60.0})
    write_run(tmp_path / "rte_l", task="glue/rte", method="lora", seed=1, best={"accuracy": 70.0})  # no pair
    summary = build_metrics_report(find_runs(tmp_path)).markdown
    summary = summary[summary.index("## GLUE summary"):]
    line = next(l for l in summary.splitlines() if l.startswith("| SaLoRA − LoRA"))
    assert line.startswith("| SaLoRA − LoRA | +1.00 (2/3) | — |")  # (1 - 1 + 3) / 3; RTE unpaired


def test_csv_parses_back(tmp_path):
    for seed, (acc, f1) in enumerate([(85.0, 80.0), (87.0, 83.0)]):
        write_run(tmp_path / f"mrpc_{seed}", task="glue/mrpc", method="salora", seed=seed,
                  best={"accuracy": acc, "f1": f1}, final={"accuracy": acc - 1, "f1": f1}, params=(221184, 147456),
                  time_s=100 + seed)
    write_run(tmp_path / "cola", task="glue/cola", method="bitfit", seed=3, main="matthews_corrcoef",
              best={"matthews_corrcoef": 55.25, "accuracy": 80.0}, params=(102000, 102000))
    report = build_metrics_report(find_runs(tmp_path))
    written = report.write(tmp_path / "out", "table")
    assert [p.name for p in written] == ["table.md", "table.csv"]
    rows = {(r["task"], r["method"]): r for r in read_csv((tmp_path / "out" / "table.csv").read_text())}
    mrpc = rows["glue/mrpc", "salora"]
    assert mrpc["n_seeds"] == "2" and mrpc["seeds"] == "0;1" and mrpc["main_metric"] == "accuracy"
    assert float(mrpc["main_best_mean"]) == pytest.approx(86.0)
    assert float(mrpc["main_best_std"]) == pytest.approx(math.sqrt(2))
    assert float(mrpc["main_final_mean"]) == pytest.approx(85.0)
    assert float(mrpc["f1_mean"]) == pytest.approx(81.5) and float(mrpc["f1_std"]) == pytest.approx(math.sqrt(4.5))
    assert float(mrpc["params_initial_mean"]) == 221184 and float(mrpc["params_final_mean"]) == 147456
    assert float(mrpc["train_time_s_mean"]) == pytest.approx(100.5)
    assert mrpc["matthews_corrcoef_mean"] == ""
    cola = rows["glue/cola", "bitfit"]
    assert float(cola["main_best_mean"]) == pytest.approx(55.25) and cola["main_best_std"] == ""
    assert float(cola["accuracy_mean"]) == 80.0
    # Markdown written next to the CSV links the run folders relative to itself.
    md = (tmp_path / "out" / "table.md").read_text()
    assert "](../mrpc_0/config.yaml)" in md and "](../cola/command.txt)" in md


def test_style_table_with_sample_rewrites(tmp_path):
    # 25 sources per direction: the rule shows positions 0, 2, 5, 7, 10, 12, 15, 17, 20, 22 of each.
    def gens(prefix=""):
        out = []
        for i in range(25):
            out.append({"source": f"the food was bad {i}", "content": f"the food was ___ {i}",
                        "source_style": "negative", "target_style": "positive",
                        "generation": f"{prefix}the food was great {i}", "references": [f"food was good {i}", "x"]})
            out.append({"source": f"the food was good {i}", "content": f"the food was ___ {i}",
                        "source_style": "positive", "target_style": "negative",
                        "generation": f"{prefix}the food was awful {i}", "references": [f"food was bad {i}"]})
        return out
    style = {"bleu": 20.0, "self_bleu": 40.0, "accuracy": 80.0, "perplexity": 55.5, "g_score": 40.0}
    write_run(tmp_path / "yelp0", task="style/yelp", method="salora", seed=0, main="bleu", best=style,
              generations=gens())
    write_run(tmp_path / "yelp1", task="style/yelp", method="salora", seed=1, main="bleu",
              best={**style, "bleu": 24.0, "perplexity": 60.5}, generations=gens("SEED ONE "))
    lora = gens()
    for g in lora[:10]:  # the first five sources of each direction rewritten differently
        g["generation"] = "LORA " + g["generation"]
    write_run(tmp_path / "yelp_lora", task="style/yelp", method="lora", seed=0, main="bleu", best=style,
              generations=list(reversed(lora)))  # aligned by source, not by line
    write_run(tmp_path / "yelp_bitfit", task="style/yelp", method="bitfit", seed=0, main="bleu", best=style)
    write_run(tmp_path / "sst2", task="glue/sst2", method="salora", seed=0, best={"accuracy": 91.0})

    report = build_metrics_report(find_runs(tmp_path))
    md = report.markdown
    assert "## GLUE" in md and "## Text style transfer" in md
    style_part = md[md.index("## Text style transfer"):]
    assert "glue/sst2" not in style_part[:style_part.index("## Sample rewrites")]
    assert "BLEU (best)" in style_part and "PPL" in style_part and "G-score" in style_part
    assert "22.00 ± 2.83" in style_part and "58.00 ± 3.54" in style_part  # BLEU, perplexity
    samples = md[md.index("## Sample rewrites"):md.index("## Runs")]
    neg = samples[samples.index("negative → positive (10 of 25 sources)"):samples.index("positive → negative")]
    pos = samples[samples.index("positive → negative (10 of 25 sources)"):]
    shown = [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]
    for i in range(25):
        assert (f"| {i} | the food was bad {i} |" in neg) == (i in shown)
        assert (f"| {i} | the food was good {i} |" in pos) == (i in shown)
    # one row holds the source, the content given, the first reference and each method's rewrite
    assert "| 2 | the food was bad 2 | the food was ___ 2 | food was good 2 | the food was great 2 | " \
           "LORA the food was great 2 | — |" in neg
    assert "| 7 | the food was good 7 | the food was ___ 7 | food was bad 7 | the food was awful 7 | " \
           "the food was awful 7 | — |" in pos
    assert "| # | Source | Content | Reference | salora | lora | bitfit |" in samples
    assert "SEED ONE" not in samples  # only the first seed's generations
    assert "no generations.jsonl" in samples  # the bitfit run has none
    assert "identical rewrite for 40 of the 50 test sources" in samples
    assert report.tables and len(report.tables) == 3  # GLUE, GLUE summary, style


def test_evenly_spaced_positions():
    assert evenly_spaced(500, 10) == [0, 50, 100, 150, 200, 250, 300, 350, 400, 450]
    assert evenly_spaced(3, 10) == [0, 1, 2]
    assert evenly_spaced(0, 10) == []


def test_style_test_split_columns(tmp_path):
    dev = {"bleu": 60.0}
    test = {"bleu": 21.0, "accuracy": 85.0}
    evals = [{"step": 100, "split": "dev", "metrics": dev}, {"step": 100, "split": "test", "metrics": test}]
    write_run(tmp_path / "g", task="style/gyafc", method="lora", seed=0, main="bleu", best=dev, evals=evals)
    report = build_metrics_report(find_runs(tmp_path))
    assert report.rows[0].test["bleu"].mean == 21.0
    md = report.markdown
    assert "test BLEU" in md and "test Acc" in md and "| 21.00 | 85.00 |" in md
    row = read_csv(report.csv)[0]
    assert float(row["test_accuracy_mean"]) == 85.0 and float(row["main_best_mean"]) == 60.0


def test_rich_rendering(tmp_path):
    write_run(tmp_path / "r", task="glue/sst2", method="lora", seed=0, best={"accuracy": 90.5})
    buf = io.StringIO()
    build_metrics_report(find_runs(tmp_path)).print(Console(file=buf, width=200))
    assert "90.50" in buf.getvalue() and "glue/sst2" in buf.getvalue()


# ------------------------------------------------------------------ ranks


def test_rank_table_cells_and_budget(tmp_path):
    layers = [[8] * 6 for _ in range(6)]
    layers[2][4] = 7  # total 287 of a 288 budget
    layers[5] = [0, 3, 9, 8, 12, 16]
    run = write_run(tmp_path / "run", task="glue/rte", method="salora", seed=1, best={"accuracy": 70},
                    ranks=bert_ranks(layers, budget_total=288))
    report = build_rank_report(run)
    assert report.layers == list(range(6)) and report.roles == list(ROLES)
    assert report.cells[2, "ffn_in"] == 7 and report.cells[5, "query"] == 0
    assert report.row_totals[2] == 47 and report.row_totals[5] == 48
    assert report.col_totals["ffn_in"] == 8 * 4 + 7 + 12 and report.col_totals["query"] == 40
    assert report.total == 287 and report.initial_total == 36 * 12
    assert report.budget_line == "total 287 / budget 288 (99.7 %)"

    md = report.markdown
    assert "| 5 | 0 | 3 | 9 | 8 | 12 | 16 | 48 |" in md
    assert "| **Total** | **40** |" in md and "**287**" in md
    assert "total 287 / budget 288 (99.7 %)" in md
    buf = io.StringIO()
    report.print(Console(file=buf, width=200))
    assert "total 287 / budget 288 (99.7 %)" in buf.getvalue()


def test_llama_ffn_in_sums_two_matrices(tmp_path):
    run = write_run(tmp_path / "llama", task="style/yelp", method="salora", seed=0, main="bleu",
                    best={"bleu": 10.0}, model="smollm2", ranks=llama_ranks())
    report = build_rank_report(run)
    assert report.counts[0, "ffn_in"] == 2 and report.counts[0, "query"] == 1
    assert report.cells[0, "ffn_in"] == 10 and report.cells[1, "ffn_in"] == 16
    assert report.row_totals == {0: 8 + 2 + 6 + 5 + 10 + 4, 1: 1 + 0 + 8 + 6 + 16 + 2}
    assert report.col_totals["ffn_in"] == 26 and report.n_matrices == 14
    assert report.total == 68 and report.budget_line == "total 68 / budget 70 (97.1 %)"
    assert report.role_label("ffn_in") == "ffn_in ×2" and report.role_label("key") == "key"
    md = report.markdown
    assert "ffn_in ×2" in md and "2 matrices per layer (gate_proj + up_proj)" in md
    assert "| 1 | 1 | 0 | 8 | 6 | 16 | 2 | 33 |" in md
    assert report.role_shares()["ffn_in"] == pytest.approx(26 / 68)
    assert report.layer_shares() == {0: pytest.approx(35 / 68), 1: pytest.approx(33 / 68)}


def test_rank_report_figures_and_comparison(tmp_path):
    bert = write_run(tmp_path / "bert", task="glue/sst2", method="salora", seed=0, best={"accuracy": 90},
                     ranks=bert_ranks([[8, 4, 6, 9, 12, 3], [2, 0, 7, 8, 10, 5]], budget_total=72))
    llama = write_run(tmp_path / "llama", task="style/yelp", method="salora", seed=0, main="bleu",
                      best={"bleu": 10.0}, ranks=llama_ranks())
    reports = [build_rank_report(bert), build_rank_report(llama)]
    written = reports[0].write()
    assert [p.name for p in written] == ["ranks.md", "ranks_heatmap.png", "rank_trajectory.png"]
    written += reports[1].write(tmp_path / "elsewhere")  # no trajectory: a placeholder panel
    out = compare_rank_distributions(reports, tmp_path / "results" / "ranks" / "distribution.png")
    for path in written[1:3] + written[4:] + [out]:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path
    assert "![rank heatmap](ranks_heatmap.png)" in (bert / "ranks.md").read_text()
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(SaloraError):
        compare_rank_distributions([], tmp_path / "x.png")


def test_rank_shares_average_each_tasks_seeds(tmp_path):
    from salora_cli.reports.rank_shares import rank_shares_markdown

    # task A: query holds 12 of 48 then 24 of 48 (25 % and 50 %); task B one seed, uniform over roles
    a0 = build_rank_report(write_run(tmp_path / "a0", task="glue/cola", method="salora", seed=0, best={"mcc": 1},
                                     ranks=bert_ranks([[12, 4, 8, 8, 8, 8]])))
    a1 = build_rank_report(write_run(tmp_path / "a1", task="glue/cola", method="salora", seed=1, best={"mcc": 1},
                                     ranks=bert_ranks([[24, 0, 4, 4, 8, 8]])))
    b0 = build_rank_report(write_run(tmp_path / "b0", task="glue/stsb", method="salora", seed=0, best={"mcc": 1},
                                     ranks=bert_ranks([[8, 8, 8, 8, 8, 8]])))
    md = rank_shares_markdown({"glue/cola": [a0, a1], "glue/stsb": [b0]}, {"glue/cola": 1e-3, "glue/stsb": None})
    # query: mean of 25.0 and 50.0, sd 17.7; key: 8.3 and 0.0
    assert "| glue/cola | 0.001 | 2 | 37.5 ± 17.7 | 4.2 ± 5.9 |" in md
    assert "| glue/stsb | — | 1 | 16.7 | 16.7 | 16.7 | 16.7 | 16.7 | 16.7 |" in md
    assert "| glue/cola | 0.001 | 2 | 100.0 ± 0.0 |" in md  # one layer holds everything
    assert "uniform spread is 16.7 % per role and 100.0 % per layer" in md
    # a deeper model beside them: the shallower tasks' missing layers are "—", not 0.0
    deep = build_rank_report(write_run(tmp_path / "deep", task="instruct/alpaca", method="salora", seed=0,
                                       best={"mcc": 1}, ranks=bert_ranks([[8] * 6, [8] * 6])))
    md = rank_shares_markdown({"glue/stsb": [b0], "instruct/alpaca": [deep]}, {})
    assert "| glue/stsb | — | 1 | 100.0 | — |" in md and "| instruct/alpaca | — | 1 | 50.0 | 50.0 |" in md


def test_rank_shares_by_lr_separates_lr_from_task(tmp_path):
    from salora_cli.reports.rank_shares import lr_shares_markdown

    # seed 0 of one task at two lrs, another task at one: query + key and FFN shares of 48
    low = build_rank_report(write_run(tmp_path / "low", task="glue/cola", method="salora", seed=0, best={"mcc": 1},
                                      ranks=bert_ranks([[4, 4, 8, 8, 12, 12]])))
    high = build_rank_report(write_run(tmp_path / "high", task="glue/cola", method="salora", seed=0, best={"mcc": 1},
                                       ranks=bert_ranks([[12, 12, 8, 8, 4, 4]])))
    other = build_rank_report(write_run(tmp_path / "other", task="glue/stsb", method="salora", seed=0,
                                        best={"mcc": 1}, ranks=bert_ranks([[8, 8, 8, 8, 8, 8]])))
    md = lr_shares_markdown({"glue/cola": {1e-3: low, 2e-3: high}, "glue/stsb": {2e-3: other}})
    assert "| Task | lr 0.001 | lr 0.002 |" in md
    assert "| glue/cola | 16.7 / 50.0 | 50.0 / 16.7 |" in md
    assert "| glue/stsb | — | 33.3 / 33.3 |" in md  # an lr the task did not try
    assert "(uniform: 33.3 / 33.3)" in md


def test_rank_report_errors(tmp_path):
    full = write_run(tmp_path / "full", task="glue/sst2", method="full", seed=0, best={"accuracy": 90})
    with pytest.raises(SaloraError, match="no ranks.json"):
        build_rank_report(full)
    bad = write_run(tmp_path / "bad", task="glue/sst2", method="salora", seed=0, best={"accuracy": 90})
    (bad / "ranks.json").write_text("{not json")
    with pytest.raises(SaloraError, match="corrupted"):
        build_rank_report(bad)
    (bad / "ranks.json").write_text(json.dumps({"modules": [{"role": "query", "rank": -1}]}))
    with pytest.raises(SaloraError, match="corrupted"):
        build_rank_report(bad)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "ranks.json").write_text(json.dumps(bert_ranks([[1] * 6])))
    with pytest.raises(SaloraError, match="metrics.json missing"):
        build_rank_report(orphan)


def test_gpt2_fused_attention_note(tmp_path):
    modules = [{"name": f"transformer.h.{l}.{n}", "role": r, "layer": l, "rank": 4, "r_init": 8}
               for l in range(2) for n, r in (("attn.c_attn", "query"), ("attn.c_proj", "attn_out"),
                                              ("mlp.c_fc", "ffn_in"), ("mlp.c_proj", "ffn_out"))]
    run = write_run(tmp_path / "gpt2", task="style/yelp", method="lora", seed=0, main="bleu",
                    best={"bleu": 1.0}, ranks={"method": "lora", "r_init": 8, "budget_total": 64, "modules": modules})
    report = build_rank_report(run)
    assert report.roles == ["query", "attn_out", "ffn_in", "ffn_out"]
    assert report.budget_line == "total 32 (fixed rank r = 4 per matrix)"  # plain LoRA: no budget
    assert "fused c_attn" in report.markdown


def test_claim_table_cell_by_cell_with_the_majority_class(tmp_path):
    """SaLoRA against LoRA per task: mean, paired difference, seeds ahead, the verdict as it is, and
    a cell neither method learned (within 5 points of the majority class) marked as little evidence."""
    from salora_cli.reports.budget_tables import build_budget_tables
    from salora_cli.reports.runs import find_runs

    scores = {("glue/sst2", "salora"): [82, 83, 84], ("glue/sst2", "lora"): [81, 84, 82],
              ("glue/rte", "salora"): [52, 53, 54], ("glue/rte", "lora"): [55, 54, 56]}
    budget_of = {}
    for (task, method), values in scores.items():
        for seed, v in enumerate(values):
            name = f"{task.split('/')[1]}_{method}_{seed}"
            write_run(tmp_path / name, task=task, method=method, seed=seed, best={"accuracy": float(v)})
            budget_of[name] = 8
    tables = build_budget_tables(find_runs(tmp_path).runs, budget_of, {8: 12}, lr_selected=False,
                                 majority={"glue/sst2": 50.92, "glue/rte": 52.71})
    claim = tables.claim_markdown()
    assert ("| Budget | Task | SaLoRA | LoRA | majority class | paired Δ | 95 % interval | seeds ahead | "
            "verdict |") in claim
    assert "| 8 | glue/sst2 | 83.00 | 82.33 | 50.92 | +0.67 | [-3.13, +4.46] | 2/3 | level |" in claim
    assert ("| 8 | glue/rte | 53.00 | 55.00 | 52.71 | -2.00 | [-4.48, +0.48] | 0/3 | level (neither method 5 "
            "points above the majority class: not learned, little evidence either way) |") in claim
    # without the data at hand there is no majority column, and nothing is marked unlearned
    plain = build_budget_tables(find_runs(tmp_path).runs, budget_of, {8: 12}, lr_selected=False).claim_markdown()
    assert "majority" not in plain and "| 8 | glue/rte | 53.00 | 55.00 | -2.00 | [-4.48, +0.48] | 0/3 | level |" in plain


def test_paired_interval_and_verdict():
    """95 % paired-t interval over seeds; the verdict says where it lies against 0."""
    from salora_cli.reports.metrics_table import PairedDifference

    def diff(*d):
        return PairedDifference(sum(d) / len(d), sum(x > 0 for x in d), len(d), d)

    assert diff(1.0, -1.0, 2.0).interval() == pytest.approx((-3.1279, 4.4612), abs=1e-3)
    assert diff(2.0, 3.0, 2.5, 3.5, 2.0).verdict == "ahead"
    assert diff(-2.0, -3.0, -2.5).verdict == "behind"
    assert diff(1.0, -1.0, 2.0).verdict == "level"
    assert diff(4.0).interval() is None and diff(4.0).verdict is None  # one seed: no interval


def test_every_method_picks_its_best_among_the_same_evaluations(tmp_path):
    # SaLoRA reaches its budget at step 200; LoRA's evaluation at 150 would give it a third try.
    def evals(scores, first_at_budget):
        return [{"step": s, "split": "dev", "metrics": {"accuracy": a}, "at_budget": s >= first_at_budget}
                for s, a in zip((150, 200, 250), scores)]
    for seed in (0, 1):
        write_run(tmp_path / f"lora_{seed}", task="glue/sst2", method="lora", seed=seed,
                  best={"accuracy": 85.0}, evals=evals((85.0, 80.0 + seed, 81.0), 0))
        write_run(tmp_path / f"salora_{seed}", task="glue/sst2", method="salora", seed=seed,
                  best={"accuracy": 83.0}, evals=evals((88.0, 82.0, 83.0), 200))
    # another task's schedule is its own: nothing there reaches its budget late
    write_run(tmp_path / "mrpc", task="glue/mrpc", method="lora", seed=0, best={"accuracy": 70.0},
              evals=[{"step": 40, "split": "dev", "metrics": {"accuracy": 70.0}, "at_budget": True},
                     {"step": 80, "split": "dev", "metrics": {"accuracy": 69.0}, "at_budget": True}])

    rows = {(r.task, r.method): r for r in build_metrics_report(find_runs(tmp_path)).rows}
    lora, salora = rows["glue/sst2", "lora"], rows["glue/sst2", "salora"]
    assert [r.best_step for r in lora.runs] == [250, 200]  # 81 at 250 for seed 0; the tie 81 / 81 goes to 200
    assert lora.best_main.mean == pytest.approx(81.0)
    assert salora.best_main.mean == pytest.approx(83.0)
    assert rows["glue/mrpc", "lora"].best_main.mean == pytest.approx(70.0)
