#!/usr/bin/env bash
# A pipeline run folder as a committed results folder: everything but weights and training state (*.safetensors:
# predictors and saliency files; *.pt), with predictions, logs, executed notebooks and HTML gzipped (reports/README.md).
# SUMMARY=PATH also copies its 08_figures/final_summary.md to PATH, its figure links pointing into the new folder.
#
#   SUMMARY=reports/final_summary.md bash scripts/slim_run.sh runs/gpu/<time>-qwen2.5-0.5b \
#       reports/results/<date>_qwen2.5-0.5b_pipeline_h100
set -euo pipefail
SRC=${1:?usage: [SUMMARY=PATH] bash scripts/slim_run.sh RUN_DIR DEST}
DEST=${2:?usage: [SUMMARY=PATH] bash scripts/slim_run.sh RUN_DIR DEST}
[ -f "$SRC/run.json" ] || { echo "$SRC: no run.json (not a pipeline run folder)" >&2; exit 1; }
[ -e "$DEST" ] && { echo "$DEST exists: nothing is overwritten" >&2; exit 1; }
if [ -n "${SUMMARY:-}" ]; then
  [ -f "$SRC/08_figures/final_summary.md" ] || { echo "$SRC/08_figures/final_summary.md not found" >&2; exit 1; }
  [ -e "$SUMMARY" ] && { echo "$SUMMARY exists: nothing is overwritten" >&2; exit 1; }
  mkdir -p "$(dirname "$SUMMARY")"
fi
mkdir -p "$(dirname "$DEST")"
tmp=$(mktemp -d "$(dirname "$DEST")/.slim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -C "$SRC" --exclude='*.safetensors' --exclude='*.pt' -cf - . | tar -C "$tmp" -xf -
find "$tmp" -type f \( -name '*.jsonl' -o -name '*.ipynb' -o -name '*.log' -o -name '*.html' \) -exec gzip -9n {} +
mv "$tmp" "$DEST"
trap - EXIT
if [ -n "${SUMMARY:-}" ]; then  # ](frontier.png) -> ](<DEST relative to SUMMARY's folder>/08_figures/frontier.png)
  rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], os.path.dirname(os.path.abspath(sys.argv[2]))))' \
        "$DEST/08_figures" "$SUMMARY")
  sed -E "s#\]\(([A-Za-z0-9_.-]+\.png)\)#](${rel}/\1)#g" "$DEST/08_figures/final_summary.md" > "$SUMMARY.tmp"
  mv "$SUMMARY.tmp" "$SUMMARY"
  echo "wrote $SUMMARY"
fi
du -sh "$DEST"
find "$DEST" -type f -size +1M -exec ls -l {} +
