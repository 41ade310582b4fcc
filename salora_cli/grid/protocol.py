"""The comparison protocol a reproduce profile states: rank budgets and one learning-rate rule.

- `budgets: [{budget: 8, r_init: 12}, ...]`: every adapter method runs once per budget. SaLoRA and
  AdaLoRA start at r_init and end at an average rank of `budget` per matrix; LoRA runs at rank
  `budget`; so all three end with the same total rank on the same modules. Full fine-tuning and
  BitFit have no rank, hence no budget: they run once per task. An entry's `budgets: [8]` keeps
  only those of the profile's budgets.
- `lr_grid: [5.0e-4, 1.0e-3, 2.0e-3]`: an adapter method's learning rate is chosen from the grid by
  one rule: the best dev score (the main metric of the run's `best` checkpoint) of the entry's
  first seed, per (task, method, budget, model); ties go to the smaller lr. The other seeds then run
  at that lr. An entry's own `lr_grid` replaces the profile's; `tune_lr` turns the grid on or off
  per entry (default: on for glue/* tasks when a grid applies, off otherwise: style entries keep
  their configured lr). Full fine-tuning and BitFit learn at other rates (a rank-free update of
  every weight, or of the biases alone), so they keep their configured lr unless the profile gives
  them a grid of their own, `method_lr_grids: {full: [...], bitfit: [...]}`; then the same rule
  chooses theirs.
- `widen_lr_grid: 2`: a choice at the edge of its grid says nothing about the method, only about
  the grid (re-tuning studies find each LoRA variant has its own best range). When the chosen lr
  is the grid's largest (smallest), the selection seed also runs one grid step beyond it (the grid's
  own ratio), and the rule chooses again, up to this many steps past either end of the grid; an lr
  still at the edge after that is marked in selection.md. The widened runs, like the choice, follow
  from the run folders alone.

- `transfer: [yelp]` (instruction-tuning entries): the style test sets each finished run is then
  asked to rewrite zero-shot (issue 18). The plan carries it (`PlannedRun.transfer`) for the
  transfer step (salora_cli/transfer/transfer.py) to read; training does not depend on it.

`salora reproduce` runs a plan in two phases: phase 1 every run that needs no choice (the
selection seed at each grid lr, and every untuned run), then the choice, then phase 2 (the other
seeds at the chosen lr). The choice is recomputed from the run folders every time, never stored as
state, so it is the same whoever computes it and whenever.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salora_cli.core import atomic
from salora_cli.core.errors import SaloraError
from salora_cli.core.method_registry import REGISTRY

# the methods with a rank, hence a budget and an lr grid
ADAPTER_METHODS = tuple(name for name, spec in REGISTRY.items() if spec.ranked)
PROFILE_KEYS = {"name", "description", "defaults", "method_overrides", "models", "grid", "budgets", "lr_grid",
                "method_lr_grids", "widen_lr_grid", "transfer_options"}
ENTRY_KEYS = {"task", "methods", "seeds", "config", "config_file", "models", "budgets", "lr_grid", "tune_lr",
              "transfer"}
TRANSFER_TASKS = ("yelp", "gyafc")  # what an entry's `transfer` may name (zero-shot style transfer)
# Equal scores up to float rounding (one count of correct answers can be computed two ways) are a tie.
TIE_TOLERANCE = 1e-9
RULE = ("each tuned method's learning rate is the grid value with the best dev score of seed 0 "
        "(the main metric at the run's best checkpoint), chosen per (task, method, budget); "
        "ties go to the smaller lr; a choice at the grid's edge first widens the grid by a step "
        "(where the profile allows); the remaining seeds then run at that lr")

Group = tuple[str, str, "int | None", str]  # task, method, budget, model: one lr choice each


@dataclass(frozen=True)
class RankBudget:
    """One budget of the protocol: the final average rank per matrix, and where SaLoRA/AdaLoRA start."""

    budget: int
    r_init: int

    def layer(self, method: str) -> dict:
        # LoRA has no schedule: its fixed rank is the budget, so every method ends with the same total rank
        r_init = self.r_init if REGISTRY[method].learns_rank else self.budget  # LoRA runs at the budget
        return {"adapter": {"r_init": r_init, "budget": self.budget}}


@dataclass
class PlannedRun:
    task: str
    method: str
    seed: int
    model: str
    layers: list[dict]
    budget: int | None = None  # the final average rank; None: the profile has no budgets, or full/BitFit
    lr: float | None = None  # a grid value; None: the configured lr is used as it is
    selection_seed: int | None = None  # the seed whose dev score chooses the lr (tuned runs only)
    transfer: tuple[str, ...] = ()  # style tasks the finished run rewrites zero-shot (the entry's `transfer`)

    @property
    def tuned(self) -> bool:
        return self.lr is not None

    @property
    def selects(self) -> bool:
        """Whether this run's dev score takes part in choosing its group's lr (phase 1)."""
        return self.tuned and self.seed == self.selection_seed

    @property
    def group(self) -> Group:
        return (self.task, self.method, self.budget, self.model)

    @property
    def folder_name(self) -> str:
        # budget and lr are in the name whenever they vary, so no two planned runs share a folder
        parts = [self.task.replace("/", "-"), self.method]
        if self.budget is not None:
            parts.append(f"b{self.budget}")
        if self.lr is not None:
            parts.append(f"lr{lr_text(self.lr)}")
        return "_".join([*parts, model_label(self.model), f"seed{self.seed}"])


def model_label(model: str) -> str:
    """A model reference as a folder name part: a hub id with / as - (microsoft-deberta-v3-base); a local
    model folder by its own name (a path: what tasks.models.resolve_model takes for one), so a run of
    /data/models/roberta-base is named as a run of roberta-base."""
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return Path(model.rstrip("/")).name
    return model.replace("/", "-")


def lr_text(lr: float) -> str:
    """The shortest exponent form that reads back as the same float (1e-03, 1.2e-03, 5e-05)."""
    for digits in range(0, 16):
        text = f"{lr:.{digits}e}"
        if float(text) == lr:
            return text
    return repr(lr)


# ------------------------------------------------------------------ the profile's protocol keys
def validate(profile: dict, where: Path) -> None:
    """Check the protocol keys of a profile and of its entries (before any run is built)."""
    unknown = set(profile) - PROFILE_KEYS
    if unknown:
        raise SaloraError(f"profile {where}: unknown key(s) {sorted(unknown)}")
    options = profile.get("transfer_options") or {}
    if not isinstance(options, dict):
        raise SaloraError(f"profile {where}: transfer_options is a mapping of salora transfer settings")
    from salora_cli.transfer.transfer_config import TransferConfig

    fields = {f.name for f in dataclasses.fields(TransferConfig)} - {"task"}
    if set(options) - fields:
        raise SaloraError(f"profile {where}: unknown transfer_options {sorted(set(options) - fields)} "
                          f"(valid: {', '.join(sorted(fields))})")
    budgets = parse_budgets(profile.get("budgets"), f"profile {where}")
    parse_lr_grid(profile.get("lr_grid"), f"profile {where}")
    by_method = profile.get("method_lr_grids") or {}
    if not isinstance(by_method, dict) or set(by_method) - set(REGISTRY) or set(by_method) & set(ADAPTER_METHODS):
        raise SaloraError(f"profile {where}: method_lr_grids maps full / bitfit to their own lr grid "
                          f"(the adapter methods use lr_grid), got {by_method!r}")
    for method, grid in by_method.items():
        parse_lr_grid(grid, f"profile {where}, method_lr_grids.{method}")
    steps = profile.get("widen_lr_grid", 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise SaloraError(f"profile {where}: widen_lr_grid is a number of grid steps >= 0, got {steps!r}")
    for i, entry in enumerate(profile.get("grid") or [], 1):
        task = entry.get("task", "?") if isinstance(entry, dict) else "?"
        _validate_entry(profile, entry, budgets, f"profile {where}, grid entry {i} ({task})")


def _validate_entry(profile: dict, entry: Any, budgets: list[RankBudget], here: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
        raise SaloraError(f"{here}: an entry is a mapping with a task (task, methods, seeds, ...)")
    bad = set(entry) - ENTRY_KEYS
    if bad:
        raise SaloraError(f"{here}: unknown key(s) {sorted(bad)} (valid: {', '.join(sorted(ENTRY_KEYS))})")
    for key in ("methods", "seeds"):
        if not entry.get(key) or not isinstance(entry[key], list):
            raise SaloraError(f"{here}: {key} must be a non-empty list")
    _entry_budget_values(entry, budgets, here)
    entry_transfer(entry, here)
    parse_lr_grid(entry.get("lr_grid"), here)
    if "tune_lr" in entry and not isinstance(entry["tune_lr"], bool):
        raise SaloraError(f"{here}: tune_lr must be true or false, got {entry['tune_lr']!r}")
    if entry.get("tune_lr") and not any(_grid(profile, entry, m) for m in entry["methods"]):
        raise SaloraError(f"{here}: tune_lr is true but no lr_grid applies")
    tuned = any(tunes_lr(profile, entry, m) for m in entry["methods"])
    if tuned and entry["seeds"][0] != 0:  # the rule, as stated in results/, chooses on seed 0
        raise SaloraError(f"{here}: the lr is chosen on seed 0, so its seeds must start with 0")


def entry_transfer(entry: dict, where: str = "grid entry") -> tuple[str, ...]:
    """The style tasks an entry's runs are transferred to zero-shot once trained; () for none."""
    raw = entry.get("transfer")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or any(t not in TRANSFER_TASKS for t in raw):
        raise SaloraError(f"{where}: transfer must be a non-empty list of {', '.join(TRANSFER_TASKS)}, got {raw!r}")
    if not entry.get("task", "").startswith("instruct/"):
        raise SaloraError(f"{where}: transfer applies to instruction-tuning entries (instruct/*), not {entry['task']}")
    return tuple(raw)


