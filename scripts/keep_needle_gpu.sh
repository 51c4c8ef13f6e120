#!/usr/bin/env bash
# The scorer comparison (reports/results/2026-11-30_qwen2.5-0.5b_scorers_h200x2) on one machine with two GPUs: train the paper's predictor (2 seeds) and the hybrid for
# Qwen2.5-Coder-0.5B, profile the question-aware scorers on the Qwen2-7B shape, then compare every scorer at equal
# compression on the synthetic suite (1K-32K, both layouts), LongBench and lm-eval (fixtures). Resumable: a step
# whose results exist is skipped, so run it again after an interruption.
#
#   bash scripts/keep_needle_gpu.sh OUT                 # everything (an estimated 45 min on 2 x H200; the earlier
#                                                       # comparison, n = 5, 200 long samples, 2 epochs: 25 min)
#   ONLY="train profile" bash scripts/keep_needle_gpu.sh OUT
#
# Env: MODEL (default qwen2.5-coder-0.5b), N_SAMPLES (synthetic examples per task x length x layout, default 10),
# LONG_RECORDS (long retrieval samples added to the default data, default 400), EPOCHS (default 3; these three are
# the shipped predictor's recipe), LENGTHS
# (synthetic prompt lengths, default the suite's 1K-32K), PROFILE_MODEL (default qwen2-7b-random), and for a CPU
# dry run of the plumbing: DEVICE=cpu DTYPE=float32 NUM_GPUS=1 (everything then runs one after the other).
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bash scripts/keep_needle_gpu.sh OUT}")
MODEL=${MODEL:-qwen2.5-coder-0.5b}
N_SAMPLES=${N_SAMPLES:-10}
LONG_RECORDS=${LONG_RECORDS:-400}
EPOCHS=${EPOCHS:-3}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
NUM_GPUS=${NUM_GPUS:-2}
PROFILE_MODEL=${PROFILE_MODEL:-qwen2-7b-random}
PROFILE_LENGTHS=${PROFILE_LENGTHS:-32768 131072}
ONLY=${ONLY:-data train profile synthetic longbench lmeval}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}  # several jobs share a GPU
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
# seed-0 runs, installed as this model's shipped predictors once trained (sdtp_lib/predictors/MODEL[-hybrid]).
# The untrained ones run on the synthetic suite while the predictors train; the trained ones are added after.
BASE=(dense sdtp:random sdtp:norm sdtp:recent sdtp:attention sdtp:attention-mean-k15 sdtp:attention-mean-k7 sdtp:oracle
      sdtp-low:attention)
TRAINED=(sdtp:predictor sdtp:hybrid sdtp-low:predictor sdtp-low:hybrid)
SCORERS=("${BASE[@]}" "${TRAINED[@]}")
SHIPPED=sdtp_lib/predictors
say() { echo "== $* ($(date -u +%H:%M:%S))"; }
has() { [[ " $ONLY " == *" $1 "* ]]; }
bg() { if [ "$DEVICE" = cuda ]; then "$@" & else "$@"; fi; }  # in parallel on GPUs, one after the other on CPU

train() {  # train NAME GPU [extra args]: one training run on one GPU (stage 1 reused when given)
  local name=$1 gpu=$2; shift 2
  [ -f "$OUT/train/$name/run.json" ] && { say "train $name: done"; return; }
  CUDA_VISIBLE_DEVICES=$gpu python -m sdtp_lib train --model "$MODEL" --data "$OUT/data/train.jsonl" --seq-len 3072 \
    --batch-size 2 --epochs "$EPOCHS" --dtype "$DTYPE" --device "$DEVICE" --engines physical ${SAMPLES:+--samples $SAMPLES} --out "$OUT/train/$name" "$@" \
    > "$OUT/logs/train_$name.log" 2>&1
  say "train $name: finished"
}

synthetic() {  # synthetic SCORER...: the suite into OUT/synthetic (scorers already there are not run again)
  say "synthetic suite: $# scorers x 4 tasks x 1K-32K x 2 layouts x n=$N_SAMPLES"
  "${DP[@]}" -m sdtp_lib synthetic --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" --n-samples "$N_SAMPLES" \
    "${LEN_ARGS[@]}" --scorers "$@" --out "$OUT/synthetic" >> "$OUT/logs/synthetic.log" 2>&1
  say "synthetic suite: $# scorers finished"
}

