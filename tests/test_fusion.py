"""Rank fusion (sdtp_lib.scorers.fusion): a token keeps the better of its ranks; engine == masked simulation."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.scorers import make_scorer, resolve_scorer
from sdtp_lib.scorers.fusion import RankFusion, rank_quantile

from .conftest import assert_masked_keeps_what_the_engine_keeps, prompt_ids


def fixed(values):
    return lambda hidden, stage, positions=None: torch.tensor([values], dtype=torch.float32)


def test_rank_quantile_orders_and_puts_dead_tokens_last():
    q = rank_quantile(torch.tensor([[0.3, 5.0, -1.0, 2.0]]))
    assert q.tolist() == [[pytest.approx(1 / 3), 1.0, 0.0, pytest.approx(2 / 3)]]
    alive = torch.tensor([[True, False, True, True]])
    q = rank_quantile(torch.tensor([[0.3, 5.0, -1.0, 2.0]]), alive)
    assert q[0, 1] < q[0, 2] < q[0, 0] < q[0, 3]  # the dead token (best score) ranks below every alive one


def test_max_fusion_keeps_each_scorers_best_and_mean_needs_both():
    a, b = fixed([9.0, 1.0, 2.0, 3.0, 0.0]), fixed([0.0, 0.5, 0.1, 3.0, 7.0])
    top2 = RankFusion((a, b))(torch.zeros(1, 5, 4), 0).topk(2).indices[0].tolist()
    assert sorted(top2) == [0, 4]  # A's best and B's best, though neither is the other's second
    mean = RankFusion((a, b), how="mean")(torch.zeros(1, 5, 4), 0)
    assert int(mean.argmax()) == 3  # the one both rank high
    with pytest.raises(ValueError, match="two or more scorers"):
        RankFusion((a,))
    with pytest.raises(ValueError, match="'max' or 'mean'"):
        RankFusion((a, b), how="min")


@torch.no_grad()
def test_a_scorer_fused_with_itself_keeps_what_it_keeps(tiny_sdpa):
    model, _ = tiny_sdpa
    c, ids = S.SDTPConfig.for_model(model, keep_ratio=0.6), prompt_ids(120, seed=5)
    with S.pruning(model, "norm", c) as alone:  # (window attention's max-pooling ties: top-k breaks them its own way)
        model(ids)
    scorer, label = resolve_scorer("norm+norm", model, c)
    assert isinstance(scorer, RankFusion) and not scorer.needs_layer and "rank fusion" in label
    assert resolve_scorer("norm+attention", model, c)[0].needs_layer
    with S.pruning(model, scorer, c) as fused:
        model(ids)
    assert [p.tolist() for p in fused.stage_positions] == [p.tolist() for p in alone.stage_positions]


@torch.no_grad()
def test_fusion_differs_from_either_scorer_and_the_masked_simulation_agrees(tiny):
    model, _ = tiny
    c, ids = S.SDTPConfig.for_model(model, keep_ratio=0.6), prompt_ids(150, seed=3)
    kept = {}
    for name in ("norm", "attention"):
        with S.pruning(model, name, c) as st:
            model(ids)
        kept[name] = st.stage_positions[0][0].tolist()
    phys = assert_masked_keeps_what_the_engine_keeps(model, lambda: resolve_scorer("norm+attention", model, c)[0], c, ids)
    first = phys.stage_positions[0][0].tolist()
    assert first != kept["norm"] and first != kept["attention"]


def test_fusion_counts_both_scorers_flops_and_bad_names_are_clear(tiny_sdpa):
    model, _ = tiny_sdpa
    c = S.SDTPConfig.for_model(model)
    att = make_scorer("attention")
    att._dims = (64, 32, 64)
    assert RankFusion((att, make_scorer("norm"))).flops_per_token() == att.flops_per_token()
    with pytest.raises(ValueError, match="joined by '\\+'"):
        resolve_scorer("attention+", model, c)
    with pytest.raises(FileNotFoundError, match="no predictor 'nope'"):
        resolve_scorer("attention+nope", model, c)
    from sdtp_lib.eval.scorers import check_scorer_name
    with pytest.raises(ValueError, match="no shipped predictor"):
        check_scorer_name("predictor+attention", model, "sdtp:predictor+attention")
    with pytest.raises(ValueError, match="oracle"):
        check_scorer_name("oracle+attention", model, "sdtp:oracle+attention")
