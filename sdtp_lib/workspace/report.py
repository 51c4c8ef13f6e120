"""The final summary beside the paper (`final_summary.md`, written by notebook 08 into its run_dir): the run's
hardware, versions, configuration and time; every paper table (latency, LongBench, lm-eval, ablations, H2O) beside
this project's numbers, with what stands in for what (a column) and the reason for each difference; a verdict
computed from the numbers against stated tolerances, and a short hand-written part, marked as such.

    src = sources.load_sources(run)
    text = final_summary(src, figures={"frontier": "frontier.png", "h2o": None, ...}, frontier=fr, h2o=pts)
"""
from __future__ import annotations

import re

from ..eval.scorers import parse_spec
from .paper import CITATION, PAPER
from .paper_figures import ablation_value, pruned_rows
from .sources import HEADLINE_LATENCY, Sources

TOL_SPEED = 0.20  # a speedup within 20% of the paper's "reproduces"
TOL_POINTS = 3.0  # a quality difference (to dense / full) within 3 points of the paper's "reproduces"


def _f(v, spec=".2f", suffix="") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _params(src: Sources, notebook: str) -> dict:
    run = src.get("run") or {}
    return next((s.get("parameters", {}) for s in run.get("notebooks", []) if s.get("name") == notebook), {})


def _model(src: Sources) -> str:
    run = src.get("run") or {}
    models = {s.get("parameters", {}).get("model") for s in run.get("notebooks", [])} - {None}
    return ", ".join(sorted(models)) or "?"


def _model_note(model: str) -> str:
    """A model name with what it stands in for: the tiny random models' numbers mean nothing."""
    if str(model).startswith("tiny-"):
        return f"{model} (**random tiny model**: its numbers mean nothing)"
    return f"{model} (paper: 7B models)"


# ------------------------------------------------------------------ the run
def run_section(src: Sources) -> str:
    run = src.get("run")
    if run is None:
        return f"## The run\n\n{src.run}: no run.json ({src.items['run'].why}): hardware, versions and time unknown.\n"
    v = run.get("versions", {})
    steps = run.get("notebooks", [])
    total = sum(s.get("duration_s") or 0 for s in steps)
    rows = [[s["name"], s.get("status"), _f(s.get("duration_s"), ".0f", " s"),
             ", ".join(f"{k}={val}" for k, val in s.get("parameters", {}).items() if k != "run_dir")] for s in steps]
    return (f"## The run\n\n- folder: `{src.run}`; profile `{run.get('profile')}` ({run.get('description', '')})\n"
            f"- hardware: {run.get('device')}\n"
            f"- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; commit {run.get('git_commit')}\n"
            f"- time: {run.get('started')} to {run.get('ended')}; {total:.0f} s in notebooks; status "
            f"{run.get('status')}\n\n" + _table(["notebook", "status", "time", "parameters"], rows))


def sources_section(src: Sources) -> str:
    rows = [[name, "found" if s.found else "**missing**", f"`{s.path}`" if s.found else s.why]
            for name, s in src.items.items()]
    return "## Sources\n\n" + _table(["source", "", "file"], rows)


# ------------------------------------------------------------------ latency
def _speed(rows, length, variant, engine, key="prefill_s"):
    by = {(r["prompt_len"], r["variant"], r["engine"], r.get("attn", "sdpa")): r for r in rows}
    base, r = by.get((length, "dense", "hf", "sdpa")), by.get((length, variant, engine, "sdpa"))
    return None if base is None or r is None else base[key] / r[key]


