"""Faster elementwise work for long prefills, swapped in for a block and always put back.

`fast_prefill(model, chunk_tokens)`: inside the block
- every RMSNorm runs as torch's fused `F.rms_norm` (one pass; HF's runs six: cast, pow, mean, rsqrt, mul, mul),
- the gated MLP runs over the sequence in chunks (sdtp_lib.memory) with silu(gate) * up in one kernel,
- rotary embedding (`apply_rotary_pos_emb` of the model's modeling module) is one fused kernel.
On CUDA the SiLU-mul and rotary functions are `torch.compile`d (dynamic shapes: one compilation for all
lengths); elsewhere they run eagerly (same formula, so the CPU tests check the maths, not the speed).
Measured on one H200 at 128K tokens (scripts/prefill_breakdown.py): HF's RMSNorm 5.9 ms vs F.rms_norm
0.58 ms; rotary 7.3 ms per layer. Results equal HF's up to float rounding (bf16: one rounding instead of
one per op), so keep-ratio-1 bitwise checks run without this block. The rotary swap replaces a module-level
function: while the block is open it applies to every model of that family in the process.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from .memory import ChunkedMLP, chunked_mlp

log = logging.getLogger(__name__)
_COMPILED: dict = {}


def rope(q, k, cos, sin, unsqueeze_dim=1):  # q (B, H, T, D), k (B, KVH, T, D), cos/sin (B, T, D)
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    h = q.shape[-1] // 2
    q_rot = torch.cat((-q[..., h:], q[..., :h]), dim=-1)  # rotate_half, HF's (non-interleaved) layout
    k_rot = torch.cat((-k[..., h:], k[..., :h]), dim=-1)
    return q * cos + q_rot * sin, k * cos + k_rot * sin


def silu_mul(gate, up):  # (B, T, I) x2 -> (B, T, I)
    return F.silu(gate) * up


SPLIT_ATTN = "sdtp_split_sdpa"


def attention_lse(q, k, v, causal: bool, scale: float):  # (B, H, Tq, D), (B, H, Tk, D) -> (B, H, Tq, D), (B, H, Tq)
    """Attention output and its log-sum-exp (float32). CUDA: cuDNN's kernel; elsewhere the plain formula."""
    if q.is_cuda:
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False,
                                                                      scale=scale)[:2]
        return out, lse.reshape(q.shape[:3]).float()
    s = (q.float() @ k.float().transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
    if causal:  # top-left aligned: query i sees keys 0..i
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype), torch.logsumexp(s, -1)


def lse_merge(o1, l1, o2, l2):  # two attention results over disjoint key sets -> the result over their union
    m = torch.logaddexp(l1, l2)
    return (o1.float() * (l1 - m).exp().unsqueeze(-1) + o2.float() * (l2 - m).exp().unsqueeze(-1)).to(o1.dtype)


def split_causal_attention(q, k, v, scale: float, merge=lse_merge):  # (B, H, T, D) x3 (same heads) -> (B, T, H, D)
    """Causal attention as two query halves: the first half a causal square; the second a causal square over its
    own keys plus a non-causal rectangle over the first half's keys, merged by log-sum-exp. Same FLOPs as one
    call, shorter kernels: on an H200 cuDNN runs 591 TFLOP/s this way at 128K against 545 as one call
    (scripts/attention_split_bench.py)."""
    B, H, T, D = q.shape
    b = T // 2
    out = q.new_empty(B, T, H, D)
    o, _ = attention_lse(q[:, :, :b], k[:, :, :b], v[:, :, :b], True, scale)
    out[:, :b] = o.transpose(1, 2)
    o, l1 = attention_lse(q[:, :, b:], k[:, :, b:], v[:, :, b:], True, scale)
    o2, l2 = attention_lse(q[:, :, b:], k[:, :, :b], v[:, :, :b], False, scale)
    out[:, b:] = merge(o, l1, o2, l2).transpose(1, 2)
    return out


