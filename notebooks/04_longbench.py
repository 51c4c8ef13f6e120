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
# # 04 · LongBench v1 (English): dense vs SDTP vs SDTP-low vs baseline policies
#
# The 16 English tasks with the official protocol (`sdtp_lib.eval.longbench`: the official prompts and maximum
# generation lengths, middle truncation to `max_length`, the chat template except for trec / triviaqa / samsum /
# lcc / repobench-p, greedy decoding, first-line post-processing, the official metrics), once per scorer. Shows
# the per-task scores, the category averages, the compression and the measured prefill speedup over dense.
# Every prediction is saved (`run_dir/<scorer>/<task>.jsonl`, gzipped to `.jsonl.gz` once the task is done)
# and a re-run with the same `run_dir` resumes.
# `data=None` runs the project's own fixture (2 invented samples per task: it checks the protocol, its scores
# say nothing about long-context ability); for real numbers give a folder with the official `<task>.jsonl`
# files (LongBench's data.zip unpacked) or `"hub"`.
# Run headlessly: `papermill notebooks/04_longbench.ipynb runs/<name>/04_longbench.ipynb -p model qwen2.5-coder-0.5b
# -p data /path/to/longbench/data -p run_dir runs/<name>/04_longbench`.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # a folder of <task>.jsonl (official layout) or "hub" (None: the project's data/longbench_fixture)
run_dir = "runs/explore/04_longbench"  # predictions, results.json / results.md and the figure go here
n_samples = None  # samples per task, the first ones in the official order (None: all)
device = "auto"  # "auto": the GPU when there is one
seed = 0  # torch's seed (the random policy's draws); decoding is greedy
tasks = None  # LongBench task names (None: all 16)
# "dense" or "<sdtp|sdtp-low>[@<r>|@<c>x][+L<layer>][+R<fraction>]:<policy|auto|predictor|path>" (auto: the shipped predictor, else norm)
scorers = ["dense", "sdtp:auto", "sdtp-low:auto", "sdtp:random", "sdtp:recent"]
keep_ratio = 0.9  # r of the scorers without their own "@ratio"
max_length = None  # prompt tokens before the chat template (None: the official rule for the model's context)
dtype = None  # None: float32 on CPU, bfloat16 on GPU

# %%
from pathlib import Path

import torch
from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.eval import longbench as LB
from sdtp_lib.eval.figures import longbench_figure
from sdtp_lib.models import project_root

torch.manual_seed(seed)
out = Path(run_dir)
source = data if data is not None else project_root() / "data" / "longbench_fixture"
m, tok = S.load_model(model, dtype=dtype, device=S.resolve_device(device))
tasks = [tasks] if isinstance(tasks, str) else list(tasks or LB.TASKS)  # -p tasks trec: one task
print(f"{model} | data: {source} | {len(tasks)} tasks x {n_samples or 'all'} samples | scorers: {', '.join(scorers)} "
      f"| max_length {max_length or LB.default_max_length(m)}")

# %%
LB.run_longbench(m, tok, tasks, source, out, scorers=scorers, keep_ratio=keep_ratio, limit=n_samples,
                 max_length=max_length)
res = LB.score_longbench(out)  # also writes results.json / results.md
display(Markdown(LB.markdown(res)))

# %% [markdown]
# What the scorers answered: the first sample of each task (post-processing is the scorer's: trec, triviaqa and
# samsum are scored on their first line).

# %%
import pandas as pd

first = {}
for name in res["scorers"]:
    for task in res["tasks"]:
        rows = LB.read_predictions(LB.pred_path(out, name, task))
        if rows:
            row = first.setdefault(task, {"answer": " | ".join(map(str, rows[0]["answers"]))[:80]})
            row[name] = rows[0]["pred"][:80]
display(pd.DataFrame.from_dict(first, orient="index"))

# %%
fig = longbench_figure(res)
fig.savefig(out / "longbench.png", dpi=120)
print("wrote", out / "results.json", out / "results.md", "and", out / "longbench.png")
