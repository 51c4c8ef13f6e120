"""The paper's figures that no other module draws, from result rows (seaborn's colour-blind palette; markers,
line styles and hatches so that black-and-white print tells the series apart):

    start_layer_figure(ablation)          # 07_ablations/start_layer: one line per keep ratio
    ablation_figure(ablation, "stages")   # 07_ablations/stages (or "setting" for losses, "keep_ratio")
    h2o_figure(h2o_points(...))           # "+H<budget>" scorers of the synthetic suite / LongBench
    frontier_figure(frontier.frontier(...))  # % of dense accuracy vs prefill speedup on the Qwen2-7B shape

Saliency sparsity and latency are sdtp_lib.workspace.plots', LongBench and lm-eval sdtp_lib.eval.figures'.
"""
from __future__ import annotations

from collections import defaultdict

from ..eval.figures import HATCHES, MARKERS, legend_below
from .frontier import h2o_base

LINES = ("-", "--", "-.", ":")


def palette(n: int):
    import seaborn as sns
    return sns.color_palette("colorblind", max(n, 1))


def _plt():
    import matplotlib
    if matplotlib.get_backend().lower().startswith("tk"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ------------------------------------------------------------------ ablations
def ablation_value(row: dict, metric: str) -> float | None:
    """The row's difference to dense: "synthetic" in accuracy points (x 100), "heldout" in loss; from the delta
    field, else from the value and its dense counterpart; None when the row has neither."""
    if metric == "synthetic":
        d = row.get("synthetic_delta")
        if d is None and row.get("synthetic_accuracy") is not None and row.get("synthetic_dense_accuracy") is not None:
            d = row["synthetic_accuracy"] - row["synthetic_dense_accuracy"]
        return None if d is None else 100 * d
    if metric == "heldout":
        d = row.get("heldout_delta")
        if d is None and row.get("heldout_loss") is not None and row.get("heldout_loss_dense") is not None:
            d = row["heldout_loss"] - row["heldout_loss_dense"]
        return d
    raise ValueError(f"ablation_value: metric must be 'synthetic' or 'heldout', got {metric!r}")


METRICS = {"synthetic": ("synthetic accuracy - dense (points)", "synthetic_ci", 100.0),
           "heldout": ("held-out loss - dense", "heldout_ci", 1.0)}


def ablation_ci(row: dict, metric: str) -> tuple[float, float] | None:
    """The row's paired 95% interval against dense in ablation_value's unit (points for "synthetic"); None where the
    row has no complete interval."""
    ci = row.get(METRICS[metric][1])
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return None
    return METRICS[metric][2] * ci[0], METRICS[metric][2] * ci[1]


def ablation_series(rows: list[dict], x: str, hue: str, metric: str) -> dict:
    """{hue value: {x value: (mean over seeds, ci or None, seed values)}} of the rows with a value; the ci (lo, hi)
    only where one row (one seed) makes the point, the seed values (each seed's difference to dense) only where
    several do."""
    got: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = ablation_value(r, metric)
        if v is not None and r.get(x) is not None:
            got[r.get(hue)][r[x]].append((v, ablation_ci(r, metric)))
    out = {}
    for h, xs in got.items():
        out[h] = {}
        for xv, vals in xs.items():
            ci = vals[0][1] if len(vals) == 1 else None
            seeds = tuple(v for v, _ in vals) if len(vals) > 1 else ()
            out[h][xv] = (sum(v for v, _ in vals) / len(vals), ci, seeds)
    return out


ERRORS_NOTE = ("vertical lines: one run's paired 95% interval against dense\n"
               "dots: each training seed, where there are several (the bar or point: their mean)")


def _spread(ax, x, point, colour):
    """The point's interval (one row: an untrained scorer, or one seed) as a vertical line, or each seed's value as a
    dot."""
    _, ci, seeds = point
    if ci is not None:
        ax.vlines(x, *ci, color=colour, lw=1)
    for v in seeds:
        ax.plot([x], [v], "o", ms=3.5, mfc="white", mec=colour, mew=1.0, zorder=5)


def pruned_rows(result: dict) -> list[dict]:
    """The rows of an ablation result without its dense reference row, each with "label": the scorer's short name
    (07's "scorer_name", else the spec in "scorer")."""
    return [{**r, "label": r.get("scorer_name") or r.get("scorer")} for r in result["rows"]
            if r.get("setting") != "dense" and (r.get("scorer_name") or r.get("scorer")) != "dense"]


def _metrics(rows: list[dict]) -> list[str]:
    ms = [m for m in METRICS if any(ablation_value(r, m) is not None for r in rows)]
    if not ms:
        raise ValueError("ablation figure: no row has a synthetic or held-out value (all null)")
    return ms


def _title(result: dict) -> str:
    return f"{result.get('ablation', '?')} ablation ({result.get('model', '?')})"


def start_layer_figure(result: dict):
    """The first stage's layer against the difference to dense, one line per keep ratio (colour) and scorer (line
    style and marker): held-out loss and synthetic accuracy, each in its own panel; one legend below them."""
    plt = _plt()
    rows = pruned_rows(result)
    scorers = list(dict.fromkeys(r["label"] for r in rows))
    ratios = sorted({r.get("keep_ratio") for r in rows}, key=lambda v: (v is None, v))
    colours = dict(zip(ratios, palette(len(ratios))))
    for r in rows:
        r["_hue"] = (r.get("keep_ratio"), r["label"])
    metrics = _metrics(rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        series = ablation_series(rows, "start_layer", "_hue", m)
        for (ratio, lab), pts in sorted(series.items(), key=lambda kv: (str(kv[0][0]), scorers.index(kv[0][1]))):
            k = scorers.index(lab)
            xs = sorted(pts)
            name = f"r = {ratio}" + (f", {lab}" if len(scorers) > 1 else "")
            ax.plot(xs, [pts[x][0] for x in xs], marker=MARKERS[k % len(MARKERS)], ls=LINES[k % len(LINES)],
                    color=colours[ratio], label=name)
            for x in xs:
                _spread(ax, x, pts[x], colours[ratio])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(sorted({x for pts in series.values() for x in pts}))  # the layers tried
        ax.set(xlabel="first stage's layer", ylabel=METRICS[m][0], title=METRICS[m][0])
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
    fig.suptitle(_title(result) + "\n" + ERRORS_NOTE, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend_below(fig, handles, labels, min(len(labels), len(ratios) if len(scorers) > 1 else 4))  # a column per r
    return fig


def _xlabel(x: str, v, rows) -> str:
    comp = [r.get("compression") for r in rows if r.get(x) == v and r.get("compression")]
    c = f"\n{sum(comp) / len(comp):.2f}x" if comp else ""
    if x == "stages":
        return f"{v} stage{'s' if v != 1 else ''}{c}"
    if x == "keep_ratio":
        return f"r = {v}{c}"
    return f"{v}{c}"


def ablation_figure(result: dict, x: str):
    """Grouped bars, one group per value of `x` ("stages", "setting", "keep_ratio"), one bar per scorer: the
    difference to dense in held-out loss and in synthetic accuracy (mean over seeds, each seed a dot; the interval
    where one seed)."""
    plt = _plt()
    rows = pruned_rows(result)
    metrics = _metrics(rows)
    xs = list(dict.fromkeys(r.get(x) for r in rows if r.get(x) is not None))
    if x in ("stages", "keep_ratio"):
        xs = sorted(xs)
    scorers = list(dict.fromkeys(r["label"] for r in rows))
    colours = palette(len(scorers))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.0, 1.3 * len(xs) + 2.5) * len(metrics), 3.8),
                             squeeze=False)
    width = 0.8 / len(scorers)
    for ax, m in zip(axes[0], metrics):
        series = ablation_series(rows, x, "label", m)
        for k, s in enumerate(scorers):
            pts = series.get(s, {})
            pos = [j + (k - (len(scorers) - 1) / 2) * width for j, v in enumerate(xs) if v in pts]
            vals = [pts[v][0] for v in xs if v in pts]
            bars = ax.bar(pos, vals, width, color=colours[k], hatch=HATCHES[k % len(HATCHES)], edgecolor="black",
                          linewidth=0.5, label=str(s))
            for p, v in zip(pos, [v for v in xs if v in pts]):
                _spread(ax, p, pts[v], "black")
            for t in ax.bar_label(bars, fmt="%.3g", fontsize=7, label_type="center"):  # clear of the intervals
                t.set_bbox(dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(xs)), [_xlabel(x, v, rows) for v in xs], fontsize=8)
        ax.set(ylabel=METRICS[m][0], title=METRICS[m][0])
        ax.title.set_fontsize(10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title(result) + "\n" + ERRORS_NOTE, fontsize=9)
    if len(scorers) > 1 or scorers[0] is not None:  # one legend under the panels, clear of the bars and their labels
        handles, labels = axes[0][0].get_legend_handles_labels()
        legend_below(fig, handles, labels, min(len(labels), 4))
    else:
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------ H2O
def _mean(v):
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else None


