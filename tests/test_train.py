"""Stage 2: losses, what a training step touches, resume, bad inputs, and a tiny end-to-end training run."""
import json

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.training import data as D
from sdtp_lib.training import saliency as SA
from sdtp_lib.training.train import TrainConfig, rank_loss, step_losses, train, collate_store


def test_rank_loss_orders():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 200, generator=g)
    valid = torch.ones(2, 200, dtype=torch.bool)
    loss = lambda scores: float(rank_loss(scores, target, valid, 4000, torch.Generator().manual_seed(1)))
    aligned, noisy, random_, reversed_ = (target, target + torch.randn(2, 200, generator=g),
                                          torch.randn(2, 200, generator=g), -target)
    assert loss(aligned * 5) < loss(aligned) < loss(noisy) < loss(random_) < loss(reversed_) < loss(reversed_ * 5)
    # invalid tokens never count: scrambling them changes nothing
    valid[:, 100:] = False
    scrambled = aligned.clone()
    scrambled[:, 100:] = -100
    assert rank_loss(aligned, target, valid, 500, torch.Generator().manual_seed(2)) == \
        rank_loss(scrambled, target, valid, 500, torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    model, tok = S.load_model("tiny-llama")
    samples = D.build_samples(D.load_instructions(D.DEFAULT_DATA, limit=40), tok, seq_len=200, n=10, seed=0)
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.8)
    out = tmp_path_factory.mktemp("sal")
    store = SA.SaliencyStore.load(SA.compute_saliency(model, samples, conf.stage_layers, out, data_source="test"))
    return model, conf, store


