"""The final summary beside the paper (`final_summary.md`, written by notebook 08 into its run_dir): the run's
hardware, versions, configuration and time; every paper table (workspace.paper_tables) beside this project's numbers;
a verdict computed from the numbers against stated tolerances, and a short hand-written part, marked as such.

    src = sources.load_sources(run)
    text = final_summary(src, {"frontier": ("frontier.png", ""), "h2o": (None, "why"), ...}, frontier=fr, h2o=pts)
"""
from __future__ import annotations

from .paper import CITATION, PAPER
from .paper_tables import (ablation_section, bench_model, canon_loss, fmt, h2o_rows, h2o_section, latency_rows,
                           latency_section, lb_stand_in, lmeval_rows, lmeval_section, longbench_rows,
                           longbench_section, md_table, mean_by, run_models)
from .frontier import pareto
from .paper_figures import pruned_rows
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


def sources_section(src: Sources) -> str:
    rows = [[name, "found" if s.found else "**missing**", f"`{s.path}`" if s.found else s.why]
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
        for r in lb:
            d = 100 * r["share"] - ps
            word = "reproduces" if abs(d) <= TOL_POINTS else "keeps more than" if d > 0 else "does not reproduce"
            stand = "fixture" in lb_stand_in(src)
            lines.append(f"- **LongBench, {r['scorer']}: {word}** the paper's retention ({100 * r['share']:.0f}% of dense "
                         f"vs {ps:.0f}%, tolerance {TOL_POINTS:g} points)"
                         + ("; on the fixture this is a protocol check, not evidence" if stand else "") + ".")
    lm = lmeval_rows(src)
    dense = next((r for r in lm if r["scorer"] == "dense"), None)
    if dense and dense["accuracy"] is not None:
        pd_ = [p["sdtp"] - p["full"] for p in PAPER["lmeval"]["rows"]]
        for r in lm:
            if r["scorer"] == "dense" or r["accuracy"] is None:
                continue
            d = r["accuracy"] - dense["accuracy"]
            word = "reproduces" if min(pd_) - TOL_POINTS <= d <= max(pd_) + TOL_POINTS else "does not reproduce"
            lines.append(f"- **lm-eval, {r['scorer']}: {word}** the paper's no-loss result ({d:+.1f} points vs the "
                         f"paper's {min(pd_):+.2f} to {max(pd_):+.2f}, tolerance {TOL_POINTS:g} points"
                         + (f"; {r['n_per_task'][0]} documents per task" if r["n_per_task"] else "") + ")"
                         + ("; on the fixture this is a protocol check, not evidence" if "lmeval_fixture" in r["data"]
                            else "") + ".")
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
    for p in h2o_rows(h2o):
        if p["dense_same_budget"] is not None and p["score"] is not None:
            d = p["score"] - p["dense_same_budget"]
            word = "reproduces" if -TOL_POINTS <= d else "does not reproduce"
            model = bench_model(src, p["bench"])
            lines.append(f"- **H2O, {p['bench']} {p['scorer']}: {word}** \"almost no further loss\" on top of H2O "
                         f"({d:+.1f} points against H2O alone, dense+H{p['budget']:g}; tolerance {TOL_POINTS:g} points)"
                         + ("; a random tiny model: not evidence" if model.startswith("tiny-")
                            else few(p.get("n"), "prompts")) + ".")
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
