"""What one scorer call costs at a stage layer, and where its time goes: a benchmark, not a test.

    python scripts/scorer_cost.py --lengths 32768 131072 --scorers attention predictor hybrid --out runs/scorer_cost

For each length T and scorer: one call on T tokens of a Qwen2-7B-shaped stage layer (random bf16 weights, random
hidden states; speed does not depend on values), timed with CUDA events (warm-up, then the median of --repeats),
next to the decoder layer's own forward at T tokens for scale; then a torch.profiler table of the call's kernels
(CUDA time, top --top rows). "hybrid" is an untrained hybrid predictor of production width (window 32, as
trained), "predictor" the paper's predictor; any other name is a policy (make_scorer). Writes OUT.json / OUT.md.
On CPU (a tiny model: --model tiny-qwen2) it times with the wall clock, for a dry run of the plumbing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import sdtp_lib as S
from sdtp_lib.io import atomic_write_text, provenance
from sdtp_lib.speed.profiling import load_profile_model, profile_scorer


def _time(fn, repeats: int, cuda: bool) -> float:
    """Median seconds of fn() after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _kernels(fn, cuda: bool, top: int) -> list[dict]:
    """The call's ops by self device time (CPU time on CPU), top rows."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)
    return [dict(op=e.key, calls=e.count, ms=getattr(e, key, 0.0) / 1e3) for e in rows[:top]
            if getattr(e, key, 0.0) > 0]


@torch.no_grad()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2-7b-random")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--scorers", nargs="+", default=["attention", "predictor", "hybrid"])
    ap.add_argument("--layer", type=int, default=None, help="stage layer (default: the first SDTP stage)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", default="runs/scorer_cost")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.with_suffix(".json").exists():
        raise SystemExit(f"{out.with_suffix('.json')} exists: choose another --out")
    model, weights = load_profile_model(args.model)
    p = next(model.parameters())
    cuda = p.is_cuda
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10)
    li = args.layer if args.layer is not None else conf.stage_layers[0]
    dec = model.get_decoder()
    layer = dec.layers[li]
    rows = []
    for T in args.lengths:
        hidden = torch.randn(1, T, model.config.hidden_size, device=p.device, dtype=p.dtype)  # (B, T, C)
        pos = torch.arange(T, device=p.device)[None]
        pe = dec.rotary_emb(hidden, pos)  # (cos, sin), each (1, T, D)
        layer_s = _time(lambda: layer(hidden, position_embeddings=pe, position_ids=pos), args.repeats, cuda)
        for name in args.scorers:
            scorer = profile_scorer(model, conf, name)
            kw = dict(layer=layer, position_embeddings=pe) if getattr(scorer, "needs_layer", False) else {}
            call = lambda: scorer(hidden, 0, pos, **kw)
            s = _time(call, args.repeats, cuda)
            row = dict(tokens=T, scorer=name, call_ms=1e3 * s, layer_ms=1e3 * layer_s,
                       pct_of_layer=100 * s / layer_s, kernels=_kernels(call, cuda, args.top))
            rows.append(row)
            print(f"{T:>7} {name:>10}: {row['call_ms']:.2f} ms ({row['pct_of_layer']:.1f}% of one layer)", flush=True)
        del hidden, pe
    head = dict(model=args.model, weights=weights, stage_layer=li, device=str(p.device), dtype=str(p.dtype),
                repeats=args.repeats, **provenance())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(dict(header=head, rows=rows), indent=1))
    md = [f"# Scorer cost at stage layer {li}: {args.model} ({p.dtype}, {p.device})", "",
          "| tokens | scorer | call ms | one layer ms | % of one layer |", "|---|---|---|---|---|"]
    md += [f"| {r['tokens']} | {r['scorer']} | {r['call_ms']:.2f} | {r['layer_ms']:.2f} | {r['pct_of_layer']:.1f} |"
           for r in rows]
    for r in rows:
        md += ["", f"## {r['scorer']} at {r['tokens']} tokens", "", "| op | calls | ms |", "|---|---|---|"]
        md += [f"| `{k['op'][:80]}` | {k['calls']} | {k['ms']:.3f} |" for k in r["kernels"]]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
