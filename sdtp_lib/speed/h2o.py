"""H2O (Heavy-Hitter Oracle, Zhang et al. 2023) KV eviction in the project's decode loop, dense or after SDTP.

Definition (as in H2O's reference implementation: heavy ratio = recent ratio = b / 2):
- The budget b in (0, 1] is a fraction of the current sequence length n = T + t (T: the original prompt length,
  t: the generated tokens fed back so far): a layer's cache holds at most k(n) = ceil(b * n) tokens, per KV head.
  Of them r(n) = k(n) // 2 are the most recent tokens the layer holds, the other k(n) - r(n) the "heavy hitters":
  the largest accumulated attention. b = 1.0 never evicts (the dense tokens, or with a pruned prefill exactly
  the SDTP-only tokens); a pruned layer already under its budget evicts nothing until it reaches it.
- A cached token's accumulated score is the sum of the attention probabilities it received from every query so
  far (the prefill's queries and every decode step), per KV head: the sum over the query heads of its group
  (grouped-query attention). Each KV head keeps its own set.
- After the prefill each layer is cut to k(T): its r(T) newest tokens and the top k(T) - r(T) others by score. The
  prefill's scores are column sums of the causal softmax (`collect_prefill_scores`: a registered attention function
  that delegates the output to the model's own backend and adds the column sums, computed from two flash-attention
  passes on a GPU (`column_sums_flash`, FLASH_PREFILL) and in query chunks elsewhere (`column_sums`).
- Decoding: a static cache per layer (slots: its size at the last step), a per-slot original position (-1: empty)
  and score. Before a step's attention the new token takes a free slot while the layer is under budget, else it
  overwrites, per KV head, the lowest-scoring slot that is not among the r(n) - 1 newest cached tokens (the new
  one is the r-th); the step's probabilities are then added to the scores (`decode_attention` with sdtp_scores).
  Slot order does not matter (RoPE is already applied). Which slot is free and which positions count as recent
  follow from T, the layer's kept tokens and the step alone, so they are tables read with the step counter: the
  step has no data-dependent shape and no host sync, and the CUDA graph captures it.
One choice differs from the reference code, which appends the new token, attends over k + 1 tokens and then
evicts: here the eviction comes first, so the cache never holds more than k(n) tokens (static slots = the budget).
"""
from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass

import torch
from transformers.cache_utils import StaticLayer

CHUNK_ELEMENTS = 1 << 25  # prefill column sums: query rows per chunk so a chunk's scores hold about this many floats
# The prefill's column sums from flash attention (column_sums_flash) where it applies, instead of in chunks: on one
# H100 they agree to ~1e-6 and take 181 ms against 2.2 s at 16K (0.5B shape, a 72 ms prefill; scripts/
# h2o_prefill_bench.py, reports/results/2026-12-07_h2o-prefill-flash_h100). False: always the chunked sums
FLASH_PREFILL = True


def check_budget(kv_budget) -> float:
    """kv_budget as a float in (0, 1]; anything else (not a number, nan, <= 0, > 1) is a ValueError naming it."""
    if isinstance(kv_budget, bool) or not isinstance(kv_budget, (int, float)) or not 0.0 < kv_budget <= 1.0:
        raise ValueError(f"kv_budget (H2O's KV budget) must be a number in (0, 1], a fraction of the sequence "
                         f"length, got {kv_budget!r}")
    return float(kv_budget)


def budget_tokens(kv_budget: float, n: int) -> int:
    """k(n) = ceil(b * n) tokens for a sequence of n tokens (at least 1)."""
    return max(1, math.ceil(kv_budget * n - 1e-9))


def recent_tokens(k: int) -> int:
    """r = k // 2 of a budget of k tokens are the newest ones; k - r are heavy hitters."""
    return k // 2


