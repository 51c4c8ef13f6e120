"""The final summary beside the paper (`final_summary.md`, written by notebook 08 into its run_dir): the run's
hardware, versions, configuration and time; every paper table (workspace.paper_tables) beside this project's numbers;
a verdict computed from the numbers against stated tolerances, and a short hand-written part, marked as such.

    src = sources.load_sources(run)
    text = final_summary(src, {"frontier": ("frontier.png", ""), "h2o": (None, "why"), ...}, frontier=fr, h2o=pts)
"""
from __future__ import annotations

from pathlib import Path

from ..models import project_root
from .paper import CITATION, PAPER
from .paper_tables import (ablation_section, bench_model, canon_loss, fmt, h2o_rows, h2o_section, latency_rows,
                           latency_section, lb_stand_in, lmeval_rows, lmeval_section, longbench_rows,
                           longbench_section, md_table, mean_by, run_models)
from .frontier import pareto
from .paper_figures import ablation_value, pruned_rows
from .sources import Sources

TOL_SPEED = 0.20  # a speedup within 20% of the paper's "reproduces"
TOL_POINTS = 3.0  # a quality difference (to dense / full) within 3 points of the paper's "reproduces"


# ------------------------------------------------------------------ the run
def run_section(src: Sources) -> str:
    run = src.get("run")
    if run is None:
        return f"## The run\n\n{src.run}: no run.json ({src.items['run'].why}): hardware, versions and time unknown.\n"
    v = run.get("versions", {})
    steps = run.get("notebooks", [])
    total = sum(s.get("duration_s") or 0 for s in steps)
    sittings = lambda s: f" in {s['sittings']} sittings" if (s.get("sittings") or 0) > 1 else ""  # noqa: E731
    rows = [[s["name"], s.get("status"), fmt(s.get("duration_s"), ".0f", " s") + sittings(s),
             ", ".join(f"{k}={val}" for k, val in s.get("parameters", {}).items() if k != "run_dir")] for s in steps]
    return (f"## The run\n\n- folder: `{src.run}`; profile `{run.get('profile')}` ({run.get('description', '')})\n"
            f"- hardware: {run.get('device')}\n"
            f"- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; commit {run.get('git_commit')}\n"
            f"- time: {run.get('started')} to {run.get('ended')}; {total:.0f} s in notebooks; status "
            f"{run.get('status')}\n\n" + md_table(["notebook", "status", "time", "parameters"], rows))


def shown(path) -> str:
    """A path as the summary shows it: relative to this checkout (or the working folder) where it lies inside."""
    p = Path(path).resolve()
    for base in (project_root(), Path.cwd()):
        if base is not None and p.is_relative_to(Path(base).resolve()):
            return str(p.relative_to(Path(base).resolve()))
    return str(path)


def sources_section(src: Sources) -> str:
    rows = [[name, "found" if s.found else "**missing**", f"`{shown(s.path)}`" if s.found else s.why]
            for name, s in src.items.items()]
    return "## Sources\n\n" + md_table(["source", "", "file"], rows)


# ------------------------------------------------------------------ verdict
MIN_EVIDENCE_N = 30  # fewer samples behind a verdict: it is stated, and said to be too few to count


def few(n, what: str) -> str:
    """" (n = 2 held-out samples: too few to be evidence)" below MIN_EVIDENCE_N, else ""."""
    return f" (n = {n} {what}: too few to be evidence)" if n is not None and n < MIN_EVIDENCE_N else ""