def latency_rows(src: Sources) -> list[dict]:
    """Per prompt length of the paper's table: the paper's speedups and memory change, and the committed
    Qwen2-7B-shape run's (SDTP on the HF loop and on this engine, vs HF dense SDPA)."""
    ours = src.get(f"speed:{HEADLINE_LATENCY}")
    out = []
    for p in PAPER["latency"]["rows"]:
        n = p["prompt_len"]
        row = {"prompt_len": n, "paper_prefill": p["prefill_s"][0] / p["prefill_s"][1],
               "paper_e2e": p["e2e_s"][0] / p["e2e_s"][1], "paper_flops": p["tflops"][0] / p["tflops"][1],
               "paper_memory_pct": p["memory_pct"]}
        if ours is not None:
            rs = ours["rows"]
            d = next((r for r in rs if r["prompt_len"] == n and r["variant"] == "dense" and r["engine"] == "hf"), None)
            s = next((r for r in rs if r["prompt_len"] == n and r["variant"] == "sdtp" and r["engine"] == "sdtp"), None)
            row.update(ours_prefill_hf=_speed(rs, n, "sdtp", "hf"), ours_prefill=_speed(rs, n, "sdtp", "sdtp"),
                       ours_e2e_hf=_speed(rs, n, "sdtp", "hf", "e2e_s"), ours_e2e=_speed(rs, n, "sdtp", "sdtp", "e2e_s"),
                       ours_flops=d["flops"] / s["flops"] if d and s else None,
                       ours_memory_pct=100 * (s["peak_mem_gib"] / d["peak_mem_gib"] - 1)
                       if d and s and d.get("peak_mem_gib") and s.get("peak_mem_gib") else None)
        out.append(row)
    return out


def latency_section(src: Sources) -> str:
    ours = src.get(f"speed:{HEADLINE_LATENCY}")
    rows = latency_rows(src)
    run_lat = src.get("latency")  # this run's 03_profiling: a column where it measured the paper's lengths
    run_rows = run_lat["rows"] if run_lat is not None else []
    same = {r["prompt_len"] for r in run_rows} & {r["prompt_len"] for r in rows}
    stand = ("Qwen2-7B shape, **random weights**, one H200 (paper: Mistral-7B, real weights)" if ours else
             f"missing: {HEADLINE_LATENCY}")
    head = ["prompt", "prefill speedup: paper / ours HF loop / ours engine", "end to end: paper / HF loop / engine",
            "FLOPs ratio: paper / ours", "memory: paper / ours engine", "ours is", "why they differ"]
    if same:
        head.insert(2, f"this run's prefill speedup, engine ({run_lat['header'].get('model')})")
    body = []
    for r in rows:
        line = [f"{r['prompt_len'] // 1024}K", f"{r['paper_prefill']:.2f}x / {_f(r.get('ours_prefill_hf'), '.2f', 'x')}"
                f" / {_f(r.get('ours_prefill'), '.2f', 'x')}",
                f"{r['paper_e2e']:.2f}x / {_f(r.get('ours_e2e_hf'), '.2f', 'x')} / {_f(r.get('ours_e2e'), '.2f', 'x')}",
                f"{r['paper_flops']:.2f}x / {_f(r.get('ours_flops'), '.2f', 'x')}",
                f"{r['paper_memory_pct']:+.1f}% / {_f(r.get('ours_memory_pct'), '+.1f', '%')}", stand,
                "model (Qwen2-7B: 4 KV heads, Mistral-7B: 8); H200; the engine's end to end includes its CUDA-graph "
                "decode loop (docs/speed.md)"]
        if same:
            line.insert(2, _f(_speed(run_rows, r["prompt_len"], "sdtp", "sdtp"), ".2f", "x"))
        body.append(line)
    mine = ""
    if run_lat is not None and not same:
        h = run_lat["header"]
        lens = sorted({r["prompt_len"] for r in run_rows})
        mine = ("\nThis run's own profile (`03_profiling`, at none of the paper's lengths): " + str(h.get("model")) +
                ", " + str(h.get("gpu")) + ", weights " + str(h.get("weights")).split(" ")[0] + "; SDTP prefill "
                "speedup on this engine vs HF dense: " +
                ", ".join(f"{n}: {_f(_speed(run_rows, n, 'sdtp', 'sdtp'), '.2f', 'x')}" for n in lens) + ".\n")
    pc = (ours or {}).get("header", {}).get("profile_config", {})
    what = (f"SDTP r = {pc.get('keep_ratio')}, scorer {pc.get('scorer')}, {pc.get('new_tokens')} new tokens end to "
            "end" if ours else "missing")
    return (f"## Latency (paper: {PAPER['latency']['model']}, {PAPER['latency']['new_tokens']} new tokens)\n\n"
            f"Ours: `reports/results/{HEADLINE_LATENCY}` (committed; {what}), speedups against HF dense with SDPA."
            "\n\n" + _table(head, body) + mine)


