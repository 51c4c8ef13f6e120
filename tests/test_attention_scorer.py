"""The question-aware window-attention scorer (issue 11): equal to the attention read off the full attention
matrix, plumbed through the physical engine (kept tokens are its top-k; keep ratio 1.0 is the unpatched model),
the masked simulation's row-wise form equal to the engine's on the kept tokens, usable by name in the evaluations;
the hybrid predictor that reads it."""
import copy

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.engine import forced_mask, select_tokens
from sdtp_lib.scorers import TIE_BREAK, WindowAttentionScorer, make_scorer, window_attention
from sdtp_lib.scorers.attention import SINK, hop_attention

from .conftest import FAMILIES, prompt_ids


@pytest.fixture(scope="module", params=FAMILIES)
def eager(request):
    torch.manual_seed(0)
    model, tok = S.load_model(request.param, dtype=torch.float32, device="cpu", attn_implementation="eager")
    with torch.no_grad():  # norms away from their all-ones initialisation: window_attention runs the norm itself
        for layer in model.get_decoder().layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
    return model, tok


def _dense_states(model, ids):
    """Hidden states entering every layer, the rotary embeddings and the attention matrices of a dense forward."""
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True)
        pos = torch.arange(ids.shape[1])[None]
        cos_sin = model.get_decoder().rotary_emb(out.hidden_states[0], pos)
    return out.hidden_states, cos_sin, out.attentions


