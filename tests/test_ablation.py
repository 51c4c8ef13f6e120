"""The ablations (sdtp_lib.eval.ablation): each setting reaches the training or the engine as configured, the stage
counts compress equally, a predictor is never used at layers it was not trained for, and a rerun skips finished
settings."""
import json

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.config import parse_variant
from sdtp_lib.eval import ablation as A
from sdtp_lib.scorers.predictor import TokenPredictor
from sdtp_lib.scorers.registry import resolve_scorer
from sdtp_lib.training.train import TrainConfig, step_losses

SCHEMA = {"setting", "scorer", "seed", "keep_ratio", "start_layer", "stages", "compression", "flops_ratio",
          "heldout_loss", "heldout_loss_dense", "heldout_delta", "heldout_ci", "synthetic_accuracy",
          "synthetic_dense_accuracy", "synthetic_delta", "synthetic_ci", "n_synthetic", "n_heldout"}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tok = S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def tiny_cfg(**kw):
    base = dict(model="tiny-qwen2", samples=8, seq_len=200, seeds=(0,), device="cpu", train=TrainConfig(epochs=1),
                stage_counts=(1, 3), compression=1.3, keep_ratios=(0.9, 0.7), start_layers=(1, 2),
                start_keep_ratios=(0.9,), n_boot=200)
    return A.AblationConfig(**{**base, **kw})


# ------------------------------------------------------------------ losses: what is switched off has no gradient
def _batch(conf, T=48, P=36, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (B, T), generator=g)
    labels = torch.full((B, T), -100)
    labels[:, P:] = ids[:, P:]
    return dict(input_ids=ids, attention_mask=torch.ones(B, T, dtype=torch.long), labels=labels,
                prompt_len=torch.full((B,), P), saliency=[torch.randn(B, T, generator=g) for _ in conf.stage_layers])


def _grads(model, pred, conf, tcfg, batch, pick=lambda L: L["total"]):
    """Gradient over the predictor of pick(step_losses), with the Gumbel noise and the pairs drawn the same way."""
    torch.manual_seed(0)
    losses = step_losses(model, pred, conf, tcfg, batch, torch.Generator().manual_seed(0))
    g = torch.autograd.grad(pick(losses), list(pred.parameters()), allow_unused=True)
    return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, pred.parameters())])


@pytest.mark.parametrize("loss", ["no_rank", "no_mse"])
def test_a_switched_off_loss_term_does_not_reach_the_gradient(tiny, loss):
    model, _ = tiny
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    pred = TokenPredictor.for_model(model, conf, seed=0).float()
    batch, scale = _batch(conf), 0.25
    tcfg = A.loss_train_config(TrainConfig(), loss, seed=0, cls_scale=scale)
    assert tcfg.cls_balance == 0 and tcfg.w_cls == scale  # the full loss's effective L_cls weight, measured once
    on = "mse" if loss == "no_rank" else "rank"
    off = "rank" if loss == "no_rank" else "mse"
    got = _grads(model, pred, conf, tcfg, batch)
    want = _grads(model, pred, conf, tcfg, batch, lambda L: scale * L["cls"] + L[on])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert _grads(model, pred, conf, tcfg, batch, lambda L: L[off]).norm() > 1e-4  # the term would have mattered
    full = A.loss_train_config(TrainConfig(), "full", seed=0)
    assert (full.w_mse, full.w_rank) == (1.0, 1.0)
    assert not torch.allclose(_grads(model, pred, conf, full, batch), _grads(model, pred, conf, full, batch,
                                                                             lambda L: L["cls"] + L[on]))


def test_without_both_saliency_terms_the_targets_change_nothing(tiny):
    model, _ = tiny
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    pred = TokenPredictor.for_model(model, conf, seed=0).float()
    tcfg = A.loss_train_config(TrainConfig(), "no_both", seed=0, cls_scale=1.0)
    batch = _batch(conf)
    other = {**batch, "saliency": [s.flip(-1) * 3 + 1 for s in batch["saliency"]]}
    a, b = _grads(model, pred, conf, tcfg, batch), _grads(model, pred, conf, tcfg, other)
    assert a.norm() > 0 and torch.equal(a, b)
    full = A.loss_train_config(TrainConfig(), "full", seed=0)
    assert not torch.equal(_grads(model, pred, conf, full, batch), _grads(model, pred, conf, full, other))


