"""The evaluations' scorer syntax, shared by the synthetic suite and LongBench: "dense" or
"<variant>[@keep_ratio]:<scorer>", e.g. "sdtp:norm", "sdtp-low:auto", "sdtp@1.0:random", "sdtp:runs/x/seed0"."""
from __future__ import annotations

import re

VARIANTS = {"sdtp": 10, "sdtp-low": 5}  # variant -> number of stages (SDTP / SDTP-low)
ORACLE = "oracle"  # the stage-1 saliency of the gold answer: an upper bound (sdtp_lib.scorers.oracle.SaliencyOracle)


def parse_scorer(spec: str) -> tuple[str, float | None, str | None]:
    """(variant, keep_ratio or None, scorer) of a spec; ("dense", None, None) for "dense". Scorer: a policy
    ("norm", "attention", ...), "auto", "predictor" / "hybrid" (the shipped ones), "oracle", or a predictor path /
    run folder."""
    if spec == "dense":
        return "dense", None, None
    head, sep, scorer = spec.partition(":")
    variant, _, ratio = head.partition("@")
    try:
        r = float(ratio) if ratio else None
    except ValueError:
        r = -1.0
    if variant not in VARIANTS or not sep or not scorer or (r is not None and not 0.0 < r <= 1.0):
        raise ValueError(f"scorer {spec!r}: expected 'dense' or '<variant>[@keep_ratio]:<scorer>' with variant in "
                         f"{sorted(VARIANTS)}, keep_ratio in (0, 1] and scorer a policy, 'auto', 'predictor' or a path")
    return variant, r, scorer


def check_scorer_name(name: str, model, spec: str) -> None:
    """Refuse, before anything runs, what the scorer part of a spec cannot mean here: the oracle (it needs each
    sample's answer: the synthetic suite and LongBench build it per sample, lm-eval does not) and "predictor"
    without a shipped predictor for `model` (not checked when model is None)."""
    from ..scorers.predictor import shipped_name, shipped_predictors
    if name == ORACLE:
        raise ValueError(f"scorer {spec!r}: the saliency oracle needs each sample's answer; the synthetic suite and "
                         "LongBench build it per sample (sdtp_lib.scorers.SaliencyOracle.for_answer), this evaluation does not")
    if name in ("predictor", "hybrid") and model is not None:
        if shipped_name(model, hybrid=name == "hybrid") not in shipped_predictors():
            raise ValueError(f"scorer {spec!r}: no shipped {name} for model {shipped_name(model) or '?'} (shipped: "
                             f"{shipped_predictors()}); give a predictor file or run folder instead")


def make_scorer_for(name: str, model, config, spec: str):
    """(scorer, label) for the scorer part of a spec; "predictor" demands a shipped predictor for this model."""
    from ..scorers.registry import resolve_scorer
    check_scorer_name(name, model, spec)
    return resolve_scorer(name, model, config)


def file_stem(spec: str) -> str:
    """A scorer spec as a portable file or folder name: "sdtp:norm" -> "sdtp_norm", "sdtp:/runs/x" -> "sdtp__runs_x"
    (no ':' or '/', which Windows or paths cannot hold)."""
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", spec)
