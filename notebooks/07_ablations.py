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
# # 07 · Ablations: one factor at a time
#
# The paper's ablations (`sdtp_lib.eval.ablation`, docs/ablations.md) on one model and one train / held-out split:
# **losses** (predictors trained with the full loss, without the ranking loss, without MSE, without both; per seed),
# **stages** (1 vs 5 vs 10 stages at the same compression), **keep_ratio** (r) and **start_layer** (where the first
# stage sits, crossed with r; a predictor is trained for every placement, never used at other layers). Each setting
# is scored by the held-out response loss against dense (paired bootstrap) and, when `synthetic_n` > 0, by the
# synthetic suite's accuracy against dense; its cost is the compression and prefill FLOPs ratio of the same variant
# on the Qwen2-7B shape. Writes `run_dir/<ablation>/results.json` + `results.md` + a figure; a re-run with the same
# `run_dir` skips finished settings. Full settings (GPU): the `qwen2.5-0.5b` pipeline profile.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # Dolly-schema source (None: the project's data/sdtp_default)
run_dir = "runs/explore/07_ablations"  # predictors/, saliency*/, <ablation>/ go here
n_samples = 10  # samples for training + held-out (None: all 600 of data/sdtp_default)
device = "auto"  # "auto": the GPU when there is one
seed = 0  # which samples and the train/validation split (as in notebooks 01 / 02)
dtype = None  # None: float32 on CPU, bfloat16 on GPU
saliency = None  # notebook 01's run_dir (or its saliency.safetensors) for the same samples; None: computed here
seq_len = 256
epochs = 1
batch_size = 4
seeds = [0]  # training seeds of every predictor (the paper's seeds differ a lot: use two on a GPU)
ablations = ["losses", "stages", "keep_ratio", "start_layer"]
keep_ratio = 0.9  # r where an ablation does not vary it, and the predictors' training schedule
losses = ["full", "no_rank", "no_mse", "no_both"]
stage_counts = [1, 5, 10]
compression = 1.6  # the stage ablation's compression (prompt tokens / mean tokens per layer)
keep_ratios = [0.9, 0.8, 0.7]
start_layers = [4, 8]  # the first stage's layer (then every 3 layers, as the default placement)
start_keep_ratios = [0.9, 0.7]
scorers = ["predictor", "attention"]  # the stage / keep-ratio / start-layer scorers: the predictors trained here, policies
synthetic_n = 0  # examples per synthetic task x length x layout (0: no synthetic suite)
synthetic_tasks = ["passkey"]
synthetic_lengths = [1024]
synthetic_layouts = ["question_first", "question_last"]
synthetic_workers = 1  # processes answering the suite, each with its own model: same answers, faster on a GPU
reference_length = 32768  # prompt tokens of the cost columns (Qwen2-7B shape)

# %%
from pathlib import Path

from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.eval import ablation as A
from sdtp_lib.training import data as D
from sdtp_lib.training.train import TrainConfig

one = lambda x: [x] if isinstance(x, (str, int, float)) else x  # noqa: E731 - `-p ablations losses` is one
synthetic = None if not synthetic_n else dict(tasks=one(synthetic_tasks), lengths=one(synthetic_lengths),
                                              layouts=one(synthetic_layouts), n_samples=synthetic_n, seed=seed)
cfg = A.AblationConfig(model=model, data=data or str(D.DEFAULT_DATA), samples=n_samples, seq_len=seq_len,
                       data_seed=seed, device=S.resolve_device(device), dtype=dtype,
                       train=TrainConfig(epochs=epochs, batch_size=batch_size), seeds=one(seeds),
                       ablations=one(ablations), keep_ratio=keep_ratio, losses=one(losses),
                       stage_counts=one(stage_counts), compression=compression, keep_ratios=one(keep_ratios),
                       start_layers=one(start_layers), start_keep_ratios=one(start_keep_ratios), scorers=one(scorers),
                       synthetic=synthetic, synthetic_workers=synthetic_workers, reference_length=reference_length)
print("synthetic suite:", synthetic or "skipped (synthetic_n = 0)")
results = A.run_ablations(cfg, run_dir, saliency_file=saliency)

# %% [markdown]
# One table per ablation (`results.md`): held-out loss minus dense with its paired 95% interval, synthetic accuracy
# minus dense (points), compression and FLOPs ratio on the Qwen2-7B shape.

# %%
for name, res in results.items():
    display(Markdown(A.markdown(res)))

# %% [markdown]
# One small figure per ablation: each setting's difference to dense, one series per scorer (the range over seeds as
# the error bar); written to `run_dir/<ablation>/<ablation>.png`.

# %%
paths = [A.write_figure(Path(run_dir) / name, res, close=False) for name, res in results.items()]
print("wrote", ", ".join(map(str, paths)))