def test_loss_settings_need_the_full_loss_and_known_names():
    with pytest.raises(ValueError, match="needs the full loss's cls_scale"):
        A.loss_train_config(TrainConfig(), "no_rank", seed=0)
    with pytest.raises(ValueError, match="must include 'full'"):
        A.AblationConfig(losses=("no_rank",))
    with pytest.raises(ValueError, match=r"unknown \['no_ce'\]"):
        A.AblationConfig(losses=("full", "no_ce"))
    with pytest.raises(ValueError, match="neither 'predictor' nor a policy"):
        A.AblationConfig(scorers=("predictor", "attenton"))
    with pytest.raises(ValueError, match="the ablation chooses them"):
        A.AblationConfig(synthetic=dict(scorers=["dense"]))


# ------------------------------------------------------------------ stages: equal compression
@pytest.mark.parametrize("depth", [24, 28, 30])
def test_stage_counts_compress_equally(depth):
    cfg = A.AblationConfig(compression=1.6)
    settings = [s for s in A.plan(cfg, "stages") if s.scorer == "attention"]
    confs = [parse_variant(s.variant).config(depth) for s in settings]
    assert [c.num_stages for c in confs] == [1, 5, 10]
    assert [c.stage_layers[:c.num_stages] for c in confs] == [confs[-1].stage_layers[:n] for n in (1, 5, 10)]
    T = cfg.reference_length
    comp = [T / (sum(c.tokens_per_layer(T)) / depth) for c in confs]
    assert comp == pytest.approx([1.6] * 3, rel=2e-3)
    assert len({c.keep_ratio for c in confs}) == 3  # fewer stages prune harder per stage


def test_stage_counts_compress_equally_in_the_engine(tiny):
    """The measured compression of a real prefill, 1 vs 3 stages at 1.3x (tiny model: 4 layers)."""
    model, _ = tiny
    got = []
    for s in [s for s in A.plan(tiny_cfg(scorers=("norm",)), "stages")]:
        conf = parse_variant(s.variant).config(model)
        with S.pruning(model, "norm", conf) as st:
            model(torch.randint(0, 256, (1, 2048), generator=torch.Generator().manual_seed(0)))
        got.append(st.compression)
    assert got == pytest.approx([1.3, 1.3], rel=0.01)


