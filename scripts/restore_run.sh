#!/usr/bin/env bash
# A committed results folder (scripts/slim_run.sh's output) back into a pipeline run folder that resumes: copied
# to PARENT/<the run's own name> (pipeline_gpu.sh finds it there by its profile), with the executed notebooks, logs
# and HTML unzipped (the pipeline writes them again under their plain names); predictions stay gzipped (read as
# they are). Weights and saliency were never committed: a resumed notebook that needs them computes them again,
# but 07 refuses an unfinished ablation whose finished settings used predictors that stayed behind (remove that
# ablation's folder to run it again: docs/ablations.md).
#
#   bash scripts/restore_run.sh reports/results/<date>_qwen2.5-0.5b_pipeline_h100 runs/gpu
#   PROFILE=qwen2.5-0.5b bash scripts/pipeline_gpu.sh runs/gpu        # or: python -m sdtp_lib pipeline --resume ...
set -euo pipefail
SRC=${1:?usage: bash scripts/restore_run.sh RESULTS_DIR PARENT_DIR}
PARENT=${2:?usage: bash scripts/restore_run.sh RESULTS_DIR PARENT_DIR}
[ -f "$SRC/run.json" ] || { echo "$SRC: no run.json (not a pipeline run made into a results folder)" >&2; exit 1; }
name=$(python3 -c 'import json, pathlib, sys
steps = [s for s in json.load(open(sys.argv[1]))["notebooks"] if "run_dir" in s["parameters"]]
print(pathlib.Path(steps[0]["parameters"]["run_dir"]).parent.name if steps else "")' "$SRC/run.json")
[ -n "$name" ] || { echo "$SRC/run.json: no notebook with a run_dir (not a pipeline run)" >&2; exit 1; }
dest=$PARENT/$name
[ -e "$dest" ] && { echo "$dest exists: nothing is overwritten" >&2; exit 1; }
mkdir -p "$PARENT"
tmp=$(mktemp -d "$PARENT/.restore.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -R "$SRC"/. "$tmp"/
find "$tmp" -type f \( -name '*.ipynb.gz' -o -name '*.log.gz' -o -name '*.html.gz' \) -exec gunzip {} +
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
