"""Notebook 08's library: each figure draws what its rows say, the frontier's matching rules, missing sources
reported, and the final summary's tables and verdict computed from the files (small fixtures of each schema)."""
import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from sdtp_lib.workspace import frontier as FR  # noqa: E402
from sdtp_lib.workspace import paper_figures as PF  # noqa: E402
from sdtp_lib.workspace import paper_run as PR  # noqa: E402
from sdtp_lib.workspace.sources import HEADLINE_LATENCY, load_sources  # noqa: E402


def ablation(name, rows):
    keys = ("setting", "scorer", "loss", "seed", "keep_ratio", "start_layer", "stages", "compression", "flops_ratio",
            "heldout_loss", "heldout_loss_dense", "heldout_delta", "heldout_ci", "synthetic_accuracy",
            "synthetic_dense_accuracy", "synthetic_delta", "synthetic_ci", "n_synthetic", "n_heldout")
    return {"ablation": name, "model": "tiny-qwen2", "config": {}, "versions": {}, "commit": "x",
            "rows": [{k: r.get(k) for k in keys} for r in rows]}


def start_layer_result():
    rows = [{"keep_ratio": r, "start_layer": L, "scorer": "predictor", "seed": 0,
             "synthetic_delta": -0.1 * k - 0.01 * L, "heldout_delta": 0.2 * k + 0.01 * L if L != 6 else None}
            for k, r in enumerate((0.9, 0.8, 0.7)) for L in (2, 4, 6)]
    return ablation("start_layer", rows)


def test_start_layer_figure_one_line_per_keep_ratio_with_the_rows_values():
    res = start_layer_result()
    fig = PF.start_layer_figure(res)
    syn, held = fig.axes
    assert "synthetic" in syn.get_title() and "held-out" in held.get_title()
    for k, r in enumerate((0.9, 0.8, 0.7)):
        (line,) = [ln for ln in syn.lines if ln.get_label() == f"r = {r}"]
        assert list(line.get_xdata()) == [2, 4, 6]
        assert list(line.get_ydata()) == pytest.approx([100 * (-0.1 * k - 0.01 * L) for L in (2, 4, 6)])
        (line,) = [ln for ln in held.lines if ln.get_label() == f"r = {r}"]
        assert list(line.get_xdata()) == [2, 4]  # layer 6's held-out value is null: no point
    assert "_hue" not in res["rows"][0]  # the caller's rows are left as they were


def test_ablation_bars_are_the_mean_over_seeds_and_the_interval_only_for_one_seed():
    rows = [{"stages": s, "scorer": "predictor", "seed": seed, "compression": c,
             "synthetic_accuracy": a + 0.1 * seed, "synthetic_dense_accuracy": 0.8, "heldout_delta": d,
             "heldout_ci": [d - 0.1, d + 0.1]} for s, c, a, d in ((1, 1.47, 0.3, 0.9), (5, 1.3, 0.5, 0.4),
                                                                   (10, 1.47, 0.6, 0.3)) for seed in (0, 1)]
    rows.append({"stages": 10, "scorer": "attention", "seed": 0, "compression": 1.47, "synthetic_delta": -0.05,
                 "heldout_delta": 0.2, "heldout_ci": [0.1, 0.3]})
    fig = PF.ablation_figure(ablation("stages", rows), "stages")
    syn, held = fig.axes
    assert [b.get_height() for b in syn.containers[0]] == pytest.approx([100 * (a + 0.05 - 0.8) for a in (0.3, 0.5, 0.6)])
    assert [b.get_height() for b in syn.containers[1]] == pytest.approx([-5.0])  # attention: at 10 stages only
    assert [b.get_height() for b in held.containers[0]] == pytest.approx([0.9, 0.4, 0.3])
    assert len(held.collections) == 1  # the interval: the one-seed attention bar only
    assert [t.get_text() for t in syn.get_xticklabels()] == ["1 stage\n1.47x", "5 stages\n1.30x", "10 stages\n1.47x"]
    with pytest.raises(ValueError, match="no row has a synthetic or held-out value"):
        PF.ablation_figure(ablation("stages", [{"stages": 1}]), "stages")


def synthetic_result(scorers, acc, n=2, layouts=("question_last",)):
    """results.json of the suite: acc[scorer] per (layout) cell."""
    return {"config": {"suite": {"keep_ratio": 0.9}}, "compression": {s: 1.5 for s in scorers},
            "summary": [{"task": "passkey", "length": 1024, "layout": lay, "scorer": s, "accuracy": acc[s][i], "n": n}
                        for s in scorers for i, lay in enumerate(layouts)]}


def test_h2o_points_pair_each_budget_with_its_scorer_and_draw_kv_only_when_present():
    syn = synthetic_result(["dense", "dense+H0.4", "sdtp:norm", "sdtp+H0.4:norm", "sdtp:recent"],
                           {"dense": [1.0], "dense+H0.4": [0.5], "sdtp:norm": [0.5], "sdtp+H0.4:norm": [0.0],
                            "sdtp:recent": [1.0]})
    pts = PF.h2o_points(syn)
    assert {(p["scorer"], p["base"], p["budget"]) for p in pts} == {
        ("dense", "dense", None), ("dense+H0.4", "dense", 0.4), ("sdtp:norm", "sdtp:norm", None),
        ("sdtp+H0.4:norm", "sdtp:norm", 0.4)}  # recent has no budget: left out
    fig = PF.h2o_figure(pts)
    assert len(fig.axes) == 1  # no kv_bytes / decode_ms_per_token anywhere: no panel for them
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "sdtp:norm")
    assert list(line.get_xdata()) == [0.4, 1.0] and list(line.get_ydata()) == pytest.approx([0.0, 50.0])
    preds = [{"scorer": "dense+H0.4", "kv_bytes": 2 ** 20 * k, "decode_ms_per_token": 5.0} for k in (1, 3)]
    fig = PF.h2o_figure(PF.h2o_points(syn, preds))
    assert [ax.get_ylabel() for ax in fig.axes][1:] == ["KV cache (MiB)", "decode ms / token"]
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([2.0])
    eff = {**syn, "efficiency": {"dense": {"kv_bytes": 2 ** 22, "decode_ms_per_token": 6.0}}}  # 06's own summary
    lb = {"scorers": {"dense": {"category_average": 30.0}, "dense+H0.4": {"category_average": 20.0,
                                                                         "mean_kv_bytes": 2 ** 21}}}
    got = {(p["bench"], p["scorer"]): p for p in PF.h2o_points(eff, None, lb)}
    assert got["synthetic", "dense"]["kv_bytes"] == 2 ** 22 and got["synthetic", "dense+H0.4"]["kv_bytes"] is None
    assert got["LongBench", "dense+H0.4"]["kv_bytes"] == 2 ** 21 and got["LongBench", "dense"]["score"] == 30.0
    assert PF.h2o_points(synthetic_result(["dense"], {"dense": [1.0]})) == []
    with pytest.raises(ValueError, match=r"no \+H<budget> scorer"):
        PF.h2o_figure([])


