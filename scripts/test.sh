#!/usr/bin/env bash
# The test suite: everything (SmolLM2 included) on the newest supported transformers, then the engine, decode,
# kernels and SmolLM2 tests again on the oldest supported one (5.17.0, the version on the GPU machine), in an
# environment that holds only what differs from .venv (CI's disk once ran out with two full copies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh .venv
.venv/bin/python -m pytest -q "$@"
bash scripts/setup_env.sh .venv-tf-min "==5.17.0" .venv
.venv-tf-min/bin/python -m pytest -q tests/test_engine.py tests/test_smollm2.py tests/test_decode.py tests/test_kernels.py \
  tests/test_viz.py "$@"
