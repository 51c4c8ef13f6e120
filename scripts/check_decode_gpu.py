"""GPU checks before profiling (Qwen2-7B architecture, random bf16 weights):
1. teacher-forced, the CUDA-graph loop's logits equal the same loop's without graphs (dense and pruned),
   and the dense loop's equal one full forward over prompt + forced tokens (bf16 tolerance);
2. no host synchronisation inside the pruned prefill's layer loop (set_sync_debug_mode("error")).
Exit code 1 if a check fails."""
import sys

import torch

import sdtp_lib as S
from sdtp_lib.decode import greedy_generate
from sdtp_lib.profiling import host_sync_in_prefill, qwen2_7b_random


@torch.no_grad()
def main():
    model = qwen2_7b_random()
    conf = S.SDTPConfig.for_model(model)
    pred = S.TokenPredictor.for_model(model, conf)
    ids = torch.randint(0, 150000, (1, 2048), device="cuda")
    ok = True
    forced = torch.randint(0, 150000, (1, 32), device="cuda")
    full = model(torch.cat([ids, forced[:, :-1]], 1)).logits[:, 2047:].float()  # dense reference
    for name, scorer, c in (("dense", None, None), ("sdtp", pred, conf)):
        g = greedy_generate(model, ids, 32, scorer=scorer, config=c, cuda_graph=True, forced=forced, return_logits=True)
        n = greedy_generate(model, ids, 32, scorer=scorer, config=c, cuda_graph=False, forced=forced, return_logits=True)
        d_graph = float((g.logits - n.logits).abs().max())
        scale = float(n.logits.abs().max())
        line = f"{name}: teacher-forced logits, graph vs no-graph max |diff| {d_graph:.3g} (max |logit| {scale:.3g})"
        if scorer is None:
            d_full = float((n.logits - full).abs().max())
            line += f" | loop vs full forward max |diff| {d_full:.3g}"
            ok &= d_full <= 0.05 * scale  # bf16: static-cache decode vs one full forward
        print(line)
        ok &= d_graph <= 1e-2 * scale  # the same computation replayed (cuBLAS may pick other kernels in capture)
    err = host_sync_in_prefill(model, pred, conf, ids)
    print("no host sync in the pruned prefill's layer loop:", "OK" if err is None else f"FAILED: {err}")
    ok &= err is None
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
