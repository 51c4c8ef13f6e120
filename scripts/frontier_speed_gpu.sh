#!/usr/bin/env bash
# The prefill rows the quality-vs-speed frontier needs for the whole-spans suites (notebook 08,
# sdtp_lib/workspace/frontier.py), on one GPU, beside an HF dense baseline of the same GPU:
#
#   bash scripts/frontier_speed_gpu.sh OUT          # OUT/dense.json, OUT/<scorer>.json (+ .md), about 5 minutes
#
# dense on HF's loop (the baseline every speedup divides), then each scorer (window attention, the paper's predictor,
# the hybrid; untrained at production width: as fast as trained ones) with the variants of the whole-spans suites on
# this project's engine, at LENGTHS (default 32K, the frontier's length). Qwen2-7B's shape with random weights.
set -euo pipefail
OUT=${1:?usage: bash scripts/frontier_speed_gpu.sh OUT}
LENGTHS=${LENGTHS:-32768}
REPEATS=${REPEATS:-5}
MODEL=${MODEL:-qwen2-7b-random}  # a dry run of the plumbing on a CPU: MODEL=tiny-qwen2 LENGTHS=128 REPEATS=1
VARIANTS=${VARIANTS:-"sdtp+W96 sdtp@0.8+R0.02 sdtp@0.8+R0.02+W96 sdtp@0.8+R0.02+W96+M256"}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
read -r -a LEN <<< "$LENGTHS"
read -r -a VAR <<< "$VARIANTS"
profile() {  # NAME ARGS...: one profile run, its newest latency_*.json / .md renamed to OUT/NAME.*
  local name=$1 tmp
  shift
  tmp=$(mktemp -d)
  python3 -m sdtp_lib profile --model "$MODEL" --lengths "${LEN[@]}" --repeats "$REPEATS" --new-tokens 2 \
    --out "$tmp" "$@"
  mkdir -p "$OUT"
  for ext in json md; do mv "$(ls "$tmp"/latency_*."$ext" | tail -n 1)" "$OUT/$name.$ext"; done
  rm -rf "$tmp"
}
profile dense --variants dense --engines hf
for scorer in attention predictor hybrid; do
  profile "$scorer" --variants "${VAR[@]}" --engines sdtp --scorer "$scorer"
done
ls -l "$OUT"
