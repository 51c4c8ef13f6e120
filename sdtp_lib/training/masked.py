"""Pruning simulated by attention masking (DynamicViT style), for predictor training and for checking the engine.

No token is removed: from each stage layer l_s on (l_s included, as in the engine) a cumulative keep mask M_s
(B, T) multiplies the attention weights over keys, so later tokens cannot see a dropped token (a token still
attends to itself, which keeps the softmax finite). Masks come from
- mode="gumbel": hard Gumbel-softmax over the predictor's 2 logits with straight-through gradients (DynamicViT;
  the kept fraction is only steered by a keep-ratio loss);
- mode="st_topk": straight-through Gumbel top-k (training default): the hard mask is the engine's rule applied
  to Gumbel-perturbed scores, so every stage keeps exactly its inference budget; gradients flow through
  sigmoid((score - threshold) / tau) around the stage's k-th score;
- mode="topk": the engine's own rule (forced tokens + top-(k - forced) scores among the survivors), so the
  simulation of a kept token's computation equals physical removal.
Layer-reading scorers (the window attention, the hybrid predictor) get the stage layer, its rotary embeddings, the
keep mask in force (`alive`) and the unprotected tokens (`eligible`), so they see what the engine shows them.
The attention function is registered with transformers' AttentionInterface as "sdtp_masked"; the model's
attention implementation is switched to it inside the block and restored on exit.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import SDTPConfig
from ..engine import PruningError, _check_model, check_spans, forced_mask
from ..spans import span_order
from ..scorers.registry import make_scorer

ATTN_NAME = "sdtp_masked"
_STATE: "MaskState | None" = None  # the active simulation (one at a time)


@dataclass
class MaskState:
    """Filled in during one forward: per stage the predictor logits/scores and the cumulative keep mask."""
    logits: list = field(default_factory=list)  # per stage (B, T, 2) (predictor only)
    scores: list = field(default_factory=list)  # per stage (B, T)
    masks: list = field(default_factory=list)  # per stage (B, T) cumulative keep mask (float, 1 = kept)
    layer_mask: dict = field(default_factory=dict)  # layer -> (B, T) mask in force at that layer

    def kept_per_layer(self, num_layers: int, T: int) -> list[float]:
        """Mean number of kept tokens per layer (over the batch)."""
        return [float(self.layer_mask[l].sum(-1).mean()) if l in self.layer_mask else float(T)
                for l in range(num_layers)]


def masked_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention whose weights over keys are multiplied by the layer's keep mask (softmax_with_policy)."""
    from transformers.integrations.sdpa_attention import repeat_kv
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)  # (B, H, S, hd)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    s = torch.matmul(query, key.transpose(2, 3)).float() * scaling  # (B, H, T, S)
    if attention_mask is not None:
        s = s + attention_mask[:, :, :, : key.shape[-2]].float()
    keep = _STATE.layer_mask.get(module.layer_idx) if _STATE is not None else None
    if keep is None:
        p = s.softmax(-1)
    else:
        T, S = s.shape[-2:]
        eye = torch.eye(T, S, device=s.device, dtype=s.dtype)
        policy = keep[:, None, None, :].to(s.dtype)  # (B, 1, 1, S)
        policy = policy + (1 - policy) * eye  # a query always sees itself
        e = (s - s.amax(-1, keepdim=True)).exp() * policy
        p = e / e.sum(-1, keepdim=True)
    p = F.dropout(p, p=dropout, training=module.training)
    out = torch.matmul(p.to(value.dtype), value)  # (B, H, T, hd)
    return out.transpose(1, 2).contiguous(), p


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    AttentionInterface.register(ATTN_NAME, masked_attention)
    AttentionMaskInterface.register(ATTN_NAME, eager_mask)


def stage_budget(config: SDTPConfig, stage: int, lengths: torch.Tensor, n_forced: torch.Tensor) -> torch.Tensor:
    """(B,) tokens kept after stage `stage` (0-based): ceil(r**(s+1) * T_b), never below min_keep or the forced
    count (nor above T_b)."""
    k = torch.ceil(config.keep_ratio ** (stage + 1) * lengths.double() - 1e-9).long()  # float64: as the engine
    k = k.clamp(min=config.min_keep)  # the floor (SDTPConfig.keep_count)
    return torch.maximum(k, n_forced).clamp(max=lengths)


