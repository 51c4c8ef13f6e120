"""SDTPConfig, TokenPredictor and model loading: schedules, round-trips and clear errors."""
import json

import pytest
import torch

import sdtp_lib as S


def test_default_placement():
    assert S.SDTPConfig.for_model(28).stage_layers == (4, 7, 10, 13, 16, 19, 21, 23, 25, 27)  # Qwen2-7B
    assert S.SDTPConfig.for_model(32).stage_layers == tuple(range(4, 32, 3))  # Llama2-7B: step 3 to the end
    assert S.SDTPConfig.for_model(28, num_stages=5).stage_layers == (4, 7, 10, 13, 16)  # SDTP-low
    assert S.SDTPConfig.for_model(4).stage_layers == (1, 2, 3)  # shallow: fewer stages
    for depth in (4, 12, 24, 28, 30, 32, 80):  # SDTP-low is always SDTP's first stages: one predictor serves both
        full = S.SDTPConfig.for_model(depth).stage_layers
        assert S.SDTPConfig.for_model(depth, num_stages=5).stage_layers == full[:5]
    assert S.SDTPConfig.for_model(24, num_stages=5).stage_layers == (3, 6, 9, 11, 13)  # Qwen2.5-0.5B


def test_keep_schedule_counts_original_length():
    c = S.SDTPConfig.for_model(28)
    assert c.keep_schedule(1000) == [900, 810, 729, 657, 591, 532, 479, 431, 388, 349]
    assert c.keep_count(2, 100) == 81  # ceil(0.81 * 100), not 82 from float noise
    per_layer = c.tokens_per_layer(1000)
    assert per_layer[:4] == [1000] * 4 and per_layer[4] == 900 and per_layer[-1] == 349
    assert c.keep_schedule(10)[-1] == 4 + 1  # ceil(0.35 * 10) = 4 < 4 sinks + 1 local token


@pytest.mark.parametrize("bad, msg", [
    (dict(stage_layers=(0, 3)), "no stage at layer 0"),
    (dict(stage_layers=(3, 3)), "strictly increasing"),
    (dict(stage_layers=(5, 2)), "strictly increasing"),
    (dict(stage_layers=(2, 40), num_layers=28), "beyond the model's depth"),
    (dict(stage_layers=(2,), keep_ratio=0), "keep_ratio"),
    (dict(stage_layers=(2,), keep_ratio=1.01), "keep_ratio"),
    (dict(stage_layers=()), "empty"),
])
def test_config_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        S.SDTPConfig(**bad)


def test_config_json_roundtrip(tmp_path):
    c = S.SDTPConfig.for_model(28, keep_ratio=0.8, num_stages=5)
    assert S.SDTPConfig.from_json(c.to_json()) == c
    c.to_json(tmp_path / "c.json")
    assert S.SDTPConfig.from_json(tmp_path / "c.json") == c
    with pytest.raises(ValueError, match="unknown field"):
        S.SDTPConfig.from_dict({**c.to_dict(), "typo": 1})


def test_predictor_roundtrip_and_scores(tiny_sdpa, tmp_path):
    model, _ = tiny_sdpa
    conf = S.SDTPConfig.for_model(model)
    pred = S.TokenPredictor.for_model(model, conf)
    assert pred.width == model.config.hidden_size // 4
    path = pred.save(tmp_path / "p.safetensors")
    back = S.TokenPredictor.load(path, model=model, config=conf)
    h = torch.randn(2, 7, model.config.hidden_size)
    torch.testing.assert_close(back(h, 1), pred(h, 1))
    lg = pred.logits(h, 1)
    torch.testing.assert_close(pred(h, 1), lg[..., 0] - lg[..., 1])
    with pytest.raises(FileExistsError):
        pred.save(path)
    with S.pruning(model, back, conf) as st:
        model(torch.randint(0, 256, (1, 60)))
    assert st.kept_per_stage and st.flops_pruned < st.flops_dense


