"""The final summary's verdict, computed: one Item per claim of the paper (and per finding of this project), each
with the paper's number, ours and one word, against stated tolerances. The summary shows the items twice: as the
headline table at its top and as the verdict's bullets at its end, with the detail.

    items = verdict_items(src, frontier, h2o)
    headline_table(items)      # | claim | paper | this project | verdict |
    bullets(items)             # - **Prefill speed: reproduces** the paper's speedups within 20% at ...
"""
from __future__ import annotations

from dataclasses import dataclass

from .frontier import pareto
from .paper import PAPER
from .paper_figures import METRICS, ablation_ci, ablation_value, pruned_rows
from .paper_tables import (NOISE_RULE, bench_model, canon_loss, fmt, h2o_rows, latency_rows, lb_stand_in,
                           lmeval_rows, longbench_rows, md_table)
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
# Both quality measures are judged: the held-out response loss (lower is better) and the synthetic suite's accuracy
# (higher is better), each as a difference to dense. A difference between two settings counts only when their noise
# spans are apart (span(): the paired 95% interval against dense, over all seeds' intervals for a trained predictor,
# so the seed spread counts too): a conservative test, and the reason an order of means can be "inconclusive".
METRIC_SIGN = {"heldout": -1, "synthetic": 1}


def _spec(metric: str) -> str:
    return "+.1f" if metric == "synthetic" else "+.3f"


def _metrics(rows) -> list[str]:
    return [m for m in METRIC_SIGN if any(ablation_value(r, m) is not None for r in rows)]


def _few(rows, metric) -> str:
    """few()'s note for the rows' smallest sample count of `metric`."""
    key, what = ("n_synthetic", "prompts") if metric == "synthetic" else ("n_heldout", "held-out samples")
    ns = [r.get(key) for r in rows if r.get(key)]
    return few(min(ns), what) if ns else ""


def _notes(rows, model) -> str:
    if str(model).startswith("tiny-"):
        return " (a random tiny model: not evidence)"
    return "".join(dict.fromkeys(_few(rows, m) for m in _metrics(rows)))


def span(rows: list[dict], metric: str) -> tuple[float, float] | None:
    """A setting's noise span in `metric`'s unit: its rows' (one per seed) paired 95% intervals against dense,
    from the lowest bound to the highest; None where a row has no interval."""
    cis = [ablation_ci(r, metric) for r in rows]
    if not cis or None in cis:
        return None
    return min(c[0] for c in cis), max(c[1] for c in cis)


def _mean(rows, metric):
    v = [x for x in (ablation_value(r, metric) for r in rows) if x is not None]
    return sum(v) / len(v) if v else None


def versus(a: list[dict], b: list[dict], metric: str) -> int:
    """+1: setting a (its rows, one per seed) is better than b beyond the noise (spans apart), -1: worse, 0: within
    the noise, or a value or interval missing."""
    ma, mb, sa, sb = _mean(a, metric), _mean(b, metric), span(a, metric), span(b, metric)
    if None in (ma, mb, sa, sb) or not (sa[1] < sb[0] or sb[1] < sa[0]):
        return 0
    return 1 if METRIC_SIGN[metric] * (ma - mb) > 0 else -1


def _group(rows, key) -> dict:
    """{value of key (a row field, or a function of the row): its rows}, keys in row order."""
    out: dict = {}
    for r in rows:
        out.setdefault(key(r) if callable(key) else r.get(key), []).append(r)
    return out


def _values(groups: dict, metric: str) -> str:
    return " / ".join(fmt(_mean(g, metric), _spec(metric)) for g in groups.values())


