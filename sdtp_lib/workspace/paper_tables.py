"""The paper's tables beside this project's numbers, one markdown section each (latency, LongBench, lm-eval,
ablations, H2O), with the rows they are made of; workspace.report puts them into final_summary.md."""
from __future__ import annotations

import re

from ..eval.scorers import parse_spec
from .paper import PAPER
from .paper_figures import ablation_value, pruned_rows
from .sources import BACKEND_LATENCY, HEADLINE_LATENCY, Sources



def fmt(v, spec=".2f", suffix="") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_params(src: Sources, notebook: str) -> dict:
    run = src.get("run") or {}
    return next((s.get("parameters", {}) for s in run.get("notebooks", []) if s.get("name") == notebook), {})


def run_models(src: Sources) -> str:
    run = src.get("run") or {}
    models = {s.get("parameters", {}).get("model") for s in run.get("notebooks", [])} - {None}
    return ", ".join(sorted(models)) or "?"


def model_note(model: str) -> str:
    """A model name with what it stands in for: the tiny random models' numbers mean nothing."""
    if str(model).startswith("tiny-"):
        return f"{model} (**random tiny model**: its numbers mean nothing)"
    return f"{model} (paper: 7B models)"


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
        row = {"prompt_len": n, "paper_prefill": p["speedup"][0], "paper_e2e": p["speedup"][1], "paper_flops": p["tflops"][0] / p["tflops"][1],
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
        line = [f"{r['prompt_len'] // 1024}K", f"{r['paper_prefill']:.2f}x / {fmt(r.get('ours_prefill_hf'), '.2f', 'x')}"
                f" / {fmt(r.get('ours_prefill'), '.2f', 'x')}",
                f"{r['paper_e2e']:.2f}x / {fmt(r.get('ours_e2e_hf'), '.2f', 'x')} / {fmt(r.get('ours_e2e'), '.2f', 'x')}",
                f"{r['paper_flops']:.2f}x / {fmt(r.get('ours_flops'), '.2f', 'x')}",
                f"{r['paper_memory_pct']:+.1f}% / {fmt(r.get('ours_memory_pct'), '+.1f', '%')}", stand,
                "model (Qwen2-7B: 4 KV heads, Mistral-7B: 8); H200; the engine's end to end includes its CUDA-graph "
                "decode loop (docs/speed.md)"]
        if same:
            line.insert(2, fmt(_speed(run_rows, r["prompt_len"], "sdtp", "sdtp"), ".2f", "x"))
        body.append(line)
    mine = ""
    if run_lat is not None and not same:
        h = run_lat["header"]
        lens = sorted({r["prompt_len"] for r in run_rows})
        mine = ("\nThis run's own profile (`03_profiling`, at none of the paper's lengths): " + str(h.get("model")) +
                ", " + str(h.get("gpu")) + ", weights " + str(h.get("weights")).split(" ")[0] + "; SDTP prefill "
                "speedup on this engine vs HF dense: " +
                ", ".join(f"{n}: {fmt(_speed(run_rows, n, 'sdtp', 'sdtp'), '.2f', 'x')}" for n in lens) + ".\n")
    pc = (ours or {}).get("header", {}).get("profile_config", {})
    what = (f"SDTP r = {pc.get('keep_ratio')}, scorer {pc.get('scorer')}, {pc.get('new_tokens')} new tokens end to "
            "end" if ours else "missing")
    return (f"## Latency (paper: {PAPER['latency']['model']}, {PAPER['latency']['new_tokens']} new tokens)\n\n"
            f"Ours: `reports/results/{HEADLINE_LATENCY}` (committed; {what}), speedups against HF dense with SDPA."
            "\n\n" + md_table(head, body) + mine + backend_lines(src))


def backend_lines(src: Sources) -> str:
    """SDTP on this engine with each attention backend and keep ratio against HF dense SDPA, from the committed
    runs of both backends (BACKEND_LATENCY: each length whole from the last file that has it); a missing file is
    said."""
    from ..speed.profiling import rows_by_key, rows_per_length
    missing = [f"- missing: `reports/results/{rel}`" for rel in BACKEND_LATENCY if src.get(f"backend:{rel}") is None]
    found = [(rel, src.get(f"backend:{rel}")["rows"]) for rel in BACKEND_LATENCY if src.get(f"backend:{rel}") is not None]
    lines = []
    for T, (rel, rows) in rows_per_length(found).items():
        by = rows_by_key(rows)
        base = by.get((T, "dense", "hf", "sdpa"))
        parts = [f"{attn}, r = {r['keep_ratio']:g}: {base['prefill_s'] / r['prefill_s']:.2f}x prefill, "
                 f"{base['e2e_s'] / r['e2e_s']:.2f}x end to end"
                 for (_, v, e, attn), r in by.items() if base and e == "sdtp" and v != "dense"]
        if parts:
            lines.append(f"- {T // 1024}K (`reports/results/{rel}`): " + "; ".join(parts))
    return ("\nWith either attention backend and at r = 0.8 (SDTP's predictor on this engine, against HF dense with "
            "SDPA, 128 new tokens; the paper reports r = 0.9 only):\n\n" + "\n".join(lines + missing) + "\n")


# ------------------------------------------------------------------ LongBench
def lb_stand_in(src: Sources) -> str:
    params = run_params(src, "04_longbench")
    if not params:
        return "data unknown (no 04_longbench entry in run.json)"
    data, model = params.get("data"), params.get("model", "?")
    if data is None or "fixture" in str(data):  # None: the project's fixture (notebook 04's default)
        return f"**fixture** (data/longbench_fixture: checks the protocol; scores mean nothing), {model_note(model)}"
    return f"data {data}, {model_note(model)}"


def paper_method(spec: str) -> str | None:
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
                    "paper": rows.get(paper_method(name))})
    return out


