"""Figures of the evaluations' results (seaborn), for notebooks 04-06 and the reports.

    fig = longbench_figure(score_longbench("runs/lb"))        # category scores per scorer; score vs prefill speedup
    fig = lmeval_figure(run_lmeval_suite(...))                 # accuracy per task per scorer
    fig = accuracy_vs_length_figure(synthetic.summarise(rows)) # accuracy vs prompt length per scorer
    fig.savefig(out / f"{file_stem(scorer)}.png")

Each takes the result structure its evaluation module returns, nothing else; scorers keep their order.
"""
from __future__ import annotations

from .scorers import file_stem

__all__ = ["longbench_figure", "lmeval_figure", "accuracy_vs_length_figure", "file_stem", "length_label",
           "legend_below", "HATCHES", "MARKERS"]


def length_label(n: int) -> str:  # 4096 -> "4K"
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def _palette(names):
    """Colour-blind-safe colours (seaborn's "colorblind", 10 of them; tab20 beyond that)."""
    import seaborn as sns
    return dict(zip(names, sns.color_palette("colorblind" if len(names) <= 10 else "tab20", len(names))))


HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--", "**", "||")  # bars told apart in black and white
MARKERS = tuple("osD^v<>p*hX")  # points likewise


def _bars(ax, rows, x_order, hue_order, colours, ylabel, ylim=None):
    """Grouped bars: rows [{"x", "scorer", "value"}] (value None: no bar)."""
    import pandas as pd
    import seaborn as sns
    df = pd.DataFrame([r for r in rows if r["value"] is not None], columns=["x", "scorer", "value"])
    if not df.empty:
        sns.barplot(df, x="x", y="value", hue="scorer", order=x_order, hue_order=hue_order, palette=colours, ax=ax,
                    edgecolor="black", linewidth=0.5)
        present = [n for n in hue_order if n in set(df["scorer"])]  # seaborn: one container per scorer drawn
        for name, bars in zip(present, ax.containers):
            for b in bars:
                b.set_hatch(HATCHES[hue_order.index(name) % len(HATCHES)])
    ax.set(xlabel="", ylabel=ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelrotation=25)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend() is not None:  # rebuilt: seaborn's handles have no hatches
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(facecolor=colours[n], edgecolor="black", hatch=HATCHES[k % len(HATCHES)], label=n)
                           for k, n in enumerate(hue_order) if n in set(df["scorer"])], fontsize=8, title=None)


def longbench_figure(result: dict):
    """Left: the category scores (and the average over categories) per scorer. Right: each scorer's average over
    tasks against its prefill speedup over dense (the dense scorer at 1.0x). One legend below both, each scorer with
    its bar's hatch and its point's marker. `result`: score_longbench's."""
    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    sc = result["scorers"]
    names = list(sc)
    if not names:
        raise ValueError("longbench_figure: the result has no scorers")
    colours = _palette(names)
    cats = list(dict.fromkeys(c for s in sc.values() for c in s["categories"]))
    rows = [{"x": c, "scorer": n, "value": (sc[n]["categories"].get(c) or {}).get("score")}
            for n in names for c in cats]
    rows += [{"x": "average", "scorer": n, "value": sc[n]["category_average"]} for n in names]
    ncol, rows_ = _legend_shape(names)
    height = 3.8 + 0.28 * rows_
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * (len(cats) + 1) + 2), height),
                               gridspec_kw={"width_ratios": [max(2, len(cats) + 1), 2]})
    top = max([r["value"] for r in rows if r["value"] is not None] + [1.0])
    _bars(a, rows, cats + ["average"], names, colours, "score (official metric x 100)", (0, min(100.0, 1.12 * top)))
    if a.get_legend() is not None:
        a.get_legend().remove()  # one legend for both panels, below them
    a.set_title(f"LongBench by category ({result['config']['model']['id']})", fontsize=10)
    for k, n in enumerate(names):
        x = 1.0 if n == result.get("dense") else sc[n].get("prefill_speedup_vs_dense")
        if x is not None and sc[n]["average"] is not None:
            b.scatter([x], [sc[n]["average"]], color=colours[n], s=50, marker=MARKERS[k % len(MARKERS)],
                      edgecolor="black", linewidth=0.5, zorder=3)
    b.set(xlabel="prefill speedup vs dense", ylabel="average over tasks", title="score vs speed",
          ylim=(0, min(100.0, 1.12 * top)))
    b.title.set_fontsize(10)
    b.grid(alpha=0.3)
    handles = [(Patch(facecolor=colours[n], edgecolor="black", hatch=HATCHES[k % len(HATCHES)]),
                Line2D([], [], ls="", marker=MARKERS[k % len(MARKERS)], color=colours[n], markeredgecolor="black",
                       markeredgewidth=0.5)) for k, n in enumerate(names)]
    legend_below(fig, handles, names, ncol, handler_map={tuple: HandlerTuple(ndivide=None)})
    return fig


