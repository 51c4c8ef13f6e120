"""The profiler's output: every field the latency JSON promises, from a run on a tiny model (CPU)."""
import json
from pathlib import Path

import pytest

from sdtp_lib.speed import profiling as P
from sdtp_lib.cli import main

ROW_FIELDS = {"prompt_len", "variant", "engine", "prefill_s", "e2e_s", "decode_ms_per_token", "peak_mem_gib", "flops",
              "compression", "kept_per_layer", "tflops_per_s", "predictor_overhead_pct", "prefill_min_s",
              "prefill_max_s", "kv_cache_gib", "prefill_warmup_s", "e2e_warmup_s"}
NEW_ROW_FIELDS = {"attn", "keep_ratio", "decode_attn"}  # rows since several backends per run (not in older files)


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
        assert ROW_FIELDS | NEW_ROW_FIELDS <= set(r) and r["attn"] == "sdpa"
        assert r["keep_ratio"] == (None if r["variant"] == "dense" else 0.9)
        assert r["decode_attn"] == ("matmul" if r["engine"] == "sdtp" else None)
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
    assert len(ts.spans) == len(conf.stage_layers) and sum(ts.durations()) > 0


def test_scorer_share_leaves_out_the_warm_up_prefill(tiny_sdpa):
    import time

    import torch

    import sdtp_lib as S
    from sdtp_lib.scorers import WindowAttentionScorer
    model, _ = tiny_sdpa
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    ids = torch.randint(0, 256, (1, 80), generator=torch.Generator().manual_seed(0))

    class SlowFirst(WindowAttentionScorer):  # a first call that pays a one-off cost, as a new shape does on a GPU
        calls = 0

        def __call__(self, *a, **kw):
            SlowFirst.calls += 1
            if SlowFirst.calls == 1:
                time.sleep(0.5)
            return super().__call__(*a, **kw)
    with torch.no_grad():
        row = P._prefill_row(model, ids, conf, SlowFirst(), lambda: None, repeats=3)
    assert SlowFirst.calls == 4 * len(conf.stage_layers)  # warm-up + 3 timed prefills, one call per stage
    scorer_s = row["predictor_overhead_pct"] / 100 * row["prefill_s"]
    assert 0 < scorer_s < 0.25  # the 0.5 s of the warm-up's first call is not in it (it was: 0.5 / 4 per prefill)
    ts = P.TimedScorer(WindowAttentionScorer())
    ts.spans = [0.1, 0.2, 1.0, 2.0, 3.0, 4.0]
    assert ts.per_prefill(3) == pytest.approx([3.0, 7.0]) and ts.per_prefill(2, skip=0) == pytest.approx([1.3, 9.0])
    with pytest.raises(ValueError, match="do not split into 4 prefills"):
        ts.per_prefill(4)


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
    assert len(ts.spans) == len(conf.stage_layers) and sum(ts.durations()) > 0
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


def test_profile_several_attns_and_keep_ratios(tmp_path, capsys, monkeypatch):
    """One run, two backends (switched at runtime, restored after), sdtp at the config's r and at its own r."""
    import sdtp_lib as S
    loaded, seen = [], []
    load, prefill_row = P.load_profile_model, P._prefill_row
    monkeypatch.setattr(P, "load_profile_model", lambda *a, **k: loaded.append(load(*a, **k)) or loaded[-1])
    monkeypatch.setattr(P, "_prefill_row", lambda model, *a: seen.append(model.config._attn_implementation) or
                        prefill_row(model, *a))  # the backend each row's prefill ran with
    path = tmp_path / "p.json"
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "64", "--new-tokens", "2", "--repeats", "1",
                 "--attn", "sdpa", "eager", "--variants", "dense", "sdtp", "sdtp@0.7", "--engines", "hf", "sdtp",
                 "--device", "cpu", "--out", str(path)]) == 0
    model = loaded[0][0]
    assert model.config._attn_implementation == "sdpa"  # restored
    d = json.loads(path.read_text())
    rows = d["rows"]
    assert d["header"]["attn"] == "sdpa" and d["header"]["profile_config"]["attns"] == ["sdpa", "eager"]
    assert len(rows) == 1 * 2 * 3 * 2 and seen == [r["attn"] for r in rows]  # lengths x attns x variants x engines
    assert {r["attn"] for r in rows} == {"sdpa", "eager"}
    L = model.config.num_hidden_layers
    for r in rows:
        assert ROW_FIELDS | NEW_ROW_FIELDS <= set(r)
        assert r["keep_ratio"] == {"dense": None, "sdtp": 0.9, "sdtp@0.7": 0.7}[r["variant"]]
        if r["variant"] == "sdtp@0.7":
            twin = next(x for x in rows if (x["variant"], x["engine"], x["attn"]) == ("sdtp", r["engine"], r["attn"]))
            assert sum(r["kept_per_layer"]) < sum(twin["kept_per_layer"])
            assert r["kept_per_layer"] == S.SDTPConfig.for_model(model, keep_ratio=0.7).tokens_per_layer(64, L)
    md = (tmp_path / "p.md").read_text()
    assert "| prompt | variant | engine | attn | prefill s" in md and "| 64 | sdtp@0.7 | sdtp | eager |" in md
    table = P.backend_summary(rows).splitlines()
    assert len(table) == 2 + 1 * 2 * 2  # header + one line per (length, attn, pruned variant)
    assert "HF dense sdpa" in table[0] and table[2].startswith("| 64 | sdpa | sdtp |")
    assert all("| matmul |" in line for line in table[2:])  # the decode loop's kernel (tiny model: matmul)
    assert len(P.summary(rows, "sdtp@0.7", attn="eager").splitlines()) == 3


