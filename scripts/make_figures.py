"""Figures for the README from the committed result files:  python scripts/make_figures.py"""
import json
from pathlib import Path

from sdtp_lib.workspace.plots import latency_figure, saliency_sparsity_figure, training_curves

ROOT = Path(__file__).resolve().parent.parent
RES, FIG = ROOT / "reports" / "results", ROOT / "figures"


def main():
    FIG.mkdir(exist_ok=True)
    run = json.loads((RES / "2026-11-29_smollm2_training_h200" / "run.json").read_text())
    saliency_sparsity_figure(run["saliency_stats"]).savefig(FIG / "saliency_sparsity_smollm2.png", dpi=120)
    logs = {f"st_topk seed {s}": RES / "2026-11-29_smollm2_training_h200" / f"train_log_s{s}.csv" for s in (0, 1)}
    logs["gumbel seed 0"] = RES / "2026-11-29_smollm2_training-gumbel-masks_h200" / "train_log_s0.csv"
    training_curves(logs, terms=("cls", "mse", "rank", "kept_last")).savefig(FIG / "training_curves_smollm2.png",
                                                                            dpi=120)
    src = RES / "2026-11-29_qwen2-7b-shape_latency_h200" / "latency.json"
    d = json.loads(src.read_text())
    h = d["header"]
    title = (f"{h['gpu']}, Qwen2-7B architecture ({h['weights'].split(' ')[0]} weights), bf16, r = 0.9; "
             f"{src.relative_to(ROOT)}" + ("" if h.get("complete") else " (incomplete run)"))
    latency_figure(d["rows"], title=title).savefig(FIG / "latency_h200.png", dpi=110)
    print("wrote", sorted(p.name for p in FIG.glob("*.png")))


if __name__ == "__main__":
    main()
