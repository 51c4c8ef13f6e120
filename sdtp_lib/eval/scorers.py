"""The evaluations' scorer syntax, shared by the synthetic suite, LongBench and lm-eval: "dense" or
"<variant>:<scorer>", the variant as sdtp_lib.config.parse_variant reads it ("sdtp", "sdtp-low", with "@<r>" or
"@<compression>x", "+L<first stage layer>", "+R<newest fraction always kept>", "+W<whole spans of at most n tokens>",
"+M<fewest tokens a stage keeps>", "+S<stages>" and "+H<H2O KV budget>"),
e.g. "sdtp:norm", "sdtp-low:auto", "sdtp@1.0:random", "sdtp@0.8+L8:attention", "sdtp@2.04x+R0.02:attention",
"sdtp:runs/x/seed0", "dense+H0.4", "sdtp+H0.4:attention", "sdtp@0.8+R0.02+W96:predictor+attention" (after the colon,
scorers joined by '+' are fused by rank: sdtp_lib.scorers.fusion)."""
from __future__ import annotations

import re

from ..config import VARIANT_SYNTAX, Variant, parse_variant
from ..config import VARIANTS as _ALL

VARIANTS = {k: v for k, v in _ALL.items() if v is not None}  # pruned variant -> number of stages (SDTP / SDTP-low)
ORACLE = "oracle"  # the stage-1 saliency of the gold answer: an upper bound (sdtp_lib.scorers.oracle.SaliencyOracle)


def parse_spec(spec: str) -> tuple[Variant, str | None]:
    """(variant, scorer) of a spec; (Variant("dense"), None) for "dense" (and "dense+H<budget>": dense decoding with
    H2O's KV budget, Variant.kv_budget). Scorer: a policy ("norm", "attention", ...), "auto", "predictor" /
    "hybrid" (the shipped ones), "oracle", or a predictor path / run folder."""
    if spec == "dense":
        return Variant("dense"), None
    head, sep, scorer = str(spec).partition(":")
    try:
        variant = parse_variant(head)
    except ValueError as e:
        variant, why = None, f" ({e})"
    else:
        why = ""
    if variant is not None and variant.stages is None and not sep:  # dense with an H2O budget
        return variant, None
    if variant is None or variant.stages is None or not sep or not scorer:
        raise ValueError(f"scorer {spec!r}: expected 'dense' or '<variant>:<scorer>' with variant "
                         f"{VARIANT_SYNTAX.replace('dense|', '')} and scorer a policy, 'auto', 'predictor' or a "
                         f"path; dense takes only +H<H2O KV budget> and no scorer{why}")
    return variant, scorer


def with_budget(spec: str, kv_budget: float) -> str:
    """The spec decoded with H2O at kv_budget ("sdtp:norm", 0.4 -> "sdtp+H0.4:norm"); a spec with its own budget is
    refused (the command lines' --kv-budget adds one to every spec)."""
    from ..speed.h2o import check_budget
    kv_budget = check_budget(kv_budget)
    variant, scorer = parse_spec(spec)
    if variant.kv_budget is not None:
        raise ValueError(f"scorer {spec!r} already has an H2O budget; --kv-budget adds one to specs without")
    head, _, _ = str(spec).partition(":")
    return f"{head}+H{kv_budget:g}" + (f":{scorer}" if scorer is not None else "")


def with_budgets(specs, kv_budget: float | None) -> list[str]:
    """Every spec, then each with +H<kv_budget> (side by side); specs unchanged when kv_budget is None."""
    specs = list(specs)
    return specs if kv_budget is None else specs + [with_budget(s, kv_budget) for s in specs]


def parse_scorer(spec: str) -> tuple[str, float | None, str | None]:
    """(variant name, keep ratio or None, scorer) of a spec (parse_spec, flattened); ("dense", None, None)."""
    variant, scorer = parse_spec(spec)
    return variant.name, variant.keep_ratio, scorer


def check_scorer_name(name: str, model, spec: str) -> None:
    """Refuse, before anything runs, what the scorer part of a spec cannot mean here: the oracle (it needs each
    sample's answer: the synthetic suite and LongBench build it per sample, lm-eval does not) and "predictor"
    without a shipped predictor for `model` (not checked when model is None)."""
    from ..scorers.fusion import fusion_parts
    from ..scorers.predictor import shipped_name, shipped_predictors
    parts = fusion_parts(name)
    if parts is not None:  # a fusion (scorers.fusion): each of its scorers
        for part in parts:
            check_scorer_name(part, model, spec)
        return
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


def resolve_spec(spec: str, model, tok, keep_ratio: float = 0.9):
    """(scorer, label, config, spans) of a pruned spec, what `pruning(model, scorer, config, spans=spans)` takes:
    e.g. "sdtp@0.8+R0.02+W96:hybrid" (spans: the tokenizer's SpanRule when the variant keeps whole spans, else
    None). keep_ratio: the r of a spec without its own. Dense and H2O specs are refused (no pruned prefill to set up;
    H2O's budget belongs to the decode loop), and so is the oracle (it needs each sample's answer)."""
    from ..spans import span_rule
    variant, name = parse_spec(spec)
    if variant.stages is None:
        raise ValueError(f"scorer {spec!r}: dense prunes nothing; give '<variant>:<scorer>', e.g. sdtp:attention")
    if variant.kv_budget is not None:
        raise ValueError(f"scorer {spec!r}: an H2O budget is the decode loop's setting (--kv-budget, kv_budget=), "
                         "not the prefill's")
    config = variant.config(model, keep_ratio)
    scorer, label = make_scorer_for(name, model, config, spec)
    return scorer, label, config, span_rule(config, tok)


def file_stem(spec: str) -> str:
    """A scorer spec as a portable file or folder name: "sdtp:norm" -> "sdtp_norm", "sdtp:/runs/x" -> "sdtp__runs_x"
    (no ':' or '/', which Windows or paths cannot hold)."""
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", spec)