def profile(rows, scorer="predictor", keep_ratio=0.9, attn="sdpa"):
    return {"header": {"attn": attn, "profile_config": {"scorer": scorer, "keep_ratio": keep_ratio}}, "rows": rows}


def row(variant, engine, T, prefill_s):
    return {"variant": variant, "engine": engine, "prompt_len": T, "prefill_s": prefill_s}


def speed_files():
    return {  # the headline (dense + predictor), an attention run with its own dense, an r = 0.8 run without dense
        "a_latency/latency.json": profile([row("dense", "hf", 32768, 1.2), row("sdtp", "sdtp", 32768, 0.6),
                                           row("sdtp-low", "sdtp", 32768, 0.8), row("sdtp", "hf", 32768, 0.7)]),
        "b_attention/latency.json": profile([row("dense", "hf", 32768, 1.0), row("sdtp", "sdtp", 32768, 0.5)],
                                            scorer="attention"),
        "c_fa4/sdpa.json": profile([row("dense", "hf", 32768, 1.5)]),
        "c_fa4/r08.json": profile([row("sdtp", "sdtp", 32768, 0.5)], keep_ratio=0.8, attn="flash_attention_4"),
        "d_cost/hybrid.json": profile([row("sdtp", "sdtp", 32768, 0.4)], scorer="hybrid"),
    }


def test_speed_rows_take_the_baseline_from_the_file_then_the_folder_then_the_headline():
    rows = {(r.scorer, r.variant, r.keep_ratio): r for r in FR.speed_rows(speed_files())}
    assert len(rows) == 5  # the HF-loop SDTP row is not a measurement of this engine
    assert rows["predictor", "sdtp", 0.9].speedup == pytest.approx(2.0)
    assert rows["attention", "sdtp", 0.9].base_source == "b_attention/latency.json"
    r08 = rows["predictor", "sdtp", 0.8]
    assert r08.base_source == "c_fa4/sdpa.json" and r08.speedup == pytest.approx(3.0) and r08.attn == "flash_attention_4"
    assert rows["hybrid", "sdtp", 0.9].base_source == "a_latency/latency.json"
    assert "c_fa4/r08.json" in r08.describe() and "3.00x" in r08.describe()


def test_frontier_matches_scorers_and_keep_ratios_explicitly():
    specs = ["dense", "sdtp:predictor", "sdtp-low:predictor", "sdtp:norm", "sdtp:attention-mean-k15", "sdtp:oracle",
             "sdtp@0.8:predictor", "sdtp@0.7:predictor", "sdtp+L8:attention", "sdtp:hybrid"]
    acc = {s: [0.1 * (k + 1)] for k, s in enumerate(specs)}
    acc["dense"] = [1.0]
    zero = synthetic_result(["dense", "sdtp:norm"], {"dense": [0.0], "sdtp:norm": [0.0]})  # a tiny random model
    fr = FR.frontier({"q": synthetic_result(specs, acc), "z": zero}, FR.speed_rows(speed_files()))
    assert fr["unmatched"][-1] == {"source": "z", "scorer": "every scorer", "share": None,
                                  "why": "no dense scorer, or dense answers nothing: no % of dense"}
    fr["unmatched"] = fr["unmatched"][:-1]
    got = {p["scorer"]: (p["speedup"], p["how"], p["share"]) for p in fr["points"]}
    assert got["dense"][:2] == (1.0, "dense")
    assert got["sdtp:predictor"][:2] == (pytest.approx(2.0), "own")
    assert got["sdtp-low:predictor"][0] == pytest.approx(1.5)
    assert got["sdtp:norm"][:2] == (pytest.approx(2.0), "predictor's row (policy: no measurement)")
    assert got["sdtp:attention-mean-k15"][0] == pytest.approx(2.0)  # b_attention: 1.0 / 0.5
    assert got["sdtp@0.8:predictor"][0] == pytest.approx(3.0) and got["sdtp:hybrid"][0] == pytest.approx(3.0)
    assert got["sdtp:predictor"][2] == pytest.approx(0.2)  # share of dense
    why = {u["scorer"]: u["why"] for u in fr["unmatched"]}
    assert set(why) == {"sdtp:oracle", "sdtp@0.7:predictor", "sdtp+L8:attention"}
    assert "not deployable" in why["sdtp:oracle"] and "r=0.7" in why["sdtp@0.7:predictor"]
    fig = PF.frontier_figure(fr)
    (ax,) = fig.axes
    drawn = sorted(tuple(map(float, c.get_offsets()[0])) for c in ax.collections if len(c.get_offsets()) == 1)
    want = sorted((p["speedup"], 100 * p["share"]) for p in fr["points"])
    assert len(drawn) == len(want) and all(d == pytest.approx(w) for d, w in zip(drawn, want))
    notes = fig.texts[0].get_text()
    assert "c_fa4/r08.json" in notes and "not drawn: sdtp:oracle" in notes


