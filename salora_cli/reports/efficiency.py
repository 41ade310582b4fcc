"""efficiency.md: what each method costs, from the runs' own records (metrics.json)."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from salora_cli import atomic
from salora_cli.reports.runs import RunRecord


def build_efficiency_report(runs: list[RunRecord], out: Path) -> Path:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.method)].append(run.raw)
    step_time = {k: statistics.mean(r["step_time_s"] for r in v if r.get("step_time_s"))
                 for k, v in groups.items() if any(r.get("step_time_s") for r in v)}
    lines = ["# Efficiency", "",
             "Measured during the runs themselves (mean over seeds): wall time per training epoch,",
             "time per optimizer step relative to LoRA on the same task (same batch size and data),",
             "and the peak memory of the run's process (peak RSS on CPU, peak allocation on GPU).",
             "Inference with the update merged into W costs what the base model costs: see `make bench`",
             "for the side-by-side measurement (merged SaLoRA / base).", "",
             "| Task | Method | n | s / epoch | s / step | step time ÷ LoRA | peak memory (MB) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (task, method), recs in sorted(groups.items()):
        per_epoch = [r["train_time_s"] / r["epochs"] for r in recs if r.get("epochs")]
        memory = [r["peak_memory_mb"] for r in recs if r.get("peak_memory_mb")]
        ratio = (step_time[(task, method)] / step_time[(task, "lora")]
                 if (task, method) in step_time and (task, "lora") in step_time else None)
        cells = [task, method, str(len(recs)), _num(per_epoch and statistics.mean(per_epoch), 1),
                 _num(step_time.get((task, method)), 3), _num(ratio, 2),
                 _num(memory and statistics.mean(memory), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    atomic.write_text(out, "\n".join(lines) + "\n")
    return out


def _num(value, digits: int) -> str:
    return "" if value is None or value == [] else f"{value:.{digits}f}"
