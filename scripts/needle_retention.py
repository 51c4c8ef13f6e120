"""Does a scorer keep the needle? The synthetic suite's prompts, pruned prefills only (no decoding): for each scorer
spec, the share of the target needle's tokens present after the last stage (sdtp_lib.eval.synthetic.needle_kept).
A cheap screen for scoring rules before the full suite (which decodes and scores answers) runs on a GPU.

    python scripts/needle_retention.py --model qwen2.5-coder-0.5b --lengths 1024 --n-samples 5 --out DIR \
        --scorers sdtp@0.8:attention sdtp@0.8:attention-k31-s10

Writes DIR/retention.json (every prompt's needle_kept per scorer, the configuration, versions, commit) and
DIR/retention.md (mean per scorer x task x layout); resumes from retention.json (rows already there are kept).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

import sdtp_lib as S
from sdtp_lib.compare import encode_prompt
from sdtp_lib.engine import pruning
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.eval.scorers import ORACLE, make_scorer_for, parse_spec
from sdtp_lib.io import atomic_write_text, provenance

log = logging.getLogger("needle_retention")


def table(rows: list[dict]) -> str:
    """Mean needle_kept (%) per scorer x layout x task, and per scorer x layout over tasks."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["scorer"], r["layout"]), {}).setdefault(r["task"], []).append(r["needle_kept"])
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    out = ["| scorer | layout | " + " | ".join(tasks) + " | all |", "|---|---|" + "---|" * (len(tasks) + 1)]
    for (scorer, layout), by_task in cells.items():
        vals = [f"{100 * mean(by_task[t]):.0f}" if t in by_task else "-" for t in tasks]
        every = [x for v in by_task.values() for x in v]
        out.append(f"| {scorer} | {layout} | " + " | ".join(vals) + f" | {100 * mean(every):.0f} |")
    n = sorted({len(v) for c in cells.values() for v in c.values()})
    return "\n".join(out) + f"\n\nneedle tokens kept after the last stage, %; n = {n} prompts per cell\n"


@torch.no_grad()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--scorers", nargs="+", required=True, help="specs as in the evaluations, e.g. sdtp@0.8:attention")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024])
    ap.add_argument("--tasks", nargs="+", default=list(Y.TASKS), choices=Y.TASKS)
    ap.add_argument("--layouts", nargs="+", default=list(Y.LAYOUTS), choices=Y.LAYOUTS)
    ap.add_argument("--n-samples", type=int, default=5)
    ap.add_argument("--keep-ratio", type=float, default=0.9)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    specs = [parse_spec(s) for s in a.scorers]  # bad specs fail before the model loads
    if any(v.stages is None for v, _ in specs) or any(name == ORACLE for _, name in specs):
        raise SystemExit("error: give pruned specs (dense keeps every needle; the oracle needs decoding here)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = S.load_model(a.model, dtype=a.dtype, device=S.resolve_device(a.device))
    config = {k: v for k, v in vars(a).items() if k != "out"}
    path = out / "retention.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    if rows and json.loads(path.read_text())["config"]["model"] != a.model:
        raise SystemExit(f"error: {path} holds another model's rows; choose another --out")
    done = {(r["id"], r["scorer"]) for r in rows}
    cfg = Y.SuiteConfig(tasks=tuple(a.tasks), lengths=tuple(a.lengths), layouts=tuple(a.layouts),
                        n_samples=a.n_samples, scorers=("dense", *a.scorers), keep_ratio=a.keep_ratio)
    scorers = {}
    for spec, (variant, name) in zip(a.scorers, specs):
        conf = variant.config(model, a.keep_ratio)
        scorers[spec] = (make_scorer_for(name, model, conf, spec)[0], conf)
    t0, dev = time.time(), next(model.parameters()).device
    for e in Y.plan(cfg, list(a.lengths)):
        todo = [s for s in a.scorers if (e["id"], s) not in done]
        if not todo:
            continue
        ex = Y.make_example(e["task"], tok, e["length"], e["layout"], e["seed"], e["depth"])
        ids = encode_prompt(tok, ex.prompt)
        span = Y.needle_span(tok, ex, ids)  # once per prompt
        ids = ids.to(dev)
        for spec in todo:
            scorer, conf = scorers[spec]
            with pruning(model, scorer, conf) as st:
                model(ids, logits_to_keep=1)
            rows.append({"id": e["id"], "task": e["task"], "length": e["length"], "layout": e["layout"],
                         "scorer": spec, "prompt_len": ids.shape[1], "compression": st.compression,
                         "needle_kept": Y.needle_kept(span, st)})
        atomic_write_text(path, json.dumps({"config": config, **provenance(), "rows": rows}) + "\n", overwrite=True)
        log.info("%s: %s | %.0f s", e["id"], " ".join(f"{s}={r['needle_kept']:.2f}" for s, r in
                                                      zip(todo, rows[-len(todo):])), time.time() - t0)
    atomic_write_text(out / "retention.md", f"# Needle retention: {a.model}\n\n{table(rows)}", overwrite=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
