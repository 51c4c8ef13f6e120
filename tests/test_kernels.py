"""fast_prefill: same logits as HF's modules (float rounding only), everything put back on exit."""
import sys

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.speed.decode import greedy_generate
from sdtp_lib.speed.kernels import FusedMLP, FusedRMSNorm, fast_prefill, rope, silu_mul

from .conftest import prompt_ids


def _state(model):
    dec = model.get_decoder()
    mod = sys.modules[type(dec.layers[0].self_attn).__module__]
    return ([(l.input_layernorm, l.post_attention_layernorm, l.mlp) for l in dec.layers], dec.norm,
            mod.apply_rotary_pos_emb)


@torch.no_grad()
@pytest.mark.parametrize("r", [None, 0.6])
def test_fast_prefill_same_logits_and_restored(tiny, r):
    model, _ = tiny
    ids = prompt_ids(100, B=2, seed=3)
    conf = S.SDTPConfig.for_model(model, keep_ratio=r) if r else None
    prune = (lambda: S.pruning(model, "norm", conf)) if r else (lambda: __import__("contextlib").nullcontext())
    with prune():
        ref = model(ids).logits
    before = _state(model)
    with fast_prefill(model, chunk_tokens=16):
        layer = model.get_decoder().layers[0]
        assert isinstance(layer.input_layernorm, FusedRMSNorm) and isinstance(layer.mlp, FusedMLP)
        assert sys.modules[type(layer.self_attn).__module__].apply_rotary_pos_emb is rope
        with prune():
            out = model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    after = _state(model)
    assert all(a is b for a, b in zip(sum(before[0], ()), sum(after[0], ()))) and before[1:] == after[1:]


@torch.no_grad()
def test_fast_prefill_restored_after_error_and_refuses_nesting(tiny_sdpa):
    model, _ = tiny_sdpa
    before = _state(model)
    with pytest.raises(ZeroDivisionError):
        with fast_prefill(model):
            1 / 0
    assert _state(model)[1:] == before[1:] and _state(model)[0][0][2] is before[0][0][2]
    with fast_prefill(model):
        with pytest.raises(RuntimeError, match="nested"):
            with fast_prefill(model):
                pass
    with pytest.raises(ValueError, match="chunk_tokens"):
        with fast_prefill(model, chunk_tokens=0):
            pass


def test_fused_functions_match_hf():
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, 50, 16, generator=g), torch.randn(2, 2, 50, 16, generator=g)
    cos, sin = torch.randn(2, 50, 16, generator=g), torch.randn(2, 50, 16, generator=g)
    for a, b in zip(rope(q, k, cos, sin), apply_rotary_pos_emb(q, k, cos, sin)):
        torch.testing.assert_close(a, b)
    x, y = torch.randn(3, 40, generator=g), torch.randn(3, 40, generator=g)
    torch.testing.assert_close(silu_mul(x, y), torch.nn.functional.silu(x) * y)


@torch.no_grad()
def test_greedy_generate_with_fast_kernels_same_tokens(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(80, seed=5)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    a = greedy_generate(model, ids, 8, scorer="norm", config=conf, cuda_graph=False)
    b = greedy_generate(model, ids, 8, scorer="norm", config=conf, cuda_graph=False, fast_kernels=True, chunk_tokens=32)
    assert torch.equal(a.tokens, b.tokens) and a.kept_per_layer == b.kept_per_layer
    assert not isinstance(model.get_decoder().layers[0].mlp, FusedMLP)
