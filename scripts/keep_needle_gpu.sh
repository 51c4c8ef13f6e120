#!/usr/bin/env bash
# Issue 11 ("keep the needle") on one machine with two GPUs: train the paper's predictor (2 seeds) and the hybrid for
# Qwen2.5-Coder-0.5B, profile the question-aware scorers on the Qwen2-7B shape, then compare every scorer at equal
# compression on the synthetic suite (1K-32K, both layouts), LongBench and lm-eval (fixtures). Resumable: a step
# whose results exist is skipped, so run it again after an interruption.
#
#   bash scripts/keep_needle_gpu.sh OUT                 # everything (about 25 min on 2 x H200)
#   ONLY="train profile" bash scripts/keep_needle_gpu.sh OUT
#
# Env: MODEL (default qwen2.5-coder-0.5b), N_SAMPLES (synthetic examples per task x length x layout, default 5),
# LONG_RECORDS (long retrieval samples added to the default data, default 200), EPOCHS (default 2), LENGTHS
# (synthetic prompt lengths, default the suite's 1K-32K), PROFILE_MODEL (default qwen2-7b-random), and for a CPU
# dry run of the plumbing: DEVICE=cpu DTYPE=float32 NUM_GPUS=1 (everything then runs one after the other).
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bash scripts/keep_needle_gpu.sh OUT}")
MODEL=${MODEL:-qwen2.5-coder-0.5b}
N_SAMPLES=${N_SAMPLES:-5}
LONG_RECORDS=${LONG_RECORDS:-200}
EPOCHS=${EPOCHS:-2}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
NUM_GPUS=${NUM_GPUS:-2}
PROFILE_MODEL=${PROFILE_MODEL:-qwen2-7b-random}
PROFILE_LENGTHS=${PROFILE_LENGTHS:-32768 131072}
ONLY=${ONLY:-data train profile synthetic longbench lmeval}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
PRED=$OUT/train/predictor/seed0/predictor.safetensors
HYB=$OUT/train/hybrid/seed0/predictor.safetensors
if [ "$NUM_GPUS" -gt 1 ]; then
  DP=(accelerate launch --multi_gpu --num_processes "$NUM_GPUS" --num_machines 1 --mixed_precision no --dynamo_backend no)
  G1=1
else
  DP=(python); G1=0
fi
LEN_ARGS=(); [ -n "${LENGTHS:-}" ] && LEN_ARGS=(--lengths $LENGTHS)
# every scorer at the same schedule (r = 0.9; SDTP 10 stages, SDTP-low 5); "predictor" and "hybrid" are the
# seed-0 runs, installed as this model's shipped predictors once trained (sdtp_lib/predictors/MODEL[-hybrid])
SCORERS=(dense sdtp:random sdtp:norm sdtp:recent sdtp:attention sdtp:predictor sdtp:hybrid sdtp:oracle
         sdtp-low:attention sdtp-low:predictor sdtp-low:hybrid)
SHIPPED=sdtp_lib/predictors
say() { echo "== $* ($(date -u +%H:%M:%S))"; }
has() { [[ " $ONLY " == *" $1 "* ]]; }

train() {  # train.sh NAME GPU [extra args]: one training run on one GPU (stage 1 reused when given)
  local name=$1 gpu=$2; shift 2
  [ -f "$OUT/train/$name/run.json" ] && { say "train $name: done"; return; }
  CUDA_VISIBLE_DEVICES=$gpu python -m sdtp_lib train --model "$MODEL" --data "$OUT/data/train.jsonl" --seq-len 3072 \
    --batch-size 2 --epochs "$EPOCHS" --dtype "$DTYPE" --device "$DEVICE" --engines physical ${SAMPLES:+--samples $SAMPLES} --out "$OUT/train/$name" "$@" \
    > "$OUT/logs/train_$name.log" 2>&1
  say "train $name: finished"
}

if has data && [ ! -f "$OUT/data/train.jsonl" ]; then
  say "data: the default set + $LONG_RECORDS long retrieval samples (1K-2.5K tokens, both layouts)"
  mkdir -p "$OUT/data"
  python scripts/make_default_data.py --n "$LONG_RECORDS" --context-tokens 1000 2500 --max-records 300 --free-frac 0 \
    --seed 11 --out "$OUT/data/long.jsonl"
  cat data/sdtp_default/train.jsonl "$OUT/data/long.jsonl" > "$OUT/data/train.jsonl.tmp"
  mv "$OUT/data/train.jsonl.tmp" "$OUT/data/train.jsonl"