# ------------------------------------------------------------------ prefill scores
def column_sums(query: torch.Tensor, key: torch.Tensor, attention_mask, scaling: float,
                chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Sum over queries (and the query heads of each KV head) of the softmax probabilities each key gets.
    query (B, H, Q, D), key (B, KVH, K, D); attention_mask None (causal, the last Q of K keys are the queries),
    or (B|1, 1|H, Q, >=K) boolean (True: attend) or additive. Returns (B, KVH, K) float32, in query chunks."""
    B, H, Q, D = query.shape
    kvh, K = key.shape[1], key.shape[2]
    G = H // kvh
    q = query.reshape(B, kvh, G, Q, D)
    k = key.float().transpose(-1, -2)[:, :, None]  # (B, KVH, 1, D, K)
    out = torch.zeros(B, kvh, K, dtype=torch.float32, device=query.device)
    rows = max(1, chunk_elements // max(1, H * K))
    cols = torch.arange(K, device=query.device)
    for a in range(0, Q, rows):
        s = torch.matmul(q[:, :, :, a:a + rows].float(), k) * scaling  # (B, KVH, G, c, K)
        c = s.shape[3]
        if attention_mask is None:
            qpos = torch.arange(a, a + c, device=query.device) + (K - Q)
            s = s.masked_fill(cols[None, :] > qpos[:, None], float("-inf"))
        else:
            m = attention_mask[:, :, a:a + c, :K]
            m = m.unsqueeze(1) if m.shape[1] == 1 else m.reshape(m.shape[0], kvh, G, c, K)
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.float()
        out += s.softmax(-1).sum((2, 3))
    return out


def _flash_lse(q, k, scale: float) -> torch.Tensor:
    """Row log-sum-exp (B, H, Lq) float32 of the causal attention of q (B, H, Lq, D) over k (B, H, Lk, D), Lq == Lk,
    from PyTorch's flash kernel (its output is not used: k stands in for the values)."""
    return torch.ops.aten._scaled_dot_product_flash_attention(q, k, k, 0.0, True, False, scale=scale)[1]


def column_sums_flash(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """column_sums of a causal prefill (no mask, as many queries as keys) from two flash-attention passes in
    O(T) memory: the rows' log-sum-exp lse_i, then, with queries and keys swapped and both reversed (so the
    transposed causal mask is causal again), log sum_i exp(scale * k_j . q_i - lse_i) for every key j, the
    -lse_i / scale riding in two extra dimensions (a bf16 high and low part) of the swapped keys against ones.
    CUDA, bf16 or fp16 only. Returns (B, KVH, K) float32."""
    B, H, Q, D = query.shape
    kvh = key.shape[1]
    k = key.repeat_interleave(H // kvh, dim=1)  # (B, H, K, D)
    lse = _flash_lse(query, k, scaling)[..., :Q]  # (B, H, Q) float32
    a = -lse / scaling
    hi = a.to(query.dtype)
    lo = (a - hi.float()).to(query.dtype)
    pad = -(-(D + 2) // 8) * 8 - D - 2  # head dims in multiples of 8
    qs = torch.cat([query, hi[..., None], lo[..., None], query.new_zeros(B, H, Q, pad)], -1).flip(2)  # the keys'
    ks = torch.cat([k, k.new_ones(B, H, Q, 2), k.new_zeros(B, H, Q, pad)], -1).flip(2)  # the queries'
    cols = _flash_lse(ks, qs, scaling).flip(2)[..., :Q]  # (B, H, K): log of each key's column sum per query head
    return cols.exp().reshape(B, kvh, H // kvh, Q).sum(2)


def prefill_column_sums(query, key, attention_mask, scaling: float) -> torch.Tensor:
    """column_sums_flash where FLASH_PREFILL and it applies (CUDA, bf16/fp16, no explicit mask, as many queries as
    keys), else column_sums."""
    if (FLASH_PREFILL and attention_mask is None and query.is_cuda and query.dtype in (torch.bfloat16, torch.float16)
            and query.shape[2] == key.shape[2] and query.shape[-1] + 2 <= 256):
        return column_sums_flash(query, key, scaling)
    return column_sums(query, key, attention_mask, scaling)


def _backend(module, name: str):
    """The attention function the model would have called for backend `name` (eager: its modeling module's)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    if name != "eager":
        return ALL_ATTENTION_FUNCTIONS[name]
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise ValueError(f"H2O: {type(module).__module__} has no eager_attention_forward to delegate to")
    return fn


@contextlib.contextmanager
def collect_prefill_scores(model):
    """Inside the block each attention call with more than one query adds its column sums (column_sums) to
    scores[layer_idx] ((B, KVH, K) float32); the output is the model's own backend's. Works inside pruning() (the
    keys are the kept tokens, the mask the kept sequence's). The backend is restored on exit."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    orig = model.config._attn_implementation
    if orig not in ("eager", "sdpa") and not orig.startswith("flash"):
        raise ValueError(f"H2O: prefill attention scores need the sdpa, eager or flash backend, got {orig!r}")
    scores: dict[int, torch.Tensor] = {}
    name = f"sdtp_h2o_{orig}"

    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        if query.shape[2] > 1:
            if attention_mask is not None and attention_mask.dim() != 4:
                raise ValueError(f"H2O: a {attention_mask.dim()}D attention mask in the prefill (padding) is not "
                                 "supported; prefill unpadded prompts")
            sc = scaling if scaling is not None else query.shape[-1] ** -0.5
            scores[module.layer_idx] = prefill_column_sums(query, key, attention_mask, sc)
        model.config._attn_implementation = orig  # a backend may read it (HF's flash integration does)
        try:
            return _backend(module, orig)(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        finally:
            model.config._attn_implementation = name

    AttentionInterface.register(name, attention)
    if orig in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[orig])  # the backend's own masks
    model.config._attn_implementation = name
    try:
        yield scores
    finally:
        model.config._attn_implementation = orig


# ------------------------------------------------------------------ the decode cache
@dataclass
class H2OState:
    """The H2O caches at the end of decoding, per layer: positions (B, KVH, S) original positions (-1: empty slot)
    and scores (B, KVH, S) float32 accumulated attention."""
    positions: list[torch.Tensor]
    scores: list[torch.Tensor]


class H2OLayer(StaticLayer):
    """A static layer of S slots whose one-token update writes a free slot or evicts (module docstring); the decode
    loop reads it through DecodeLayer's interface (visible_slot, attention_kwargs, snapshot, restore).
    step: the decode loop's counter (0-dim long; the token fed at step s sits at position T + s - 1); free[s]: the
    slot to fill at step s, -1 when the layer is at its budget; recent_from[s] (B,): the smallest position among the
    r(n) newest (the new token included) at step s."""

    def __init__(self, slots: int, step: torch.Tensor, free: torch.Tensor, recent_from: torch.Tensor, T: int):
        super().__init__(max_cache_len=slots)
        self.step, self.free, self.recent_from, self.T = step, free, recent_from, T
        self.positions = self.scores = None

    def fill(self, keys, values, positions, scores):
        """The prefill's kept tokens: keys/values (B, KVH, c, D), positions (B, KVH, c), scores (B, KVH, c)."""
        self.lazy_initialization(keys, values)
        B, kvh, c, _ = keys.shape
        S = self.max_cache_len
        self.keys[:, :, :c].copy_(keys)
        self.values[:, :, :c].copy_(values)
        self.positions = torch.full((B, kvh, S), -1, dtype=torch.long, device=keys.device)
        self.positions[..., :c] = positions
        self.scores = torch.zeros(B, kvh, S, dtype=torch.float32, device=keys.device)
        self.scores[..., :c] = scores
        self.cumulative_length.fill_(c)

    def _slot(self) -> torch.Tensor:
        """(B, KVH) slot the token of this step goes to: the free slot, or the lowest-scoring non-recent one."""
        free = self.free.index_select(0, self.step.view(1))  # (1,)
        recent = self.recent_from.index_select(0, self.step.view(1)).view(-1, 1, 1)  # (B, 1, 1)
        keep = (self.positions >= recent) | (self.positions < 0)
        victim = self.scores.masked_fill(keep, float("inf")).argmin(-1)  # (B, KVH)
        return torch.where(free >= 0, free, victim)

    def update(self, key_states, value_states, *args, **kwargs):
        if key_states.shape[-2] != 1:
            raise ValueError("H2OLayer takes one token per step (the prefill fills it with fill())")
        slot = self._slot()[..., None]  # (B, KVH, 1)
        D = key_states.shape[-1]
        self.keys.scatter_(2, slot[..., None].expand(-1, -1, 1, D), key_states)
        self.values.scatter_(2, slot[..., None].expand(-1, -1, 1, D), value_states)
        self.positions.scatter_(2, slot, (self.step + (self.T - 1)).expand_as(slot))
        self.scores.scatter_(2, slot, torch.zeros_like(slot, dtype=self.scores.dtype))
        self.cumulative_length.add_((self.free.index_select(0, self.step.view(1)) >= 0).long().view(()))
        return self.keys, self.values

    def visible_slot(self) -> torch.Tensor:
        free = self.free.index_select(0, self.step.view(1))
        return free.clamp(min=0)  # evicting: an already visible slot

    def attention_kwargs(self) -> dict:
        return {"sdtp_scores": self.scores}

    def snapshot(self):
        slot = self._slot()[..., None, None].expand(-1, -1, 1, self.keys.shape[-1])
        return (self.cumulative_length.clone(), self.positions.clone(), self.scores.clone(), slot,
                self.keys.gather(2, slot), self.values.gather(2, slot))

    def restore(self, state):
        n, pos, sc, slot, k, v = state
        self.cumulative_length.copy_(n), self.positions.copy_(pos), self.scores.copy_(sc)
        self.keys.scatter_(2, slot, k), self.values.scatter_(2, slot, v)


def _tables(kv_budget: float, T: int, n: int, steps: int):
    """(count after the cut, free[0..steps], recent[0..steps], final count) for a layer whose prefill kept n tokens:
    free[s] the slot the token fed at step s (1..steps; the sequence is then T + s long) fills, -1 at the budget;
    recent[s] the index, in the layer's sequence (kept tokens, then the fed ones), of its oldest recent token."""
    count = min(n, budget_tokens(kv_budget, T))
    c0, free, recent = count, [-1], [n]
    for s in range(1, steps + 1):
        k = budget_tokens(kv_budget, T + s)
        free.append(count if count < k else -1)
        count += count < k
        recent.append(n + s - recent_tokens(k))  # the new token is the newest of the r(T + s)
    return c0, free, recent, count


def h2o_cache(dyn, kv_budget: float, T: int, steps: int, scores: dict, layer_positions: list, step: torch.Tensor,
              slots=lambda n: n):
    """Per-layer H2OLayers from a filled DynamicCache (consumed layer by layer), each cut to k(T) by scores
    (collect_prefill_scores) with room for `steps` more tokens. layer_positions[l]: (B, T_l) original positions of
    layer l's cached tokens (None: all T); slots(n): the static length for n tokens (the decode loop rounds up)."""
    from transformers.cache_utils import Cache
    layers = []
    for l, d in enumerate(dyn.layers):
        B, kvh, n, D = d.keys.shape
        dev = d.keys.device
        pos = layer_positions[l] if layer_positions[l] is not None else torch.arange(T, device=dev).expand(B, T)
        if l not in scores:
            raise ValueError(f"H2O: no prefill attention scores for layer {l} (was the prefill run inside "
                             "collect_prefill_scores?)")
        sc = scores[l]  # (B, KVH, n)
        c0, free, recent, final = _tables(kv_budget, T, n, steps)
        r = recent_tokens(budget_tokens(kv_budget, T))
        if n > c0:  # cut: the r newest + the top c0 - r others by score, per KV head
            heavy = sc[..., :n - r].topk(c0 - r, dim=-1).indices.sort(-1).values  # (B, KVH, c0 - r)
            idx = torch.cat([heavy, torch.arange(n - r, n, device=dev).expand(B, kvh, r)], -1)  # (B, KVH, c0)
        else:
            idx = torch.arange(n, device=dev).expand(B, kvh, n)
        seq = torch.cat([pos, torch.arange(T, T + steps + 1, device=dev).expand(B, -1)], 1)  # (B, n + steps + 1)
        recent_from = seq[:, torch.tensor(recent, device=dev)].T.contiguous()  # (steps + 1, B); index n + steps:
        layer = H2OLayer(slots(final), step, torch.tensor(free, device=dev), recent_from, T)  # nothing is recent
        g = idx[..., None].expand(-1, -1, -1, D)
        layer.fill(d.keys.gather(2, g), d.values.gather(2, g), pos[:, None].expand(B, kvh, n).gather(2, idx),
                   sc.gather(2, idx))
        d.keys = d.values = None  # the dynamic cache is consumed
        layers.append(layer)
    return Cache(layers=layers)


def state(cache) -> H2OState:
    """The caches' positions and scores (copies)."""
    return H2OState([l.positions.clone() for l in cache.layers], [l.scores.clone() for l in cache.layers])
