"""Baseline token scorers. A scorer maps the hidden state entering a stage layer to one score per token.

Interface: scorer(hidden (B, T, C), stage: int 0-based, positions (B, T) original positions) -> scores (B, T);
higher = keep. Scorers must not synchronise with the host (no .item(), no Python loops over tokens).
A scorer with `needs_layer = True` also gets the stage's decoder layer and its rotary embeddings of the current
tokens: scorer(hidden, stage, positions, layer=..., position_embeddings=(cos, sin)) (the physical engine only).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


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


@dataclass
class WindowAttentionScorer:
    """Question-aware: every token scored by the attention it receives, at the stage layer, from the last `window`
    prompt tokens (an observation window that holds the question when it comes last, as in SnapKV / GemFilter),
    averaged over the window's queries and all heads, then max-pooled over `kernel` neighbours so a fact's whole
    span survives with its most-attended token. Only the window's queries are projected (keys: all current
    tokens, through the layer's own input norm, k_proj and rotary), never the full T x T matrix."""
    window: int = 32
    kernel: int = 7  # odd; 1 = no smoothing
    needs_layer = True

    def __post_init__(self):
        if self.window < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"WindowAttentionScorer: window >= 1 and an odd kernel >= 1, got {self.window}, "
                             f"{self.kernel}")

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None, *, layer=None,
                 position_embeddings=None) -> torch.Tensor:
        if layer is None or position_embeddings is None:
            raise TypeError("WindowAttentionScorer needs the stage layer and its rotary embeddings: it runs inside "
                            "sdtp_lib.pruning (the physical engine), not the masked simulation")
        attn = layer.self_attn
        self._dims = (hidden.shape[-1], attn.k_proj.out_features, attn.q_proj.out_features)  # C, KVH*D, H*D
        probs = window_attention(layer, hidden, position_embeddings, self.window)  # (B, T)
        if self.kernel > 1:
            probs = F.max_pool1d(probs[:, None], self.kernel, stride=1, padding=self.kernel // 2)[:, 0]
        return probs


    def flops_per_token(self) -> int:
        """FLOPs per token entering a stage (the engine adds them to the pruned prefill's): its key projection
        and its scores against the window's queries (the window's own query projection is not counted)."""
        C, kv, q = getattr(self, "_dims", (0, 0, 0))
        return 2 * C * kv + 2 * q * self.window


def window_attention(layer, hidden: torch.Tensor, position_embeddings, window: int) -> torch.Tensor:
    """(B, T) float32: the attention each of the T tokens receives from the last `window` queries of the layer's
    self-attention (softmax over the causal keys of each query), averaged over those queries and all heads."""
    attn = layer.self_attn
    B, T, _ = hidden.shape
    w, D = min(window, T), attn.head_dim
    x = layer.input_layernorm(hidden)  # (B, T, C)
    q = attn.q_proj(x[:, -w:]).view(B, w, -1, D).transpose(1, 2)  # (B, H, w, D)
    k = attn.k_proj(x).view(B, T, -1, D).transpose(1, 2)  # (B, KVH, T, D)
    cos, sin = position_embeddings  # (B, T, D) of the current tokens
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the family's own rotary
    q, _ = rope(q, q, cos[:, -w:], sin[:, -w:])
    _, k = rope(k, k, cos, sin)
    H, KVH = q.shape[1], k.shape[1]
    q = q.reshape(B, KVH, (H // KVH) * w, D)  # query heads grouped under their KV head, (B, KVH, G*w, D)
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scaling  # (B, KVH, G*w, T)
    qpos = torch.arange(T - w, T, device=hidden.device).repeat(H // KVH)  # (G*w,) each query's index
    s = s.masked_fill(torch.arange(T, device=hidden.device) > qpos[:, None], float("-inf"))  # causal
    return s.softmax(-1).mean(dim=(1, 2))  # (B, T)


@dataclass
class SaliencyOracle:
    """An upper bound, not a method: it needs the answer. Each stage scores the current tokens by the stage-1
    saliency of the answer's loss at that stage's layer (`saliency.token_saliency` of prompt + answer on the dense
    model), read at their original positions; |grad x activation| ("abs", the predictor's default training target)
    or its negation ("neg": the first-order loss increase when the token is removed)."""
    saliency: dict  # stage index -> (B, T_prompt) float32 saliency of the prompt tokens at that stage's layer
    target: str = "abs"

    def __post_init__(self):
        if self.target not in ("abs", "neg"):
            raise ValueError(f"SaliencyOracle: target must be 'abs' or 'neg', got {self.target!r}")

    @classmethod
    def for_answer(cls, model, prompt_ids: torch.Tensor, answer_ids: torch.Tensor, config, target: str = "abs"):
        """The oracle of one prompt (1, T) with the answer tokens (1, A) that follow it (call outside pruning())."""
        from .saliency import token_saliency
        T = prompt_ids.shape[-1]
        dev = next(model.parameters()).device
        ids = torch.cat([prompt_ids, answer_ids], dim=-1).to(dev)  # (1, T + A)
        labels = ids.clone()
        labels[:, :T] = -100  # the loss of the answer only
        sal = token_saliency(model, ids, labels, config.stage_layers)
        return cls({s: sal[l][:, :T] for s, l in enumerate(config.stage_layers)}, target)

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        sal = self.saliency[stage].to(hidden.device)  # (B, T_prompt)
        if positions is not None:
            sal = sal.gather(1, positions)  # (B, T_cur)
        return sal.abs() if self.target == "abs" else -sal


class ScorerWrapper:
    """Base of scorers that wrap another (to time it, to record its scores): the engine reads `needs_layer` and
    `flops_per_token` off the scorer it is given, so a wrapper shows the inner scorer's. Subclasses call
    `self.inner(hidden, stage, positions, **layer_kw)` in their __call__."""

    def __init__(self, inner):
        self.inner = inner
        self.needs_layer = getattr(inner, "needs_layer", False)
        self.flops_per_token = getattr(inner, "flops_per_token", None)  # None: nothing for the engine to count


POLICIES = {"random": RandomScorer, "norm": NormScorer, "recent": RecencyScorer, "attention": WindowAttentionScorer}


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
