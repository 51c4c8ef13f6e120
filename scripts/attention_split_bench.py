"""Would long causal attention run faster as shorter pieces?  python scripts/attention_split_bench.py --out x.json

cuDNN's causal attention reaches ~606 TFLOP/s at 64K but ~553 at 128K (Qwen2-7B heads, H200). This splits the
queries into n blocks: block i = a causal square over its own keys + a non-causal rectangle over all earlier keys,
merged by log-sum-exp (the FLOPs of plain causal attention, none extra), and times it against one SDPA call.
A measurement for the profiling notes, not (yet) a kernel of the library. --cpu checks the merge on a tiny shape.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

HQ, HKV, D = 28, 4, 128


def attn_lse(q, k, v, causal):  # (B, H, Tq, D), (B, H, Tk, D) -> out (B, H, Tq, D), lse (B, H, Tq) float32
    if q.is_cuda:
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False)[:2]
        return out, lse.reshape(q.shape[:3]).float()
    s = (q.float() @ k.float().transpose(-1, -2)) / q.shape[-1] ** 0.5  # math reference (CPU check only)
    if causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
    lse = torch.logsumexp(s, -1)
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype), lse


def split_causal(q, k, v, n):  # k, v already have q's heads; n query blocks of T / n
    T = q.shape[2]
    b = T // n
    outs = []
    for i in range(n):
        qi = q[:, :, i * b:(i + 1) * b]
        o, lse = attn_lse(qi, k[:, :, i * b:(i + 1) * b], v[:, :, i * b:(i + 1) * b], True)
        if i:
            o2, lse2 = attn_lse(qi, k[:, :, :i * b], v[:, :, :i * b], False)
            m = torch.logaddexp(lse, lse2)
            o = (o.float() * (lse - m).exp()[..., None] + o2.float() * (lse2 - m).exp()[..., None]).to(q.dtype)
        outs.append(o)
    return torch.cat(outs, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[32768, 65536, 131072])
    ap.add_argument("--splits", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cpu", action="store_true", help="check the merge against plain causal attention on CPU")
    a = ap.parse_args()
    if a.cpu:
        q, k, v = (torch.randn(1, 2, 64, 16) for _ in range(3))
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        for n in (2, 4, 8):
            d = (split_causal(q, k, v, n) - ref).abs().max().item()
            print(f"split {n}: max |diff| vs one causal call {d:.2e}")
            assert d < 1e-5
        return
    from sdtp_lib.profiling import timed
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    q, k, v = (torch.randn(1, 8192, h, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for h in (HQ, HKV, HKV))
    kr, vr = k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    res["check_8k_max_abs_diff"] = {n: (split_causal(q, kr, vr, n) - ref).abs().max().item() for n in a.splits}
    res["check_8k_ref_max_abs"] = ref.abs().max().item()
    print("check at 8K, max |split - one call|:", res["check_8k_max_abs_diff"], "of max |out|", res["check_8k_ref_max_abs"])
    for T in a.lengths:
        q, k, v = (torch.randn(1, T, h, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for h in (HQ, HKV, HKV))
        kr, vr = k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)
        flops = 4 * HQ * D * T * T / 2
        row = {"T": T}
        cases = {"one_call_gqa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                 "one_call_cudnn_lse": lambda: attn_lse(q, kr, vr, True)}
        for n in a.splits:
            cases[f"split_{n}"] = lambda n=n: split_causal(q, kr, vr, n)
        for name, fn in cases.items():
            try:
                row[name] = round(flops / timed(fn, 3)[0] / 1e12, 1)
            except Exception as e:  # noqa: BLE001  a shape without a kernel: say so in the table
                row[name] = f"n/a ({type(e).__name__}: {str(e)[:80]})"
        h = T // 2  # the rectangle alone: non-causal (T/2) x (T/2)
        try:
            row["rect_half_noncausal"] = round(4 * HQ * D * h * h / timed(
                lambda: attn_lse(q[:, :, h:], kr[:, :, :h], vr[:, :, :h], False), 3)[0] / 1e12, 1)
        except Exception as e:  # noqa: BLE001
            row["rect_half_noncausal"] = f"n/a ({type(e).__name__})"
        print("TFLOP/s", row, flush=True)
        res["rows"].append(row)
        del q, k, v, kr, vr
        torch.cuda.empty_cache()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
