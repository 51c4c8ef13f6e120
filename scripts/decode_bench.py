"""Decode speed of this project's greedy loop on a GPU (Qwen2-7B architecture, random bf16 weights): a benchmark.

    python scripts/decode_bench.py --lengths 4096 32768 131072 --new-tokens 32

For each prompt length: ms/token of the CUDA-graph loop, dense and SDTP (predictor, r = 0.9), with the split-K
P @ V of sdtp_lib.speed.decode on and off (off: SPLIT_MIN set above every cache length). Each figure is the second
of two identical calls (the first is the warm-up).
"""
from __future__ import annotations

import argparse

import torch

import sdtp_lib as S
from sdtp_lib.speed import decode
from sdtp_lib.speed.profiling import qwen2_7b_random


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 32768, 131072])
    ap.add_argument("--new-tokens", type=int, default=32)
    a = ap.parse_args(argv)
    model = qwen2_7b_random()
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9)
    pred = S.TokenPredictor.for_model(model, conf)
    split_min = decode.SPLIT_MIN
    print("| prompt | variant | split-K | decode ms/token | setup s | prefill s |")
    print("|---|---|---|---|---|---|")
    for T in a.lengths:
        ids = torch.randint(0, 150000, (1, T), device="cuda")
        for name, scorer, c in (("dense", None, None), ("sdtp", pred, conf)):
            for split in (True, False):
                decode.SPLIT_MIN = split_min if split else 1 << 40
                for _ in range(2):
                    r = decode.greedy_generate(model, ids, a.new_tokens, scorer=scorer, config=c, fast_kernels=True)
                t = r.timings
                print(f"| {T} | {name} | {'on' if split else 'off'} | {t['decode_ms_per_token']:.2f} | "
                      f"{t['setup_s']:.3f} | {t['prefill_s']:.3f} |", flush=True)
        decode.SPLIT_MIN = split_min
        del ids
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
