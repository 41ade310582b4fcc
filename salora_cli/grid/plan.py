"""`salora reproduce --profile NAME --plan`: every run a profile would start, and what it costs, in seconds.

No model is loaded and no tokenizer either: a run's optimizer steps follow from its data's size and its
settings exactly as the training loop computes them (salora_cli/run/train.py); its tokens from the example
lengths salora_cli/grid/plan_data.py estimates; its FLOPs, hours and bytes from the stated cost model
(salora_cli/grid/cost_model.py) and the models' stated shapes (salora_cli/grid/model_specs.py).

Rows follow the protocol's two phases (salora_cli/grid/protocol.py): with an lr grid, the selection seed at
each grid lr, then each later seed once, at the lr the first phase chooses (its cost does not depend on
which). Zero-shot transfers (an instruction-tuning entry's `transfer`) are rows of their own, of every
planned run and of the base model. Parts are those of results/README.md's wall times (a run folder's
task prefix, and the zero-shot transfers), so `part_estimates` can be set beside measured times.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

from salora_cli.grid import cost_model as cm
from salora_cli.grid import protocol
from salora_cli.core.config import RunConfig
from salora_cli.grid.model_specs import ModelSpec, spec as model_spec
from salora_cli.grid.plan_data import TaskData, task_data, transfer_lengths
from salora_cli.grid.protocol import PlannedRun

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunEstimate:
    """One row of the plan: a run (or a zero-shot transfer) and its estimated cost."""

    part: str = field(metadata={"help": "The wall-time part it belongs to (results/README.md)"})
    name: str = field(metadata={"help": "Its run folder (a transfer: <run>/transfer/<task>)"})
    stage: str = field(metadata={"help": "lr grid value / 'chosen lr' / 'fixed lr' / 'transfer'"})
    model: str
    method: str
    budget: int | None
    seed: int | None
    steps: int = field(metadata={"help": "Optimizer steps (0 for a transfer)"})
    tokens: float = field(metadata={"help": "Tokens processed: trained (padded), evaluated and generated"})
    gpu_hours: float = field(metadata={"help": "On cost_model.REFERENCE_GPU"})
    cpu_hours: float = field(metadata={"help": "On cost_model.REFERENCE_CPU"})
    disk_bytes: int = field(metadata={"help": "What its folder holds at the end"})
    known_size: bool = field(default=True, metadata={"help": "False: the model is not in model_specs (no cost)"})


@dataclass
class PartEstimate:
    """A part's summed estimate (as results/README.md sums measured wall times per part)."""

    part: str
    runs: int = 0
    steps: int = 0
    tokens: float = 0.0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    disk_bytes: int = 0

    def add(self, row: RunEstimate) -> None:
        self.runs += 1
        self.steps += row.steps
        self.tokens += row.tokens
        self.gpu_hours += row.gpu_hours
        self.cpu_hours += row.cpu_hours
        self.disk_bytes += row.disk_bytes


@dataclass
class Plan:
    profile: str
    rows: list[RunEstimate]
    data_sources: dict[str, str] = field(default_factory=dict)  # task -> where its train size came from

    def parts(self) -> dict[str, PartEstimate]:
        out: dict[str, PartEstimate] = {}
        for row in self.rows:
            out.setdefault(row.part, PartEstimate(row.part)).add(row)
        return out

    def total(self) -> PartEstimate:
        total = PartEstimate("total")
        for row in self.rows:
            total.add(row)
        return total

    @property
    def runs(self) -> int:
        return sum(1 for r in self.rows if r.stage != TRANSFER)


TRANSFER = "transfer"


# ------------------------------------------------------------------------------------------ building
def build_plan(profile_path: Path, data: str | None = None, tasks: list[str] | None = None,
               methods: list[str] | None = None, seeds: list[int] | None = None) -> Plan:
    """The plan of a profile (narrowed as `salora reproduce` narrows it); `data`: the data root
    ($SALORA_DATA; default: the project's ../shared/data when it is there)."""
    from salora_cli.grid.reproduce import load_profile, plan, planned_config, wall_time_part
    from tasks.instruct.instruct_data import PROJECT_DATA

    data = data or (str(PROJECT_DATA) if PROJECT_DATA.is_dir() else None)
    profile = load_profile(profile_path)
    planned = plan(profile, ROOT, tasks, methods, seeds)
    rows, sources = [], {}
    for p, stage in _stages(planned):
        cfg = planned_config(p, data)
        known = model_spec(cfg.model)
        td = task_data(cfg)
        sources.setdefault(cfg.task, td.train.source)
        rows.append(_run_row(p, cfg, td, known, stage, wall_time_part(p.folder_name)))
    rows += _transfer_rows(planned, profile.get("transfer_options") or {}, data, wall_time_part)
    return Plan(profile["name"], rows, sources)


