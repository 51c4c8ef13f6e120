"""Where prefill time goes on a GPU (Qwen2-7B architecture, random bf16 weights): a benchmark, not a test.

    python scripts/prefill_breakdown.py --lengths 32768 131072 --out runs/breakdown.json

Prints (and writes as JSON):
1. attention kernels at the Qwen2-7B head shape (28 query / 4 KV heads, head dim 128, causal): HF's sdpa call
   (enable_gqa) vs each SDPA backend forced, with enable_gqa and with K/V repeated, in TFLOP/s;
2. GEMM TFLOP/s at the MLP shapes;
3. elementwise pieces at full length: HF's RMSNorm vs F.rms_norm, silu(gate) * up, rotary;
4. a torch.profiler breakdown of one prefill, dense and SDTP (predictor, r = 0.9), each with HF's own modules
   and inside sdtp_lib.speed.kernels.fast_prefill: kernel time by category (GEMM, attention, other) against wall
   time; the gap is time with no kernel running.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import sdtp_lib as S
from sdtp_lib.speed.profiling import qwen2_7b_random, timed

HQ, HKV, D = 28, 4, 128


def _t(fn, repeats=5):
    return timed(fn, repeats)[0]


def attention_table(lengths):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    out = []
    for T in lengths:
        q = torch.randn(1, T, HQ, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)  # HF layout (B, H, T, D)
        k = torch.randn(1, T, HKV, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        v = torch.randn(1, T, HKV, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        flops = 4 * HQ * D * T * T / 2
        kr, vr = k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)
        qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()  # (B, H, T, D) contiguous instead of HF's views
        cases = {"hf_default_gqa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                 "default_contiguous": lambda: F.scaled_dot_product_attention(qc, kc, vc, is_causal=True,
                                                                              enable_gqa=True)}
        for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                         ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
            def gqa(be=be):
                with sdpa_kernel([be]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

            def rep(be=be):
                with sdpa_kernel([be]):
                    return F.scaled_dot_product_attention(q, kr, vr, is_causal=True)
            cases[f"{name}_gqa"], cases[f"{name}_repeated"] = gqa, rep
        row = {"T": T}
        for name, fn in cases.items():
            try:
                s = _t(fn, 3)
                row[name] = round(flops / s / 1e12, 1)
            except Exception as e:  # a backend without a kernel for this shape
                row[name] = f"n/a ({type(e).__name__})"
        print("attention TFLOP/s", row, flush=True)
        out.append(row)
        del q, k, v, kr, vr, qc, kc, vc
        torch.cuda.empty_cache()
    return out


def gemm_table():
    out = []
    for T in (8192, 32768, 131072):
        for n_in, n_out in ((3584, 18944), (18944, 3584), (3584, 3584 + 2 * 512)):
            x = torch.randn(T, n_in, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(n_out, n_in, device="cuda", dtype=torch.bfloat16)
            s = _t(lambda: F.linear(x, w))
            out.append({"T": T, "in": n_in, "out": n_out, "tflops": round(2 * T * n_in * n_out / s / 1e12, 1)})
            print("gemm", out[-1], flush=True)
            del x, w
    torch.cuda.empty_cache()
    return out


def elementwise_table(model, T):
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb
    layer = model.get_decoder().layers[0]
    x = torch.randn(1, T, 3584, device="cuda", dtype=torch.bfloat16)
    norm = layer.input_layernorm
    res = {"T": T}
    res["hf_rmsnorm_ms"] = 1e3 * _t(lambda: norm(x))
    res["F_rms_norm_ms"] = 1e3 * _t(lambda: F.rms_norm(x, (3584,), norm.weight, norm.variance_epsilon))
    res["residual_add_ms"] = 1e3 * _t(lambda: x + x)
    c = min(T, 8192)
    g = torch.randn(1, c, 18944, device="cuda", dtype=torch.bfloat16)
    res[f"silu_mul_{c}_ms"] = 1e3 * _t(lambda: F.silu(g) * g)
    del g
    q = torch.randn(1, T, HQ, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    k = torch.randn(1, T, HKV, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    pos = torch.arange(T, device="cuda")[None]
    cos, sin = model.model.rotary_emb(x, pos)
    res["rotary_ms"] = 1e3 * _t(lambda: apply_rotary_pos_emb(q, k, cos, sin))
    res["rotary_emb_ms"] = 1e3 * _t(lambda: model.model.rotary_emb(x, pos))
    print("elementwise", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, flush=True)
    del x, q, k
    torch.cuda.empty_cache()
    return res


def _category(name: str) -> str:
    n = name.lower()
    if any(s in n for s in ("sdpa", "fmha", "flash", "attention", "cudnn")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "matmul")):
        return "gemm"
    return "other"


def breakdown(fn, label):
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    cats, kernels = {"gemm": 0.0, "attention": 0.0, "other": 0.0}, []
    for e in prof.key_averages():
        s = (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)) / 1e6
        if s > 0:
            cats[_category(e.key)] += s
            kernels.append((s, e.count, e.key[:140]))
    kernels.sort(reverse=True)
    total = sum(cats.values())
    res = {"label": label, "wall_s": wall, "kernel_s": total, "gap_s": wall - total,
           **{f"{k}_s": v for k, v in cats.items()}, "top_kernels": kernels[:25]}
    print(f"{label}: wall {wall:.3f} s | kernels {total:.3f} s (gemm {cats['gemm']:.3f}, attention "
          f"{cats['attention']:.3f}, other {cats['other']:.3f}) | gap {wall - total:.3f} s", flush=True)
    for s, n, k in kernels[:12]:
        print(f"    {s:8.4f} s  x{n:<5} {k}", flush=True)
    return res


def _save(result: dict, out: str | None):
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--attn-lengths", type=int, nargs="+", default=[8192, 32768, 65536, 117964, 131072])
    ap.add_argument("--chunk-tokens", type=int, default=32768)
    ap.add_argument("--skip-micro", action="store_true", help="only the whole-prefill breakdowns")
    ap.add_argument("--skip-profiles", action="store_true", help="only the kernel microbenchmarks")
    ap.add_argument("--attention-only", action="store_true", help="only the attention microbenchmark")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from sdtp_lib.speed.kernels import fast_prefill
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "transformers": __import__("transformers").__version__, "weights": "random"}
    if not a.skip_micro:
        result["attention"] = attention_table(a.attn_lengths)
        if a.attention_only:
            _save(result, a.out)
            return
        result["gemm"] = gemm_table()
    model = qwen2_7b_random()
    if not a.skip_micro:
        result["elementwise"] = [elementwise_table(model, T) for T in a.lengths]
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10)
    pred = S.TokenPredictor.for_model(model, conf)
    result["profiles"] = []
    for T in ([] if a.skip_profiles else a.lengths):
        ids = torch.randint(0, 150000, (1, T), device="cuda")
        def fast():
            with fast_prefill(model, a.chunk_tokens):
                return model(ids, logits_to_keep=1)
        result["profiles"].append(breakdown(lambda: model(ids, logits_to_keep=1), f"{T} dense, HF modules"))
        result["profiles"].append(breakdown(fast, f"{T} dense, fast_prefill"))
        with S.pruning(model, pred, conf):
            result["profiles"].append(breakdown(lambda: model(ids, logits_to_keep=1), f"{T} sdtp, HF modules"))
            result["profiles"].append(breakdown(fast, f"{T} sdtp, fast_prefill"))
        del ids
        torch.cuda.empty_cache()
        _save(result, a.out)  # after each length: a run stopped by a time limit keeps what it measured
    _save(result, a.out)


if __name__ == "__main__":
    main()
