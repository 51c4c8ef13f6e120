"""Stage-2 training memory on Qwen2-7B's architecture (random bf16 weights) under a per-process GPU memory cap.

    python scripts/train_memory_check.py --seq-len 1024 --batch-size 1 --cap-gib 80

Runs a few real training steps (masked simulation, all losses) and prints peak memory and step time,
with gradient checkpointing off and on.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import sdtp_lib as S
from sdtp_lib.speed.profiling import qwen2_7b_random
from sdtp_lib.training.train import TrainConfig, step_losses


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--cap-gib", type=float, default=80.0)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args(argv)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, a.cap_gib * 2**30 / total))
    model = qwen2_7b_random()
    for p in model.parameters():
        p.requires_grad_(False)
    conf = S.SDTPConfig.for_model(model)
    pred = S.TokenPredictor.for_model(model, conf).float()
    opt = torch.optim.AdamW(pred.parameters(), lr=1e-3)
    B, T = a.batch_size, a.seq_len
    batch = dict(input_ids=torch.randint(0, 150000, (B, T), device="cuda"),
                 attention_mask=torch.ones(B, T, dtype=torch.long, device="cuda"),
                 labels=torch.full((B, T), -100, device="cuda"), prompt_len=torch.full((B,), T - 64, device="cuda"),
                 saliency=[torch.randn(B, T, device="cuda") for _ in conf.stage_layers])
    batch["labels"][:, T - 64:] = batch["input_ids"][:, T - 64:]
    print(f"GPU {torch.cuda.get_device_name()} | cap {a.cap_gib} GiB | Qwen2-7B shape, bf16, random weights | "
          f"batch {B} x {T} tokens")
    for gc in (False, True):
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.cuda.reset_peak_memory_stats()
        times = []
        try:
            for _ in range(a.steps + 1):
                torch.cuda.synchronize()
                t = time.perf_counter()
                losses = step_losses(model, pred, conf, TrainConfig(grad_checkpointing=gc), batch)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"grad checkpointing {'on ' if gc else 'off'}: peak {peak:.1f} GiB | step "
                  f"{statistics.median(times[1:]):.3f} s (median of {a.steps} after a warm-up) | "
                  f"loss {float(losses['total']):.3f}")
        except torch.cuda.OutOfMemoryError:
            print(f"grad checkpointing {'on ' if gc else 'off'}: out of memory under the {a.cap_gib} GiB cap")
        model.gradient_checkpointing_disable()


if __name__ == "__main__":
    main()
