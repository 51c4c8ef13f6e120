"""Figures from result rows (matplotlib; seaborn styling when installed)."""
from __future__ import annotations


def latency_figure(rows: list[dict], engine: str = "sdtp", title: str | None = None):
    """Prefill and end-to-end latency, prefill FLOPs and peak memory vs prompt length; one line per variant on
    `engine`, plus plain HF dense (dashed)."""
    import matplotlib
    matplotlib.use("Agg") if matplotlib.get_backend().lower().startswith("tk") else None
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    series = [(v, engine) for v in ("dense", "sdtp", "sdtp-low")] + [("dense", "hf")]
    for variant, eng in series:
        rs = sorted((r for r in rows if r["variant"] == variant and r["engine"] == eng), key=lambda r: r["prompt_len"])
        if not rs:
            continue
        x = [r["prompt_len"] for r in rs]
        style = dict(marker="o", label=f"{variant} ({eng})", linestyle="--" if eng == "hf" else "-")
        axes[0].plot(x, [r["prefill_s"] for r in rs], **style)
        axes[1].plot(x, [r["e2e_s"] for r in rs], **style)
        axes[2].plot(x, [r["flops"] / 1e12 for r in rs], **style)
        if all(r["peak_mem_gib"] is not None for r in rs):
            axes[3].plot(x, [r["peak_mem_gib"] for r in rs], **style)
    titles = ("prefill latency (s)", "end-to-end latency (s)", "prefill TFLOPs", "peak memory (GiB)")
    for ax, t in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt tokens")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    for ax in axes[:3]:
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def saliency_sparsity_figure(stats: dict):
    """Share of |saliency| held by the top 10% / 35% of prompt tokens, and the rank correlation with the
    next stage, per stage layer (from sdtp_lib.training.saliency.saliency_stats)."""
    import matplotlib.pyplot as plt
    rows = stats["per_layer"]
    x = [r["layer"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for f in stats["fractions"]:
        key = f"top{round(100 * f)}_share"
        a.plot(x, [r[key] for r in rows], marker="o", label=f"top {round(100 * f)}% of tokens")
    a.set(xlabel="layer", ylabel="share of total |saliency|", title="saliency sparsity", ylim=(0, 1.02))
    a.legend(fontsize=8)
    pairs = [(r["layer"], r["spearman_next"]) for r in rows if r["spearman_next"] is not None]
    b.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o")
    b.set(xlabel="layer", ylabel="Spearman rho", title="rank agreement with the next stage")
    for ax in (a, b):
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
