#!/usr/bin/env bash
# A pipeline profile on a GPU that is lent in calls of at most ~10 minutes: each call starts the run (the first) or
# resumes it (the next ones) and stops itself after SDTP_TIME_LIMIT seconds; call again until it prints "complete".
#
#   PROFILE=qwen2.5-0.5b bash scripts/pipeline_gpu.sh runs/gpu      # the run folder: runs/gpu/<time>-<profile>/
#
# A notebook stopped at the limit runs again on the next call and picks up its own progress where its evaluation
# resumes (04 LongBench and 06 the synthetic suite per answer, 07 the ablations per finished setting). Between
# machines the parent folder travels with scripts/carry.sh pack / unpack. Resuming on another commit is allowed
# (--force) and recorded in run.json ("resumed").
set -euo pipefail
PARENT=${1:?usage: PROFILE=... bash scripts/pipeline_gpu.sh PARENT_DIR}
PROFILE=${PROFILE:-qwen2.5-0.5b}
cd "$(dirname "$0")/.."
mkdir -p "$PARENT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
run=$(ls -d "$PARENT"/*-"$PROFILE" 2>/dev/null | tail -n 1 || true)
if [ -n "$run" ] && [ -f "$run/run.json" ]; then
  args=(--resume "$run" --force)
else
  args=(--profile "$PROFILE" --runs-dir "$PARENT")
fi
tag="sdtp-sitting-$$-$RANDOM"  # in the environment of this sitting's processes, kernels included
set +e
SDTP_SITTING=$tag timeout -k 30 "${SDTP_TIME_LIMIT:-540}" python3 -m sdtp_lib pipeline "${args[@]}" \
  >> "$PARENT/console.log" 2>&1
rc=$?
set -e
for pid in $(pgrep -f 'ipykernel_launcher|multiprocessing.spawn' || true); do  # a kernel (or suite worker) the stopped
  # notebook left behind: this sitting's only
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SDTP_SITTING=$tag"; then kill "$pid" 2>/dev/null || true; fi
done
tail -n 3 "$PARENT/console.log"
if [ $rc -eq 0 ]; then echo complete; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "stopped at the time limit: call again"; else exit $rc; fi
