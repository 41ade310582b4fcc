"""The results summary on the project's front page (README.md), written by `make reproduce` from the
same GLUE overview that opens results/glue.md, so the README never holds a hand-copied number.

The summary lives between two marker comments; the report step replaces what lies between them and
leaves the rest of README.md alone (a README without the markers is not touched). It is short on
purpose: each task's main metric per method, the SaLoRA verdicts, and links to the full tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from salora_cli.core import atomic
from salora_cli.reports.glue_overview import (COMPARED, NOT_LEARNED_MARK, PAPER_TASKS, SAMPLED_MARK, GlueOverview,
                                              _interval_text, _signed, method_name, metric_label, task_label)
from salora_cli.reports.metrics_table import _Section

START = "<!-- results-summary:start: written by `make reproduce` from results/, do not edit by hand -->"
END = "<!-- results-summary:end -->"


def _task_header(overview: GlueOverview, task: str) -> str:
    rows = overview.data.get(task)
    marks = (SAMPLED_MARK if rows and rows.sampled else "") + (NOT_LEARNED_MARK if task in overview.not_learned else "")
    return f"{task_label(task)}{marks} {metric_label(overview.main_metric(task))}"


def main_metric_table(overview: GlueOverview) -> _Section:
    """Method × task, each task's main metric only (glue.md has the others), trainable parameters
    (start → end of training), seeds, and the papers' average."""
    tasks = [t for t in PAPER_TASKS if t in overview.tasks_run]
    averages = {m: overview.average(m) for m in overview.methods}
    with_average = any(a is not None for a in averages.values())
    headers = ["Method", "Params", "Seeds"] + [_task_header(overview, t) for t in tasks] + (["Avg"] if with_average else [])
    section = _Section(title="", headers=headers, right=[False] + [True] * (len(headers) - 1))
    for method in overview.methods:
        means = [overview.mean(t, method) for t in tasks]
        cells = [method_name(method) + overview.method_labels.get(method, ""), overview._params(method),
                 overview._seeds(method)]
        cells += ["—" if m is None else f"{m:.2f}" for m in means]
        if with_average:
            cells.append("—" if averages[method] is None else f"{averages[method]:.2f}")
        section.rows.append(cells)
    return section


def verdict_table(overview: GlueOverview) -> _Section:
    """Per task and overall: SaLoRA − each compared method, paired by seed, with its 95 % interval."""
    headers = ["", *(f"SaLoRA − {method_name(o)} [95 %]" for o in COMPARED)]
    section = _Section(title="", headers=headers, right=[False] + [True] * len(COMPARED))
    for task in overview.tasks_run:
        cells = [task_label(task)]
        for other in COMPARED:
            d = overview.paired(task, other)
            if d is None:
                cells.append("—")
                continue
            ci = d.interval()
            cells.append(f"{_signed(d.mean)}{'' if ci is None else ' ' + _interval_text(ci)} "
                         f"{d.verdict or '(one seed pair)'}")
        section.rows.append(cells)
    overall = ["**all learned tasks**"]
    for other in COMPARED:
        o = overview.overall(other)
        overall.append(f"**{_signed(o.mean)} {_interval_text(o.interval)} {o.verdict}**" if o.diffs else "—")
    section.rows.append(overall)
    return section


def summary_markdown(overviews: Sequence[GlueOverview], profile: str, link: str = "results") -> str:
    """The front page's results section body: one table and one verdict table per overview."""
    parts = []
    for overview in overviews:
        budget = f"budget {overview.budget} (average rank {overview.budget} per matrix)" if overview.budget else "no budget"
        left_out = [t for o in COMPARED for t in overview.overall(o).left_out]
        notes = [f"{SAMPLED_MARK} trained on a sample of the official rows" if any(
            r.sampled for r in overview.data.values()) else "",
            f"{NOT_LEARNED_MARK} no method learned it (left out of the overall verdict)" if overview.not_learned else ""]
        parts += [f"GLUE dev, {overview.model}, profile `{profile}`, adapters at {budget}: each task's main metric, "
                  f"mean over seeds at the best of the same dev evaluations for every method. Every metric, the "
                  f"intervals, the lr choices and the rules: [{link}/glue.md]({link}/glue.md); what each part "
                  f"cost: [{link}/README.md]({link}/README.md).",
                  main_metric_table(overview).markdown()]
        if any(notes):
            parts.append("; ".join(n for n in notes if n) + ".")
        parts += ["SaLoRA against LoRA and AdaLoRA at the same final rank, paired by seed (per task: paired t "
                  "interval; overall: the mean of the per-task means, stratified bootstrap over seeds; "
                  "*ahead* / *behind* when the interval excludes 0, else *level*):",
                  verdict_table(overview).markdown()]
        if left_out:
            parts.append("Left out of the overall verdicts: " + ", ".join(dict.fromkeys(left_out)) + ".")
    return "\n\n".join(parts)


def write_summary(readme: Path, overviews: Sequence[GlueOverview], profile: str, link: str = "results") -> Path | None:
    """Replace what lies between the markers in `readme`; None (nothing written) without both markers
    or without an overview, so a README that does not ask for the summary is never changed."""
    if not overviews or not readme.is_file():
        return None
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return None
    body = summary_markdown(overviews, profile, link)
    new = f"{text[:start + len(START)]}\n{body}\n{text[end:]}"
    if new != text:
        atomic.write_text(readme, new)
    return readme
