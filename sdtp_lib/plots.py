"""Figures from result rows (matplotlib; seaborn styling when installed)."""
from __future__ import annotations


def latency_figure(rows: list[dict], engine: str = "sdtp"):
    """Prefill latency, prefill FLOPs and peak memory vs prompt length; one line per variant (plus HF dense)."""
    import matplotlib
    matplotlib.use("Agg") if matplotlib.get_backend().lower().startswith("tk") else None
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    series = [(v, engine) for v in ("dense", "sdtp", "sdtp-low")] + [("dense", "hf")]
    for variant, eng in series:
        rs = sorted((r for r in rows if r["variant"] == variant and r["engine"] == eng), key=lambda r: r["prompt_len"])
        if not rs:
            continue
        x = [r["prompt_len"] for r in rs]
        style = dict(marker="o", label=f"{variant} ({eng})", linestyle="--" if eng == "hf" else "-")
        axes[0].plot(x, [r["prefill_s"] for r in rs], **style)
        axes[1].plot(x, [r["flops"] / 1e12 for r in rs], **style)
        if all(r["peak_mem_gib"] is not None for r in rs):
            axes[2].plot(x, [r["peak_mem_gib"] for r in rs], **style)
    for ax, title in zip(axes, ("prefill latency (s)", "prefill TFLOPs", "peak memory (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt tokens")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
