"""The scorer interface, and the base of scorers that wrap another.

A scorer maps the hidden state entering a stage layer to one score per token; higher = keep:

    scorer(hidden (B, T, C), stage: int 0-based, positions (B, T) original positions) -> scores (B, T)

Scorers must not synchronise with the host (no .item(), no Python loops over tokens). A scorer with
`needs_layer = True` also gets the stage's decoder layer and its rotary embeddings of the current tokens:
scorer(hidden, stage, positions, layer=..., position_embeddings=(cos, sin), eligible=..., [alive=...]):
`eligible` (B, T) bool marks the tokens that are not protected (None: all), and the masked simulation also passes
`alive` (B, T) bool, its keep mask (the physical engine has removed the others). A scorer may expose
`flops_per_token()` (the engine adds it to the pruned prefill's FLOPs).
"""
from __future__ import annotations


class ScorerWrapper:
    """Base of scorers that wrap another (to time it, to record its scores): the engine reads `needs_layer` and
    `flops_per_token` off the scorer it is given, so a wrapper shows the inner scorer's. Subclasses call
    `self.inner(hidden, stage, positions, **layer_kw)` in their __call__."""

    def __init__(self, inner):
        self.inner = inner
        self.needs_layer = getattr(inner, "needs_layer", False)
        self.flops_per_token = getattr(inner, "flops_per_token", None)  # None: nothing for the engine to count
