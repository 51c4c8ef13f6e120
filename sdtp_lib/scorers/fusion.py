"""Two scorers as one, no training: a token scores the better of its rank quantiles under each.

The paper's predictor reads each token's hidden state and not the question, so the question's position does not
move it; window attention follows the question when the question comes last (docs/scorers.md). Ranks, not raw
scores, because the two live on different scales (logits, attention probabilities). With `how="max"` a token that
either scorer ranks high stays high (the union of their choices); with `how="mean"` both must agree.

    RankFusion((predictor, WindowAttentionScorer()))    # "predictor+attention" as a spec's scorer
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


def rank_quantile(scores: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) float32 in [0, 1]: each token's rank among the row's tokens by score (1 = the best, 0 = the worst;
    ties by position, the later first). Tokens that are not alive rank below every alive one."""
    s = scores.float()
    if alive is not None:
        s = s.masked_fill(~alive, float("-inf"))
    T = s.shape[-1]
    return s.argsort(dim=-1, stable=True).argsort(dim=-1).float() / max(T - 1, 1)  # (B, T)


def fusion_parts(name) -> list[str] | None:
    """The scorer names a fusion joins with '+' ("predictor+attention" -> ["predictor", "attention"]); None when
    `name` is not a fusion (no '+', or a path that exists, such as a predictor file whose name holds one)."""
    if not isinstance(name, str) or "+" not in name or Path(name).expanduser().exists():
        return None
    parts = name.split("+")
    if not all(parts):
        raise ValueError(f"scorer {name!r}: a fusion names two or more scorers joined by '+', e.g. predictor+attention")
    return parts


@dataclass
class RankFusion:
    scorers: tuple  # two or more scorers (callables of the interface in sdtp_lib.scorers.base)
    how: str = "max"  # "max": either scorer's choice survives; "mean": their average rank

    def __post_init__(self):
        self.scorers = tuple(self.scorers)
        if len(self.scorers) < 2 or self.how not in ("max", "mean"):
            raise ValueError(f"RankFusion: two or more scorers and how 'max' or 'mean', got {len(self.scorers)} "
                             f"and {self.how!r}")
        self.needs_layer = any(getattr(s, "needs_layer", False) for s in self.scorers)

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None, **layer_kw):
        alive = layer_kw.get("alive")
        ranks = [rank_quantile(s(hidden, stage, positions, **layer_kw) if getattr(s, "needs_layer", False)
                               else s(hidden, stage, positions), alive) for s in self.scorers]  # each (B, T)
        stacked = torch.stack(ranks)  # (n, B, T)
        return stacked.amax(0) if self.how == "max" else stacked.mean(0)

    def flops_per_token(self) -> int:
        """The scorers' FLOPs per token together (the two rank sorts are not counted)."""
        return sum(s.flops_per_token() for s in self.scorers if callable(getattr(s, "flops_per_token", None)))


__all__ = ["RankFusion", "fusion_parts", "rank_quantile"]
