"""This folder's tables from the 1.5B run (prompts that every scorer answered), beside the 0.5B on the same prompts:
    python reports/results/2026-12-06_qwen2.5-1.5b_r0.8-accuracy-1k_cpu/make_tables.py OUT  (the run in runs/acc_1.5b_1k_cpu)"""
import sys, collections
from pathlib import Path
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.io import atomic_write_text, read_jsonl, write_jsonl

HERE = Path(__file__).resolve().parent
SMALL = HERE.parent / "2026-12-05_qwen2.5-0.5b_r0.8-accuracy-1k_cpu" / "scorers" / "predictions.jsonl.gz"
SCORERS = ["dense", "sdtp:attention", "sdtp@0.8+R0.02:attention"]

def key(r): return (r["task"], r["layout"], r["sample"], r["length"])
def complete(rows):
    by = collections.defaultdict(set)
    for r in rows: by[key(r)].add(r["scorer"])
    return [r for r in rows if by[key(r)] >= set(SCORERS) and r["scorer"] in SCORERS]

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
RUN = Path("runs/acc_1.5b_1k_cpu")
big = complete(read_jsonl(RUN / "predictions.jsonl"))   # .jsonl or, once the run finished, .jsonl.gz
write_jsonl(out / "predictions.jsonl.gz", big)
(out / "config.json").write_text((RUN / "config.json").read_text())
prompts = {key(r): r["prompt_sha"] for r in big}
small = [r for r in complete(read_jsonl(SMALL)) if key(r) in prompts]   # the 0.5B on the same prompts
other = next((r for r in small if r["prompt_sha"] != prompts[key(r)]), None)
if other:
    sys.exit(f"the two runs' prompts differ at {key(other)}: not the same prompts")
lines = ["# Qwen2.5-Coder-1.5B beside Qwen2.5-Coder-0.5B: 1K prompts, CPU float32, the same prompts\n"]
for name, rows in (("Qwen2.5-Coder-1.5B", big), ("Qwen2.5-Coder-0.5B", small)):
    for task in [None] + list(dict.fromkeys(r["task"] for r in big)):
        sub = [r for r in rows if task is None or r["task"] == task]
        lines.append(f"\n## {name}: {'all tasks' if task is None else task}\n\n" + Y.comparison_markdown(Y.compare(sub)))
    lines.append(f"\n## {name}: needle retention\n\n" + Y.retention_markdown(Y.retention(rows)))
atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n", overwrite=True)
print(len(big) // len(SCORERS), "prompts;", collections.Counter((r["task"], r["layout"]) for r in big if r["scorer"] == "dense"))
