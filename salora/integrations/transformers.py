"""SaLoRA inside `transformers.Trainer.train()`.

    handle = salora.attach(model, salora.AdapterConfig(r_init=12, budget=8), modules_to_save=["classifier"])
    trainer = SaLoRATrainer(handle=handle, model=model, args=args, train_dataset=..., data_collator=...)
    trainer.train()
    trainer.save_model("out/")            # our adapter format (learned ranks); handle.export_peft for peft

How it fits Trainer (transformers 5.x, read from `Trainer._inner_training_loop`):
- The schedule's length is Trainer's `state.max_steps` (optimizer steps), set at `on_train_begin`.
- `SaLoRACallback.on_optimizer_step` calls `handle.step(optimizer)`: Trainer fires it right after
  `optimizer.step()` and before `model.zero_grad()`, so the gates still hold the step's gradient,
  and removals slice the state of the optimizer Trainer steps (the callback receives it).
- Trainer's default optimizer is right as it is: the gates are not model parameters, so it never
  steps, decays or clips them; the orthogonality term is already in the model's `.loss`.
- `SaLoRATrainer.log` adds the structure (expected / open / physical rank, target, multiplier,
  orthogonality term, removals) to every log, so `report_to` (TensorBoard, W&B, MLflow, ...) gets
  it through Trainer's own reporting.
- `save_model` writes the adapter in our format (a full `save_pretrained` would store the wrapped
  layers under names no loader knows). Resuming a Trainer checkpoint is not supported: the adapter
  shapes change during training, which Trainer's checkpoint loading cannot follow; the `salora`
  runner resumes exactly.
- One process only: under DDP the wrapper must be rebuilt after each removal, which Trainer does
  not allow from outside; the runner (`salora train`) does it.
"""
from __future__ import annotations

from transformers import Trainer, TrainerCallback

from salora.errors import SaloraError
from salora.tuner import SaLoRA


class SaLoRACallback(TrainerCallback):
    """Drives a `SaLoRA` handle from Trainer's events; keeps the events and last values for logs."""

    def __init__(self, handle: SaLoRA):
        self.handle = handle
        self.events: list[tuple[int, dict[str, int]]] = []  # (step, removal / freeze events)
        self.trajectory: list[tuple[int, int]] = []  # (step, physical total rank) after each step

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1:
            raise SaloraError("SaLoRA under transformers.Trainer runs in one process (a removal changes "
                              "parameter shapes, and DDP's wrapper must then be rebuilt); use `salora train` "
                              "for several processes")
        if self.handle.controller is None or self.handle.total_steps != state.max_steps:
            self.handle.set_total_steps(state.max_steps)

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        events = self.handle.step(optimizer)
        step = self.handle.steps_done
        if events:
            self.events.append((step, events))
        self.trajectory.append((step, self.handle.adapters.total_rank()))

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        events = self.handle.finish(optimizer)
        if events:
            self.events.append((self.handle.steps_done, events))


class SaLoRATrainer(Trainer):
    """`transformers.Trainer` with SaLoRA's structure learning, logging and saving (see above)."""

    def __init__(self, *args, handle: SaLoRA, **kwargs):
        self.salora = SaLoRACallback(handle)
        callbacks = [*(kwargs.pop("callbacks", None) or []), self.salora]
        super().__init__(*args, callbacks=callbacks, **kwargs)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        handle = self.salora.handle
        extra = {"total_rank": handle.adapters.total_rank(),
                 "removed_by_gates": handle.removed["gates"], "removed_by_projection": handle.removed["projection"]}
        extra.update(handle.log_values())
        if handle.last_orth is not None:
            extra["orth"] = float(handle.last_orth)
        super().log({**logs, **extra}, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            self.salora.handle.save(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