def part_estimates(profile_path: Path, data: str | None = None) -> dict[str, PartEstimate]:
    """The cost model's estimate per part of a profile (GPU and CPU hours, tokens, disk): what
    results/README.md sets beside the measured wall time of each part."""
    return build_plan(profile_path, data).parts()


def _stages(planned: list[PlannedRun]) -> list[tuple[PlannedRun, str]]:
    """Phase 1 as planned; phase 2 once per (group, seed), whichever lr the choice picks."""
    out = [(p, f"lr {protocol.lr_text(p.lr)}" if p.tuned else "fixed lr") for p in protocol.phase_one(planned)]
    seen = set()
    for p in planned:
        if p.tuned and not p.selects and (p.group, p.seed) not in seen:
            seen.add((p.group, p.seed))
            out.append((p, "chosen lr"))
    return out


def expected_batch_max(lengths: list[int], batch: int) -> float:
    """The expected longest of `batch` examples drawn at random from `lengths`: what a batch is padded
    to when batches are not grouped by length."""
    ordered = sorted(lengths)
    n = len(ordered)
    return sum(v * (((k + 1) / n) ** batch - (k / n) ** batch) for k, v in enumerate(ordered))


@functools.lru_cache(maxsize=None)
def _padded(lengths: tuple[int, ...], cap: int, batch: int, grouped: bool) -> float:
    """Tokens a batch position costs: the mean length when batches are grouped by length (or sorted, as
    instruction tuning's evaluation is), the expected batch maximum otherwise; lengths capped at `cap`."""
    capped = [min(v, cap) for v in lengths]
    return sum(capped) / len(capped) if grouped else expected_batch_max(capped, batch)


def train_examples(cfg: RunConfig, td: TaskData) -> int:
    """Training examples the run keeps: instruction tuning drops a record whose prompt leaves no room in
    the cutoff (the share is estimated on the sample); max_train_samples draws a subset."""
    n = td.train.examples
    if td.train.prompt_lengths:
        fits = sum(1 for v in td.train.prompt_lengths if v < cfg.train.max_length) / len(td.train.prompt_lengths)
        n = round(n * fits)
    if cfg.train.max_train_samples is not None:
        n = min(n, cfg.train.max_train_samples)
    return max(n, 1)


def optimizer_steps(cfg: RunConfig, n_train: int) -> tuple[int, int]:
    """(total steps, steps per epoch), as salora_cli/run/train.py computes them on one process."""
    t = cfg.train
    per_epoch = max(math.ceil(n_train / (t.batch_size * t.grad_accum)), 1)
    return t.max_steps or max(1, int(round(t.epochs * per_epoch))), per_epoch


