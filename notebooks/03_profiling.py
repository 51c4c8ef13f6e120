# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Profiling: prefill and end-to-end latency, FLOPs, memory
#
# Dense vs SDTP (10 stages) vs SDTP-low (5 stages), each with HF's own loop (`model(...)`,
# `model.generate`) and with this project's loop (same prefill, static per-layer caches + CUDA graphs).
# On a GPU with no local weights, `model="qwen2-7b-random"` builds Qwen2-7B's architecture with random
# weights (speed does not depend on weight values); on a CPU the embedded SmolLM2 default runs at small lengths.
# Run headlessly: `papermill notebooks/03_profiling.ipynb runs/<name>/03_profiling.ipynb -p model qwen2-7b-random -p run_dir runs/<name>`.

# %% tags=["parameters"]
model = "smollm2-135m"  # "qwen2-7b-random" (GPU), "smollm2-135m", "tiny-qwen2", or a local checkpoint path
run_dir = "runs/explore/03_profiling"  # latency_<timestamp>.json/.md and the figure go here
n_samples = None  # one prompt per length: profile the first n_samples of `lengths` (None: all)
device = "auto"  # "auto": the GPU when there is one
seed = 0  # the random prompt tokens
lengths = [256, 512, 1024]  # prompt lengths (GPU: 4096 ... 131072)
new_tokens = 32  # generated tokens for end-to-end (the committed H200 run: 128)
repeats = 2  # timed prefill repeats after a warm-up

# %%
import time
from pathlib import Path

import torch
from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.speed import profiling as P
from sdtp_lib.workspace.plots import latency_figure

torch.manual_seed(seed)
m, weights = P.load_profile_model(model, device=S.resolve_device(device))
cfg = P.ProfileConfig(lengths=tuple(lengths[:n_samples]), new_tokens=new_tokens, repeats=repeats)
head = P.header(m, cfg, weights)
print(head["gpu"], "|", head["model"], "| weights:", weights)

# %%
out = Path(run_dir)
path = out / f"latency_{time.strftime('%Y%m%d-%H%M%S')}.json"
P.write(path, head, [])
rows = P.profile(m, cfg, on_row=lambda rs: P.write(path, {**head, "complete": False}, rs, partial_ok=True))
P.write(path, {**head, "complete": True}, rows, partial_ok=True)
display(Markdown(P.markdown(rows)))

# %% [markdown]
# Two questions, per length: what pruning buys on this project's engine (against its own dense
# and the FLOPs ratio), and what a user gets against plain HF dense.

# %%
display(Markdown(P.summary(rows, "sdtp")))
display(Markdown(P.summary(rows, "sdtp-low")))

# %%
fig = latency_figure(rows)
fig.savefig(path.with_suffix(".png"), dpi=120)
print("wrote", path, "and", path.with_suffix(".png"))

# %% [markdown]
# For comparison: the committed H200 run behind docs/speed.md (`reports/results/2026-11-29_qwen2-7b-shape_latency_h200/latency.json`, Qwen2-7B
# architecture, 4K-128K; reproduce with `scripts/profile_h200.sh`, see that folder's README).

# %%
import json

root = S.models.project_root() or Path(".")  # the checkout this library lives in
ref = root / "reports" / "results" / "2026-11-29_qwen2-7b-shape_latency_h200" / "latency.json"
if ref.exists():
    h200 = json.loads(ref.read_text())
    print(h200["header"]["gpu"], "| weights:", h200["header"]["weights"], "| commit", h200["header"]["git_commit"][:7])
    display(Markdown(P.summary(h200["rows"], "sdtp")))
else:
    print("no committed H200 run found next to this notebook")
