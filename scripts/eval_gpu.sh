#!/usr/bin/env bash
# The three evaluations (synthetic suite, LongBench, lm-eval) on one machine's GPUs, data parallel through
# `accelerate launch` (one process per GPU; one GPU: plain python). What the README's evaluation numbers come from.
#
#   bash scripts/eval_gpu.sh OUT                       # Qwen2.5-Coder-0.5B (embedded), bf16, every GPU
#   MODEL=/path/to/Qwen2-7B-Instruct LONGBENCH=/data/longbench N_SAMPLES=10 bash scripts/eval_gpu.sh OUT
#   ONLY="synthetic lmeval" bash scripts/eval_gpu.sh OUT   # a subset (resumable: run it again to finish)
#
# MODEL: a load_model spec or a local checkpoint. LONGBENCH: a folder of <task>.jsonl (the official release), default
# the project's fixture. LMEVAL_DATA: the lm-eval task files' data folder (default the fixture). N_SAMPLES: synthetic
# examples per task x length x layout. NUM_GPUS: default all. Scorers: dense, SDTP (10 stages) and SDTP-low
# (5 stages) with the `norm` policy, and SDTP with the `recent` and `random` baselines (SCORER=auto uses the shipped
# predictor where the model has one).
set -euo pipefail
OUT=${1:?usage: bash scripts/eval_gpu.sh OUT}
MODEL=${MODEL:-qwen2.5-coder-0.5b}
SCORER=${SCORER:-norm}
N_SAMPLES=${N_SAMPLES:-10}
NUM_GPUS=${NUM_GPUS:-$(python -c "import torch; print(torch.cuda.device_count())")}
ONLY=${ONLY:-synthetic longbench lmeval}
cd "$(dirname "$0")/.."
if [ "$NUM_GPUS" -gt 1 ]; then
  RUN=(accelerate launch --multi_gpu --num_processes "$NUM_GPUS" --num_machines 1 --mixed_precision no
       --dynamo_backend no)
else
  RUN=(python)
fi
SCORERS=(dense "sdtp:$SCORER" "sdtp-low:$SCORER" sdtp:recent sdtp:random)
mkdir -p "$OUT"
for step in $ONLY; do
  echo "== $step ($(date -u +%H:%M:%S), $NUM_GPUS GPU(s), $MODEL)"
  case $step in
    synthetic)
      "${RUN[@]}" -m sdtp_lib synthetic --model "$MODEL" --dtype bfloat16 --device cuda --n-samples "$N_SAMPLES" \
        --scorers "${SCORERS[@]}" --out "$OUT/synthetic" ;;
    longbench)
      "${RUN[@]}" -m sdtp_lib longbench run --model "$MODEL" --dtype bfloat16 --device cuda \
        --data "${LONGBENCH:-data/longbench_fixture}" --scorers "${SCORERS[@]}" --out "$OUT/longbench" ;;
    lmeval)
      for v in "dense:dense:10" "sdtp:$SCORER:10" "sdtp-low:$SCORER:5"; do
        IFS=: read -r name pred stages <<< "$v"
        "${RUN[@]}" -m sdtp_lib lmeval --model sdtp \
          --model_args "pretrained=$MODEL,dtype=bfloat16,predictor=$pred,stages=$stages,keep_ratio=0.9" \
          --tasks sdtp_paper --num_fewshot 5 --batch_size 1 --device cuda --log_samples \
          ${LMEVAL_DATA:+--metadata "{\"sdtp_lmeval_data\": \"$LMEVAL_DATA\"}"} --output_path "$OUT/lmeval/$name"
      done ;;
    *) echo "unknown step $step (synthetic, longbench, lmeval)" >&2; exit 2 ;;
  esac
done
echo "== done $(date -u +%H:%M:%S): $OUT"
