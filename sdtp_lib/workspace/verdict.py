"""The final summary's verdict, computed: one Item per claim of the paper (and per finding of this project), each
with the paper's number, ours and one word, against stated tolerances. The summary shows the items twice: as the
headline table at its top and as the verdict's bullets at its end, with the detail.

    items = verdict_items(src, frontier, h2o)
    headline_table(items)      # | claim | paper | this project | verdict |
    bullets(items)             # - **Prefill speed: reproduces** the paper's speedups within 20% at ...
"""
from __future__ import annotations

from dataclasses import dataclass

from .frontier import nondominated, pareto
from .paper import PAPER
from .paper_figures import ablation_value, pruned_rows
from .paper_tables import (bench_model, canon_loss, fmt, h2o_rows, latency_rows, lb_stand_in, lmeval_rows,
                           longbench_rows, md_table, mean_by)
from .sources import Sources

TOL_SPEED = 0.20  # a speedup within 20% of the paper's "reproduces"
TOL_POINTS = 3.0  # a quality difference (to dense / full) within 3 points of the paper's "reproduces"
MIN_EVIDENCE_N = 30  # fewer samples behind a verdict: it is stated, and said to be too few to count
NEAR_DENSE = 0.95  # the frontier's headline: the fastest setting that keeps this share of dense accuracy
NOT_TESTED = "not tested"
FINDING = "not in the paper"  # the word of this project's own findings
HEADLINE_LEN = 32768  # the speed headline: this prompt length and the longest


@dataclass
class Item:
    topic: str    # "Prefill speed"
    word: str     # "reproduces", "does not reproduce", "not tested", ...
    paper: str    # the paper's number, short
    ours: str     # ours, short (the headline table's cell)
    detail: str   # the bullet's text after "**topic: word**"; may hold further lines
    note: str = ""  # too few samples to count (few()): the headline says so too


def few(n, what: str) -> str:
    """" (n = 2 held-out samples: too few to be evidence)" below MIN_EVIDENCE_N, else ""."""
    return f" (n = {n} {what}: too few to be evidence)" if n is not None and n < MIN_EVIDENCE_N else ""


def _word(words: dict) -> str:
    """One word for several scorers' verdicts: the common one, else "partly reproduces"."""
    got = set(words.values())
    return got.pop() if len(got) == 1 else "partly reproduces"


