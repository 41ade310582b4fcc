"""The plan's cost model: a run's FLOPs, the hours they take on a stated device, and its folder's bytes.

Compute (per token, T = the padded sequence length, N = salora_cli.grid.model_specs' matmul_params: the
weights a token is multiplied with; embeddings are lookups):
- forward: 2·N + 4·L·T·d (attention's scores and weighted sum, L blocks of width d; DeBERTa's
  disentangled position terms and a causal mask's savings are ignored);
- training: forward + backward. The backward of full fine-tuning takes the gradients of activations
  and of weights (2 × forward); with the base frozen (SaLoRA, LoRA, AdaLoRA, BitFit) only the
  activations' (1 × forward), plus the adapters' own products at their rank (6 FLOPs per adapter
  weight: forward, and both gradients). So ≈ 6·N per token for full fine-tuning, ≈ 4·N for adapters;
- SaLoRA's step costs METHOD_OVERHEAD more than LoRA's (its gates, λ and orthogonality term), as
  measured on the cpu grid;
- evaluation: forward only; generation (style dev and test, zero-shot transfer): one forward per
  prompt and generated token, each beam apart, at the device's decoding utilisation.
Time = FLOPs / (peak × utilisation). Disk: BYTES_PER_WEIGHT per saved weight (see run_bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from salora_cli.grid.model_specs import ModelSpec


@dataclass(frozen=True)
class Device:
    name: str = field(metadata={"help": "What the estimate is for, as printed"})
    peak_flops: float = field(metadata={"help": "Peak FLOP/s at the precision the runs use"})
    small_model_utilisation: float = field(metadata={"help": "Share of peak a training step of a model under "
                                                             "SMALL_MODEL params reaches"})
    large_model_utilisation: float = field(metadata={"help": "The same for larger models (7B)"})
    decode_utilisation: float = field(metadata={"help": "Share of peak while generating token by token"})

    def utilisation(self, spec: ModelSpec) -> float:
        return self.small_model_utilisation if spec.params < SMALL_MODEL else self.large_model_utilisation


SMALL_MODEL = 1_000_000_000
# The reference accelerator: one A100 SXM 80 GB, 312 TFLOP/s dense bf16 on its tensor cores (NVIDIA's
# datasheet). Utilisation: a ~100M-parameter model's step at batch 32 × ~64 tokens is ~2 ms of
# tensor-core work among ~1,000 kernel launches (forward, backward, AdamW, the adapters' small products),
# so launches and memory traffic bound it: 15 %. LLaMA-7B at 4 × 256 tokens a step: large products,
# but fp32 weights cast to bf16 in every forward (the runner keeps weights in fp32 under autocast): 35 %.
# Decoding (a few dozen sequences at a time) reads every weight for each token: 5 %.
REFERENCE_GPU = Device("NVIDIA A100-SXM4-80GB (312 TFLOP/s bf16)", 312e12, 0.15, 0.35, 0.05)
# For the cpu profile: the 2 cores of this project's machine (Xeon, AVX-512, 2.6 GHz): 2 FMA units × 16 fp32
# lanes × 2 FLOPs × 2.6 GHz × 2 cores = 333 GFLOP/s peak in fp32 (the cpu profile trains in fp32). GEMMs
# of these sizes reach about half of that; elementwise ops, the optimizer and Python take about as long
# again: 20 %. Decoding: 10 % (small batches of small products).
REFERENCE_CPU = Device("2 CPU cores (333 GFLOP/s fp32 peak)", 2 * 2 * 16 * 2 * 2.6e9, 0.20, 0.20, 0.10)

FULL_BACKWARD = 2.0  # backward / forward FLOPs when every weight trains (activation and weight gradients)
FROZEN_BACKWARD = 1.0  # ... when the base is frozen (activation gradients only)
ADAPTER_FLOPS_PER_WEIGHT = 6  # an adapter weight's forward product (2) and its two gradients (4)
# SaLoRA's step time / LoRA's at the same shapes: 1.071 on the cpu grid's SST-2 runs (docs/benchmark.md, make bench-runs)
METHOD_OVERHEAD = {"salora": 1.07}

BYTES_PER_WEIGHT = 4  # saved tensors are fp32 (safetensors), optimizer moments too
ADAM_MOMENTS = 2  # AdamW keeps two fp32 moments per trainable weight, saved in checkpoints/last
LOG_LINE_BYTES = 300  # one log.jsonl line (log_every 1: a line per step), a few values as JSON
GENERATION_LINE_BYTES = 400  # one generations.jsonl record (source, references, rewrite)


def forward_flops(spec: ModelSpec, context: float) -> float:
    """FLOPs of one token's forward pass in a sequence of `context` tokens."""
    return 2.0 * spec.matmul_params + 4.0 * spec.layers * context * spec.hidden


def train_flops(spec: ModelSpec, method: str, context: float, adapter_rank: float) -> float:
    """FLOPs of one trained token: forward and backward of the model, and the adapters' own work at
    `adapter_rank` per matrix (0 for full fine-tuning and BitFit)."""
    backward = FULL_BACKWARD if method == "full" else FROZEN_BACKWARD
    base = (1.0 + backward) * forward_flops(spec, context)
    adapters = ADAPTER_FLOPS_PER_WEIGHT * adapter_rank * spec.rank_one_params
    return (base + adapters) * METHOD_OVERHEAD.get(method, 1.0)


def hours(train: float, forward: float, decode: float, spec: ModelSpec, device: Device) -> float:
    """Hours of `train` + `forward` FLOPs at the device's training utilisation and `decode` FLOPs at its
    decoding utilisation."""
    busy = (train + forward) / device.utilisation(spec) + decode / device.decode_utilisation
    return busy / device.peak_flops / 3600.0


def trainable_weights(spec: ModelSpec, method: str, rank: float, r_init: int, num_labels: int) -> int:
    """Weights a run saves: adapters at `rank` (SaLoRA and LoRA save their learned shapes; peft's AdaLoRA
    keeps r_init rows and masks them, with a singular value per row), the new head, or everything."""
    head = spec.head_params(num_labels)
    if method in ("salora", "lora"):
        return round(rank * (spec.rank_one_params + spec.adapted_matrices)) + head  # A, B and λ per component
    if method == "adalora":
        return r_init * (spec.rank_one_params + spec.adapted_matrices) + head
    if method == "bitfit":
        return spec.bias_params + head
    return spec.params + head  # full fine-tuning


def run_bytes(trainable: int, steps: int, checkpointed: bool, generations: int = 0, method: str = "") -> int:
    """A run folder's size: the weights in adapter/ and best/ (and in checkpoints/last, with the AdamW
    moments, when the run is long enough to checkpoint; AdaLoRA's importance averages too), log.jsonl, and
    the generations of a style run's test split."""
    weights = 2 * trainable
    if checkpointed:
        weights += trainable * (1 + ADAM_MOMENTS + (2 if method == "adalora" else 0))
    return weights * BYTES_PER_WEIGHT + steps * LOG_LINE_BYTES + generations * GENERATION_LINE_BYTES


def fp32_weight_gb(spec: ModelSpec) -> float:
    """GB the runner's fp32 copy of the weights takes on the device (before activations and optimizer)."""
    return spec.params * BYTES_PER_WEIGHT / 1e9