def losses_item(src: Sources) -> Item | None:
    losses = src.get("ablation_losses")
    if losses is None:
        return None
    rows = pruned_rows(losses)
    paper = " > ".join(f"{p['score']:.2f}" for p in PAPER["ablation_losses"]["rows"]) + \
        f" ({PAPER['ablation_losses']['model']} accuracy: full, no ranking, neither)"
    by: dict = {}
    for r in rows:
        if (c := canon_loss(r.get("setting"), r.get("loss"))) is not None:
            by.setdefault(c, []).append(r)
    order = ("full", "no_rank", "no_rank_mse")
    if not set(order) <= set(by):
        return Item("Losses", NOT_TESTED, paper, "-", f"(the settings full / no ranking / no ranking and MSE were not "
                    f"all found: {sorted({r.get('setting') for r in rows}, key=str)}).")
    groups = {k: by[k] for k in order}
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]  # (better in the paper, worse)
    judged, cells = {}, []
    for m in _metrics(rows):
        res = {p: versus(groups[p[0]], groups[p[1]], m) for p in pairs}
        judged[m] = res
        means = [_mean(groups[k], m) for k in order]
        in_order = all(METRIC_SIGN[m] * (x - y) >= 0 for x, y in zip(means, means[1:]))
        apart = [f"{a} vs {b}" for (a, b), v in res.items() if v]
        cells.append(f"{METRICS[m][0]} {_values(groups, m)}: means {'in' if in_order else 'not in'} the paper's "
                     f"order, " + (f"apart beyond the noise: {', '.join(apart)}" if apart else "every pair within "
                                   "the noise"))
    got = [v for res in judged.values() for v in res.values()]
    word = ("does not reproduce" if -1 in got else "reproduces"
            if any(all(v == 1 for v in res.values()) for res in judged.values())
            else "partly reproduces" if 1 in got else "inconclusive")
    note = _notes(rows, losses.get("model"))
    seeds = max(len(g) for g in groups.values())
    return Item("Losses", word, paper,
                "; ".join(f"{METRICS[m][0]} {_values(groups, m)}" for m in judged)
                + ((" (within the seeds' spread)" if seeds > 1 else " (within the noise)") if word == "inconclusive"
                   else ""),
                f"the paper's order (full best, then without ranking, then without ranking and MSE), "
                f"{seeds} seed(s) each: " + "; ".join(cells) + f"{note}.", note)


def _rows(src: Sources, ablation: str) -> list[dict]:
    res = src.get(f"ablation_{ablation}")
    return pruned_rows(res) if res is not None else []


def _model(src: Sources, ablation: str) -> str:
    return str((src.get(f"ablation_{ablation}") or {}).get("model", ""))


SHOWN = {"help": "better", "hurt": "worse"}  # a scorer's state in the stages' headline cell


def stages_item(src: Sources) -> Item | None:
    if not (rows := _rows(src, "stages")):
        return None
    ns = sorted({r["stages"] for r in rows if r.get("stages") is not None})
    if len(ns) < 2:
        return None
    states, cells = {}, []
    for lab, mine in _group(rows, "label").items():
        by = _group(mine, "stages")
        if ns[0] not in by or ns[-1] not in by:
            continue
        res = {m: versus(by[ns[-1]], by[ns[0]], m) for m in _metrics(mine)}  # most stages against fewest
        states[lab] = ("help" if 1 in res.values() and -1 not in res.values() else "hurt"
                       if -1 in res.values() and 1 not in res.values() else "mixed" if res and 1 in res.values()
                       else "no difference beyond the noise")
        cells.append(f"{lab} ({states[lab]}): " + ", ".join(
            f"{METRICS[m][0]} {_values({n: by[n] for n in ns if n in by}, m)}"
            + (f" ({'better' if v > 0 else 'worse'} with {ns[-1]} than with {ns[0]}, beyond the noise)" if v else "")
            for m, v in res.items()))
    if not states:
        return None
    got = set(states.values())
    word = ("help" if got == {"help"} else "hurt" if got == {"hurt"} else "do not help" if "help" not in got
            else "help " + ", ".join(k for k, v in states.items() if v == "help") + " only")
    comp = sorted({f"{r['compression']:.2f}x" for r in rows if r.get("compression")})
    note = _notes(rows, _model(src, "stages"))
    return Item("More stages at equal compression", word, "10 stages (the method; SDTP-low: 5)",
                f"{ns[-1]} against {ns[0]} stage(s): " + "; ".join(f"{k} {SHOWN.get(v, v)}" for k, v in states.items()),
                f"({', '.join(comp)}) with {' / '.join(map(str, ns))} stages: " + "; ".join(cells)
                + f"{note}.", note)


