"""The paper's reported numbers, as data: the final summary (workspace.report) sets this project's results beside
them. Copied from the paper's tables (via /work/shared/REFERENCE.md section 2); ratios and speedups are computed
from these raw values where they are used, never typed twice."""
from __future__ import annotations

CITATION = ("Tao et al. 2025, \"Saliency-driven Dynamic Token Pruning for Large Language Models\", "
            "arXiv 2504.04514")

PAPER = {
    # Mistral-7B, batch 1, 128 generated tokens; baseline -> SDTP (r = 0.9, 10 stages)
    "latency": {
        "model": "Mistral-7B",
        "new_tokens": 128,
        "rows": [  # prompt tokens; the stated (prefill, end-to-end) speedups (computed from the rounded seconds, 4K and
            # 8K would read 1.55x / 1.60x); prefill TFLOPs, prefill s, end-to-end s: (baseline, SDTP); memory change in %
            {"prompt_len": 4096, "tflops": (72.5, 47.8), "prefill_s": (0.31, 0.20), "e2e_s": (3.70, 3.43),
             "memory_pct": -3.3, "speedup": (1.52, 1.08)},
            {"prompt_len": 8192, "tflops": (158, 102), "prefill_s": (0.64, 0.40), "e2e_s": (4.85, 3.98),
             "memory_pct": -7.3, "speedup": (1.58, 1.22)},
            {"prompt_len": 16384, "tflops": (369, 229), "prefill_s": (1.40, 0.84), "e2e_s": (7.17, 5.46),
             "memory_pct": -13.1, "speedup": (1.67, 1.31)},
            {"prompt_len": 32768, "tflops": (950, 560), "prefill_s": (3.40, 1.90), "e2e_s": (13.6, 8.95),
             "memory_pct": -20.7, "speedup": (1.79, 1.52)},
            {"prompt_len": 65536, "tflops": (2743, 1527), "prefill_s": (9.33, 4.99), "e2e_s": (27.8, 16.9),
             "memory_pct": -28.2, "speedup": (1.87, 1.64)},
            {"prompt_len": 131072, "tflops": (8864, 4679), "prefill_s": (29.3, 13.6), "e2e_s": (63.7, 36.4),
             "memory_pct": -34.3, "speedup": (2.15, 1.75)},
        ],
    },
    # 5-shot average of COPA, PIQA, WinoGrande, MathQA, BoolQ, CB, WiC, WSC (accuracy %), full vs SDTP (65% pruned)
    "lmeval": {
        "tasks": ["copa", "piqa", "winogrande", "mathqa", "boolq", "cb", "wic", "wsc"],
        "rows": [
            {"model": "Llama2-7B", "full": 58.62, "sdtp": 59.88},
            {"model": "Mistral-7B", "full": 71.39, "sdtp": 71.24},
            {"model": "BLOOM-7B", "full": 54.03, "sdtp": 53.90},
        ],
    },
    # Mistral-7B, average of the SingleDoc / MultiDoc / Summ / FewShot / Code categories
    "longbench": {
        "model": "Mistral-7B",
        "categories": ["single-doc QA", "multi-doc QA", "summarization", "few-shot", "code"],
        "rows": [
            {"method": "original", "score": 42.34, "compression": 1.0, "prefill_speedup": 1.0, "e2e_speedup": 1.0},
            {"method": "SDTP", "stages": 10, "score": 39.82, "compression": 1.61, "prefill_speedup": 1.71,
             "e2e_speedup": 1.31},
            {"method": "SDTP-low", "stages": 5, "score": 40.98, "compression": 1.32, "prefill_speedup": None,
             "e2e_speedup": None},
            {"method": "LLMLingua-2", "score": 35.16, "compression": 1.61, "prefill_speedup": 0.83,
             "e2e_speedup": None},
        ],
    },
    # Llama2-7B, 4-task average accuracy (%)
    "ablation_losses": {
        "model": "Llama2-7B",
        "rows": [
            {"setting": "full", "score": 66.82},
            {"setting": "no_rank", "score": 66.27},
            {"setting": "no_rank_mse", "score": 65.93},
        ],
    },
    # the placement study's best balance
    "placement": {"start_layer": 4, "step": 3, "keep_ratio": 0.9},
    # H2O combined with SDTP: only a qualitative statement in the paper's text
    "h2o": {"kv_budget": 0.4, "statement": "SDTP adds almost no further loss on top of H2O at a 40% KV budget"},
}