@pytest.mark.parametrize("args, needles", [
    (["--variants", "sdtp@2"], ["ProfileConfig.variants ['sdtp@2']", "(0, 1]"]),
    (["--variants", "dense", "dense@0.8"], ["ProfileConfig.variants", "'dense@0.8'", "no keep ratio"]),
    (["--attn", "sdpa", "sdpa"], ["ProfileConfig.attns ['sdpa', 'sdpa']", "without repeats"]),
    (["--variants", "sdtp", "sdtp@0.9"], ["'sdtp' and 'sdtp@0.9' are the same variant"]),
])
def test_profile_refuses_bad_variants_and_attns_in_one_line(args, needles, tmp_path, capsys, monkeypatch):
    from .test_cli import one_line_error
    monkeypatch.setattr(P, "load_profile_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "64", "--device", "cpu", "--out",
                 str(tmp_path / "p.json"), *args]) == 2
    one_line_error(capsys.readouterr().err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_profile_resume_with_several_attns(tmp_path, capsys):
    args = ["profile", "--model", "tiny-qwen2", "--new-tokens", "2", "--repeats", "1", "--variants", "dense",
            "sdtp@0.8", "--engines", "sdtp", "--device", "cpu"]
    path = tmp_path / "latency.json"
    assert main(args + ["--attn", "sdpa", "eager", "--lengths", "64", "--out", str(path)]) == 0
    first = json.loads(path.read_text())["rows"]
    assert main(args + ["--attn", "sdpa", "eager", "--lengths", "64", "80", "--resume", str(path)]) == 0
    d = json.loads(path.read_text())
    assert d["rows"][:len(first)] == first and len(d["rows"]) == 2 * 2 * 2 * 1 and d["header"]["complete"] is True
    assert main(args + ["--attn", "sdpa", "--lengths", "96", "--resume", str(path)]) == 2  # another backend set
    assert "different attns" in capsys.readouterr().err
    cut = json.loads(path.read_text())  # stopped inside length 80: its eager rows are missing, one sdpa row too
    cut["rows"] = [r for r in cut["rows"] if (r["prompt_len"], r["attn"]) != (80, "eager")][:-1]
    cut["header"]["complete"] = False
    path.write_text(json.dumps(cut))
    kept = [r for r in cut["rows"] if (r["prompt_len"], r["attn"]) != (80, "sdpa")]  # complete (length, attn) pairs
    capsys.readouterr()
    assert main(args + ["--attn", "sdpa", "eager", "--lengths", "64", "80", "--resume", str(path)]) == 0
    assert "lengths to run [80]" in capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert [(r["prompt_len"], r["attn"]) for r in rows] == [(64, "sdpa")] * 2 + [(64, "eager")] * 2 + \
        [(80, "sdpa")] * 2 + [(80, "eager")] * 2  # in profile()'s order
    assert [r for r in rows if r in kept] == kept and len(kept) == 4  # the 64 rows were not run again
    old = tmp_path / "old.json"  # a file from before attns: no attns in its config, no attn in its rows
    assert main(args + ["--lengths", "64", "--out", str(old)]) == 0
    d = json.loads(old.read_text())
    del d["header"]["profile_config"]["attns"]
    d["rows"] = [{k: v for k, v in r.items() if k not in NEW_ROW_FIELDS} for r in d["rows"]]
    old.write_text(json.dumps(d))
    assert main(args + ["--lengths", "64", "80", "--resume", str(old)]) == 0
    rows = json.loads(old.read_text())["rows"]
    assert rows[:2] == d["rows"] and [r.get("attn") for r in rows] == [None, None, "sdpa", "sdpa"]
    assert "| 80 | sdtp@0.8 | sdtp | 0." in (tmp_path / "old.md").read_text()  # one backend: no attn column


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


def test_backend_figure_draws_the_speedups_of_the_rows(tmp_path):
    """One bar per (variant, engine, backend) and length; heights = HF dense SDPA's time / the row's (prefill, end
    to end) and the row's decode ms/token."""
    args = ["profile", "--model", "tiny-qwen2", "--new-tokens", "2", "--repeats", "1", "--variants", "dense", "sdtp",
            "sdtp@0.7", "--engines", "hf", "sdtp", "--attn", "sdpa", "eager", "--lengths", "64", "96",
            "--out", str(tmp_path / "p.json")]
    assert main(args) == 0
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    from sdtp_lib.workspace.plots import backend_figure
    fig = backend_figure(rows, title="tiny")
    pre, e2e, dec = fig.axes[:3]
    by = {(r["prompt_len"], r["variant"], r["engine"], r["attn"]): r for r in rows}
    series = [("dense", "hf", a) for a in ("sdpa", "eager")] + [(v, "sdtp", a) for v in ("dense", "sdtp", "sdtp@0.7")
                                                                for a in ("sdpa", "eager")]
    assert [c.get_label() for c in pre.containers] == [
        f"HF dense, {a}" if e == "hf" else f"{v}, {a} (this engine)" for v, e, a in series]
    for c, key in zip(pre.containers, series):
        want = [by[(T, "dense", "hf", "sdpa")]["prefill_s"] / by[(T, *key)]["prefill_s"] for T in (64, 96)]
        assert [b.get_height() for b in c] == pytest.approx(want)
    for c, key in zip(e2e.containers, series):
        want = [by[(T, "dense", "hf", "sdpa")]["e2e_s"] / by[(T, *key)]["e2e_s"] for T in (64, 96)]
        assert [b.get_height() for b in c] == pytest.approx(want)
    for c, key in zip(dec.containers, series):
        assert [b.get_height() for b in c] == pytest.approx([by[(T, *key)]["decode_ms_per_token"] for T in (64, 96)])
    fig.savefig(tmp_path / "backends.png")
    assert (tmp_path / "backends.png").stat().st_size > 10_000


def test_profile_variants_with_a_compression_and_a_start_layer(tmp_path):
    """"sdtp@1.5x+L2" profiles the placement from layer 2 at the ratio that compresses 1.5x; rows carry the stage
    layers and the keep ratio they ran with."""
    from sdtp_lib.config import SDTPConfig
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "96", "--new-tokens", "2", "--repeats", "1",
                 "--variants", "sdtp", "sdtp@1.5x+L2", "sdtp+R0.02", "--engines", "sdtp", "--out",
                 str(tmp_path / "p.json")]) == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "p.json").read_text())["rows"]}
    import sdtp_lib as S
    model, _ = S.load_model("tiny-qwen2", device="cpu")
    want = SDTPConfig.for_compression(model, 1.5, 10, start_layer=2)
    got = rows["sdtp@1.5x+L2"]
    assert got["stage_layers"] == list(want.stage_layers) and got["keep_ratio"] == want.keep_ratio
    assert got["kept_per_layer"] == want.tokens_per_layer(96, 4)
    assert rows["sdtp"]["stage_layers"] == list(SDTPConfig.for_model(model).stage_layers)
    assert (rows["sdtp"]["local_frac"], rows["sdtp+R0.02"]["local_frac"]) == (0.1, 0.02)  # +R reaches the pruning
    assert rows["sdtp+R0.02"]["keep_ratio"] == 0.9 and rows["sdtp+R0.02"]["kept_per_layer"] == rows["sdtp"]["kept_per_layer"]


