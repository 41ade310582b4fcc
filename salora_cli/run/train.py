"""One training loop for every task and method, on accelerate.

    step:  loss = task loss + method regulariser (orthogonality, budget Lagrangian)
           backward; optimizer + scheduler step; method.after_step (dual ascent, removal, AdaLoRA
           allocation); zero_grad
    eval:  every `eval_every` steps from `eval_start` on, and at the end; the best checkpoint (by the task's main metric)
           is kept among checkpoints that are at the final budget, the final one is reported too.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

import tasks
from salora_cli.core import atomic, faults, run_dir as rd
from salora_cli.run import rng as rng_states
from salora_cli.run.batching import LengthGroupedSampler
from salora_cli.core.config import RunConfig
from salora_cli.core.console import RunConsole
from salora_cli.core.errors import SaloraError
from salora_cli.core.method_registry import REGISTRY
from salora_cli.methods import build_method, load_method, resume_method
from salora_cli.methods.base import Method
from salora_cli.run.tracking import TRACKING_DIR, Tracking, check_installed
from tasks.base import Task, subset

# what gives a task its scorer models for the final scoring; returns what was used, for the record
ScorerSetup = Callable[[Task, RunConfig, Console], dict]


@dataclass
class LoopState:
    """Everything about progress that a checkpoint must restore."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    evals: list = field(default_factory=list)
    best: dict | None = None
    trajectory: list = field(default_factory=list)
    train_time_s: float = 0.0
    # wall seconds of each optimizer step (batch loading and logging included, evaluations and
    # checkpoints not): their median is the step's cost with bursts of other load on the machine
    # left out, which a mean over one short run is not
    step_times: list = field(default_factory=list)
    initial_trainable: int = 0


CHECKPOINT = Path("checkpoints") / "last"


