"""Train-step and inference cost of SaLoRA vs LoRA vs peft LoRA vs the frozen base, side by side.

MiniLM-L6 (offline), batch 16 × 64 tokens, all six matrices per block, r_init 12. Variants are
timed interleaved (round-robin over repeats, median reported) in one process, so machine noise
hits them alike; peak memory is measured per variant in a fresh subprocess.

    python benchmarks/bench_step.py [--repeats 15] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import torch

BATCH, LENGTH, R_INIT = 16, 64, 12
PRUNED_ACTIVE = "SaLoRA r=4, still learning"  # pruned while gates and budget are active
PRUNED_FROZEN = "SaLoRA r=4, frozen"  # after the freeze: the rest of training, pruned for good
VARIANTS = ["base (frozen, head only)", "peft LoRA", "our LoRA", "SaLoRA unpruned", PRUNED_ACTIVE, PRUNED_FROZEN]


def build(variant: str, seed: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from salora import AdapterConfig, SaLoRA
    from salora.model import attach_adapters
    from tasks.models import resolve_model

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm-l6"), num_labels=2)
    adapters = None
    if variant == "base (frozen, head only)":
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith("classifier"))
    elif variant == "peft LoRA":
        model = get_peft_model(model, LoraConfig(
            r=R_INIT, lora_alpha=16, target_modules=["query", "key", "value", "attention.output.dense",
                                                     "intermediate.dense", r"output.dense"],
            modules_to_save=["classifier"]))
    else:
        method = "lora" if variant == "our LoRA" else "salora"
        # ramp 0 -> target = budget at once, so the budget pressure is active in every timed step.
        # No removal while timing (prune_every beyond the run): the ranked push closes gates within a
        # few steps, and a variant that lost components (whole early layers, on this random batch)
        # mid-measurement would time a smaller model (and a shorter backward) than its name says.
        adapters = attach_adapters(model, AdapterConfig(method=method, r_init=R_INIT, budget=4, ramp_start=0.0,
                                                        ramp_end=0.0, prune_every=10**9),
                                   modules_to_save=["classifier"])
        if variant in (PRUNED_ACTIVE, PRUNED_FROZEN):
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for layer in adapters:  # close 8 of 12 gates per matrix, then remove them
                    layer.log_alpha[torch.randperm(R_INIT, generator=g)[:8]] = -10.0
            adapters.remove_closed()
            if variant == PRUNED_FROZEN:
                adapters.freeze_structure()
    model.train()
    hooks = None
    if adapters is not None:
        # a long schedule: the structure never freezes while timing
        hooks = SaLoRA(adapters, total_steps=10**9)
        params = hooks.parameter_groups(1e-4)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    return model, opt, hooks


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20000, (BATCH, LENGTH), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 2, (BATCH,), generator=g)}


def train_step(model, opt, hooks, data):
    """One optimizer step exactly as the training loop does it (the SaLoRA handle's step included;
    its regulariser is in the model's loss)."""
    loss = model(**data).loss
    loss.backward()
    opt.step()
    if hooks is not None:
        hooks.step(opt)
    opt.zero_grad(set_to_none=True)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _peak_memory_child(variant: str, queue) -> None:
    model, opt, hooks = build(variant)
    data = batch()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS: model loaded, no step yet
    before = _proc_status_kb("VmRSS")
    for _ in range(3):
        train_step(model, opt, hooks, data)
    queue.put((_proc_status_kb("VmHWM") - before) / 1024)


def peak_memory_mb(variant: str) -> float:
    """Peak memory that training steps add to the loaded model (MB): activations, gradients,
    optimizer state.

    CPU: a fresh process per variant, peak RSS during 3 steps above the RSS after loading.
    GPU: torch.cuda.max_memory_allocated is the natural measure instead (not wired: CPU bench).
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_memory_child, args=(variant, q))
    p.start()
    value = q.get()
    p.join()
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    data = batch()
    built = {v: build(v) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        for _ in range(2):
            train_step(*built[v], data)
    for _ in range(args.repeats):
        for v in VARIANTS:
            t0 = time.perf_counter()
            train_step(*built[v], data)
            times[v].append(time.perf_counter() - t0)
    step = {v: statistics.median(t) for v, t in times.items()}
    for v, (_, _, hooks) in built.items():  # what was timed is what the name says
        if hooks is not None:
            expected = R_INIT if v in ("our LoRA", "SaLoRA unpruned") else 4
            ranks = {layer.rank for layer in hooks.adapters}
            if ranks != {expected}:
                raise SystemExit(f"{v}: ranks changed while timing ({sorted(ranks)}, expected {expected})")

    # inference: merged SaLoRA vs the plain base model
    base, _, _ = build("base (frozen, head only)")
    salora, _, hooks = build(PRUNED_FROZEN)
    adapters = hooks.adapters
    with torch.no_grad():
        for layer in adapters:
            layer.lora_lambda.normal_()
    adapters.merge()
    base.eval()
    salora.eval()
    infer = {"base": [], "merged SaLoRA": []}
    with torch.no_grad():
        for _ in range(2):
            base(**data), salora(**data)
        for _ in range(args.repeats):
            for name, m in (("base", base), ("merged SaLoRA", salora)):
                t0 = time.perf_counter()
                m(**data)
                infer[name].append(time.perf_counter() - t0)
    infer_med = {k: statistics.median(v) for k, v in infer.items()}
    memory = {v: peak_memory_mb(v) for v in VARIANTS}

    print(f"MiniLM-L6, batch {BATCH}×{LENGTH}, six matrices per block, r_init {R_INIT}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'variant':28s} {'train step (ms)':>16s} {'step peak mem (MB)':>19s}")
    for v in VARIANTS:
        print(f"{v:28s} {1000 * step[v]:16.1f} {memory[v]:19.1f}")
    print(f"{'eval: base':28s} {1000 * infer_med['base']:16.1f}")
    print(f"{'eval: merged SaLoRA':28s} {1000 * infer_med['merged SaLoRA']:16.1f}")
    ratios = {
        "SaLoRA unpruned / our LoRA (target <= 1.05)": step["SaLoRA unpruned"] / step["our LoRA"],
        "SaLoRA r=4 still learning / our LoRA": step[PRUNED_ACTIVE] / step["our LoRA"],
        "SaLoRA r=4 frozen / our LoRA (target < 1.0)": step[PRUNED_FROZEN] / step["our LoRA"],
        "our LoRA / peft LoRA (target <= 1.00)": step["our LoRA"] / step["peft LoRA"],
        "merged SaLoRA / base, eval (target 1.00 ± noise)": infer_med["merged SaLoRA"] / infer_med["base"],
    }
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:52s} {v:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"step_s": step, "eval_s": infer_med, "peak_rss_mb": memory, "ratios": ratios}, fh, indent=2)


if __name__ == "__main__":
    main()