def test_latency_backends_figure_takes_each_length_whole_from_the_last_file(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("lbf", ROOT / "scripts" / "latency_backends_figure.py")
    lbf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lbf)
    mk = lambda T, v, s: dict(prompt_len=T, variant=v, engine="sdtp", attn="sdpa", prefill_s=s)  # noqa: E731
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"rows": [mk(1024, "dense", 1.0), mk(2048, "dense", 2.0), mk(2048, "sdtp@0.8", 0.5)]}))
    b.write_text(json.dumps({"rows": [mk(2048, "dense", 3.0), mk(2048, "sdtp", 1.5)]}))
    rows = lbf.merged_rows([a, b])
    assert [(r["prompt_len"], r["variant"], r["prefill_s"]) for r in rows] == [
        (1024, "dense", 1.0), (2048, "dense", 3.0), (2048, "sdtp", 1.5)]  # no r = 0.8 row of a's other run at 2K


def test_profile_times_whole_spans_with_the_stand_in_rule(tmp_path):
    """"sdtp+W8" reaches the pruning: the row records span_max, keeps the paper's budget per layer, and the stand-in
    rule (every 16th id ends a span) is what the engine got."""
    from sdtp_lib.speed import profiling as P
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "96", "--new-tokens", "2", "--repeats", "1",
                 "--variants", "sdtp", "sdtp+W8", "--engines", "sdtp", "hf", "--out", str(tmp_path / "p.json")]) == 0
    rows = [r for r in json.loads((tmp_path / "p.json").read_text())["rows"] if r["variant"] == "sdtp+W8"]
    base = [r for r in json.loads((tmp_path / "p.json").read_text())["rows"] if r["variant"] == "sdtp"]
    assert len(rows) == 2 and all(r["span_max"] == 8 for r in rows) and "span_max" not in base[0]
    assert [r["kept_per_layer"] for r in rows] == [r["kept_per_layer"] for r in base]
    import sdtp_lib as S
    model, _ = S.load_model("tiny-qwen2", device="cpu")
    rule = P.profile_spans(model, S.SDTPConfig.for_model(model, span_max=8))
    assert rule.table.nonzero().flatten().tolist() == list(range(0, model.config.vocab_size, P.PROFILE_SPAN_EVERY))
    assert P.profile_spans(model, S.SDTPConfig.for_model(model)) is None


