"""Names -> scorers: the policies by name (`make_scorer`), and what a user types anywhere a scorer is named
(`resolve_scorer`: "auto", "predictor", "hybrid", a policy, a predictor file, a run folder, or several of these
joined by '+', their rank fusion)."""
from __future__ import annotations

import re
from pathlib import Path

from ..config import SDTPConfig
from .attention import WindowAttentionScorer
from .baselines import NormScorer, RandomScorer, RecencyScorer
from .fusion import RankFusion, fusion_parts
from .predictor import load_predictor, shipped_name, shipped_predictors


POLICIES = {"random": RandomScorer, "norm": NormScorer, "recent": RecencyScorer, "attention": WindowAttentionScorer}
# the window-attention scorer's settings in its name: attention[-mean|-max][-w<window>][-k<kernel>][-s<shift>]
# [-h<hops>][-m], e.g. attention-mean-k15, attention-k31-s10, attention-h16, attention-m (-m: memory across stages;
# unnamed settings: WindowAttentionScorer's)
_ATTENTION = re.compile(r"attention(?:-(?P<heads>mean|max))?(?:-w(?P<window>\d+))?(?:-k(?P<kernel>\d+))?"
                        r"(?:-s(?P<shift>\d+))?(?:-h(?P<hops>\d+))?(?P<memory>-m)?")
POLICY_NAMES = f"{sorted(POLICIES)} or attention[-mean|-max][-w<window>][-k<kernel>][-s<shift>][-h<hops>][-m]"  # help, errors


def is_policy(name) -> bool:
    """A name make_scorer knows: one of POLICIES or a window-attention name such as "attention-mean-w64-k15"."""
    return isinstance(name, str) and (name in POLICIES or _ATTENTION.fullmatch(name) is not None)


def make_scorer(scorer):
    """A policy name (POLICY_NAMES), a TokenPredictor or any callable(hidden, stage, positions) -> scores."""
    if isinstance(scorer, str):
        m = _ATTENTION.fullmatch(scorer)
        if m is not None:  # "attention" itself included: the scorer with the settings its name gives
            kw = {k: int(m[k]) for k in ("window", "kernel", "shift", "hops") if m[k]}
            return WindowAttentionScorer(**kw, **({"heads": m["heads"]} if m["heads"] else {}), memory=bool(m["memory"]))
        if scorer not in POLICIES:
            raise ValueError(f"unknown pruning policy {scorer!r}; known: {POLICY_NAMES} (or pass a TokenPredictor)")
        return POLICIES[scorer]()
    if not callable(scorer):
        raise TypeError(f"scorer must be a policy name, a TokenPredictor or a callable, got {type(scorer).__name__}")
    return scorer


def resolve_scorer(spec, model, config: SDTPConfig):
    """(scorer, label) from what a user types: "auto" (the shipped predictor for this model, else the "norm"
    policy), "predictor" / "hybrid" (this model's shipped predictor / hybrid, required), a policy name, a shipped predictor name, a predictor file, or a run folder (a training run's or a
    pipeline run's: its first seed<k>/predictor.safetensors)."""
    parts = fusion_parts(spec)  # "predictor+attention": the better rank of each (scorers.fusion)
    if parts is not None:
        inner = [resolve_scorer(p, model, config) for p in parts]
        return (RankFusion(tuple(make_scorer(s) for s, _ in inner)),
                f"rank fusion (max) of {', '.join(label for _, label in inner)}")
    if spec is None or spec == "auto":
        name = shipped_name(model)
        if name in shipped_predictors():
            return load_predictor(name, model=model, config=config), f"shipped predictor {name}"
        return "norm", f"norm policy (no shipped predictor for {name or 'this model'})"
    if is_policy(spec):
        return spec, f"{spec} policy"
    if spec in ("predictor", "hybrid"):  # this model's shipped predictor / hybrid (window attention as an input)
        name = shipped_name(model, hybrid=spec == "hybrid")
        if name not in shipped_predictors():
            raise FileNotFoundError(f"no shipped {spec} for this model (looked for {name!r}; shipped: "
                                    f"{shipped_predictors()}); give a predictor file or run folder instead")
        return load_predictor(name, model=model, config=config), f"shipped {spec} {name}"
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        found = [path / "predictor.safetensors", *sorted(path.glob("seed*/predictor.safetensors")),
                 *sorted(path.glob("02_training/seed*/predictor.safetensors"))]
        found = [p for p in found if p.is_file()]
        if not found:
            raise FileNotFoundError(f"no predictor in {path}: expected predictor.safetensors, seed<k>/ or "
                                    "02_training/seed<k>/ (a training run or a pipeline run folder)")
        path = found[0]
    return load_predictor(path if path.exists() else spec, model=model, config=config), f"predictor {spec}"
