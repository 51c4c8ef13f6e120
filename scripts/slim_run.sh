#!/usr/bin/env bash
# A pipeline run folder as a committed results folder: everything but weights and training state (*.safetensors:
# predictors and saliency files; *.pt), with predictions, logs, executed notebooks and HTML gzipped (reports/README.md).
# SUMMARY=PATH also copies its 08_figures/final_summary.md to PATH, its figure links pointing into the new folder
# and the run folder's paths in it (absolute, or as RUN_DIR was given) replaced by DEST's;
# README=PATH (with SUMMARY) then copies the summary's headline table into that README's headline block (with
# sdtp_lib's Python: PYTHON, default .venv/bin/python).
#
#   SUMMARY=reports/final_summary.md README=README.md bash scripts/slim_run.sh runs/gpu/<time>-qwen2.5-0.5b \
#       reports/results/<date>_qwen2.5-0.5b_pipeline_h100
set -euo pipefail
SRC=${1:?usage: [SUMMARY=PATH] bash scripts/slim_run.sh RUN_DIR DEST}
DEST=${2:?usage: [SUMMARY=PATH] bash scripts/slim_run.sh RUN_DIR DEST}
[ -f "$SRC/run.json" ] || { echo "$SRC: no run.json (not a pipeline run folder)" >&2; exit 1; }
[ -e "$DEST" ] && { echo "$DEST exists: nothing is overwritten" >&2; exit 1; }
if [ -n "${README:-}" ]; then
  [ -n "${SUMMARY:-}" ] || { echo "README needs SUMMARY (the headline comes from it)" >&2; exit 1; }
  grep -qxF '<!-- /headline -->' "$README" || { echo "$README has no headline block (<!-- headline: ... -->)" >&2
                                                  exit 1; }
fi
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
if [ -n "${SUMMARY:-}" ]; then
  # the run's own files are named by their new place: RUN_DIR (absolute, or as given) -> DEST
  py='import os, sys; print(os.path.abspath(sys.argv[1]) if sys.argv[2] == "abs" else os.path.normpath(sys.argv[1]))'
  from_abs=$(python3 -c "$py" "$SRC" abs); from_rel=$(python3 -c "$py" "$SRC" rel); to=$(python3 -c "$py" "$DEST" rel)
  sed -i -e "s#${from_abs}#${to}#g" -e "s#${from_rel}#${to}#g" "$DEST/08_figures/final_summary.md"
  # ](frontier.png) -> ](<DEST relative to SUMMARY's folder>/08_figures/frontier.png)
  rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], os.path.dirname(os.path.abspath(sys.argv[2]))))' \
        "$DEST/08_figures" "$SUMMARY")
  sed -E "s#\]\(([A-Za-z0-9_.-]+\.png)\)#](${rel}/\1)#g" "$DEST/08_figures/final_summary.md" > "$SUMMARY.tmp"
  mv "$SUMMARY.tmp" "$SUMMARY"
  echo "wrote $SUMMARY"
  if [ -n "${README:-}" ]; then
    "${PYTHON:-.venv/bin/python}" - "$README" "$SUMMARY" <<'EOF'
import sys
from pathlib import Path

from sdtp_lib.workspace.report import with_headline

readme, summary = map(Path, sys.argv[1:])
tmp = readme.with_name(readme.name + ".tmp")
tmp.write_text(with_headline(readme.read_text(), summary.read_text()))
tmp.replace(readme)
EOF
    echo "updated the headline of $README"
  fi
fi
du -sh "$DEST"
find "$DEST" -type f -size +1M -exec ls -l {} +
