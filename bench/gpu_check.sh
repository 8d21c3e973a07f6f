#!/usr/bin/env bash
# r1-omni GPU check: full-size random-weight model in torch CUDA fp16 + bf16 — per-window latency of the
# encoders, prefill, 64-token decode, batched throughput (1/4/8 windows), peak memory — one table.
# Budget: ≤ 8 min on one H100 (the python part is capped at 7.5 min). Without CUDA it is a no-op that says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to torch — nothing measured (run this on an NVIDIA GPU, e.g. an H100)."
  exit 0
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="${PYTHONPATH:-}:$(pwd)/bench"
timeout 450 "$PY" bench/gpu_check_omni.py --device cuda --config full --dtypes fp16,bf16 --batches 1,4,8 --decode 64 "$@"

# TensorRT plans for the exported encoders: builds and times them when tensorrt imports,
# otherwise says it is absent.
bash bench/gpu_check_trt.sh || echo "gpu_check: TensorRT section failed (see above)"
