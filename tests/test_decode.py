"""The fast greedy loop (static per-layer caches; CUDA graphs on GPU) against HF generate."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.speed.decode import greedy_generate

from .conftest import prompt_ids


@torch.no_grad()
@pytest.mark.parametrize("r", [None, 0.6])
def test_fast_loop_matches_hf_generate(tiny, r):
    model, _ = tiny
    ids = prompt_ids(90, B=2, seed=4)
    N = 12
    conf = S.SDTPConfig.for_model(model, keep_ratio=r) if r else None
    scorer = "norm" if r else None
    res = greedy_generate(model, ids, N, scorer=scorer, config=conf, cuda_graph=False)
    if r:
        with S.pruning(model, scorer, conf) as st:
            ref = model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        assert res.kept_per_layer == st.kept_per_layer == res.stats.kept_per_layer
        assert res.stats.compression == st.compression and res.stats.num_prefills == 1
    else:
        ref = model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        assert res.kept_per_layer == [90] * model.config.num_hidden_layers and res.stats is None
    assert torch.equal(res.tokens, ref[:, 90:])
    assert set(res.timings) >= {"prefill_s", "decode_s", "e2e_s", "decode_ms_per_token"}
    assert not any(len(l._forward_pre_hooks) for l in model.get_decoder().layers)  # hooks removed


def test_fast_loop_bad_input(tiny_sdpa):
    model, _ = tiny_sdpa
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, prompt_ids(10), 0)


@pytest.mark.parametrize("S", [30, 64])  # 64 slots with SPLIT_* lowered: the split-K path
def test_decode_attention_equals_eager_gqa(S, monkeypatch):
    from transformers.models.llama.modeling_llama import eager_attention_forward
    from sdtp_lib.speed import decode
    monkeypatch.setattr(decode, "SPLIT_SLOTS", 16)
    monkeypatch.setattr(decode, "SPLIT_MIN", 64)
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 8, 1, 16, generator=g), torch.randn(2, 2, S, 16, generator=g), torch.randn(2, 2, S, 16, generator=g)
    mask = torch.zeros(1, 1, 1, S)
    mask[..., 25:] = torch.finfo(torch.float32).min  # unfilled static slots
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = 4, False
    ref, _ = eager_attention_forward(module, q, k, v, mask, scaling=0.25)
    out, _ = decode.decode_attention(module, q, k, v, mask, scaling=0.25)
    torch.testing.assert_close(out, ref)


@torch.no_grad()
def test_split_k_loop_matches_hf_generate(tiny_sdpa, monkeypatch):
    """Caches long enough for the split-K decode path (thresholds lowered) and rounded-up static slots."""
    from sdtp_lib.speed import decode
    monkeypatch.setattr(decode, "SPLIT_SLOTS", 32)
    monkeypatch.setattr(decode, "SPLIT_MIN", 64)
    model, _ = tiny_sdpa
    ids = prompt_ids(90, seed=7)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    res = greedy_generate(model, ids, 10, scorer="norm", config=conf, cuda_graph=False)
    with S.pruning(model, "norm", conf):
        ref = model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    assert torch.equal(res.tokens, ref[:, 90:])
    assert decode._slots(90 + 10) == 128 and decode._slots(50) == 64


@torch.no_grad()
def test_chunked_mlp_same_outputs_and_restored(tiny):
    from sdtp_lib.speed.memory import ChunkedMLP, chunked_mlp
    model, _ = tiny
    ids = prompt_ids(100, B=2)
    ref = model(ids).logits
    mlps = [l.mlp for l in model.get_decoder().layers]
    with chunked_mlp(model, chunk_tokens=16):
        assert all(isinstance(l.mlp, ChunkedMLP) for l in model.get_decoder().layers)
        out = model(ids).logits
        with S.pruning(model, "norm", S.SDTPConfig.for_model(model, keep_ratio=0.6)):
            pruned = model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert [l.mlp for l in model.get_decoder().layers] == mlps
    with S.pruning(model, "norm", S.SDTPConfig.for_model(model, keep_ratio=0.6)):
        torch.testing.assert_close(pruned, model(ids).logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_tokens"):
        with chunked_mlp(model, 0):
            pass


@torch.no_grad()
def test_teacher_forced_logits_equal_full_forward(tiny_sdpa):
    """Every decode step's logits equal a full dense forward over prompt + forced tokens (static cache,
    per-layer masks and decode attention change nothing)."""
    model, _ = tiny_sdpa
    ids = prompt_ids(50, B=2, seed=9)
    forced = prompt_ids(6, B=2, seed=10)
    res = greedy_generate(model, ids, 6, forced=forced, return_logits=True, cuda_graph=False)
    full = model(torch.cat([ids, forced[:, :-1]], 1)).logits[:, 49:]  # positions T-1 .. T+4
    torch.testing.assert_close(res.logits, full.float(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="forced must have shape"):
        greedy_generate(model, ids, 6, forced=forced[:, :3])


@pytest.mark.parametrize("split", [False, True])
def test_decode_attention_bf16_as_accurate_as_hf_eager(split, monkeypatch):
    """In bf16 the decode attention (split-K or not) is as close to a float32 reference as HF's eager one."""
    from transformers.models.llama.modeling_llama import eager_attention_forward
    from sdtp_lib.speed import decode
    monkeypatch.setattr(decode, "SPLIT_SLOTS", 64)
    monkeypatch.setattr(decode, "SPLIT_MIN", 256 if split else 1 << 40)
    g = torch.Generator().manual_seed(1)
    S, scale = 512, 128 ** -0.5
    q, k, v = torch.randn(1, 8, 1, 128, generator=g), 2 * torch.randn(1, 2, S, 128, generator=g), torch.randn(1, 2, S, 128, generator=g)
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = 4, False
    mask = torch.zeros(1, 1, 1, S)
    mask[..., 500:] = torch.finfo(torch.float32).min
    ref, _ = eager_attention_forward(module, q, k, v, mask, scaling=scale)
    bmask = torch.zeros(1, 1, 1, S, dtype=torch.bfloat16)
    bmask[..., 500:] = torch.finfo(torch.bfloat16).min
    b = [t.bfloat16() for t in (q, k, v)]
    hf, _ = eager_attention_forward(module, *b, bmask, scaling=scale)
    out, _ = decode.decode_attention(module, *b, bmask, scaling=scale)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() <= 1.5 * (hf.float() - ref).abs().max() + 1e-4