def _legend_shape(names, ncol: int = 4) -> tuple[int, int]:
    """(columns, rows) of a legend of `names` below a figure."""
    import math
    ncol = max(1, min(ncol, len(names)))
    return ncol, math.ceil(len(names) / ncol)


def legend_below(fig, handles, labels, ncol: int, **kw):
    """One legend under every panel, out of the bars' way; the panels shrink to make room (fig's last layout
    step)."""
    rows = -(-len(labels) // ncol)
    height = fig.get_figheight()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False, **kw)
    fig.tight_layout(rect=(0, (0.3 * rows + 0.1) / height, 1, 1))


def lmeval_figure(results_by_scorer: dict):
    """Accuracy per task (and the group mean) per scorer. `results_by_scorer`: {name: run_lmeval dict}, as
    run_lmeval_suite returns."""
    import matplotlib.pyplot as plt
    names = list(results_by_scorer)
    if not names:
        raise ValueError("lmeval_figure: no results")
    acc = {n: results_by_scorer[n]["accuracy"] for n in names}
    tasks = list(dict.fromkeys(t for a in acc.values() for t in a))
    group = [t for t in tasks if t == "sdtp_paper" or any(t in ((r.get("lm_eval") or {}).get("groups") or {})
                                                          for r in results_by_scorer.values())]  # the paper's mean
    order = [t for t in tasks if t not in group] + group
    label = lambda t: "mean" if t in group else t.removeprefix("sdtp_")  # noqa: E731
    rows = [{"x": label(t), "scorer": n, "value": acc[n].get(t)} for n in names for t in order]
    ncol, rows_ = _legend_shape(names, 5)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(order) + 2), 3.6 + 0.28 * rows_))
    _bars(ax, rows, [label(t) for t in order], names, _palette(names), "accuracy", (0, 1))
    shots = sorted({str(r.get("config", {}).get("num_fewshot")) for r in results_by_scorer.values()})
    ax.set_title(f"lm-eval, {'/'.join(shots)}-shot accuracy per task", fontsize=10)
    if ax.get_legend() is not None:  # below the bars, not over them
        leg = ax.get_legend()
        handles, labels = leg.legend_handles, [t.get_text() for t in leg.get_texts()]
        leg.remove()
        legend_below(fig, handles, labels, min(ncol, len(labels)))
    else:
        fig.tight_layout()
    return fig


def accuracy_vs_length_figure(summary: list[dict], by: str = "task"):
    """Accuracy (%) against prompt length, one line per scorer: the mean over everything, then one panel per task
    (by="task", mean over layouts) or per layout (by="layout", mean over tasks). `summary`: synthetic.summarise's
    rows."""
    import matplotlib.pyplot as plt
    import numpy as np
    if not summary:
        raise ValueError("accuracy_vs_length_figure: empty summary")
    if by not in ("task", "layout"):
        raise ValueError(f"accuracy_vs_length_figure: by must be 'task' or 'layout', got {by!r}")
    names = list(dict.fromkeys(s["scorer"] for s in summary))
    groups = list(dict.fromkeys(s[by] for s in summary))  # the tasks or the layouts: one panel each
    lengths = sorted({s["length"] for s in summary})
    colours = _palette(names)
    panels = [(f"all {by}s", groups)] + ([(g, [g]) for g in groups] if len(groups) > 1 else [])
    width = 3.2 * len(panels) + 1
    fig, axes = plt.subplots(1, len(panels), figsize=(width + 2.4, 3.4), squeeze=False, sharey=True)  # resized below
    for ax, (title, members) in zip(axes[0], panels):
        for n in names:
            ys = [np.mean([s["accuracy"] for s in summary if s["scorer"] == n and s[by] in members and
                           s["length"] == L] or [np.nan]) for L in lengths]
            k = names.index(n)  # marker and line style differ too: equal accuracies draw on top of each other
            ax.plot(lengths, 100 * np.array(ys), marker="osD^v<>p*h"[k % 10], ms=max(3, 8 - k),
                    ls=("-", "--", "-.", ":")[k % 4], color=colours[n], label=n)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [length_label(L) for L in lengths])
        ax.minorticks_off()
        ax.set(title=title, xlabel="prompt tokens", ylim=(-3, 103))
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend = fig.legend(handles, labels, fontsize=8, loc="center left", frameon=False)
    strip = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.1  # inches the names need
    fig.set_figwidth(width + strip)
    right = width / (width + strip)  # the panels on the left, the legend in the strip on the right (none covered)
    fig.tight_layout(rect=(0, 0, right, 1))
    legend.set_bbox_to_anchor((right, 0.5))
    return fig
