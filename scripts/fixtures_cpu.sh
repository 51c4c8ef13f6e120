#!/usr/bin/env bash
# Scorers beside dense on the LongBench and lm-eval fixtures on CPU: Qwen2.5-Coder-0.5B float32, r = 0.9 (10 stages).
#   bash scripts/fixtures_cpu.sh OUT [SCORER...]   # default: attention attention-mean-k15 attention-mean-k7
# A scorer is a policy name, "predictor" / "hybrid" (the shipped ones) or a predictor file; each runs as sdtp:SCORER.
# About 5 min per scorer on 2 cores; resumable (LongBench per sample, lm-eval per scorer).
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bash scripts/fixtures_cpu.sh OUT [SCORER...]}"); shift
SCORERS=("$@"); [ ${#SCORERS[@]} -gt 0 ] || SCORERS=(attention attention-mean-k15 attention-mean-k7)
MODEL=${MODEL:-qwen2.5-coder-0.5b}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs" "$OUT/lmeval"
say() { echo "== $* ($(date -u +%H:%M:%S))"; }
say "LongBench fixture: dense ${SCORERS[*]}"
python -m sdtp_lib longbench run --model "$MODEL" --dtype float32 --device cpu --data data/longbench_fixture \
  --scorers dense "${SCORERS[@]/#/sdtp:}" --out "$OUT/longbench" > "$OUT/logs/longbench.log" 2>&1
for name in dense "${SCORERS[@]}"; do
  stem=${name//\//_}
  [ -d "$OUT/lmeval/$stem" ] && continue
  say "lm-eval fixture: $name"
  python -m sdtp_lib lmeval --model sdtp \
    --model_args "pretrained=$MODEL,dtype=float32,predictor=$name,stages=10,keep_ratio=0.9" \
    --tasks sdtp_paper --num_fewshot 5 --batch_size 1 --device cpu --log_samples \
    --output_path "$OUT/lmeval/$stem.tmp" > "$OUT/logs/lmeval_$stem.log" 2>&1
  mv "$OUT/lmeval/$stem.tmp" "$OUT/lmeval/$stem"
done
say "done: $OUT"
