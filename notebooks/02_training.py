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
# # 02 · Stage 2: predictor training and validation
#
# Saliency (resumed if already computed in `out_dir`), then one predictor per seed trained on the frozen
# model with pruning simulated by attention masks, then held-out validation against `random`, `norm` and
# `recent` at the same keep schedule, with the physical engine and the masked simulation.
# Full settings (all samples, on a GPU): `samples=None, device="cuda", seeds=[0, 1]`.

# %% tags=["parameters"]
model = "smollm2-135m"
samples = 30  # None: all 600 samples of data/sdtp_default
seq_len = 512
keep_ratio = 0.9
stages = 10
seeds = [0]
epochs = 2
batch_size = 4
device = None  # None: cuda if available
out_dir = "runs/training_nb"

# %%
from pathlib import Path

from IPython.display import Markdown, display

from sdtp_lib.pipeline import PipelineConfig, run
from sdtp_lib.plots import training_curves
from sdtp_lib.train import TrainConfig, format_rows

cfg = PipelineConfig(model=model, samples=samples, seq_len=seq_len, keep_ratio=keep_ratio, stages=stages,
                     seeds=tuple(seeds), device=device,
                     train=TrainConfig(epochs=epochs, batch_size=batch_size))
summary = run(cfg, out_dir)
print(summary["num_train"], "train /", summary["num_val"], "validation samples |", summary["speed"])

# %%
display(Markdown(format_rows(summary["validation"])))

# %%
fig = training_curves({f"seed {s}": Path(out_dir) / f"seed{s}" / "train_log.csv" for s in seeds})
fig.savefig(Path(out_dir) / "training_curves.png", dpi=120)