def _run_row(p: PlannedRun, cfg: RunConfig, td: TaskData, spec: ModelSpec | None, stage: str, part: str) -> RunEstimate:
    t = cfg.train
    n_train = train_examples(cfg, td)
    steps, per_epoch = optimizer_steps(cfg, n_train)
    train_len = _padded(td.train.lengths, t.max_length, t.batch_size, t.group_by_length)
    trained = steps * t.batch_size * t.grad_accum * train_len
    eval_every = t.eval_every or per_epoch
    evaluations = (steps - 1) // eval_every + 1  # every eval_every steps before the last, and at the end
    n_eval = min(td.eval.examples, t.max_eval_samples or td.eval.examples)
    forward, decode = 0.0, 0.0
    beams = int(cfg.task_options.get("num_beams", 1))
    if td.eval.generated:
        decode += evaluations * n_eval * beams * _mean(td.eval.lengths, td.eval.generated, t.max_length)
    else:
        grouped = td.eval.prompt_lengths != ()  # instruction tuning's evaluation sorts by length
        forward += evaluations * n_eval * _padded(td.eval.lengths, t.max_length, t.eval_batch_size, grouped)
    tested = 0
    if td.test is not None:  # style: the test split generated once, then its outputs and sources scored
        tested = td.test.examples
        decode += tested * beams * _mean(td.test.lengths, td.test.generated, t.max_length)
        forward += 2 * tested * _mean(td.test.generated, (), t.max_length)
    if spec is None:
        return RunEstimate(part, p.folder_name, stage, cfg.model, cfg.method, p.budget, p.seed, steps,
                           trained + forward + decode, 0.0, 0.0, 0, known_size=False)
    a = cfg.adapter
    rank = a.r_init if cfg.method in protocol.ADAPTER_METHODS else 0  # LoRA's r_init is its budget
    final_rank = a.budget_rank() if cfg.method == "salora" else rank
    context = train_len
    flops_train = trained * cm.train_flops(spec, cfg.method, context, rank)
    flops_forward = forward * cm.forward_flops(spec, context)
    flops_decode = decode * cm.forward_flops(spec, context)
    num_labels = _num_labels(cfg.task)
    weights = cm.trainable_weights(spec, cfg.method, final_rank, a.r_init, num_labels)
    checkpointed = steps > (t.checkpoint_every or eval_every)
    return RunEstimate(part, p.folder_name, stage, cfg.model, cfg.method, p.budget, p.seed, steps,
                       trained + forward + decode,
                       cm.hours(flops_train, flops_forward, flops_decode, spec, cm.REFERENCE_GPU),
                       cm.hours(flops_train, flops_forward, flops_decode, spec, cm.REFERENCE_CPU),
                       cm.run_bytes(weights, steps, checkpointed, tested, cfg.method))


def _mean(prompts: tuple[int, ...], generated: tuple[int, ...], cap: int) -> float:
    """Mean tokens per example of prompt (capped at `cap`, as generation truncates it) plus answer."""
    whole = [min(p, cap) + g for p, g in zip(prompts, generated)] if generated else [min(p, cap) for p in prompts]
    return sum(whole) / len(whole)


def _num_labels(task: str) -> int:
    return {"glue/mnli": 3, "glue/stsb": 1}.get(task, 2)


def _transfer_rows(planned: list[PlannedRun], options: dict, data: str | None, part_of) -> list[RunEstimate]:
    """Each transferring run's zero-shot transfers, and the base model's once per (model, task), as
    reproduce.run_transfers starts them."""
    from salora_cli.transfer.transfer import resolve_subject
    from salora_cli.transfer.transfer_config import TransferConfig

    rows, bases = [], set()
    for p in planned:
        for task in p.transfer:
            tc = TransferConfig(task=task, **options)
            jobs = [] if (p.model, task) in bases else [(f"transfer/{resolve_subject(p.model).label}/{task}", None)]
            bases.add((p.model, task))
            jobs.append((f"{p.folder_name}/transfer/{task}", p))
            for name, run in jobs:
                rows.append(_transfer_row(name, run, p.model, tc, data, part_of(f"transfer:{name}")))
    return rows


def _transfer_row(name: str, run: PlannedRun | None, model: str, tc, data: str | None, part: str) -> RunEstimate:
    split = transfer_lengths(tc.task, tc.data_dir or _style_dir(data, tc.task), tc.max_new_tokens)
    n = min(split.examples, tc.max_samples or split.examples)
    decode = n * tc.num_beams * _mean(split.lengths, split.generated, 10**6)
    forward = 3 * n * _mean(split.generated, (), 10**6)  # fluency of rewrites, sources and references
    spec = model_spec(model)
    method = run.method if run else "base"
    seed = run.seed if run else None
    if spec is None:
        return RunEstimate(part, name, TRANSFER, model, method, None, seed, 0, decode + forward, 0, 0, 0, False)
    context = _mean(split.lengths, split.generated, 10**6)
    flops_decode = decode * cm.forward_flops(spec, context)
    flops_forward = forward * cm.forward_flops(spec, context)
    return RunEstimate(part, name, TRANSFER, model, method, run.budget if run else None, seed, 0, decode + forward,
                       cm.hours(0.0, flops_forward, flops_decode, spec, cm.REFERENCE_GPU),
                       cm.hours(0.0, flops_forward, flops_decode, spec, cm.REFERENCE_CPU),
                       n * cm.GENERATION_LINE_BYTES)