# ------------------------------------------------------------------ the paper's tables
def speed_item(src: Sources) -> Item | None:
    lat = [r for r in latency_rows(src) if r.get("ours_prefill") is not None]
    if not lat:
        return None
    ok = [r for r in lat if abs(r["ours_prefill"] / r["paper_prefill"] - 1) <= TOL_SPEED]
    faster = [r for r in lat if r["ours_prefill"] > r["paper_prefill"] * (1 + TOL_SPEED)]
    word = "reproduces" if len(ok) == len(lat) else "partly reproduces" if ok else "does not reproduce"
    each = ", ".join("%dK %.2fx vs %.2fx" % (r["prompt_len"] // 1024, r["ours_prefill"], r["paper_prefill"])
                     for r in lat)
    ends = [r for r in lat if r["prompt_len"] == HEADLINE_LEN and r is not lat[-1]] + [lat[-1]]  # 32K, the longest
    at = " / ".join(f"{r['prompt_len'] // 1024}K" for r in ends)
    paper = " / ".join(f"{r['paper_prefill']:.2f}x" for r in ends)
    ours = " / ".join(f"{r['ours_prefill']:.2f}x" for r in ends)
    return Item("Prefill speed", word, f"{paper} at {at} ({PAPER['latency']['model']})",
                f"{ours} (Qwen2-7B shape, random weights)",
                f"the paper's speedups within {100 * TOL_SPEED:.0f}% at {len(ok)} of {len(lat)} prompt lengths ({each})"
                + (f"; faster than the paper at {len(faster)}" if faster else "")
                + " (Qwen2-7B shape, random weights, H200).")


def longbench_item(src: Sources) -> Item | None:
    lb = [r for r in longbench_rows(src) if r["paper"] is not None and r["paper"]["method"] == "SDTP"
          and r["share"] is not None]
    if not lb:
        return None
    p = PAPER["longbench"]["rows"]
    ps = 100 * p[1]["score"] / p[0]["score"]
    paper = f"SDTP keeps {ps:.0f}% of dense ({PAPER['longbench']['model']})"
    each = "; ".join(f"{r['scorer']} {100 * r['share']:.0f}%" for r in lb)
    if "fixture" in lb_stand_in(src):  # a protocol check: no word on reproduction
        return Item("LongBench", NOT_TESTED, paper, f"{each} (the fixture: no evidence)",
                    f"(the fixture checks the protocol; its scores are no evidence): {each} of dense, the paper's SDTP "
                    f"{ps:.0f}%.")
    words = {r["scorer"]: "reproduces" if abs(100 * r["share"] - ps) <= TOL_POINTS else "keeps more than"
             if 100 * r["share"] > ps else "does not reproduce" for r in lb}
    return Item("LongBench", _word(words), paper, each,
                f"the paper's retention of {ps:.0f}% of dense (tolerance {TOL_POINTS:g} points): "
                + "; ".join(f"{r['scorer']} {100 * r['share']:.0f}% ({words[r['scorer']]})" for r in lb) + ".")


def lmeval_item(src: Sources) -> Item | None:
    lm = lmeval_rows(src)
    dense = next((r for r in lm if r["scorer"] == "dense"), None)
    rows = [r for r in lm if r["scorer"] != "dense" and r["accuracy"] is not None]
    if dense is None or dense["accuracy"] is None or not rows:
        return None
    pd_ = [p["sdtp"] - p["full"] for p in PAPER["lmeval"]["rows"]]
    diffs = {r["scorer"]: r["accuracy"] - dense["accuracy"] for r in rows}
    each = "; ".join(f"{k} {d:+.1f}" for k, d in diffs.items())
    paper = f"{min(pd_):+.2f} to {max(pd_):+.2f} points (three 7B models)"
    if any("lmeval_fixture" in r["data"] for r in rows):
        n = rows[0]["n_per_task"]
        return Item("lm-eval", NOT_TESTED, paper, f"{each} (the fixture: no evidence)",
                    f"(the fixture, {n[0] if n else '?'} documents per task, checks the protocol; its scores are no "
                    f"evidence): {each} points against dense, the paper's {min(pd_):+.2f} to {max(pd_):+.2f}.")
    words = {k: "reproduces" if min(pd_) - TOL_POINTS <= d <= max(pd_) + TOL_POINTS else "does not reproduce"
             for k, d in diffs.items()}
    return Item("lm-eval", _word(words), paper, each,
                f"the paper's no-loss result ({min(pd_):+.2f} to {max(pd_):+.2f} points, tolerance {TOL_POINTS:g}): "
                + "; ".join(f"{k} {d:+.1f} ({words[k]})" for k, d in diffs.items()) + ".")


def _few_prompts(points: list[dict]) -> str:
    return few(min((p.get("n") or 10 ** 9) for p in points), "prompts")


def h2o_items(src: Sources, h2o: list[dict]) -> list[Item]:
    by: dict = {}
    rows = h2o_rows(h2o)
    alone = {(p["bench"], p["budget"]): p["score"] - p["without"] for p in rows  # H2O alone against dense
             if p["base"] == "dense" and p["score"] is not None and p["without"] is not None}
    for p in rows:
        if p["dense_same_budget"] is not None and p["score"] is not None:
            by.setdefault(p["budget"], []).append(p)
    out = []
    for budget, ps in by.items():  # the word from the benchmarks that are evidence (not the LongBench fixture)
        stand = {p["bench"]: p["bench"] == "LongBench" and "fixture" in lb_stand_in(src) for p in ps}
        d = {id(p): p["score"] - p["dense_same_budget"] for p in ps}
        words = {id(p): "reproduces" if -TOL_POINTS <= d[id(p)] else "does not reproduce" for p in ps
                 if not stand[p["bench"]]}
        tiny = any(bench_model(src, b).startswith("tiny-") for b in stand)
        benches = []
        for bench in stand:
            mine = [p for p in ps if p["bench"] == bench]
            ref = alone.get((bench, budget))
            benches.append(f"{bench}{' (fixture: no evidence)' if stand[bench] else ''} " + ", ".join(
                f"{p['scorer']} {d[id(p)]:+.1f}" for p in mine)
                + (f", H2O alone {ref:+.1f} against dense" if ref is not None else "") + _few_prompts(mine))
        evidence = [p for p in ps if not stand[p["bench"]]]
        note = " (a random tiny model: not evidence)" if tiny else _few_prompts(evidence) if evidence else ""
        out.append(Item(f"H2O at {100 * budget:.0f}% of the KV", _word(words) if words else NOT_TESTED,
                        "SDTP adds almost no further loss",
                        ", ".join(f"{p['bench']} {p['scorer']} {d[id(p)]:+.1f}" for p in evidence)
                        + " points against H2O alone" if evidence else "only the fixture",
                        f"\"almost no further loss\" from SDTP on top of H2O (points against H2O alone at the same "
                        f"budget, tolerance {TOL_POINTS:g}): " + "; ".join(benches)
                        + ("; a random tiny model: not evidence" if tiny else "") + ".", note))
    return out


# ------------------------------------------------------------------ the ablations
def _metric(rows) -> tuple[str, str, int]:
    """The ablations' quality measure: the synthetic suite's accuracy against dense where the rows have it (higher
    is better), else the held-out loss against dense (lower is better): (metric, unit, sign)."""
    if any(ablation_value(r, "synthetic") is not None for r in rows):
        return "synthetic", "points of synthetic accuracy against dense", 1
    return "heldout", "held-out loss against dense", -1


def _spec(metric: str) -> str:
    return "+.1f" if metric == "synthetic" else "+.3f"


def _few(rows, metric) -> str:
    """few()'s note for the rows' smallest sample count of `metric`."""
    key, what = ("n_synthetic", "prompts") if metric == "synthetic" else ("n_heldout", "held-out samples")
    ns = [r.get(key) for r in rows if r.get(key)]
    return few(min(ns), what) if ns else ""


def _by_scorer(rows, key, metric) -> dict:
    """{scorer label: {value of key: mean difference to dense over seeds}}."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    return {lab: mean_by(rs, key, metric) for lab, rs in out.items()}


def losses_item(src: Sources) -> Item | None:
    losses = src.get("ablation_losses")
    if losses is None:
        return None
    rows = pruned_rows(losses)
    paper = " > ".join(f"{p['score']:.2f}" for p in PAPER["ablation_losses"]["rows"]) + \
        f" ({PAPER['ablation_losses']['model']} accuracy: full, no ranking, neither)"
    loss_of = {r.get("setting"): r.get("loss") for r in rows}
    held = {canon_loss(k, loss_of.get(k)): v for k, v in mean_by(rows, "setting", "heldout").items()
            if canon_loss(k, loss_of.get(k))}
    if not {"full", "no_rank", "no_rank_mse"} <= set(held):
        return Item("Losses", NOT_TESTED, paper, "-", f"(the settings full / no ranking / no ranking and MSE were not "
                    f"all found: {sorted(loss_of, key=str)}).")
    same = held["full"] <= held["no_rank"] <= held["no_rank_mse"]
    n = min((r.get("n_heldout") or 0 for r in rows), default=0)
    vals = " / ".join(f"{held[k]:+.3f}" for k in ("full", "no_rank", "no_rank_mse"))
    note = (" (a random tiny model: not evidence)" if str(losses.get("model")).startswith("tiny-")
            else few(n, "held-out samples"))
    return Item("Losses", "reproduces" if same else "does not reproduce", paper,
                f"held-out loss - dense {vals}",
                "the paper's order (full best, then without ranking, then without ranking and MSE): held-out loss - "
                f"dense {vals}{note}.", note)


def _rows(src: Sources, ablation: str) -> list[dict]:
    res = src.get(f"ablation_{ablation}")
    return pruned_rows(res) if res is not None else []


def _each(by: dict, values: list, metric: str) -> str:
    """'predictor -30.0 / -20.0; attention ...': each scorer's mean difference to dense at each value."""
    return "; ".join(f"{lab} " + " / ".join(f"{v[x]:{_spec(metric)}}" if x in v else "-" for x in values)
                     for lab, v in by.items())


def stages_item(src: Sources) -> Item | None:
    if not (rows := _rows(src, "stages")):
        return None
    metric, unit, sign = _metric(rows)
    by = _by_scorer(rows, "stages", metric)
    ns = sorted({n for v in by.values() for n in v})
    better = {lab: sign * (v[ns[-1]] - v[ns[0]]) > 0 for lab, v in by.items() if ns[0] in v and ns[-1] in v}
    word = ("help" if all(better.values()) else "do not help" if not any(better.values()) else "help "
            + ", ".join(k for k, b in better.items() if b) + " only")
    comp = sorted({f"{r['compression']:.2f}x" for r in rows if r.get("compression")})
    each = _each(by, ns, metric)
    return Item("More stages at equal compression", word, "10 stages (the method; SDTP-low: 5)",
                f"{' / '.join(map(str, ns))} stages: {each}",
                f"({', '.join(comp)}); {unit} with {' / '.join(map(str, ns))} stages: {each}{_few(rows, metric)}.",
                _few(rows, metric))


def keep_ratio_item(src: Sources) -> Item | None:
    if not (rows := _rows(src, "keep_ratio")):
        return None
    metric, unit, _ = _metric(rows)
    by = _by_scorer(rows, "keep_ratio", metric)
    rs = sorted({k for v in by.values() for k in v}, reverse=True)
    cost = {r["keep_ratio"]: r.get("flops_ratio") for r in rows}
    each = _each(by, rs, metric)
    flops = " / ".join(fmt(cost.get(r_), ".2f") for r_ in rs)
    return Item("Keep ratio", "measured", f"r = {PAPER['placement']['keep_ratio']}",
                f"r = {' / '.join(map(str, rs))}: FLOPs {flops}; {each}",
                f"r = {' / '.join(map(str, rs))}: prefill FLOPs {flops} of dense (Qwen2-7B shape); {unit}: {each}"
                + _few(rows, metric) + ".", _few(rows, metric))


def start_layer_item(src: Sources) -> Item | None:
    if not (rows := _rows(src, "start_layer")):
        return None
    metric, unit, sign = _metric(rows)
    pl = PAPER["placement"]
    best = (pl["start_layer"], pl["keep_ratio"])
    parts, on = [], {}
    for lab in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == lab]
        q = mean_by([{**r, "_at": (r.get("start_layer"), r.get("keep_ratio"))} for r in mine], "_at", metric)
        flops = {(r.get("start_layer"), r.get("keep_ratio")): r.get("flops_ratio") for r in mine}
        pts = [(k, sign * v, flops[k]) for k, v in q.items() if flops.get(k) is not None]
        front = nondominated(pts, lambda p: (p[1], -p[2]))  # quality up, FLOPs down
        on[lab] = best in {p[0] for p in front}
        parts.append(f"{lab}: " + ", ".join(f"layer {k[0]}, r = {k[1]} ({sign * v:{_spec(metric)}}, FLOPs {f:.2f})"
                                            for k, v, f in sorted(front, key=lambda p: p[2])))
    tried = any((r.get("start_layer"), r.get("keep_ratio")) == best for r in rows)
    word = (f"{NOT_TESTED} (layer {best[0]}, r = {best[1]} was not run)" if not tried else "holds" if all(on.values())
            else "does not hold" if not any(on.values()) else "holds for " + ", ".join(k for k, b in on.items() if b)
            + " only")
    return Item("The paper's placement", word, f"first stage at layer {best[0]}, r = {best[1]}: the best balance",
                "; ".join(f"{lab} {'on' if b else 'off'} the quality/FLOPs front" for lab, b in on.items()),
                f"(first stage at layer {best[0]}, r = {best[1]}) as a setting no other beats on both quality and "
                f"prefill FLOPs; those settings ({unit}, FLOPs ratio): " + "; ".join(parts) + _few(rows, metric) + ".",
                _few(rows, metric))