# ------------------------------------------------------------------ LongBench
def _lb_stand_in(src: Sources) -> str:
    params = _params(src, "04_longbench")
    if not params:
        return "data unknown (no 04_longbench entry in run.json)"
    data, model = params.get("data"), params.get("model", "?")
    if data is None or "fixture" in str(data):  # None: the project's fixture (notebook 04's default)
        return f"**fixture** (data/longbench_fixture: checks the protocol; scores mean nothing), {_model_note(model)}"
    return f"data {data}, {_model_note(model)}"


def _paper_method(spec: str) -> str | None:
    """The paper's LongBench row a scorer spec stands beside: dense -> original, the plain SDTP / SDTP-low variants
    (the paper's r = 0.9, no other option) -> SDTP / SDTP-low; anything else has no paper row."""
    try:
        v, _ = parse_spec(spec)
    except ValueError:
        return None
    if v.stages is None:
        return "original" if v.kv_budget is None else None
    plain = v.keep_ratio in (None, PAPER["placement"]["keep_ratio"]) and v.compression is None and \
        v.start_layer is None and v.local_frac is None and v.num_stages is None and v.kv_budget is None
    return {"sdtp": "SDTP", "sdtp-low": "SDTP-low"}[v.name] if plain else None


def _category_average(entry: dict) -> tuple[float | None, int]:
    """The mean over the paper's categories that the entry has, and how many it has."""
    vals = [(entry["categories"].get(c) or {}).get("score") for c in PAPER["longbench"]["categories"]]
    vals = [v for v in vals if v is not None]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def longbench_rows(src: Sources) -> list[dict]:
    """Our scorers with the paper's five-category average (single-doc, multi-doc, summarisation, few-shot, code:
    the categories present), compression and prefill speedup, each beside the paper's row it corresponds to."""
    lb = src.get("longbench")
    if lb is None:
        return []
    dense = lb["scorers"].get(lb.get("dense") or "dense")
    dense_avg = _category_average(dense)[0] if dense is not None else None
    rows = {p["method"]: p for p in PAPER["longbench"]["rows"]}
    out = []
    for name, s in lb["scorers"].items():
        avg, n = _category_average(s)
        out.append({"scorer": name, "score": avg, "n_categories": n, "compression": s.get("mean_compression"),
                    "prefill_speedup": s.get("prefill_speedup_vs_dense"), "prompt_len": s.get("mean_prompt_len"),
                    "share": avg / dense_avg if avg is not None and dense_avg else None,
                    "paper": rows.get(_paper_method(name))})
    return out


def longbench_section(src: Sources) -> str:
    rows = longbench_rows(src)
    p0 = PAPER["longbench"]["rows"][0]["score"]
    if not rows:
        return f"## LongBench\n\nNot compared: {src.items['longbench'].why}.\n"
    stand = _lb_stand_in(src)
    body = [[r["scorer"], r["paper"]["method"] if r["paper"] else "-",
             f"{r['paper']['score']:.2f} ({100 * r['paper']['score'] / p0:.0f}%)" if r["paper"] else "-",
             f"{_f(r['score'])} ({_f(r['share'] and 100 * r['share'], '.0f', '%')})",
             f"{_f(r['paper'] and r['paper']['compression'], '.2f', 'x')} / {_f(r['compression'], '.2f', 'x')}",
             f"{_f(r['paper'] and r['paper']['prefill_speedup'], '.2f', 'x')} / {_f(r['prefill_speedup'], '.2f', 'x')}",
             stand, "model size and data" + (f" (our prompts: {r['prompt_len']:.0f} tokens on average)"
                                             if r.get("prompt_len") else "") +
             ("; compression " + f"{r['compression']:.2f}x vs the paper's {r['paper']['compression']:.2f}x"
              if r["paper"] and r["compression"] and r["paper"]["compression"] > 1 else "") +
             "; speedup on this run's hardware and prompt lengths"] for r in rows]
    llm = PAPER["longbench"]["rows"][3]
    body.append(["(not run)", llm["method"], f"{llm['score']:.2f} ({100 * llm['score'] / p0:.0f}%)", "-",
                 f"{llm['compression']:.2f}x / -", f"{llm['prefill_speedup']:.2f}x / -", "-",
                 "LLMLingua-2 is not part of this project"])
    return (f"## LongBench (paper: {PAPER['longbench']['model']}, average of the paper's five categories)\n\n"
            "Ours: this run's `04_longbench/results.json`, the average over the paper's categories present (share "
            "of dense in brackets).\n\n" +
            _table(["our scorer", "paper row", "paper score (% of original)", "our score (% of dense)",
                    "compression: paper / ours", "prefill speedup: paper / ours", "ours is", "why they differ"], body))


