#!/usr/bin/env bash
# Main job on the embedded default (SmolLM2-135M-Instruct, CPU): pruned vs dense generation on a ~1K-token prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh .venv
exec .venv/bin/python -m sdtp_lib generate --model smollm2-135m --prompt-file data/demo/long_prompt.txt \
  --policy norm --keep-ratio 0.9 --stages 10 --max-new-tokens 48 --compare "$@"
