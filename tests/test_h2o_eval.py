"""H2O (+H<b>) through the evaluations and the command line, on the tiny random Qwen2: specs, the synthetic suite,
LongBench (the project's loop with generate's stop rules), lm-eval's refusal, --kv-budget."""
import json
from pathlib import Path

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.cli import main
from sdtp_lib.eval import longbench as L
from sdtp_lib.eval import scorers as SC
from sdtp_lib.eval import synthetic as Y

from .conftest import favouring

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "longbench_fixture"
BAD_SPECS = ["dense+H0", "dense+H-0.1", "dense+H1.5", "dense+Hnan", "dense+Hx", "dense+H0.4:norm", "sdtp+H0:norm"]


@pytest.fixture(scope="module")
def tiny():
    return S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")


def test_specs_carry_the_budget():
    v, name = SC.parse_spec("dense+H0.4")
    assert (v.name, v.kv_budget, v.stages, name) == ("dense", 0.4, None, None)
    v, name = SC.parse_spec("sdtp@0.8+R0.02+H0.4:attention")
    assert (v.keep_ratio, v.local_frac, v.kv_budget, name) == (0.8, 0.02, 0.4, "attention")
    assert SC.with_budgets(["dense", "sdtp:norm", "sdtp@0.8+L6:attention"], 0.4) == [
        "dense", "sdtp:norm", "sdtp@0.8+L6:attention", "dense+H0.4", "sdtp+H0.4:norm", "sdtp@0.8+L6+H0.4:attention"]
    assert SC.with_budgets(["dense"], None) == ["dense"]
    for bad in BAD_SPECS:
        with pytest.raises(ValueError, match="scorer"):
            SC.parse_spec(bad)
    for bad in (0, 1.5, float("nan"), "0.4"):
        with pytest.raises(ValueError, match="kv_budget"):
            SC.with_budgets(["dense"], bad)
    with pytest.raises(ValueError, match="already has an H2O budget"):
        SC.with_budgets(["dense+H0.5"], 0.4)


def test_lmeval_refuses_a_budget():
    from sdtp_lib.eval.lmeval import _suite_runs
    for spec in ("dense+H0.4", "sdtp+H0.4:norm"):
        with pytest.raises(ValueError, match="loglikelihood-only"):
            _suite_runs(None, None, [spec], 0.9, "auto")


def test_synthetic_suite_with_budgets(tiny, tmp_path):
    """+H1.0 answers as its spec without a budget; a small budget holds less KV; every row has KV bytes and decode
    ms/token (the static loop for every scorer once one has a budget); "hf" decoding with a budget is refused."""
    model, tok = tiny
    scorers = ("dense", "sdtp:norm", "dense+H1.0", "sdtp+H1.0:norm", "dense+H0.3")
    cfg = Y.SuiteConfig(tasks=("passkey",), lengths=(256,), layouts=("question_last",), n_samples=2, scorers=scorers)
    assert Y.resolve_decode(cfg, model) == "static"
    rows = Y.run_suite(model, tok, cfg, tmp_path / "s", progress=False)
    by = {(r["id"], r["scorer"]): r for r in rows}
    c = model.config
    per_token = 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4  # float32
    for r in rows:
        assert r["kv_bytes"] > 0 and r["decode_ms_per_token"] > 0
        if r["scorer"] in ("dense+H1.0", "sdtp+H1.0:norm"):
            twin = by[r["id"], r["scorer"].replace("+H1.0", "")]
            assert r["prediction"] == twin["prediction"] and r["kv_bytes"] == twin["kv_bytes"]
        if r["scorer"] == "dense+H1.0":  # with a budget: the share of the needle the caches hold at the end
            assert r["needle_kept"] == 1.0
        if r["scorer"] == "dense+H0.3":
            assert 0.0 <= r["needle_kept"] <= 1.0
        if r["scorer"] == "dense":
            assert r["kv_bytes"] == c.num_hidden_layers * (r["prompt_len"] + 15) * per_token  # passkey: 16 new
            assert by[r["id"], "dense+H0.3"]["kv_bytes"] < 0.35 * r["kv_bytes"]
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert set(res["efficiency"]) == set(scorers) and res["efficiency"]["dense+H0.3"]["kv_bytes"] > 0
    assert "KV held at the end, MiB" in (tmp_path / "s" / "results.md").read_text()
    with pytest.raises(ValueError, match="only the static decode loop"):
        Y.SuiteConfig(scorers=("dense", "dense+H0.4"), decode="hf")


