#!/usr/bin/env bash
# `make gpu-check` (issue 38): the prepared check for the first GPU this project gets, on the first CUDA
# device, at most 10 minutes, no download. benchmarks/gpu_check.py trains randomly initialised models of a
# RoBERTa-base and a LLaMA shape with SaLoRA and LoRA on real SST-2 batches in bf16 (removal on the
# device, step-time ratio with its interval, peak memory, torch.compile) and writes results/gpu_check.md
# (and .json; OUT=... elsewhere). Commit that file with the code that produced it.
# GPU_BENCH=1 also runs the bench's GPU form (issue 20, ~5 more minutes): bench_step.py --device cuda,
# synchronised timing of every variant, into benchmarks/gpu-<date>-<device>.{txt,json}.
# Needs the project importable by PY (`make install`) and SALORA_DATA (SST-2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
device=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
if [ -z "$device" ]; then echo "error: no CUDA device visible to $PY (the CPU smoke form: $PY benchmarks/gpu_check.py --device cpu --smoke)" >&2; exit 1; fi
timeout 540 "$PY" benchmarks/gpu_check.py --device cuda --out "${OUT:-results/gpu_check.md}"
if [ -n "${GPU_BENCH:-}" ]; then
  stem="benchmarks/gpu-$(date -u +%F)-$(echo "$device" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')"
  {
    echo "date: $(date -u +%FT%TZ)   device: $device   torch: $("$PY" -c 'import torch; print(torch.__version__)')"
    # 30 interleaved repeats: GPU steps are short, so more samples for the median cost little
    timeout 300 "$PY" benchmarks/bench_step.py --device cuda --repeats 30 --json "$stem.json"
  } 2>&1 | tee "$stem.txt"
fi
