#!/usr/bin/env bash
# H2O alone and with SDTP, one GPU, resumable in parts (docs/evaluation.md, "H2O"):
#
#   bash scripts/h2o_gpu.sh OUT        # call again until it prints "complete"
#
# Qwen2.5-Coder-0.5B in bf16: dense, sdtp:attention and the shipped predictor sdtp:predictor, each also with H2O at
# a 40% KV budget (--kv-budget 0.4: dense+H0.4, sdtp+H0.4:attention, sdtp+H0.4:predictor), on
#   1. the synthetic suite, 1K-8K, both layouts, n = 10 (OUT/synthetic), then
#   2. the LongBench fixture, data/longbench_fixture (OUT/longbench),
# with the KV bytes held when decoding ends and the decode ms/token beside the scores (results.md of each).
# A call stops itself after SDTP_TIME_LIMIT seconds in all (default 540, under a 10-minute device call); the next
# call resumes from the predictions already written (both command lines resume); a finished part leaves
# OUT/<part>.done and is skipped. Environment: MODEL, SCORERS, KV_BUDGET (0.4), LENGTHS, N_SAMPLES, TASKS (LongBench).
set -euo pipefail
OUT=${1:?usage: bash scripts/h2o_gpu.sh OUT}
MODEL=${MODEL:-qwen2.5-coder-0.5b}
KV_BUDGET=${KV_BUDGET:-0.4}
N_SAMPLES=${N_SAMPLES:-10}
DEVICE=${DEVICE:-cuda}   # a CPU dry run of the plumbing: MODEL=tiny-qwen2 DEVICE=cpu DTYPE=float32 LENGTHS=256 N_SAMPLES=1 SCORERS="dense sdtp:norm" TASKS=trec
DTYPE=${DTYPE:-bfloat16}
LIMIT=${SDTP_TIME_LIMIT:-540}
read -r -a LENGTHS <<< "${LENGTHS:-1024 2048 4096 8192}"
read -r -a SCORERS <<< "${SCORERS:-dense sdtp:attention sdtp:predictor}"
read -r -a TASK_ARGS <<< "${TASKS:+--tasks $TASKS}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)

part() {  # part NAME COMMAND...: run it within the time left; 0 when done (now or before), 124 when stopped
  local name=$1; shift
  [ -f "$OUT/$name.done" ] && return 0
  local left=$(( LIMIT - ($(date +%s) - START) ))
  [ "$left" -le 30 ] && return 124
  set +e
  timeout "$left" "$@" >> "$OUT/$name.log" 2>&1
  local rc=$?
  set -e
  tail -n 3 "$OUT/$name.log"
  if [ $rc -eq 0 ]; then touch "$OUT/$name.done"; elif [ $rc -ne 124 ]; then echo "$name failed (rc $rc): see $OUT/$name.log" >&2; exit $rc; fi
  return $rc
}

rc=0
part synthetic python3 -m sdtp_lib synthetic --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" \
  --n-samples "$N_SAMPLES" --lengths "${LENGTHS[@]}" --scorers "${SCORERS[@]}" --kv-budget "$KV_BUDGET" \
  --out "$OUT/synthetic" || rc=$?
if [ $rc -eq 0 ]; then
  part longbench python3 -m sdtp_lib longbench run --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" \
    --data data/longbench_fixture "${TASK_ARGS[@]}" --scorers "${SCORERS[@]}" --kv-budget "$KV_BUDGET" \
    --out "$OUT/longbench" || rc=$?
fi
if [ $rc -eq 0 ]; then echo complete; else echo "stopped at the time limit: call again"; fi