def test_longbench_with_budgets(tiny, tmp_path):
    model, tok = tiny
    specs = ["dense", "sdtp:norm", "dense+H1.0", "sdtp+H1.0:norm", "dense+H0.3"]
    L.run_longbench(model, tok, ["hotpotqa", "trec"], FIXTURE, tmp_path / "lb", scorers=specs, limit=2,
                    max_length=300, progress=False)
    rows = {n: {t: L.read_predictions(L.pred_path(tmp_path / "lb", n, t)) for t in ("hotpotqa", "trec")}
            for n in ("dense", "sdtp:norm", "dense+H1.0", "sdtp+H1.0:norm", "dense+H0.3")}
    for t in ("hotpotqa", "trec"):  # b = 1.0: generate's answers through the project's loop and its stop rules
        for a, b in (("dense", "dense+H1.0"), ("sdtp:norm", "sdtp+H1.0:norm")):
            answers = lambda n: [(r["pred"], r["new_tokens"]) for r in rows[n][t]]  # noqa: E731
            assert answers(a) == answers(b)
            assert [r["kv_bytes"] for r in rows[a][t]] == [r["kv_bytes"] for r in rows[b][t]]
        assert all(h["kv_bytes"] < d["kv_bytes"] for h, d in zip(rows["dense+H0.3"][t], rows["dense"][t]))
    res = L.score_longbench(tmp_path / "lb", write=True)
    assert res["dense"] == "dense" and res["scorers"]["dense+H0.3"]["kv_budget"] == 0.3
    assert res["scorers"]["dense+H0.3"]["mean_kv_bytes"] < res["scorers"]["dense"]["mean_kv_bytes"]
    assert "KV at the end, MiB" in L.markdown(res)
    with pytest.raises(ValueError, match="spec string"):
        L.resolve_scorers(model, {"dense+H0.4": None})


def test_longbench_h2o_keeps_samsum_stop_rules(tiny):
    """As generate: one other token first (min_new_tokens), then the newline ends the answer."""
    model, tok = tiny
    nl = tok.encode("\n", add_special_tokens=False)[-1]
    sample = L.load_task(FIXTURE, "samsum", limit=1)[0]
    ids = L.build_prompt(tok, sample, "samsum", max_length=200)
    with favouring(model, nl):
        ref = L.generate_answer(model, tok, ids, "samsum")
        rec, stats = L.generate_answer_h2o(model, tok, ids, "samsum", None, None, 0.5, warm=False)
    assert rec["new_tokens"] == ref["new_tokens"] == 2 and rec["pred"] == ref["pred"] and stats is None


def test_command_lines(tmp_path, capsys):
    base = ["generate", "--model", "tiny-qwen2", "--prompt", "The quick brown fox. " * 6, "--max-new-tokens", "4"]
    assert main(base + ["--kv-budget", "0.4", "--json", str(tmp_path / "g.json")]) == 0
    assert "H2O budget 0.4" in capsys.readouterr().out
    assert json.loads((tmp_path / "g.json").read_text())["h2o"]["kv_budget"] == 0.4
    for bad in ("0", "1.5", "nan"):
        assert main(base + ["--kv-budget", bad]) == 2
        assert "kv_budget" in capsys.readouterr().err
    assert main(base + ["--kv-budget", "x"]) == 2  # argparse: not a number
    assert "--kv-budget" in capsys.readouterr().err
    out = tmp_path / "syn"
    assert main(["synthetic", "--model", "tiny-qwen2", "--tasks", "passkey", "--lengths", "256", "--n-samples", "1",
                 "--layouts", "question_last", "--scorers", "dense", "--kv-budget", "0.5", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["suite"]["scorers"] == ["dense", "dense+H0.5"]
    capsys.readouterr()
    assert main(["synthetic", "--model", "tiny-qwen2", "--scorers", "dense", "--kv-budget", "2", "--out",
                 str(tmp_path / "x")]) == 2
    assert "kv_budget" in capsys.readouterr().err
    args = ["longbench", "run", "--model", "tiny-qwen2", "--data", str(FIXTURE), "--out", str(tmp_path / "lb"),
            "--tasks", "trec", "--scorers", "dense", "--limit", "1", "--max-length", "300", "--device", "cpu"]
    assert main(args + ["--kv-budget", "nan"]) == 2
    assert "kv_budget" in capsys.readouterr().err and not (tmp_path / "lb").exists()
    assert main(args + ["--kv-budget", "0.5"]) == 0
    assert "dense+H0.5" in capsys.readouterr().out