@contextlib.contextmanager
def masked_pruning(model, scorer, config: SDTPConfig, attention_mask: torch.Tensor, protect=None,
                   mode: str = "gumbel", tau: float = 1.0, spans=None, input_ids: torch.Tensor | None = None):
    """Simulate pruning by masking inside the block. `attention_mask` (B, T): 1 on real tokens (right padding).

    Yields the MaskState the forward fills in. mode: "st_topk" or "gumbel" (training; need a TokenPredictor)
    or "topk" (deterministic, any scorer). With whole spans (config.span_max > 0; mode "topk" only) `spans` is the
    SpanRule and `input_ids` (B, T) the tokens it reads, as pruning(..., spans=) does.
    """
    global _STATE
    if mode not in ("gumbel", "st_topk", "topk"):
        raise ValueError(f"masked_pruning: mode must be 'st_topk', 'gumbel' or 'topk', got {mode!r}")
    _check_model(model, config)
    check_spans(config, spans)
    span_ids = None
    if config.span_max:
        if mode != "topk" or input_ids is None:
            raise ValueError("masked_pruning with whole spans (span_max > 0) runs mode='topk' and needs input_ids")
        span_ids = spans.span_ids(input_ids, config.span_max)  # (B, T)
    scorer = make_scorer(scorer)
    if mode != "topk" and not hasattr(scorer, "logits"):
        raise ValueError(f"masked_pruning(mode={mode!r}) needs a TokenPredictor (2 logits per token)")
    if _STATE is not None:
        raise PruningError("a masked_pruning() block is already active; nesting is not supported")
    _register()
    state = MaskState()
    am = attention_mask.bool()
    forced = forced_mask(config, am.long(), protect) & am
    lengths, n_forced = am.sum(-1), forced.sum(-1)
    layers = model.get_decoder().layers
    stage_of = {l: s for s, l in enumerate(config.stage_layers)}
    pos = torch.arange(am.shape[1], device=am.device).expand_as(am)
    reads_layer = getattr(scorer, "needs_layer", False)  # window attention, the hybrid predictor
    eligible = am & ~protect.bool() if protect is not None else am  # window queries: present, unprotected tokens

    def pre_hook(l):
        def hook(module, args, kwargs):
            s = stage_of.get(l)
            if s is not None:
                hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, C)
                prev = state.masks[-1] if state.masks else am.float()
                kw = dict(layer=layers[l], position_embeddings=kwargs["position_embeddings"], alive=prev.detach() > 0,
                          eligible=eligible) if reads_layer else {}
                if mode == "topk":
                    score = scorer(hidden, s, pos, **kw).float()  # (B, T)
                    state.scores.append(score)
                    budget = stage_budget(config, s, lengths, n_forced)
                    mask = _topk_mask(score, prev.bool(), forced, budget, span_ids).float()
                else:
                    lg = scorer.logits(hidden, s, **kw).float()  # (B, T, 2)
                    state.logits.append(lg)
                    state.scores.append(lg[..., 0] - lg[..., 1])
                    if mode == "gumbel":
                        keep = F.gumbel_softmax(lg, tau=tau, hard=True)[..., 0]  # straight-through (B, T)
                    else:
                        keep = _st_topk(state.scores[-1], prev.bool(), forced,
                                        stage_budget(config, s, lengths, n_forced), tau)
                    keep = torch.where(forced, torch.ones_like(keep), keep)
                    mask = prev * keep
                state.masks.append(mask)
            if state.masks:
                state.layer_mask[l] = state.masks[-1]
            return args, kwargs
        return hook

    hooks = [layers[l].register_forward_pre_hook(pre_hook(l), with_kwargs=True)
             for l in range(config.stage_layers[0], len(layers))]
    old_attn = model.config._attn_implementation
    model.config._attn_implementation = ATTN_NAME
    _STATE = state
    try:
        yield state
    finally:
        _STATE = None
        model.config._attn_implementation = old_attn
        for h in hooks:
            h.remove()


def _st_topk(score, alive, forced, k, tau):
    """Straight-through Gumbel top-k (B, T): value = top-k of score + Gumbel noise (the engine's rule), gradient
    = that of sigmoid((noisy score - threshold) / tau), threshold halfway between the k-th and (k+1)-th."""
    u = torch.rand_like(score).clamp(1e-9, 1 - 1e-9)
    noisy = score + tau * -torch.log(-torch.log(u))  # Gumbel perturbation: sampling without replacement
    hard = _topk_mask(noisy.detach(), alive, forced, k)
    free = alive & ~forced
    lo = noisy.detach().masked_fill(~(hard & free), float("inf")).amin(-1, keepdim=True)  # weakest kept
    hi = noisy.detach().masked_fill(~(~hard & free), float("-inf")).amax(-1, keepdim=True)  # strongest dropped
    thr = torch.where(torch.isfinite(lo) & torch.isfinite(hi), (lo + hi) / 2, torch.where(torch.isfinite(lo), lo, hi))
    soft = torch.sigmoid((noisy - thr.nan_to_num(0.0)) / tau)
    return hard.float() + (soft - soft.detach())  # value exactly 0/1, gradient of soft


def _topk_mask(score, alive, forced, k, spans=None):
    """(B, T) bool: among `alive` tokens, forced ones plus the top-(k_b - forced) by score; k (B,) may vary. With
    span ids (B, T), the engine's whole-span order instead (sdtp_lib.spans.span_order)."""
    if spans is not None:
        order = span_order(score, forced, spans, score.shape[1], alive=alive)
    else:
        s = score.masked_fill(~alive, float("-inf")).masked_fill(forced & alive, float("inf"))
        order = s.argsort(dim=-1, descending=True)  # (B, T)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < k[:, None]) & alive


__all__ = ["masked_pruning", "masked_attention", "MaskState", "forced_mask", "stage_budget"]
