"""GPU checks before profiling (Qwen2-7B architecture, random bf16 weights):
1. teacher-forced at an 8K prompt, the CUDA-graph loop's logits (fused kernels in prefill and decode, as the
   profiler runs it) equal the same loop's without graphs (dense and pruned), and the loop's logits are as close to HF's own step-by-step decode (DynamicCache; pruned by
   the engine for SDTP) as that decode is to one full forward over prompt + forced tokens (the bf16 noise
   floor, measured, not assumed);
2. fast_prefill's logits differ from HF's modules' by no more than HF's
   sdpa and eager attention differ;
3. no host synchronisation inside the pruned prefill's layer loop (set_sync_debug_mode("error")).
Exit code 1 if a check fails."""
import contextlib
import sys

import torch

import sdtp_lib as S
from sdtp_lib.models import cache_kwarg, output_cache
from sdtp_lib.speed.decode import greedy_generate
from sdtp_lib.speed.kernels import fast_prefill
from sdtp_lib.speed.profiling import host_sync_in_prefill, qwen2_7b_random


@torch.no_grad()
def main():
    model = qwen2_7b_random()
    conf = S.SDTPConfig.for_model(model)
    pred = S.TokenPredictor.for_model(model, conf)
    ok = True
    # loop checks at 8K: dense layers' caches (8192 + 32 slots) take the split-K decode path, the last pruned
    # layers' (about 2900 slots) the plain one
    T = 8192
    ids = torch.randint(0, 150000, (1, T), device="cuda")
    forced = torch.randint(0, 150000, (1, 32), device="cuda")
    # references use the same fused kernels as the loop (fast_prefill), so that only the loop is compared
    with fast_prefill(model):
        full = model(torch.cat([ids, forced[:, :-1]], 1), logits_to_keep=32).logits.float()  # dense reference

    def hf_steps(block):  # HF's own teacher-forced step-by-step decode (DynamicCache), pruned inside `block`
        with fast_prefill(model), block:
            out = model(ids, use_cache=True, logits_to_keep=1)
            steps, cache = [out.logits[:, -1].float()], output_cache(out)
            for j in range(31):
                out = model(forced[:, j:j + 1], **{cache_kwarg(model): cache}, use_cache=True)
                steps.append(out.logits[:, -1].float())
        return torch.stack(steps, 1)
    ref = {"dense": hf_steps(contextlib.nullcontext()), "sdtp": hf_steps(S.pruning(model, pred, conf))}
    floor = float((ref["dense"] - full).abs().max())
    print(f"bf16 noise floor: HF step-by-step decode vs HF full forward max |diff| {floor:.3g}")
    for name, scorer, c in (("dense", None, None), ("sdtp", pred, conf)):
        kw = dict(scorer=scorer, config=c, forced=forced, return_logits=True, fast_kernels=True)  # as the profiler
        g = greedy_generate(model, ids, 32, cuda_graph=True, **kw)
        n = greedy_generate(model, ids, 32, cuda_graph=False, **kw)
        d_graph = float((g.logits - n.logits).abs().max())
        scale = float(n.logits.abs().max())
        line = f"{name}: teacher-forced logits, graph vs no-graph max |diff| {d_graph:.3g} (max |logit| {scale:.3g})"
        d_hf = float((n.logits - ref[name]).abs().max())
        line += f" | loop vs HF step-by-step decode max |diff| {d_hf:.3g}"
        ok &= d_hf <= 2 * floor + 1e-3 * scale
        print(line)
        ok &= d_graph <= 1e-2 * scale  # the same computation replayed (cuBLAS may pick other kernels in capture)
    ids = ids[:, :2048]  # fast_prefill vs HF (eager attention materialises T x T scores) and host-sync checks
    ref = model(ids, logits_to_keep=1).logits.float()
    model.config._attn_implementation = "eager"
    eager = model(ids, logits_to_keep=1).logits.float()
    model.config._attn_implementation = "sdpa"
    d_eager = float((eager - ref).abs().max())
    with fast_prefill(model):
        fast = model(ids, logits_to_keep=1).logits.float()
    d_fast = float((fast - ref).abs().max())
    print(f"fast_prefill vs HF modules max |diff| {d_fast:.3g} | HF eager vs sdpa {d_eager:.3g}")
    ok &= d_fast <= 2 * d_eager + 1e-3 * float(ref.abs().max())
    for label in ("HF modules", "fast_prefill"):
        with (fast_prefill(model) if label == "fast_prefill" else contextlib.nullcontext()):
            err = host_sync_in_prefill(model, pred, conf, ids)
        print(f"no host sync in the pruned prefill's layer loop ({label}):", "OK" if err is None else f"FAILED: {err}")
        ok &= err is None
    print("ALL CHECKS PASSED" if ok else "A CHECK FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