# ------------------------------------------------------------------ start layer: reaches the engine and the training
def test_start_layer_reaches_the_engine(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    seen = []
    real = A.sample_nll

    def spy(model, scorer, config, sample, engine):
        out = real(model, scorer, config, sample, engine)
        if config is not None:
            seen.append((config.stage_layers, out[2]))
        return out
    monkeypatch.setattr(A, "sample_nll", spy)
    cfg = tiny_cfg(ablations=("start_layer",), scorers=("attention",))
    _, val = A.training_samples(cfg.run_config(), tok)
    A.run_ablation(model, tok, cfg, "start_layer", tmp_path, None, val, A.Cost(4096), progress=False)
    firsts = sorted({layers[0] for layers, _ in seen})
    assert firsts == [1, 2]
    for layers, kept in seen:  # every layer before the first stage computes on the whole sequence, that one on fewer
        L = layers[0]
        assert len(set(kept[:L])) == 1 and kept[L] < kept[L - 1]
    res = json.loads((tmp_path / "start_layer" / "results.json").read_text())
    assert [r["start_layer"] for r in res["rows"]] == [None, 1, 2]


def test_one_saliency_pass_covers_every_layer_needed(tiny, tmp_path, monkeypatch):
    """Without a reused file the bank computes the saliency of every layer any setting needs in one pass."""
    model, tok = tiny
    cfg = tiny_cfg(samples=4)
    tr, _ = A.training_samples(cfg.run_config(), tok)
    bank = A.PredictorBank(model, cfg, tr, tmp_path, [1, 2, 3], progress=False)
    monkeypatch.setattr(bank, "placement", lambda L: S.SDTPConfig.for_model(model, num_stages=A.TRAIN_STAGES,
                                                                             start_layer=2 if L is None else L))
    assert bank.placement(None).stage_layers[0] == 2  # the default placement lacks layer 1
    passes = []
    real = A.SA.compute_saliency
    monkeypatch.setattr(A.SA, "compute_saliency", lambda m, s, layers, *a, **k: passes.append(list(layers))
                        or real(m, s, layers, *a, **k))
    assert bank.store_for([1, 2]).scores.keys() == {1, 2} and passes == [[1, 2, 3]]
    assert not list(tmp_path.glob("saliency_layers*"))


def test_a_predictor_is_refused_at_layers_it_was_not_trained_for(tiny, tmp_path):
    model, _ = tiny
    conf1 = S.SDTPConfig.for_model(model, start_layer=1)
    path = TokenPredictor.for_model(model, conf1).save(tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="has stages at layers"):
        resolve_scorer(str(path), model, parse_variant("sdtp@0.9+L2").config(model))


# ------------------------------------------------------------------ end to end on the tiny model, and resume
def test_losses_reach_the_training_and_results_follow_the_schema(tmp_path):
    cfg = tiny_cfg(ablations=("losses", "start_layer"), start_layers=(2,), scorers=("predictor",))
    res = A.run_ablations(cfg, tmp_path, progress=False)
    full = json.loads((tmp_path / "predictors" / "full_L1" / "seed0" / "pruning_config.json").read_text())
    scale = full["loss_balance"]["cls_scale"]
    for loss, (w_mse, w_rank) in A.LOSSES.items():
        tc = json.loads((tmp_path / "predictors" / f"{loss}_L1" / "seed0" / "pruning_config.json").read_text())
        tc = tc["train_config"]
        assert (tc["w_mse"], tc["w_rank"]) == (w_mse, w_rank)
        assert tc["w_cls"] == (1.0 if loss == "full" else scale) and tc["cls_balance"] == (1.0 if loss == "full" else 0)
    from sdtp_lib.training import saliency as SA  # 07 keeps its saliency's statistics: 08 needs no saliency file
    stats = json.loads((tmp_path / SA.STATS_FILE).read_text())
    assert stats == json.loads(json.dumps(SA.saliency_stats(SA.SaliencyStore.load(tmp_path / "saliency" /
                                                                                  SA.FILE_NAME))))
    start = json.loads((tmp_path / "predictors" / "full_L2" / "seed0" / "pruning_config.json").read_text())
    assert start["sdtp_config"]["stage_layers"][0] == 2  # its own predictor, trained for its placement
    assert [r["layer"] for r in stats["per_layer"]] == list(full["sdtp_config"]["stage_layers"])
    losses = json.loads((tmp_path / "losses" / "results.json").read_text())
    assert losses == res["losses"] and losses["ablation"] == "losses" and losses["commit"]
    assert {"config", "versions", "model"} <= set(losses)
    assert [r["setting"] for r in losses["rows"]] == ["dense"] + [A.LOSS_LABELS[k] for k in A.LOSSES]
    for r in losses["rows"]:
        assert SCHEMA <= set(r)
        assert r["heldout_delta"] == pytest.approx(r["heldout_loss"] - r["heldout_loss_dense"])
        assert r["n_heldout"] == 2 and r["synthetic_accuracy"] is None  # no suite asked for
        if r["scorer"] != "dense":
            assert r["heldout_ci"][0] <= r["heldout_delta"] <= r["heldout_ci"][1] and 0 < r["flops_ratio"] < 1
    assert (tmp_path / "losses" / "heldout.jsonl.gz").exists() and (tmp_path / "losses" / "results.md").exists()

    # a finished ablation is read, not rerun: a resumed run on another machine need not carry its predictors
    import shutil
    shutil.rmtree(tmp_path / "predictors")
    def no_training(*a, **k):
        raise AssertionError("a finished ablation trained a predictor")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "train", no_training)
        assert A.run_ablations(cfg, tmp_path, progress=False) == res
        # one more setting: the ablation runs again, and its finished settings were made with predictors that
        # are gone: refused rather than trained again (two predictors in one table) ...
        more = A.AblationConfig(**{**cfg.__dict__, "start_layers": (2, 3)})
        with pytest.raises(ValueError, match=r"predictors are gone \(.*full_L2/seed0/predictor.safetensors\)"):
            A.run_ablations(more, tmp_path, progress=False)
        shutil.rmtree(tmp_path / "start_layer")  # ... until its folder is removed: then it trains again
        with pytest.raises(AssertionError, match="trained a predictor"):
            A.run_ablations(more, tmp_path, progress=False)


