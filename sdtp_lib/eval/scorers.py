"""The evaluations' scorer syntax, shared by the synthetic suite, LongBench and lm-eval: "dense" or
"<variant>:<scorer>", the variant as sdtp_lib.config.parse_variant reads it ("sdtp", "sdtp-low", with "@<r>" or
"@<compression>x", "+L<first stage layer>" and "+R<newest fraction always kept>"), e.g. "sdtp:norm",
"sdtp-low:auto", "sdtp@1.0:random", "sdtp@0.8+L8:attention", "sdtp@2.04x+R0.02:attention", "sdtp:runs/x/seed0"."""
from __future__ import annotations

import re

from ..config import VARIANT_SYNTAX, Variant, parse_variant
from ..config import VARIANTS as _ALL

VARIANTS = {k: v for k, v in _ALL.items() if v is not None}  # pruned variant -> number of stages (SDTP / SDTP-low)
ORACLE = "oracle"  # the stage-1 saliency of the gold answer: an upper bound (sdtp_lib.scorers.oracle.SaliencyOracle)


def parse_spec(spec: str) -> tuple[Variant, str | None]:
    """(variant, scorer) of a spec; (Variant("dense"), None) for "dense". Scorer: a policy ("norm", "attention",
    ...), "auto", "predictor" / "hybrid" (the shipped ones), "oracle", or a predictor path / run folder."""
    if spec == "dense":
        return Variant("dense"), None
    head, sep, scorer = str(spec).partition(":")
    try:
        variant = parse_variant(head)
    except ValueError as e:
        variant, why = None, f" ({e})"
    else:
        why = ""
    if variant is None or variant.stages is None or not sep or not scorer:
        raise ValueError(f"scorer {spec!r}: expected 'dense' or '<variant>:<scorer>' with variant "
                         f"{VARIANT_SYNTAX.replace('dense|', '')} and scorer a policy, 'auto', 'predictor' or a "
                         f"path{why}")
    return variant, scorer


def parse_scorer(spec: str) -> tuple[str, float | None, str | None]:
    """(variant name, keep ratio or None, scorer) of a spec (parse_spec, flattened); ("dense", None, None)."""
    variant, scorer = parse_spec(spec)
    return variant.name, variant.keep_ratio, scorer


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
