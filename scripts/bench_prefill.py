"""Prefill benchmark and engine checks on a GPU, Qwen2-7B-shaped random weights (speed does not depend on values).

    python scripts/bench_prefill.py --lengths 4096 16384 32768 --repeats 5 --out runs/bench_prefill.json

Checks (printed): keep ratio 1.0 gives dense logits; no host synchronisation inside the pruned prefill
(torch.cuda.set_sync_debug_mode("error") around the layer loop); then a table of dense vs SDTP prefill
latency (median of repeats after a warm-up, CUDA-synchronised), FLOPs ratio and peak memory.
"""
from __future__ import annotations

import argparse
import json

import torch

import sdtp_lib as S
from sdtp_lib.speed.profiling import host_sync_in_prefill, qwen2_7b_random, timed


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 32768])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    model = qwen2_7b_random(attn=a.attn)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10)
    pred = S.TokenPredictor.for_model(model, conf)
    print(f"GPU {torch.cuda.get_device_name()} | torch {torch.__version__} | transformers "
          f"{__import__('transformers').__version__} | attn {a.attn} | stages {list(conf.stage_layers)}")

    ids = torch.randint(0, 150000, (1, 2048), device="cuda")
    dense = model(ids, logits_to_keep=1).logits
    with S.pruning(model, pred, S.SDTPConfig.for_model(model, keep_ratio=1.0)):
        same = model(ids, logits_to_keep=1).logits
    print(f"check keep_ratio=1.0 == dense (bf16, 2K): max |diff| = {(same - dense).abs().max().item():.3g}")

    for name, scorer in (("predictor", pred), ("norm", "norm"), ("random", "random")):
        err = host_sync_in_prefill(model, scorer, conf, ids)
        print(f"check no host sync in the pruned layer loop ({name}): {'OK' if err is None else 'FAILED: ' + err}")

    rows = []
    print("\n| prompt | dense prefill s | SDTP prefill s (min-max) | speedup | FLOPs ratio | compression | "
          "dense peak GiB | SDTP peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for T in a.lengths:
        ids = torch.randint(0, 150000, (1, T), device="cuda")
        torch.cuda.reset_peak_memory_stats()
        d = timed(lambda: model(ids, logits_to_keep=1), a.repeats)
        mem_d = torch.cuda.max_memory_allocated() / 2**30
        with S.pruning(model, pred, conf) as st:
            torch.cuda.reset_peak_memory_stats()
            p = timed(lambda: model(ids, logits_to_keep=1), a.repeats)
            mem_p = torch.cuda.max_memory_allocated() / 2**30
        ratio = st.flops_dense / st.flops_pruned
        rows.append(dict(prompt_len=T, dense_s=d, sdtp_s=p, speedup=d[0] / p[0], flops_ratio=ratio,
                         compression=st.compression, kept_per_layer=st.kept_per_layer,
                         dense_peak_gib=mem_d, sdtp_peak_gib=mem_p, weights="random"))
        print(f"| {T} | {d[0]:.3f} | {p[0]:.3f} ({p[1]:.3f}-{p[2]:.3f}) | {d[0] / p[0]:.2f}x | {ratio:.2f}x | "
              f"{st.compression:.2f}x | {mem_d:.1f} | {mem_p:.1f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "transformers": __import__("transformers").__version__, "attn": a.attn,
                       "stage_layers": list(conf.stage_layers), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