if has data && [ ! -f "$OUT/data/train.jsonl" ]; then
  say "data: the default set + $LONG_RECORDS long retrieval samples (1K-2.5K tokens, both layouts)"
  mkdir -p "$OUT/data"
  python scripts/make_default_data.py --n "$LONG_RECORDS" --context-tokens 1000 2500 --max-records 300 --free-frac 0 \
    --seed 11 --out "$OUT/data/long.jsonl"
  cat data/sdtp_default/train.jsonl "$OUT/data/long.jsonl" > "$OUT/data/train.jsonl.tmp"
  mv "$OUT/data/train.jsonl.tmp" "$OUT/data/train.jsonl"
fi

# GPU 1 first profiles the question-aware scorers on the Qwen2-7B shape, alone on it (timings); meanwhile GPU 0
# computes stage 1 (saliency) and trains the paper's predictor, seed 0, validated against every baseline
if has profile; then
  ( for sc in attention hybrid predictor; do
      [ -f "$OUT/profile/$sc.md" ] && continue
      say "profile $sc"
      CUDA_VISIBLE_DEVICES=$G1 python -m sdtp_lib profile --model "$PROFILE_MODEL" --lengths $PROFILE_LENGTHS \
        --variants sdtp --engines sdtp --new-tokens 8 --repeats 3 --scorer "$sc" --out "$OUT/profile/$sc.json" \
        > "$OUT/logs/profile_$sc.log" 2>&1
    done ) &
  prof=$!
  [ "$NUM_GPUS" -gt 1 ] || { wait $prof; prof=""; }  # one GPU: the profile first, alone
fi
g0=""
if has train; then
  bg train predictor 0 --seeds 0 --baselines random norm recent attention attention-mean-k15 oracle
  [ "$DEVICE" = cuda ] && g0=$!
fi
[ -n "${prof:-}" ] && wait $prof
# then, on both GPUs beside the training: the untrained scorers on the synthetic suite
sb=""
if has synthetic; then bg synthetic "${BASE[@]}"; [ "$DEVICE" = cuda ] && sb=$!; fi
if has train; then  # GPU 1: the hybrid, then seed 1, on stage 1's saliency (one training per GPU: a training
  # run at seq-len 3072 peaks near 100 GB, two on one H200 ran out of memory)
  SAL=$OUT/train/predictor/saliency/saliency.safetensors
  while [ ! -f "$SAL" ]; do sleep 10; [ -z "$g0" ] || kill -0 $g0 2>/dev/null || { echo "stage 1 failed" >&2; exit 1; }; done
  on_gpu1() { train hybrid $G1 --seeds 0 --attention-window 32 --baselines --saliency "$SAL"
              train predictor_s1 $G1 --seeds 1 --baselines --saliency "$SAL"; }
  bg on_gpu1
  [ "$DEVICE" = cuda ] && { g1=$!; wait $g0; wait $g1; }
fi
if [ -f "$PRED" ] && [ -f "$HYB" ]; then  # ship the seed-0 predictor and hybrid (what the evaluations below use)
  cp "$PRED" "$SHIPPED/$MODEL.safetensors"
  cp "$HYB" "$SHIPPED/$MODEL-hybrid.safetensors"
fi
[ -n "$sb" ] && wait $sb
S1=(); [ -d "$OUT/train/predictor_s1/seed1" ] && S1=("sdtp:$OUT/train/predictor_s1")  # seed 1 beside the shipped seed 0
if has synthetic; then synthetic "${SCORERS[@]}" "${S1[@]}"; fi  # adds the trained scorers to the folder

if has longbench; then
  say "LongBench fixture"
  "${DP[@]}" -m sdtp_lib longbench run --model "$MODEL" --dtype "$DTYPE" --device "$DEVICE" \
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
    CUDA_VISIBLE_DEVICES=$((i % NUM_GPUS)) python -m sdtp_lib lmeval --model sdtp \
      --model_args "pretrained=$MODEL,dtype=$DTYPE,predictor=$pred,stages=$stages,keep_ratio=0.9" \
      --tasks sdtp_paper --num_fewshot 5 --batch_size 1 --device "$DEVICE" --log_samples ${LMEVAL_LIMIT:+--limit $LMEVAL_LIMIT} \
      --output_path "$OUT/lmeval/$name" > "$OUT/logs/lmeval_$name.log" 2>&1 &
    i=$((i + 1))
    [ "$DEVICE" = cuda ] || wait  # on CPU one at a time
  done
  wait
fi
say "done: $OUT"
