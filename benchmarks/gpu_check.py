"""`make gpu-check`: the paper profile's two shapes on one GPU, prepared for the first GPU this project gets.

No download: randomly initialised models of a RoBERTa-base size (the GLUE encoders' shape) and of a
LLaMA shape (LLaMA-7B's where the device holds two copies with room to spare, else TinyLlama-1.1B's), built
from a config on the device, trained in bf16 autocast with fp32 weights as the runner trains them, on real
SST-2 batches (the shared data's training sentences, MiniLM's offline tokenizer, the vocabulary sized to
it): the encoder classifies them, the decoder models them as text. Per shape, SaLoRA and LoRA at the
paper's settings (GLUE: 12 → 8, LoRA rank 8; LLaMA: 46 → 32, LoRA rank 32) step in turns, one step
each per round, so both see the same stretch of the device; SaLoRA's schedule removes components on
the device during the run. Reported, into results/gpu_check.md (and .json):
- the median step time of each, and SaLoRA's / LoRA's per round with a 95 % interval (intervals.py; blocks
  of consecutive rounds resampled, as a run's steps are not independent), also before the first
  removal and after the freeze;
- SaLoRA's total rank at the start and the end and the steps at which components were removed;
- the device memory the weights take and the peak a training step reaches, per method;
- a torch.compile pass of the encoder with SaLoRA across removals: graphs compiled, graph breaks, and
  the compiled step's median time against eager.

    python benchmarks/gpu_check.py [--device cuda] [--out results/gpu_check.md] [--steps 300] [--smoke]

--smoke: the same code on tiny shapes for a few steps (CPU in the test suite: tests/test_gpu_check.py;
torch.compile with the "eager" backend there, as inductor's C++ build takes minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_batches import glue_dir  # noqa: E402
from intervals import median_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 10  # consecutive rounds resampled together in the interval (a run's phases last many steps)
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48}
TINYLLAMA = {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
             "intermediate_size": 5632}  # TinyLlama-1.1B's config: LLaMA's blocks where 7B does not fit twice
LLAMA_7B_NEEDS_GB = 120  # two fp32 copies (54 GB), their bf16 casts within a step, activations, the allocator's slack


@dataclass(frozen=True)
class Case:
    name: str = field(metadata={"help": "As the report names it"})
    model_type: str = field(metadata={"help": "roberta or llama"})
    shape: dict = field(metadata={"help": "Config sizes"})
    salora: dict = field(metadata={"help": "AdapterConfig fields of the SaLoRA run (the paper entry's)"})
    lora_rank: int = field(metadata={"help": "LoRA's rank: SaLoRA's budget"})
    batch: int = 32
    max_length: int = 128


def cases(device: torch.device, smoke: bool) -> list[Case]:
    glue = {"r_init": 12, "budget": 8, "alpha": 16, "orth_reg": 0.1}
    instruct = {"r_init": 46, "budget": 32, "alpha": 64, "orth_reg": 0.01}
    if smoke:
        return [Case("RoBERTa shape (tiny, smoke)", "roberta", SMALL, {**glue, "r_init": 4, "budget": 2}, 2, 8, 32),
                Case("LLaMA shape (tiny, smoke)", "llama", {**SMALL, "num_key_value_heads": 2},
                     {**instruct, "r_init": 4, "budget": 2}, 2, 8, 32)]
    from salora_cli.grid.model_specs import SPECS

    total_gb = torch.cuda.get_device_properties(device).total_memory / 1e9 if device.type == "cuda" else 0
    llama = (("LLaMA-7B shape", SPECS["huggyllama/llama-7b"].config_sizes()) if total_gb >= LLAMA_7B_NEEDS_GB
             else ("TinyLlama-1.1B shape", TINYLLAMA))
    return [Case("RoBERTa-base shape", "roberta", SPECS["roberta-base"].config_sizes(), glue, 8),
            Case(llama[0], "llama", llama[1], instruct, 32)]


# --------------------------------------------------------------------------------------------- batches
def sst2_batches(tokenizer, case: Case, count: int, device: torch.device) -> list[dict]:
    """`count` batches of real SST-2 training sentences (evenly spaced through the file, so both labels
    and every length occur), tokenised as the runner does (padded to the batch's longest)."""
    from tasks.classification.glue import get_glue_task

    train = get_glue_task("sst2").load_splits(str(glue_dir()), splits=("train",))["train"]
    step = max(1, len(train) // (count * case.batch))
    examples = train[::step][:count * case.batch]
    out = []
    for i in range(count):
        chunk = examples[i * case.batch:(i + 1) * case.batch]
        enc = tokenizer([ex["text_a"] for ex in chunk], truncation=True, max_length=case.max_length,
                        padding="longest", return_tensors="pt")
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if case.model_type == "llama":  # the sentence as text: each token predicts the next, padding ignored
            batch["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        else:
            batch["labels"] = torch.tensor([ex["label"] for ex in chunk])
        out.append({k: v.to(device) for k, v in batch.items()})
    return out


# ---------------------------------------------------------------------------------------------- models
def build(case: Case, method: str, vocab: int, pad_id: int, total_steps: int, device: torch.device, seed: int = 0,
          schedule: dict | None = None):
    """(model, optimizer, SaLoRA handle): a random model of the case's shape on the device, fp32 weights,
    with SaLoRA or LoRA attached as the runner attaches them (`schedule`: SaLoRA schedule fields to set)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    import salora

    torch.manual_seed(seed)
    extra = {"max_position_embeddings": 512 + pad_id + 1, "num_labels": 2} if case.model_type == "roberta" else {}
    config = AutoConfig.for_model(case.model_type, vocab_size=vocab, pad_token_id=pad_id, **case.shape, **extra)
    with device:  # built where it trains: a 7B model initialised on the CPU takes minutes
        auto = AutoModelForCausalLM if case.model_type == "llama" else AutoModelForSequenceClassification
        model = auto.from_config(config)
    if case.model_type == "roberta":
        model.config.problem_type = "single_label_classification"  # fixed now, not at the first step
    adapter = ({**case.salora, **(schedule or {}), "method": "salora"} if method == "salora"
               else {"method": "lora", "r_init": case.lora_rank, "alpha": case.salora["alpha"]})
    handle = salora.attach(model, salora.AdapterConfig(**adapter), total_steps=total_steps,
                           modules_to_save=["classifier"] if case.model_type == "roberta" else None)
    model.train()
    optimizer = torch.optim.AdamW(handle.parameter_groups(1e-4), lr=1e-4)
    return model, optimizer, handle


def train_step(model, optimizer, handle, batch, device: torch.device, forward=None) -> dict:
    """One optimizer step as the runner takes it: the forward in bf16 autocast (the regulariser is in
    the loss), backward, AdamW, SaLoRA's step (gates, budget, removal), zero_grad."""
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = (model if forward is None else forward)(**batch).loss
    loss.backward()
    optimizer.step()
    events = handle.step(optimizer)
    optimizer.zero_grad(set_to_none=True)
    return events or {}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- timing
def time_case(case: Case, tokenizer, steps: int, device: torch.device) -> dict:
    """SaLoRA and LoRA stepped in turns (order shuffled each round from a fixed seed), each step timed
    between device synchronisations; SaLoRA's rank followed."""
    batches = sst2_batches(tokenizer, case, 16, device)
    # one step more than timed: the first, untimed, measures memory (and creates AdamW's state)
    built = {m: build(case, m, len(tokenizer), tokenizer.pad_token_id, steps + 1, device) for m in ("salora", "lora")}
    memory = {m: step_memory(built[m], batches[-1], device) for m in built}
    times: dict[str, list[float]] = {m: [] for m in built}
    ranks, removals, frozen_at = [built["salora"][2].adapters.total_rank()], [], None
    order, shuffle = list(built), random.Random(0).shuffle
    for i in range(steps):
        shuffle(order)
        for m in order:
            synchronize(device)
            started = time.perf_counter()
            events = train_step(*built[m], batches[i % len(batches)], device)
            synchronize(device)
            times[m].append(time.perf_counter() - started)
            if m == "salora":
                if events.get("removed"):
                    removals.append(i + 1)
                if events.get("frozen") and frozen_at is None:
                    frozen_at = i + 1
    ranks.append(built["salora"][2].adapters.total_rank())
    ratios = [s / lo for s, lo in zip(times["salora"], times["lora"])]
    first = removals[0] if removals else steps
    phases = {"whole run": ratios, "before the first removal": ratios[:first - 1],
              "after the freeze": ratios[frozen_at:] if frozen_at else []}
    return {"case": case.name, "shape": case.shape, "steps": steps, "batch": case.batch,
            "median_step_ms": {m: 1000 * statistics.median(t) for m, t in times.items()},
            "ratio": {name: _ratio(r) for name, r in phases.items() if len(r) >= 2},
            "salora_total_rank": ranks, "removal_steps": removals, "frozen_at": frozen_at, "memory_gb": memory}


def _ratio(ratios: list[float]) -> dict:
    low, high = median_interval(ratios, block=min(BLOCK, max(1, len(ratios) // 4)))
    return {"median": statistics.median(ratios), "interval": [low, high], "rounds": len(ratios)}


def step_memory(built, batch, device: torch.device) -> dict:
    """GB the model holds on the device before its first step, and the peak while it takes that step
    (CUDA's allocator: activations, gradients, the optimizer state it creates). Not measured on a CPU."""
    if device.type != "cuda":
        return {}
    synchronize(device)
    held = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    train_step(*built, batch, device)
    synchronize(device)
    return {"weights_gb": held / 1e9, "step_peak_gb": torch.cuda.max_memory_allocated(device) / 1e9}


# The compile pass removes components twice and then freezes: every removal changes the adapters' shapes,
# which torch.compile guards, so each costs a recompilation of the frames (tens of seconds each with
# inductor on a GPU). Three structures keep the pass within minutes; `budget_s` stops it in any case.
COMPILE_SCHEDULE = {"ramp_start": 0.0, "ramp_end": 0.5, "freeze_at": 0.7}


def compile_pass(case: Case, tokenizer, steps: int, device: torch.device, backend: str, budget_s: float) -> dict:
    """SaLoRA on the encoder under torch.compile across removals: graphs compiled, graph breaks, and the
    compiled step's median over the last quarter of the steps (after the freeze: no more recompiling)
    against eager's over the same steps."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    batches = sst2_batches(tokenizer, case, 8, device)
    schedule = {**COMPILE_SCHEDULE, "prune_every": max(1, steps // 3)}
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        model, optimizer, handle = build(case, "salora", len(tokenizer), tokenizer.pad_token_id, steps, device,
                                         schedule=schedule)
        forward = torch.compile(model, backend=backend) if compiled else None
        times, started_all = [], time.perf_counter()
        for i in range(steps):
            synchronize(device)
            started = time.perf_counter()
            train_step(model, optimizer, handle, batches[i % len(batches)], device, forward)
            synchronize(device)
            times.append(time.perf_counter() - started)
            if time.perf_counter() - started_all > budget_s:
                break
        runs[compiled] = {"median_ms": 1000 * statistics.median(times[-max(2, steps // 4):]), "done": len(times),
                          "total_s": time.perf_counter() - started_all, "rank": handle.adapters.total_rank(),
                          "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values())}
    return {"backend": backend, "steps": steps, "steps_done": runs[True]["done"], "eager_ms": runs[False]["median_ms"],
            "compiled_ms": runs[True]["median_ms"], "compile_total_s": runs[True]["total_s"],
            "graphs_compiled": runs[True]["graphs"], "graph_breaks": runs[True]["breaks"],
            "same_final_rank": runs[True]["rank"] == runs[False]["rank"], "final_rank": runs[True]["rank"]}


# ---------------------------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    env = results["environment"]
    lines = ["# GPU check (`make gpu-check`)", "",
             f"{env['date']} · {env['device']} · torch {env['torch']} · CUDA {env['cuda']} · "
             f"{'smoke form (tiny shapes)' if results['smoke'] else 'full shapes'} · written by "
             "`benchmarks/gpu_check.py`; randomly initialised models, bf16 autocast over fp32 weights, real SST-2 "
             "batches.", ""]
    for case in results["cases"]:
        lines += [f"## {case['case']}", "",
                  f"{case['steps']} rounds, batch {case['batch']} sentences; shape {case['shape']}.", "",
                  "| | SaLoRA | LoRA |", "|---|---|---|",
                  f"| median step (ms) | {case['median_step_ms']['salora']:.2f} | {case['median_step_ms']['lora']:.2f} |"]
        memory = case["memory_gb"]
        if all(memory.values()):  # CUDA only
            lines += [f"| weights on the device (GB) | {memory['salora']['weights_gb']:.2f} | {memory['lora']['weights_gb']:.2f} |",
                      f"| peak in a step (GB) | {memory['salora']['step_peak_gb']:.2f} | {memory['lora']['step_peak_gb']:.2f} |"]
        lines += ["", "| SaLoRA / LoRA step time | median of per-round ratios | 95 % interval | rounds |", "|---|---|---|---|"]
        for name, r in case["ratio"].items():
            lines.append(f"| {name} | {r['median']:.3f} | {r['interval'][0]:.3f}–{r['interval'][1]:.3f} | {r['rounds']} |")
        ranks = case["salora_total_rank"]
        lines += ["", f"SaLoRA's total rank {ranks[0]} → {ranks[-1]}; components removed on the device at steps "
                      f"{', '.join(map(str, case['removal_steps'])) or 'none'}; structure frozen at step "
                      f"{case['frozen_at'] or 'never'}.", ""]
    c = results.get("compile")
    if c:
        lines += ["## torch.compile (the encoder, SaLoRA, across removals)", "",
                  f"backend {c['backend']}, {c['steps_done']} of {c['steps']} steps"
                  f"{' (stopped at the time limit)' if c['steps_done'] < c['steps'] else ''}, two removals and the "
                  f"freeze: {c['graphs_compiled']} graphs compiled, "
                  f"{c['graph_breaks']} graph breaks; median step {c['compiled_ms']:.2f} ms compiled against "
                  f"{c['eager_ms']:.2f} ms eager (the last quarter of the steps); compilation included, the run "
                  f"took {c['compile_total_s']:.0f} s; final rank {c['final_rank']}, "
                  f"{'the same' if c['same_final_rank'] else 'NOT the same'} as eager's.", ""]
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "cuda": torch.version.cuda or "none",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=str(ROOT / "results" / "gpu_check.md"))
    ap.add_argument("--steps", type=int, default=300, help="rounds per shape (SaLoRA and LoRA one step each)")
    ap.add_argument("--compile-steps", type=int, default=60)
    ap.add_argument("--compile-budget-s", type=float, default=240, help="stop the compiled run after this long")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, few steps (the suite's CPU form)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU (the CPU form: --device cpu --smoke)")
    if not (glue_dir() / "SST-2" / "train.tsv").is_file():
        raise SystemExit(f"error: SST-2 not found under {glue_dir()} (set SALORA_DATA)")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from tasks.models import resolve_model

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    steps, compile_steps = (16, 9) if args.smoke else (args.steps, args.compile_steps)
    results = {"environment": environment(device), "smoke": args.smoke, "cases": []}
    for case in cases(device, args.smoke):
        print(f"{case.name}: {steps} rounds ...", flush=True)
        results["cases"].append(time_case(case, tokenizer, steps, device))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    encoder = cases(device, args.smoke)[0]
    print(f"torch.compile: {compile_steps} steps ...", flush=True)
    results["compile"] = compile_pass(encoder, tokenizer, compile_steps, device,
                                      "inductor" if device.type == "cuda" else "eager", args.compile_budget_s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(out.read_text())
    return results


if __name__ == "__main__":
    main()