# ------------------------------------------------------------------ lm-eval
def lmeval_rows(src: Sources) -> list[dict]:
    lm = src.get("lmeval")
    if lm is None:
        return []
    out = []
    for name, r in lm["scorers"].items():
        acc = r["accuracy"]
        tasks = [t for t in acc if t != "sdtp_paper"]
        mean = acc.get("sdtp_paper", sum(acc[t] for t in tasks) / len(tasks) if tasks else None)
        n = sorted(set((r.get("n_samples") or {}).values()))
        out.append({"scorer": name, "accuracy": None if mean is None else 100 * mean, "tasks": len(tasks),
                    "n_per_task": n, "data": str((r.get("config") or {}).get("data"))})
    return out


def lmeval_section(src: Sources) -> str:
    rows = lmeval_rows(src)
    if not rows:
        return f"## lm-eval\n\nNot compared: {src.items['lmeval'].why}.\n"
    dense = next((r for r in rows if r["scorer"] == "dense"), None)
    paper = PAPER["lmeval"]["rows"]
    body = [[f"paper, {p['model']}", f"{p['full']:.2f}", f"{p['sdtp']:.2f}", f"{p['sdtp'] - p['full']:+.2f}",
             "8 tasks, full data sets", "-"] for p in paper]
    for r in rows:
        if r["scorer"] == "dense" or dense is None:
            continue
        fixture = "lmeval_fixture" in r["data"]  # the data folder lm-eval read, recorded in its config
        body.append([f"ours, {_model_note(_params(src, '05_lmeval').get('model', _model(src)))}, {r['scorer']}",
                     _f(dense["accuracy"]), _f(r["accuracy"]),
                     _f(None if r["accuracy"] is None else r["accuracy"] - dense["accuracy"], "+.2f"),
                     ("**fixture** (data/lmeval_fixture)" if fixture else f"data {r['data']}") +
                     f", {r['tasks']} tasks x {'/'.join(map(str, r['n_per_task']))} documents",
                     "small model; a handful of documents per task: one answer moves the mean by several points"
                     if fixture else "model size"])
    return ("## lm-eval (5-shot, mean accuracy % over COPA, PIQA, WinoGrande, MathQA, BoolQ, CB, WiC, WSC)\n\n" +
            _table(["", "full / dense", "SDTP", "difference", "data (ours is)", "why they differ"], body))


# ------------------------------------------------------------------ ablations
LOSS_ALIASES = {  # the paper's loss-ablation rows and the names an ablation row may give them (07: "loss" / "setting")
    "full": ("full", "full loss", "all", "cls+mse+rank"),
    "no_rank": ("no_rank", "no ranking loss", "without_rank", "cls+mse"),
    "no_rank_mse": ("no_rank_mse", "no_both", "no ranking, no MSE", "no_rank_no_mse", "without_rank_and_mse", "cls",
                    "cls_only"),
}


