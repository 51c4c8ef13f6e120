"""Whole spans: keep a line, a sentence or a key with its value together instead of its best tokens.

A span ends at a token whose text holds one of BOUNDARY_CHARS (".", ",", ";", "!", "?", a newline) or at a special
token, and is cut into pieces of at most `max_len` tokens. With spans on (SDTPConfig.span_max > 0, "+W<n>" in a
variant) a stage ranks the spans by their best free token's score (ties: the mean, then the earlier span) and keeps
them whole, best first, until the stage's budget; only the last span taken can be cut, keeping its best tokens.
The engine (sdtp_lib.engine) and the masked simulation (sdtp_lib.training.masked) share span_order().
"""
from __future__ import annotations

import torch

BOUNDARY_CHARS = ".,;!?\n"


class SpanRule:
    """Which vocabulary ids end a span: `SpanRule.from_tokenizer(tok)`, or `SpanRule(ids, vocab_size)` in tests."""

    def __init__(self, boundary_ids, vocab_size: int):
        ids = torch.as_tensor(list(boundary_ids), dtype=torch.long)
        if vocab_size < 1 or (ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < vocab_size)):
            raise ValueError(f"SpanRule: boundary ids must lie in [0, {vocab_size}) (the vocabulary size)")
        self.table = torch.zeros(vocab_size, dtype=torch.bool)  # (V,) True: the token ends a span
        self.table[ids] = True
        self._on = {self.table.device: self.table}  # the table per device, copied there once

    @classmethod
    def from_tokenizer(cls, tok, chars: str = BOUNDARY_CHARS) -> "SpanRule":
        """Boundaries: every id whose decoded text holds one of `chars`, and the special tokens."""
        key = (getattr(tok, "name_or_path", ""), len(tok), chars)
        if key not in _CACHE:
            texts = tok.batch_decode([[i] for i in range(len(tok))])
            ids = [i for i, t in enumerate(texts) if any(c in t for c in chars)]
            _CACHE[key] = cls(sorted(set(ids) | set(tok.all_special_ids)), len(tok))
        return _CACHE[key]

    def span_ids(self, input_ids: torch.Tensor, max_len: int) -> torch.Tensor:
        """(B, T) span index of each token of input_ids (B, T), non-decreasing from 0 along each row."""
        if max_len < 1:
            raise ValueError(f"span_ids: max_len must be >= 1, got {max_len}")
        if int(input_ids.max()) >= self.table.numel():
            raise ValueError(f"span_ids: token id {int(input_ids.max())} is outside the rule's vocabulary "
                             f"({self.table.numel()} ids): build the SpanRule from this model's tokenizer")
        B, T = input_ids.shape
        dev = input_ids.device
        table = self._on.get(dev)
        if table is None:
            table = self._on[dev] = self.table.to(dev)
        ends = table[input_ids]  # (B, T) the token ends its span
        start = torch.ones_like(ends)
        start[:, 1:] = ends[:, :-1]  # a span starts after a boundary (and at 0)
        pos = torch.arange(T, device=input_ids.device).expand(B, T)
        first = torch.where(start, pos, torch.zeros_like(pos)).cummax(dim=1).values  # (B, T) where my span starts
        return ((pos - first) % max_len == 0).long().cumsum(dim=1) - 1  # a piece starts every max_len tokens


_CACHE: dict = {}


def span_rule(config, tok) -> SpanRule | None:
    """The rule a config needs (None when it keeps tokens, not spans): what the evaluations pass to pruning()."""
    return SpanRule.from_tokenizer(tok) if config is not None and config.span_max else None


def span_order(score: torch.Tensor, forced: torch.Tensor, spans: torch.Tensor, num_spans: int,
               alive: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) token indices, most wanted first: the alive forced tokens, then the free ones span by span (spans
    ranked by their best free token's score, then its mean score, then the earlier span), within a span by score;
    tokens that are not alive come last. score, forced, spans (B, T); span ids in [0, num_spans)."""
    s = score.float()
    free = ~forced if alive is None else alive & ~forced
    B, T = s.shape
    smax = s.new_full((B, num_spans), float("-inf")).scatter_reduce(
        1, spans, s.masked_fill(~free, float("-inf")), "amax")  # (B, S) best free token per span
    ssum = s.new_zeros(B, num_spans).scatter_add(1, spans, s.masked_fill(~free, 0.0))
    smean = ssum / s.new_zeros(B, num_spans).scatter_add(1, spans, free.float()).clamp(min=1.0)
    group = free.long() + 2 * (forced if alive is None else forced & alive).long()  # 2 forced, 1 free, 0 gone
    order = torch.arange(T, device=s.device).expand(B, T)
    for key, desc in ((s, True), (spans, False), (smean.gather(1, spans), True), (smax.gather(1, spans), True),
                      (group, True)):  # stable sorts, the last key decides first
        order = order.gather(1, key.gather(1, order).sort(dim=-1, descending=desc, stable=True).indices)
    return order


__all__ = ["SpanRule", "span_rule", "span_order", "BOUNDARY_CHARS"]