def test_selection_time_is_timed_per_variant_and_spans_keep_the_budget(monkeypatch):
    """selection_s runs the engine's own choice (keep_indices) stage by stage: top-k for tokens, span_order for
    '+W'; each stage keeps the config's schedule, and the rows of pruned variants carry its share."""
    import torch
    from sdtp_lib import SDTPConfig
    from sdtp_lib import engine as E
    kept = []
    real = E.keep_indices

    def spy(scores, forced, k, spans=None, num_spans=0):
        kept.append((k, spans is not None))
        return real(scores, forced, k, spans, num_spans)
    monkeypatch.setattr(P, "keep_indices", spy)
    conf = SDTPConfig(stage_layers=(1, 2, 3), keep_ratio=0.8, num_layers=4)
    assert P.selection_s(conf, 500, 1000, "cpu", repeats=2) > 0
    per_call = kept[: conf.num_stages]
    assert [k for k, _ in per_call] == conf.keep_schedule(500) and not any(sp for _, sp in per_call)
    kept.clear()
    from dataclasses import replace
    P.selection_s(replace(conf, span_max=8), 500, 1000, "cpu", repeats=1)
    assert [k for k, _ in kept[:conf.num_stages]] == conf.keep_schedule(500) and all(sp for _, sp in kept)
    assert len(kept) == 2 * conf.num_stages  # the warm-up and one timed run


def test_profile_rows_report_the_selection_share(tmp_path):
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "96", "--new-tokens", "2", "--repeats", "1",
                 "--variants", "dense", "sdtp", "sdtp+W8", "--engines", "sdtp", "hf", "--out", str(tmp_path / "p.json")]) == 0
    all_rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    for v in ("sdtp", "sdtp+W8"):  # timed once per variant: the engines share the seconds, each its own prefill
        a, b = (r for r in all_rows if r["variant"] == v)
        assert a["selection_pct"] * a["prefill_s"] == pytest.approx(b["selection_pct"] * b["prefill_s"])
    rows = {r["variant"]: r for r in all_rows if r["engine"] == "sdtp"}
    assert "selection_pct" not in rows["dense"]
    assert rows["sdtp"]["selection_pct"] > 0 and rows["sdtp+W8"]["selection_pct"] > 0
    md = (tmp_path / "p.md").read_text()
    assert "selection % |" in md and md.count("| - |") >= 1  # dense has no selection


def test_profile_times_a_fusion_as_one_scorer(tmp_path):
    """--scorer predictor+attention: both scorers inside one timed wrapper, their FLOPs counted together."""
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "96", "--new-tokens", "2", "--repeats", "1",
                 "--variants", "sdtp", "--engines", "sdtp", "--scorer", "predictor+attention",
                 "--out", str(tmp_path / "f.json")]) == 0
    assert main(["profile", "--model", "tiny-qwen2", "--lengths", "96", "--new-tokens", "2", "--repeats", "1",
                 "--variants", "sdtp", "--engines", "sdtp", "--scorer", "attention", "--out", str(tmp_path / "a.json")]) == 0
    fused, alone = (json.loads((tmp_path / f).read_text())["rows"][0] for f in ("f.json", "a.json"))
    assert fused["predictor_overhead_pct"] > 0 and fused["flops"] > alone["flops"]  # the predictor's MLP on top