def longbench_section(src: Sources) -> str:
    rows = longbench_rows(src)
    p0 = PAPER["longbench"]["rows"][0]["score"]
    if not rows:
        return f"## LongBench\n\nNot compared: {src.items['longbench'].why}.\n"
    stand = lb_stand_in(src)
    body = [[r["scorer"], r["paper"]["method"] if r["paper"] else "-",
             f"{r['paper']['score']:.2f} ({100 * r['paper']['score'] / p0:.0f}%)" if r["paper"] else "-",
             f"{fmt(r['score'])} ({fmt(r['share'] and 100 * r['share'], '.0f', '%')})",
             f"{fmt(r['paper'] and r['paper']['compression'], '.2f', 'x')} / {fmt(r['compression'], '.2f', 'x')}",
             f"{fmt(r['paper'] and r['paper']['prefill_speedup'], '.2f', 'x')} / {fmt(r['prefill_speedup'], '.2f', 'x')}",
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
            md_table(["our scorer", "paper row", "paper score (% of original)", "our score (% of dense)",
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
        body.append([f"ours, {model_note(run_params(src, '05_lmeval').get('model', run_models(src)))}, {r['scorer']}",
                     fmt(dense["accuracy"]), fmt(r["accuracy"]),
                     fmt(None if r["accuracy"] is None else r["accuracy"] - dense["accuracy"], "+.2f"),
                     ("**fixture** (data/lmeval_fixture)" if fixture else f"data {r['data']}") +
                     f", {r['tasks']} tasks x {'/'.join(map(str, r['n_per_task']))} documents",
                     "small model; a handful of documents per task: one answer moves the mean by several points"
                     if fixture else "model size"])
    return ("## lm-eval (5-shot, mean accuracy % over COPA, PIQA, WinoGrande, MathQA, BoolQ, CB, WiC, WSC)\n\n" +
            md_table(["", "full / dense", "SDTP", "difference", "data (ours is)", "why they differ"], body))


# ------------------------------------------------------------------ ablations
LOSS_ALIASES = {  # the paper's loss-ablation rows and the names an ablation row may give them (07: "loss" / "setting")
    "full": ("full", "full loss", "all", "cls+mse+rank"),
    "no_rank": ("no_rank", "no ranking loss", "without_rank", "cls+mse"),
    "no_rank_mse": ("no_rank_mse", "no_both", "no ranking, no MSE", "no_rank_no_mse", "without_rank_and_mse", "cls",
                    "cls_only"),
}


def canon_loss(setting: str | None, loss: str | None = None) -> str | None:
    """The paper's loss-ablation row of a setting: from 07's "loss" field when it has one, else its label."""
    if loss is not None:
        return next((k for k, al in LOSS_ALIASES.items() if loss in al), None)
    key = re.sub(r"[^a-z]", "", str(setting).lower())
    return next((k for k, al in LOSS_ALIASES.items() if key in {re.sub(r"[^a-z]", "", a) for a in al}), None)


def values_by(rows, key, metric) -> dict:
    """{value of key: [the rows' differences to dense, in row order (one per seed for a trained scorer)]}."""
    got: dict = {}
    for r in rows:
        v = ablation_value(r, metric)
        if v is not None:
            got.setdefault(r.get(key), []).append(v)
    return got


def mean_by(rows, key, metric):
    return {k: sum(v) / len(v) for k, v in values_by(rows, key, metric).items()}


def mean_and_seeds(vals: list[float] | None, spec: str) -> str:
    """'+0.805' for one value; '+0.805 (+0.700 / +0.910)' for the mean of several seeds with each seed's value."""
    if not vals:
        return "-"
    m = f"{sum(vals) / len(vals):{spec}}"
    return m if len(vals) == 1 else f"{m} ({' / '.join(f'{v:{spec}}' for v in vals)})"


def cost_by(rows, key) -> dict:
    """{value of key: 'compression / FLOPs ratio'} (several, '; '-joined with their r, where the keep ratio varies)."""
    got: dict = {}
    for r in rows:
        if r.get("compression") is None:
            continue
        c = f"{r['compression']:.2f}x / {fmt(r.get('flops_ratio'), '.2f')}"
        got.setdefault(r.get(key), {}).setdefault(r.get("keep_ratio"), c)
    return {k: v[next(iter(v))] if len(v) == 1 else "; ".join(f"r = {r_}: {c}" for r_, c in sorted(v.items()))
            for k, v in got.items()}


NOISE_RULE = ("a difference between two settings counts when their 95% intervals against dense are apart (a trained "
              "predictor's interval: from the lowest to the highest of its seeds' intervals)")  # the verdict's rule


def ablation_section(src: Sources) -> str:
    parts = [f"## Ablations\n\nThe verdict's rule: {NOISE_RULE}; the figures show each seed.\n"]
    losses = src.get("ablation_losses")
    paper = {p["setting"]: p["score"] for p in PAPER["ablation_losses"]["rows"]}
    if losses is None:
        parts.append(f"Losses: not compared, {src.items['ablation_losses'].why}.\n")
    else:
        rows = pruned_rows(losses)
        syn, held = values_by(rows, "setting", "synthetic"), values_by(rows, "setting", "heldout")
        body = []
        for s, r in {r.get("setting"): r for r in rows}.items():
            c = canon_loss(s, r.get("loss"))
            body.append([s, c or "-", fmt(paper.get(c)), fmt(paper.get(c) and paper[c] - paper["full"], "+.2f"),
                         mean_and_seeds(syn.get(s), "+.1f"), mean_and_seeds(held.get(s), "+.3f"),
                         f"{model_note(losses.get('model', '?'))}, the project's data (paper: "
                         f"{PAPER['ablation_losses']['model']}, 4-task accuracy)",
                         "different metric and model: compare the order of the rows, not values"])
        parts.append(f"Losses (`07_ablations/losses`; {SEEDS_NOTE}):\n\n" + md_table(
            ["our setting", "paper row", "paper accuracy %", "paper - full", "ours: synthetic - dense (points)",
             "ours: held-out loss - dense", "ours is", "why they differ"], body))
    for name, key, what in (("stages", "stages", "stages"), ("keep_ratio", "keep_ratio", "keep ratio"),
                            ("start_layer", "start_layer", "first stage's layer")):
        res = src.get(f"ablation_{name}")
        if res is None:
            parts.append(f"\n{what.capitalize()}: not compared, {src.items[f'ablation_{name}'].why}.\n")
            continue
        parts.append(f"\n{what.capitalize()} (`07_ablations/{name}`, {model_note(res.get('model', '?'))}; "
                     f"{SEEDS_NOTE}).{_placement_note(res) if name == 'start_layer' else ''}\n\n"
                     + _ablation_table(res, key, what))
    return "\n".join(parts)


SEEDS_NOTE = ("a trained predictor's cell is the mean over its seeds, each seed's value in brackets; every row with "
              "its paired 95% interval against dense is in the ablation's `results.md`")


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
        cols[g] = (values_by(sel, key, "synthetic"), values_by(sel, key, "heldout"))
    name = lambda g: ", ".join(x for x in (g[0] is not None and f"r = {g[0]}", g[1]) if x)  # noqa: E731
    cost = cost_by(rows, key)
    head = [what, "compression / FLOPs ratio"] + [f"{name(g) + ': ' if name(g) else ''}{m}" for g in groups
                                                  for m in ("synthetic - dense (points)", "held-out loss - dense")]
    body = [[v, cost.get(v, "-")] + [c for g in groups for c in (mean_and_seeds(cols[g][0].get(v), "+.1f"),
                                                                  mean_and_seeds(cols[g][1].get(v), "+.3f"))]
            for v in _order({r.get(key) for r in rows if r.get(key) is not None})]
    return md_table(head, body)


def _placement_note(res: dict) -> str:
    pl = PAPER["placement"]
    best = []
    rows = pruned_rows(res)
    for r_ in _order({r.get("keep_ratio") for r in rows}):
        held = mean_by([r for r in rows if r.get("keep_ratio") == r_], "start_layer", "heldout")
        if held:
            best.append(f"r = {r_}: layer {min(held, key=held.get)}")
    ours = f" Lowest held-out loss here: {', '.join(best)}." if best else ""
    return (f" Paper's placement study: start at layer {pl['start_layer']}, every {pl['step']} layers, r = "
            f"{pl['keep_ratio']} was the best balance (on 32-layer models).{ours}")


# ------------------------------------------------------------------ H2O
def bench_model(src: Sources, bench: str) -> str:
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


LOOPS = {"sdtp": "this project's", "hf_generate": "HF generate"}  # decode ms/token compare within one loop only


def _loop(p: dict) -> str:
    """The decode loop of an H2O point, and how many processes shared the device while its times were taken."""
    loop, shared = LOOPS.get(p.get("loop"), "-"), p.get("device_sharing") or 1
    return f"{loop}, {shared} processes on one GPU" if shared > 1 else loop


def h2o_section(points: list[dict], src: Sources) -> str:
    """One row per scorer with a +H budget and per scorer it is the budget of (its row without eviction first), so
    that the scores, KV bytes and decode speed of dense, H2O, SDTP and SDTP + H2O stand side by side."""
    h = PAPER["h2o"]
    if not points:
        return (f"## H2O\n\nNot compared: no `+H<budget>` scorer in {src.path('synthetic')} or "
                f"{src.path('longbench')}. Paper: {h['statement']}.\n")
    d = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
    with_refs = {(p["bench"], p["scorer"]): p for p in h2o_rows(points)}
    benches, bases = list(dict.fromkeys(p["bench"] for p in points)), list(dict.fromkeys(p["base"] for p in points))
    order = sorted(points, key=lambda p: (benches.index(p["bench"]), bases.index(p["base"]),
                                          p["budget"] is not None, -(p["budget"] or 0)))
    body = []
    for p in order:
        r = with_refs.get((p["bench"], p["scorer"]), {})
        body.append([p["bench"], p["scorer"], "none" if p["budget"] is None else f"{p['budget']:g}",
                     fmt(p["score"], ".1f"), fmt(d(p["score"], r.get("without")), "+.1f"),
                     fmt(d(p["score"], r.get("dense_same_budget")), "+.1f"),
                     fmt(p.get("kv_bytes") and p["kv_bytes"] / 2 ** 20, ".2f"),
                     fmt(p.get("decode_ms_per_token"), ".1f"), _loop(p),
                     model_note(bench_model(src, p["bench"]))
                     + (" on the **fixture**" if p["bench"] == "LongBench" and "fixture" in lb_stand_in(src) else "")])
    return (f"## H2O\n\nPaper: {h['statement']} (a statement, no table). Its comparison is SDTP with H2O against H2O "
            "alone at the same budget (the column 'against H2O alone': below zero, SDTP adds a loss). The budget is a "
            "fraction of the full sequence (the prompt before pruning and the tokens generated) that each layer's "
            "cache may hold, evicting during decoding; 'none' keeps every token the prefill left. Decode times compare "
            "only within one decode loop (H2O needs this project's; LongBench decodes without H2O with HF "
            "generate), and times taken while several processes shared the GPU (the suite's workers) compare only "
            "with each other.\n\n" +
            md_table(["benchmark", "scorer", "KV budget", "score", "against the same scorer without H2O (points)",
                      "against H2O alone, same budget (points)", "KV MiB at the end", "decode ms/token",
                      "decode loop", "ours is"],
                     body))
