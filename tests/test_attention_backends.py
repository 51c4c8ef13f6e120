"""Attention backends: every one load_model offers is accepted by the engine; flash-attn 4 is refused with the way to
install it where it is missing (CI) or off a GPU, never replaced silently; the profile takes --attn and --keep-ratio."""
import json

import pytest

import sdtp_lib as S
from sdtp_lib import models as M
from sdtp_lib.cli import main
from sdtp_lib.engine import SUPPORTED_ATTN


def test_the_engine_accepts_every_backend_load_model_offers():
    assert SUPPORTED_ATTN == M.ATTN_IMPLEMENTATIONS and "flash_attention_4" in SUPPORTED_ATTN


def test_unknown_backend_is_refused_by_name():
    with pytest.raises(ValueError, match="'flash_attention_9' is not supported; use one of"):
        M.check_attn("flash_attention_9")


@pytest.mark.skipif(M._has_distribution("flash_attn", "flash-attn-4"), reason="flash-attn 4 is installed here")
def test_missing_flash_attn_4_says_how_to_install_it():
    with pytest.raises(ImportError, match=r"needs flash-attn 4, which is not installed: pip install '\.\[fa4\]'"):
        S.load_model("tiny-qwen2", attn_implementation="flash_attention_4")


def test_flash_attn_2_does_not_pass_for_flash_attn_4(monkeypatch):
    """flash-attn 2 and 4 both install the module `flash_attn`: only the flash-attn-4 distribution counts."""
    import importlib.metadata as md
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else None)
    monkeypatch.setattr(md, "packages_distributions", lambda: {"flash_attn": ["flash_attn"]})  # FA2's name
    assert M._has_distribution("flash_attn", "flash-attn") and not M._has_distribution("flash_attn", "flash-attn-4")
    with pytest.raises(ImportError, match="needs flash-attn 4"):
        M.check_attn("flash_attention_4", "cuda")
    monkeypatch.setattr(md, "packages_distributions", lambda: {"flash_attn": ["flash_attn_4"]})
    M.check_attn("flash_attention_4", "cuda")  # installed, on a GPU: accepted
    with pytest.raises(ValueError, match="runs on a CUDA GPU"):
        M.check_attn("flash_attention_4", "cpu")


@pytest.mark.parametrize("verb", ["generate", "profile", "synthetic"])
def test_every_verb_with_attn_refuses_a_missing_backend_in_one_line(verb, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(M, "_has_distribution", lambda module, dist: False)
    args = {"generate": ["generate", "--model", "tiny-qwen2", "--prompt", "hi"],
            "profile": ["profile", "--model", "tiny-qwen2", "--lengths", "64", "--device", "cpu", "--out",
                        str(tmp_path / "p.json")],
            "synthetic": ["synthetic", "--model", "tiny-qwen2", "--lengths", "256", "--tasks", "passkey",
                          "--n-samples", "1", "--scorers", "dense", "--device", "cpu", "--out", str(tmp_path / "s")]}
    assert main(args[verb] + ["--attn", "flash_attention_4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs flash-attn 4" in err and "'.[fa4]'" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "p.json").exists()


def test_profile_keep_ratio_sets_the_schedule(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "200", "--variants", "sdtp", "--engines", "hf",
                 "--new-tokens", "2", "--repeats", "1", "--scorer", "norm", "--device", "cpu", "--keep-ratio", "0.8",
                 "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["header"]["profile_config"]["keep_ratio"] == 0.8 and d["header"]["attn"] == "sdpa"
    model, _ = S.load_model("tiny-qwen2")
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.8, num_stages=10)
    assert d["rows"][0]["kept_per_layer"] == conf.tokens_per_layer(200, model.config.num_hidden_layers)
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "64", "--keep-ratio", "1.5", "--device", "cpu",
                 "--out", str(tmp_path / "q.json")]) == 2
    assert "keep_ratio 1.5: must be in (0, 1]" in capsys.readouterr().err