def h2o_points(synthetic: dict | None = None, predictions: list[dict] | None = None,
               longbench: dict | None = None) -> list[dict]:
    """One point per "+H<budget>" scorer and per scorer it is the budget of (budget None: no eviction):
    {bench, scorer, base, budget, score, n (prompts), kv_bytes, decode_ms_per_token, loop (the decode loop:
    "sdtp", this project's, or "hf_generate"), device_sharing (synthetic: processes that answered on one device at
    once; their decode times are not one stream's)}; synthetic accuracy in %, LongBench's
    category average. kv_bytes / decode_ms_per_token: the suite's "efficiency" entry (else the mean over prediction
    rows that carry them), LongBench's mean_kv_bytes / mean_decode_ms_per_token; None where absent. Empty when no
    scorer has a +H."""
    keys = ("kv_bytes", "decode_ms_per_token")
    pts = []
    if synthetic is not None:
        acc: dict = defaultdict(lambda: [0.0, 0])
        for s in synthetic["summary"]:
            acc[s["scorer"]][0] += s["accuracy"] * s["n"]
            acc[s["scorer"]][1] += s["n"]
        rows: dict = defaultdict(lambda: defaultdict(list))
        for r in predictions or []:
            for k in keys:
                rows[r["scorer"]][k].append(r.get(k))
            rows[r["scorer"]]["device_sharing"].append(r.get("device_sharing", 1))  # absent: one process
        eff = synthetic.get("efficiency") or {}
        pts += [{"bench": "synthetic", "scorer": s, "score": 100 * a / n, "n": n, "loop": "sdtp",
                 **{k: (eff.get(s) or {}).get(k, _mean(rows[s][k])) for k in keys},
                 "device_sharing": (eff.get(s) or {}).get("device_sharing", max(rows[s]["device_sharing"], default=1))}
                for s, (a, n) in acc.items()]
    if longbench is not None:  # a results file without decode_loop came from the same code: HF generate without H2O
        pts += [{"bench": "LongBench", "scorer": s, "score": v.get("category_average"), "n": v.get("n_samples"),
                 "loop": v.get("decode_loop") or ("sdtp" if h2o_base(s)[1] is not None else "hf_generate"),
                 **{k: v.get(f"mean_{k}", v.get(k)) for k in keys}} for s, v in longbench["scorers"].items()]
    for p in pts:
        p["base"], p["budget"] = h2o_base(p["scorer"])
    with_h = {(p["bench"], p["base"]) for p in pts if p["budget"] is not None}
    return [p for p in pts if (p["bench"], p["base"]) in with_h]