def test_rerun_skips_finished_settings_and_adds_new_ones(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    syn = dict(tasks=["passkey"], lengths=[256], layouts=["question_last"], n_samples=1)
    cfg = tiny_cfg(ablations=("keep_ratio",), scorers=("attention",), keep_ratios=(0.9,), synthetic=syn)
    _, val = A.training_samples(cfg.run_config(), tok)
    first = A.run_ablation(model, tok, cfg, "keep_ratio", tmp_path, None, val, A.Cost(4096), progress=False)
    calls = []
    real = A.sample_nll
    monkeypatch.setattr(A, "sample_nll", lambda *a: calls.append(a[2]) or real(*a))
    again = A.run_ablation(model, tok, cfg, "keep_ratio", tmp_path, None, val, A.Cost(4096), progress=False)
    assert calls == [] and again["rows"] == first["rows"]
    assert first["rows"][1]["n_synthetic"] == 1 and first["rows"][1]["synthetic_ci"] is not None
    more = A.run_ablation(model, tok, A.AblationConfig(**{**cfg.__dict__, "keep_ratios": (0.9, 0.7)}), "keep_ratio",
                          tmp_path, None, val, A.Cost(4096), progress=False)
    assert len(calls) == len(val) and all(c.keep_ratio == 0.7 for c in calls)  # only the new setting ran
    assert more["rows"][:2] == first["rows"] and more["rows"][2]["setting"] == "r=0.7"
    with pytest.raises(ValueError, match="another configuration"):
        A.run_ablation(model, tok, A.AblationConfig(**{**cfg.__dict__, "seq_len": 300}), "keep_ratio", tmp_path,
                       None, val, A.Cost(4096), progress=False)


def test_ablations_of_one_run_answer_dense_once(tiny, tmp_path, monkeypatch):
    """The suite's dense answers of a second ablation are copied from the first's folder, not asked again."""
    from sdtp_lib.eval import synthetic as SY
    model, tok = tiny
    syn = dict(tasks=["passkey"], lengths=[256], layouts=["question_last"], n_samples=1)
    cfg = tiny_cfg(ablations=("keep_ratio",), scorers=("attention",), keep_ratios=(0.9,), synthetic=syn)
    _, val = A.training_samples(cfg.run_config(), tok)
    asked, real = [], SY._predict
    monkeypatch.setattr(SY, "_predict", lambda *a: asked.append(a[5]) or real(*a))
    first = A.run_ablation(model, tok, cfg, "keep_ratio", tmp_path, None, val, A.Cost(4096), progress=False)
    assert sorted(asked) == ["dense", "sdtp@0.9:attention"]
    second = A.run_ablation(model, tok, cfg, "stages", tmp_path, None, val, A.Cost(4096), progress=False)
    assert "dense" not in asked[2:] and len(asked) == 2 + 2  # the two stage settings only
    dense = lambda res: (res["rows"][0]["synthetic_accuracy"], res["rows"][1]["synthetic_dense_accuracy"])  # noqa
    assert dense(second) == dense(first)


def test_the_suite_in_worker_processes_gives_the_same_rows(tiny, tmp_path, monkeypatch):
    """synthetic_workers = 2: the suite's answers come from two processes with their own model, the rows are those of
    one process (all in one thread: the same arithmetic), and the folder's configuration does not record the count."""
    from sdtp_lib.eval import workers as W
    model, tok = tiny
    syn = dict(tasks=["passkey"], lengths=[256], layouts=["question_last"], n_samples=2)
    cfg = tiny_cfg(ablations=("keep_ratio",), scorers=("attention",), keep_ratios=(0.9,), synthetic=syn)
    _, val = A.training_samples(cfg.run_config(), tok)
    monkeypatch.setattr(W.os, "cpu_count", lambda: 2)  # one thread for each of the 2 workers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = A.run_ablation(model, tok, cfg, "keep_ratio", tmp_path / "one", None, val, A.Cost(4096), progress=False)
        two = A.run_ablation(model, tok, A.AblationConfig(**{**cfg.__dict__, "synthetic_workers": 2}), "keep_ratio",
                             tmp_path / "two", None, val, A.Cost(4096), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert two["rows"] == one["rows"] and two["rows"][1]["n_synthetic"] == 2
    suite = [tmp_path / d / "keep_ratio" / "synthetic" for d in ("one", "two")]
    assert [sorted(p.name for p in s.glob("predictions*")) for s in suite] == [["predictions.jsonl.gz"]] * 2
    assert [json.loads((tmp_path / d / "keep_ratio" / "config.json").read_text()) for d in ("one", "two")] == \
        [json.loads((tmp_path / "one" / "keep_ratio" / "config.json").read_text())] * 2
    with pytest.raises(ValueError, match="synthetic_workers must be an integer >= 1"):
        A.AblationConfig(**{**cfg.__dict__, "synthetic_workers": 0})
