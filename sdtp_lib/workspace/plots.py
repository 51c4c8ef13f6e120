"""Figures from result rows (matplotlib; seaborn styling when installed)."""
from __future__ import annotations


def latency_figure(rows: list[dict], engine: str = "sdtp", title: str | None = None, engines=None):
    """Prefill and end-to-end latency, prefill FLOPs and peak memory vs prompt length; one line per variant on
    `engine`, plus plain HF dense (dashed); engines=("sdtp", "hf"): every variant on both loops. Colour and marker
    tell the variant, the line style the engine (colour-blind palette, readable in black and white)."""
    import matplotlib
    matplotlib.use("Agg") if matplotlib.get_backend().lower().startswith("tk") else None
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    variants = ("dense", "sdtp", "sdtp-low")
    if engines is None:
        series = [(v, engine) for v in variants] + [("dense", "hf")]
    else:
        series = [(v, e) for e in engines for v in variants]
    colours = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    for variant, eng in series:
        rs = sorted((r for r in rows if r["variant"] == variant and r["engine"] == eng), key=lambda r: r["prompt_len"])
        if not rs:
            continue
        x = [r["prompt_len"] for r in rs]
        label = f"{variant} ({'HF loop' if eng == 'hf' else 'this engine' if eng == 'sdtp' else eng})"
        style = dict(marker="osD"[variants.index(variant)], color=colours[variant], label=label,
                     linestyle="--" if eng == "hf" else "-", markerfacecolor="white" if eng == "hf" else None)
        axes[0].plot(x, [r["prefill_s"] for r in rs], **style)
        axes[1].plot(x, [r["e2e_s"] for r in rs], **style)
        axes[2].plot(x, [r["flops"] / 1e12 for r in rs], **style)
        if all(r["peak_mem_gib"] is not None for r in rs):
            axes[3].plot(x, [r["peak_mem_gib"] for r in rs], **style)
    if not axes[3].lines:
        axes[3].text(0.5, 0.5, "peak memory not measured\n(no GPU in this run)", ha="center", va="center",
                     transform=axes[3].transAxes, fontsize=9)
    titles = ("prefill latency (s)", "end-to-end latency (s)", "prefill TFLOPs", "peak memory (GiB)")
    lengths = sorted({r["prompt_len"] for r in rows})
    for ax, t in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [f"{n // 1024}K" if n % 1024 == 0 else str(n) for n in lengths])
        ax.minorticks_off()
        ax.set_xlabel("prompt tokens")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.2, 2, 2000 rather than 2 x 10^-1
    minor = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")  # 2s and 5s only: no crowding
    for ax in axes:
        ax.set_xlim(lengths[0] / 1.25, lengths[-1] * 1.25)  # also on a panel with no line (memory on a CPU)
    for ax in axes[:3]:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(minor)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def backend_figure(rows: list[dict], title: str | None = None):
    """Per prompt length, grouped bars: prefill and end-to-end speedup against HF dense with SDPA (the run's
    baseline backend), and decode ms/token, for HF dense with each backend and every variant on this project's
    engine with each backend (rows of a profile with several --attn and keep ratios)."""
    import matplotlib
    matplotlib.use("Agg") if matplotlib.get_backend().lower().startswith("tk") else None
    import matplotlib.pyplot as plt
    from ..speed.profiling import baseline_attn, row_attns, rows_by_key
    base = baseline_attn(rows)
    attns = row_attns(rows)
    by = rows_by_key(rows)  # (prompt_len, variant, engine, attn) -> row
    lengths = sorted({r["prompt_len"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["engine"] == "sdtp"))
    series = [("dense", "hf", a) for a in attns] + [(v, "sdtp", a) for v in variants for a in attns]
    series = [s for s in series if any((T, *s) in by for T in lengths)]
    try:
        import seaborn as sns
        colors = sns.color_palette("colorblind", len(series))
    except ImportError:  # seaborn is a dependency; matplotlib alone still draws
        colors = [plt.get_cmap("tab10")(i) for i in range(len(series))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    width = 0.8 / max(1, len(series))
    for i, (variant, engine, attn) in enumerate(series):
        xs, pre, e2e, dec = [], [], [], []
        for j, T in enumerate(lengths):
            r, b = by.get((T, variant, engine, attn)), by.get((T, "dense", "hf", base))
            if r is None or b is None:
                continue
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            pre.append(b["prefill_s"] / r["prefill_s"])
            e2e.append(b["e2e_s"] / r["e2e_s"])
            dec.append(r["decode_ms_per_token"])
        label = f"HF dense, {attn}" if engine == "hf" else f"{variant}, {attn} (this engine)"
        hatch = "//" if engine == "hf" else None
        for ax, ys in zip(axes, (pre, e2e, dec)):
            bars = ax.bar(xs, ys, width, color=colors[i], hatch=hatch, edgecolor="black", linewidth=0.4, label=label)
            if ax is not axes[2]:
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    from ..eval.figures import length_label
    titles = (f"prefill speedup vs HF dense {base}", f"end-to-end speedup vs HF dense {base}",
              "decode ms / token")
    for ax, t in zip(axes, titles):
        ax.set_xticks(range(len(lengths)), [length_label(T) for T in lengths])
        ax.set_xlabel("prompt tokens")
        ax.set_title(t, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:2]:
        ax.axhline(1.0, color="black", linewidth=0.8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * -(-len(labels) // 4), 1, 1))  # room for the legend's rows below
    return fig


def saliency_sparsity_figure(stats: dict):
    """Share of |saliency| held by the top 10% / 35% of prompt tokens, and the rank correlation with the
    next stage, per stage layer (from sdtp_lib.training.saliency.saliency_stats)."""
    import matplotlib.pyplot as plt
    rows = stats["per_layer"]
    x = [r["layer"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for k, f in enumerate(stats["fractions"]):
        key = f"top{round(100 * f)}_share"
        a.plot(x, [r[key] for r in rows], marker="osD^"[k % 4], ls=("-", "--", "-.", ":")[k % 4],
               label=f"top {round(100 * f)}% of tokens")
    a.set(xlabel="layer", ylabel="share of total |saliency|", title="saliency sparsity", ylim=(0, 1.02))
    a.legend(fontsize=8)
    pairs = [(r["layer"], r["spearman_next"]) for r in rows if r["spearman_next"] is not None]
    b.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o")
    b.set(xlabel="layer", ylabel="Spearman rho", title="rank agreement with the next stage")
    for ax in (a, b):
        if len(x) <= 12:
            ax.set_xticks(x)  # the stage layers
        else:  # many layers (07's saliency covers every start layer's stages): every layer's tick would collide
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_curves(logs: dict, terms=("cls", "mse", "rank"), smooth: int = 10):
    """Per-step losses from train_log.csv files: logs = {label: path}; a moving average of `smooth` steps."""
    import csv

    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3.2))
    for label, path in logs.items():
        with open(path) as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in rows]
        for ax, term in zip(axes, terms):
            v = [float(r[term]) for r in rows]
            k = max(1, min(smooth, len(v)))
            avg = [sum(v[max(0, i - k + 1): i + 1]) / len(v[max(0, i - k + 1): i + 1]) for i in range(len(v))]
            ax.plot(steps, avg, label=label)
    for ax, term in zip(axes, terms):
        ax.set(xlabel="step", title=term if term.startswith("kept") else f"L_{term}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