class Trainer:
    def __init__(self, cfg: RunConfig, out: Path, console: Console | None = None, resume: bool = False,
                 scorers: ScorerSetup | None = None):
        """`scorers`: for tasks whose final scoring uses scorer models (`Task.uses_scorer_models`:
        style transfer), what provides them (salora_cli.transfer.style_scoring.attach_scorers); injected so
        this loop does not depend on the code that trains the style classifier with it."""
        self.cfg = cfg
        self.out = out
        self.console = console or RunConsole()
        # Several runs share one process under `salora reproduce`: each measures its own peak.
        self.memory_scope = reset_peak_memory()
        t = cfg.train
        set_seed(t.seed)
        self.resume_from = rd.completed_folder(out / CHECKPOINT, "trainer_state.pt") if resume else None
        self.task = tasks.get(cfg.task)
        self.task.configure(**cfg.task_options)
        self.scorers = scorers
        self.splits = self.task.load_splits(cfg.data_dir, max_train_samples=t.max_train_samples, seed=t.seed)
        self.train_set = self.splits["train"]
        if not self.train_set:
            raise SaloraError(f"task {cfg.task}: the training split is empty")
        self.eval_set = subset(self.splits[self.task.eval_split], t.max_eval_samples, t.seed)
        self.model, self.tokenizer = self.task.build_model(cfg.model)
        # with the tokenizer known, a task may drop what cannot fit (instruction tuning: over-long prompts)
        self.train_set = self.task.fit_to_length(self.tokenizer, self.train_set, t.max_length, "train")
        self.eval_set = self.task.fit_to_length(self.tokenizer, self.eval_set, t.max_length, self.task.eval_split)
        if not self.train_set:
            raise SaloraError(f"task {cfg.task}: no training example fits train.max_length={t.max_length}")

        check_installed(t.trackers())
        allow_precision(t.mixed_precision)
        self.accelerator = Accelerator(
            cpu=launched_without_gpus(), mixed_precision=t.mixed_precision,
            gradient_accumulation_steps=t.grad_accum,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            log_with=t.trackers() or None, project_dir=str(out / TRACKING_DIR) if t.trackers() else None)
        self.tracking = Tracking(self.accelerator, cfg, out)
        per_epoch = math.ceil(len(self.train_set) / (t.batch_size * t.grad_accum
                                                      * self.accelerator.num_processes))
        self.steps_per_epoch = max(per_epoch, 1)
        self.total_steps = t.max_steps or max(1, int(round(t.epochs * self.steps_per_epoch)))
        self.eval_every = t.eval_every or self.steps_per_epoch

        if self.resume_from is not None:
            self.method: Method = resume_method(self.model, cfg, self.total_steps, self.resume_from / "weights")
        else:
            self.method = build_method(self.model, cfg, self.total_steps)
        self.model = self.method.model  # peft's AdaLoRA wraps the model
        self.optimizer = torch.optim.AdamW(self.method.param_groups(t.lr, t.weight_decay), lr=t.lr)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(t.warmup_fraction * self.total_steps), self.total_steps)
        # Its own generator (a DataLoader without one draws a seed from the global RNG at every epoch):
        # starting an epoch must not move the RNG of gate noise and dropout, or a resumed run drifts.
        collate = partial(self.task.collate, self.tokenizer, max_length=t.max_length)
        generator = torch.Generator().manual_seed(t.seed)
        if t.group_by_length:
            lengths = [collate([ex])["input_ids"].shape[-1] for ex in self.train_set]
            loader = DataLoader(self.train_set, batch_size=t.batch_size, collate_fn=collate, generator=generator,
                                sampler=LengthGroupedSampler(lengths, t.batch_size, t.seed))
        else:
            loader = DataLoader(self.train_set, batch_size=t.batch_size, shuffle=True, generator=generator,
                                collate_fn=collate)
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            self.model, self.optimizer, loader, self.scheduler)
        self.state = LoopState(initial_trainable=self.method.trainable_count())
        self._removed_since = 0  # components removed since the last console report
        # the first step whose loss was not finite, and that loss, kept on the device (-1: none yet);
        # read by _check_finite at the steps that read anyway (_reads_back), never at the others
        self._nonfinite: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.resume_from is not None:
            self._load_checkpoint(self.resume_from)
        elif resume and self.accelerator.is_main_process:
            rd.truncate_log(out, 0)  # killed before its first checkpoint: it starts over, its log too

    # ----------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> None:
        """Everything needed to continue exactly: weights (learned shapes), optimizer, scheduler,
        method state (multipliers, gates' optimizer), loop state, data position, RNG states."""
        rng = self._rng_states()  # a collective under several processes: before the early return
        if not self.accelerator.is_main_process:
            return
        state = {
            "loop": asdict(self.state), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
            "rng": rng,
        }

        def write(folder: Path) -> None:
            self.method.save_checkpoint(folder / "weights")
            faults.reached("checkpoint_write")
            with atomic.atomic_path(folder / "trainer_state.pt") as tmp:
                torch.save(state, tmp)

        rd.replace_folder(self.out / CHECKPOINT, write)

    def _load_checkpoint(self, folder: Path) -> None:
        try:
            state = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=False)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.method.load_state_dict(state["method"])
        except (OSError, RuntimeError, KeyError, ValueError, EOFError) as exc:
            raise SaloraError(f"checkpoint {folder} is corrupted or does not fit this run ({exc})") from exc
        self.state = LoopState(**state["loop"])
        rng = state["rng"]
        if isinstance(rng, list):  # one per process; a checkpoint from another process count: the first
            acc = self.accelerator
            rng = rng[acc.process_index] if len(rng) == acc.num_processes else rng[0]
        rng_states.restore(rng)
        if self.accelerator.is_main_process:
            rd.truncate_log(self.out, self.state.step)
            self.console.print(f"resumed from {folder} at step {self.state.step}")

    def _rng_states(self) -> list[dict]:
        """Every process's own RNG states (gate noise and dropout draw from them), in rank order."""
        mine = rng_states.capture()
        return gather_object([mine]) if self.accelerator.num_processes > 1 else [mine]

    # ------------------------------------------------------------------ loop
    def run(self) -> dict:
        for _ in self.train_steps():
            pass
        final = self._evaluate_and_keep()
        test = self._final_test()
        if test is not None:
            self.tracking.log_eval(test, prefix="test")
        metrics = self._write_results(final, test)
        self.tracking.end()
        return metrics

    def train_steps(self) -> Iterator[int]:
        """The training loop, one optimizer step (and its evaluation or checkpoint, when due) per
        iteration; yields the step number. Time spent outside, between iterations, counts in neither
        `train_time_s` nor `step_times`, so two runs can be stepped in turns and timed on the same
        stretch of the machine's speed (benchmarks/bench_runs.py). `run` drives it to the end."""
        acc, t = self.accelerator, self.cfg.train
        if acc.is_main_process:
            atomic.write_json(self.out / "env.json", rd.environment(
                acc.num_processes, str(acc.device), t.mixed_precision))
        self.tracking.start()
        self._record_ranks()
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not acc.is_main_process)
        started = time.perf_counter()
        step_began = started
        with progress:
            bar = progress.add_task(f"{self.cfg.task} {self.cfg.method}", total=self.total_steps,
                                    completed=self.state.step, info="")
            checkpoint_every = t.checkpoint_every or self.eval_every
            while self.state.step < self.total_steps:
                self.loader.set_epoch(self.state.epoch)
                loader = self.loader
                if self.state.batch_in_epoch:  # resuming mid-epoch: same order, skip what was seen
                    loader = acc.skip_first_batches(self.loader, self.state.batch_in_epoch)
                for batch in loader:
                    self.state.batch_in_epoch += 1
                    logs = self._train_batch(batch)
                    if logs is None:
                        continue  # accumulating
                    progress.update(bar, completed=self.state.step,  # the info only where the step read it
                                    **({"info": self._info(logs)} if "task_loss" in logs else {}))
                    self._announce(logs, progress)
                    if self._logs_at(self.state.step):
                        self._log(logs)
                    faults.reached("after_step", self.state.step)
                    now = time.perf_counter()
                    self.state.step_times.append(round(now - step_began, 6))
                    step_began = now
                    # train_time_s counts training only: evaluations and checkpoints are excluded
                    if (self.state.step % self.eval_every == 0 and self.state.step < self.total_steps
                            and self.state.step >= t.eval_start * self.total_steps):
                        self._check_finite()
                        paused = time.perf_counter()
                        self._evaluate_and_keep()
                        started += time.perf_counter() - paused
                        step_began = time.perf_counter()
                    if self.state.step % checkpoint_every == 0 and self.state.step < self.total_steps:
                        self._check_finite()  # never a checkpoint of weights a non-finite loss has stepped
                        self.state.train_time_s += time.perf_counter() - started
                        self._save_checkpoint()
                        started = step_began = time.perf_counter()
                    suspended = time.perf_counter()
                    yield self.state.step
                    outside = time.perf_counter() - suspended
                    started += outside
                    step_began += outside
                    if self.state.step >= self.total_steps:
                        break
                else:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
        self._check_finite()
        events = self.method.finish(self.optimizer)
        if events:
            self._log({"step": self.state.step, **events})
        self.state.train_time_s += time.perf_counter() - started

    def _final_test(self) -> dict | None:
        """Tasks with a held-out test split with references (style transfer) are scored on it once,
        with the best dev checkpoint's weights, and their generations are saved."""
        split = self.task.final_eval_split
        if not split or split not in self.splits:
            return None
        scorers = {}
        started = time.perf_counter()
        if self.cfg.style_scoring and self.task.uses_scorer_models:
            if self.scorers is None:
                raise RuntimeError(f"{self.cfg.task} needs its scorer models: Trainer(..., scorers=...)")
            scorers = self.scorers(self.task, self.cfg, self.console)
        setup_s = time.perf_counter() - started
        model, checkpoint = self._test_model()
        metrics, generate_s, score_s = self._test_metrics(model, self.splits[split])
        if self.accelerator.is_main_process:
            outputs = self.task.outputs_to_save()
            if outputs:  # a classifier's test split has none
                atomic.write_text(self.out / "generations.jsonl", "".join(json.dumps(o) + "\n" for o in outputs))
            self.console.print("  test: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        # Costs apart (train_time_s is the loop's): generating the rewrites, scoring them (classifier,
        # fluency LM), and loading the scorers (which includes training the classifier once, if not cached).
        return {"step": self.state.step, "split": split, **checkpoint, "metrics": metrics,
                "examples": len(self.splits[split]), "generate_time_s": round(generate_s, 1),
                "score_time_s": round(score_s, 1), "scorer_setup_s": round(setup_s, 1), **scorers}

    def _test_model(self) -> tuple[torch.nn.Module, dict]:
        """The model the test split is scored with, and which checkpoint it is: the best dev checkpoint
        (as the tables report dev; the test never chooses anything), rebuilt from best/ unless the final
        weights are that checkpoint anyway. Without a best checkpoint (no evaluation at the final
        budget) the final weights are used."""
        final = self.accelerator.unwrap_model(self.model)
        best = self.state.best
        if best is None or best["step"] == self.state.step:
            return final, {"checkpoint": "final" if best is None else "best", "checkpoint_step": self.state.step}
        self.accelerator.wait_for_everyone()  # best/ is written by the main process
        base, _ = self.task.build_model(self.cfg.model)
        model = load_method(base, self.cfg, self.out / "best").model.to(self.accelerator.device)
        return model, {"checkpoint": "best", "checkpoint_step": best["step"]}

    def _test_metrics(self, model: torch.nn.Module, examples: list) -> tuple[dict[str, float], float, float]:
        """(metrics, generation seconds, scoring seconds): predict, then score, timed apart."""
        model.eval()
        with torch.no_grad():
            started = time.perf_counter()
            outputs = self._predictions(model, examples)
            generated = time.perf_counter()
            metrics = self.task.score(examples, outputs, batch_size=self.cfg.train.eval_batch_size)
            scored = time.perf_counter()
        faults.reached("eval")
        model.train()
        return {k: float(v) for k, v in metrics.items()}, generated - started, scored - generated

    def _train_batch(self, batch) -> dict | None:
        """One batch; at an optimizer step, the step's log values. Only a step that logs or reports
        (`_reads_back`) reads values back from the device (the loss, the budget's state): on a GPU a
        read waits for every kernel queued so far, so a step that reads nothing lets the next
        step's work queue behind it. A non-finite loss is still caught at its step, on the device,
        and raised at the next read, which comes before any evaluation or checkpoint
        (`_check_finite`); a step that reads raises before its backward, as ever."""
        acc = self.accelerator
        self.model.train()
        step = self.state.step + 1
        reads = self._reads_back(step)
        with acc.accumulate(self.model):
            budget_logs = self.method.log_values(step) if reads else {}  # before this step's forward
            loss = self.model(**batch).loss  # with the method's regulariser already in (salora.tuner)
            task_loss, reg_logs = self.method.task_loss(loss)
            self._note_nonfinite(loss.detach(), step)
            if reads:
                self._check_finite()
            acc.backward(loss)
            if not acc.sync_gradients:
                return None
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            events = self.method.after_step(self.state.step, self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
        if events.get("removed"):
            faults.reached("removal")
        if events.get("removed") or events.get("frozen"):
            self._record_ranks()
            self._rewrap()
        happened = {k: v for k, v in events.items() if v}
        if not reads:
            return {"step": self.state.step, **happened}
        return {"step": self.state.step, "loss": float(loss.detach()),
                "task_loss": float(task_loss.detach()), "lr": self.scheduler.get_last_lr()[0],
                **{k: float(v) for k, v in reg_logs.items()}, **budget_logs, **happened}

    def _reads_back(self, step: int) -> bool:
        """Whether optimizer step `step` needs its values: it logs a line or reports on the console."""
        return self._logs_at(step) or self._reports_at(step)

    def _logs_at(self, step: int) -> bool:
        """A log line at every log_every-th step and at the first."""
        return step % self.cfg.train.log_every == 0 or step == 1

    def _reports_at(self, step: int) -> bool:
        """A console progress report every 5 % of the run and at the last step."""
        return step % max(1, self.total_steps // 20) == 0 or step >= self.total_steps

    def _note_nonfinite(self, loss: torch.Tensor, step: int) -> None:
        """Remember the first step with a non-finite loss, on the device (no read)."""
        if self._nonfinite is None:
            self._nonfinite = (torch.full((), -1, dtype=torch.long, device=loss.device), loss.new_zeros(()))
        first, value = self._nonfinite
        now = ~torch.isfinite(loss) & (first < 0)
        self._nonfinite = (torch.where(now, step, first), torch.where(now, loss, value))

    def _check_finite(self) -> None:
        """Raise if a step's loss was not finite (one read of the device)."""
        if self._nonfinite is None:
            return
        first, value = self._nonfinite
        if int(first) >= 0:
            raise SaloraError(f"non-finite loss ({float(value):.4g}) at step {int(first)}; stopping (lower the "
                              "learning rate); earlier results are kept")

    def _structure_agrees(self) -> bool:
        """Every process must end with the same learned structure (ranks and gates)."""
        modules = self.method.rank_modules() or []
        mine = [(m["name"], m["rank"]) for m in modules]
        adapters = getattr(self.method, "adapters", None)
        if adapters is not None and adapters.cfg.gated:
            mine.append(round(sum(float(p.detach().sum()) for p in adapters.gate_parameters()), 4))
        everyone = gather_object([mine])
        if any(f != everyone[0] for f in everyone):
            raise SaloraError("processes disagree on the learned ranks or gates; results not written")
        return True

    def _rewrap(self) -> None:
        """After removal or freezing, parameters changed shape or stopped training: DDP's reducer
        was built for the old ones, so every process builds a fresh wrapper at the same step."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        inner = acc.unwrap_model(self.model)
        acc._models = [m for m in acc._models if m is not self.model]
        self.model = acc.prepare_model(inner)

    def _announce(self, logs: dict, progress: Progress) -> None:
        """Removals and the freeze on the console: removals summed between progress lines (about 20
        a run), the freeze at once. Without a terminal (logs, CI) the live bar shows nothing, so a
        plain progress line is printed at the same pace."""
        if not self.accelerator.is_main_process:
            return
        step = self.state.step
        self._removed_since += logs.get("removed_by_gates", 0)
        if logs.get("frozen"):
            total = self.method.rank_point(step)["total_rank"]
            self.console.print(f"  step {step}: structure frozen at total rank {total} "
                               f"({logs.get('removed_by_projection', 0)} components cut by the freeze)")
        if not self._reports_at(step):
            return
        if self._removed_since:
            total = self.method.rank_point(step)["total_rank"]
            self.console.print(f"  step {step}: {self._removed_since} components removed since the last "
                               f"report (closed gates) · total rank {total}")
            self._removed_since = 0
        if not self.console.is_terminal:
            elapsed = progress.tasks[0].elapsed or 0.0
            self.console.print(f"  {self.cfg.task} {self.cfg.method} step {step}/{self.total_steps} · "
                               f"{self._info(logs)} · {elapsed:.0f} s")

    def _info(self, logs: dict) -> str:
        info = f"loss {logs['task_loss']:.3f}"
        if "expected_rank" in logs:
            info += f" · rank {logs['expected_rank']:.2f}/{logs['target_rank']:.2f}"
        return info

    def _log(self, logs: dict) -> None:
        if self.accelerator.is_main_process:
            rd.append_log(self.out, logs)
        self.tracking.log_step(logs)
        if self.state.step % max(1, self.total_steps // 200) == 0:  # ~200 points per trajectory
            self._record_ranks()

    def _record_ranks(self) -> None:
        point = self.method.rank_point(self.state.step)
        if point is None:
            return
        modules = self.method.rank_modules() or []
        per_role: dict[str, int] = {}
        for m in modules:
            per_role[m["role"]] = per_role.get(m["role"], 0) + m["rank"]
        entry = {"step": self.state.step, **point, "per_role": per_role}
        if self.state.trajectory and self.state.trajectory[-1]["step"] == self.state.step:
            self.state.trajectory[-1] = entry
        else:
            self.state.trajectory.append(entry)
        self.tracking.log_ranks(entry)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, examples: list | None = None) -> dict[str, float]:
        """Metrics on `examples` (default: the eval split). Under several processes each predicts
        a shard and the predictions are gathered before scoring, so every process gets the same
        metrics as one process would."""
        acc = self.accelerator
        examples = self.eval_set if examples is None else examples
        model = acc.unwrap_model(self.model)
        model.eval()
        kw = dict(batch_size=self.cfg.train.eval_batch_size, max_length=self.cfg.train.max_length,
                  device=acc.device)
        with torch.no_grad():
            if acc.num_processes > 1:
                metrics = self.task.score(examples, self._predictions(model, examples))
            else:
                metrics = self.task.evaluate(model, self.tokenizer, examples, **kw)
        faults.reached("eval")
        model.train()
        return {k: float(v) for k, v in metrics.items()}

    def _predictions(self, model: torch.nn.Module, examples: list) -> list:
        """The task's predictions for `examples`, in order; under several processes each predicts a
        shard and the shards are gathered."""
        acc = self.accelerator
        kw = dict(batch_size=self.cfg.train.eval_batch_size, max_length=self.cfg.train.max_length,
                  device=acc.device)
        if acc.num_processes == 1:
            return self.task.predict(model, self.tokenizer, examples, **kw)
        mine = list(range(acc.process_index, len(examples), acc.num_processes))
        preds = self.task.predict(model, self.tokenizer, [examples[i] for i in mine], **kw)
        ordered = sorted(gather_object(list(zip(mine, preds))), key=lambda pair: pair[0])
        return [p for _, p in ordered]

    def _evaluate_and_keep(self) -> dict:
        metrics = self.evaluate()
        step = self.state.step
        flag = tasks.degenerate_flag(self.task)  # every prediction one class: say so wherever it is shown
        record = {"step": step, "epoch": round(step / self.steps_per_epoch, 3),
                  "split": self.task.eval_split, "metrics": metrics,
                  "at_budget": self.method.budget_met(step), **flag}
        self.state.evals.append(record)
        self.tracking.log_eval(record)
        main = metrics[self.task.main_metric]
        best = self.state.best
        if record["at_budget"] and (best is None or main > best["metrics"][self.task.main_metric]):
            self.state.best = {"step": step, "metrics": metrics, **flag}
            if self.accelerator.is_main_process:
                rd.replace_folder(self.out / "best", self.method.save)
        if self.accelerator.is_main_process:
            notes = [n for n in (self.task.baseline_note(metrics),
                                 "" if record["at_budget"] else "before the final budget") if n]
            self.console.print(f"  step {step}: {self.task.main_metric} = {main:.2f}"
                               + (f" ({'; '.join(notes)})" if notes else "")
                               + (f" [yellow]warning: every prediction is class {flag['predicted_class']!r}"
                                  " (degenerate classifier)[/]" if flag else ""))
        return record

    # --------------------------------------------------------------- results
    def _write_results(self, final: dict, test: dict | None = None) -> dict:
        self._record_ranks()
        metrics = {
            "task": self.cfg.task, "method": self.cfg.method, "seed": self.cfg.train.seed,
            "model": self.cfg.model, "main_metric": self.task.main_metric,
            "evals": self.state.evals, "best": self.state.best,
            "final": {"step": final["step"], "metrics": final["metrics"],
                      **{k: final[k] for k in ("degenerate", "predicted_class") if k in final}},
            "trainable_params": {"initial": self.state.initial_trainable,
                                 "final": self.method.trainable_count()},
            "train_time_s": round(self.state.train_time_s, 2), "steps": self.total_steps,
            "epochs": round(self.total_steps / self.steps_per_epoch, 3),
            "step_time_s": round(self.state.train_time_s / max(self.total_steps, 1), 4),
            "step_time_median_s": (round(statistics.median(self.state.step_times), 4)
                                   if self.state.step_times else None),
            "peak_memory_mb": peak_memory_mb(), "peak_memory_scope": self.memory_scope,
            "train_examples": len(self.train_set), "eval_examples": len(self.eval_set),
            "status": "finished",
        }
        if test is not None:
            metrics["test"] = test
        data = self.task.data_summary()
        if data:
            metrics["data"] = data
        baseline = getattr(self.task, "majority_baseline", None)  # GLUE: what "learned" is judged against
        if baseline is not None:
            metrics["majority_baseline"] = baseline(self.eval_set)
        metrics["processes"] = {"count": self.accelerator.num_processes,
                                "structure_agrees": self._structure_agrees()}
        if not self.accelerator.is_main_process:
            return metrics
        rd.replace_folder(self.out / "adapter", self.method.save)
        modules = self.method.rank_modules()
        if modules is not None:
            a = self.cfg.adapter
            learned = REGISTRY[self.cfg.method].learns_rank  # else a fixed rank: r_init is the "budget"
            atomic.write_json(self.out / "ranks.json", {
                "method": self.cfg.method, "task": self.cfg.task, "r_init": a.r_init,
                "budget_avg": a.budget_rank() if learned else a.r_init,
                "budget_total": int(a.budget_rank() * len(modules) + 1e-9) if learned else a.r_init * len(modules),
                "n_matrices": len(modules), "modules": modules, "trajectory": self.state.trajectory})
        atomic.write_json(self.out / "metrics.json", metrics)
        return metrics


def reset_peak_memory() -> str:
    """Start a new peak: "run" if it could be reset, else "process" (the peak since it started)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return "run"
    try:  # Linux: writing 5 resets the resident-set high-water mark (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
        return "run"
    except OSError:
        return "process"


def peak_memory_mb() -> float:
    """Peak memory since reset_peak_memory: GPU allocations on CUDA, else the peak resident set."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def allow_precision(mixed_precision: str) -> None:
    """Let this run's Accelerator take its own mixed precision when an earlier run in this process (a grid,
    an ablation, the dry run, the test suite) set another: accelerate keeps one precision per process and
    refuses a second ("AcceleratorState has already been initialized"), so a profile mixing fp32 and bf16
    runs stopped at its first run of the other kind. Only the precision state is reset; the processes'
    state (PartialState: the process group under a distributed launch) is kept."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=False)


def launched_without_gpus() -> bool:
    """True under torchrun / `accelerate launch --multi_gpu` with several processes but no GPU.

    There `Accelerator()` silently reports a single process; `cpu=True` makes it join the
    process group on gloo. (`accelerate launch --cpu --num_processes 2` starts only one process
    on such a machine: use --multi_gpu or torchrun.)
    """
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def train(cfg: RunConfig, out: Path, console: Console | None = None, resume: bool = False,
          scorers: ScorerSetup | None = None) -> dict:
    return Trainer(cfg, out, console, resume=resume, scorers=scorers).run()
