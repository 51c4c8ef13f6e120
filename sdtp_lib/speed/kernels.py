"""Faster elementwise work for long prefills, swapped in for a block and always put back.

`fast_prefill(model, chunk_tokens)`: inside the block
- every RMSNorm runs as torch's fused `F.rms_norm` (one pass; HF's runs six: cast, pow, mean, rsqrt, mul, mul),
- the gated MLP runs over the sequence in chunks (sdtp_lib.speed.memory) with silu(gate) * up in one kernel,
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
import logging
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import check_supported
from ..ops import FusedRMSNorm, is_rmsnorm
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


def _fn(fn, compiled: bool):
    if not compiled:
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[fn]


class FusedMLP(ChunkedMLP):
    """down(silu(gate(x)) * up(x)) in chunks of tokens, the SiLU-mul fused."""

    def __init__(self, mlp: nn.Module, chunk_tokens: int, act):
        super().__init__(mlp, chunk_tokens)
        self.act = act

    def _run(self, x):
        m = self.inner
        return m.down_proj(self.act(m.gate_proj(x), m.up_proj(x)))


def _is_silu_mlp(m, config) -> bool:
    return all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj")) and getattr(config, "hidden_act", None) == "silu"


@contextlib.contextmanager
def fast_prefill(model, chunk_tokens: int = 32768, compiled: bool | None = None):
    """Inside the block the model's prefill uses fused norms, chunked fused MLPs and fused rotary.
    compiled: torch.compile the fused functions (default: on CUDA). Attention stays HF's (SDPA: cuDNN on an
    H200, the fastest measured; see docs/speed.md for what else was tried)."""
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
            if is_rmsnorm(getattr(l, name)):
                swaps.append((l, name, getattr(l, name)))
        swaps.append((l, "mlp", l.mlp))
    if is_rmsnorm(getattr(dec, "norm", None)):
        swaps.append((dec, "norm", dec.norm))
    mod = sys.modules[type(layers[0].self_attn).__module__]
    old_rope = getattr(mod, "apply_rotary_pos_emb", None)
    if old_rope is None:
        raise RuntimeError(f"fast_prefill: {mod.__name__} has no apply_rotary_pos_emb to replace")
    if old_rope is rope or old_rope in _COMPILED.values():
        raise RuntimeError("fast_prefill: rotary is already replaced (nested block)")
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
        yield model
    finally:
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