fi

if has train || has profile; then
  # GPU 0: stage 1 (saliency) and the paper's predictor, seed 0, validated against every baseline
  ( if has train; then train predictor 0 --seeds 0 --baselines random norm recent attention oracle; fi ) &
  g0=$!
  [ "$NUM_GPUS" -gt 1 ] || wait $g0
  # GPU 1: the profile of the question-aware scorers (Qwen2-7B shape), then the hybrid and seed 1 on stage 1's saliency
  (
    if has profile; then
      for sc in attention hybrid predictor; do
        [ -f "$OUT/profile/$sc.md" ] && continue
        say "profile $sc"
        CUDA_VISIBLE_DEVICES=$G1 python -m sdtp_lib profile --model "$PROFILE_MODEL" --lengths $PROFILE_LENGTHS \
          --variants sdtp --engines sdtp --new-tokens 8 --repeats 3 --scorer "$sc" --out "$OUT/profile/$sc.json" \
          > "$OUT/logs/profile_$sc.log" 2>&1
      done
    fi
    if has train; then
      SAL=$OUT/train/predictor/saliency/saliency.safetensors
      while [ ! -f "$SAL" ]; do sleep 10; kill -0 $g0 2>/dev/null || { echo "stage 1 failed" >&2; exit 1; }; done
      train hybrid $G1 --seeds 0 --attention-window 32 --baselines --saliency "$SAL"
      train predictor_s1 $G1 --seeds 1 --baselines --saliency "$SAL"
    fi
  ) &
  g1=$!
  wait $g0
  wait $g1
fi
if [ -f "$PRED" ] && [ -f "$HYB" ]; then  # ship the seed-0 predictor and hybrid (what the evaluations below use)
  cp "$PRED" "$SHIPPED/$MODEL.safetensors"
  cp "$HYB" "$SHIPPED/$MODEL-hybrid.safetensors"
fi

if has synthetic; then
  say "synthetic suite: ${#SCORERS[@]} scorers x 4 tasks x 1K-32K x 2 layouts x n=$N_SAMPLES"
  "${DP[@]}" -m sdtp_lib synthetic --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" --n-samples "$N_SAMPLES" \
    "${LEN_ARGS[@]}" --scorers "${SCORERS[@]}" --out "$OUT/synthetic" > "$OUT/logs/synthetic.log" 2>&1
fi

if has longbench; then
  say "LongBench fixture"
  "${DP[@]}" -m sdtp_lib.eval.longbench run --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" \
    --data data/longbench_fixture --scorers "${SCORERS[@]}" --out "$OUT/longbench" > "$OUT/logs/longbench.log" 2>&1
fi

if has lmeval; then  # one process per scorer, spread over the two GPUs (the oracle needs answers: not here)
  say "lm-eval fixture"
  i=0
  for v in "dense:dense:10" "random:random:10" "norm:norm:10" "recent:recent:10" "attention:attention:10" \
           "predictor:predictor:10" "hybrid:hybrid:10" "low-attention:attention:5" "low-predictor:predictor:5" \
           "low-hybrid:hybrid:5"; do
    IFS=: read -r name pred stages <<< "$v"
    [ -d "$OUT/lmeval/$name" ] && continue
    CUDA_VISIBLE_DEVICES=$((i % NUM_GPUS)) python -m sdtp_lib.eval.lmeval --model sdtp \
      --model_args "pretrained=$MODEL,dtype=$DTYPE,predictor=$pred,stages=$stages,keep_ratio=0.9" \
      --tasks sdtp_paper --num_fewshot 5 --batch_size 1 --device "$DEVICE" --log_samples ${LMEVAL_LIMIT:+--limit $LMEVAL_LIMIT} \
      --output_path "$OUT/lmeval/$name" > "$OUT/logs/lmeval_$name.log" 2>&1 &
    i=$((i + 1))
    [ "$DEVICE" = cuda ] || wait  # on CPU one at a time
  done
  wait
fi
say "done: $OUT"