# ------------------------------------------------------------------ this project's own finding
def frontier_item(frontier: dict | None) -> Item | None:
    front = pareto(frontier["points"]) if frontier else {}
    if not any(front.values()):
        return None
    near = [p for pts in front.values() for p in pts if p["share"] >= NEAR_DENSE]
    top = max(near, key=lambda p: p["speedup"]) if near else None
    ours = (f"{top['scorer']}: {100 * top['share']:.0f}% of dense at {top['speedup']:.2f}x ({top['source']})"
            if top else f"no setting keeps {100 * NEAR_DENSE:.0f}%")
    lines = [f"  - {s}: " + "; ".join(f"{p['scorer']} {100 * p['share']:.1f}% at {p['speedup']:.2f}x"
                                      + ("" if p["how"] == "own" else f" [{p['how']}]") for p in pts) + "."
             for s, pts in front.items() if pts]
    return Item(f"Fastest setting keeping {100 * NEAR_DENSE:.0f}% of dense", FINDING, "-", ours,
                f"(per source, the settings no other setting of that source beats on both accuracy and prefill speed "
                f"at {frontier['length'] // 1024}K; dense is 100% at 1x):\n" + "\n".join(lines))


def retrieval_item(frontier: dict | None, scorers=("sdtp:predictor", "sdtp:attention")) -> Item | None:
    """The paper's predictor against window attention on this run's synthetic suite (share of dense accuracy)."""
    mine = [p for p in (frontier or {}).get("points", []) if p["source"].startswith("this run")]
    share = {p["scorer"]: p["share"] for p in mine}
    if not all(s in share for s in scorers):
        return None
    each = ", ".join(f"{s} {100 * share[s]:.0f}%" for s in scorers)
    return Item("Long-context retrieval (synthetic suite)", FINDING, "-", f"{each} of dense",
                f"(this run's synthetic suite, share of dense accuracy at the same compression): {each}; the "
                f"question-aware {scorers[1]} keeps {'more' if share[scorers[1]] > share[scorers[0]] else 'no more'} "
                f"than the paper's token-local {scorers[0]} (docs/scorers.md).")


def verdict_items(src: Sources, frontier: dict | None, h2o: list[dict]) -> list[Item]:
    got = [speed_item(src), longbench_item(src), lmeval_item(src), losses_item(src), stages_item(src),
           keep_ratio_item(src), start_layer_item(src), *h2o_items(src, h2o), retrieval_item(frontier),
           frontier_item(frontier)]
    return [i for i in got if i is not None]


def bullets(items: list[Item]) -> str:
    if not items:
        return "- No paper table could be compared: every source is missing (see Sources).\n"
    return "".join(f"- **{i.topic}: {i.word}** {i.detail}\n" for i in items)


def headline_table(items: list[Item]) -> str:
    return md_table(["claim", "the paper", "this project", "verdict"],
                    [[i.topic, i.paper, i.ours + i.note, f"**{i.word}**"] for i in items])