def test_step_changes_only_predictor(tiny_store):
    model, conf, store = tiny_store
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pred = S.TokenPredictor.for_model(model, conf)
    p0 = [p.clone() for p in pred.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        opt = torch.optim.AdamW(pred.parameters(), lr=1e-2)
        batch = collate_store(store, [0, 1, 2], conf.stage_layers, "cpu")
        losses = step_losses(model, pred, conf, TrainConfig(), batch)
        assert all(torch.isfinite(v) for v in losses.values())
        losses["total"].backward()
        opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(not torch.equal(a, b) for a, b in zip(p0, pred.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_train_resume_gives_the_same_next_step(tiny_store, tmp_path):
    model, conf, store = tiny_store
    full = train(model, store, conf, TrainConfig(epochs=2, batch_size=3), tmp_path / "full", progress=False)
    train(model, store, conf, TrainConfig(epochs=1, batch_size=3), tmp_path / "part", progress=False)
    resumed = train(model, store, conf, TrainConfig(epochs=2, batch_size=3), tmp_path / "part", progress=False)
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    log = (tmp_path / "part" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,total,cls,mse,rank,ratio") and len(log) == 1 + 2 * 4  # 10 samples / 3
    meta = json.loads((tmp_path / "full" / "pruning_config.json").read_text())
    assert meta["sdtp_config"]["stage_layers"] == list(conf.stage_layers) and meta["steps"] == 8
    loaded = S.load_predictor(tmp_path / "full" / "predictor.safetensors", model=model, config=conf)
    h = torch.randn(1, 5, model.config.hidden_size)
    torch.testing.assert_close(loaded(h, 0), full(h, 0))
    with pytest.raises(ValueError, match="another configuration"):
        train(model, store, conf, TrainConfig(epochs=2, batch_size=3, lr=0.5), tmp_path / "part", progress=False)


def test_train_refuses_mismatched_saliency(tiny_store, tmp_path):
    model, conf, store = tiny_store
    with pytest.raises(ValueError, match="saliency was computed for layers"):
        train(model, store, S.SDTPConfig(stage_layers=(2, 3), num_layers=4), TrainConfig(), tmp_path)
    with pytest.raises(ValueError, match="saliency_target"):
        TrainConfig(saliency_target="signed")


def test_shipped_predictor_loads():
    assert "smollm2-135m" in S.shipped_predictors()
    with pytest.raises(FileNotFoundError, match="shipped predictors"):
        S.load_predictor("no-such-predictor")
    tiny, _ = S.load_model("tiny-qwen2")
    with pytest.raises(ValueError, match="hidden size"):
        S.load_predictor("smollm2-135m", model=tiny)


def test_training_run_end_to_end_tiny(tmp_path):
    from sdtp_lib.training.run import TrainingRunConfig, run_training
    cfg = TrainingRunConfig(model="tiny-qwen2", samples=16, seq_len=200, seeds=(0, 1),
                         train=TrainConfig(epochs=1, batch_size=4))
    summary = run_training(cfg, tmp_path, progress=False)
    rows = summary["validation"]
    assert {r["scorer"] for r in rows} == {"dense", "predictor-s0", "predictor-s1", "random", "norm", "recent"}
    assert {r["engine"] for r in rows} == {"physical", "masked"}
    by = {(r["layout"], r["scorer"], r["engine"]): r for r in rows}
    for (layout, scorer, engine), r in by.items():
        if engine == "physical" and scorer != "random":  # deterministic scorers: both engines agree
            assert r["loss"] == pytest.approx(by[(layout, scorer, "masked")]["loss"], abs=1e-4)
        if scorer == "dense":
            assert r["delta"] == 0 and r["compression"] == 1.0
        else:
            assert r["compression"] > 1.1
    assert (tmp_path / "seed1" / "predictor.safetensors").exists() and (tmp_path / "validation.md").exists()
    assert json.loads((tmp_path / "run.json").read_text())["num_train"] + summary["num_val"] == 16


def test_hybrid_training_run_and_question_aware_baselines(tmp_path):
    """The hybrid (window attention as a further input) trains through the masked simulation; it, the attention
    policy and the saliency oracle give the same held-out loss in both engines (deterministic scorers)."""
    from sdtp_lib.training.run import TrainingRunConfig, run_training
    cfg = TrainingRunConfig(model="tiny-qwen2", samples=12, seq_len=200, seeds=(0,), baselines=("attention", "oracle"),
                            train=TrainConfig(epochs=1, batch_size=4, attention_window=8))
    summary = run_training(cfg, tmp_path, progress=False)
    by = {(r["layout"], r["scorer"], r["engine"]): r for r in summary["validation"]}
    assert {k[1] for k in by} == {"dense", "hybrid-s0", "attention", "oracle"}
    for (layout, scorer, engine), r in by.items():
        if engine == "physical":
            assert r["loss"] == pytest.approx(by[(layout, scorer, "masked")]["loss"], abs=1e-4), (layout, scorer)
    pred = S.TokenPredictor.load(tmp_path / "seed0" / "predictor.safetensors")
    assert pred.needs_layer and pred.attn_window == 8 and pred.header()["version"] == 3
    gains = [float(st.gain.detach()) for st in pred.stages]
    assert any(g != 1.0 for g in gains)  # the learned combination moved from its start
    with pytest.raises(ValueError, match="unknown baseline"):
        run_training(TrainingRunConfig(model="tiny-qwen2", baselines=("nrom",)), tmp_path / "x", progress=False)


def test_hybrid_predictor_roundtrip_and_flops(tmp_path):
    model, _ = S.load_model("tiny-qwen2")
    conf = S.SDTPConfig.for_model(model)
    plain = S.TokenPredictor.for_model(model, conf)
    hyb = S.TokenPredictor.for_model(model, conf, attn_window=16, attn_kernel=5, seed=3)
    assert not plain.needs_layer and plain.header()["version"] == 1  # plain files stay readable by older versions
    back = S.TokenPredictor.load(hyb.save(tmp_path / "h.safetensors"), model=model, config=conf)
    assert (back.attn_window, back.attn_kernel) == (16, 5)
    assert back.attention.heads == hyb.attention.heads == "mean"  # every hybrid was trained on the heads' mean
    assert all(torch.equal(a, b) for a, b in zip(hyb.state_dict().values(), back.state_dict().values()))
    ids = torch.randint(0, 200, (1, 64))
    with torch.no_grad(), S.pruning(model, back, conf) as st:
        model(ids)
    C, H = model.config.hidden_size, model.config.num_attention_heads
    kv = model.config.num_key_value_heads * (C // H)
    mlp = 2 * ((C + 1) * back.width + back.width * 2)
    assert back.flops_per_token() == mlp + 2 * C * kv + 2 * C * 16  # + its window attention
    assert st.flops_pruned > 0 and st.compression > 1.0
    import json
    from safetensors.torch import save_file
    v2 = tmp_path / "v2.safetensors"  # a hybrid of format 2 (unstandardised feature) is refused, not misread
    save_file({k: v.contiguous() for k, v in hyb.state_dict().items()}, str(v2),
              metadata={"sdtp": json.dumps({**hyb.header(), "version": 2})})
    with pytest.raises(ValueError, match="format 2.*train it again"):
        S.TokenPredictor.load(v2)


def test_hybrid_feature_is_the_attention_standardised_over_present_tokens():
    """The hybrid's feature: the log window attention, z-scored over each row's present tokens (0 elsewhere), so
    it orders tokens as the attention scorer does, at the scale of the z-scored saliency targets."""
    model, _ = S.load_model("tiny-qwen2")
    conf = S.SDTPConfig.for_model(model)
    hyb = S.TokenPredictor.for_model(model, conf, attn_window=8, attn_kernel=1)
    layer = model.model.layers[conf.stage_layers[0]]
    torch.manual_seed(0)
    h = torch.randn(2, 40, model.config.hidden_size)
    pe = model.model.rotary_emb(h, torch.arange(40)[None])
    alive = torch.rand(2, 40) > 0.3
    alive[:, -8:] = True
    for a in (None, alive):
        kw = dict(layer=layer, position_embeddings=pe, alive=a)
        with torch.no_grad():
            f, p = hyb.attention_feature(h, **kw), hyb.attention(h, 0, **kw)
        present = torch.ones_like(alive) if a is None else a
        for b in range(2):
            fb = f[b][present[b]]
            assert abs(float(fb.mean())) < 1e-4 and float(fb.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
            assert torch.equal(fb.argsort(), p[b][present[b]].argsort())  # the attention's order
            assert (f[b][~present[b]] == 0).all()


@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-hybrid"])
def test_shipped_qwen2_predictor_fits_the_engine_placement(name):
    """The Qwen2.5-Coder-0.5B predictor and hybrid (issue 11) have SDTP's 10 stages and, as their prefix, SDTP-low's
    5 for a model of its depth (24 layers, hidden 896), and refuse a model whose config is not the one they were
    trained on. The hybrid reads the window attention it was trained with (window 32, heads' mean, kernel 15)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    pred = S.load_predictor(name)
    assert pred.hidden_size == 896 and pred.model_id == "qwen2.5-coder-0.5b"
    if name.endswith("-hybrid"):
        assert pred.attn_window == 32 and pred.attention.heads == "mean" and pred.attention.kernel == 15
    else:
        assert pred.attn_window == 0
    cfg = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=32, vocab_size=64, max_position_embeddings=64)
    model = Qwen2ForCausalLM(cfg).eval()
    for stages in (10, 5):
        conf = S.SDTPConfig.for_model(model, num_stages=stages)
        assert tuple(pred.stage_layers[:stages]) == tuple(conf.stage_layers)
    with pytest.raises(ValueError, match="trained for another model"):  # same shape, another config
        pred.check_compatible(model)


def test_hybrid_stage_mlp_is_fc1_of_the_concatenated_input():
    """The hybrid's stage MLP is fc1 over [x, feature] (its feature column kept apart from a contiguous fc1)."""
    from sdtp_lib.scorers.predictor import StageMLP
    torch.manual_seed(0)
    mlp = StageMLP(16, 8, extra=1)
    assert mlp.fc1.weight.is_contiguous() and mlp.fc1.weight.shape == (8, 16)
    x, f = torch.randn(2, 5, 16), torch.randn(2, 5)
    xn = torch.nn.functional.layer_norm(x, (16,))
    w = torch.cat([mlp.fc1.weight, mlp.fc1_feature[:, None]], -1)  # (8, 17)
    ref = mlp.fc2(mlp.act(torch.nn.functional.linear(torch.cat([xn, f[..., None]], -1), w, mlp.fc1.bias)))
    ref[..., 0] += mlp.gain * f
    torch.testing.assert_close(mlp(x, f), ref)
    with pytest.raises(ValueError, match="extra must be 0 or 1"):
        StageMLP(16, 8, extra=2)


def test_cls_balance_caps_the_lm_gradient(tiny_store, tmp_path):
    """Training first scales w_cls so that L_cls's gradient is at most k x the saliency terms' (median over a few
    batches); never up; 0 turns it off."""
    from sdtp_lib.training.train import grad_norms, measure_balance
    model, conf, store = tiny_store
    pred = S.TokenPredictor.for_model(model, conf)
    batches = [[0, 1], [2, 3], [4, 5]]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        losses = step_losses(model, pred, conf, TrainConfig(), collate_store(store, [0, 1], conf.stage_layers, "cpu"),
                             torch.Generator().manual_seed(0))
        n_cls, n_sal = grad_norms(pred, losses, TrainConfig())
        big, _ = measure_balance(model, pred, conf, TrainConfig(cls_balance=1e6), store, batches, "cpu")
        small, info = measure_balance(model, pred, conf, TrainConfig(cls_balance=1e-3, balance_batches=3), store,
                                      batches, "cpu")
        off, _ = measure_balance(model, pred, conf, TrainConfig(cls_balance=0), store, batches, "cpu")
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    assert n_cls > 0 and n_sal > 0
    assert big == 1.0 and off == 1.0  # never scaled up; off is the paper's sum
    assert info["batches"] == 3 and small == pytest.approx(1e-3 / info["ratio"])
    assert info["ratio"] == pytest.approx(sorted(info["ratios"])[1])  # the median
    train(model, store, conf, TrainConfig(epochs=1, cls_balance=1e-3), tmp_path, progress=False)
    meta = json.loads((tmp_path / "pruning_config.json").read_text())
    assert 0 < meta["loss_balance"]["cls_scale"] < 1
    with pytest.raises(ValueError, match="cls_balance"):
        TrainConfig(cls_balance=-1)
