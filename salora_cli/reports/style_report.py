"""results/style.md in its task-agnostic form: zero-shot transfer (salora transfer) of the base model and
of every instruction-tuned run, one task at a time.

Sections: the table (a row per run: base, each method and seed, and each method's mean over seeds;
accuracy, ref-BLEU, self-BLEU, G, PPL of rewrites / sources / references and their ratio, shares of
empty, echo and off-task rewrites); per direction (accuracy, ref-BLEU, G); the share of identical
rewrites between every pair of rows' first seeds; SaLoRA against LoRA on G, seed by seed, with the
number of seeds SaLoRA is ahead; sample rewrites (reports.style_samples: evenly spaced sources, a rule
that never looks at an output) side by side with the base model. The task-specific recipe's runs, when
given, follow as a labelled alternative (reports.metrics_table's style section, as before).
"""
from __future__ import annotations

import itertools
import os
import statistics
from pathlib import Path
from typing import Iterable

from salora_cli.core import atomic
from salora_cli.reports.metrics_table import (TRANSFER_COLUMNS, MetricsReport, _clip, _link, _method_rank, _Section,
                                              build_metrics_report)
from salora_cli.reports.runs import CONFIG_FILE, RunRecord, read_config, read_generations
from salora_cli.reports.style_samples import N_PER_DIRECTION, MethodGenerations, build_style_samples

DIRECTION_COLUMNS = (("accuracy", "Acc"), ("bleu", "ref-BLEU"), ("g_score", "G"))


def _value(run: RunRecord, metric: str, direction: str | None = None) -> float | None:
    test = run.raw.get("test") or {}
    block = (test.get("directions") or {}).get(direction, {}) if direction else test.get("metrics", {})
    value = block.get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _row_name(run: RunRecord) -> str:
    return run.method if run.seed is None else f"{run.method} · seed {run.seed}"


def _ordered(runs: list[RunRecord]) -> list[RunRecord]:
    return sorted(runs, key=lambda r: (_method_rank(r.method), r.seed if r.seed is not None else -1, str(r.path)))