def _style_dir(data: str | None, task: str) -> str | None:
    if not data:
        return None
    return str(Path(data) / task) if task == "yelp" else None


# ------------------------------------------------------------------------------------------ printing
def tokens_text(tokens: float) -> str:
    return f"{tokens:.1e}".replace("e+0", "e").replace("e+", "e")


def hours_text(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.2g}" if hours < 1 else f"{hours:.1f}"


def bytes_text(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def total_line(plan: Plan) -> str:
    """The overall line: runs, tokens, GPU-hours on the reference accelerator, disk; and the CPU estimate."""
    total = plan.total()
    transfers = total.runs - plan.runs
    runs = f"{plan.runs:,} runs" + (f" and {transfers:,} transfers" if transfers else "")
    return (f"total: {runs}, {tokens_text(total.tokens)} tokens, {hours_text(total.gpu_hours)} GPU-hours, "
            f"{bytes_text(total.disk_bytes)} (CPU estimate: {hours_text(total.cpu_hours)} CPU-hours)")


def print_plan(plan: Plan, console) -> None:
    """Every run, the parts, what the numbers rest on, and the total line last."""
    from salora_cli.core.console import print_columns

    runs = [(r.part, r.name, r.stage, f"{r.steps:,}", tokens_text(r.tokens),
             *((hours_text(r.gpu_hours), hours_text(r.cpu_hours), bytes_text(r.disk_bytes)) if r.known_size
               else ("?", "?", "?"))) for r in plan.rows]
    print_columns(console, f"profile {plan.profile}: every run it would start",
                   ("part", "run folder", "stage", "steps", "tokens", "GPU-h", "CPU-h", "disk"), runs, left=3)
    parts = [(p.part, f"{p.runs:,}", f"{p.steps:,}", tokens_text(p.tokens), hours_text(p.gpu_hours),
              hours_text(p.cpu_hours), bytes_text(p.disk_bytes)) for p in plan.parts().values()]
    print_columns(console, "per part", ("part", "runs", "steps", "tokens", "GPU-h", "CPU-h", "disk"), parts, left=1)
    for line in assumptions(plan):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(total_line(plan), highlight=False, soft_wrap=True, markup=False)


def assumptions(plan: Plan) -> list[str]:
    """What the numbers rest on, and what the dry run cannot check, as printed under the tables."""
    from salora_cli.grid.plan_data import CHARS_PER_TOKEN

    gpu, cpu = cm.REFERENCE_GPU, cm.REFERENCE_CPU
    lines = [f"cost model (salora_cli/grid/cost_model.py): training ≈ 6·N FLOPs a token for full fine-tuning, "
             f"≈ 4·N with the base frozen, plus attention; GPU-h on {gpu.name} at {gpu.small_model_utilisation:.0%} "
             f"utilisation (models under 1B), {gpu.large_model_utilisation:.0%} (7B), {gpu.decode_utilisation:.0%} "
             f"while generating; CPU-h on {cpu.name} at {cpu.small_model_utilisation:.0%}; tokens: "
             f"{CHARS_PER_TOKEN:g} characters a token, batches padded to their longest unless grouped by length",
             "data: " + "; ".join(f"{task} {source}" for task, source in plan.data_sources.items())]
    unknown = sorted({r.model for r in plan.rows if not r.known_size})
    if unknown:
        lines.append(f"not costed (no stated shapes in salora_cli/grid/model_specs.py): {', '.join(unknown)}")
    lines += not_covered_by_dry_run(sorted({r.model for r in plan.rows if r.known_size}))
    return lines


def not_covered_by_dry_run(models: list[str]) -> list[str]:
    """What `--dry-run` (tiny random models of the same architectures) cannot show for these models."""
    lines = []
    for name in models:
        s = model_spec(name)
        gb = cm.fp32_weight_gb(s)
        memory = (f"{gb:.0f} GB of fp32 weights before activations and optimizer state: needs a "
                  f"{'80' if gb > 20 else '16+'} GB device" if gb >= 1 else "fits any device")
        lines.append(f"not covered by --dry-run for {name}: its real weights (download, load, learned behaviour), "
                     f"its own tokenizer (vocabulary {s.vocab:,}), memory at full size ({memory})")
    return lines
