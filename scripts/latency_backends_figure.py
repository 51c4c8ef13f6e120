"""The latency-by-backend figure from one or more profile JSONs (`python -m sdtp_lib profile --attn sdpa
flash_attention_4 ...`): each prompt length's rows come whole from the last file that has that length, so every
speedup stays within one run (its own HF dense baseline).

    python scripts/latency_backends_figure.py figures/latency_backends_qwen2-7b-shape_h200.png \
        reports/results/2026-12-05_qwen2-7b-shape_fa4-decode_h200/latency_fa4_h200.json \
        reports/results/2026-12-06_qwen2-7b-shape_fa4-128k_h200/latency_fa4_h200_128k.json
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sdtp_lib.speed.profiling import rows_per_length
from sdtp_lib.workspace.plots import backend_figure

log = logging.getLogger("latency_backends_figure")


def merged_rows(paths: list[Path]) -> list[dict]:
    """Rows per prompt length from the last file that has that length."""
    per_len = rows_per_length((str(p), json.loads(p.read_text())["rows"]) for p in paths)
    for T, (p, _) in per_len.items():
        log.info("%d tokens: %s", T, p)
    return [r for _, rows in per_len.values() for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the figure (.png)")
    ap.add_argument("profiles", type=Path, nargs="+", help="profile JSONs; a later file's length replaces an earlier's")
    ap.add_argument("--title", default="Qwen2-7B shape, one H200, bf16, batch 1: SDTP (10 stages) on this engine "
                    "against HF dense, by attention backend and keep ratio")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [str(p) for p in a.profiles if not p.is_file()]
    if missing:
        ap.error(f"no such profile: {', '.join(missing)}")
    fig = backend_figure(merged_rows(a.profiles), title=a.title)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=130, bbox_inches="tight")
    log.info("wrote %s", a.out)


if __name__ == "__main__":
    main()
