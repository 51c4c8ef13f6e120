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
# # 05 · lm-eval: the paper's 8 tasks, dense vs SDTP vs SDTP-low vs a baseline policy
#
# lm-evaluation-harness itself (`sdtp_lib.eval.lmeval`): the registered model `sdtp` runs every model call inside
# the pruning context (continuation tokens are never pruned; their log-likelihoods are scored), `dense` is plain
# HFLM on the same loaded model. Tasks: the group `sdtp_paper` (copa, piqa, winogrande, mathqa, boolq, cb, wic,
# wsc; 5-shot; accuracy) from local JSONL files in the official schema. `data=None` runs the project's own
# fixture (8 + 8 invented examples per task: it checks the harness end to end, its accuracies are noise); for
# real numbers give a folder with `<task>/{train,validation}.jsonl` of the real data sets.
# Run headlessly: `papermill notebooks/05_lmeval.ipynb runs/<name>/05_lmeval.ipynb -p model qwen2.5-coder-0.5b
# -p run_dir runs/<name>/05_lmeval`.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # folder with <task>/{train,validation}.jsonl (None: $SDTP_LMEVAL_DATA, else data/lmeval_fixture)
run_dir = "runs/explore/05_lmeval"  # one folder per scorer (lm-eval's results and samples), results.md, figure
n_samples = None  # lm-eval's limit: documents per task (None: all)
device = "auto"  # "auto": the GPU when there is one
seed = 0  # lm-eval's random seeds (the few-shot draw is lm-eval's own, fixed)
tasks = ["sdtp_paper"]  # the project's task names or the group
# "dense" or "<sdtp|sdtp-low>[@<r>|@<c>x][+L<layer>][+R<fraction>]:<policy|auto|predictor|path>" (auto: the shipped predictor, else norm)
scorers = ["dense", "sdtp:auto", "sdtp-low:auto", "sdtp:random"]
keep_ratio = 0.9  # r of the scorers without their own "@ratio"
num_fewshot = 5
dtype = None  # None: float32 on CPU, bfloat16 on GPU

# %%
from pathlib import Path

from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.eval import lmeval as LM
from sdtp_lib.eval.figures import lmeval_figure

out = Path(run_dir)
tasks = [tasks] if isinstance(tasks, str) else list(tasks)  # -p tasks sdtp_copa: one task
loaded = S.load_model(model, dtype=dtype, device=S.resolve_device(device))
print(f"{model} | data: {LM.data_dir(data)} | tasks: {', '.join(tasks)} | limit {n_samples} | scorers: "
      f"{', '.join(scorers)}")

# %%
res = LM.run_lmeval_suite(loaded, tasks, out, scorers=scorers, keep_ratio=keep_ratio, limit=n_samples,
                          num_fewshot=num_fewshot, device=device, data=data, seed=seed)
display(Markdown(LM.markdown(res)))

# %% [markdown]
# What pruning did (totals over every pruned forward of the run) and how long each scorer took.

# %%
display(Markdown(LM.pruning_markdown(res)))

# %%
fig = lmeval_figure(res)
fig.savefig(out / "lmeval.png", dpi=120)
print("wrote", out / "results.json", out / "results.md", "and", out / "lmeval.png")