def keep_ratio_item(src: Sources) -> Item | None:
    if not (rows := _rows(src, "keep_ratio")):
        return None
    rs = sorted({r["keep_ratio"] for r in rows if r.get("keep_ratio") is not None}, reverse=True)
    cost = {r["keep_ratio"]: r.get("flops_ratio") for r in rows}
    flops = " / ".join(fmt(cost.get(r_), ".2f") for r_ in rs)
    m0 = _metrics(rows)[0]  # the headline's measure: the held-out loss where the rows have it
    cells, short = [], []
    for lab, mine in _group(rows, "label").items():
        by = _group(mine, "keep_ratio")
        by = {r_: by[r_] for r_ in rs if r_ in by}
        cells.append(f"{lab}: " + ", ".join(f"{METRICS[m][0]} {_values(by, m)}" for m in _metrics(mine)))
        short.append(f"{lab} {_values(by, m0)}")
    note = _notes(rows, _model(src, "keep_ratio"))
    return Item("Keep ratio", "measured", f"r = {PAPER['placement']['keep_ratio']}",
                f"r = {' / '.join(map(str, rs))}: FLOPs {flops}; {METRICS[m0][0]}: " + "; ".join(short),
                f"r = {' / '.join(map(str, rs))}: prefill FLOPs {flops} of dense (Qwen2-7B shape); " + "; ".join(cells)
                + f"{note}.", note)


def start_layer_item(src: Sources) -> Item | None:
    """The paper's placement (first layer, r) against every setting at most as costly in FLOPs: beaten when one is
    better beyond the noise, beaten "within the noise" when one is only better in its mean."""
    if not (rows := _rows(src, "start_layer")):
        return None
    pl = PAPER["placement"]
    best = (pl["start_layer"], pl["keep_ratio"])
    at = lambda r: (r.get("start_layer"), r.get("keep_ratio"))  # noqa: E731
    if not any(at(r) == best for r in rows):
        return Item("The paper's placement", f"{NOT_TESTED} (layer {best[0]}, r = {best[1]} was not run)",
                    f"first stage at layer {best[0]}, r = {best[1]}: the best balance", "-", "(not among the "
                    "settings run).")
    name = lambda k: f"layer {k[0]}, r = {k[1]}"  # noqa: E731
    states, cells = {}, []
    for lab, mine in _group(rows, "label").items():
        by = _group(mine, at)
        if best not in by:
            continue
        cost = {k: g[0].get("flops_ratio") for k, g in by.items()}
        found = []
        for m in _metrics(mine):
            b0 = _mean(by[best], m)
            for k, g in by.items():
                if k == best or cost.get(k) is None or cost.get(best) is None or cost[k] > cost[best]:
                    continue
                mk = _mean(g, m)
                if b0 is not None and mk is not None and METRIC_SIGN[m] * (mk - b0) > 0:
                    found.append((m, k, mk, versus(g, by[best], m) == 1))
        states[lab] = ("beaten" if any(f[3] for f in found) else "beaten within the noise" if found
                       else "unbeaten")
        cells.append(f"{lab}: " + ("; ".join(
            f"{name(k)} (FLOPs {cost[k]:.2f}, {METRICS[m][0]} {mk:{_spec(m)}} against "
            f"{_mean(by[best], m):{_spec(m)}}{', beyond the noise' if apart else ', within the noise'})"
            for m, k, mk, apart in found) if found else "no setting at most as costly does better"))
    got = set(states.values())
    word = ("holds" if got == {"unbeaten"} else "does not hold" if got == {"beaten"} else "does not hold for "
            + ", ".join(k for k, v in states.items() if v == "beaten") if "beaten" in got else "not contradicted")
    note = _notes(rows, _model(src, "start_layer"))
    return Item("The paper's placement", word, f"first stage at layer {best[0]}, r = {best[1]}: the best balance",
                "; ".join(f"{k} {v}" for k, v in states.items()),
                f"(first stage at layer {best[0]}, r = {best[1]}, FLOPs ratio "
                f"{fmt(next(r for r in rows if at(r) == best).get('flops_ratio'), '.2f')}) against the "
                f"settings at most as costly in prefill FLOPs that do better: " + "; ".join(cells) + f"{note}.", note)


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