def verdict(src: Sources, frontier: dict | None, h2o: list[dict]) -> str:
    lines = []
    lat = [r for r in latency_rows(src) if r.get("ours_prefill") is not None]
    if lat:
        ok = [r for r in lat if abs(r["ours_prefill"] / r["paper_prefill"] - 1) <= TOL_SPEED]
        faster = [r for r in lat if r["ours_prefill"] > r["paper_prefill"] * (1 + TOL_SPEED)]
        word = "reproduces" if len(ok) == len(lat) else "partly reproduces" if ok else "does not reproduce"
        each = ", ".join("%dK %.2fx vs %.2fx" % (r["prompt_len"] // 1024, r["ours_prefill"], r["paper_prefill"])
                         for r in lat)
        lines.append(f"- **Prefill speed: {word}** the paper's speedups within {100 * TOL_SPEED:.0f}% at {len(ok)} of "
                     f"{len(lat)} prompt lengths ({each})"
                     + (f"; faster than the paper at {len(faster)}" if faster else "")
                     + " (Qwen2-7B shape, random weights, H200).")
    lb = [r for r in longbench_rows(src) if r["paper"] is not None and r["paper"]["method"] == "SDTP"
          and r["share"] is not None]
    if lb:
        p = PAPER["longbench"]["rows"]
        ps = 100 * p[1]["score"] / p[0]["score"]
        each = "; ".join(f"{r['scorer']} {100 * r['share']:.0f}%" for r in lb)
        if "fixture" in lb_stand_in(src):  # a protocol check: no word on reproduction
            lines.append(f"- **LongBench: not tested** (the fixture checks the protocol; its scores are no evidence): "
                         f"{each} of dense, the paper's SDTP {ps:.0f}%.")
        else:
            words = {r["scorer"]: "reproduces" if abs(100 * r["share"] - ps) <= TOL_POINTS else "keeps more than"
                     if 100 * r["share"] > ps else "does not reproduce" for r in lb}
            lines.append(f"- **LongBench: {_word(words)}** the paper's retention of {ps:.0f}% of dense (tolerance "
                         f"{TOL_POINTS:g} points): " + "; ".join(f"{r['scorer']} {100 * r['share']:.0f}% "
                                                                  f"({words[r['scorer']]})" for r in lb) + ".")
    lm = lmeval_rows(src)
    dense = next((r for r in lm if r["scorer"] == "dense"), None)
    if dense and dense["accuracy"] is not None:
        pd_ = [p["sdtp"] - p["full"] for p in PAPER["lmeval"]["rows"]]
        rows = [r for r in lm if r["scorer"] != "dense" and r["accuracy"] is not None]
        diffs = {r["scorer"]: r["accuracy"] - dense["accuracy"] for r in rows}
        each = "; ".join(f"{k} {d:+.1f}" for k, d in diffs.items())
        paper = f"the paper's {min(pd_):+.2f} to {max(pd_):+.2f}"
        n = rows[0]["n_per_task"] if rows else None
        if rows and any("lmeval_fixture" in r["data"] for r in rows):
            lines.append(f"- **lm-eval: not tested** (the fixture, {n[0] if n else '?'} documents per task, checks the "
                         f"protocol; its scores are no evidence): {each} points against dense, {paper}.")
        elif rows:
            words = {k: "reproduces" if min(pd_) - TOL_POINTS <= d <= max(pd_) + TOL_POINTS else "does not reproduce"
                     for k, d in diffs.items()}
            lines.append(f"- **lm-eval: {_word(words)}** the paper's no-loss result ({paper} points, tolerance "
                         f"{TOL_POINTS:g}): " + "; ".join(f"{k} {d:+.1f} ({words[k]})" for k, d in diffs.items())
                         + ".")
    losses = src.get("ablation_losses")
    if losses is not None:
        rows = pruned_rows(losses)
        loss_of = {r.get("setting"): r.get("loss") for r in rows}
        held = {canon_loss(k, loss_of.get(k)): v for k, v in mean_by(rows, "setting", "heldout").items()
                if canon_loss(k, loss_of.get(k))}
        if {"full", "no_rank", "no_rank_mse"} <= set(held):
            same = held["full"] <= held["no_rank"] <= held["no_rank_mse"]
            n = min((r.get("n_heldout") or 0 for r in rows), default=0)
            lines.append(f"- **Losses: {'reproduces' if same else 'does not reproduce'}** the paper's order (full best, "
                         f"then without ranking, then without ranking and MSE): held-out loss - dense "
                         f"{held['full']:+.3f} / {held['no_rank']:+.3f} / {held['no_rank_mse']:+.3f}"
                         + (" (a random tiny model: not evidence)" if str(losses.get("model")).startswith("tiny-")
                            else few(n, "held-out samples")) + ".")
        else:
            lines.append("- Losses: the settings full / no ranking / no ranking and MSE were not all found "
                         f"({sorted(loss_of, key=str)}): no verdict.")
    lines += ablation_verdicts(src)
    h2o_by: dict = {}
    for p in h2o_rows(h2o):
        if p["dense_same_budget"] is not None and p["score"] is not None:
            h2o_by.setdefault(p["budget"], []).append(p)
    for budget, ps in h2o_by.items():  # the word from the benchmarks that are evidence (not the LongBench fixture)
        stand = {p["bench"]: p["bench"] == "LongBench" and "fixture" in lb_stand_in(src) for p in ps}
        d = {id(p): p["score"] - p["dense_same_budget"] for p in ps}
        words = {id(p): "reproduces" if -TOL_POINTS <= d[id(p)] else "does not reproduce" for p in ps
                 if not stand[p["bench"]]}
        tiny = any(bench_model(src, b).startswith("tiny-") for b in stand)
        benches = []
        for bench in stand:
            mine = [p for p in ps if p["bench"] == bench]
            benches.append(f"{bench}{' (fixture: no evidence)' if stand[bench] else ''} " + ", ".join(
                f"{p['scorer']} {d[id(p)]:+.1f}" for p in mine) + few(min((p.get("n") or 10 ** 9) for p in mine),
                                                                     "prompts"))
        word = _word(words) if words else "not tested"
        lines.append(f"- **H2O at {100 * budget:.0f}% of the KV: {word}** \"almost no further loss\" from SDTP on top "
                     f"of H2O (points against H2O alone at the same budget, tolerance {TOL_POINTS:g}): "
                     + "; ".join(benches) + ("; a random tiny model: not evidence" if tiny else "") + ".")
    front = pareto(frontier["points"]) if frontier else {}
    if any(front.values()):
        lines.append(f"- **Frontier** (per source, the settings no other setting of that source beats on both "
                     f"accuracy and prefill speed at {frontier['length'] // 1024}K; dense is 100% at 1x):")
        lines += [f"  - {src}: " + "; ".join(f"{p['scorer']} {100 * p['share']:.1f}% at {p['speedup']:.2f}x"
                                             + ("" if p["how"] == "own" else f" [{p['how']}]") for p in pts) + "."
                  for src, pts in front.items() if pts]
    if not lines:
        lines.append("- No paper table could be compared: every source is missing (see Sources).")
    lines += ["", "**Hand-written** (a reading of the committed results, not a computed verdict): " + _scorer_note(src)
              + " LongBench and lm-eval stay stand-ins until they run on real Qwen2-7B weights and data."]
    return "## Verdict\n\n" + "\n".join(lines) + "\n"


def _word(words: dict) -> str:
    """One word for several scorers' verdicts: the common one, else "partly reproduces"."""
    got = set(words.values())
    return got.pop() if len(got) == 1 else "partly reproduces"


def _metric(rows) -> tuple[str, str, int]:
    """The ablations' quality measure: the synthetic suite's accuracy against dense where the rows have it (higher
    is better), else the held-out loss against dense (lower is better): (metric, unit, sign)."""
    if any(ablation_value(r, "synthetic") is not None for r in rows):
        return "synthetic", "points of synthetic accuracy against dense", 1
    return "heldout", "held-out loss against dense", -1


def _by_scorer(rows, key, metric) -> dict:
    """{scorer label: {value of key: mean difference to dense over seeds}}."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    return {lab: mean_by(rs, key, metric) for lab, rs in out.items()}


def ablation_verdicts(src: Sources) -> list[str]:
    """One line per ablation beyond the losses: what more stages, a lower keep ratio and a later first stage do here,
    and whether the paper's choice (multi-stage; first stage at layer 4, r = 0.9) holds up."""
    lines, fmt_ = [], lambda m: "+.1f" if m == "synthetic" else "+.3f"  # noqa: E731
    res = src.get("ablation_stages")
    if res is not None and (rows := pruned_rows(res)):
        metric, unit, sign = _metric(rows)
        by = _by_scorer(rows, "stages", metric)
        ns = sorted({n for v in by.values() for n in v})
        better = {lab: sign * (v[ns[-1]] - v[ns[0]]) > 0 for lab, v in by.items() if ns[0] in v and ns[-1] in v}
        word = ("help" if all(better.values()) else "do not help" if not any(better.values()) else "help "
                + ", ".join(k for k, b in better.items() if b) + " only")
        comp = sorted({f"{r['compression']:.2f}x" for r in rows if r.get("compression")})
        lines.append(f"- **Stages: more stages {word}** at equal compression ({', '.join(comp)}); {unit} with "
                     f"{' / '.join(map(str, ns))} stages: " + "; ".join(
                         f"{lab} " + " / ".join(f"{v[n]:{fmt_(metric)}}" if n in v else "-" for n in ns)
                         for lab, v in by.items()) + _few(rows, metric) + ".")
    res = src.get("ablation_keep_ratio")
    if res is not None and (rows := pruned_rows(res)):
        metric, unit, sign = _metric(rows)
        by = _by_scorer(rows, "keep_ratio", metric)
        rs = sorted({k for v in by.values() for k in v}, reverse=True)
        cost = {r["keep_ratio"]: r.get("flops_ratio") for r in rows}
        lines.append(f"- **Keep ratio** r = {' / '.join(map(str, rs))}: prefill FLOPs "
                     f"{' / '.join(fmt(cost.get(r_), '.2f') for r_ in rs)} of dense (Qwen2-7B shape); {unit}: "
                     + "; ".join(f"{lab} " + " / ".join(f"{v[r_]:{fmt_(metric)}}" if r_ in v else "-" for r_ in rs)
                                 for lab, v in by.items()) + _few(rows, metric) + ".")
    res = src.get("ablation_start_layer")
    if res is not None and (rows := pruned_rows(res)):
        metric, unit, sign = _metric(rows)
        pl = PAPER["placement"]
        parts, on = [], {}
        for lab in dict.fromkeys(r["label"] for r in rows):
            mine = [r for r in rows if r["label"] == lab]
            q = mean_by([{**r, "_at": (r.get("start_layer"), r.get("keep_ratio"))} for r in mine], "_at", metric)
            flops = {(r.get("start_layer"), r.get("keep_ratio")): r.get("flops_ratio") for r in mine}
            pts = [(k, sign * v, flops[k]) for k, v in q.items() if flops.get(k) is not None]
            front = [p for p in pts if not any(o[1] >= p[1] and o[2] <= p[2] and (o[1] > p[1] or o[2] < p[2])
                                               for o in pts)]
            on[lab] = (pl["start_layer"], pl["keep_ratio"]) in {p[0] for p in front}
            parts.append(f"{lab}: " + ", ".join(f"layer {k[0]}, r = {k[1]} ({sign * v:{fmt_(metric)}}, FLOPs {f:.2f})"
                                                for k, v, f in sorted(front, key=lambda p: p[2])))
        tried = any((r.get("start_layer"), r.get("keep_ratio")) == (pl["start_layer"], pl["keep_ratio"]) for r in rows)
        word = ("not tested (layer 4, r = 0.9 was not run)" if not tried else "holds" if all(on.values())
                else "does not hold" if not any(on.values()) else "holds for " + ", ".join(k for k, b in on.items()
                                                                                          if b) + " only")
        lines.append(f"- **First stage's layer: the paper's best balance (layer {pl['start_layer']}, r = "
                     f"{pl['keep_ratio']}) {word}** as a setting no other beats on both quality and prefill FLOPs; "
                     f"those settings ({unit}, FLOPs ratio): " + "; ".join(parts)
                     + _few(rows, metric) + ".")
    return lines


def _few(rows, metric) -> str:
    """few()'s note for the rows' smallest sample count of `metric`."""
    key, what = ("n_synthetic", "prompts") if metric == "synthetic" else ("n_heldout", "held-out samples")
    ns = [r.get(key) for r in rows if r.get(key)]
    return few(min(ns), what) if ns else ""


SCORERS_RUN = "2026-11-30_qwen2.5-0.5b_scorers_h200x2"  # the main scorer comparison (docs/scorers.md)
SPANS_RUN = "2026-12-06_qwen2.5-0.5b_whole-spans_1k-32k_h100"  # whole spans at r = 0.9 and 0.8 (the same suite)
SPANS_SPECS = (("the shipped hybrid", "sdtp@0.8+R0.02+W96:hybrid"), ("the paper's predictor",
               "sdtp@0.8+R0.02+W96:predictor"), ("window attention", "sdtp@0.8+R0.02+W96:attention"))


def _scorer_note(src: Sources) -> str:
    """The predictor's weakness on retrieval against window attention, then what whole spans change at r = 0.8, the
    numbers read from the committed comparisons (per layout, % of dense)."""
    from .frontier import quality
    res = src.get(f"synthetic:{SCORERS_RUN}")
    q = {x["scorer"]: x["by_layout"] for x in quality(res)} if res is not None else {}
    if "sdtp:predictor" not in q or "sdtp:attention" not in q:
        return f"(the committed scorer comparison {SCORERS_RUN} was not found: no numbers for this note.)"
    pct = lambda by: " / ".join(f"{100 * v:.0f}%" for v in by.values())  # noqa: E731
    note = (f"the paper's token-local predictor is weak on retrieval: on the synthetic suite ({SCORERS_RUN}, "
            f"Qwen2.5-Coder-0.5B, layouts {' / '.join(q['sdtp:predictor'])}) it keeps {pct(q['sdtp:predictor'])} of "
            f"dense accuracy, the question-aware window-attention scorer {pct(q['sdtp:attention'])} at the same "
            "compression and about the same speed (frontier figure): in a causal model the context's tokens cannot "
            "know a question that comes after them (docs/scorers.md).")
    spans = src.get(f"synthetic:{SPANS_RUN}")
    qs = {x["scorer"]: x for x in quality(spans)} if spans is not None else {}
    if all(spec in qs for _, spec in SPANS_SPECS):
        comp = qs[SPANS_SPECS[0][1]]["compression"]
        note += (" Keeping whole spans (a sentence, a line, a key with its value: `+W96`) changes the order: at "
                 f"r = 0.8 ({comp:.2f}x, {SPANS_RUN}) " + ", ".join(f"{name} keeps {pct(qs[spec]['by_layout'])}"
                                                                   for name, spec in SPANS_SPECS)
                 + " of dense; the losses left are short prompts and key-value retrieval (its README).")
    return note


# ------------------------------------------------------------------ all of it
def figures_section(figures: dict, frontier: dict | None = None) -> str:
    rows = [[name, f"![{name}]({path})" if path else "**not drawn**: " + why]
            for name, (path, why) in figures.items()]
    left = "".join(f"- frontier, not drawn: {u['source']}: {u['scorer']} ({u['why']})\n"
                   for u in (frontier or {}).get("unmatched", []))
    return "## Figures\n\n" + md_table(["figure", ""], rows) + ("\n" + left if left else "")


def final_summary(src: Sources, figures: dict, frontier: dict | None = None, h2o: list[dict] | None = None) -> str:
    """The whole final_summary.md. figures: {name: (file name or None, why not drawn)}."""
    model = run_models(src)
    return "\n".join([
        f"# Final summary: this run beside the paper\n\nPaper: {CITATION}. Our models: {model}. Every number below is "
        "read from the files listed under Sources; the paper's from sdtp_lib/workspace/paper.py.\n",
        run_section(src), latency_section(src), longbench_section(src), lmeval_section(src), ablation_section(src),
        h2o_section(h2o or [], src), figures_section(figures, frontier), verdict(src, frontier, h2o or []),
        sources_section(src)])