def split_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                         split_from: int = 98304, merge=lse_merge, **kwargs):
    """HF attention interface: causal self-attention over >= split_from tokens with no mask runs as
    split_causal_attention (K/V heads repeated to the query heads); everything else goes to HF's sdpa
    unchanged. query (B, H, T, D), key/value (B, KVH, T, D) -> (B, T, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    T = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None or T < max(split_from, 2) or not causal or key.shape[2] != T or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rep = query.shape[1] // key.shape[1]
    if rep > 1:
        key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return split_causal_attention(query, key, value, scale, merge), None


def _fn(fn, compiled: bool):
    if not compiled:
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[fn]


class FusedRMSNorm(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.inner = norm

    def forward(self, x):  # (B, T, C)
        return F.rms_norm(x, x.shape[-1:], self.inner.weight, self.inner.variance_epsilon)


class FusedMLP(ChunkedMLP):
    """down(silu(gate(x)) * up(x)) in chunks of tokens, the SiLU-mul fused."""

    def __init__(self, mlp: nn.Module, chunk_tokens: int, act):
        super().__init__(mlp, chunk_tokens)
        self.act = act

    def _run(self, x):
        m = self.inner
        return m.down_proj(self.act(m.gate_proj(x), m.up_proj(x)))


def _is_rmsnorm(m) -> bool:
    return type(m).__name__.endswith("RMSNorm") and hasattr(m, "weight") and hasattr(m, "variance_epsilon")


def _is_silu_mlp(m, config) -> bool:
    return all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj")) and getattr(config, "hidden_act", None) == "silu"


@contextlib.contextmanager
def fast_prefill(model, chunk_tokens: int = 32768, compiled: bool | None = None, split_attention_from: int | None = None):
    """Inside the block the model's prefill uses fused norms, chunked fused MLPs and fused rotary.
    compiled: torch.compile the fused functions (default: on CUDA); split_attention_from: causal attention over
    at least this many tokens runs in two query halves (split_sdpa_attention; the model must use sdpa)."""
    from .models import check_supported
    check_supported(model)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    dev = next(model.parameters()).device
    compiled = dev.type == "cuda" if compiled is None else compiled
    dec = model.get_decoder()
    layers = dec.layers
    if any(isinstance(l.mlp, ChunkedMLP) or isinstance(l.input_layernorm, FusedRMSNorm) for l in layers):
        raise RuntimeError("fast_prefill: the model's MLPs or norms are already swapped (nested block)")
    swaps = []  # (parent, attribute, original)
    for l in layers:
        for name in ("input_layernorm", "post_attention_layernorm"):
            if _is_rmsnorm(getattr(l, name)):
                swaps.append((l, name, getattr(l, name)))
        swaps.append((l, "mlp", l.mlp))
    if _is_rmsnorm(getattr(dec, "norm", None)):
        swaps.append((dec, "norm", dec.norm))
    mod = sys.modules[type(layers[0].self_attn).__module__]
    old_rope = getattr(mod, "apply_rotary_pos_emb", None)
    if old_rope is None:
        raise RuntimeError(f"fast_prefill: {mod.__name__} has no apply_rotary_pos_emb to replace")
    if old_rope is rope or old_rope in _COMPILED.values():
        raise RuntimeError("fast_prefill: rotary is already replaced (nested block)")
    attn = model.config._attn_implementation
    if split_attention_from is not None:
        if attn != "sdpa":
            raise ValueError(f"fast_prefill: split attention needs attn_implementation 'sdpa', the model uses {attn!r}")
        if split_attention_from < 2:
            raise ValueError(f"fast_prefill: split_attention_from must be >= 2 tokens, got {split_attention_from}")
    act = _fn(silu_mul, compiled)
    log.info("fast_prefill: %d modules swapped, rotary fused, compiled=%s", len(swaps), compiled)
    try:
        for parent, name, orig in swaps:
            if name != "mlp":
                new = FusedRMSNorm(orig)
            else:  # another activation: chunked (memory) but not fused
                new = FusedMLP(orig, chunk_tokens, act) if _is_silu_mlp(orig, model.config) else ChunkedMLP(orig, chunk_tokens)
            setattr(parent, name, new)
        mod.apply_rotary_pos_emb = _fn(rope, compiled)
        if split_attention_from is not None:
            from transformers import AttentionInterface
            AttentionInterface.register(SPLIT_ATTN, functools.partial(
                split_sdpa_attention, split_from=split_attention_from, merge=_fn(lse_merge, compiled)))
            model.config._attn_implementation = SPLIT_ATTN
        yield model
    finally:
        model.config._attn_implementation = attn
        mod.apply_rotary_pos_emb = old_rope
        for parent, name, orig in swaps:
            setattr(parent, name, orig)


def prefill_kernels(model, chunk_tokens: int | None = None, fast_kernels: bool | dict = False):
    """The context both engines' runs use: fast_prefill when fast_kernels (True, or its keyword arguments;
    MLP chunks of chunk_tokens or its default), else chunked_mlp when chunk_tokens, else HF's modules."""
    if fast_kernels:
        kw = fast_kernels if isinstance(fast_kernels, dict) else {}
        return fast_prefill(model, chunk_tokens, **kw) if chunk_tokens else fast_prefill(model, **kw)
    return chunked_mlp(model, chunk_tokens) if chunk_tokens else contextlib.nullcontext()
