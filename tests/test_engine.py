"""Invariants of the pruning engine, on tiny Qwen2 and Llama models (sdpa and eager)."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.models import cache_kwarg, output_cache
from sdtp_lib.engine import PruningError

from .conftest import cfg, prompt_ids


@torch.no_grad()
def test_keep_ratio_one_is_dense(tiny):
    model, _ = tiny
    ids = prompt_ids(80, B=2)
    ref = model(ids).logits
    ref_gen = model.generate(ids, max_new_tokens=6, do_sample=False)
    with S.pruning(model, "random", cfg(model, 1.0)) as st:
        out = model(ids).logits
        gen = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert st.kept_per_layer == [80] * model.config.num_hidden_layers
    assert torch.equal(out, ref)
    assert torch.equal(gen, ref_gen)


@torch.no_grad()
def test_model_restored_after_block(tiny):
    model, _ = tiny
    ids = prompt_ids(64)
    before = model(ids).logits
    hooks = lambda m: sum(len(x._forward_pre_hooks) + len(x._forward_hooks) for x in m.modules())
    n_hooks = hooks(model)
    with S.pruning(model, "norm", cfg(model, 0.5)):
        assert hooks(model) > n_hooks
        pruned = model(ids).logits
    assert pruned.shape[1] < 64
    assert hooks(model) == n_hooks
    assert torch.equal(model(ids).logits, before)  # bitwise, CPU float32


@torch.no_grad()
def test_restored_after_exception(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(40)
    before = model(ids).logits
    with pytest.raises(RuntimeError, match="boom"):
        with S.pruning(model, "norm", cfg(model, 0.5)):
            model(ids)
            raise RuntimeError("boom")
    assert torch.equal(model(ids).logits, before)


class Recorder:
    """Wraps a scorer and records what each stage saw (test-only)."""
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, hidden, stage, positions):
        s = self.inner(hidden, stage, positions)
        self.calls.append((stage, positions.clone(), s.clone()))
        return s


@torch.no_grad()
@pytest.mark.parametrize("B", [1, 3])
def test_kept_tokens_are_topk_plus_forced(tiny_sdpa, B):
    model, _ = tiny_sdpa
    T, conf = 150, cfg(tiny_sdpa[0], 0.6)
    rec = Recorder(S.RandomScorer(seed=3))
    protect = torch.zeros(T, dtype=torch.bool)
    protect[50:53] = True
    with S.pruning(model, rec, conf, protect=protect) as st:
        model(prompt_ids(T, B=B))
    n_local = conf.num_local(T)
    always = set(range(conf.num_sink)) | set(range(T - n_local, T)) | {50, 51, 52}
    assert len(rec.calls) == conf.num_stages
    for (stage, pos_before, scores), kept in zip(rec.calls, st.stage_positions):
        k = max(conf.keep_count(stage + 1, T), len(always))
        for b in range(B):
            cand = pos_before[b].tolist()
            forced = [p for p in cand if p in always]
            others = sorted((p for p in cand if p not in always), key=lambda p: -scores[b, cand.index(p)].item())
            expected = sorted(forced + others[: k - len(forced)])
            assert kept[b].tolist() == expected  # in original order
    assert st.kept_per_stage == [max(conf.keep_count(s + 1, T), len(always)) for s in range(conf.num_stages)]


@torch.no_grad()
def test_kv_cache_holds_kept_tokens_and_decode_continues_at_T(tiny):
    model, _ = tiny
    T = 120
    ids = prompt_ids(T)
    seen = []
    spy = lambda m, a, kw: seen.append(kw["position_ids"].clone())
    with S.pruning(model, "norm", cfg(model, 0.7)) as st:
        h = model.get_decoder().layers[-1].register_forward_pre_hook(spy, with_kwargs=True)  # runs after ours
        try:
            out = model(ids, use_cache=True)
            cache = output_cache(out)
            lens = [layer.keys.shape[-2] for layer in cache.layers]
            assert lens == st.kept_per_layer
            assert lens[0] == T and lens[-1] < T
            nxt = out.logits[:, -1:].argmax(-1)
            out2 = model(nxt, **{cache_kwarg(model): cache}, use_cache=True)
            assert [layer.keys.shape[-2] for layer in output_cache(out2).layers] == [n + 1 for n in lens]
        finally:
            h.remove()
    assert seen[-1].flatten().tolist() == [T]  # the decode token sits at position T
    assert seen[0].shape[1] == st.kept_per_layer[-1]  # prefill: the last layer saw the kept tokens only


@torch.no_grad()
def test_pruned_decode_matches_manual_reference(tiny):
    """Decode logits after a pruned prefill equal a by-hand run with the same per-layer kept tokens."""
    model, _ = tiny
    T = 90
    ids = prompt_ids(T, seed=5)
    with S.pruning(model, "norm", cfg(model, 0.6)) as st:
        out = model(ids, use_cache=True)
        nxt = out.logits[:, -1:].argmax(-1)
        dec = model(nxt, **{cache_kwarg(model): output_cache(out)}, use_cache=True).logits[:, -1]
    # reference: the full sequence prompt + next token, where layer l only attends to its kept prompt tokens
    full = torch.cat([ids, nxt], 1)
    ref = manual_forward(model, full, st, extra=1)[:, -1]
    torch.testing.assert_close(dec, ref, rtol=1e-4, atol=1e-4)


def manual_forward(model, ids, st, extra=0):
    """By-hand SDTP forward: runs HF's own layers on explicitly gathered tokens with an explicit causal mask.

    Layer l computes on the positions it kept (from st.stage_positions); `extra` trailing tokens (decode
    tokens) are always present. Returns logits for the tokens the last layer computed on.
    """
    dec = model.get_decoder()
    T = ids.shape[1] - extra
    B = ids.shape[0]
    h = dec.embed_tokens(ids)
    pos = torch.arange(ids.shape[1]).expand(B, -1)
    cos, sin = dec.rotary_emb(h, pos)
    cur = pos  # positions currently present
    conf_layers = list(st.kept_per_layer)
    stage_iter = iter(st.stage_positions)
    prev = T
    for l, layer in enumerate(dec.layers):
        if conf_layers[l] != prev:  # a stage fired at this layer
            kept = next(stage_iter)
            keep_pos = torch.cat([kept, torch.arange(T, T + extra).expand(B, -1)], 1)
            idx = (cur.unsqueeze(-1) == keep_pos.unsqueeze(1)).float().argmax(1)  # index of each kept pos in cur
            h = torch.gather(h, 1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
            cur = keep_pos
            prev = conf_layers[l]
        c = torch.gather(cos.expand(B, -1, -1), 1, cur.unsqueeze(-1).expand(-1, -1, cos.shape[-1]))
        s_ = torch.gather(sin.expand(B, -1, -1), 1, cur.unsqueeze(-1).expand(-1, -1, sin.shape[-1]))
        allowed = cur.unsqueeze(-1) >= cur.unsqueeze(1)  # (B, n, n): key position <= query position
        mask = torch.zeros(allowed.shape, dtype=h.dtype).masked_fill(~allowed, torch.finfo(h.dtype).min)
        h = layer(h, attention_mask=mask.unsqueeze(1), position_embeddings=(c, s_), position_ids=cur)
        h = h[0] if isinstance(h, tuple) else h
    return model.lm_head(dec.norm(h))


@torch.no_grad()
def test_pruned_prefill_matches_manual_reference(tiny):
    model, _ = tiny
    ids = prompt_ids(200, B=2, seed=7)
    with S.pruning(model, "norm", cfg(model, 0.5)) as st:
        out = model(ids).logits
    assert out.shape[1] == st.kept_per_layer[-1] == st.kept_positions.shape[1]
    ref = manual_forward(model, ids, st)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    dense = model(ids).logits[:, -1]
    assert not torch.allclose(out[:, -1], dense, atol=1e-4)  # pruning did change the answer's logits


@torch.no_grad()
def test_labels_loss_over_surviving_tokens(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(100, seed=2)
    labels = ids.clone()
    labels[:, :60] = -100
    with S.pruning(model, "norm", cfg(model, 0.6)) as st:
        out = model(ids, labels=labels)
    pos = st.kept_positions[0]
    tgt = torch.cat([labels[0, 1:], torch.tensor([-100])])[pos]
    ref = torch.nn.functional.cross_entropy(out.logits[0].float(), tgt, ignore_index=-100)
    torch.testing.assert_close(out.loss, ref)
    dense_loss = model(ids, labels=labels).loss
    with S.pruning(model, "norm", cfg(model, 1.0)):
        torch.testing.assert_close(model(ids, labels=labels).loss, dense_loss)


@torch.no_grad()
def test_protect_per_call(tiny_sdpa):
    model, _ = tiny_sdpa
    T = 120
    protect = torch.zeros(1, T, dtype=torch.bool)
    protect[0, 20:40] = True
    with S.pruning(model, "random", cfg(model, 0.5)) as st:
        model(prompt_ids(T), sdtp_protect=protect)
        assert set(range(20, 40)) <= set(st.kept_positions[0].tolist())
        model(prompt_ids(T))  # the next call without protect may drop them
        assert not set(range(20, 40)) <= set(st.kept_positions[0].tolist())


@torch.no_grad()
def test_flops_and_stats(tiny_sdpa):
    model, _ = tiny_sdpa
    with S.pruning(model, "norm", cfg(model, 0.5)) as st:
        model(prompt_ids(100))
    assert st.flops_pruned < st.flops_dense
    assert st.compression == pytest.approx(100 / (sum(st.kept_per_layer) / len(st.kept_per_layer)))
    assert "kept per stage" in st.summary()
    assert f"GFLOP ({-100 * st.flops_reduction:.1f}%)" in st.summary()  # a saving reads "-35.3%"
    more = S.PruningStats(prompt_len=5, kept_per_layer=[5] * 4, flops_dense=100, flops_pruned=101)
    assert more.summary().endswith("GFLOP (+1.0%)")  # nothing pruned: the scorer's cost shows as "+"


def test_flops_counter_by_hand(tiny_sdpa):
    model, _ = tiny_sdpa
    c = model.config  # hidden 64, intermediate 128, 4 heads of 16, 2 kv heads, vocab V
    d, i, h, kv, hd = c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, 16
    per_tok = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * i  # q, k, v, o, gate/up/down MACs
    n = [10, 10, 6, 3]
    expect = sum(2 * t * per_tok + 4 * h * hd * t * (t + 1) // 2 for t in n) + 2 * d * c.vocab_size
    assert S.prefill_flops(model, n) == expect


# ------------------------------------------------------------------ refusals
def test_padded_batch_refused(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(30, B=2)
    am = torch.ones_like(ids)
    am[0, :5] = 0
    with S.pruning(model, "norm", cfg(model, 0.5)), pytest.raises(PruningError, match="padded"):
        model(ids, attention_mask=am)


def test_static_cache_and_chunked_prefill_refused(tiny_sdpa):
    model, _ = tiny_sdpa
    from transformers import StaticCache
    ids = prompt_ids(30)
    with S.pruning(model, "norm", cfg(model, 0.5)):
        with pytest.raises(PruningError, match="DynamicCache"):
            model(ids, **{cache_kwarg(model): StaticCache(config=model.config, max_cache_len=64)}, use_cache=True)
        out = model(ids[:, :20], use_cache=True)
        with pytest.raises(PruningError, match="chunked prefill"):
            model(ids[:, 20:], **{cache_kwarg(model): output_cache(out)}, use_cache=True)


def test_sliding_window_refused():
    from transformers import AutoModelForCausalLM
    c = S.models.tiny_config("qwen2")
    c.use_sliding_window, c.sliding_window = True, 16
    model = AutoModelForCausalLM.from_config(c)
    with pytest.raises(PruningError, match="sliding-window"):
        with S.pruning(model, "norm"):
            pass


def test_bad_configs(tiny_sdpa):
    model, _ = tiny_sdpa
    for r in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="keep_ratio"):
            S.SDTPConfig(stage_layers=(1, 2), keep_ratio=r)
    with pytest.raises(ValueError, match="beyond the model's depth"):
        with S.pruning(model, "norm", S.SDTPConfig(stage_layers=(1, 9))):
            pass
    with pytest.raises(ValueError, match="unknown pruning policy"):
        with S.pruning(model, "bogus"):
            pass


def test_nested_block_refused(tiny_sdpa):
    model, _ = tiny_sdpa
    with S.pruning(model, "norm"):
        with pytest.raises(PruningError, match="already inside"):
            with S.pruning(model, "random"):
                pass
