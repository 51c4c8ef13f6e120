"""GPU checks before profiling (Qwen2-7B architecture, random bf16 weights):
1. the CUDA-graph greedy loop gives the same tokens as the same loop without graphs and as HF generate,
   dense and pruned;
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
    for name, scorer, c in (("dense", None, None), ("sdtp", pred, conf)):
        g = greedy_generate(model, ids, 32, scorer=scorer, config=c, cuda_graph=True)
        n = greedy_generate(model, ids, 32, scorer=scorer, config=c, cuda_graph=False)
        with (S.pruning(model, scorer, c) if scorer is not None else torch.no_grad()):
            hf = model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)[:, 2048:]
        same_g, same_hf = torch.equal(g.tokens, n.tokens), int((g.tokens == hf).sum())
        print(f"{name}: graph == no-graph tokens: {same_g} | graph vs HF generate: {same_hf}/32 tokens equal | "
              f"decode {g.timings['decode_ms_per_token']:.2f} ms/tok (graph) vs {n.timings['decode_ms_per_token']:.2f}")
        ok &= same_g and same_hf >= 30  # bf16: kernels differ (masked static cache vs exact-length cache)
    err = host_sync_in_prefill(model, pred, conf, ids)
    print("no host sync in the pruned prefill's layer loop:", "OK" if err is None else f"FAILED: {err}")
    ok &= err is None
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
