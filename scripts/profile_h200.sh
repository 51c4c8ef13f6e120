#!/usr/bin/env bash
# The GPU profile behind reports/results/latency_h200.json, in three parts of under 10 minutes each that fill one
# JSON file (a device call may last at most 10 minutes; the full profile takes about 20).
#
#   SDTP_GIT_COMMIT=<commit> bash scripts/profile_h200.sh 1
#   SDTP_GIT_COMMIT=<commit> bash scripts/profile_h200.sh 2 <latency_h200.json from part 1>
#   SDTP_GIT_COMMIT=<commit> bash scripts/profile_h200.sh 3 <latency_h200.json from part 2>
#
# Part 1: 4K-32K (plus the header's host-sync check). Part 2: the decode checks, 64K, the decode benchmark.
# Part 3: 128K. Results go to $OUT (the device tool's output folder) or runs/h200; every row is written as it
# completes, so a part stopped by its time limit keeps its rows and the next part redoes only what is missing.
# --resume refuses a file made by another commit or configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:?part 1, 2 or 3}
prev=${2:-}
out=${OUT:-runs/h200}
mkdir -p "$out"
json="$out/latency_h200.json"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
if [ -n "$prev" ] && [ "$prev" != "$json" ]; then cp "$prev" "$json"; chmod u+w "$json"; fi
case $part in
  1) python -m sdtp_lib profile --lengths 4096 8192 16384 32768 --out "$json" > "$out/log1.txt" 2>&1 ;;
  2) python scripts/check_decode_gpu.py > "$out/check_decode_gpu.txt" 2>&1 || echo "a check failed" >> "$out/log2.txt"
     python -m sdtp_lib profile --lengths 65536 --resume "$json" >> "$out/log2.txt" 2>&1
     python scripts/decode_bench.py --lengths 32768 131072 --new-tokens 16 > "$out/decode_bench.txt" 2>&1 ;;
  3) python -m sdtp_lib profile --lengths 131072 --resume "$json" > "$out/log3.txt" 2>&1 ;;
  *) echo "part must be 1, 2 or 3" >&2; exit 2 ;;
esac
