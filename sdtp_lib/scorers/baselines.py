"""Baselines that need no training: random, hidden-state norm, recency. Each is a few lines; they prove the
plumbing and set the floor a learned scorer must beat (the interface: `sdtp_lib.scorers.base`)."""
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
