#!/usr/bin/env bash
# Issue 11 on CPU: today's default window attention (heads' max, kernel 31) beside the earlier settings (heads' mean,
# kernel 15 / 7) and dense, on the LongBench and lm-eval fixtures, Qwen2.5-Coder-0.5B float32, r = 0.9 (10 stages).
#   bash scripts/default_attention_cpu.sh OUT        # about 30 min on 2 cores; resumable (LongBench per sample)
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bash scripts/default_attention_cpu.sh OUT}")
MODEL=${MODEL:-qwen2.5-coder-0.5b}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
say() { echo "== $* ($(date -u +%H:%M:%S))"; }
say "LongBench fixture"
python -m sdtp_lib.eval.longbench run --model "$MODEL" --dtype float32 --device cpu --data data/longbench_fixture \
  --scorers dense sdtp:attention sdtp:attention-mean-k15 sdtp:attention-mean-k7 --out "$OUT/longbench" \
  > "$OUT/logs/longbench.log" 2>&1
for v in dense:dense attention:attention attention-mean-k15:attention-mean-k15 attention-mean-k7:attention-mean-k7; do
  IFS=: read -r name pred <<< "$v"
  [ -d "$OUT/lmeval/$name" ] && continue
  say "lm-eval fixture: $name"
  python -m sdtp_lib.eval.lmeval --model sdtp \
    --model_args "pretrained=$MODEL,dtype=float32,predictor=$pred,stages=10,keep_ratio=0.9" \
    --tasks sdtp_paper --num_fewshot 5 --batch_size 1 --device cpu --log_samples \
    --output_path "$OUT/lmeval/$name.tmp" > "$OUT/logs/lmeval_$name.log" 2>&1
  mv "$OUT/lmeval/$name.tmp" "$OUT/lmeval/$name"
done
say "done: $OUT"
