"""Decode speed of this project's greedy loop on a GPU (Qwen2-7B architecture, random bf16 weights): a benchmark.

    python scripts/decode_bench.py --lengths 4096 131072 --decode-attn matmul flash_attention_4 --breakdown

For each prompt length, dense and SDTP (predictor, 10 stages, r = --keep-ratio) and each decode attention kernel:
ms/token of the CUDA-graph loop (the second of two identical calls; the first is the warm-up), and the memory
floor of a step (weights without the input embedding + the kept KV cache, at --bandwidth TB/s). --breakdown adds
a torch.profiler pass over the same loop without graphs: GPU time per step by kernel (top 12) and kernels per
step, so the graph step's time splits into kernel time and what is left between kernels.
"""
from __future__ import annotations

import argparse

import torch

import sdtp_lib as S
from sdtp_lib.speed import decode
from sdtp_lib.speed.profiling import kv_cache_bytes, qwen2_7b_random


def weight_bytes(model) -> int:
    """Bytes a decode step reads from weights: every parameter but the input embedding."""
    emb = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not emb)


def breakdown(model, ids, scorer, conf, kernel, steps=16, top=12):
    from torch.profiler import ProfilerActivity, profile
    run = lambda n: decode.greedy_generate(model, ids, n, scorer=scorer, config=conf, fast_kernels=True,
                                           cuda_graph=False, decode_attn=kernel)
    run(1)  # warm-up: the no-graph path's first call at this shape
    with profile(activities=[ProfilerActivity.CUDA]) as p1:  # the prefill alone, subtracted below
        run(1)
    with profile(activities=[ProfilerActivity.CUDA]) as p2:
        run(steps + 1)
    def per_kernel(p):
        out = {}
        for e in p.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                t, n = out.get(e.name, (0.0, 0))
                out[e.name] = (t + e.device_time, n + 1)
        return out
    a, b = per_kernel(p1), per_kernel(p2)
    rows = []
    for name, (t, n) in b.items():
        t0, n0 = a.get(name, (0.0, 0))
        if n - n0 > 0:
            rows.append(((t - t0) / steps / 1e3, (n - n0) / steps, name))  # ms and calls per step
    rows.sort(reverse=True)
    total, calls = sum(r[0] for r in rows), sum(r[1] for r in rows)
    print(f"    kernel time {total:.2f} ms/step in {calls:.0f} kernels/step")
    for ms, c, name in rows[:top]:
        print(f"    {ms:7.3f} ms {c:5.0f}x  {name[:110]}")


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 32768, 131072])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--keep-ratio", type=float, default=0.9)
    ap.add_argument("--decode-attn", nargs="+", default=["matmul"], choices=decode.DECODE_KERNELS)
    ap.add_argument("--variants", nargs="+", default=["dense", "sdtp"], choices=["dense", "sdtp"])
    ap.add_argument("--bandwidth", type=float, default=4.8, help="TB/s for the memory floor (H200: 4.8)")
    ap.add_argument("--breakdown", action="store_true")
    a = ap.parse_args(argv)
    model = qwen2_7b_random()
    conf = S.SDTPConfig.for_model(model, keep_ratio=a.keep_ratio)
    pred = S.TokenPredictor.for_model(model, conf).to(device="cuda", dtype=torch.bfloat16)
    wb = weight_bytes(model)
    print(f"weights read per step: {wb / 1e9:.2f} GB")
    print("| prompt | variant | decode attention | decode ms/token | floor ms | KV GB | setup s | prefill s |")
    print("|---|---|---|---|---|---|---|---|")
    for T in a.lengths:
        ids = torch.randint(0, 150000, (1, T), device="cuda")
        for name in a.variants:
            scorer, c = (None, None) if name == "dense" else (pred, conf)
            for kernel in a.decode_attn:
                for _ in range(2):
                    r = decode.greedy_generate(model, ids, a.new_tokens, scorer=scorer, config=c, fast_kernels=True,
                                               decode_attn=kernel)
                t, kv = r.timings, kv_cache_bytes(model, r.kept_per_layer)
                floor = 1e3 * (wb + kv) / (a.bandwidth * 1e12)
                print(f"| {T} | {name} | {kernel} | {t['decode_ms_per_token']:.2f} | {floor:.2f} | {kv / 1e9:.2f} | "
                      f"{t['setup_s']:.3f} | {t['prefill_s']:.3f} |", flush=True)
                if a.breakdown:
                    breakdown(model, ids, scorer, c, kernel)
        del ids
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