def _shared(points: list[dict], bench: str | None, key: str) -> str:
    """A decode-time panel's title note when its times were taken with several processes on one device."""
    n = max((p.get("device_sharing") or 1 for p in points if p["bench"] == bench), default=1)
    return f"\n({n} processes sharing the GPU)" if key == "decode_ms_per_token" and n > 1 else ""


def h2o_figure(points: list[dict]):
    """Per benchmark, the score against the KV budget (1.0: no eviction), one line per scorer the budget was
    applied to; then KV bytes and decode ms/token where the rows have them, from one benchmark (the first whose
    scorers all decoded with the same loop)."""
    plt = _plt()
    if not points:
        raise ValueError("h2o_figure: no +H<budget> scorer in the results")
    benches = list(dict.fromkeys(p["bench"] for p in points))
    extra = [k for k in ("kv_bytes", "decode_ms_per_token") if any(p.get(k) is not None for p in points)]
    panels = [(b, "score") for b in benches] + [(None, k) for k in extra]
    # the first benchmark whose rows all decoded with one loop (the suite: this project's), else the first at all
    same_loop = [b for b in benches if len({p.get("loop") for p in points if p["bench"] == b}) == 1]
    source = {k: next((b for b in same_loop + benches if any(p["bench"] == b and p.get(k) is not None
                                                             for p in points)), None) for k in extra}
    bases = list(dict.fromkeys(p["base"] for p in points))
    colours = palette(len(bases))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    ylabel = {"score": None, "kv_bytes": "KV cache (MiB)", "decode_ms_per_token": "decode ms / token"}
    for ax, (bench, key) in zip(axes[0], panels):
        for k, base in enumerate(bases):
            sel = [p for p in points if p["base"] == base and (bench is None or p["bench"] == bench)
                   and p.get(key) is not None]
            if bench is None:  # KV bytes / decode time: from one benchmark (named in the title), one decode loop
                sel = [q for q in sel if q["bench"] == source[key]]
            sel.sort(key=lambda p: p["budget"] if p["budget"] is not None else 1.0)
            if not sel:
                continue
            scale = 1 / 2 ** 20 if key == "kv_bytes" else 1.0
            ax.plot([p["budget"] if p["budget"] is not None else 1.0 for p in sel], [p[key] * scale for p in sel],
                    marker=MARKERS[k % len(MARKERS)], ls=LINES[k % len(LINES)], color=colours[k], label=base)
        ax.set(xlabel="H2O KV budget (1 = no eviction)",
               ylabel=ylabel[key] or ("accuracy %" if bench == "synthetic" else "category average"),
               title=(f"{bench}: " + ("accuracy" if bench == "synthetic" else "score")) if bench
               else f"{source[key]}: {ylabel[key]}" + _shared(points, source[key], key))
        if bench == "synthetic":
            ax.set_ylim(-3, 103)
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ frontier
def _family(policy: str | None) -> str:
    if policy is None:
        return "dense"
    for f in ("attention", "predictor", "hybrid", "oracle"):
        if policy.startswith(f):
            return f
    return policy if policy in ("norm", "recent", "random") else "predictor"


