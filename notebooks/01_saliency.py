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
# The file is resumable: re-running with the same `out_dir` continues where it stopped.

# %% tags=["parameters"]
model = "smollm2-135m"  # model spec or local checkpoint path
data = None  # Dolly-schema source (None: the project's data/sdtp_default)
samples = 30  # how many samples (None: all)
seq_len = 512  # contexts are cut to fit, responses never
keep_ratio = 0.9
stages = 10
out_dir = "runs/saliency_nb"

# %%
from pathlib import Path

import torch
from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib import data as D
from sdtp_lib import saliency as SA
from sdtp_lib.plots import saliency_sparsity_figure

m, tok = S.load_model(model)
conf = S.SDTPConfig.for_model(m, keep_ratio=keep_ratio, num_stages=stages)
source = data or str(D.DEFAULT_DATA)
train, val = D.split(D.build_samples(D.load_instructions(source), tok, seq_len=seq_len, n=samples, seed=0))
print(f"{len(train)} train / {len(val)} validation samples; stage layers {list(conf.stage_layers)}")

# %%
path = SA.compute_saliency(m, train, conf.stage_layers, Path(out_dir), data_source=source, seq_len=seq_len)
store = SA.SaliencyStore.load(path)
stats = SA.saliency_stats(store)
display(Markdown(SA.format_stats(stats)))

# %%
fig = saliency_sparsity_figure(stats)
fig.savefig(Path(out_dir) / "saliency_sparsity.png", dpi=120)

# %% [markdown]
# The prompt tokens with the most negative saliency (most useful) at the first stage layer, for one sample:

# %%
s = store.sample(0)
first = conf.stage_layers[0]
prompt = s["scores"][first][: s["prompt_len"]]
top = torch.argsort(prompt)[:12].tolist()
print(repr(tok.decode(s["input_ids"][s["prompt_len"]:])))
print([(i, tok.decode([int(s["input_ids"][i])]), round(float(prompt[i]), 4)) for i in sorted(top)])
