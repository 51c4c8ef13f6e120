"""The profiler's output: every field the latency JSON promises, from a run on a tiny model (CPU)."""
import json
from pathlib import Path

import pytest

from sdtp_lib.speed import profiling as P
from sdtp_lib.cli import main

ROW_FIELDS = {"prompt_len", "variant", "engine", "prefill_s", "e2e_s", "decode_ms_per_token", "peak_mem_gib", "flops",
              "compression", "kept_per_layer", "tflops_per_s", "predictor_overhead_pct", "prefill_min_s",
              "prefill_max_s", "kv_cache_gib", "prefill_warmup_s", "e2e_warmup_s"}


def test_profile_rows_and_json(tmp_path, capsys):
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "64", "96", "--new-tokens", "3", "--repeats", "1",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("latency_*.json")
    d = json.loads(path.read_text())
    h = d["header"]
    assert h["complete"] is True and h["weights"] == "random (tiny test model)" and {"gpu", "transformers", "versions", "git_commit"} <= set(h)
    rows = d["rows"]
    assert len(rows) == 2 * 3 * 2  # lengths x variants x engines
    for r in rows:
        assert ROW_FIELDS <= set(r)
        assert r["prefill_s"] > 0 and r["e2e_s"] > 0 and r["flops"] > 0
        assert len(r["kept_per_layer"]) == 4
    dense = {(r["prompt_len"], r["engine"]): r for r in rows if r["variant"] == "dense"}
    for r in rows:
        if r["variant"] != "dense":
            assert r["flops"] < dense[(r["prompt_len"], r["engine"])]["flops"] and r["compression"] > 1
        if r["variant"] != "dense":  # KV bytes fall in proportion to the tokens kept
            d = dense[(r["prompt_len"], r["engine"])]
            assert r["kv_cache_gib"] / d["kv_cache_gib"] == pytest.approx(sum(r["kept_per_layer"]) / sum(d["kept_per_layer"]))
    assert "| prompt | variant | engine |" in capsys.readouterr().out
    assert (tmp_path / path.name.replace(".json", ".md")).exists()


def test_profile_refuses_overwrite(tmp_path):
    P.write(tmp_path / "x.json", {}, [])
    with pytest.raises(FileExistsError):
        P.write(tmp_path / "x.json", {}, [])


def test_qwen2_7b_random_needs_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert main(["profile", "--model", "qwen2-7b-random", "--lengths", "64"]) == 2
    assert "needs a GPU" in capsys.readouterr().err


def test_timed_scorer_is_transparent(tiny_sdpa):
    import torch

    import sdtp_lib as S
    model, _ = tiny_sdpa
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    pred = S.TokenPredictor.for_model(model, conf)
    ids = torch.randint(0, 256, (1, 80), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), S.pruning(model, pred, conf) as st:
        ref = model(ids).logits
    ts = P.TimedScorer(pred)
    with torch.no_grad(), S.pruning(model, ts, conf) as st2:
        out = model(ids).logits
    assert torch.equal(out, ref) and st2.flops_pruned == st.flops_pruned
    assert len(ts.spans) == len(conf.stage_layers) and ts.seconds() > 0


