"""H2O's prefill cost in one process: the prefill alone, and with the column sums of the attention that H2O's
eviction starts from (sdtp_lib.speed.h2o.collect_prefill_scores), computed in query chunks of about 2**N scores
(column_sums) and from two flash-attention passes (column_sums_flash, the default on a GPU), on random weights of a
model's shape (speed does not depend on weight values). The scores are compared with the first variant's.

    python scripts/h2o_prefill_bench.py OUT [--shape qwen2.5-0.5b] [--lengths 4096 16384] [--chunk-log2 25]

Warm-up, synchronised, median of --reps; writes OUT/h2o_prefill.json and .md (config, versions, commit) atomically.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdtp_lib.io import atomic_write_text, provenance  # noqa: E402
from sdtp_lib.speed import h2o  # noqa: E402

SHAPES = {  # the models' config.json fields that set the cost
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936),
    "qwen2-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064),
}


def build(shape: str, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, Qwen2Config
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=131072, use_sliding_window=False)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    return model.eval()


def timed(fn, device, reps: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of fn() over reps after warmup calls (synchronised), and the last result."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out, times = None, []
    for i in range(warmup + reps):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--chunk-log2", type=int, nargs="+", default=[25],
                    help="column sums in chunks of about 2**N scores (the library's default: 25)")
    ap.add_argument("--no-flash", action="store_true", help="leave out the flash variant (it needs CUDA)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if (out / "h2o_prefill.json").exists():
        raise SystemExit(f"{out / 'h2o_prefill.json'} exists: nothing is overwritten")
    model = build(args.shape, args.device, getattr(torch, args.dtype))
    g = torch.Generator().manual_seed(0)
    chunked, flash, calls = h2o.column_sums, h2o.column_sums_flash, []

    def variant(name: str) -> contextlib.ExitStack:
        """The library's own dispatch (prefill_column_sums), set to one way of computing the sums."""
        stack = contextlib.ExitStack()
        use_flash = name == "flash"
        stack.enter_context(mock.patch.object(h2o, "FLASH_PREFILL", use_flash))
        if use_flash:  # counted: a layer that falls back to the chunked sums would be measured as flash
            stack.enter_context(mock.patch.object(h2o, "column_sums_flash",
                                                  lambda *a: calls.append(1) or flash(*a)))
        else:
            n = int(name.rsplit("^", 1)[1])
            stack.enter_context(mock.patch.object(h2o, "column_sums",
                                                  functools.partial(chunked, chunk_elements=1 << n)))
        return stack

    names = [f"chunks of 2^{n}" for n in args.chunk_log2] + ([] if args.no_flash else ["flash"])
    depth = SHAPES[args.shape]["num_hidden_layers"]
    rows = []
    for T in args.lengths:
        ids = torch.randint(0, SHAPES[args.shape]["vocab_size"], (1, T), generator=g).to(args.device)

        def with_scores():
            with h2o.collect_prefill_scores(model) as scores:
                model(ids, logits_to_keep=1)
            return scores
        with torch.inference_mode():
            dense_s, _ = timed(lambda: model(ids, logits_to_keep=1), args.device, args.reps)
            ref = None
            for name in names:
                calls.clear()
                with variant(name):
                    s, scores = timed(with_scores, args.device, args.reps)
                if name == "flash" and len(calls) != depth * (1 + args.reps):
                    raise SystemExit(f"flash: {len(calls)} of {depth * (1 + args.reps)} layer calls took the flash "
                                     "path (prefill_column_sums' conditions): nothing to compare")
                cat = torch.cat([scores[i].flatten() for i in sorted(scores)])
                diff = 0.0 if ref is None else float((cat - ref).abs().max() / ref.abs().max())
                ref = cat if ref is None else ref
                rows.append({"length": T, "column_sums": name, "prefill_s": dense_s, "with_scores_s": s,
                             "overhead_x": s / dense_s, "max_rel_diff_to_first": diff})
                print(f"{T:>6} {name}: prefill {dense_s * 1e3:8.1f} ms, with column sums {s * 1e3:8.1f} ms "
                      f"({s / dense_s:.1f}x), scores differ by {diff:.1e}", flush=True)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {"config": {**vars(args), "device_name": dev}, "rows": rows, **provenance()}
    out.mkdir(parents=True, exist_ok=True)
    md = ["| prompt | column sums | prefill | with column sums | overhead | max. difference to the first |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['length']} | {r['column_sums']} | {r['prefill_s'] * 1e3:.1f} ms | {r['with_scores_s'] * 1e3:.1f} "
           f"ms | {r['overhead_x']:.1f}x | {r['max_rel_diff_to_first']:.1e} |" for r in rows]
    atomic_write_text(out / "h2o_prefill.md", f"H2O prefill cost, {args.shape} shape (random weights), {dev}, "
                      f"{args.dtype}, one process, median of {args.reps}\n\n" + "\n".join(md) + "\n")
    atomic_write_text(out / "h2o_prefill.json", json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