def _canon(setting: str | None, loss: str | None = None) -> str | None:
    """The paper's loss-ablation row of a setting: from 07's "loss" field when it has one, else its label."""
    if loss is not None:
        return next((k for k, al in LOSS_ALIASES.items() if loss in al), None)
    key = re.sub(r"[^a-z]", "", str(setting).lower())
    return next((k for k, al in LOSS_ALIASES.items() if key in {re.sub(r"[^a-z]", "", a) for a in al}), None)


def _mean_by(rows, key, metric):
    got: dict = {}
    for r in rows:
        v = ablation_value(r, metric)
        if v is not None:
            got.setdefault(r.get(key), []).append(v)
    return {k: sum(v) / len(v) for k, v in got.items()}


def ablation_section(src: Sources) -> str:
    parts = ["## Ablations\n"]
    losses = src.get("ablation_losses")
    paper = {p["setting"]: p["score"] for p in PAPER["ablation_losses"]["rows"]}
    if losses is None:
        parts.append(f"Losses: not compared, {src.items['ablation_losses'].why}.\n")
    else:
        rows = pruned_rows(losses)
        syn, held = _mean_by(rows, "setting", "synthetic"), _mean_by(rows, "setting", "heldout")
        body = []
        for s, r in {r.get("setting"): r for r in rows}.items():
            c = _canon(s, r.get("loss"))
            body.append([s, c or "-", _f(paper.get(c)), _f(paper.get(c) and paper[c] - paper["full"], "+.2f"),
                         _f(syn.get(s), "+.1f"), _f(held.get(s), "+.3f"),
                         f"{_model_note(losses.get('model', '?'))}, the project's data (paper: "
                         f"{PAPER['ablation_losses']['model']}, 4-task accuracy)",
                         "different metric and model: compare the order of the rows, not values"])
        parts.append(f"Losses (`07_ablations/losses`):\n\n" + _table(
            ["our setting", "paper row", "paper accuracy %", "paper - full", "ours: synthetic - dense (points)",
             "ours: held-out loss - dense", "ours is", "why they differ"], body))
    for name, key, what in (("stages", "stages", "stages"), ("keep_ratio", "keep_ratio", "keep ratio"),
                            ("start_layer", "start_layer", "first stage's layer")):
        res = src.get(f"ablation_{name}")
        if res is None:
            parts.append(f"\n{what.capitalize()}: not compared, {src.items[f'ablation_{name}'].why}.\n")
            continue
        parts.append(f"\n{what.capitalize()} (`07_ablations/{name}`, {_model_note(res.get('model', '?'))}; mean over "
                     f"seeds).{_placement_note(res) if name == 'start_layer' else ''}\n\n" + _ablation_table(res, key, what))
    return "\n".join(parts)


def _order(values) -> list:
    return sorted(values, key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))


def _ablation_table(res: dict, key: str, what: str) -> str:
    """One row per value of `key`; a column pair (synthetic, held-out) per keep ratio and per scorer where the rows
    vary them (means over seeds)."""
    rows = pruned_rows(res)
    ratios = _order({r.get("keep_ratio") for r in rows}) if key == "start_layer" else []  # the placement study's
    # second variable; elsewhere the keep ratio follows the setting (the stage ablation matches the compression)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    groups = [(r_, lab) for r_ in (ratios if len(ratios) > 1 else [None]) for lab in (labels if len(labels) > 1
                                                                                        else [None])]
    cols = {}
    for g in groups:
        sel = [r for r in rows if g[0] in (None, r.get("keep_ratio")) and g[1] in (None, r["label"])]
        cols[g] = (_mean_by(sel, key, "synthetic"), _mean_by(sel, key, "heldout"))
    name = lambda g: ", ".join(x for x in (g[0] is not None and f"r = {g[0]}", g[1]) if x)  # noqa: E731
    head = [what] + [f"{name(g) + ': ' if name(g) else ''}{m}" for g in groups
                     for m in ("synthetic - dense (points)", "held-out loss - dense")]
    body = [[v] + [c for g in groups for c in (_f(cols[g][0].get(v), "+.1f"), _f(cols[g][1].get(v), "+.3f"))]
            for v in _order({r.get(key) for r in rows if r.get(key) is not None})]
    return _table(head, body)


