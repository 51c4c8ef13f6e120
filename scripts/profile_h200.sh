#!/usr/bin/env bash
# The GPU profile behind reports/results/2026-11-29_qwen2-7b-shape_latency_h200/latency.json, in resumable parts that fill one JSON file (a device
# call may last at most 10 minutes; the whole profile takes about 19). How the committed run was made:
#
#   SDTP_GIT_COMMIT=<commit> timeout 575 bash scripts/profile_h200.sh "1 4"
#   SDTP_GIT_COMMIT=<commit> timeout 575 bash scripts/profile_h200.sh 4 <latency_h200.json from the call before>
#
# Part 1: the decode-loop checks, then 4K-16K (plus the header's host-sync check). Part 2: up to 32K. Part 3: up
# to 64K and the decode benchmark. Part 4: up to 128K. Each part reruns only the lengths left incomplete, so "1 4" under a time limit,
# then "4" on the result until the file's header says complete, gives the whole profile.
# Results go to $OUT (the device tool's output folder) or runs/h200; every row is written as it completes, so a
# part stopped by its time limit keeps its rows and a later part redoes only the lengths left incomplete.
# --resume refuses a file made by another commit or configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:?parts: 1, 2, 3, 4 or several, e.g. "2 3"}
prev=${2:-}
out=${OUT:-runs/h200}
mkdir -p "$out"
json="$out/latency_h200.json"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
if [ -n "$prev" ] && [ "$prev" != "$json" ]; then cp "$prev" "$json"; chmod u+w "$json"; fi
profile() {  # lengths up to this part's: a resumed file reruns any length an earlier part left incomplete
  # shellcheck disable=SC2086  # SDTP_PROFILE_ARGS: extra arguments, e.g. a dry run on CPU with a tiny model
  if [ -f "$json" ]; then python -m sdtp_lib profile --lengths "$@" --resume "$json" ${SDTP_PROFILE_ARGS:-}
  else python -m sdtp_lib profile --lengths "$@" --out "$json" ${SDTP_PROFILE_ARGS:-}; fi
}
for part in $parts; do
  case $part in
    1) if ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
         echo "no GPU: check_decode_gpu.py skipped (a dry run)" >> "$out/log.txt"
       elif ! python scripts/check_decode_gpu.py > "$out/check_decode_gpu.txt" 2>&1; then
         echo "check_decode_gpu failed: no profile on a loop that fails its checks" >> "$out/log.txt"; exit 1
       fi
       profile 4096 8192 16384 >> "$out/log.txt" 2>&1 ;;
    2) profile 4096 8192 16384 32768 >> "$out/log.txt" 2>&1 ;;
    3) profile 4096 8192 16384 32768 65536 >> "$out/log.txt" 2>&1
       python scripts/decode_bench.py --lengths 32768 131072 --new-tokens 16 > "$out/decode_bench.txt" 2>&1 ;;
    4) profile 4096 8192 16384 32768 65536 131072 >> "$out/log.txt" 2>&1 ;;
    *) echo "parts are 1, 2, 3 and 4" >&2; exit 2 ;;
  esac
done
