"""Notebook 08's work in two calls: every paper figure that its sources allow (each one drawn, or not drawn with the
missing file named), then final_summary.md.

    src = load_sources(run)
    made = draw_figures(src, out)                   # {name: Made(file, why, ...)}; PNGs in out
    path = write_summary(src, out, made)            # out/final_summary.md
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_text, read_jsonl
from . import frontier as FR
from . import paper_figures as PF
from .report import final_summary
from .sources import HEADLINE_LATENCY, SALIENCY_STATS, Sources, quality_results, speed_files

log = logging.getLogger(__name__)


@dataclass
class Made:
    """One figure: its file (None when not drawn) and why not."""
    file: str | None = None
    why: str = ""
    data: dict = field(default_factory=dict)  # what the summary reuses (frontier points, H2O points)


def _need(src: Sources, *names: str) -> str:
    """'' when every source is there, else why not (the first missing file)."""
    for n in names:
        s = src.items.get(n)
        if s is None or not s.found:
            return f"missing source {n}: {s.why if s else 'not looked for'}"
    return ""


def _figures(src: Sources, length: int) -> dict:
    """{name: (why not, make)}; make() returns the figure (and the data the summary reuses)."""
    from ..eval import figures as EF
    from . import plots
    run_latency = src.get("latency")
    return {
        "saliency_sparsity": (_need(src, "saliency"), lambda: (plots.saliency_sparsity_figure(src.get("saliency")), {})),
        "start_layer": (_need(src, "ablation_start_layer"),
                        lambda: (PF.start_layer_figure(src.get("ablation_start_layer")), {})),
        "stages": (_need(src, "ablation_stages"), lambda: (PF.ablation_figure(src.get("ablation_stages"), "stages"), {})),
        "keep_ratio": (_need(src, "ablation_keep_ratio"),
                       lambda: (PF.ablation_figure(src.get("ablation_keep_ratio"), "keep_ratio"), {})),
        "losses": (_need(src, "ablation_losses"), lambda: (PF.ablation_figure(src.get("ablation_losses"), "setting"), {})),
        "latency_run": (_need(src, "latency"), lambda: (plots.latency_figure(
            run_latency["rows"], engines=("sdtp", "hf"), title=f"this run: {run_latency['header'].get('model')}, "
            f"{run_latency['header'].get('gpu')}"), {})),
        "latency_qwen2-7b-shape_h200": (_need(src, f"speed:{HEADLINE_LATENCY}"), lambda: (plots.latency_figure(
            src.get(f"speed:{HEADLINE_LATENCY}")["rows"], engines=("sdtp", "hf"),
            title=f"committed: reports/results/{HEADLINE_LATENCY} (Qwen2-7B shape, random weights, H200)"), {})),
        "longbench": (_need(src, "longbench"), lambda: (EF.longbench_figure(src.get("longbench")), {})),
        "lmeval": (_need(src, "lmeval"), lambda: (EF.lmeval_figure(src.get("lmeval")["scorers"]), {})),
        "h2o": (_h2o_why(src), lambda: _h2o(src)),
        "frontier": ("" if quality_results(src) and speed_files(src) else
                     "missing source: no synthetic-suite results (06_synthetic or committed *scorers*) or no committed "
                     "Qwen2-7B-shape speed file", lambda: _frontier(src, length)),
    }


def _h2o_why(src: Sources) -> str:
    if src.get("synthetic") is None and src.get("longbench") is None:
        return f"{_need(src, 'synthetic')}; {_need(src, 'longbench')}"
    if not PF.h2o_points(src.get("synthetic"), None, src.get("longbench")):
        return f"no +H<budget> scorer in {src.path('synthetic')} or {src.path('longbench')}"
    return ""


def _h2o(src: Sources):
    syn = src.get("synthetic")
    preds = None
    if syn is not None and "efficiency" not in syn and any(PF.h2o_base(s["scorer"])[1] is not None
                                                           for s in syn["summary"]):  # older results: the rows
        preds = read_jsonl(src.run / "06_synthetic" / "predictions.jsonl", missing_ok=True) or None
    pts = PF.h2o_points(syn, preds, src.get("longbench"))
    return PF.h2o_figure(pts), {"h2o": pts}


def _frontier(src: Sources, length: int):
    fr = FR.frontier(quality_results(src), FR.speed_rows(speed_files(src)), length)
    return PF.frontier_figure(fr), {"frontier": fr}


def draw_figures(src: Sources, out, length: int = 32768, dpi: int = 120, close: bool = True) -> dict[str, Made]:
    """Every figure whose sources exist, saved as out/<name>.png; the others not drawn, with the reason."""
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, (why, make) in _figures(src, length).items():
        if why:
            log.info("08: %s not drawn: %s", name, why)
            made[name] = Made(None, why)
            continue
        fig, data = make()
        fig.savefig(out / f"{name}.png", dpi=dpi)
        if close:
            plt.close(fig)
        made[name] = Made(f"{name}.png", "", data)
        log.info("08: wrote %s", out / f"{name}.png")
    if made["saliency_sparsity"].file and src.path("saliency").suffix != ".json":  # its numbers, without the big file
        atomic_write_text(out / SALIENCY_STATS, json.dumps(src.get("saliency"), indent=1) + "\n")
    return made


def write_summary(src: Sources, out, made: dict[str, Made]) -> Path:
    """out/final_summary.md (atomically), from the sources and the figures drawn."""
    data = {k: v for m in made.values() for k, v in m.data.items()}
    text = final_summary(src, {n: (m.file, m.why) for n, m in made.items()}, data.get("frontier"), data.get("h2o"))
    return atomic_write_text(Path(out) / "final_summary.md", text)
