"""Held-out validation: response-token LM loss under each scorer at the same keep schedule, per layout."""
from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import SDTPConfig
from .data import response_protect
from ..engine import pruning
from .masked import masked_pruning
from ..scorers.oracle import SaliencyOracle

log = logging.getLogger(__name__)


@torch.no_grad()
def sample_nll(model, scorer, config: SDTPConfig, sample, engine: str):
    """(summed response NLL, response tokens, kept tokens per layer) of one sample under one scorer."""
    dev = next(model.parameters()).device
    ids = torch.tensor([sample.input_ids], device=dev)
    labels = torch.tensor([sample.labels], device=dev)
    n = int((labels[:, 1:] != -100).sum())
    L = model.config.num_hidden_layers
    if scorer is None:
        return float(model(ids, labels=labels).loss) * n, n, [ids.shape[1]] * L
    protect = response_protect(torch.tensor([sample.prompt_len], device=dev), torch.ones_like(ids))
    if isinstance(scorer, str) and scorer == "oracle":  # the saliency of the sample's own response: an upper bound
        scorer = SaliencyOracle.for_labels(model, ids, labels, config)
    if engine == "physical":
        with pruning(model, scorer, config, protect=protect) as st:
            loss = model(ids, labels=labels).loss
        return float(loss) * n, n, list(st.kept_per_layer)
    am = torch.ones_like(ids)
    with masked_pruning(model, scorer, config, am, protect=protect, mode="topk") as st:
        loss = model(ids, attention_mask=am, labels=labels).loss
    return float(loss) * n, n, st.kept_per_layer(L, ids.shape[1])


def bootstrap(nll: np.ndarray, tok: np.ndarray, n_boot: int, seed: int, base: np.ndarray | None = None):
    """95% percentile interval of sum(nll)/sum(tok) (minus the paired base when given) over resampled samples."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(nll), size=(n_boot, len(nll)))
    diff = nll - base if base is not None else nll
    vals = diff[idx].sum(1) / tok[idx].sum(1)
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def validate(model, scorers: dict, config: SDTPConfig, samples, engine: str = "physical", n_boot: int = 2000,
             seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per (layout, scorer): loss, perplexity and 95% bootstrap CIs, the loss increase over dense
    (paired CI), and mean tokens kept per layer. scorers: name -> scorer (None = dense; always included; "oracle":
    the saliency oracle of each sample's own response, an upper bound)."""
    if engine not in ("physical", "masked"):
        raise ValueError(f"engine must be 'physical' or 'masked', got {engine!r}")
    scorers = {"dense": None, **{k: v for k, v in scorers.items() if k != "dense"}}
    rows = []
    for layout in sorted({s.layout for s in samples}):
        group = [s for s in samples if s.layout == layout]
        res = {}
        for name, scorer in scorers.items():
            if hasattr(scorer, "reset"):
                scorer.reset()  # random scorer: the same draws for each layout/engine
            out = [sample_nll(model, scorer, config, s, engine)
                   for s in tqdm(group, desc=f"validate {layout} {name} ({engine})", disable=not progress)]
            res[name] = (np.array([o[0] for o in out]), np.array([o[1] for o in out], dtype=float),
                         np.mean([o[2] for o in out], axis=0))
        base = res["dense"][0]
        for name, (nll, tok, kept) in res.items():
            loss = nll.sum() / tok.sum()
            lo, hi = bootstrap(nll, tok, n_boot, seed)
            dlo, dhi = bootstrap(nll, tok, n_boot, seed, base=base)
            rows.append(dict(layout=layout, scorer=name, engine=engine, n_samples=len(group), n_tokens=int(tok.sum()),
                             loss=float(loss), ppl=float(np.exp(loss)), loss_ci=(lo, hi),
                             delta=float(loss - base.sum() / tok.sum()), delta_ci=(dlo, dhi),
                             kept_per_layer=[float(k) for k in kept],
                             compression=float(kept[0] / np.mean(kept)) if len(kept) else 1.0))
    return rows


def format_rows(rows: list[dict]) -> str:
    """Markdown table of validate() rows."""
    head = "| layout | scorer | engine | loss [95% CI] | ppl | increase over dense [95% CI] | compression |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['scorer']} | {r['engine']} | {r['loss']:.3f} [{r['loss_ci'][0]:.3f}, "
                     f"{r['loss_ci'][1]:.3f}] | {r['ppl']:.2f} | {r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, "
                     f"{r['delta_ci'][1]:+.3f}] | {r['compression']:.2f}x |")
    return "\n".join(lines)
