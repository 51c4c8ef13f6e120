"""The tables of this folder from the three runs (prompts that every scorer of a run answered):
    python reports/results/2026-12-05_qwen2.5-0.5b_r0.8-accuracy-1k_cpu/make_tables.py OUT  (with the runs under runs/)"""
import sys, collections
from pathlib import Path
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.io import atomic_write_text, read_jsonl, write_jsonl

def complete(rows):
    by = collections.defaultdict(set); sc = set(r["scorer"] for r in rows)
    for r in rows: by[(r["task"], r["layout"], r["sample"], r["length"])].add(r["scorer"])
    ok = {k for k, v in by.items() if v == sc}
    return [r for r in rows if (r["task"], r["layout"], r["sample"], r["length"]) in ok]

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
MEMORY = {"dense", "sdtp:attention", "sdtp@0.8:attention", "sdtp@0.8+R0.02:attention", "sdtp:attention-m",
          "sdtp@0.8:attention-m", "sdtp@0.8+R0.02:attention-m"}   # memory/: the -m scorers beside their plain ones
for name, src, keep in (("scorers", "runs/acc_0.5b_1k_cpu", None), ("second-hop", "runs/acc_0.5b_1k_hop_cpu", None),
                        ("memory", "runs/acc_mem_1k", MEMORY)):
    if not Path(f"{src}/config.json").exists():
        print(f"{name}: {src} not here, its folder is left as it is"); continue
    rows = complete([r for r in read_jsonl(f"{src}/predictions.jsonl") if keep is None or r["scorer"] in keep])
    d = out / name; d.mkdir(exist_ok=True)
    write_jsonl(d / "predictions.jsonl.gz", rows)
    (d / "config.json").write_text(Path(f"{src}/config.json").read_text())
    lines = [f"# {name}: Qwen2.5-Coder-0.5B, 1K prompts, CPU float32\n"]
    for task in [None] + list(dict.fromkeys(r["task"] for r in rows)):
        sub = [r for r in rows if task is None or r["task"] == task]
        lines.append(f"\n## {'all tasks' if task is None else task}\n\n" + Y.comparison_markdown(Y.compare(sub)))
    ret = Y.retention(rows)
    lines.append("\n## needle retention\n\n" + Y.retention_markdown(ret))
    atomic_write_text(d / "comparison.md", "\n".join(lines) + "\n", overwrite=True)
    print(name, len(rows), collections.Counter((r["task"], r["layout"]) for r in rows if r["scorer"] == "dense"))
