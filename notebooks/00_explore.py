# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Explore one prompt: what SDTP keeps, and why
#
# Type a prompt (or leave `prompt=None` for the project's long demo prompt) and pick samples of the data set;
# see the dense and the pruned answer side by side with prefill time, compression and FLOPs, then explore
# stage by stage which tokens are kept: the stage-1 saliency of every token (gradient x activation against
# the dense answer), the scorer's score, and kept / dropped. In JupyterLab the explorer is live
# (`python -m sdtp_lib lab`); in papermill output a static copy (HTML + PNG) is shown and saved to `run_dir`.

# %% tags=["parameters"]
model = "smollm2-135m"  # load_model spec or a local checkpoint path
data = None  # Dolly-schema source for the sample selector (None: the project's data/sdtp_default)
run_dir = "runs/explore/00_explore"  # comparison, traces and static views go here
n_samples = 3  # samples of `data` in the selector, besides the prompt
device = "auto"  # "auto": the GPU when there is one
seed = 0  # which samples
prompt = None  # the prompt to compare (None: data/demo/long_prompt.txt)
predictor = "auto"  # "auto" (shipped for this model, else norm), a policy, a predictor file or a run folder
keep_ratio = 0.9
stages = 10
spec = None  # instead of the three above: a scorer spec, e.g. "sdtp@0.8+R0.02+W96:hybrid" (whole spans)
max_new_tokens = 48
repeats = 3  # timed prefill repeats (median)

# %%
import json
import random
from pathlib import Path

from IPython.display import HTML, Image, Markdown, display

import sdtp_lib as S
from sdtp_lib.training import data as D
from sdtp_lib.workspace import explorer
from sdtp_lib.compare import encode_prompt, greedy_answer
from sdtp_lib.eval.scorers import resolve_spec
from sdtp_lib.io import atomic_write_text
from sdtp_lib.scorers import resolve_scorer

out = Path(run_dir)
m, tok = S.load_model(model, device=S.resolve_device(device))
if spec:  # its own variant: keep ratio (else keep_ratio's), stages, always-kept fraction, whole spans
    scorer, scorer_label, conf, spans = resolve_spec(spec, m, tok, keep_ratio)
else:
    conf, spans = S.SDTPConfig.for_model(m, keep_ratio=keep_ratio, num_stages=stages), None
    scorer, scorer_label = resolve_scorer(predictor, m, conf)
if prompt is None:
    prompt = (D.DEFAULT_DATA.parent.parent / "demo" / "long_prompt.txt").read_text(encoding="utf-8")
records = D.load_instructions(data or str(D.DEFAULT_DATA))
picked = sorted(random.Random(seed).sample(range(len(records)), min(n_samples or 0, len(records))))
prompts = {"prompt": prompt} | {
    f"sample {i} ({records[i].get('layout') or 'instruction_first'})":
        D.user_message(records[i]["instruction"], records[i].get("context") or "", records[i].get("layout") or
                       "instruction_first") for i in picked}
print(f"{model} | scorer: {scorer_label} | stages at layers {list(conf.stage_layers)} | {len(prompts)} prompts")

# %% [markdown]
# ## Dense vs SDTP on the prompt

# %%
cmp = S.compare(m, tok, prompt, scorer, conf, max_new_tokens=max_new_tokens, repeats=repeats, spans=spans)
display(Markdown(cmp.markdown()))
print(cmp.summary)
atomic_write_text(out / "compare.json", json.dumps({"model": model, "scorer": scorer_label, **cmp.to_dict()},
                                                   indent=2) + "\n")

# %% [markdown]
# ## Stage by stage
# Stage-1 saliency is computed against the dense model's greedy answer to each prompt.

# %%
traces = {}
for name, text in prompts.items():
    ids = encode_prompt(tok, text)
    answer = cmp.dense.answer_ids if name == "prompt" else greedy_answer(m, tok, ids, max_new_tokens)
    traces[name] = explorer.trace_prompt(m, tok, ids, scorer, conf, answer_ids=answer or None, title=name)
explorer.explorer(traces)

# %% [markdown]
# Static copy (for papermill output and the run folder): the prompt after the last stage.

# %%
for i, (name, tr) in enumerate(traces.items()):
    html_path, png_path = explorer.save_static(tr, out, name=f"explore_{i}")
    if i == 0:
        display(HTML(explorer.render_html(tr, tr.num_stages, "kept")))
        display(Image(filename=str(png_path)))
print("static views:", ", ".join(p.name for p in sorted(out.glob("explore_*"))))