def _reference_varlen(q, k, v, seqused_k=None, softmax_scale=None, causal=False, pack_gqa=None, return_lse=False):
    """flash_attn.cute.flash_attn_varlen_func's contract for one query token over (N, S, KVH, D) keys, in torch:
    sequence i attends to its first seqused_k[i] slots only. Returns (out (N, 1, H, D), lse (N, H, 1))."""
    assert not causal and q.shape[1] == 1 and seqused_k.dtype == torch.int32 and seqused_k.shape == (q.shape[0],)
    N, _, H, D = q.shape
    outs, lses = [], []
    for i in range(N):
        n = int(seqused_k[i])
        kk = k[i, :n].repeat_interleave(H // k.shape[2], 1).float()  # (n, H, D)
        vv = v[i, :n].repeat_interleave(H // v.shape[2], 1).float()
        s = torch.einsum("hd,nhd->hn", q[i, 0].float(), kk) * softmax_scale  # (H, n)
        lses.append(torch.logsumexp(s, -1) if n else torch.full((H,), -torch.inf))
        outs.append(torch.einsum("hn,nhd->hd", s.softmax(-1), vv) if n else torch.zeros(H, D))
    return torch.stack(outs)[:, None].to(q.dtype), torch.stack(lses)[..., None]


def _reference_combine(out_partial, lse_partial, out_dtype=None, return_lse=True):
    """flash_attn_combine's contract: (splits, B, Q, H, D) outputs merged by their (splits, B, Q, H) lse. The partials
    must be float32: bf16 ones pass its checks but read out of bounds on the H200 (flash-attn-4 4.0.0b36, an illegal
    memory access in the combine kernel; its own split-KV path writes float32 partials)."""
    assert out_partial.dtype == torch.float32 and lse_partial.dtype == torch.float32
    assert lse_partial.is_contiguous()
    w = torch.softmax(lse_partial, 0)[..., None]
    return (w * out_partial.float()).sum(0).to(out_dtype), None


@torch.no_grad()
@pytest.mark.parametrize("r", [None, 0.6])
def test_fa4_decode_path_passes_each_chunks_filled_length(tiny_sdpa, monkeypatch, r):
    """The flash-attn 4 decode path (CPU stand-ins for flash_attn_varlen_func and flash_attn_combine with their
    contracts) cuts each layer's cache into chunks, tells each chunk its filled slots (this step's included), and
    decodes the same tokens as the matmul path, dense and pruned (each layer's own cache length)."""
    import sys
    import types
    from sdtp_lib import models
    from sdtp_lib.speed import decode
    monkeypatch.setattr(decode, "SPLIT_SLOTS", 32)  # caches of >= 64 slots are cut into chunks of 32
    monkeypatch.setattr(decode, "SPLIT_MIN", 64)
    seen = []

    def fake(q, k, v, seqused_k=None, **kw):
        assert q.is_contiguous()  # one query row per chunk, materialised (an expanded view has batch stride 0)
        seen.append((k.shape[1], seqused_k.tolist()))
        return _reference_varlen(q, k, v, seqused_k=seqused_k, **kw)
    interface = types.ModuleType("flash_attn.cute.interface")  # flash_attn.cute re-exports no combine
    interface.flash_attn_varlen_func, interface.flash_attn_combine = fake, _reference_combine
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", interface)
    monkeypatch.setattr(models, "check_attn", lambda name, device: None)
    model, _ = tiny_sdpa
    ids = prompt_ids(70, B=2, seed=11)
    conf = S.SDTPConfig.for_model(model, keep_ratio=r) if r else None
    scorer = "norm" if r else None
    ref = greedy_generate(model, ids, 6, scorer=scorer, config=conf, cuda_graph=False, decode_attn="matmul")
    out = greedy_generate(model, ids, 6, scorer=scorer, config=conf, cuda_graph=False, decode_attn="flash_attention_4")
    assert out.decode_attn == "flash_attention_4" and ref.decode_attn == "matmul"
    assert torch.equal(out.tokens, ref.tokens)
    L, B = model.config.num_hidden_layers, 2
    assert len(seen) == 5 * L * B  # 5 decode steps after the prefill's token, one call per layer and sequence
    for i, (chunk, used) in enumerate(seen):
        step, layer = i // (L * B), i // B % L
        n = out.kept_per_layer[layer] + step + 1  # the layer's kept tokens + the steps so far, this one included
        slots = decode._slots(out.kept_per_layer[layer] + 6)
        assert chunk == decode.fa4_chunk(slots) and len(used) == slots // chunk
        assert sum(used) == n and used == [min(chunk, max(0, n - j * chunk)) for j in range(len(used))]
    assert any(len(used) > 1 for _, used in seen)  # caches of >= 64 slots are cut into chunks


def test_decode_attn_choice_and_errors(tiny_sdpa, monkeypatch):
    from sdtp_lib.speed import decode
    model, _ = tiny_sdpa
    assert decode.resolve_decode_attn(model, None) == "matmul"
    with pytest.raises(ValueError, match="decode_attn 'fa4': choose one of"):
        decode.resolve_decode_attn(model, "fa4")
    with pytest.raises((ImportError, ValueError), match="flash_attention_4"):  # check_attn: not installed / no GPU
        decode.resolve_decode_attn(model, "flash_attention_4")
    monkeypatch.setattr(model.config, "_attn_implementation", "flash_attention_4")
    from sdtp_lib import models
    monkeypatch.setattr(models, "check_attn", lambda name, device: None)
    assert decode.resolve_decode_attn(model, None) == "flash_attention_4"  # a model loaded with fa4 decodes with it
    assert decode.resolve_decode_attn(model, "matmul") == "matmul"