def parse_budgets(raw: Any, where: str) -> list[RankBudget]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise SaloraError(f"{where}: budgets must be a non-empty list of {{budget: B, r_init: R}}")
    out = []
    for item in raw:
        ok = (isinstance(item, dict) and set(item) == {"budget", "r_init"}
              and all(isinstance(item[k], int) and not isinstance(item[k], bool) for k in item))
        if not ok or not 0 < item["budget"] <= item["r_init"]:
            raise SaloraError(f"{where}: a budget is {{budget: B, r_init: R}} with integers 0 < B <= R, got {item!r}")
        out.append(RankBudget(item["budget"], item["r_init"]))
    if len({b.budget for b in out}) != len(out):
        raise SaloraError(f"{where}: two budgets with the same final rank")
    return out


def parse_lr_grid(raw: Any, where: str) -> list[float]:
    if raw is None:
        return []
    ok = isinstance(raw, list) and raw and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in raw)
    if not ok:  # PyYAML reads 5e-4 (no dot) as a string
        raise SaloraError(f"{where}: lr_grid must be a non-empty list of positive numbers written "
                          f"like 5.0e-4, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise SaloraError(f"{where}: lr_grid repeats a value")
    return sorted(float(x) for x in raw)


def _entry_budget_values(entry: dict, budgets: list[RankBudget], where: str) -> list[RankBudget]:
    wanted = entry.get("budgets")
    if wanted is None:
        return budgets
    known = {b.budget: b for b in budgets}
    if not isinstance(wanted, list) or not wanted or any(w not in known for w in wanted):
        raise SaloraError(f"{where}: budgets must list some of the profile's budgets "
                          f"({sorted(known) or 'none given'}), got {wanted!r}")
    return [known[w] for w in wanted]


def entry_budgets(profile: dict, entry: dict, method: str) -> list[RankBudget | None]:
    """The budgets `method` runs at for this entry; [None]: once, without a budget layer."""
    budgets = parse_budgets(profile.get("budgets"), "profile")
    if method not in ADAPTER_METHODS or not budgets:
        return [None]
    return _entry_budget_values(entry, budgets, f"grid entry {entry['task']}")


def tunes_lr(profile: dict, entry: dict, method: str) -> bool:
    if not _grid(profile, entry, method):
        return False
    return bool(entry.get("tune_lr", entry["task"].startswith("glue/")))


def entry_lrs(profile: dict, entry: dict, method: str) -> list[float | None]:
    """The grid lrs `method` runs at for this entry; [None]: the configured lr only."""
    return list(_grid(profile, entry, method)) if tunes_lr(profile, entry, method) else [None]


def _grid(profile: dict, entry: dict, method: str | None = None) -> list[float]:
    """The lr grid of `method` (None: of the adapter methods) in this entry; [] for none."""
    if method is not None and method not in ADAPTER_METHODS:
        return parse_lr_grid((profile.get("method_lr_grids") or {}).get(method), "profile")
    return parse_lr_grid(entry.get("lr_grid"), "grid entry") or parse_lr_grid(profile.get("lr_grid"), "profile")


def widen(planned: list[PlannedRun], runs_root: Path, steps: int) -> list[PlannedRun]:
    """`planned` and the runs the edge rule adds (module docstring, widen_lr_grid), as far as the
    finished selection runs under runs_root decide them. A group whose widened run has not finished
    has no choice yet (Choice.chosen), so its next step waits for it."""
    if steps <= 0:
        return planned
    out = list(planned)
    grids: dict[Group, list[float]] = {}
    for p in planned:
        if p.selects:
            grids.setdefault(p.group, []).append(p.lr)
    while True:
        added = []
        for c in select(out, runs_root):
            lr, tried, grid = c.chosen, sorted(c.runs), sorted(grids.get(c.group, []))
            if lr is None or len(grid) < 2:
                continue
            ratio = grid[1] / grid[0]
            if lr == tried[-1] and lr < grid[-1] * ratio ** steps / (1 + 1e-9):
                new = lr * ratio
            elif lr == tried[0] and lr > grid[0] / ratio ** steps * (1 + 1e-9):
                new = lr / ratio
            else:
                continue
            new = float(f"{new:.6g}")  # 5e-4 / 2 is 2.5e-4, not 0.00025000000000000006
            added += [_with_lr(p, new) for p in out if p.group == c.group and p.lr == lr]
        if not added:
            return out
        out += added


def _with_lr(p: PlannedRun, lr: float) -> PlannedRun:
    """The same run at another grid lr (the protocol layer, the one naming the task, holds the lr)."""
    layers = [{**layer, "train": {**layer["train"], "lr": lr}} if "task" in layer and "train" in layer else layer
              for layer in p.layers]
    return dataclasses.replace(p, lr=lr, layers=layers)


def at_edge(c: "Choice") -> bool:
    """Whether the chosen lr is still the largest or smallest tried (widening stopped at its limit)."""
    return c.chosen is not None and len(c.runs) > 1 and c.chosen in (min(c.runs), max(c.runs))


def main_budget(profile: dict) -> int | None:
    """The first budget listed: the one rank maps and timings are shown at."""
    budgets = parse_budgets(profile.get("budgets"), "profile")
    return budgets[0].budget if budgets else None


# ------------------------------------------------------------------------------ the choice
@dataclass
class Choice:
    """One (task, method, budget, model): each grid lr's selection-seed run and its dev score."""

    task: str
    method: str
    budget: int | None
    model: str
    seed: int
    runs: dict[float, str]  # lr -> folder of the selection-seed run
    finished: dict[float, float | None]  # lr -> best dev main metric, for the finished runs only
    metric: str | None = None

    @property
    def chosen(self) -> float | None:
        """The rule; None until every grid lr's run has finished (a partial grid could choose otherwise)."""
        if set(self.finished) != set(self.runs):
            return None
        scored = {lr: s for lr, s in self.finished.items() if s is not None}
        if not scored:  # no finite score at all: nothing to prefer, so the smaller lr as for a tie
            return min(self.runs)
        best = max(scored.values())
        return min(lr for lr, s in scored.items() if s >= best - TIE_TOLERANCE)

    @property
    def missing(self) -> list[float]:
        return sorted(set(self.runs) - set(self.finished))

    @property
    def group(self) -> Group:
        return (self.task, self.method, self.budget, self.model)


def select(planned: list[PlannedRun], runs_root: Path) -> list[Choice]:
    """Every tuned group's choice, read from the selection-seed run folders under runs_root."""
    from salora_cli.reports.runs import load_run

    choices: dict[Group, Choice] = {}
    for p in planned:
        if not p.selects:
            continue
        choice = choices.setdefault(p.group, Choice(p.task, p.method, p.budget, p.model, p.seed, {}, {}))
        choice.runs[p.lr] = p.folder_name
        folder = runs_root / p.folder_name
        if not (folder / "metrics.json").is_file():
            continue
        run = load_run(folder)
        if run.finished:
            choice.metric = run.main_metric
            choice.finished[p.lr] = run.best.get(run.main_metric)
    return list(choices.values())


def phase_one(planned: list[PlannedRun]) -> list[PlannedRun]:
    """The runs that wait for no choice: the selection seed at every grid lr, and every untuned run."""
    return [p for p in planned if not p.tuned or p.selects]


def phase_two_count(planned: list[PlannedRun]) -> int:
    """How many runs phase 2 will hold, whichever lrs are chosen (one per group and seed)."""
    return len({(p.group, p.seed) for p in planned if p.tuned and not p.selects})


def phase_two(planned: list[PlannedRun], choices: list[Choice]) -> tuple[list[PlannedRun], list[Choice]]:
    """The other seeds at their group's chosen lr, and the groups whose choice is not made yet."""
    chosen = {c.group: c.chosen for c in choices}
    later = [p for p in planned if p.tuned and not p.selects]
    ready = [p for p in later if chosen.get(p.group) is not None and p.lr == chosen[p.group]]
    waiting = [c for c in choices if c.chosen is None and any(p.group == c.group for p in later)]
    return ready, waiting


def reported(planned: list[PlannedRun], choices: list[Choice]) -> dict[str, int | None]:
    """Folder name -> budget of every run that enters the tables: untuned runs, and tuned runs at
    their group's chosen lr (the selection seed's run included). Budget-free runs map to None."""
    chosen = {c.group: c.chosen for c in choices}
    return {p.folder_name: p.budget for p in planned if not p.tuned or chosen.get(p.group) == p.lr}


# ---------------------------------------------------------------------------------- writing
def write_selection(choices: list[Choice], results: Path) -> list[Path]:
    """results/selection.md and .json: every lr's selection-seed score and the lr chosen."""
    md, js = results / "selection.md", results / "selection.json"
    if not choices:  # a profile without an lr grid: an earlier profile's choice must not linger
        md.unlink(missing_ok=True)
        js.unlink(missing_ok=True)
        return []
    atomic.write_json(js, {"rule": RULE, "groups": [_choice_json(c) for c in choices]})
    atomic.write_text(md, selection_markdown(choices))
    return [md, js]


def _choice_json(c: Choice) -> dict:
    return {"task": c.task, "method": c.method, "budget": c.budget, "model": c.model, "seed": c.seed,
            "metric": c.metric, "chosen_lr": c.chosen,
            "scores": [{"lr": lr, "score": c.finished.get(lr), "finished": lr in c.finished,
                        "run": c.runs[lr]} for lr in sorted(c.runs)]}


def selection_markdown(choices: list[Choice]) -> str:
    multi_model = len({c.model for c in choices}) > 1
    head = ["Task", "Method", "Budget"] + (["Model"] if multi_model else []) + ["lr", "Seed", "Dev score", "Chosen"]
    lines = ["# Learning-rate selection", "",
             f"Rule: {RULE}. Recomputed from the run folders every time the results are rebuilt; a group "
             "whose grid is not finished has no choice yet (—). The score is the main metric on the dev "
             "split, the split the tables report (GLUE test labels are not public): the chosen lr's "
             "score here is one of the seeds in the reported mean.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in choices:
        for lr in sorted(c.runs):
            score = c.finished.get(lr)
            text = "not finished" if lr not in c.finished else ("no score" if score is None else f"{score:.2f}")
            mark = "" if c.chosen is None else ("**chosen**" if lr == c.chosen else "")
            if c.chosen is None and lr == min(c.runs):
                mark = "—"
            elif lr == c.chosen and at_edge(c):
                mark = "**chosen** (at the edge of its grid)"
            cells = [c.task, c.method, "—" if c.budget is None else str(c.budget)] + ([c.model] if multi_model else [])
            cells += [f"[{lr_text(lr)}](runs/{c.runs[lr]}/metrics.json)", str(c.seed), text, mark]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def protocol_markdown(profile: dict) -> str:
    """The README section that states the protocol (empty for a profile without budgets or grid)."""
    budgets = parse_budgets(profile.get("budgets"), "profile")
    tuned = [e for e in profile["grid"] if any(tunes_lr(profile, e, m) for m in e["methods"])]
    if not budgets and not tuned:
        return ""
    lines = ["## Protocol", "",
             "The adapter methods adapt the same modules; every method sees the same data for the same "
             "number of steps."]
    if budgets:
        shown = ", ".join(f"average rank {b.budget} (SaLoRA and AdaLoRA from r_init {b.r_init}, LoRA at rank "
                          f"{b.budget})" for b in budgets)
        unbudgeted = sorted({m for e in profile["grid"] for m in e["methods"] if m not in ADAPTER_METHODS})
        lines.append(f"- **Rank budgets**: {shown}. All three adapter methods end with the same total rank."
                     + (f" {' and '.join(unbudgeted)} have no rank budget: they run once per task and their rows "
                        "repeat, marked *(no budget)*, in every budget's table of `glue.md`." if unbudgeted else ""))
        coverage = _coverage(profile, budgets)
        if coverage:
            lines.append(f"- **Coverage**: {coverage}.")
    if tuned:
        grids = sorted({tuple(_grid(profile, e)) for e in tuned})
        grid_text = "; ".join("[" + ", ".join(lr_text(x) for x in g) + "]" for g in grids)
        others = sorted({s for e in tuned for s in e["seeds"][1:]})
        own = {m: g for m, g in (profile.get("method_lr_grids") or {}).items()
               if any(m in e["methods"] for e in tuned)}
        own_text = "".join(f"; {m}: [" + ", ".join(lr_text(x) for x in g) + "]" for m, g in own.items())
        steps = profile.get("widen_lr_grid", 0)
        lines.append(
            f"- **Learning rate**: one rule for every {'tuned' if own else 'adapter'} method: its lr comes "
            f"from the grid {grid_text}{' (adapter methods)' if own else ''}{own_text}, "
            "and the lr with the best dev score of seed 0 (the main metric at the run's best checkpoint) is "
            "chosen, per (task, method, budget); ties go to the smaller lr. "
            + (f"Where the best lr is the grid's largest or smallest, seed 0 also runs one grid step beyond it "
               f"and the rule chooses again, up to {steps} step{'s' if steps > 1 else ''} past either end "
               "(a choice at the edge says nothing about the method). " if steps else "")
            + (_then_seeds(others) if others else "")
            + "Every lr's seed-0 score and the lr chosen: `selection.md` / `selection.json`, recomputed "
            "from the run folders whenever the results are rebuilt; only the chosen lr's runs enter the tables.")
        lines.append(
            "- **The split**: the dev split is the split reported (GLUE test labels are not public), so the "
            "lr is chosen on the split it is judged on, and the seed-0 score of the chosen lr is part of "
            "the reported mean (it is the best of the grid's tries). This favours every tuned method alike"
            + ("; the methods without a rank (full fine-tuning, BitFit) run at one fixed lr and get no such "
               "choice." if any(m not in ADAPTER_METHODS and not tunes_lr(profile, e, m)
                                for e in profile["grid"] for m in e["methods"]) else "."))
        untuned = [e["task"] for e in profile["grid"]
                   if not any(tunes_lr(profile, e, m) for m in e["methods"]) and any(
                       m in ADAPTER_METHODS for m in e["methods"])]
        if untuned:
            lines.append(f"- Entries without an lr grid ({', '.join(sorted(set(untuned)))}) run at their "
                         "configured lr, every seed.")
    return "\n".join(lines) + "\n"


def _coverage(profile: dict, budgets: list) -> str:
    """Which seeds, budgets and tasks each method runs, where some run fewer (what the time limit cut)."""
    seeds: dict[str, set[int]] = {}
    spans: dict[str, set[int]] = {}
    tasks: dict[str, set[str]] = {}
    task_seeds: dict[str, dict[str, set[int]]] = {}  # method -> task -> its seeds there
    for e in profile["grid"]:
        for m in e["methods"]:
            seeds.setdefault(m, set()).update(e["seeds"])
            tasks.setdefault(m, set()).add(e["task"])
            task_seeds.setdefault(m, {}).setdefault(e["task"], set()).update(e["seeds"])
            if m in ADAPTER_METHODS:
                spans.setdefault(m, set()).update(e.get("budgets") or [b.budget for b in budgets])
    most = max(len(v) for v in seeds.values())
    every_task = set().union(*tasks.values())
    parts = []
    for m in seeds:
        fewer_seeds = len(seeds[m]) < most
        fewer_budgets = m in spans and len(spans[m]) < len(budgets)
        fewer_tasks = tasks[m] != every_task
        by_seeds: dict[tuple, list[str]] = {}  # seed set -> the tasks that run it, where tasks differ
        for task, its_seeds in sorted(task_seeds[m].items()):
            by_seeds.setdefault(tuple(sorted(its_seeds)), []).append(task)
        if fewer_seeds or fewer_budgets or fewer_tasks or len(by_seeds) > 1:
            if len(by_seeds) > 1:  # e.g. a time limit cut a baseline's later seeds on some tasks
                most_seeds, *fewer = sorted(by_seeds, key=len, reverse=True)
                what = [f"{_seeds_text(most_seeds)} ("
                        + "; ".join(f"{_seeds_text(s)} only on {', '.join(by_seeds[s])}" for s in fewer) + ")"]
            else:
                what = [f"{_seeds_text(sorted(seeds[m]))} only"] if fewer_seeds else []
            what += [f"budget {', '.join(map(str, sorted(spans[m])))} only"] if fewer_budgets else []
            missing = every_task - tasks[m]
            if fewer_tasks:  # whichever list is shorter
                what += ([f"not on {', '.join(sorted(missing))}"] if len(missing) < len(tasks[m])
                         else [f"on {', '.join(sorted(tasks[m]))} only"])
            parts.append(f"{m} runs " + (f"{', '.join(what[:-1])} and {what[-1]}" if len(what) > 1 else what[0]))
    return "; ".join(parts)


def _seeds_text(seeds) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"


def _then_seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"Seed {seeds[0]} then runs at that lr. "
    return f"Seeds {', '.join(map(str, seeds))} then run at that lr. "
