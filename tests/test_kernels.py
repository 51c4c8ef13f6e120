"""fast_prefill: same logits as HF's modules (float rounding only), everything put back on exit."""
import sys

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.decode import greedy_generate
from sdtp_lib import kernels as K
from sdtp_lib.kernels import FusedMLP, FusedRMSNorm, fast_prefill, rope, silu_mul

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


@pytest.mark.parametrize("T", [2, 7, 64])
def test_split_causal_attention_is_causal_attention(T):
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(2, 3, T, 16, generator=g) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
    out = K.split_causal_attention(q, k, v, 16 ** -0.5)  # (B, T, H, D)
    torch.testing.assert_close(out.transpose(1, 2), ref, rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("B", [1, 2])
def test_split_attention_runs_where_asked_same_logits_and_restored(tiny_sdpa, monkeypatch, B):
    model, _ = tiny_sdpa
    ids = prompt_ids(70, B=B, seed=6)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    with S.pruning(model, "norm", conf) as st:
        ref = model(ids).logits
    calls = []
    real = K.split_causal_attention
    monkeypatch.setattr(K, "split_causal_attention", lambda q, *a: calls.append(q.shape[2]) or real(q, *a))
    with fast_prefill(model, split_attention_from=40), S.pruning(model, "norm", conf):
        assert model.config._attn_implementation == K.SPLIT_ATTN
        out = model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert calls == [n for n in st.kept_per_layer if n >= 40] and 0 < len(calls) < len(st.kept_per_layer)
    assert model.config._attn_implementation == "sdpa"
    calls.clear()
    res = greedy_generate(model, ids[:1], 6, scorer="norm", config=conf, cuda_graph=False,
                          fast_kernels=dict(split_attention_from=40))
    assert res.tokens.shape == (1, 6) and calls  # the prefill split, the decode steps used the decode attention
    plain = greedy_generate(model, ids[:1], 6, scorer="norm", config=conf, cuda_graph=False)
    assert torch.equal(res.tokens, plain.tokens)


def test_split_attention_needs_sdpa_and_two_tokens(tiny_sdpa):
    model, _ = S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu", attn_implementation="eager")
    with pytest.raises(ValueError, match="split attention needs"):
        with fast_prefill(model, split_attention_from=4096):
            pass
    with pytest.raises(ValueError, match="split_attention_from must be >= 2"):
        with fast_prefill(tiny_sdpa[0], split_attention_from=1):
            pass
