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
# # 08 · The paper's figures and the final summary beside the paper
#
# Reads the result files of a run folder (`<run>/<notebook>/...`: 01's saliency, 03's latency JSON, 04-06's
# results.json, 07's ablations) and the committed `reports/results/*/` (the Qwen2-7B-shape H200 latency runs, the
# scorer comparisons on the synthetic suite); types no number in. Draws saliency sparsity by layer, the start-layer,
# stages, keep-ratio and loss ablations, latency / FLOPs / memory against length on both engines, LongBench and
# lm-eval bars, H2O, and the quality-vs-speed frontier; a figure whose source is missing is not drawn and the summary
# names the file. Writes `final_summary.md`: a headline table, every paper table beside this run's numbers, and the
# verdict.
# Run headlessly on an existing run folder: `papermill notebooks/08_figures.ipynb runs/<name>/08_figures.ipynb
# -p run runs/<name> -p run_dir runs/<name>/08_figures`.

# %% tags=["parameters"]
model = None  # unused: the figures read result files only (kept for the pipeline's shared parameters)
run_dir = "runs/explore/08_figures"  # the figures and final_summary.md go here
run = None  # the run folder to read (None: run_dir's parent, the pipeline's layout)
n_samples = None  # unused (shared parameter)
device = "auto"  # unused (shared parameter)
seed = 0  # unused (shared parameter)
frontier_length = 32768  # the prompt length whose Qwen2-7B-shape prefill speedup the frontier uses

# %%
import logging
from pathlib import Path

from IPython.display import Image, Markdown, display

from sdtp_lib.workspace import paper_run as PR
from sdtp_lib.workspace.sources import load_sources

logging.basicConfig(level=logging.INFO, format="%(message)s")
out = Path(run_dir)
src = load_sources(Path(run) if run else out.parent)
print("run folder:", src.run, "| committed results:", src.results_dir)
for name, why in src.missing():
    print(f"missing {name}: {why}")

# %%
made = PR.draw_figures(src, out, length=frontier_length)
for name, m in made.items():
    if m.file:
        display(Markdown(f"**{name}**"), Image(str(out / m.file)))
    else:
        print(f"{name}: not drawn ({m.why})")

# %%
path = PR.write_summary(src, out, made)
display(Markdown(path.read_text()))
print("wrote", path)
