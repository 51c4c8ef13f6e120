"""Baseline token scorers. A scorer maps the hidden state entering a stage layer to one score per token.

Interface: scorer(hidden (B, T, C), stage: int 0-based, positions (B, T) original positions) -> scores (B, T);
higher = keep. Scorers must not synchronise with the host (no .item(), no Python loops over tokens).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RandomScorer:
    """Uniform random scores: the floor any learned scorer must beat."""
    seed: int = 0
    _gens: dict = field(default_factory=dict, repr=False)

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        g = self._gens.get(hidden.device)
        if g is None:
            g = self._gens[hidden.device] = torch.Generator(device=hidden.device).manual_seed(self.seed)
        return torch.rand(hidden.shape[:2], device=hidden.device, generator=g)  # (B, T)

    def reset(self) -> None:
        self._gens.clear()


@dataclass
class NormScorer:
    """L2 norm of the hidden state: tokens with large activations are kept."""

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        return hidden.float().norm(dim=-1)  # (B, T)


@dataclass
class RecencyScorer:
    """Position: the most recent tokens are kept (a sliding-window baseline)."""

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        B, T = hidden.shape[:2]
        pos = positions if positions is not None else torch.arange(T, device=hidden.device).expand(B, T)
        return pos.float()  # (B, T)


POLICIES = {"random": RandomScorer, "norm": NormScorer, "recent": RecencyScorer}


def make_scorer(scorer):
    """A name from POLICIES, a TokenPredictor or any callable(hidden, stage, positions) -> scores."""
    if isinstance(scorer, str):
        if scorer not in POLICIES:
            raise ValueError(f"unknown pruning policy {scorer!r}; known: {sorted(POLICIES)} "
                             "(or pass a TokenPredictor)")
        return POLICIES[scorer]()
    if not callable(scorer):
        raise TypeError(f"scorer must be a policy name, a TokenPredictor or a callable, got {type(scorer).__name__}")
    return scorer