def test_predictor_under_one_percent_of_flops():
    from transformers import AutoModelForCausalLM, Qwen2Config
    # Qwen2-7B's shapes, 2 layers only (FLOPs per token scale with depth; meta device: no memory)
    c = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=2, num_attention_heads=28,
                    num_key_value_heads=4, vocab_size=152064)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(c)
    pred = S.TokenPredictor(c.hidden_size, (1,))
    per_layer_token = S.prefill_flops(m, [1, 1], logits_positions=0) / 2
    assert pred.flops_per_token() * 10 < 0.01 * per_layer_token * 28  # 10 stages vs 28 layers


def test_predictor_for_other_model_refused(tmp_path):
    qwen, _ = S.load_model("tiny-qwen2")
    llama, _ = S.load_model("tiny-llama")
    conf = S.SDTPConfig.for_model(qwen)
    path = S.TokenPredictor.for_model(qwen, conf).save(tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="trained for another model"):
        S.TokenPredictor.load(path, model=llama)
    wide = S.TokenPredictor(128, conf.stage_layers)
    with pytest.raises(ValueError, match="hidden size 128"):
        with S.pruning(qwen, wide, conf):
            pass
    with pytest.raises(ValueError, match="stages at layers"):
        S.TokenPredictor.load(path, model=qwen, config=S.SDTPConfig(stage_layers=(2, 3)))


def test_corrupt_predictor_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        S.TokenPredictor.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="corrupt"):
        S.TokenPredictor.load(bad)
    good = S.TokenPredictor(64, (1, 2)).save(tmp_path / "good.safetensors")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="corrupt"):
        S.TokenPredictor.load(trunc)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an SDTP predictor"):
        S.TokenPredictor.load(tmp_path / "other.safetensors")


def test_unknown_model_spec_and_family(tmp_path):
    with pytest.raises(S.UnsupportedModelError, match="unknown model spec"):
        S.load_model("no-such-model")
    d = tmp_path / "gpt2ish"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(S.UnsupportedModelError, match="llama, qwen2, mistral"):
        S.load_model(str(d))
    with pytest.raises(ValueError, match="attn_implementation"):
        S.load_model("tiny-qwen2", attn_implementation="flex_attention")


def test_tiny_models_are_deterministic_and_have_tokenizer():
    a, tok = S.load_model("tiny-llama", seed=1)
    b, _ = S.load_model("tiny-llama", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ids = tok("hello world")["input_ids"]
    assert tok.decode(ids) == "hello world" and max(ids) < a.config.vocab_size


def test_local_checkpoint_roundtrip(tmp_path):
    model, tok = S.load_model("tiny-qwen2")
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    back, tok2 = S.load_model(str(tmp_path / "ckpt"), dtype="float32", device="cpu")
    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits)


def test_predictor_serves_sdtp_low_with_its_first_stages():
    model, _ = S.load_model("tiny-llama")
    full = S.SDTPConfig(stage_layers=(1, 2, 3), num_layers=4)
    pred = S.TokenPredictor.for_model(model, full)
    pred.check_compatible(model, S.SDTPConfig(stage_layers=(1, 2), num_layers=4))  # the first two stages: fine
    with pytest.raises(ValueError, match="first stages only"):
        pred.check_compatible(model, S.SDTPConfig(stage_layers=(2, 3), num_layers=4))
    ids = torch.randint(0, 256, (1, 60))
    with torch.no_grad(), S.pruning(model, pred, S.SDTPConfig(stage_layers=(1, 2), num_layers=4)) as st:
        model(ids)
    assert st.kept_per_stage == S.SDTPConfig(stage_layers=(1, 2), num_layers=4).keep_schedule(60)


def test_start_layer_moves_the_placement():
    from sdtp_lib.config import SDTPConfig
    assert SDTPConfig.for_model(28, start_layer=4) == SDTPConfig.for_model(28)
    assert SDTPConfig.for_model(28, start_layer=8).stage_layers == (8, 11, 13, 15, 17, 19, 21, 23, 25, 27)
    assert SDTPConfig.for_model(28, num_stages=5, start_layer=8).stage_layers == (8, 11, 13, 15, 17)  # SDTP-low
    for bad in (0, 28):
        with pytest.raises(ValueError, match=r"start_layer must be in \[1, 27\]"):
            SDTPConfig.for_model(28, start_layer=bad)