def frontier_figure(fr: dict, ncols: int = 3):
    """One panel per quality source with a measured pruned point (at most ncols a row): each scorer's accuracy on
    the synthetic suite as % of dense (marker: over all prompts; thin line: the range over the question layouts)
    against the prefill speedup over HF dense SDPA on the Qwen2-7B shape at fr["length"]. Each point's label ends in
    [k]: the speed row listed under the panels (with its GPU); the notes are wrapped to the figure's width."""
    import textwrap
    plt = _plt()
    pts = fr["points"]
    sources = [s for s in dict.fromkeys(p["source"] for p in pts)
               if any(p["speed"] is not None for p in pts if p["source"] == s)]
    if not sources:
        raise ValueError("frontier_figure: no point has both a quality and a speed")
    pts = [p for p in pts if p["source"] in sources]
    refs = list(dict.fromkeys(p["speed"] for p in pts if p["speed"] is not None))
    fams = list(dict.fromkeys(_family(p["policy"]) for p in pts))
    colours = dict(zip(fams, palette(len(fams))))
    notes = [f"[{i + 1}] {r.describe()}" for i, r in enumerate(refs)]
    if any(p["how"] not in ("own", "dense") for p in pts):
        notes.append("* no measurement of its own: policies (norm, recent, random) use the predictor's row (they cost "
                     "less), attention settings window attention's, auto / predictor files the predictor's")
    skipped = [s for s in dict.fromkeys(p["source"] for p in fr["points"]) if s not in sources]
    if fr["unmatched"] or skipped:
        notes.append("not drawn: " + "; ".join([f"{u['scorer']} ({u['source']}: {u['why']})" for u in fr["unmatched"]]
                                               + [f"{s} (no scorer with a speed row)" for s in skipped]))
    ncols = min(ncols, len(sources))
    nrows = -(-len(sources) // ncols)
    width = 5.6 * ncols
    char_in = 6.5 * 0.72 / 72  # a 6.5 pt monospace character: 0.6 em, hinted up to whole pixels at 100-150 dpi
    lines = [w for n in notes for w in textwrap.wrap(n, int((width - 0.3) / char_in), subsequent_indent="    ",
                                                                  break_on_hyphens=False)]
    notes_h = 0.3 + 0.115 * len(lines)  # inches
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 4.6 * nrows + notes_h), squeeze=False, sharey=True,
                             sharex=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(sources):]:
        ax.set_visible(False)
    hi = max(p["speedup"] for p in pts)
    column = hi + 0.12  # the labels: one column right of the points, top to bottom in the points' order
    lowest = 100.0
    for ax, src in zip(flat, sources):
        mine = sorted((p for p in pts if p["source"] == src), key=lambda p: -p["share"])
        prev = None  # the last label's height: labels never on top of each other
        for p in mine:
            f = _family(p["policy"])
            k = fams.index(f)
            x, y = p["speedup"], 100 * p["share"]
            lay = [v for v in p["by_layout"].values() if v is not None]
            if len(lay) > 1:
                ax.vlines(x, 100 * min(lay), 100 * max(lay), color=colours[f], lw=1, alpha=0.7)
            ax.scatter([x], [y], marker=MARKERS[k % len(MARKERS)], s=55, color=colours[f], edgecolor="black",
                       linewidth=0.5, zorder=3, label=f)
            ref = f" [{refs.index(p['speed']) + 1}]" if p["speed"] is not None else ""
            ref += "*" if p["how"] not in ("own", "dense") else ""
            if p["speed"] is None:  # dense: its label beside it
                ax.annotate(p["scorer"], (x, y), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
                continue
            ty = y if prev is None else min(y, prev - 4.2)
            prev, lowest = ty, min(lowest, ty)
            ax.annotate(p["scorer"] + ref, (x, y), xytext=(column, ty), fontsize=7, va="center",
                        arrowprops=dict(arrowstyle="-", lw=0.4, color="grey"))
        ax.axhline(100, color="black", lw=0.6, ls=":")
        ax.set(title=src, xlabel=f"prefill speedup vs HF dense SDPA, Qwen2-7B shape, {fr['length'] // 1024}K")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=True)  # in a grid every panel keeps its speed axis
    for row in axes:
        row[0].set_ylabel("synthetic suite accuracy, % of dense")
    lo = min(p["speedup"] for p in pts)
    flat[0].set_xlim(lo - 0.1, column + 0.75)  # room for the label column
    flat[0].set_ylim(min(lowest, min(100 * p["share"] for p in pts)) - 4, 104)
    handles, labels = [], []
    for ax in flat[:len(sources)]:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    uniq = dict(zip(labels, handles))
    flat[0].legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower left")
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, va="bottom", ha="left", family="monospace")
    fig.tight_layout(rect=(0, notes_h / fig.get_figheight(), 1, 1))
    return fig
