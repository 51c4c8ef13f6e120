#!/usr/bin/env bash
# Main job on the embedded default (SmolLM2-135M-Instruct, CPU, a few minutes):
#  1. pruned (shipped trained predictor) vs dense generation on a ~1K-token prompt, with timings;
#  2. a short stage-1 saliency + stage-2 training + validation pass (30 samples) into a new run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh .venv
.venv/bin/python -m sdtp_lib generate --model smollm2-135m --prompt-file data/demo/long_prompt.txt \
  --predictor smollm2-135m --keep-ratio 0.9 --stages 10 --max-new-tokens 48 --compare
RUN="runs/demo-train-$(date +%Y%m%d-%H%M%S)"
.venv/bin/python -m sdtp_lib train --model smollm2-135m --samples 30 --seeds 0 --epochs 2 --out "$RUN" "$@"