@pytest.mark.parametrize("start", [None, 6, 10])
def test_for_compression_hits_the_target_and_a_later_start_needs_a_steeper_ratio(start):
    from sdtp_lib.config import SDTPConfig
    T = 32768
    got = lambda c: T / (sum(c.tokens_per_layer(T)) / 28)  # noqa: E731
    c = SDTPConfig.for_compression(28, 2.04, start_layer=start)
    assert got(c) == pytest.approx(2.04, rel=1e-3) and c.stage_layers[0] == (start or 4)
    assert c.keep_ratio <= SDTPConfig.for_compression(28, 2.04, start_layer=(start or 4) - 1).keep_ratio
    assert SDTPConfig.for_compression(28, 2.04).keep_ratio == pytest.approx(0.8, abs=1e-3)  # r = 0.8 is 2.04x
    with pytest.raises(ValueError, match="out of reach"):
        SDTPConfig.for_compression(28, 50.0, start_layer=start)


def test_parse_variant():
    from sdtp_lib.config import Variant, parse_variant
    assert parse_variant("dense") == Variant("dense") and parse_variant("dense").config(28) is None
    assert parse_variant("sdtp") == Variant("sdtp") and parse_variant("sdtp").config(28, 0.7).keep_ratio == 0.7
    assert parse_variant("sdtp-low@0.8+L6") == Variant("sdtp-low", 0.8, None, 6)
    assert parse_variant("sdtp-low@0.8+L6").config(28).stage_layers == (6, 9, 12, 15, 17)
    assert parse_variant("sdtp@2.04x") == Variant("sdtp", None, 2.04, None)
    assert parse_variant("sdtp@0.8+R0.02") == Variant("sdtp", 0.8, None, None, 0.02)
    c = parse_variant("sdtp@0.8+L6+R0.02").config(28)
    assert (c.local_frac, c.keep_ratio, c.stage_layers[0]) == (0.02, 0.8, 6)
    assert parse_variant("sdtp@0.8").config(28).local_frac == 0.1  # the paper's newest 10%
    one = parse_variant("sdtp@2x+S1")  # one stage at a given compression: the single- vs multi-stage ablation
    assert one.stages == 1 and len(one.config(28).stage_layers) == 1
    c = one.config(28)
    assert abs(28 / (sum(c.tokens_per_layer(32768)) / 32768) - 2.0) < 0.01
    assert parse_variant("sdtp-low+S3").stages == 3 and parse_variant("sdtp-low").stages == 5
    assert parse_variant("dense+H0.4") == Variant("dense", kv_budget=0.4) and parse_variant("dense+H0.4").stages is None
    v = parse_variant("sdtp@0.8+L6+R0.02+S5+H0.4")
    assert (v.keep_ratio, v.start_layer, v.local_frac, v.stages, v.kv_budget) == (0.8, 6, 0.02, 5, 0.4)
    for bad, why in [("dense@0.8", "no keep ratio"), ("sdtp@2", r"\(0, 1\]"), ("sdtp@0.5x", ">= 1x"),
                     ("sdtp+L0", ">= 1"), ("fast", "not a variant"), ("sdtp@1.2.3", "not a number"),
                     ("sdtp+L8@0.8", "not a variant"), ("sdtp+R1.5", r"in \[0, 1\]"),
                     ("dense+R0.1", "no keep ratio"), ("sdtp+R0.1+L8", "not a variant"), ("dense+S2", "no keep ratio"),
                     ("sdtp+S0", ">= 1"), ("sdtp+H0", r"in \(0, 1\]"), ("sdtp+H1.5", r"in \(0, 1\]"),
                     ("sdtp+Hx", "not a number"), ("sdtp+H0.4+S2", "not a variant")]:
        with pytest.raises(ValueError, match=why):
            parse_variant(bad)
