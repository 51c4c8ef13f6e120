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
# # 06 · Synthetic long-context suite: does pruning keep the needle?
#
# Seeded retrieval tasks with exact scoring, in the spirit of RULER (`sdtp_lib.eval.synthetic`): passkey,
# multi-key needle-in-a-haystack (with distractor needles), key-value retrieval, variable tracking; each with the
# question after the context (LongBench's layout) and before it, at prompt lengths counted in the model's tokens
# (chat template included; lengths the model cannot hold are skipped and said so). Greedy answers per scorer:
# dense, SDTP / SDTP-low with the shipped predictor (`auto`, else norm) and the baseline policies. Shows the
# accuracy table, a heatmap (tasks x lengths) per scorer and accuracy against length. A re-run with the same
# `run_dir` resumes (`run_dir/predictions.jsonl`, gzipped to `.jsonl.gz` once the run is done).
# Run headlessly: `papermill notebooks/06_synthetic.ipynb runs/<name>/06_synthetic.ipynb -p model qwen2.5-coder-0.5b
# -p n_samples 10 -p run_dir runs/<name>/06_synthetic`.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
run_dir = "runs/explore/06_synthetic"  # predictions, results.json / results.md and the figures go here
n_samples = 2  # examples per task x length x layout, needle depths evenly spaced over 0..1 (None: the suite's 10)
device = "auto"  # "auto": the GPU when there is one
seed = 0  # the examples (keys, needles, filler) and torch's seed (the random policy's draws)
tasks = None  # passkey, multikey_niah, kv_retrieval, variable_tracking (None: all four)
lengths = [1024, 2048]  # prompt tokens (GPU: 1024 ... 32768)
layouts = None  # question_last (LongBench's), question_first (None: both)
# "dense" or "<sdtp|sdtp-low>[@<r>|@<c>x][+L<layer>][+R<fraction>]:<policy|auto|predictor|path>" (auto: the shipped predictor, else norm)
scorers = ["dense", "sdtp:auto", "sdtp-low:auto", "sdtp:random", "sdtp:recent"]
keep_ratio = 0.9  # r of the scorers without their own "@ratio"
dtype = None  # None: float32 on CPU, bfloat16 on GPU
workers = 1  # processes sharing the device, each with its own model: the same answers, faster on a GPU

# %%
import json
from pathlib import Path

import torch
from IPython.display import Markdown, display

import sdtp_lib as S
from sdtp_lib.eval import synthetic as SY

torch.manual_seed(seed)
out = Path(run_dir)
one = lambda x: [x] if isinstance(x, (str, int)) else x  # noqa: E731 - `-p tasks passkey` is one task
given = dict(tasks=one(tasks), lengths=one(lengths), layouts=one(layouts), n_samples=n_samples)
cfg = SY.SuiteConfig(**{k: v for k, v in given.items() if v is not None}, scorers=scorers, keep_ratio=keep_ratio,
                     seed=seed)
m, tok = S.load_model(model, dtype=dtype, device=S.resolve_device(device))
skipped = SY.plan_lengths(m, cfg)[1]  # lengths the model cannot hold
print(f"{model} | {len(cfg.tasks)} tasks x {len(cfg.lengths) - len(skipped)} lengths x {len(cfg.layouts)} layouts "
      f"x {cfg.n_samples} samples x {len(cfg.scorers)} scorers"
      + "".join(f" | skipping {s['length']}: {s['reason']}" for s in skipped))

# %%
if workers > 1:  # also writes results.json / results.md
    from sdtp_lib.eval.workers import run_suite_workers
    rows = run_suite_workers(dict(spec=model, dtype=dtype, device=S.resolve_device(device)), cfg, out, workers)
else:
    rows = SY.run_suite(m, tok, cfg, out)
summary = SY.summarise(rows)
display(Markdown(SY.markdown(summary)))

# %% [markdown]
# Mean compression (layer tokens, dense / pruned) per scorer over the suite's prompts.

# %%
display(Markdown("| scorer | mean compression |\n|---|---|\n" +
                 "\n".join(f"| {s} | {c:.2f}x |" for s, c in SY.compression_by_scorer(rows).items())))

# %% [markdown]
# Every scorer against dense, per layout: accuracy, its share of dense, the worst length, and the difference to
# dense over the same prompts with a 95% bootstrap interval (also in `results.md` / `results.json`).

# %%
table = json.loads((out / "results.json").read_text())["comparison"]  # written by run_suite (empty without dense)
display(Markdown(SY.comparison_markdown(table) or "(no dense scorer in this run: nothing to compare with)"))

# %% [markdown]
# Accuracy against length per task and per layout (question before vs after the context), and a heatmap per scorer;
# written to `run_dir` as the CLI writes them.

# %%
paths = SY.write_figures(out, summary, cfg.scorers, close=False)
print("wrote", out / "results.json", out / "results.md", "and", ", ".join(p.name for p in paths), "in", out)
