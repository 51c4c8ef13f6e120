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
# The training run (`sdtp_lib.training.run`): saliency (notebook 01's file when `saliency` names it, else
# computed here), then one predictor per seed trained on the frozen model with pruning simulated by attention
# masks, then held-out validation against `random`, `norm` and `recent` at the same keep schedule, with the
# physical engine and the masked simulation. Full settings (all samples, on a GPU):
# `n_samples=None, device="cuda", seeds=[0, 1]`.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # Dolly-schema source (None: the project's data/sdtp_default)
run_dir = "runs/explore/02_training"  # the training run's folder: saliency/, seed<k>/, validation.md, run.json
n_samples = 30  # None: all 600 samples of data/sdtp_default
device = "auto"  # "auto": the GPU when there is one
seed = 0  # which samples and the train/validation split (as in notebook 01)
saliency = None  # notebook 01's run_dir (or its saliency.safetensors) to reuse; None: compute it here
seq_len = 512
keep_ratio = 0.9
stages = 10
seeds = [0]  # one predictor per training seed
epochs = 2
batch_size = 4

# %%
from pathlib import Path

from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.training import data as D
from sdtp_lib.workspace.plots import training_curves
from sdtp_lib.training.train import TrainConfig, format_rows
from sdtp_lib.training.run import TrainingRunConfig, run_training

cfg = TrainingRunConfig(model=model, data=data or str(D.DEFAULT_DATA), samples=n_samples, seq_len=seq_len,
                        keep_ratio=keep_ratio, stages=stages, seeds=tuple(seeds), device=S.resolve_device(device),
                        data_seed=seed, train=TrainConfig(epochs=epochs, batch_size=batch_size))
summary = run_training(cfg, run_dir, saliency_file=saliency)
print(summary["num_train"], "train /", summary["num_val"], "validation samples |", summary["speed"])

# %%
display(Markdown(format_rows(summary["validation"])))

# %%
fig = training_curves({f"seed {s}": Path(run_dir) / f"seed{s}" / "train_log.csv" for s in seeds})
fig.savefig(Path(run_dir) / "training_curves.png", dpi=120)