@pytest.mark.parametrize("window", [1, 8, 200])  # 200 > T: every query
def test_window_attention_equals_the_full_attention_matrix(eager, window):
    model, _ = eager
    ids = prompt_ids(96, B=2, seed=3)
    hs, cos_sin, attns = _dense_states(model, ids)
    w = min(window, ids.shape[1])
    for l, layer in enumerate(model.get_decoder().layers):
        with torch.no_grad():
            got = window_attention(layer, hs[l], cos_sin, window)  # (B, T)
            top = window_attention(layer, hs[l], cos_sin, window, heads="max")
        per_head = attns[l][:, :, -w:, :].float().mean(dim=2)  # (B, H, T): window queries of the full matrix
        torch.testing.assert_close(got, per_head.mean(1), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(top, per_head.amax(1), rtol=1e-4, atol=1e-6)
        assert torch.allclose(got.sum(-1), torch.ones(2))  # each query's row sums to one


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_normed_proj_equals_the_norm_then_the_projection(eager, dtype):
    from sdtp_lib.ops import FusedRMSNorm
    from sdtp_lib.scorers import normed_proj
    model, _ = eager
    layer = model.get_decoder().layers[1]
    norm, k = layer.input_layernorm, layer.self_attn.k_proj
    x = (torch.randn(2, 24, model.config.hidden_size) * torch.linspace(0.1, 30, 24)[:, None]).to(dtype)
    norm_d, k_d = copy.deepcopy(norm).to(dtype), copy.deepcopy(k).to(dtype)
    with torch.no_grad():
        ref = k_d(norm_d(x)).float()
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(normed_proj(norm_d, k_d, x).float(), ref, **tol)
        torch.testing.assert_close(normed_proj(FusedRMSNorm(norm_d), k_d, x).float(), ref, **tol)
        other = torch.nn.LayerNorm(x.shape[-1]).to(dtype)  # not an RMSNorm: run as it is
        torch.testing.assert_close(normed_proj(other, k_d, x), k_d(other(x)))


def test_smoothing_is_a_max_over_neighbours(eager):
    model, _ = eager
    ids = prompt_ids(40, seed=1)
    hs, cos_sin, _ = _dense_states(model, ids)
    layer = model.get_decoder().layers[1]
    with torch.no_grad():
        raw = WindowAttentionScorer(window=4, kernel=1)(hs[1], 0, layer=layer, position_embeddings=cos_sin)
        smooth = WindowAttentionScorer(window=4, kernel=5)(hs[1], 0, layer=layer, position_embeddings=cos_sin)
    padded = torch.nn.functional.pad(raw, (2, 2), value=float("-inf"))
    torch.testing.assert_close(smooth, padded.unfold(-1, 5, 1).amax(-1) + TIE_BREAK * raw)


@pytest.mark.parametrize("hops", [0, 4])
def test_engine_keeps_the_top_k_of_the_window_attention(tiny, hops):
    model, _ = tiny
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    ids = prompt_ids(80, seed=5)
    scorer = WindowAttentionScorer(window=8, kernel=3, hops=hops)
    l0 = cfg.stage_layers[0]
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states  # dense: nothing is pruned before stage 0
        cos_sin = model.get_decoder().rotary_emb(hs[0], torch.arange(80)[None])
        ref = scorer(hs[l0], 0, layer=model.get_decoder().layers[l0], position_embeddings=cos_sin)
        with S.pruning(model, scorer, cfg) as st:
            model(ids)
    forced = forced_mask(cfg, torch.ones(1, 80, dtype=torch.long), None)
    expect = select_tokens(ref, forced, cfg.keep_count(1, 80))
    assert torch.equal(st.stage_positions[0], expect)
    assert st.kept_per_stage == [cfg.keep_count(s + 1, 80) for s in range(len(cfg.stage_layers))]


def test_keep_ratio_one_is_the_unpatched_model(tiny):
    model, _ = tiny
    ids = prompt_ids(64, seed=2)
    with torch.no_grad():
        dense = model(ids).logits
        with S.pruning(model, "attention", S.SDTPConfig.for_model(model, keep_ratio=1.0)) as st:
            pruned = model(ids).logits
    assert st.kept_per_layer == [64] * model.config.num_hidden_layers
    torch.testing.assert_close(pruned, dense, rtol=0, atol=0)


def test_by_name_in_generate_and_the_suite(tiny_sdpa, tmp_path):
    from sdtp_lib.eval import synthetic as Y
    model, tok = tiny_sdpa
    assert isinstance(make_scorer("attention"), WindowAttentionScorer)
    cfg = Y.SuiteConfig(tasks=("passkey",), lengths=(256,), layouts=("question_last",), n_samples=1,
                        scorers=("dense", "sdtp:attention"))
    rows = Y.run_suite(model, tok, cfg, tmp_path, progress=False)
    assert [r["scorer"] for r in rows] == ["dense", "sdtp:attention"] and rows[1]["compression"] > 1.0


def test_bad_settings_are_refused(tiny_sdpa):
    model, _ = tiny_sdpa
    with pytest.raises(ValueError, match="odd kernel"):
        WindowAttentionScorer(kernel=4)
    with pytest.raises(ValueError, match="window >= 1"):
        WindowAttentionScorer(window=0)
    with pytest.raises(ValueError, match="heads"):
        WindowAttentionScorer(heads="sum")
    assert make_scorer("attention-max").heads == make_scorer("attention").heads == "max"
    assert make_scorer("attention-mean").heads == "mean"
    from sdtp_lib.training.masked import masked_pruning
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    with pytest.raises(ValueError, match="needs a TokenPredictor"):  # training masks need logits
        with masked_pruning(model, WindowAttentionScorer(), cfg, torch.ones(1, 32, dtype=torch.long), mode="st_topk"):
            model(prompt_ids(32))
    with pytest.raises(TypeError, match="physical engine"):  # called by hand without the layer
        WindowAttentionScorer()(torch.zeros(1, 8, 4), 0)
    with pytest.raises(TypeError, match="stage layer"):
        S.TokenPredictor(4, [1], attn_window=4)(torch.zeros(1, 8, 4), 0)


@pytest.mark.parametrize("kernel,hops", [(1, 0), (5, 0), (5, 3)])
def test_rowwise_window_equals_the_compacted_sequence(eager, kernel, hops):
    """With a keep mask (`alive`) and protected tokens (`eligible`), each row scores as if its dropped tokens were
    removed and the sequence ended at its last eligible token: what the engine sees at the same stage."""
    model, _ = eager
    T, l = 90, 1
    ids = prompt_ids(T, B=2, seed=4)
    hs, cos_sin, _ = _dense_states(model, ids)
    layer = model.get_decoder().layers[l]
    g = torch.Generator().manual_seed(0)
    alive = torch.rand(2, T, generator=g) > 0.35
    eligible = torch.ones(2, T, dtype=torch.bool)
    eligible[0, 70:] = False  # row 0: a protected "response" at the end
    sc = WindowAttentionScorer(window=12, kernel=kernel, hops=hops)
    with torch.no_grad():
        got = sc(hs[l], 0, layer=layer, position_embeddings=cos_sin, alive=alive, eligible=eligible)  # (2, T)
        for b in range(2):
            end = 70 if b == 0 else T
            keep = (alive[b] & (torch.arange(T) < end)).nonzero().flatten()  # the compacted window's sequence
            tail = (alive[b] & (torch.arange(T) >= end)).nonzero().flatten()  # present, after every query: 0
            h, cs = hs[l][b:b + 1, keep], tuple(t[:, keep] for t in cos_sin)
            raw = window_attention(layer, h, cs, 12, heads=sc.heads)
            raw = (raw + hop_attention(layer, h, cs, raw, 12, hops, heads=sc.heads) if hops else raw)[0]
            raw = torch.cat([raw, torch.zeros(len(tail))])  # the present tokens, in order
            ref = raw if kernel == 1 else torch.nn.functional.max_pool1d(
                raw[None, None], kernel, 1, kernel // 2)[0, 0] + TIE_BREAK * raw
            torch.testing.assert_close(got[b], torch.zeros(T).index_put_((torch.cat([keep, tail]),), ref),
                                       rtol=1e-4, atol=1e-6)
    assert (got[~alive] == 0).all()


@torch.no_grad()
def test_engine_window_skips_protected_tokens(tiny_sdpa):
    """With a protect mask (validation's response), the observation window is the last unprotected tokens."""
    model, _ = tiny_sdpa
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    T, l0 = 80, cfg.stage_layers[0]
    ids = prompt_ids(T, seed=6)
    protect = torch.zeros(1, T, dtype=torch.bool)
    protect[:, 60:] = True
    scorer = WindowAttentionScorer(window=8, kernel=3)
    hs = model(ids, output_hidden_states=True).hidden_states
    cos_sin = model.get_decoder().rotary_emb(hs[0], torch.arange(T)[None])
    layer = model.get_decoder().layers[l0]
    ref = scorer(hs[l0], 0, layer=layer, position_embeddings=cos_sin, eligible=~protect)
    last = scorer(hs[l0], 0, layer=layer, position_embeddings=cos_sin)
    with S.pruning(model, scorer, cfg, protect=protect) as st:
        model(ids)
    forced = forced_mask(cfg, torch.ones(1, T, dtype=torch.long), protect)
    assert torch.equal(st.stage_positions[0], select_tokens(ref, forced, cfg.keep_count(1, T)))
    assert not torch.allclose(ref, last)  # the window did move


# ------------------------------------------------------------------ the saliency oracle (an upper bound)
def test_oracle_keeps_the_top_k_of_the_answer_saliency(tiny_sdpa):
    from sdtp_lib.scorers import SaliencyOracle
    from sdtp_lib.scorers import token_saliency
    model, _ = tiny_sdpa
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    ids, answer = prompt_ids(70, seed=8), prompt_ids(5, seed=9)
    oracle = SaliencyOracle.for_answer(model, ids, answer, cfg)
    full = torch.cat([ids, answer], 1)
    labels = full.clone()
    labels[:, :70] = -100
    sal = token_saliency(model, full, labels, cfg.stage_layers)
    for s, l in enumerate(cfg.stage_layers):
        torch.testing.assert_close(oracle.saliency[s], sal[l][:, :70])
    with torch.no_grad(), S.pruning(model, oracle, cfg) as st:
        model(ids)
    forced = forced_mask(cfg, torch.ones(1, 70, dtype=torch.long), None)
    first = select_tokens(sal[cfg.stage_layers[0]][:, :70].abs(), forced, cfg.keep_count(1, 70))
    assert torch.equal(st.stage_positions[0], first)
    pos = st.stage_positions[0]  # stage 1 scores the survivors of stage 0 at their original positions
    second = pos.gather(1, select_tokens(sal[cfg.stage_layers[1]][:, :70].abs().gather(1, pos), forced.gather(1, pos),
                                         cfg.keep_count(2, 70)))
    assert torch.equal(st.stage_positions[1], second)
    neg = SaliencyOracle(oracle.saliency, target="neg")
    assert torch.equal(neg(torch.zeros(1, 70, 4), 0), -oracle.saliency[0])
    with pytest.raises(ValueError, match="target"):
        SaliencyOracle(oracle.saliency, target="sign")


def test_oracle_in_the_suite_and_in_longbench(tiny_sdpa, tmp_path, monkeypatch):
    from pathlib import Path

    from sdtp_lib.eval import longbench as L
    from sdtp_lib.eval import synthetic as Y
    from sdtp_lib.scorers import SaliencyOracle
    model, tok = tiny_sdpa
    cfg = Y.SuiteConfig(tasks=("passkey", "variable_tracking"), lengths=(256,), layouts=("question_first",),
                        n_samples=1, scorers=("sdtp:oracle", "sdtp:norm"))
    rows = Y.run_suite(model, tok, cfg, tmp_path / "syn", progress=False)
    assert [r["scorer"] for r in rows] == ["sdtp:oracle", "sdtp:norm"] * 2
    assert rows[0]["compression"] == pytest.approx(rows[1]["compression"])  # the same schedule
    built, real = [], SaliencyOracle.for_answer.__func__
    monkeypatch.setattr(SaliencyOracle, "for_answer", classmethod(
        lambda cls, m, ids, answer, config, target="abs": built.append(answer[0].tolist()) or
        real(cls, m, ids, answer, config, target)))
    fixture = Path(__file__).resolve().parent.parent / "data" / "longbench_fixture"
    L.run_longbench(model, tok, ["hotpotqa"], fixture, tmp_path / "lb", scorers=["dense", "sdtp:oracle", "sdtp:norm"],
                    max_length=300, warmup="none", progress=False)
    samples = L.load_task(fixture, "hotpotqa")
    assert built == [tok.encode(s["answers"][0], add_special_tokens=False) for s in samples]  # one oracle each
    got = {n: L.read_predictions(L.pred_path(tmp_path / "lb", n, "hotpotqa")) for n in ("sdtp:oracle", "sdtp:norm")}
    assert [r["compression"] for r in got["sdtp:oracle"]] == pytest.approx([r["compression"] for r in got["sdtp:norm"]])
    assert all(r["compression"] > 1.0 for r in got["sdtp:oracle"])
    cfg_json = L.score_longbench(tmp_path / "lb", write=False)["scorers"]["sdtp:oracle"]
    assert cfg_json["n_samples"] == len(samples)


def test_attention_settings_by_name(tiny_sdpa):
    """attention[-mean|-max][-w<window>][-k<kernel>] names a WindowAttentionScorer wherever a policy name is taken."""
    from sdtp_lib.scorers import resolve_scorer
    from sdtp_lib.training.run import _check_baselines
    model, _ = tiny_sdpa
    got = make_scorer("attention-mean-w64-k15")
    assert (got.window, got.kernel, got.heads) == (64, 15, "mean")
    assert (make_scorer("attention-k1").window, make_scorer("attention-k1").kernel) == (32, 1)
    assert make_scorer("attention-w8").kernel == WindowAttentionScorer().kernel == 31
    assert make_scorer("attention-w8").window == 8
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    assert resolve_scorer("attention-k15", model, cfg) == ("attention-k15", "attention-k15 policy")
    _check_baselines(["attention-max-k3", "oracle"])
    with pytest.raises(ValueError, match="unknown pruning policy 'attention-k'"):
        make_scorer("attention-k")
    with pytest.raises(ValueError, match="unknown pruning policy 'attention-max-mean'"):
        make_scorer("attention-max-mean")
    with pytest.raises(ValueError, match="odd kernel"):
        make_scorer("attention-k14")
    with pytest.raises(ValueError, match="unknown baseline"):
        _check_baselines(["attention-x"])


@pytest.mark.parametrize("shift", [0, 3, 7])
def test_shifted_pooling_spreads_a_score_forward(shift):
    """Token i takes the max of [i - k//2 - shift, i + k//2 - shift]: a peak reaches k//2 + shift tokens after it and
    k//2 - shift before it; with a keep mask, the same over the present tokens only (what the engine sees)."""
    from sdtp_lib.scorers import max_pool_alive
    k, T = 15, 60
    x = torch.zeros(1, T)
    x[0, 30] = 1.0
    got = max_pool_alive(x, k, shift=shift)[0]
    assert got.nonzero().flatten().tolist() == list(range(30 - (k // 2 - shift), 30 + k // 2 + shift + 1))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, T, generator=g)
    padded = torch.nn.functional.pad(x, (k // 2 + shift, k // 2 - shift), value=float("-inf"))
    torch.testing.assert_close(max_pool_alive(x, k, shift=shift), padded.unfold(-1, k, 1).amax(-1))
    alive = torch.rand(2, T, generator=g) > 0.4
    got = max_pool_alive(x, k, alive, shift)
    for b in range(2):
        keep = alive[b].nonzero().flatten()
        ref = max_pool_alive(x[b:b + 1, keep], k, shift=shift)[0]  # the compacted sequence
        torch.testing.assert_close(got[b, keep], ref)
    assert (got[~alive] == 0).all()


def test_shift_by_name_and_bounds(tiny_sdpa):
    got = make_scorer("attention-k31-s10")
    assert (got.kernel, got.shift, got.window) == (31, 10, 32)
    assert make_scorer("attention").shift == 0 and make_scorer("attention-mean-w64-k15-s7").shift == 7
    with pytest.raises(ValueError, match=r"shift must be in \[0, kernel // 2\] = \[0, 7\], got 8"):
        make_scorer("attention-k15-s8")
    with pytest.raises(ValueError, match="unknown pruning policy 'attention-s3-k15'"):  # settings in their order
        make_scorer("attention-s3-k15")
    model, _ = tiny_sdpa  # in the engine: the kept tokens are the top-k of the shifted scores
    cfg = S.SDTPConfig.for_model(model, keep_ratio=0.6)
    ids = prompt_ids(80, seed=5)
    with torch.no_grad():
        with S.pruning(model, "attention-k9-s4", cfg) as a:
            model(ids)
        with S.pruning(model, "attention-k9", cfg) as b:
            model(ids)
    assert a.kept_per_stage == b.kept_per_stage and not all(
        torch.equal(x, y) for x, y in zip(a.stage_positions, b.stage_positions))


@pytest.mark.parametrize("heads", ["mean", "max"])
def test_hop_attention_is_the_non_causal_attention_of_the_windows_top_tokens(eager, heads):
    """The second hop equals the layer's own eager attention probabilities (its attention module called with an
    additive mask that hides nothing causal, only the sink and the hop queries) of the `hops` tokens the window ranks
    highest outside itself and the sink, averaged over them; the window's queries and the sink are never hop
    queries, and a hop query can see tokens after it."""
    model, _ = eager
    T, w, m, l = 80, 8, 5, 1
    ids = prompt_ids(T, B=2, seed=5)
    hs, cos_sin, _ = _dense_states(model, ids)
    layer = model.get_decoder().layers[l]
    with torch.no_grad():
        first = window_attention(layer, hs[l], cos_sin, w, heads=heads)
        got = hop_attention(layer, hs[l], cos_sin, first, w, m, heads=heads)  # (B, T)
        normed = layer.input_layernorm(hs[l])
        for b in range(2):
            cand = first[b].clone()
            cand[:SINK], cand[T - w:] = -1, -1
            hop = cand.topk(m).indices  # the hop queries: never the sink or the window
            assert ((hop >= SINK) & (hop < T - w)).all()
            mask = torch.zeros(1, 1, T, T)
            mask[..., :SINK] = mask[..., hop] = float("-inf")
            _, probs = layer.self_attn(hidden_states=normed[b:b + 1], position_embeddings=tuple(t[b:b + 1] if t.shape[0] > 1 else t for t in cos_sin),
                                       attention_mask=mask)  # (1, H, T, T), no causal mask
            per_head = probs[0][:, hop].float().mean(1)  # (H, T)
            ref = per_head.mean(0) if heads == "mean" else per_head.amax(0)
            torch.testing.assert_close(got[b], ref, rtol=1e-4, atol=1e-6)
            assert got[b, :SINK].eq(0).all() and got[b, hop].eq(0).all()
            assert got[b, hop.max() + 1:].sum() > 0  # keys after the latest hop query are seen (no causal mask)


def test_hops_by_name_and_bounds():
    """attention-h<n> names the scorer with a second hop (0: the window alone); a negative count is refused; the
    hop queries' scores are in the scorer's FLOPs."""
    sc = make_scorer("attention-w8-h4")
    assert (sc.window, sc.hops) == (8, 4) and make_scorer("attention").hops == 0
    with pytest.raises(ValueError, match="hops must be >= 0"):
        WindowAttentionScorer(hops=-1)
    a, b = WindowAttentionScorer(window=8), WindowAttentionScorer(window=8, hops=4)
    a._dims = b._dims = (64, 32, 64)
    assert b.flops_per_token() - a.flops_per_token() == 2 * 64 * 4


@pytest.mark.parametrize("hops", [0, 4])
def test_one_key_projection_per_scorer_call(eager, hops):
    """The scorer projects every token's keys once per stage call, the second hop included (its FLOPs count one
    key projection), and its score equals the window's plus the hop's computed apart."""
    model, _ = eager
    T, l = 64, 1
    ids = prompt_ids(T, B=2, seed=7)
    hs, cos_sin, _ = _dense_states(model, ids)
    layer = model.get_decoder().layers[l]
    rows = []
    hook = layer.self_attn.k_proj.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[1]))
    try:
        with torch.no_grad():
            got = WindowAttentionScorer(window=8, kernel=1, hops=hops)(hs[l], 0, layer=layer,
                                                                        position_embeddings=cos_sin)
    finally:
        hook.remove()
    assert rows == [T]  # one projection, of all T tokens
    with torch.no_grad():
        ref = window_attention(layer, hs[l], cos_sin, 8, heads="max")
        if hops:
            ref = ref + hop_attention(layer, hs[l], cos_sin, ref, 8, hops, heads="max")
    torch.testing.assert_close(got, ref)


def test_memory_keeps_a_tokens_best_stage_score(eager):
    """attention-m: each stage's attention is normalised to sum 1 over the present tokens, and a token scores the
    max of that (pooled) and what it scored at the earlier stages of the same prefill, looked up by original
    position; stage 0 starts afresh; absent tokens score 0."""
    model, _ = eager
    T = 72
    ids = prompt_ids(T, B=2, seed=8)
    hs, cos_sin, _ = _dense_states(model, ids)
    layers = model.get_decoder().layers
    sc, plain = make_scorer("attention-w8-k3-m"), WindowAttentionScorer(window=8, kernel=3)
    assert sc.memory and not plain.memory
    with torch.no_grad():
        s0 = sc(hs[1], 0, torch.arange(T).expand(2, T), layer=layers[1], position_embeddings=cos_sin)
        probs = window_attention(layers[1], hs[1], cos_sin, 8, heads="max")
        norm = probs / probs.sum(-1, keepdim=True)
        torch.testing.assert_close(s0, torch.nn.functional.max_pool1d(norm[:, None], 3, 1, 1)[:, 0] + TIE_BREAK * norm)
        keep = torch.stack([torch.randperm(T, generator=torch.Generator().manual_seed(b))[:40].sort().values
                            for b in range(2)])  # (2, 40) original positions still present at stage 1
        h1 = hs[2].gather(1, keep[..., None].expand(-1, -1, hs[2].shape[-1]))
        cs1 = tuple(t.expand(2, -1, -1).gather(1, keep[..., None].expand(-1, -1, t.shape[-1])) for t in cos_sin)
        s1 = sc(h1, 1, keep, layer=layers[2], position_embeddings=cs1)
        fresh = WindowAttentionScorer(window=8, kernel=3, memory=True)(h1, 0, keep, layer=layers[2],
                                                                       position_embeddings=cs1)
        torch.testing.assert_close(s1, torch.maximum(fresh, s0.gather(1, keep)))  # stage 1 remembers stage 0
        assert (s1 > fresh + 1e-6).any() and (s1 >= s0.gather(1, keep)).all()
        again = sc(hs[1], 0, torch.arange(T).expand(2, T), layer=layers[1], position_embeddings=cos_sin)
        torch.testing.assert_close(again, s0)  # a new prefill forgets the last one
        alive = torch.rand(2, T, generator=torch.Generator().manual_seed(3)) > 0.3
        masked = sc(hs[1], 0, torch.arange(T).expand(2, T), layer=layers[1], position_embeddings=cos_sin, alive=alive)
        assert (masked[~alive] == 0).all()