def test_timed_window_attention_is_transparent_and_timed(tiny_sdpa, tmp_path):
    import torch

    import sdtp_lib as S
    from sdtp_lib.scorers import WindowAttentionScorer
    model, _ = tiny_sdpa
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    ids = torch.randint(0, 256, (1, 80), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), S.pruning(model, "attention", conf) as st:
        ref = model(ids).logits
    ts = P.TimedScorer(WindowAttentionScorer())
    with torch.no_grad(), S.pruning(model, ts, conf) as st2:
        out = model(ids).logits
    kept = st.kept_per_layer  # the scorer's FLOPs are counted: key projection + window scores per scored token
    C, H, kvh = model.config.hidden_size, model.config.num_attention_heads, model.config.num_key_value_heads
    D = C // H
    scored = sum(kept[l - 1] for l in conf.stage_layers)
    extra = scored * (2 * C * kvh * D + 2 * H * D * 32)
    assert torch.equal(out, ref) and st2.flops_pruned == st.flops_pruned == S.prefill_flops(model, kept) + extra
    assert len(ts.spans) == len(conf.stage_layers) and ts.seconds() > 0
    assert main(["profile", "--model", "tiny-qwen2", "--scorer", "attention", "--lengths", "64", "--new-tokens", "2",
                 "--repeats", "1", "--engines", "sdtp", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("latency_*.json")
    rows = json.loads(path.read_text())["rows"]
    assert all((r["predictor_overhead_pct"] > 0) == (r["variant"] != "dense") for r in rows)  # the scorer's time


def test_profile_resume_keeps_rows_and_refuses_other_config(tmp_path, capsys):
    args = ["profile", "--model", "tiny-qwen2", "--new-tokens", "2", "--repeats", "1", "--variants", "dense", "sdtp"]
    path = tmp_path / "latency_h200.json"
    assert main(args + ["--lengths", "64", "--out", str(path)]) == 0
    first = json.loads(path.read_text())["rows"]
    assert main(args + ["--lengths", "64", "80", "--resume", str(path)]) == 0
    d = json.loads(path.read_text())
    assert d["rows"][:len(first)] == first and {r["prompt_len"] for r in d["rows"]} == {64, 80}
    assert len(d["rows"]) == 2 * 2 * 2 and d["header"]["resumed"] == 1 and d["header"]["complete"] is True
    assert d["header"]["profile_config"]["lengths"] == [64, 80]
    assert main(args[:-1] + ["--lengths", "96", "--resume", str(path)]) == 2  # another variant set
    assert "different variants" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "results" / "2026-11-29_qwen2-7b-shape_latency_h200" / "latency.json"


@pytest.fixture(scope="module")
def qwen2_7b_meta():
    """Qwen2-7B's real shapes on the meta device: no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(Qwen2Config(**P.QWEN2_7B))


def test_committed_h200_profile_is_complete_and_consistent(qwen2_7b_meta):
    """The committed H200 latency run: the full grid, every field, FLOPs = the counter on Qwen2-7B's shapes, kept
    tokens = the schedule, KV bytes in proportion to the tokens kept, and docs/speed.md quotes its summary."""
    from sdtp_lib.config import SDTPConfig
    from sdtp_lib.flops import prefill_flops
    from sdtp_lib.scorers.predictor import TokenPredictor
    d = json.loads(COMMITTED.read_text())
    h, rows = d["header"], d["rows"]
    assert h["complete"] is True and "H200" in h["gpu"] and h["weights"].startswith("random")
    assert {"transformers", "versions", "git_commit"} <= set(h) and len(h["git_commit"]) == 40
    grid = {(r["prompt_len"], r["variant"], r["engine"]) for r in rows}
    assert grid == {(T, v, e) for T in (4096, 8192, 16384, 32768, 65536, 131072)
                    for v in ("dense", "sdtp", "sdtp-low") for e in ("hf", "sdtp")} and len(rows) == 36
    for r in rows:
        assert ROW_FIELDS <= set(r)
        assert r["prefill_min_s"] <= r["prefill_s"] <= r["prefill_max_s"] < r["e2e_s"]
        T, stages = r["prompt_len"], P.VARIANTS[r["variant"]]
        if stages is None:
            assert r["kept_per_layer"] == [T] * 28 and r["flops"] == prefill_flops(qwen2_7b_meta, [T] * 28)
            continue
        conf = SDTPConfig.for_model(qwen2_7b_meta, keep_ratio=0.9, num_stages=stages)
        assert r["kept_per_layer"] == conf.tokens_per_layer(T, 28)
        kept = r["kept_per_layer"]  # the predictor scores the tokens entering each stage
        pred = sum(kept[l - 1] for l in conf.stage_layers) * TokenPredictor.for_model(qwen2_7b_meta, conf).flops_per_token()
        assert r["flops"] == prefill_flops(qwen2_7b_meta, kept, predictor_flops=pred)
        dense = next(x for x in rows if (x["prompt_len"], x["variant"], x["engine"]) == (T, "dense", r["engine"]))
        assert r["kv_cache_gib"] / dense["kv_cache_gib"] == pytest.approx(sum(r["kept_per_layer"]) / (28 * T))
    doc = (ROOT / "docs" / "speed.md").read_text()
    for variant in ("sdtp", "sdtp-low"):
        for line in P.summary(rows, variant).splitlines()[2:]:
            assert line in doc, f"docs/speed.md's {variant} table is not the committed run's: {line}"
