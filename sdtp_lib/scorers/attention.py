"""Window attention: a question-aware scorer with no training (SnapKV-style, from the window's queries only).

Every token is scored by the attention it receives at the stage layer from the last `window` prompt tokens, pooled
over heads and max-smoothed over neighbours so a fact's span survives with its most-attended token.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..ops import FusedRMSNorm, is_rmsnorm, rms_norm


TIE_BREAK = 1e-3  # weight of a token's own attention after max-pooling (orders the tokens of one span)


@dataclass
class WindowAttentionScorer:
    """Question-aware: every token scored by the attention it receives, at the stage layer, from the last `window`
    prompt tokens (an observation window that holds the question when it comes last, as in SnapKV / GemFilter),
    averaged over the window's queries, then the heads' maximum taken (one head that finds it counts; or their mean:
    heads="mean"), then max-pooled over
    `kernel` neighbours so a fact's whole span survives with its most-attended token (ties broken by each token's
    own attention). Only the window's queries are projected (keys: all current tokens, through the layer's own
    input norm, k_proj and rotary), never the full T x T matrix.

    The engine passes `eligible` (not protected: a protected response is never the window); the masked simulation
    also passes `alive` (its keep mask), so both see the same tokens."""
    window: int = 32
    kernel: int = 31  # odd; 1 = no smoothing
    heads: str = "max"  # pool the heads' window-mean attention by "max" or "mean"
    shift: int = 0  # 0 <= shift <= kernel // 2: the pooling window moved back by `shift` tokens, so a token takes
    # the max of [i - kernel//2 - shift, i + kernel//2 - shift]: a score spreads further forward than back (a
    # value follows its key; a fact's tail follows the token the question matched)
    # max over heads with kernel 31 kept the most of dense on the synthetic suite (n = 10: 81% / 92% question first
    # / last, against 81% / 82% for the mean with kernel 15; n = 5: 57% / 75% with kernel 7): docs/scorers.md
    hops: int = 0  # a second hop: the `hops` tokens the window attends to most (outside the window and the first
    # SINK present tokens; with the question first, the question) query every token without the causal mask, and
    # their attention is added to the window's (hop_attention). 0: the window alone
    memory: bool = False  # a token scores at least what it scored at the earlier stages of the same prefill (each
    # stage's attention normalised to sum 1 over the present tokens first): a span that the early layers' retrieval
    # found is not dropped when later layers look elsewhere. The scorer remembers within one forward (reset at stage 0)
    needs_layer = True
    _memory: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)  # (B, T) by position

    def __post_init__(self):
        if self.window < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"WindowAttentionScorer: window >= 1 and an odd kernel >= 1, got {self.window}, "
                             f"{self.kernel}")
        if self.heads not in ("mean", "max"):
            raise ValueError(f"WindowAttentionScorer: heads must be 'mean' or 'max', got {self.heads!r}")
        if self.hops < 0:
            raise ValueError(f"WindowAttentionScorer: hops must be >= 0, got {self.hops}")
        if not 0 <= self.shift <= self.kernel // 2:
            raise ValueError(f"WindowAttentionScorer: shift must be in [0, kernel // 2] = [0, {self.kernel // 2}], "
                             f"got {self.shift}")

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None, *, layer=None,
                 position_embeddings=None, alive=None, eligible=None) -> torch.Tensor:
        if layer is None or position_embeddings is None:
            raise TypeError("WindowAttentionScorer needs the stage layer and its rotary embeddings: it runs inside "
                            "sdtp_lib.pruning (the physical engine) or masked_pruning(mode='topk')")
        attn = layer.self_attn
        self._dims = (hidden.shape[-1], attn.k_proj.out_features, attn.q_proj.out_features)  # C, KVH*D, H*D
        keys = rotated_keys(layer, hidden, position_embeddings)  # (B, KVH, T, D), shared by both hops
        B, T, _ = hidden.shape
        queries = window_queries(B, T, min(self.window, T), alive, eligible, hidden.device)
        probs = window_attention(layer, hidden, position_embeddings, self.window, alive, eligible,
                                 heads=self.heads, keys=keys, queries=queries)  # (B, T)
        if self.hops:
            probs = probs + hop_attention(layer, hidden, position_embeddings, probs, self.window, self.hops, alive,
                                          eligible, heads=self.heads, keys=keys, queries=queries)
        if self.memory:
            probs = probs / probs.sum(-1, keepdim=True).clamp(min=1e-30)  # (B, T): absent tokens are 0 already
        if self.kernel == 1:
            out = probs
        else:  # the tokens of a span share its max: their own attention breaks the tie (the same way in every engine)
            out = max_pool_alive(probs, self.kernel, alive, self.shift) + TIE_BREAK * probs
        return self._remember(out, stage, positions, alive) if self.memory else out

    def _remember(self, score: torch.Tensor, stage: int, positions, alive) -> torch.Tensor:
        """max(score, what each token scored at this prefill's earlier stages), by original position; stage 0
        starts a new prefill. positions (B, T) original positions (None: 0..T-1); alive: as in __call__."""
        B, T = score.shape
        if positions is None:
            positions = torch.arange(T, device=score.device).expand(B, T)
        if stage == 0 or self._memory is None or self._memory.shape[0] != B:
            self._memory = score.new_zeros(B, int(positions.max()) + 1)
        out = torch.maximum(score, self._memory.gather(1, positions))
        if alive is not None:
            out = out.masked_fill(~alive, 0.0)
        self._memory = self._memory.scatter(1, positions, out)
        return out

    def flops_per_token(self) -> int:
        """FLOPs per token entering a stage (the engine adds them to the pruned prefill's): its key projection
        and its scores against the window's queries (the window's own query projection is not counted)."""
        C, kv, q = getattr(self, "_dims", (0, 0, 0))
        return 2 * C * kv + 2 * q * (self.window + self.hops)


def window_attention(layer, hidden: torch.Tensor, position_embeddings, window: int, alive=None,
                     eligible=None, heads: str = "mean", keys=None, queries=None) -> torch.Tensor:
    """(B, T) float32: the attention each of the T tokens receives from the last `window` queries of the layer's
    self-attention (softmax over the causal keys of each query), averaged over those queries, then averaged over
    the heads (heads="mean") or their maximum taken (heads="max").

    alive (B, T) bool: the tokens still present (the masked simulation's keep mask; None: all). Only they are
    keys and queries; the others receive 0. eligible (B, T) bool: tokens that may be queries (None: all). The
    queries of a row are its last `window` present, eligible tokens. keys (rotated_keys) and queries
    (window_queries) may be passed in when computed already (the scorer shares them with the second hop)."""
    B, T, _ = hidden.shape
    w = min(window, T)
    pos = torch.arange(T, device=hidden.device)
    qidx, valid = queries if queries is not None else window_queries(B, T, w, alive, eligible, hidden.device)
    k = keys if keys is not None else rotated_keys(layer, hidden, position_embeddings)  # (B, KVH, T, D)
    q = rotated_queries(layer, hidden, position_embeddings, qidx, k.shape[1])  # (B, KVH, G*w, D)
    KVH, G = k.shape[1], q.shape[2] // w
    s = torch.matmul(q.float(), k.float().transpose(-1, -2))  # (B, KVH, G*w, T)
    if valid is None and alive is None:  # the last w tokens are the queries: only they have later keys to hide
        later = pos[T - w:][None, :] > pos[T - w:][:, None]  # (w, w) key after query
        s[..., T - w:].masked_fill_(later.repeat(G, 1), float("-inf"))  # rows: G heads x w queries
        p = s.softmax(-1)  # (B, KVH, G*w, T)
    else:
        hide = pos > qidx.repeat(1, G)[..., None]  # (B, G*w, T) causal: keys after each query
        if alive is not None:
            hide = hide | ~alive[:, None, :]
        p = s.masked_fill(hide[:, None], float("-inf")).softmax(-1)  # (B, KVH, G*w, T)
    if valid is not None:  # rows of missing queries (and their NaNs) left out of the mean over the window
        p = torch.where(valid.repeat(1, G)[:, None, :, None], p, 0.0)
    n_q = w if valid is None else valid.sum(-1).clamp(min=1)[:, None, None, None]  # queries per row
    per_head = p.view(B, KVH, G, w, T).sum(3) / n_q  # (B, KVH, G, T) window mean per head
    return per_head.mean(dim=(1, 2)) if heads == "mean" else per_head.amax(dim=(1, 2))  # (B, T)


def window_queries(B: int, T: int, w: int, alive=None, eligible=None, device=None):
    """(qidx (B, w), valid (B, w) bool or None): the window's queries, each row's last w present (alive), eligible
    tokens in order; valid marks real ones (a row with fewer has index 0 for the rest). With no masks: the last w
    tokens, valid None."""
    pos = torch.arange(T, device=device)
    if alive is None and eligible is None:  # the engine without a protect mask: the last w tokens
        return pos[T - w:].expand(B, w), None
    ok = torch.ones(B, T, dtype=torch.bool, device=device)
    ok = ok & alive if alive is not None else ok
    ok = ok & eligible if eligible is not None else ok
    from_end = ok.flip(-1).cumsum(-1).flip(-1)  # (B, T) ok tokens at or after each position
    qidx = torch.where(ok & (from_end <= w), pos, -1).topk(w, dim=-1).values.flip(-1)  # (B, w); -1 = none
    return qidx.clamp(min=0), qidx >= 0


def rotated_keys(layer, hidden: torch.Tensor, position_embeddings) -> torch.Tensor:
    """The stage layer's rotated keys of every token, (B, KVH, T, D): its input norm, k_proj and rotary."""
    attn = layer.self_attn
    B, T, _ = hidden.shape
    k = normed_proj(layer.input_layernorm, attn.k_proj, hidden).view(B, T, -1, attn.head_dim).transpose(1, 2)
    cos, sin = position_embeddings  # (B|1, T, D) of the current tokens
    _, k = _rope(attn)(k, k, cos, sin)
    return k


def rotated_queries(layer, hidden: torch.Tensor, position_embeddings, qidx: torch.Tensor, kv_heads: int):
    """The stage layer's rotated queries of the tokens qidx (B, n), scaled by the softmax scale and grouped under
    their KV head: (B, KVH, G*n, D). Only the n queries are projected; the norm is per token."""
    attn = layer.self_attn
    B = hidden.shape[0]
    n, D = qidx.shape[1], attn.head_dim
    cos, sin = position_embeddings
    gather = lambda t: t.expand(B, *t.shape[1:]).gather(1, qidx[..., None].expand(B, n, t.shape[-1]))  # noqa: E731
    q = attn.q_proj(layer.input_layernorm(gather(hidden)))
    q = (q * attn.scaling).view(B, n, -1, D).transpose(1, 2)  # (B, H, n, D), the softmax scale folded in
    q, _ = _rope(attn)(q, q, gather(cos), gather(sin))
    return q.reshape(B, kv_heads, -1, D)  # query heads grouped under their KV head


def _rope(attn):
    return sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the family's own rotary


SINK = 4  # the first present tokens (attention sinks, SDTPConfig.num_sink's default) are never hop queries


def hop_attention(layer, hidden: torch.Tensor, position_embeddings, first: torch.Tensor, window: int, hops: int,
                  alive=None, eligible=None, heads: str = "max", keys=None, queries=None) -> torch.Tensor:
    """(B, T) float32: the second hop. first (B, T): the window's attention (window_attention). The `hops` present,
    eligible tokens it ranks highest, outside the window's queries and the first SINK present tokens (with the
    question before the context, the question's tokens), become queries over every present, eligible token
    *without* the causal mask (a question written before a fact can then find it); their attention, averaged over
    them and pooled over heads as the window's, is returned (0 for hidden keys). Hidden keys: absent, not eligible,
    the first SINK, the hop queries themselves. keys / queries: as in window_attention."""
    B, T, _ = hidden.shape
    present = torch.ones(B, T, dtype=torch.bool, device=hidden.device) if alive is None else alive
    present = present & eligible if eligible is not None else present
    sink = present.cumsum(-1) <= SINK  # (B, T) the first SINK present tokens
    w = min(window, T)
    qidx, valid = queries if queries is not None else window_queries(B, T, w, alive, eligible, hidden.device)
    in_window = torch.zeros(B, T, dtype=torch.bool, device=hidden.device).scatter_(
        1, qidx, torch.ones_like(qidx, dtype=torch.bool) if valid is None else valid)
    cand = present & ~sink & ~in_window
    m = min(hops, T)
    top = first.float().masked_fill(~cand, float("-inf")).topk(m, dim=-1)  # (B, m); -inf: fewer candidates
    hidx, hvalid = top.indices, torch.isfinite(top.values)
    k = keys if keys is not None else rotated_keys(layer, hidden, position_embeddings)  # (B, KVH, T, D)
    q = rotated_queries(layer, hidden, position_embeddings, hidx, k.shape[1])  # (B, KVH, G*m, D)
    KVH, G = k.shape[1], q.shape[2] // m
    is_hop = torch.zeros(B, T, dtype=torch.bool, device=hidden.device).scatter_(1, hidx, hvalid)
    hide = ~present | sink | is_hop  # (B, T), the same for every hop query
    s = torch.matmul(q.float(), k.float().transpose(-1, -2))  # (B, KVH, G*m, T)
    p = s.masked_fill(hide[:, None, None], float("-inf")).softmax(-1).nan_to_num(0.0)  # a row with no key: 0
    p = torch.where(hvalid.repeat(1, G)[:, None, :, None], p, 0.0)
    per_head = p.view(B, KVH, G, m, T).sum(3) / hvalid.sum(-1).clamp(min=1)[:, None, None, None]  # (B, KVH, G, T)
    return per_head.mean(dim=(1, 2)) if heads == "mean" else per_head.amax(dim=(1, 2))


def normed_proj(norm, proj, hidden: torch.Tensor) -> torch.Tensor:
    """proj(norm(hidden)), (B, T, out). An HF RMSNorm (ops.is_rmsnorm; also inside ops.FusedRMSNorm)
    runs as torch's fused F.rms_norm: one pass, where HF's module runs six with float32 intermediates. Any other
    norm runs as it is."""
    base = norm.inner if isinstance(norm, FusedRMSNorm) else norm
    return proj(rms_norm(base, hidden) if is_rmsnorm(base) else norm(hidden))


def max_pool_alive(x: torch.Tensor, kernel: int, alive=None, shift: int = 0) -> torch.Tensor:
    """(B, T) max over `kernel` neighbouring tokens, token i over [i - kernel//2 - shift, i + kernel//2 - shift];
    with alive (B, T) bool, over neighbouring present tokens (as the engine sees them once the others are removed);
    absent tokens get 0."""
    if kernel == 1:
        return x if alive is None else x.masked_fill(~alive, 0.0)
    before, after = kernel // 2 + shift, kernel // 2 - shift

    def pool(t):  # (B, T) -> (B, T)
        t = F.pad(t[:, None], (before, after), value=float("-inf"))
        return F.max_pool1d(t, kernel, stride=1)[:, 0]
    if alive is None:
        return pool(x)
    order = (~alive).to(torch.int8).argsort(dim=-1, stable=True)  # (B, T) present tokens first, in order
    packed = x.gather(1, order).masked_fill(~alive.gather(1, order), float("-inf"))
    out = torch.empty_like(x).scatter_(1, order, pool(packed))
    return out.masked_fill(~alive, 0.0)
