"""The masked simulation (training-time pruning) against dense and against the physical engine."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.training.masked import masked_pruning

from .conftest import cfg, prompt_ids


@torch.no_grad()
def test_all_keep_equals_dense(tiny):
    model, _ = tiny
    ids = prompt_ids(70, B=2)
    am = torch.ones_like(ids)
    dense = model(ids, attention_mask=am).logits
    with masked_pruning(model, "norm", cfg(model, 1.0), am, mode="topk") as st:
        out = model(ids, attention_mask=am).logits
    assert all(bool(m.all()) for m in st.masks)
    torch.testing.assert_close(out, dense, rtol=1e-5, atol=1e-5)
    assert model.config._attn_implementation == tiny[0].config._attn_implementation != "sdtp_masked"


@torch.no_grad()
@pytest.mark.parametrize("scorer", ["norm", "predictor", "attention", "attention-max", "attention-m", "hybrid"])
def test_topk_simulation_equals_physical_engine(tiny, scorer):
    model, _ = tiny
    c = cfg(model, 0.6)
    sc = (S.TokenPredictor.for_model(model, c, seed=1, attn_window=8 if scorer == "hybrid" else 0)
          if scorer in ("predictor", "hybrid") else scorer)
    ids = prompt_ids(150, seed=3)
    with S.pruning(model, sc, c) as phys:
        ref = model(ids).logits  # (1, kept, V)
    with masked_pruning(model, sc, c, torch.ones_like(ids), mode="topk") as st:
        out = model(ids, attention_mask=torch.ones_like(ids)).logits  # (1, T, V)
    for m, kept in zip(st.masks, phys.stage_positions):
        assert m[0].nonzero().flatten().tolist() == kept[0].tolist()
    torch.testing.assert_close(out[:, phys.kept_positions[0]], ref, rtol=1e-4, atol=1e-4)
    assert st.kept_per_layer(model.config.num_hidden_layers, 150) == [float(n) for n in phys.kept_per_layer]


@torch.no_grad()
def test_dropped_token_gets_no_attention(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(60)
    am = torch.ones_like(ids)
    with masked_pruning(model, "random", cfg(model, 0.5), am, mode="topk") as st:
        out = model(ids, attention_mask=am, output_attentions=True)
    first = S.SDTPConfig.for_model(model).stage_layers[0]
    for l in range(first, model.config.num_hidden_layers):
        p = out.attentions[l][0]  # (H, T, S)
        dropped = (st.layer_mask[l][0] == 0).nonzero().flatten()
        assert len(dropped) > 0
        w = p[:, :, dropped].clone()  # (H, T, n_dropped): attention paid to dropped keys ...
        w[:, dropped, torch.arange(len(dropped))] = 0  # ... except a dropped token's attention to itself
        assert float(w.abs().max()) == 0.0
    assert all(a.sum(-1).allclose(torch.ones(())) for a in out.attentions)


@pytest.mark.parametrize("mode", ["gumbel", "st_topk"])
def test_training_masks_train_the_predictor_only(tiny_sdpa, mode):
    model, _ = tiny_sdpa
    c = cfg(model, 0.7)
    pred = S.TokenPredictor.for_model(model, c)
    for p in model.parameters():
        p.requires_grad_(False)
    ids = prompt_ids(80)
    am = torch.ones_like(ids)
    protect = torch.zeros_like(ids, dtype=torch.bool)
    protect[:, 60:] = True
    with masked_pruning(model, pred, c, am, protect=protect, mode=mode) as st:
        out = model(ids, attention_mask=am, labels=ids)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pred.parameters())
    assert all(p.grad is None for p in model.parameters())
    for m in st.masks:
        assert bool((m[:, 60:] == 1).all()) and bool((m[:, :4] == 1).all())  # protected and sinks survive
        assert set(m.unique().tolist()) <= {0.0, 1.0}
    for a, b in zip(st.masks, st.masks[1:]):
        assert bool((b <= a).all())  # dropped once, dropped after
    if mode == "st_topk":  # exactly the inference budget at every stage
        from sdtp_lib.training.masked import forced_mask, stage_budget
        f = forced_mask(c, am, protect)
        for s_, m in enumerate(st.masks):
            assert int(m.sum()) == int(stage_budget(c, s_, am.sum(-1), f.sum(-1))[0])
    for p in model.parameters():
        p.requires_grad_(True)