def _placement_note(res: dict) -> str:
    pl = PAPER["placement"]
    best = []
    rows = pruned_rows(res)
    for r_ in _order({r.get("keep_ratio") for r in rows}):
        held = _mean_by([r for r in rows if r.get("keep_ratio") == r_], "start_layer", "heldout")
        if held:
            best.append(f"r = {r_}: layer {min(held, key=held.get)}")
    ours = f" Lowest held-out loss here: {', '.join(best)}." if best else ""
    return (f" Paper's placement study: start at layer {pl['start_layer']}, every {pl['step']} layers, r = "
            f"{pl['keep_ratio']} was the best balance (on 32-layer models).{ours}")


# ------------------------------------------------------------------ H2O
def _bench_model(src: Sources, bench: str) -> str:
    if bench == "synthetic":
        return str((src.get("synthetic") or {}).get("config", {}).get("model", "?"))
    return str((src.get("longbench") or {}).get("config", {}).get("model", {}).get("id", "?"))


def h2o_rows(points: list[dict]) -> list[dict]:
    """The +H points with their scorer without H2O and dense at the same budget (the paper's comparison: what SDTP
    adds on top of H2O)."""
    score = {(p["bench"], p["scorer"]): p["score"] for p in points}
    dense = {(p["bench"], p["budget"]): p["score"] for p in points if p["base"] == "dense"}
    out = []
    for p in points:
        if p["budget"] is None:
            continue
        out.append({**p, "without": score.get((p["bench"], p["base"])),
                    "dense_same_budget": None if p["base"] == "dense" else dense.get((p["bench"], p["budget"]))})
    return out


def h2o_section(points: list[dict], src: Sources) -> str:
    h = PAPER["h2o"]
    if not points:
        return (f"## H2O\n\nNot compared: no `+H<budget>` scorer in {src.path('synthetic')} or "
                f"{src.path('longbench')}. Paper: {h['statement']}.\n")
    d = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
    body = [[p["bench"], p["scorer"], f"{p['budget']:g}", _f(p["score"], ".1f"), _f(p["without"], ".1f"),
             _f(d(p["score"], p["without"]), "+.1f"), _f(p["dense_same_budget"], ".1f"),
             _f(d(p["score"], p["dense_same_budget"]), "+.1f"),
             _f(p.get("kv_bytes") and p["kv_bytes"] / 2 ** 20, ".2f"), _f(p.get("decode_ms_per_token"), ".1f"),
             _model_note(_bench_model(src, p["bench"])) + (" on the **fixture**" if p["bench"] == "LongBench" and
                                                           "fixture" in _lb_stand_in(src) else "")]
            for p in h2o_rows(points)]
    return (f"## H2O\n\nPaper: {h['statement']} (a statement, no table). The paper's comparison is SDTP with H2O "
            "against H2O alone at the same budget (the 'dense, same budget' columns).\n\n" +
            _table(["benchmark", "scorer", "KV budget", "score", "without H2O", "difference", "dense, same budget",
                    "SDTP's further loss", "KV MiB at the end", "decode ms/token", "ours is"], body))


