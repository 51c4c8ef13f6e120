"""Prefill with and without split attention, in one run:  python scripts/split_attention_check.py --out x.json

Qwen2-7B architecture (random bf16 weights) on the GPU, one prompt length: HF dense prefill, then SDTP (r = 0.9,
10 stages, production-width predictor) on this project's engine (fast_prefill, chunked MLP) with causal attention
as one call and split into two query halves from each given length on; medians of 3 after a warm-up.
--model tiny-qwen2 --length 256 runs it on CPU (a dry run of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import json

import torch

import sdtp_lib as S
from sdtp_lib.kernels import prefill_kernels
from sdtp_lib.profiling import qwen2_7b_random, timed


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2-7b-random")
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--split-from", type=int, nargs="+", default=[65536, 98304])
    ap.add_argument("--chunk-tokens", type=int, default=32768)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    model = qwen2_7b_random() if a.model == "qwen2-7b-random" else S.load_model(a.model)[0]
    dev = next(model.parameters()).device
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10)
    pred = S.TokenPredictor.for_model(model, conf)
    ids = torch.randint(0, model.config.vocab_size - 1, (1, a.length), device=dev)
    rows = [{"case": "HF dense", "prefill_s": timed(lambda: model(ids, logits_to_keep=1), 3)}]
    for split in [None, *a.split_from]:
        def fwd(split=split):
            with prefill_kernels(model, a.chunk_tokens, dict(split_attention_from=split)):
                return model(ids, logits_to_keep=1)
        with S.pruning(model, pred, conf):
            rows.append({"case": f"SDTP, this engine, split from {split}", "split_attention_from": split,
                         "prefill_s": timed(fwd, 3)})
    base = rows[0]["prefill_s"][0]
    for r in rows:
        med, lo, hi = r["prefill_s"]
        r["speedup_vs_hf_dense"] = base / med
        print(f"{r['case']:<40} prefill {med:.3f} s ({lo:.3f}-{hi:.3f}) | vs HF dense {base / med:.3f}x", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"length": a.length, "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
