"""H2O in the decode loop (sdtp_lib.speed.h2o) against a direct reference: HF eager attention over the full
cache with a per-layer, per-KV-head mask of the tokens a naive H2O (Python sets) would hold."""
import contextlib
import math

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.models import cache_kwarg, output_cache
from sdtp_lib.speed import h2o
from sdtp_lib.speed.decode import greedy_generate

from .conftest import prompt_ids


def _colsums(attn: torch.Tensor, kvh: int) -> torch.Tensor:
    """(B, H, Q, K) eager probabilities -> (B, KVH, K): summed over queries and each KV head's query heads."""
    B, H, Q, K = attn.shape
    return attn.float().sum(2).view(B, kvh, H // kvh, K).sum(2)


def _held(res, layer: int, b: int = 0) -> list[set]:
    """Per KV head: the original positions layer `layer`'s H2O cache holds at the end of `res`."""
    pos = res.h2o.positions[layer][b]  # (KVH, S)
    return [set(p[p >= 0].tolist()) for p in pos]


@torch.no_grad()
@pytest.mark.parametrize("pruned", [False, True])
def test_budget_one_gives_exactly_the_unevicted_tokens(tiny, pruned):
    model, _ = tiny
    ids = prompt_ids(70, B=2, seed=1)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.6) if pruned else None
    scorer = "norm" if pruned else None
    ref = greedy_generate(model, ids, 12, scorer, conf, cuda_graph=False, return_logits=True)
    out = greedy_generate(model, ids, 12, scorer, conf, cuda_graph=False, return_logits=True, kv_budget=1.0)
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
    assert out.kv_tokens == ref.kv_tokens == [k + 11 for k in ref.kept_per_layer]
    assert out.kv_bytes == ref.kv_bytes and out.kv_budget == 1.0 and ref.h2o is None
    assert model.config._attn_implementation in ("sdpa", "eager")  # the prefill's score backend is gone


@torch.no_grad()
@pytest.mark.parametrize("pruned", [False, True])
def test_cache_never_exceeds_the_budget(tiny_sdpa, pruned):
    """After every step, in every layer and KV head: at most ceil(b * (T + t)) tokens, the same count per head,
    distinct positions the layer cached or was fed, and the r newest of them present."""
    model, _ = tiny_sdpa
    T, b, N = 50, 0.3, 14
    ids = prompt_ids(T, seed=2)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.5) if pruned else None
    scorer = "norm" if pruned else None
    for n in range(1, N + 1):  # the caches after n - 1 decode steps
        res = greedy_generate(model, ids, n, scorer, conf, cuda_graph=False, kv_budget=b)
        seq_len = T + n - 1
        k = math.ceil(b * seq_len)
        for l in range(model.config.num_hidden_layers):
            lp = res.stats.layer_positions[l] if pruned else None
            allowed = set(range(T) if lp is None else lp[0].tolist()) | set(range(T, seq_len))
            held = _held(res, l)
            assert all(len(h) == res.kv_tokens[l] <= k for h in held), (n, l)
            assert all(h <= allowed for h in held)
            newest = sorted(allowed)[len(allowed) - h2o.recent_tokens(k):] if len(allowed) > k else sorted(allowed)
            assert all(set(newest) <= h for h in held)
    if pruned:  # a pruned layer under its budget keeps everything until it reaches it
        assert res.kv_tokens[-1] == min(res.kept_per_layer[-1] + N - 1, math.ceil(b * (T + N - 1)))


