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
# # 01 · Stage 1: saliency marking
#
# For every training sample: one forward with all tokens, LM cross-entropy on the response, backward;
# at each stage layer the saliency of every token is `(grad * x).sum(-1)` for the hidden state `x`
# entering that layer. Negative saliency = removing the token would raise the loss (REFERENCE.md 1, 3).
# The file is resumable: re-running with the same `run_dir` continues where it stopped. The samples and the
# train/validation split are the training run's (notebook 02 reuses this file).

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # Dolly-schema source: a path or a hub name (None: the project's data/sdtp_default)
run_dir = "runs/explore/01_saliency"  # everything this notebook writes goes here
n_samples = 30  # how many samples (None: all); the training split of them is marked
device = "auto"  # "auto": the GPU when there is one
seed = 0  # which samples and the train/validation split
seq_len = 512  # contexts are cut to fit, responses never
keep_ratio = 0.9
stages = 10

# %%
from pathlib import Path

import torch
from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.training import data as D
from sdtp_lib.training import saliency as SA
from sdtp_lib.workspace.plots import saliency_sparsity_figure
from sdtp_lib.training.run import TrainingRunConfig, training_samples

out = Path(run_dir)
m, tok = S.load_model(model, device=S.resolve_device(device))
conf = S.SDTPConfig.for_model(m, keep_ratio=keep_ratio, num_stages=stages)
source = data or str(D.DEFAULT_DATA)
run_cfg = TrainingRunConfig(model=model, data=source, samples=n_samples, seq_len=seq_len, keep_ratio=keep_ratio,
                            stages=stages, data_seed=seed)
train, val = training_samples(run_cfg, tok)
print(f"{len(train)} train / {len(val)} validation samples; stage layers {list(conf.stage_layers)}")

# %%
path = SA.compute_saliency(m, train, conf.stage_layers, out, data_source=source, seed=seed, seq_len=seq_len)
store = SA.SaliencyStore.load(path)
stats = SA.saliency_stats(store)
display(Markdown(SA.format_stats(stats)))

# %%
fig = saliency_sparsity_figure(stats)
fig.savefig(out / "saliency_sparsity.png", dpi=120)

# %% [markdown]
# The prompt tokens with the most negative saliency (most useful) at the first stage layer, for one sample:

# %%
s = store.sample(0)
first = conf.stage_layers[0]
prompt = s["scores"][first][: s["prompt_len"]]
top = torch.argsort(prompt)[:12].tolist()
print(repr(tok.decode(s["input_ids"][s["prompt_len"]:])))
print([(i, tok.decode([int(s["input_ids"][i])]), round(float(prompt[i]), 4)) for i in sorted(top)])
