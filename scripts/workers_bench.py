"""The synthetic suite answered by 1, 2, 4 ... processes on one device: wall time, answers/s and whether every
worker count gives the same answers (docs/evaluation.md, "Several processes on one GPU").

    python scripts/workers_bench.py OUT [--model qwen2.5-coder-0.5b] [--workers 1 2 4] [--n-samples 5]

Each count answers the same prompts into its own folder under OUT through eval/workers.py (so every count pays its
processes' start and model load, as a user would); the counts run in the order given, then again reversed when
--reps 2. Writes OUT/workers_bench.json and .md (config, versions, commit) atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdtp_lib.eval import synthetic as SY  # noqa: E402
from sdtp_lib.eval.workers import run_suite_workers  # noqa: E402
from sdtp_lib.io import atomic_write_text, provenance  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096])
    ap.add_argument("--n-samples", type=int, default=5)
    ap.add_argument("--scorers", nargs="+", default=["dense", "sdtp:attention"])
    ap.add_argument("--reps", type=int, default=1, choices=(1, 2))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    if (out / "workers_bench.json").exists():
        raise SystemExit(f"{out / 'workers_bench.json'} exists: nothing is overwritten; give another OUT")
    cfg = SY.SuiteConfig(lengths=args.lengths, n_samples=args.n_samples, scorers=args.scorers)
    load = dict(spec=args.model, dtype=args.dtype, device=args.device)
    order = args.workers + (args.workers[::-1] if args.reps == 2 else [])
    times: dict[int, list[float]] = {w: [] for w in args.workers}
    answers: dict[int, list[dict]] = {}
    for k, w in enumerate(order):
        t0 = time.perf_counter()
        rows = run_suite_workers(load, cfg, out / f"w{w}_rep{k // len(args.workers)}", w)
        times[w].append(time.perf_counter() - t0)
        answers.setdefault(w, rows)
    base = args.workers[0]
    key = lambda r: (r["id"], r["scorer"], r["prediction"])  # noqa: E731
    rows = []
    for w in args.workers:
        wall = statistics.median(times[w])
        diff = sum(key(a) != key(b) for a, b in zip(answers[w], answers[base]))
        rows.append({"workers": w, "answers": len(answers[w]), "wall_s": [round(t, 2) for t in times[w]],
                     "answers_per_s": round(len(answers[w]) / wall, 3),
                     "speedup": round(statistics.median(times[base]) / wall, 2), "answers_unlike_first": diff})
    import torch
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    res = {"config": {**vars(args), "suite": {k: list(v) if isinstance(v, tuple) else v
                                              for k, v in SY.asdict(cfg).items()}}, **provenance(),
           "device_name": gpu, "cpu_count": os.cpu_count(), "rows": rows}
    atomic_write_text(out / "workers_bench.json", json.dumps(res, indent=2) + "\n")
    md = ["| workers | answers | wall s | answers/s | speedup | answers unlike the first count's |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['workers']} | {r['answers']} | {' / '.join(map(str, r['wall_s']))} | {r['answers_per_s']} | "
           f"{r['speedup']}x | {r['answers_unlike_first']} |" for r in rows]
    text = (f"# The synthetic suite in worker processes: {args.model}, {args.device}, {args.dtype}\n\n"
            f"Lengths {args.lengths}, {args.n_samples} per task x length x layout, scorers {args.scorers}; wall time "
            "per count includes its processes' start and model load (median over reps).\n\n" + "\n".join(md) + "\n")
    atomic_write_text(out / "workers_bench.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
