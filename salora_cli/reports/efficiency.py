"""efficiency.md: what each method costs, from the runs' own records (metrics.json), plus a
side-by-side inference timing of each GLUE task's merged SaLoRA model against the base model."""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

from salora_cli.core import atomic
from salora_cli.reports.runs import RunRecord, first_seed_per_task


def build_efficiency_report(runs: list[RunRecord], out: Path, inference_examples: int = 256) -> Path:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.method)].append(run.raw)
    step_time = _seed_means(groups, "step_time_s")
    median_step = _seed_means(groups, "step_time_median_s")
    lines = ["# Efficiency", "",
             "Measured during the runs themselves (mean over seeds): wall time per training epoch,",
             "time per optimizer step relative to LoRA on the same task (same batch size and data),",
             "and the peak memory of the run (peak RSS on CPU, reset when the run starts; peak allocation",
             "on GPU). Memory is left blank for runs recorded before that reset existed: theirs was the",
             "peak of a process that may have run other runs first, so it does not compare.",
             "",
             "Two step times: the mean (training time ÷ steps: what a user waits, removal steps and any",
             "burst of other load on the machine included) and the median over the run's steps of each",
             "step's wall time (what a step costs; a burst of outside load that slows a few dozen of a",
             "short run's steps moves the mean by several %, the median hardly). Blank where a run was",
             "recorded before per-step times were kept.",
             "",
             "| Task | Method | n | s / epoch | s / step | step time ÷ LoRA | median s / step | median ÷ LoRA "
             "| peak memory (MB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, method), recs in sorted(groups.items()):
        per_epoch = [r["train_time_s"] / r["epochs"] for r in recs if r.get("epochs")]
        # older records hold the peak of a whole process that may have run other runs first
        memory = [r["peak_memory_mb"] for r in recs
                  if r.get("peak_memory_mb") and r.get("peak_memory_scope") == "run"]
        cells = [task, method, str(len(recs)), _num(per_epoch and statistics.mean(per_epoch), 1),
                 _num(step_time.get((task, method)), 3), _num(_to_lora(step_time, task, method), 2),
                 _num(median_step.get((task, method)), 3), _num(_to_lora(median_step, task, method), 2),
                 _num(memory and statistics.mean(memory), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    previous = out.read_text(encoding="utf-8") if out.is_file() else ""
    lines += _inference_section(runs, inference_examples, previous)
    atomic.write_text(out, "\n".join(lines) + "\n")
    return out


def _seed_means(groups: dict[tuple[str, str], list[dict]], key: str) -> dict[tuple[str, str], float]:
    """Per (task, method), the mean over seeds of a per-run time, where every seed recorded it (a
    mean over a subset of seeds would not pair with the other method's)."""
    return {k: statistics.mean(r[key] for r in v) for k, v in groups.items() if all(r.get(key) for r in v)}


def _to_lora(times: dict[tuple[str, str], float], task: str, method: str) -> float | None:
    return times[(task, method)] / times[(task, "lora")] if (task, method) in times and (task, "lora") in times else None


def _inference_section(runs: list[RunRecord], n_examples: int, previous: str) -> list[str]:
    firsts = {t: r for t, r in first_seed_per_task(runs, "salora").items() if r.family == "glue"}
    if not firsts:
        return []
    lines = ["", "## Inference: merged SaLoRA vs the base model", "",
             "The first SaLoRA seed of each GLUE task, reloaded from its folder with the update merged",
             "into W, against the pre-trained model with the same head shape: dev-set evaluation of",
             f"{n_examples} examples, interleaved, median of 5 after a warm-up. A ratio of 1.00 means no",
             "added latency. (Style transfer is left out: generation lengths differ between models.)",
             "A run restored from results/runs/ has no weights on a fresh machine: its row is the one",
             "measured when the run was made, kept from the previous efficiency.md.", "",
             "| Task | Run | base (s) | merged SaLoRA (s) | merged ÷ base |", "|---|---|---:|---:|---:|"]
    for task, run in firsts.items():
        if not (run.path / "adapter").is_dir():  # a run restored from results/runs: no weights here
            kept = [line for line in previous.splitlines() if line.startswith(f"| {task} | {run.path.name} | ")]
            lines.append(kept[0] if kept else
                         f"| {task} | {run.path.name} | – | – | not measured: the run's weights are not on this machine |")
            continue
        base_s, merged_s = measure_merged_inference(run.path, n_examples)
        lines.append(f"| {task} | {run.path.name} | {base_s:.3f} | {merged_s:.3f} | {merged_s / base_s:.2f} |")
    return lines


def measure_merged_inference(run_path: Path, n_examples: int, repeats: int = 5) -> tuple[float, float]:
    """Median seconds to evaluate n dev examples: (base model, the run's merged model)."""
    import torch

    from salora_cli.run.evaluation import eval_examples, reload_run

    cfg, task, method, tokenizer = reload_run(run_path, "final")
    method.adapters.merge()
    base, _ = task.build_model(cfg.model)
    examples = eval_examples(cfg, task)[:n_examples]
    models = {"base": base.eval(), "merged": method.model.eval()}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for name, model in models.items():
                started = time.perf_counter()
                task.evaluate(model, tokenizer, examples, batch_size=cfg.train.eval_batch_size,
                              max_length=cfg.train.max_length, device=torch.device("cpu"))
                if i:  # the first round warms up both
                    times[name].append(time.perf_counter() - started)
    return statistics.median(times["base"]), statistics.median(times["merged"])


def _num(value, digits: int) -> str:
    return "" if value is None or value == [] else f"{value:.{digits}f}"
