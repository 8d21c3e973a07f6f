#!/usr/bin/env bash
# Reproduces the lite reasoner: cold-start SFT → GRPO → evaluation, into a RUN folder.
# Resumable: rerunning continues each stage from its checkpoint. Nothing here touches the shipped
# adapter (train/artifacts/, pinned by hash in export/pins/lite.json): promoting a run's adapter is the
# explicit step `python -m affectstream.train.promote RUN/grpo/adapter.gguf --name ... --layout evidence`.
#   RUN (default ~/.cache/affectstream/runs/lite-evidence) — configs write there via AFFECTSTREAM_RUN.
#   REAL (optional) — a folder made by `python -m affectstream.train.real_cues` (train.jsonl, test.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${RUN:-${AFFECTSTREAM_HOME:-$HOME/.cache/affectstream}/runs/lite-evidence}"
mkdir -p "$RUN/sft" "$RUN/grpo" "$RUN/eval"
export AFFECTSTREAM_RUN="$RUN"
affectstream train sft --config train/configs/lite_sft.toml --resume 2>&1 | tee -a "$RUN/sft/train.log"
affectstream train grpo --config train/configs/lite_grpo.toml --resume 2>&1 | tee -a "$RUN/grpo/train.log"
affectstream eval --config train/configs/lite_eval.toml 2>&1 | tee -a "$RUN/eval/eval.log"