def test_spans_floors_and_the_gpu_must_match_between_a_spec_and_its_speed_row():
    h100 = lambda rows, scorer="hybrid": {**profile(rows, scorer=scorer), "header": {  # noqa: E731
        **profile(rows, scorer=scorer)["header"], "gpu": "H100"}}
    files = {**speed_files(),  # a newer profile: the variant's text names r, R and W; its own dense on its GPU
             "e_spans/r08.json": h100([row("dense", "hf", 32768, 1.6), row("sdtp@0.8+R0.02+W96", "sdtp", 32768, 0.8),
                                       row("sdtp@0.8+R0.02", "sdtp", 32768, 0.5)]),
             "f_h100/no_dense.json": h100([row("sdtp@0.8+R0.02+W96+M256", "sdtp", 32768, 0.4)])}
    rows = {(r.source, r.span_max, r.min_keep): r for r in FR.speed_rows(files)}
    spans = rows["e_spans/r08.json", 96, 0]
    assert (spans.variant, spans.keep_ratio, spans.local_frac, spans.speedup) == ("sdtp", 0.8, 0.02, pytest.approx(2.0))
    assert ("f_h100/no_dense.json", 96, 256) not in rows  # its only HF dense rows are another GPU's (the headline's)
    specs = ["dense", "sdtp@0.8+R0.02+W96:hybrid", "sdtp@0.8+R0.02:hybrid", "sdtp@0.8+R0.02+W32:hybrid",
             "sdtp@0.8+R0.02+W96+M256:hybrid"]
    acc = {s: [0.5] for s in specs}
    fr = FR.frontier({"q": synthetic_result(specs, acc)}, FR.speed_rows(files))
    got = {p["scorer"]: p["speed"] for p in fr["points"] if p["speed"] is not None}
    assert got["sdtp@0.8+R0.02+W96:hybrid"].source == "e_spans/r08.json" and got["sdtp@0.8+R0.02+W96:hybrid"].span_max == 96
    assert got["sdtp@0.8+R0.02:hybrid"].prefill_s == 0.5 and got["sdtp@0.8+R0.02:hybrid"].span_max == 0  # tokens' row
    why = {u["scorer"]: u["why"] for u in fr["unmatched"]}
    assert set(why) == {"sdtp@0.8+R0.02+W32:hybrid", "sdtp@0.8+R0.02+W96+M256:hybrid"}
    assert "W=32" in why["sdtp@0.8+R0.02+W32:hybrid"] and "M=256" in why["sdtp@0.8+R0.02+W96+M256:hybrid"]


def fig_bars(out, result):
    """{series: bar heights} of the held-out panel of ablation_figure(result, "setting")."""
    fig = PF.ablation_figure(result, "setting")
    ax = fig.axes[-1]
    (legend,) = fig.legends  # one legend under the panels
    labels = [t.get_text() for t in legend.get_texts()]  # one per series, in the containers' order
    return {lab: [b.get_height() for b in c] for lab, c in zip(labels, ax.containers)}


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_summary_and_figures_of_a_fixture_run_name_every_missing_source(tmp_path):
    run, results = tmp_path / "run", tmp_path / "results"
    write(run / "run.json", {"profile": "t", "description": "d", "device": "cpu (x)", "started": "s", "ended": "e",
                             "status": "ok", "versions": {"torch": "2"}, "git_commit": "abc",
                             "notebooks": [{"name": "06_synthetic", "status": "ok", "duration_s": 3.0,
                                            "parameters": {"model": "tiny-qwen2", "run_dir": "x"}}]})
    write(run / "06_synthetic" / "results.json",
          synthetic_result(["dense", "sdtp:predictor"], {"dense": [1.0, 0.5], "sdtp:predictor": [0.5, 0.5]},
                           layouts=("question_first", "question_last")))
    losses = ablation("losses", [  # as 07 writes them: a dense row, labels, the loss key, the predictor's path
        {"setting": s, "scorer": "sdtp@0.9:/x/predictor.safetensors", "heldout_delta": d,
         "heldout_ci": [d - 0.02, d + 0.02]} for s, d in (
            ("full loss", 0.1), ("no ranking loss", 0.2), ("no MSE", 0.15), ("no ranking, no MSE", 0.3))])
    for r, loss in zip(losses["rows"], ("full", "no_rank", "no_mse", "no_both")):
        r.update(scorer_name="predictor", loss=loss)
    losses["rows"].insert(0, {"setting": "dense", "scorer": "dense", "scorer_name": "dense", "heldout_delta": 0.0})
    write(run / "07_ablations" / "losses" / "results.json", losses)
    headline = profile([dict(row(v, e, T, p), flops=f, e2e_s=2 * p, peak_mem_gib=m)
                        for T in (4096, 32768) for v, e, p, f, m in (("dense", "hf", 1.0, 3e12, 20.0),
                                                                    ("sdtp", "sdtp", 0.6, 2e12, 18.0),
                                                                    ("sdtp", "hf", 0.7, 2e12, 19.0))])
    write(results / HEADLINE_LATENCY, headline)
    src = load_sources(run, results)
    missing = dict(src.missing())
    assert {"saliency", "latency", "longbench", "lmeval", "ablation_stages", "committed_synthetic"} <= set(missing)
    assert str(run / "04_longbench" / "results.json") in missing["longbench"]
    made = PR.draw_figures(src, tmp_path / "out")
    drawn = {n for n, m in made.items() if m.file}
    assert drawn == {"losses", "latency_qwen2-7b-shape_h200", "frontier"}
    assert made["longbench"].why.startswith("missing source longbench") and "not found" in made["longbench"].why
    text = PR.write_summary(src, tmp_path / "out", made).read_text()
    assert "| 32K | 1.79x / 1.43x / 1.67x |" in text  # paper 3.40 / 1.90 s; ours 1.0 / 0.7 (HF loop), 1.0 / 0.6
    assert "**Prefill speed: reproduces**" in text and "at 2 of 2 prompt lengths" in text  # 1.67x vs 1.52x, 1.79x
    assert "**Losses: reproduces** the paper's order" in text
    head, rest = text.split("## Headline")[1].split("## The run")  # the headline comes first, then the run
    bullets = [ln for ln in rest.split("## Verdict")[1].split("**Hand-written**")[0].splitlines() if ln.startswith("- ")]
    rows = [ln for ln in head.splitlines() if ln.startswith("| ") and not ln.startswith("| claim")]
    assert len(rows) == len(bullets) >= 2  # one row per verdict line, with the same claim and word
    from sdtp_lib.workspace.report import headline_rows
    assert headline_rows(text).splitlines()[2:] == rows  # what the README copies: the same rows
    for row_, bullet in zip(rows, bullets):
        topic, word = bullet[4:].split("**")[0].split(": ", 1)
        assert row_.startswith(f"| {topic} |") and row_.endswith(f"| **{word}** |")
    assert "| Losses | 66.82 > 66.27 > 65.93 (Llama2-7B accuracy: full, no ranking, neither) | held-out loss - dense " \
           "+0.100 / +0.200 / +0.300 (a random tiny model: not evidence) | **reproduces** |" in head  # says so there too
    assert "| no ranking loss | no_rank | 66.27 | -0.55 |" in text and "| no MSE | - | - | - |" in text
    assert "| dense |" not in text[text.index("Losses ("):]  # the reference row is not a setting
    bars = fig_bars(tmp_path / "out", losses)
    assert bars == {"predictor": pytest.approx([0.1, 0.2, 0.15, 0.3])}
    assert "## LongBench\n\nNot compared:" in text and "**not drawn**: missing source lmeval" in text
    assert "Hand-written" in text and "`" + str(run) + "`" in text
    with pytest.raises(FileNotFoundError, match="run folder"):
        load_sources(tmp_path / "nope", results)