def _groups(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for run in _ordered(runs):
        out.setdefault(run.method, []).append(run)
    return out


def main_table(runs: list[RunRecord]) -> _Section:
    headers = ["Row", "n"] + [h for _, h in TRANSFER_COLUMNS]
    section = _Section(title="", headers=headers, right=[False] + [True] * (len(headers) - 1))
    for method, group in _groups(runs).items():
        for run in group:
            section.rows.append([_row_name(run), str(int(_value(run, "n") or 0))]
                                + [_cell(_value(run, m)) for m, _ in TRANSFER_COLUMNS])
        if len(group) > 1:
            section.rows.append([f"{method} · mean of {len(group)} seeds", ""]
                                + [_cell(_mean(_value(r, m) for r in group)) for m, _ in TRANSFER_COLUMNS])
    return section


def direction_table(runs: list[RunRecord]) -> _Section:
    directions = sorted({d for r in runs for d in ((r.raw.get("test") or {}).get("directions") or {})})
    headers = ["Row"] + [f"{d.replace('_to_', ' → ')}: {h}" for d in directions for _, h in DIRECTION_COLUMNS]
    section = _Section(title="", headers=headers, right=[False] + [True] * (len(headers) - 1))
    for run in _ordered(runs):
        section.rows.append([_row_name(run)] + [_cell(_value(run, m, d)) for d in directions for m, _ in DIRECTION_COLUMNS])
    return section


def first_seeds(runs: list[RunRecord]) -> list[RunRecord]:
    return [group[0] for group in _groups(runs).values()]


def identical_shares(runs: list[RunRecord]) -> _Section:
    """Share of the sources two rows (first seeds) rewrote identically, for every pair."""
    firsts = first_seeds(runs)
    outputs = {}
    for run in firsts:
        outputs[run.method] = {(r.get("source"), r.get("target_style")): str(r.get("generation", "")).strip()
                               for r in read_generations(run.generations_path)}
    section = _Section(title="", headers=["Pair", "identical", "shared sources"], right=[False, True, True])
    for a, b in itertools.combinations(firsts, 2):
        shared = set(outputs[a.method]) & set(outputs[b.method])
        same = sum(outputs[a.method][k] == outputs[b.method][k] for k in shared)
        share = f"{100.0 * same / len(shared):.1f} %" if shared else "—"
        section.rows.append([f"{_row_name(a)} / {_row_name(b)}", share, f"{len(shared):,}"])
    return section


def salora_vs_lora(runs: list[RunRecord]) -> str:
    """SaLoRA against LoRA on G, paired by seed, with how many seeds SaLoRA is ahead."""
    groups = _groups(runs)
    salora = {r.seed: _value(r, "g_score") for r in groups.get("salora", [])}
    lora = {r.seed: _value(r, "g_score") for r in groups.get("lora", [])}
    seeds = sorted(s for s in salora if s in lora and salora[s] is not None and lora[s] is not None)
    if not seeds:
        return "No seed has both a SaLoRA and a LoRA transfer with G (style accuracy needs the classifier)."
    section = _Section(title="", headers=["Seed", "SaLoRA G", "LoRA G", "SaLoRA − LoRA"], right=[True] * 4)
    diffs = []
    for seed in seeds:
        diffs.append(salora[seed] - lora[seed])
        section.rows.append([str(seed), _cell(salora[seed]), _cell(lora[seed]), f"{diffs[-1]:+.2f}"])
    ahead = sum(d > 0 for d in diffs)
    return (section.markdown() + f"\n\nSaLoRA is ahead on {ahead} of {len(seeds)} seed(s); mean difference "
            f"{statistics.fmean(diffs):+.2f} G.")


def samples_markdown(task: str, runs: list[RunRecord], relative_to: str | os.PathLike | None) -> str:
    """N_PER_DIRECTION sources per direction (evenly spaced, outputs never looked at), each row's first
    seed side by side, the base model first."""
    firsts = first_seeds(runs)
    methods = [MethodGenerations(method=_row_name(r), seed=r.seed, path=r.generations_path,
                                 records=read_generations(r.generations_path)) for r in firsts]
    table = build_style_samples(task, firsts[0].model if firsts else "", methods)
    blocks = ["; ".join(f"{m.method}: {_link(m.path, relative_to)}" for m in methods)]
    for (src, tgt), rows in table.directions.items():
        section = _Section(title="", headers=["#", "Source", "Reference", *[m.method for m in methods]],
                           right=[True] + [False] * (2 + len(methods)))
        for row in rows:
            section.rows.append([str(row.position), _clip(row.source), _clip(row.reference),
                                 *["—" if g is None else (_clip(g) or "(empty)") for g in row.generations]])
        blocks.append(f"#### {src} → {tgt} ({len(rows)} of {table.direction_sizes[(src, tgt)]:,} sources)\n\n"
                      + section.markdown())
    return "\n\n".join(blocks)


def decoding_phrase(runs: list[RunRecord]) -> str:
    """How the rows decoded, from their config.yaml (the recorded TransferConfig), in words."""
    seen = set()
    for run in runs:
        settings = read_config(run.path / CONFIG_FILE).get("transfer") or {}
        seen.add((settings.get("num_beams"), settings.get("do_sample"), settings.get("max_new_tokens")))
    if len(seen) != 1 or None in next(iter(seen)):
        return "decoding as each row's config.yaml records it"
    beams, sample, tokens = next(iter(seen))
    how = "sampled" if sample else "deterministic"
    return f"{'greedy' if beams == 1 else f'{beams}-beam'} {how} decoding of at most {tokens} new tokens"


def style_markdown(transfer_runs: list[RunRecord], alternative: MetricsReport | None = None,
                   relative_to: str | os.PathLike | None = None) -> str:
    parts = ["# Text style transfer", "",
             "**The task-agnostic setting** (the setting of the paper's group's style-transfer benchmark): each "
             "model rewrites the test sources **zero-shot** with the Alpaca template and a fixed instruction per "
             "target style (`salora transfer`; the adapters were tuned on instructions, never on the style data), "
             f"{decoding_phrase(transfer_runs)}, inputs and references lower-cased; the answer is cut from the "
             "generation by a stated rule and every rewrite is labelled empty / echo / off-task / rewrite "
             "(docs/style-transfer.md, *Zero-shot style transfer*). Accuracy is the runner's own style classifier's (it never "
             "guides decoding); ref-BLEU is against the human rewrites (Yelp 1, GYAFC 4), self-BLEU against the "
             "sources, G = √(Acc × ref-BLEU); perplexity is under the base LM without adapter, of the rewrites, "
             "the sources and the references, all as lower-cased running text; the ratio is rewrites / "
             "references. Shares are percentages of the test sources."]
    for task in sorted({r.task for r in transfer_runs}):
        runs = [r for r in transfer_runs if r.task == task]
        parts += ["", f"## {task}", "", main_table(runs).markdown(), "", "### Per direction", "",
                  direction_table(runs).markdown(), "", "### Identical rewrites between rows (first seeds)", "",
                  identical_shares(runs).markdown(), "", "### SaLoRA against LoRA on G, by seed", "",
                  salora_vs_lora(runs), "", f"### Sample rewrites ({N_PER_DIRECTION} per direction)", "",
                  "Sources at evenly spaced positions of each direction in file order (a rule that never "
                  "looks at an output); each row's first seed, the base model first.", "",
                  samples_markdown(task, runs, relative_to)]
    if alternative is not None:
        parts += ["", "## Alternative: the task-specific Yelp recipe (delete, retrieve, fill)", "",
                  "Adapters trained on the Yelp data to fill `___` slots with retrieved style words "
                  "(`salora train style`). Kept for comparison, **not** the paper's setting: accuracy and "
                  "ref-BLEU reward its slot-filling, while many of its rewrites are not fluent English (see the "
                  "samples and the perplexity against the sources).", "",
                  alternative.body_markdown(relative_to, level=3)]
    return "\n".join(parts) + "\n"


def write_style_report(transfer_runs: list[RunRecord], folder: Path, alternative_runs: list[RunRecord] = (),
                       stem: str = "style") -> list[Path]:
    """Write <folder>/<stem>.md (and, with alternative runs, <stem>.csv of their table); returns the paths."""
    alternative = build_metrics_report(list(alternative_runs)) if alternative_runs else None
    md = folder / f"{stem}.md"
    atomic.write_text(md, style_markdown(transfer_runs, alternative, relative_to=folder))
    written = [md]
    if transfer_runs:
        csv_path = folder / f"{stem}_transfer.csv"
        atomic.write_text(csv_path, build_metrics_report(transfer_runs).csv)
        written.append(csv_path)
    if alternative is not None:
        csv_path = folder / f"{stem}.csv"
        atomic.write_text(csv_path, alternative.csv)
        written.append(csv_path)
    return written