@torch.no_grad()
def _reference_h2o(model, ids: torch.Tensor, n_new: int, b: float):
    """Naive H2O on the eager model: full DynamicCache, each layer's attention masked per KV head to the positions
    it holds; scores accumulated from the returned eager probabilities. Returns (tokens, [held sets per step],
    final scores): held[s][l][h] after step s (0: after the prefill's cut), scores[l] (KVH, T + n_new) float64."""
    T = ids.shape[1]
    cfg = model.config
    L, H, kvh = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    acc = torch.zeros(L, kvh, T + n_new, dtype=torch.float64)
    out = model(ids, use_cache=True, output_attentions=True)
    cache = output_cache(out)
    acc[:, :, :T] = torch.stack([_colsums(a, kvh)[0] for a in out.attentions]).double()
    k, held = math.ceil(b * T), []
    r = k // 2
    cur = []
    for l in range(L):
        per = []
        for h in range(kvh):
            if T <= k:
                per.append(set(range(T)))
                continue
            heavy = acc[l, h, :T - r].topk(k - r).indices.tolist()
            per.append(set(heavy) | set(range(T - r, T)))
        cur.append(per)
    held.append([[set(x) for x in per] for per in cur])
    tokens = [int(out.logits[0, -1].argmax())]
    masks = [None] * L
    hooks = [layer.register_forward_pre_hook(
        lambda mod, args, kw, l=l: (args, {**kw, "attention_mask": masks[l]}), with_kwargs=True)
        for l, layer in enumerate(model.get_decoder().layers)]
    try:
        for s in range(1, n_new):
            n, p = T + s, T + s - 1
            k = math.ceil(b * n)
            r = k // 2
            for l in range(L):
                for h in range(kvh):
                    hs = cur[l][h]
                    if len(hs) >= k:  # evict: lowest score among all but the r - 1 newest held
                        recent = set(sorted(hs)[len(hs) - (r - 1):]) if r > 1 else set()
                        victim = min(sorted(hs - recent), key=lambda q: float(acc[l, h, q]))
                        hs.discard(victim)
                        acc[l, h, victim] = 0.0
                    hs.add(p)
                m = torch.full((1, H, 1, n), torch.finfo(torch.float32).min)
                for h in range(kvh):
                    idx = torch.tensor(sorted(cur[l][h]))
                    m[0, h * (H // kvh):(h + 1) * (H // kvh), 0, idx] = 0.0
                masks[l] = m
            o = model(torch.tensor([[tokens[-1]]]), position_ids=torch.tensor([[p]]), **{cache_kwarg(model): cache},
                      use_cache=True, attention_mask=torch.zeros(1, 1, 1, n), output_attentions=True)
            for l, a in enumerate(o.attentions):
                acc[l, :, :n] += _colsums(a, kvh)[0].double()
            held.append([[set(x) for x in per] for per in cur])
            tokens.append(int(o.logits[0, -1].argmax()))
    finally:
        for hk in hooks:
            hk.remove()
    return tokens, held, acc


@torch.no_grad()
@pytest.mark.parametrize("family", ["tiny-qwen2", "tiny-llama"])
def test_eviction_matches_a_direct_reference(family):
    """The evicted slot is the lowest-scoring non-recent one: after every step each layer and KV head holds the
    reference's positions, with the reference's accumulated attention (eager probabilities summed)."""
    torch.manual_seed(0)
    model, _ = S.load_model(family, dtype=torch.float32, device="cpu", attn_implementation="eager")
    T, b, N = 40, 0.4, 10
    ids = prompt_ids(T, seed=5)
    tokens, held, acc = _reference_h2o(model, ids, N, b)
    L = model.config.num_hidden_layers
    for n in range(1, N + 1):
        res = greedy_generate(model, ids, n, cuda_graph=False, kv_budget=b)
        assert res.tokens[0].tolist() == tokens[:n]
        for l in range(L):
            assert _held(res, l) == held[n - 1][l], (n, l)
    for l in range(L):  # the final scores, slot by slot
        pos, sc = res.h2o.positions[l][0], res.h2o.scores[l][0]  # (KVH, S)
        for h in range(pos.shape[0]):
            filled = pos[h] >= 0
            torch.testing.assert_close(sc[h][filled].double(), acc[l, h, pos[h][filled]], rtol=1e-5, atol=1e-6)
    evicted = [p for l in range(L) for h in range(len(held[0][l])) for p in held[0][l][h] - held[-1][l][h]]
    assert evicted  # the budget did evict prompt tokens


@torch.no_grad()
@pytest.mark.parametrize("pruned", [False, True])
def test_prefill_column_sums_equal_eager_probabilities(tiny, pruned, monkeypatch):
    """collect_prefill_scores (sdpa or eager backend; dense or inside pruning(), where the causal mask is over the
    kept sequence) against the column sums of HF eager attention probabilities, per KV head."""
    model, _ = tiny
    ids = prompt_ids(64, B=2, seed=6)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    block = (lambda: S.pruning(model, "norm", conf)) if pruned else contextlib.nullcontext
    with block():
        with h2o.collect_prefill_scores(model) as got:
            model(ids)
    monkeypatch.setattr(model.config, "_attn_implementation", "eager")
    with block() as st:
        ref = model(ids, output_attentions=True).attentions
    kept = st.kept_per_layer if pruned else [64] * len(ref)
    kvh = model.config.num_key_value_heads
    assert sorted(got) == list(range(model.config.num_hidden_layers))
    for l, a in enumerate(ref):
        assert got[l].shape == (2, kvh, kept[l])
        torch.testing.assert_close(got[l], _colsums(a, kvh), rtol=1e-4, atol=1e-4)
    assert pruned == (kept[-1] < 64)


def test_column_sums_in_chunks_equal_one_pass():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 30, 8, generator=g), torch.randn(1, 2, 30, 8, generator=g)
    whole = h2o.column_sums(q, k, None, 0.3, chunk_elements=1 << 30)
    torch.testing.assert_close(h2o.column_sums(q, k, None, 0.3, chunk_elements=4 * 30 * 7), whole)
    assert torch.allclose(whole.sum(-1), torch.full((1, 2), 2 * 30.0))  # every query row sums to 1
    causal = torch.ones(30, 30, dtype=torch.bool).tril()[None, None]
    torch.testing.assert_close(h2o.column_sums(q, k, causal, 0.3), whole)


@torch.no_grad()
def test_flash_column_sums_equal_the_chunked_ones(monkeypatch):
    """column_sums_flash's swap, reversal and -lse dimensions, with the flash kernel's log-sum-exp computed here
    (the kernel itself needs CUDA: scripts/h2o_prefill_bench.py compares the two on a GPU)."""
    def causal_lse(q, k, scale):  # what the kernel returns: (B, H, L) float32 row log-sum-exp, causal
        s = (q.float() @ k.float().transpose(-1, -2)) * scale
        L = s.shape[-1]
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
        return s.logsumexp(-1)
    monkeypatch.setattr(h2o, "_flash_lse", causal_lse)
    g = torch.Generator().manual_seed(0)
    q = (3 * torch.randn(2, 6, 40, 16, generator=g)).bfloat16()  # 3 query heads per KV head; large logits
    k = (3 * torch.randn(2, 2, 40, 16, generator=g)).bfloat16()
    ref = h2o.column_sums(q, k, None, 0.25)
    fast = h2o.column_sums_flash(q, k, 0.25)
    assert fast.shape == ref.shape == (2, 2, 40) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(fast.sum(-1), torch.full((2, 2), 3 * 40.0), rtol=2e-3, atol=0)  # each row sums to 1


def test_snapshot_restore_undoes_a_step(tiny_sdpa):
    """The CUDA-graph warm-up step is undone: snapshot, one evicting update + scores, restore."""
    model, _ = tiny_sdpa
    T = 41
    ids = prompt_ids(T, seed=3)
    with h2o.collect_prefill_scores(model) as sc:
        dyn = output_cache(model(ids, use_cache=True))
    step = torch.ones((), dtype=torch.long)
    cache = h2o.h2o_cache(dyn, 0.2, T, 5, sc, [None] * len(dyn.layers), step)
    layer = cache.layers[0]
    assert int(layer.free[1]) == -1  # ceil(0.2 * 42) == ceil(0.2 * 41): this step evicts
    before = [t.clone() for t in (layer.keys, layer.values, layer.positions, layer.scores, layer.cumulative_length)]
    snap = layer.snapshot()
    kv = torch.randn(1, layer.keys.shape[1], 1, layer.keys.shape[-1])
    layer.update(kv, kv)
    layer.scores.add_(1.0)
    assert not torch.equal(layer.positions, before[2])
    layer.restore(snap)
    after = (layer.keys, layer.values, layer.positions, layer.scores, layer.cumulative_length)
    assert all(torch.equal(a, b) for a, b in zip(after, before))


@torch.no_grad()
def test_stop_ids_and_suppress_first(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(30, seed=8)
    full = greedy_generate(model, ids, 10, cuda_graph=False, kv_budget=0.5)
    stop = int(full.tokens[0, 3])
    k = full.tokens[0].tolist().index(stop)
    early = greedy_generate(model, ids, 10, cuda_graph=False, kv_budget=0.5, stop_ids=[stop])
    assert early.new_tokens == k + 1 and early.tokens[0, :k + 1].tolist() == full.tokens[0, :k + 1].tolist()
    assert sum(early.kv_tokens) < sum(full.kv_tokens) or k == 9
    first = int(full.tokens[0, 0])
    alt = greedy_generate(model, ids, 2, cuda_graph=False, suppress_first=[first])
    assert int(alt.tokens[0, 0]) != first


@pytest.mark.parametrize("bad", [0, 0.0, -0.2, 1.5, float("nan"), "0.4", None, True])
def test_bad_budget_is_refused(tiny_sdpa, bad):
    model, _ = tiny_sdpa
    if bad is None:  # None means no eviction: not an error
        greedy_generate(model, prompt_ids(10), 2, cuda_graph=False, kv_budget=None)
        return
    with pytest.raises(ValueError, match="kv_budget"):
        greedy_generate(model, prompt_ids(10), 2, cuda_graph=False, kv_budget=bad)


def test_h2o_with_flash_attention_4_decode_is_refused(tiny_sdpa, monkeypatch):
    from sdtp_lib import models
    model, _ = tiny_sdpa
    monkeypatch.setattr(models, "check_attn", lambda name, device: None)
    with pytest.raises(ValueError, match="only the 'matmul' decode attention"):
        greedy_generate(model, prompt_ids(10), 2, cuda_graph=False, kv_budget=0.4, decode_attn="flash_attention_4")