def test_report_command_writes_the_figures_and_the_summary_of_a_run(tmp_path, capsys):
    from sdtp_lib.cli import main
    run = tmp_path / "run"
    write(run / "06_synthetic" / "results.json",
          synthetic_result(["dense", "sdtp:norm"], {"dense": [1.0], "sdtp:norm": [0.5]}))
    assert main(["report", str(run), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"frontier: {tmp_path / 'o' / 'frontier.png'}" in out and "longbench: not drawn (missing source" in out
    text = (tmp_path / "o" / "final_summary.md").read_text()
    assert "no run.json" in text and "| sdtp:norm |" not in text  # no LongBench: no row of it
    assert main(["report", str(tmp_path / "nope")]) == 2 and "does not exist" in capsys.readouterr().err


def test_latency_figure_on_both_engines_draws_the_rows():
    from sdtp_lib.workspace.plots import latency_figure
    rows = [dict(row(v, e, T, p * T / 1024), flops=1e12 * p, e2e_s=2 * p, peak_mem_gib=None)
            for T in (1024, 2048) for v, e, p in (("dense", "hf", 1.0), ("dense", "sdtp", 0.9), ("sdtp", "sdtp", 0.6),
                                                  ("sdtp", "hf", 0.7), ("sdtp-low", "sdtp", 0.8))]
    fig = latency_figure(rows, engines=("sdtp", "hf"))
    pre = {ln.get_label(): list(ln.get_ydata()) for ln in fig.axes[0].lines}
    assert set(pre) == {"dense (this engine)", "sdtp (this engine)", "sdtp-low (this engine)", "dense (HF loop)",
                        "sdtp (HF loop)"}  # no sdtp-low row on the HF loop: no line
    assert pre["sdtp (HF loop)"] == pytest.approx([0.7, 1.4])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1K", "2K"]
    assert not fig.axes[3].lines and "not measured" in fig.axes[3].texts[0].get_text()  # CPU: no peak memory


def test_evaluation_bars_carry_one_hatch_per_scorer_in_bars_and_legend():
    from sdtp_lib.eval import figures as EF
    r = lambda acc: {"accuracy": acc, "config": {"num_fewshot": 5}, "lm_eval": {}}  # noqa: E731
    fig = EF.lmeval_figure({"dense": r({"sdtp_copa": 0.5, "sdtp_cb": 0.25}), "sdtp:norm": r({"sdtp_copa": 0.75}),
                            "sdtp-low:norm": r({"sdtp_copa": 0.25, "sdtp_cb": 1.0})})
    (ax,) = fig.axes
    hatches = [{b.get_hatch() or "" for b in c} for c in ax.containers]
    assert [len(h) for h in hatches] == [1, 1, 1] and len(set.union(*hatches)) == 3
    assert [b.get_height() for b in ax.containers[2]] == pytest.approx([0.25, 1.0])
    assert [p.get_hatch() or "" for p in fig.legends[0].get_patches()] == [h.pop() for h in hatches]


def test_our_scorers_stand_beside_the_papers_rows_only_when_they_are_its_setting():
    from sdtp_lib.workspace import paper_tables as PT
    got = {s: PT.paper_method(s) for s in ("dense", "sdtp:norm", "sdtp-low:auto", "sdtp@0.9:norm", "sdtp@0.8:norm",
                                           "sdtp@1.6x:norm", "sdtp+L8:norm", "dense+H0.4", "sdtp+H0.4:norm", "oops")}
    assert got == {"dense": "original", "sdtp:norm": "SDTP", "sdtp-low:auto": "SDTP-low", "sdtp@0.9:norm": "SDTP",
                   "sdtp@0.8:norm": None, "sdtp@1.6x:norm": None, "sdtp+L8:norm": None, "dense+H0.4": None,
                   "sdtp+H0.4:norm": None, "oops": None}
    assert [PT.canon_loss(s) for s in ("Full", "no rank", "no-rank-mse", "cls only", "rank only")] == [
        "full", "no_rank", "no_rank_mse", "no_rank_mse", None]


def test_ablation_tables_order_the_settings_and_split_the_start_layer_by_keep_ratio(tmp_path):
    from sdtp_lib.workspace.paper_tables import ablation_section
    run = tmp_path / "run"
    write(run / "07_ablations" / "start_layer" / "results.json", start_layer_result())
    write(run / "07_ablations" / "stages" / "results.json", ablation("stages", [
        {"stages": s, "seed": seed, "heldout_delta": 1 / s + seed, "keep_ratio": 0.9, "compression": 10 / s,
         "flops_ratio": s / 20} for s in (10, 1, 5) for seed in (0, 1)]))
    text = ablation_section(load_sources(run, tmp_path / "results"))
    stages = text[text.index("| stages |"):].splitlines()
    assert [ln.split(" | ")[0] for ln in stages[2:5]] == ["| 1", "| 5", "| 10"]  # numbers in order, not as text
    assert stages[2].endswith("| +1.500 (+1.000 / +2.000) |")  # the mean over the two seeds: (1 + 2) / 2, each
    assert stages[2].startswith("| 1 | 10.00x / 0.05 |")  # the setting's cost
    assert stages[4].startswith("| 10 | 1.00x / 0.50 |")
    assert "every row with its paired 95% interval against dense is in the ablation's `results.md`" in text
    head = next(ln for ln in text.splitlines() if ln.startswith("| first stage's layer"))
    assert head.count("r = 0.7:") == head.count("r = 0.9:") == 2
    row4 = next(ln for ln in text.splitlines() if ln.startswith("| 4 |"))
    assert "| -4.0 | +0.040 |" in row4  # r = 0.9 (k = 0): synthetic -0.04, held-out 0.04
    assert row4.startswith("| 4 | - |")  # no compression in these rows: no cost
    assert "Lowest held-out loss here: r = 0.7: layer 2, r = 0.8: layer 2, r = 0.9: layer 2." in text
    assert "Losses: not compared" in text and "07_ablations/losses/results.json not found" in text


def test_latency_table_takes_this_runs_profile_as_a_column_at_the_papers_lengths(tmp_path):
    from sdtp_lib.workspace.paper_tables import latency_section
    run = tmp_path / "run"
    rows = [row("dense", "hf", 4096, 1.0), row("sdtp", "sdtp", 4096, 0.8)]
    write(run / "03_profiling" / "latency_20261205-000000.json", {"header": {"model": "m", "gpu": "g"}, "rows": rows})
    text = latency_section(load_sources(run, tmp_path / "results"))
    assert "this run's prefill speedup, engine (m)" in text and "| 4K | 1.52x / - / - | 1.25x |" in text
    assert "| 8K | 1.58x / - / - | - |" in text  # measured at 4K only
    assert "Ours: `reports/results/2026-11-29_qwen2-7b-shape_latency_h200/latency.json` (committed; missing)" in text


def test_h2o_summary_compares_sdtp_with_h2o_against_h2o_alone_at_the_same_budget(tmp_path):
    from sdtp_lib.workspace import paper_tables as PT
    from sdtp_lib.workspace import report as R
    run = tmp_path / "run"
    syn = synthetic_result(["dense", "dense+H0.4", "sdtp:norm", "sdtp+H0.4:norm", "sdtp+H0.2:norm"],
                           {"dense": [1.0], "dense+H0.4": [0.9], "sdtp:norm": [0.8], "sdtp+H0.4:norm": [0.5],
                            "sdtp+H0.2:norm": [0.4]})
    syn["config"]["model"] = "qwen2.5-coder-0.5b"
    write(run / "06_synthetic" / "results.json", syn)
    src = load_sources(run, tmp_path / "results")
    pts = PF.h2o_points(src.get("synthetic"))
    rows = {r["scorer"]: r for r in PT.h2o_rows(pts)}
    assert set(rows) == {"dense+H0.4", "sdtp+H0.4:norm", "sdtp+H0.2:norm"}
    assert rows["sdtp+H0.4:norm"]["without"] == pytest.approx(80.0)
    assert rows["sdtp+H0.4:norm"]["dense_same_budget"] == pytest.approx(90.0)
    assert rows["sdtp+H0.2:norm"]["dense_same_budget"] is None  # no dense+H0.2: nothing to compare with
    text = PT.h2o_section(pts, src) + R.verdict(src, None, pts)
    table = [ln for ln in text.splitlines() if ln.startswith("| synthetic |")]
    assert [ln.split(" | ")[1:4] for ln in table] == [["dense", "none", "100.0"], ["dense+H0.4", "0.4", "90.0"],
                                                      ["sdtp:norm", "none", "80.0"], ["sdtp+H0.4:norm", "0.4", "50.0"],
                                                      ["sdtp+H0.2:norm", "0.2", "40.0"]]  # each base, then its budgets
    assert "| synthetic | sdtp+H0.4:norm | 0.4 | 50.0 | -30.0 | -40.0 |" in text  # vs sdtp:norm, vs dense+H0.4
    assert "| synthetic | dense+H0.4 | 0.4 | 90.0 | -10.0 | - |" in text
    assert all("| this project's |" in ln for ln in table)  # the suite decodes every scorer with the project's loop
    lb = {"scorers": {"dense": {"category_average": 50.0, "mean_decode_ms_per_token": 20.0},
                      "dense+H0.4": {"category_average": 40.0, "mean_decode_ms_per_token": 4.0},
                      "sdtp:norm": {"category_average": 45.0, "decode_loop": "sdtp"}}}
    loops = {p["scorer"]: p["loop"] for p in PF.h2o_points(longbench=lb)}
    assert loops == {"dense": "hf_generate", "dense+H0.4": "sdtp"}  # older files: HF generate unless H2O
    fig = PF.h2o_figure([{**p, "decode_ms_per_token": 3.0} for p in pts] + PF.h2o_points(longbench=lb))
    assert [ax.get_title() for ax in fig.axes][-1] == "synthetic: decode ms / token"  # one loop per panel
    assert "**H2O at 40% of the KV: does not reproduce** \"almost no further loss\" from SDTP on top of H2O (points " \
           "against H2O alone at the same budget, tolerance 3): synthetic sdtp+H0.4:norm -40.0, H2O alone -10.0 " \
           "against dense (n = 2 prompts" in text
    assert "sdtp+H0.2:norm: " not in text.split("## Verdict")[1]  # no verdict without its H2O-alone reference


def ablation_src(tmp_path, name, rows, model="tiny-qwen2"):
    from sdtp_lib.workspace.sources import Source, Sources
    src = Sources(tmp_path, tmp_path)
    src.add(Source(f"ablation_{name}", tmp_path / "r.json", {**ablation(name, rows), "model": model}))
    for r in src.get(f"ablation_{name}")["rows"]:
        r["scorer_name"] = r["scorer"]
    return src


def test_a_difference_between_settings_counts_only_beyond_the_seeds_and_the_intervals():
    from sdtp_lib.workspace import verdict as V
    a = [{"heldout_delta": 0.5, "heldout_ci": [0.4, 0.6]}]
    b = [{"heldout_delta": 1.0, "heldout_ci": [0.9, 1.1]}]
    assert V.versus(a, b, "heldout") == 1 and V.versus(b, a, "heldout") == -1  # lower loss is better
    syn = lambda d, lo, hi: [{"synthetic_delta": d, "synthetic_ci": [lo, hi]}]  # noqa: E731
    assert V.versus(syn(-0.1, -0.2, 0.0), syn(-0.4, -0.5, -0.3), "synthetic") == 1  # higher accuracy is better
    assert V.span(syn(-0.1, -0.2, 0.0), "synthetic") == pytest.approx((-20.0, 0.0))  # in points
    # a second seed far off widens the span until the two overlap: within the noise
    seeds = a + [{"heldout_delta": 0.95, "heldout_ci": [0.85, 1.05]}]
    assert V.span(seeds, "heldout") == (0.4, 1.05) and V.versus(seeds, b, "heldout") == 0
    assert V.versus([{"heldout_delta": 0.5}], b, "heldout") == 0  # no interval: nothing counts


def _seeded(setting, value, metric="heldout", half=0.05, **kw):
    """One row per seed value, each with an interval of +-half (the synthetic's in accuracy, not points)."""
    key, ci = ("heldout_delta", "heldout_ci") if metric == "heldout" else ("synthetic_delta", "synthetic_ci")
    vals = value if isinstance(value, tuple) else (value,)
    return [{"setting": setting, "seed": k, key: v, ci: [v - half, v + half], **kw} for k, v in enumerate(vals)]


def test_the_loss_verdict_weighs_the_order_against_the_seeds(tmp_path):
    from sdtp_lib.workspace import verdict as V

    def word(full, no_rank, no_both):
        rows = [r for s, loss, v in (("full loss", "full", full), ("no ranking loss", "no_rank", no_rank),
                                     ("no ranking, no MSE", "no_both", no_both))
                for r in _seeded(s, v, scorer="predictor", loss=loss, n_heldout=120)]
        return V.losses_item(ablation_src(tmp_path, "losses", rows))

    assert word(0.2, 0.5, 0.8).word == "reproduces"  # every pair apart, in the paper's order
    item = word((0.1, 0.7), (0.4, 0.6), (0.5, 0.9))  # means in order (0.4 < 0.5 < 0.7), seeds overlapping
    assert item.word == "inconclusive" and "means in the paper's order, every pair within the noise" in item.detail
    assert item.ours.endswith("(within the seeds' spread)")
    assert word(0.2, 0.22, 0.24).ours.endswith("+0.200 / +0.220 / +0.240 (within the noise)")  # one seed, intervals overlap
    assert word((0.2, 0.25), (0.3, 0.9), (0.6, 0.7)).word == "partly reproduces"  # only full vs neither apart
    assert word(0.8, 0.5, 0.2).word == "does not reproduce"  # the reverse order, apart


def test_the_stage_and_placement_verdicts_count_differences_beyond_the_noise(tmp_path):
    from sdtp_lib.workspace import verdict as V
    stages = [r for sc, vals in (("predictor", ((0.9, 1.0), (0.8, 0.9), (0.5, 0.55))), ("attention", (1.0, 1.0, 1.02)))
              for n, v in zip((1, 5, 10), vals)
              for r in _seeded(f"{n} stages", v, scorer=sc, stages=n, compression=1.6, n_heldout=4)]
    item = V.stages_item(ablation_src(tmp_path, "stages", stages, model="qwen2.5-coder-0.5b"))
    assert item.word == "help predictor only" and "predictor better; attention no difference beyond the noise" in item.ours
    assert "(better with 10 than with 1, beyond the noise)" in item.detail
    assert item.detail.endswith("(n = 4 held-out samples: too few to be evidence).")
    assert V.stages_item(ablation_src(tmp_path, "stages", stages)).note == " (a random tiny model: not evidence)"
    worse = [{**r, "heldout_delta": 2 - r["heldout_delta"], "heldout_ci": [1.95 - r["heldout_delta"],
                                                                         2.05 - r["heldout_delta"]]}
             for r in stages if r["scorer"] == "predictor"]
    assert V.stages_item(ablation_src(tmp_path, "stages", worse)).word == "hurt"

    def placement(l8):  # the paper's layer 4, r = 0.9 (FLOPs 0.6) against layer 8, r = 0.8 (FLOPs 0.5)
        return [r for L, r_, f, v in ((4, 0.9, 0.6, (0.8, 0.9)), (8, 0.8, 0.5, l8), (2, 0.7, 0.3, 2.0))
                for r in _seeded(f"L{L} r{r_}", v, scorer="predictor", start_layer=L, keep_ratio=r_, flops_ratio=f)]

    item = V.start_layer_item(ablation_src(tmp_path, "start_layer", placement((0.4, 0.45))))
    assert item.word == "does not hold"  # cheaper and better, apart
    assert "layer 8, r = 0.8 (FLOPs 0.50, held-out loss - dense +0.425 against +0.850, beyond the noise)" in item.detail
    item = V.start_layer_item(ablation_src(tmp_path, "start_layer", placement((0.5, 1.0))))
    assert item.word == "not contradicted" and "within the noise" in item.detail  # better only in its mean
    assert V.start_layer_item(ablation_src(tmp_path, "start_layer", placement(1.5))).word == "holds"
    no_l4 = [r for r in placement(1.5) if r["start_layer"] != 4]
    assert V.start_layer_item(ablation_src(tmp_path, "start_layer", no_l4)).word.startswith("not tested")


def test_summary_sources_are_paths_inside_the_checkout(tmp_path, monkeypatch):
    from sdtp_lib.workspace.report import shown
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert shown(tmp_path / "runs" / "x.json") == "runs/x.json"  # the working folder
    from sdtp_lib.models import project_root
    assert shown(project_root() / "reports" / "results" / "a.json") == "reports/results/a.json"
    assert shown("/elsewhere/a.json") == "/elsewhere/a.json"


def test_a_verdict_on_few_samples_says_so():
    from sdtp_lib.workspace.verdict import MIN_EVIDENCE_N, few
    assert few(2, "held-out samples") == " (n = 2 held-out samples: too few to be evidence)"
    assert few(MIN_EVIDENCE_N, "prompts") == "" and few(None, "prompts") == ""


def test_backend_lines_take_each_length_from_the_last_backend_run_and_say_what_is_missing(tmp_path):
    from sdtp_lib.workspace import paper_tables as PT
    from sdtp_lib.workspace.sources import BACKEND_LATENCY, Source, Sources
    r = lambda v, e, a, T, s, k=None: dict(row(v, e, T, s), attn=a, e2e_s=2 * s, keep_ratio=k)  # noqa: E731
    old = profile([r("dense", "hf", "sdpa", 1024, 1.0), r("sdtp", "sdtp", "sdpa", 1024, 0.5, 0.9),
                   r("dense", "hf", "sdpa", 2048, 9.0), r("sdtp", "sdtp", "sdpa", 2048, 1.0, 0.9)])
    new = profile([r("dense", "hf", "sdpa", 2048, 4.0), r("sdtp@0.8", "sdtp", "flash_attention_4", 2048, 1.0, 0.8)])
    src = Sources(tmp_path, tmp_path)
    src.add(Source(f"backend:{BACKEND_LATENCY[0]}", tmp_path / "a", old))
    src.add(Source(f"backend:{BACKEND_LATENCY[1]}", tmp_path / "b", new))
    lines = [ln for ln in PT.backend_lines(src).splitlines() if ln.startswith("- ")]
    assert lines == [f"- 1K (`reports/results/{BACKEND_LATENCY[0]}`): sdpa, r = 0.9: 2.00x prefill, 2.00x end to end",
                     f"- 2K (`reports/results/{BACKEND_LATENCY[1]}`): flash_attention_4, r = 0.8: 4.00x prefill, "
                     "4.00x end to end"]  # 2K only from the later run: not the earlier run's 9.0 / 1.0
    src.items.pop(f"backend:{BACKEND_LATENCY[1]}")
    assert f"- missing: `reports/results/{BACKEND_LATENCY[1]}`" in PT.backend_lines(src)


def test_the_hand_written_note_reads_the_scorer_and_whole_span_comparisons(tmp_path):
    from sdtp_lib.workspace import report as RE
    run, results = tmp_path / "run", tmp_path / "results"
    write(run / "run.json", {"profile": "t", "notebooks": []})
    lay = ("question_first", "question_last")
    write(results / RE.SCORERS_RUN / "synthetic" / "results.json", synthetic_result(
        ["dense", "sdtp:predictor", "sdtp:attention"],
        {"dense": [1.0, 1.0], "sdtp:predictor": [0.5, 0.25], "sdtp:attention": [0.75, 1.0]}, layouts=lay))
    assert "keeps 50% / 25% of dense" in RE._scorer_note(load_sources(run, results))
    assert "whole spans" not in RE._scorer_note(load_sources(run, results))  # no spans comparison: no sentence
    specs = [spec for _, spec in RE.SPANS_SPECS]
    write(results / RE.SPANS_RUN / "suite" / "results.json", synthetic_result(
        ["dense", *specs], {"dense": [0.8, 0.8], specs[0]: [0.76, 0.8], specs[1]: [0.8, 0.4], specs[2]: [0.4, 0.8]},
        layouts=lay))
    note = RE._scorer_note(load_sources(run, results))
    assert "the shipped hybrid keeps 95% / 100%, the paper's predictor keeps 100% / 50%" in note
    assert "window attention keeps 50% / 100% of dense" in note and "(1.50x," in note


def test_frontier_panels_wrap_into_rows_and_the_notes_stay_inside_the_figure():
    specs = ["dense", "sdtp:predictor", "sdtp@0.6:predictor"]
    acc = {"dense": [1.0], "sdtp:predictor": [0.5], "sdtp@0.6:predictor": [0.4]}
    results = {f"source {k}": synthetic_result(specs, acc) for k in range(4)}
    results["dense only"] = synthetic_result(["dense"], {"dense": [1.0]})
    fr = FR.frontier(results, FR.speed_rows(speed_files()))
    fig = PF.frontier_figure(fr)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [f"source {k}" for k in range(4)]  # no panel for "dense only"
    assert len(fig.axes) == 6 and len({round(ax.get_position().y0, 3) for ax in shown}) == 2  # 3 a row, 2 rows
    fig.canvas.draw()
    (notes,) = fig.texts
    assert "dense only (no scorer with a speed row)" in notes.get_text().replace("\n    ", " ")
    assert notes.get_text().count("sdtp@0.6:predictor") == 4  # each unmatched point is named
    box = notes.get_window_extent()
    assert box.x1 <= fig.bbox.width and box.y1 < min(ax.get_window_extent().y0 for ax in shown)  # under the panels


def test_saliency_sparsity_comes_from_the_ablations_when_no_01_or_02_ran(tmp_path):
    """The qwen2.5-0.5b profile runs neither 01 nor 02: its saliency figure reads 07's stage-1 file, and 01's
    wins where both exist."""
    import torch
    from sdtp_lib.training.saliency import SaliencyStore
    from sdtp_lib.workspace.sources import _saliency

    def store(scale):
        T = 12
        rec = dict(input_ids=torch.arange(T), attention_mask=torch.ones(T), labels=torch.full((T,), -100),
                   prompt_len=10, source_index=0,
                   scores={2: scale * torch.arange(T, dtype=torch.float32) ** 4, 4: torch.ones(T)})
        return SaliencyStore.from_records([rec], {"schema": "sdtp-saliency", "version": 1})

    run = tmp_path / "run"
    assert not _saliency(run).found and "07_ablations" in _saliency(run).why
    for d in ("07_ablations/saliency", "01_saliency"):
        (run / d).mkdir(parents=True)
    store(1.0).save(run / "07_ablations" / "saliency" / "saliency.safetensors")
    got = _saliency(run)
    assert got.found and got.path == run / "07_ablations" / "saliency" / "saliency.safetensors"
    assert [r["layer"] for r in got.data["per_layer"]] == [2, 4] and got.data["per_layer"][1]["top10_share"] == 0.1
    store(1.0).save(run / "01_saliency" / "saliency.safetensors")
    assert _saliency(run).path == run / "01_saliency" / "saliency.safetensors"


def test_pareto_keeps_per_source_what_nothing_beats_on_both_accuracy_and_speed():
    from sdtp_lib.workspace import report as R
    pt = lambda src, name, share, x, how="own": {"source": src, "scorer": name, "share": share, "speedup": x,  # noqa: E731
                                                 "speed": None if x == 1.0 else object(), "how": how}
    pts = [pt("a", "dense", 1.0, 1.0), pt("a", "slow-good", 0.95, 1.5), pt("a", "fast-ok", 0.80, 2.5),
           pt("a", "dominated", 0.79, 2.4), pt("a", "tie-worse", 0.95, 1.4), pt("a", "proxy", 0.5, 3.0, "a proxy"),
           pt("b", "other-model", 0.99, 1.2)]
    front = FR.pareto(pts)
    assert [p["scorer"] for p in front["a"]] == ["slow-good", "fast-ok", "proxy"]  # by speedup; dense not listed
    assert [p["scorer"] for p in front["b"]] == ["other-model"]  # sources are not compared with each other
    text = R.verdict(load_sources_stub(), {"points": pts, "length": 32768}, [])
    assert "  - a: slow-good 95.0% at 1.50x; fast-ok 80.0% at 2.50x; proxy 50.0% at 3.00x [a proxy]." in text
    assert "  - b: other-model 99.0% at 1.20x." in text and "dominated" not in text


def load_sources_stub():
    from pathlib import Path
    from sdtp_lib.workspace.sources import Sources
    return Sources(run=Path("run"), results_dir=Path("results"))


def test_fixture_scores_are_not_tested_and_real_data_get_a_word(tmp_path):
    from sdtp_lib.workspace import verdict as V
    from sdtp_lib.workspace.sources import Source, Sources
    acc = lambda a: {t: a for t in ("copa", "piqa")}  # noqa: E731
    lm = lambda data: {"scorers": {  # noqa: E731
        "dense": {"accuracy": acc(0.60), "n_samples": {"copa": 8}, "config": {"data": data}},
        "sdtp:predictor": {"accuracy": acc(0.59), "n_samples": {"copa": 8}, "config": {"data": data}},
        "sdtp:random": {"accuracy": acc(0.40), "n_samples": {"copa": 8}, "config": {"data": data}}}}
    src = Sources(tmp_path, tmp_path)
    src.add(Source("lmeval", tmp_path / "l.json", lm("data/lmeval_fixture")))
    item = V.lmeval_item(src)
    assert item.word == "not tested" and "no evidence" in item.ours  # the fixture checks the protocol only
    src.add(Source("lmeval", tmp_path / "l.json", lm("/data/lm-eval")))
    item = V.lmeval_item(src)  # -1.0 is within the paper's -0.15..+1.26 +- 3; -20.0 is not
    assert item.word == "partly reproduces" and "sdtp:predictor -1.0 (reproduces)" in item.detail
    assert "sdtp:random -20.0 (does not reproduce)" in item.detail


def test_retrieval_line_reads_this_runs_points_and_says_which_scorer_keeps_more():
    from sdtp_lib.workspace import verdict as V
    pts = lambda a, b: {"points": [  # noqa: E731
        {"source": "this run (x)", "scorer": "sdtp:predictor", "share": a},
        {"source": "this run (x)", "scorer": "sdtp:attention", "share": b},
        {"source": "other", "scorer": "sdtp:predictor", "share": 0.99}]}
    item = V.retrieval_item(pts(0.6, 0.82))
    assert item.ours == "sdtp:predictor 60%, sdtp:attention 82% of dense" and "keeps more than" in item.detail
    assert "keeps no more than" in V.retrieval_item(pts(0.9, 0.8)).detail
    assert V.retrieval_item({"points": pts(0.6, 0.8)["points"][1:]}) is None  # no predictor point: no line


def test_the_readme_headline_block_is_replaced_or_refused():
    from sdtp_lib.workspace.report import README_BEGIN, README_END, headline_rows, with_headline
    summary = "# S\n\n## Headline\n\nx\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## The run\n\n| c |\n|---|\n"
    assert headline_rows(summary) == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    readme = f"top\n{README_BEGIN}\nold\n{README_END}\nbottom\n"
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert with_headline(readme, summary) == f"top\n{README_BEGIN}\n{table}{README_END}\nbottom\n"
    for bad in ("no block\n", readme + README_END + "\n", f"{README_END}\n{README_BEGIN}\n"):
        with pytest.raises(ValueError, match="needs exactly one"):
            with_headline(bad, summary)
    with pytest.raises(ValueError, match="no '## Headline' section"):
        headline_rows("# S\n\n## Verdict\n")
    with pytest.raises(ValueError, match="holds no table"):
        headline_rows("## Headline\n\ntext only\n\n## The run\n")


def test_decode_times_taken_on_a_shared_gpu_say_so(tmp_path):
    """Answers from worker processes sharing one device carry device_sharing: the H2O table's loop cell, the
    decode panel's title and the suite's efficiency note name it; one process's rows say nothing of it."""
    from sdtp_lib.eval import synthetic as Y
    from sdtp_lib.workspace import paper_tables as PT
    syn = synthetic_result(["dense", "dense+H0.4"], {"dense": [1.0], "dense+H0.4": [0.5]})
    write(tmp_path / "run" / "06_synthetic" / "results.json", syn)
    src = load_sources(tmp_path / "run", tmp_path / "results")
    rows = [{"scorer": s, "compression": 1.0, "kv_bytes": 2 ** 20, "decode_ms_per_token": 5.0, "device_sharing": 4}
            for s in ("dense", "dense+H0.4")]
    eff = Y.efficiency_by_scorer(rows)
    assert eff["dense"]["device_sharing"] == 4 and "up to 4 processes" in Y.efficiency_markdown(eff)
    for pts in (PF.h2o_points(syn, rows), PF.h2o_points({**syn, "efficiency": eff})):
        assert {p["device_sharing"] for p in pts} == {4}
        assert "| this project's, 4 processes on one GPU |" in PT.h2o_section(pts, src)
        assert "4 processes sharing the GPU" in PF.h2o_figure(pts).axes[-1].get_title()
    alone = [{k: v for k, v in r.items() if k != "device_sharing"} for r in rows]
    eff1 = Y.efficiency_by_scorer(alone)
    assert eff1["dense"]["device_sharing"] == 1 and "processes" not in Y.efficiency_markdown(eff1)
    pts = PF.h2o_points(syn, alone)
    assert {p["device_sharing"] for p in pts} == {1} and "sharing" not in PF.h2o_figure(pts).axes[-1].get_title()
    assert "processes on one GPU" not in PT.h2o_section(pts, src)


def test_ablation_figures_show_each_training_seed():
    rows = [{"setting": s, "scorer": "predictor", "seed": k, "heldout_delta": v, "stages": n}
            for s, n, vals in (("1 stage", 1, (0.8, 1.2)), ("10 stages", 10, (0.5, 0.7))) for k, v in enumerate(vals)]
    res = ablation("stages", rows)
    fig = PF.ablation_figure(res, "stages")
    dots = sorted(y for ln in fig.axes[-1].lines if ln.get_marker() == "o" for y in ln.get_ydata())
    assert dots == pytest.approx([0.5, 0.7, 0.8, 1.2])  # every seed, not only the bars' means
    assert [b.get_height() for b in fig.axes[-1].containers[0]] == pytest.approx([1.0, 0.6])
    fig = PF.start_layer_figure(ablation("start_layer", [{**r, "start_layer": r["stages"], "keep_ratio": 0.9}
                                                         for r in rows]))
    dots = sorted(y for ln in fig.axes[-1].lines if ln.get_marker() == "o" and len(ln.get_ydata()) == 1
                  for y in ln.get_ydata())
    assert dots == pytest.approx([0.5, 0.7, 0.8, 1.2])


def test_the_run_section_names_every_commit_a_resumed_run_ran_at(tmp_path):
    from sdtp_lib.workspace.sources import Source, Sources
    src = Sources(tmp_path, tmp_path)
    rec = {"git_commit": "a" * 40, "versions": {}, "notebooks": [], "ended": None, "status": "running"}
    src.add(Source("run", tmp_path / "run.json", rec))
    from sdtp_lib.workspace.report import run_section
    text = run_section(src)
    assert f"commit {'a' * 40}\n" in text and "to its end: this summary is written while its last notebook runs" in text
    rec["resumed"] = [{"git_commit": "b" * 40}, {"git_commit": "b" * 40, "redo": ["08_figures"]},
                      {"git_commit": "c" * 40, "redo": ["08_figures"]}]
    assert f"commit {'a' * 40}; resumed 3 times, at commits bbbbbbb, ccccccc (re-running 08_figures)\n" in run_section(src)
