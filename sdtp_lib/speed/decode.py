"""A fast greedy decode loop that calls the HF model: per-layer static KV caches + one CUDA graph per step.

After the prefill (pruned inside `pruning()`, or dense), each layer's cache is moved into a transformers
`StaticLayer` sized to *its own* kept tokens + max_new_tokens, so pruned layers keep their shorter caches.
Every decode step is one `model(...)` call on static buffers (token, position, cache write index); a
forward pre-hook per layer gives attention a mask over that layer's filled slots. On CUDA the step is
captured once in a CUDA graph and replayed, which removes the per-step Python and launch overhead that
dominates HF's `generate` (25-60 ms/token on a 7B model against a ~3 ms memory-bound floor). Decode
attention is one of DECODE_KERNELS: "matmul" (`decode_attention`, registered as "sdtp_decode"): grouped-query
aware, it reads each layer's K/V once instead of SDPA's masked path, which repeats K/V per query head (measured:
23 ms/token at 32K); or "flash_attention_4" (`decode_attention_fa4`): flash-attn 4's split-KV kernel
(flash-decoding: the cache is cut into chunks read by all SMs at once, merged by log-sum-exp), told each layer's
filled length instead of masked. A model loaded with attn_implementation="flash_attention_4" decodes with it.
kv_budget=b evicts KV entries as H2O does (sdtp_lib.speed.h2o: its layers replace the static ones; "matmul" only).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, StaticLayer

from ..engine import PruningStats, pruning
from . import h2o
from .kernels import prefill_kernels


DECODE_ATTN = "sdtp_decode"
DECODE_ATTN_FA4 = "sdtp_decode_fa4"
DECODE_KERNELS = ("matmul", "flash_attention_4")  # decode attention over the static caches


SPLIT_SLOTS = 1024  # long caches: P @ V as a split-K batch over blocks of this many slots (see below)
SPLIT_MIN = 8192  # caches of at least this many slots take the split path; their lengths are multiples of SPLIT_SLOTS


def decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sdtp_scores=None,
                     **kwargs):
    """One-token attention over a static cache. query (B, H, 1, D); key/value (B, KVH, S, D), not repeated;
    attention_mask (B|1, 1, 1, S) additive. Returns (B, 1, H, D). The softmax is over all S slots at once;
    for long caches P @ V (a (G, S) x (S, D) product: tiny output, huge reduction, few thread blocks) runs as
    S / SPLIT_SLOTS independent block products summed in float32 (split-K), which spreads the read of V.
    sdtp_scores (B, KVH, S) float32: the probabilities, summed over each KV head's query heads, are added to it
    (H2O's accumulated attention, sdtp_lib.speed.h2o)."""
    B, H, Q, D = query.shape
    kvh, S = key.shape[1], key.shape[2]
    G = (H // kvh) * Q
    scaling = scaling if scaling is not None else D ** -0.5
    q = query.reshape(B, kvh, G, D)  # query heads grouped under their KV head
    s = torch.matmul(q, key.transpose(-1, -2))  # (B, KVH, G, S), the cache's dtype (as HF's eager attention)
    s = torch.add(attention_mask[..., :S], s, alpha=scaling) if attention_mask is not None else s * scaling
    p = s.softmax(-1)  # float32 inside, the cache's dtype out: 3 passes over (G, S) instead of 7
    if sdtp_scores is not None:
        sdtp_scores.add_(p.float().sum(2))  # (B, KVH, S)
    if S >= SPLIT_MIN and S % SPLIT_SLOTS == 0:
        c = S // SPLIT_SLOTS
        pb = p.view(B, kvh, G, c, SPLIT_SLOTS).transpose(2, 3)  # (B, KVH, c, G, L)
        out = torch.matmul(pb, value.view(B, kvh, c, SPLIT_SLOTS, D)).float().sum(2).to(value.dtype)  # (B, KVH, G, D)
    else:
        out = torch.matmul(p, value)  # (B, KVH, G, D)
    return out.reshape(B, H, Q, D).transpose(1, 2).contiguous(), None


def fa4_chunk(S: int) -> int:
    """Slots per flash-attn 4 decode chunk for a static cache of S slots: SPLIT_SLOTS for long caches (whose
    lengths are multiples of it), else the whole cache."""
    return SPLIT_SLOTS if S >= SPLIT_MIN and S % SPLIT_SLOTS == 0 else S


def decode_attention_fa4(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                         sdtp_seqused_k=None, **kwargs):
    """One-token attention over a static cache with flash-attn 4, split over the cache (flash-decoding).
    query (B, H, 1, D); key/value (B, KVH, S, D), read in place; sdtp_seqused_k (B, c) int32: the filled slots of
    each of the cache's c chunks of fa4_chunk(S) slots, this step's included (no mask: unfilled slots are never
    read). flash-attn 4 has no split-KV forward on Hopper (SM 9.0), so the split is a batch: chunk i of the cache
    is a (fa4_chunk(S), KVH, D) view and one forward over the c chunks (c x KVH thread blocks instead of KVH)
    returns each chunk's output and log-sum-exp, merged by flash-attn's combine kernel. Returns (B, 1, H, D)."""
    from flash_attn.cute.interface import flash_attn_combine, flash_attn_varlen_func  # combine is not re-exported
    if sdtp_seqused_k is None:
        raise ValueError("decode_attention_fa4 needs sdtp_seqused_k (the filled slots of each cache chunk)")
    B, H, _, D = query.shape
    kvh, S = key.shape[1], key.shape[2]
    L = fa4_chunk(S)
    c = S // L
    outs = []
    for b in range(B):  # B = 1 when timed; a chunk view needs one sequence's cache
        q = query[b:b + 1].transpose(1, 2).expand(c, 1, H, D).contiguous()  # (c, 1, H, D): the query per chunk
        k = key[b].view(kvh, c, L, D).permute(1, 2, 0, 3)  # (c, L, KVH, D), a view
        v = value[b].view(kvh, c, L, D).permute(1, 2, 0, 3)
        o, lse = flash_attn_varlen_func(q, k, v, seqused_k=sdtp_seqused_k[b], softmax_scale=scaling, causal=False,
                                        pack_gqa=True, return_lse=True)  # (c, 1, H, D), (c, H, 1)
        if c == 1:
            outs.append(o)
            continue
        o, _ = flash_attn_combine(o.unsqueeze(1).float(), lse.transpose(1, 2).unsqueeze(1).contiguous(), out_dtype=o.dtype,
                                  return_lse=False)  # (1, 1, H, D)
        outs.append(o)
    return (outs[0] if B == 1 else torch.cat(outs)), None


def resolve_decode_attn(model, decode_attn: str | None) -> str:
    """The decode kernel: `decode_attn`, or None for the model's backend ("flash_attention_4" for a model loaded
    with it, "matmul" otherwise). flash-attn 4 must be installed and the model on a CUDA GPU (clear error)."""
    from ..models import check_attn
    name = decode_attn
    if name is None:
        name = "flash_attention_4" if model.config._attn_implementation == "flash_attention_4" else "matmul"
    if name not in DECODE_KERNELS:
        raise ValueError(f"decode_attn {decode_attn!r}: choose one of {list(DECODE_KERNELS)} (or None: the "
                         "model's attention backend decides)")
    if name == "flash_attention_4":
        check_attn(name, next(model.parameters()).device.type)
    return name


def _slots(n: int) -> int:
    """Static cache length for n tokens: a multiple of 64 (an odd length makes the decode matmuls' leading
    dimension misaligned and cuBLAS falls back to slow kernels: measured on the H200 at 128K, 56 ms/token with
    pruned odd-length caches against 14.5 for the dense loop), of SPLIT_SLOTS for long caches."""
    a = SPLIT_SLOTS if n >= SPLIT_MIN else 64
    return -(-n // a) * a


def _register():
    from transformers import AttentionInterface
    AttentionInterface.register(DECODE_ATTN, decode_attention)
    AttentionInterface.register(DECODE_ATTN_FA4, decode_attention_fa4)


@dataclass
class DecodeResult:
    tokens: torch.Tensor  # (B, max_new_tokens) greedy tokens (the first one from the prefill logits)
    prompt_len: int
    kept_per_layer: list[int]  # cache length of each layer after the prefill
    timings: dict = field(default_factory=dict)  # prefill_s, decode_s, e2e_s (CUDA-synchronised)
    logits: torch.Tensor | None = None  # (B, max_new_tokens, V) float32 when return_logits
    stats: PruningStats | None = None  # the pruned prefill's (compression, kept per stage, FLOPs); None when dense
    decode_attn: str = "matmul"  # the decode attention kernel (DECODE_KERNELS)
    kv_tokens: list[int] = field(default_factory=list)  # tokens each layer's cache holds when decoding ends
    kv_bytes: int = 0  # K and V of those tokens: sum over layers of tokens x 2 x kv_heads x head_dim x dtype bytes
    new_tokens: int = 0  # tokens decoded (max_new_tokens, or fewer when every sequence hit one of stop_ids)
    kv_budget: float | None = None  # H2O's budget (sdtp_lib.speed.h2o); None: no eviction
    h2o: object | None = None  # h2o.H2OState at the end (cached positions and scores per layer) with a budget


class DecodeLayer(StaticLayer):
    """A StaticLayer whose one-token update writes slot `cumulative_length` in 3 kernels (StaticLayer's builds an
    index first: 5 kernels per layer and step)."""

    def update(self, key_states, value_states, *args, **kwargs):
        if key_states.shape[-2] != 1:  # the decode loop feeds one token per step
            return super().update(key_states, value_states, *args, **kwargs)
        pos = self.cumulative_length.view(1)
        self.keys.index_copy_(2, pos, key_states)
        self.values.index_copy_(2, pos, value_states)
        self.cumulative_length.add_(1)
        return self.keys, self.values

    def visible_slot(self) -> torch.Tensor:
        """(1,) the slot this step writes (the decode mask makes it visible)."""
        return self.cumulative_length.view(1)

    def attention_kwargs(self) -> dict:
        """Extra keyword arguments for the decode attention of this layer."""
        return {}

    def snapshot(self):
        """What a step changes that a later step reads (the CUDA-graph warm-up step is undone with restore)."""
        return self.cumulative_length.clone()

    def restore(self, state):
        self.cumulative_length.copy_(state)


def _static_cache(dyn, extra: int):
    """Move a filled DynamicCache into per-layer StaticLayers with room for `extra` more tokens (lengths rounded
    up by _slots; the per-layer mask hides unfilled slots). Each dynamic layer's tensors are released once
    copied, so the peak holds one extra layer, not a second cache."""
    layers = []
    for d in dyn.layers:
        n = d.keys.shape[-2]
        s = DecodeLayer(max_cache_len=_slots(n + extra))
        s.lazy_initialization(d.keys, d.values)
        s.keys[:, :, :n].copy_(d.keys)
        s.values[:, :, :n].copy_(d.values)
        s.cumulative_length.fill_(n)
        d.keys = d.values = None  # the dynamic cache is consumed
        layers.append(s)
    return Cache(layers=layers)


class _LayerMasks:
    """What each layer's decode attention needs to see only filled slots, kept in persistent buffers (CUDA
    graphs replay them). kernel "matmul": additive masks over each layer's static slots; a slot is visible iff it
    is filled or is the one this step writes. Slots only ever become visible, so each step makes one slot visible
    (one tiny kernel per layer) instead of rebuilding an S-long mask (3 kernels per layer). kernel
    "flash_attention_4": each layer's filled length per cache chunk, this step's slot included (two tiny kernels
    per layer)."""

    def __init__(self, model, cache, kernel: str = "matmul"):
        self.dtype = next(model.parameters()).dtype
        self.cache, self.kernel, self.masks = cache, kernel, []
        for lc in cache.layers:
            if kernel == "matmul":
                self.masks.append(torch.empty(1, 1, 1, lc.max_cache_len, dtype=self.dtype, device=lc.keys.device))
            else:  # seqused_k per chunk: (B, c) int32, from (filled - chunk start) clamped to [0, chunk]
                L = fa4_chunk(lc.max_cache_len)
                starts = torch.arange(0, lc.max_cache_len, L, dtype=torch.int32, device=lc.keys.device)
                used = torch.empty(lc.keys.shape[0], len(starts), dtype=torch.int32, device=starts.device)
                self.masks.append((used, starts - 1, L))
        self.reset()

    def reset(self):
        """Masks from the caches' filled counts (after the CUDA-graph warm-up step is undone)."""
        if self.kernel != "matmul":
            return  # the lengths are recomputed by every step
        neg = torch.finfo(self.dtype).min
        for m, lc in zip(self.masks, self.cache.layers):
            slots = torch.arange(m.shape[-1], device=m.device)
            m.copy_(torch.where(slots < lc.cumulative_length, 0.0, neg).view(m.shape))

    @contextlib.contextmanager
    def attached(self, model):
        hooks = []
        for layer, m, lc in zip(model.get_decoder().layers, self.masks, self.cache.layers):
            if self.kernel == "matmul":
                def hook(module, args, kwargs, m=m, lc=lc):
                    m.view(-1).index_fill_(0, lc.visible_slot(), 0.0)  # the slot this step writes
                    kwargs["attention_mask"] = m
                    kwargs.update(lc.attention_kwargs())
                    return args, kwargs
            else:
                def hook(module, args, kwargs, m=m, lc=lc):
                    used, starts_m1, L = m  # (a 0-dim int64 minus int32 is int32)
                    torch.sub(lc.cumulative_length, starts_m1, out=used[0])  # filled + this step's slot - chunk start
                    used[0].clamp_(0, L)
                    if used.shape[0] > 1:  # B > 1: the same lengths
                        used[1:].copy_(used[:1].expand(used.shape[0] - 1, -1))
                    kwargs["attention_mask"] = None
                    kwargs["sdtp_seqused_k"] = used
                    return args, kwargs
            hooks.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            yield
        finally:
            for h in hooks:
                h.remove()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int, scorer=None, config=None,
                    cuda_graph: bool | None = None, chunk_tokens: int | None = None, fast_kernels: bool | dict = False,
                    forced: torch.Tensor | None = None, return_logits: bool = False,
                    decode_attn: str | None = None, kv_budget: float | None = None, stop_ids=(),
                    suppress_first=(), spans=None) -> DecodeResult:
    """Greedy decoding of `max_new_tokens` tokens (no early stop unless stop_ids: fixed work, for timing) with a
    pruned prefill when `scorer` is given (dense otherwise). cuda_graph defaults to True on CUDA; chunk_tokens runs
    the MLPs in chunks of that many tokens (sdtp_lib.speed.memory.chunked_mlp) to cut the prefill's peak memory;
    fast_kernels (True, or a dict of fast_prefill's keyword arguments) runs the prefill and the decode steps
    inside sdtp_lib.speed.kernels.fast_prefill (fused norms/rotary/SiLU-mul, chunked MLPs): about 17 fewer kernels
    per layer and decode step. Both through sdtp_lib.speed.kernels.prefill_kernels, as the profiler's prefill runs.
    For checks: `forced` (B, max_new_tokens) teacher-forces the tokens fed back, `return_logits` keeps every
    step's logits (B, max_new_tokens, V). decode_attn picks the decode attention (DECODE_KERNELS; None: the
    model's backend decides, resolve_decode_attn). kv_budget: H2O's KV budget in (0, 1] (sdtp_lib.speed.h2o; None:
    no eviction; needs the "matmul" decode attention). stop_ids: decoding ends after the step at which every
    sequence has produced one of them (one host sync per step); suppress_first: ids the first new token may not
    take (model.generate's min_new_tokens=1 with them as end-of-sequence ids); spans: the SpanRule of a whole-span
    config (pruning(..., spans=))."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    kernel = resolve_decode_attn(model, decode_attn)
    if kv_budget is not None:
        kv_budget = h2o.check_budget(kv_budget)
        if kernel != "matmul":
            raise ValueError(f"kv_budget (H2O) needs the attention probabilities, which only the 'matmul' decode "
                             f"attention exposes; decode_attn is {kernel!r}")
    dev = input_ids.device
    cuda_graph = dev.type == "cuda" if cuda_graph is None else cuda_graph
    B, T = input_ids.shape
    if forced is not None and forced.shape != (B, max_new_tokens):
        raise ValueError(f"forced must have shape ({B}, {max_new_tokens}), got {tuple(forced.shape)}")
    _sync(dev)
    t0 = time.perf_counter()
    from ..models import cache_kwarg, output_cache
    cache_kw = cache_kwarg(model)
    block = pruning(model, scorer, config, spans=spans) if scorer is not None else contextlib.nullcontext()
    collect = h2o.collect_prefill_scores(model) if kv_budget is not None else contextlib.nullcontext()
    with prefill_kernels(model, chunk_tokens, fast_kernels):  # the decode steps (and graph) use them too
        with block as stats, collect as prefill_scores:
            out = model(input_ids, use_cache=True, logits_to_keep=1)
        logits0 = out.logits[:, -1].float()  # (B, V)
        if len(suppress_first):
            logits0[:, torch.as_tensor(list(suppress_first), device=dev)] = float("-inf")
        first = logits0.argmax(-1)  # (B,)
        _sync(dev)
        t1 = time.perf_counter()
        dyn = output_cache(out)
        kept = [layer.keys.shape[-2] for layer in dyn.layers]
        del out
        step = torch.ones((), dtype=torch.long, device=dev)  # index of the token this step produces
        if kv_budget is None:
            cache = _static_cache(dyn, max_new_tokens)
        else:
            where = stats.layer_positions if stats is not None else [None] * len(kept)
            cache = h2o.h2o_cache(dyn, kv_budget, T, max_new_tokens - 1, prefill_scores, where, step, _slots)
        del dyn
        all_logits = None
        if return_logits:
            all_logits = torch.zeros(B, max_new_tokens, logits0.shape[-1], device=dev)
            all_logits[:, 0] = logits0
        tokens = torch.zeros(B, max_new_tokens, dtype=torch.long, device=dev)
        tokens[:, 0] = first
        ids = (forced[:, :1] if forced is not None else first[:, None]).clone()  # (B, 1) static input buffer
        pos = torch.full((B, 1), T, dtype=torch.long, device=dev)  # decode positions continue at T
        dummy_mask = torch.zeros(B, 1, 1, 1, device=dev)  # a 4D mask: HF skips its own mask building
        stops = torch.as_tensor(list(stop_ids), dtype=torch.long, device=dev) if len(stop_ids) else None
        done = torch.isin(first, stops) if stops is not None else None  # (B,) a stop token produced

        def one_step():
            logits = model(input_ids=ids, position_ids=pos, attention_mask=dummy_mask, **{cache_kw: cache},
                           use_cache=True, logits_to_keep=1).logits
            nxt = logits[:, -1].argmax(-1)  # (B,)
            tokens.index_copy_(1, step.view(1), nxt[:, None])
            if all_logits is not None:
                all_logits.index_copy_(1, step.view(1), logits[:, -1:].float())
            if forced is not None:
                ids.copy_(forced.index_select(1, step.clamp(max=max_new_tokens - 1)))
            else:
                ids.copy_(nxt[:, None])
            if done is not None:
                done.logical_or_(torch.isin(nxt, stops))
            pos.add_(1)
            step.add_(1)

        _register()
        old_attn = model.config._attn_implementation
        model.config._attn_implementation = DECODE_ATTN if kernel == "matmul" else DECODE_ATTN_FA4
        try:
            n = 0 if done is not None and bool(done.all()) else max_new_tokens - 1
            t2, ran = _decode_steps(model, cache, one_step, ids, pos, step, n, cuda_graph, dev, kernel, done)
        finally:
            model.config._attn_implementation = old_attn
        t3 = time.perf_counter()
        timings = {"prefill_s": t1 - t0, "setup_s": t2 - t1, "decode_s": t3 - t2,
                   "decode_ms_per_token": 1000 * (t3 - t2) / max(1, ran), "e2e_s": t3 - t0}
        kv_tokens = [int(l.cumulative_length) for l in cache.layers]
        return DecodeResult(tokens=tokens, prompt_len=T, kept_per_layer=kept, timings=timings, logits=all_logits,
                            stats=stats, decode_attn=kernel, kv_tokens=kv_tokens,
                            kv_bytes=kv_bytes(model, kv_tokens, B), new_tokens=ran + 1, kv_budget=kv_budget,
                            h2o=h2o.state(cache) if kv_budget is not None else None)


def kv_bytes(model, tokens_per_layer: list[int], batch: int = 1) -> int:
    """Bytes of K and V for these cached tokens per layer: sum of tokens x 2 x kv_heads x head_dim x dtype bytes."""
    cfg = model.config
    kvh = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    size = next(model.parameters()).element_size()
    return batch * sum(tokens_per_layer) * 2 * kvh * hd * size


def _decode_steps(model, cache, one_step, ids, pos, step, n, cuda_graph, dev, kernel="matmul", done=None):
    """Run up to n decode steps (captured once in a CUDA graph and replayed when cuda_graph); `done` (B,) bool:
    stop once it is all true (checked after every step). Returns (the time at which the timed steps started,
    after capture; the steps run)."""
    masks = _LayerMasks(model, cache, kernel)
    ran = 0
    with masks.attached(model):
        if cuda_graph and n > 0:
            state = ([l.snapshot() for l in cache.layers], ids.clone(), pos.clone(), step.clone(),
                     None if done is None else done.clone())
            s = torch.cuda.Stream(device=dev)
            s.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(s):
                one_step()  # warm-up outside the graph (allocations, lazy init); its writes are undone below
            torch.cuda.current_stream(dev).wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                one_step()
            for l, c in zip(cache.layers, state[0]):
                l.restore(c)
            ids.copy_(state[1]), pos.copy_(state[2]), step.copy_(state[3])
            if done is not None:
                done.copy_(state[4])
            masks.reset()
            _sync(dev)
            t2 = time.perf_counter()
            step_fn = graph.replay
        else:
            t2 = time.perf_counter()
            step_fn = one_step
        for _ in range(n):
            step_fn()
            ran += 1
            if done is not None and bool(done.all()):
                break
        _sync(dev)
    return t2, ran