# ------------------------------------------------------------------ verdict
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
            stand = "fixture" in _lb_stand_in(src)
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
        held = {_canon(k, loss_of.get(k)): v for k, v in _mean_by(rows, "setting", "heldout").items()
                if _canon(k, loss_of.get(k))}
        if {"full", "no_rank", "no_rank_mse"} <= set(held):
            same = held["full"] <= held["no_rank"] <= held["no_rank_mse"]
            lines.append(f"- **Losses: {'reproduces' if same else 'does not reproduce'}** the paper's order (full best, "
                         f"then without ranking, then without ranking and MSE): held-out loss - dense "
                         f"{held['full']:+.3f} / {held['no_rank']:+.3f} / {held['no_rank_mse']:+.3f}"
                         + (" (a random tiny model: not evidence)" if str(losses.get("model")).startswith("tiny-")
                            else "") + ".")
        else:
            lines.append("- Losses: the settings full / no ranking / no ranking and MSE were not all found "
                         f"({sorted(loss_of, key=str)}): no verdict.")
    for p in h2o_rows(h2o):
        if p["dense_same_budget"] is not None and p["score"] is not None:
            d = p["score"] - p["dense_same_budget"]
            word = "reproduces" if -TOL_POINTS <= d else "does not reproduce"
            model = _bench_model(src, p["bench"])
            lines.append(f"- **H2O, {p['bench']} {p['scorer']}: {word}** \"almost no further loss\" on top of H2O "
                         f"({d:+.1f} vs dense+H{p['budget']:g}, tolerance {TOL_POINTS:g} points)"
                         + ("; a random tiny model: not evidence" if model.startswith("tiny-") else "") + ".")
    if frontier and frontier["points"]:
        best = max((p for p in frontier["points"] if p["speed"] is not None), key=lambda p: (p["share"], p["speedup"]),
                   default=None)
        if best is not None:
            lines.append(f"- **Frontier:** the best quality at a measured speed is {best['scorer']} ({best['source']}): "
                         f"{100 * best['share']:.0f}% of dense at {best['speedup']:.2f}x prefill ({frontier['length'] // 1024}K).")
    if not lines:
        lines.append("- No paper table could be compared: every source is missing (see Sources).")
    lines += ["", "**Hand-written** (a reading of the committed results, not a computed verdict): " + _scorer_note(src)
              + " LongBench and lm-eval stay stand-ins until they run on real Qwen2-7B weights and data."]
    return "## Verdict\n\n" + "\n".join(lines) + "\n"


SCORERS_RUN = "2026-11-30_qwen2.5-0.5b_scorers_h200x2"  # the main scorer comparison (docs/scorers.md)


def _scorer_note(src: Sources) -> str:
    """The predictor's weakness on retrieval against window attention, its numbers read from the committed scorer
    comparison (per layout, % of dense)."""
    from .frontier import quality
    res = src.get(f"synthetic:{SCORERS_RUN}")
    q = {x["scorer"]: x["by_layout"] for x in quality(res)} if res is not None else {}
    if "sdtp:predictor" not in q or "sdtp:attention" not in q:
        return f"(the committed scorer comparison {SCORERS_RUN} was not found: no numbers for this note.)"
    pct = lambda s: " / ".join(f"{100 * v:.0f}%" for v in q[s].values())  # noqa: E731
    return (f"the paper's token-local predictor is weak on retrieval: on the synthetic suite ({SCORERS_RUN}, "
            f"Qwen2.5-Coder-0.5B, layouts {' / '.join(q['sdtp:predictor'])}) it keeps {pct('sdtp:predictor')} of "
            f"dense accuracy, the question-aware window-attention scorer {pct('sdtp:attention')} at the same "
            "compression and about the same speed (frontier figure): in a causal model the context's tokens cannot "
            "know a question that comes after them (docs/scorers.md).")


# ------------------------------------------------------------------ all of it
def figures_section(figures: dict, frontier: dict | None = None) -> str:
    rows = [[name, f"![{name}]({path})" if path else "**not drawn**: " + why]
            for name, (path, why) in figures.items()]
    left = "".join(f"- frontier, not drawn: {u['source']}: {u['scorer']} ({u['why']})\n"
                   for u in (frontier or {}).get("unmatched", []))
    return "## Figures\n\n" + _table(["figure", ""], rows) + ("\n" + left if left else "")


def final_summary(src: Sources, figures: dict, frontier: dict | None = None, h2o: list[dict] | None = None) -> str:
    """The whole final_summary.md. figures: {name: (file name or None, why not drawn)}."""
    model = _model(src)
    return "\n".join([
        f"# Final summary: this run beside the paper\n\nPaper: {CITATION}. Our models: {model}. Every number below is "
        "read from the files listed under Sources; the paper's from sdtp_lib/workspace/paper.py.\n",
        run_section(src), latency_section(src), longbench_section(src), lmeval_section(src), ablation_section(src),
        h2o_section(h2o or [], src), figures_section(figures, frontier), verdict(src, frontier, h2o or []), sources_section(src)])
