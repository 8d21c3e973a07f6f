#!/usr/bin/env bash
# Reproduces the lite reasoner: cold-start SFT → GRPO → evaluation (base vs SFT vs SFT+GRPO).
# Resumable: rerunning continues each stage from its checkpoint. Logs under ~/.cache/affectstream/runs/lite/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${AFFECTSTREAM_HOME:-$HOME/.cache/affectstream}/runs/lite"
mkdir -p "$RUNS/sft" "$RUNS/grpo" "$RUNS/eval"
affectstream train sft --config train/configs/lite_sft.toml --resume 2>&1 | tee -a "$RUNS/sft/train.log"
affectstream train grpo --config train/configs/lite_grpo.toml --resume 2>&1 | tee -a "$RUNS/grpo/train.log"
affectstream eval --config train/configs/lite_eval.toml 2>&1 | tee -a "$RUNS/eval/eval.log"
