"""The pruning engine: `with pruning(model, scorer, config) as stats:` prunes HF's own prefill.

Forward pre-hooks (always removed on exit) on the decoder layers from the first stage on:
- prefill (first forward on an empty cache): at stage layer l_s the scorer scores the hidden state entering
  l_s, the top-k tokens are gathered (hidden, rotary cos/sin at their original positions, mask); every
  later layer gets the reduced cos/sin/mask in place of the full-length ones the model loop passes. Each
  layer's KV cache therefore holds exactly the tokens it saw.
- decode (later one-token forwards): the shorter caches are used as they are; a tensor attention mask,
  built by HF for the full length, is gathered to each layer's cached positions + the new ones.
Nothing is copied from HF's decoder layers or model loop: layers and loop run unchanged.
"""
from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import SDTPConfig
from .flops import prefill_flops
from ._active import ACTIVE as _ACTIVE
from .models import ATTN_IMPLEMENTATIONS, check_supported
from .scorers.predictor import TokenPredictor
from .scorers.registry import make_scorer
from .spans import SpanRule, span_order

log = logging.getLogger(__name__)

SUPPORTED_ATTN = ATTN_IMPLEMENTATIONS  # every backend load_model offers: the kept tokens need only a causal mask


class PruningError(RuntimeError):
    """A configuration the engine cannot honour."""


@dataclass
class PruningStats:
    """What the last pruned prefill did. Filled in by the engine; read it after model(...)/generate(...)."""
    prompt_len: int = 0
    batch_size: int = 0
    kept_per_layer: list[int] = field(default_factory=list)  # tokens each layer computed on (and cached)
    kept_per_stage: list[int] = field(default_factory=list)  # tokens left after each stage
    stage_positions: list[torch.Tensor] = field(default_factory=list)  # (B, k_s) original positions per stage
    kept_positions: torch.Tensor | None = None  # (B, T_last) original positions of the returned logits
    layer_positions: list = field(default_factory=list)  # per layer: (B, T_l) original positions it cached; None: all
    flops_dense: int = 0
    flops_pruned: int = 0
    num_prefills: int = 0

    @property
    def compression(self) -> float:
        """T / mean tokens per layer (the paper's "compression ratio")."""
        return self.prompt_len / (sum(self.kept_per_layer) / len(self.kept_per_layer)) if self.kept_per_layer else 1.0

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.flops_pruned / self.flops_dense if self.flops_dense else 0.0

    def summary(self) -> str:
        return (f"prompt {self.prompt_len} tokens | kept per stage {' '.join(map(str, self.kept_per_stage))} | "
                f"compression {self.compression:.2f}x | FLOPs {self.flops_dense / 1e9:.2f} -> "
                f"{self.flops_pruned / 1e9:.2f} GFLOP ({-100 * self.flops_reduction:+.1f}%)")  # +: the scorer's own cost


@dataclass
class _Prefill:
    """Per-forward state while a prefill runs through the layers."""
    T: int
    positions: torch.Tensor  # (B, T_cur) original positions of the current tokens
    forced: torch.Tensor  # (B, T_cur) always-kept (sink, local window, protected)
    num_forced: int  # max over the batch of forced tokens (host int, known before the loop)
    protect: torch.Tensor | None = None  # (B, T_cur) protected tokens (None: no protect mask)
    spans: torch.Tensor | None = None  # (B, T_cur) span ids in [0, T) (None: tokens, not spans)
    cos: torch.Tensor | None = None  # (B, T_cur, hd)
    sin: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # None (causal kernel) or (B, 1, T_cur, T_cur)
    kept: dict = field(default_factory=dict)  # layer -> tokens
    stage_positions: list = field(default_factory=list)


def select_tokens(scores: torch.Tensor, forced: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, k), ascending, of the forced tokens plus the top-(k - forced) others by score."""
    s = scores.float().masked_fill(forced, float("inf"))
    return s.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values  # (B, k)


def keep_indices(scores: torch.Tensor, forced: torch.Tensor, k: int, spans: torch.Tensor | None = None,
                 num_spans: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a stage keeps: (indices (B, k) ascending, the kept tokens' span ids (B, k) or None). Tokens: the forced
    ones plus the top others by score (select_tokens); spans (B, T_cur) ids in [0, num_spans): whole spans, best first
    (sdtp_lib.spans.span_order)."""
    if spans is None:
        return select_tokens(scores, forced, k), None
    idx = span_order(scores, forced, spans, num_spans)[:, :k].sort(dim=-1).values
    return idx, spans.gather(1, idx)


def forced_mask(config: SDTPConfig, attention_mask: torch.Tensor, protect: torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool: sink tokens, the last local_frac of each sequence's real tokens, and protected tokens."""
    B, T = attention_mask.shape
    lengths = attention_mask.sum(-1, keepdim=True)  # (B, 1) real tokens (right padding)
    pos = torch.arange(T, device=attention_mask.device).expand(B, T)
    n_local = torch.ceil(config.local_frac * lengths.double() - 1e-9).long()
    forced = (pos < config.num_sink) | ((pos >= lengths - n_local) & (pos < lengths))
    return forced | protect.bool() if protect is not None else forced  # shared by the engine and masked.py


def _gather_seq(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B|1, T, ...) gathered at idx (B, k) along dim 1."""
    B, k = idx.shape
    x = x.expand(B, *x.shape[1:])
    return x.gather(1, idx.view(B, k, *([1] * (x.dim() - 2))).expand(B, k, *x.shape[2:]))


def _gather_mask_cols(mask: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """A (B|1, [H, Q,] K) mask gathered at key indices idx (B, n) along its last dim."""
    B, n = idx.shape
    mask = mask.expand(B, *mask.shape[1:])
    view = idx.view(B, *([1] * (mask.dim() - 2)), n).expand(*mask.shape[:-1], n)
    return mask.gather(-1, view)


class _Session:
    def __init__(self, model, scorer, config: SDTPConfig, protect, spans: SpanRule | None = None):
        self.model, self.config, self.protect, self.span_rule = model, config, protect, spans
        self.decoder = model.get_decoder()
        self.layers = self.decoder.layers
        self.num_layers = len(self.layers)
        self.scorer = make_scorer(scorer)
        self.stage_of = {l: s for s, l in enumerate(config.stage_layers)}
        self.first = config.stage_layers[0]
        self.attn = model.config._attn_implementation
        self.stats = PruningStats()
        self.fwd: _Prefill | None = None
        self.mode = "idle"
        self.pending = False
        self.labels = None
        self.cache_ref = None  # weakref to the cache the last pruned prefill filled
        self.segment_positions: dict = {}  # layer -> (B, T_l) positions cached by that layer
        self.hooks: list = []

    # --------------------------------------------------------------- hooks
    def attach(self):
        self.hooks.append(self.model.register_forward_pre_hook(self._outer_pre, with_kwargs=True))
        self.hooks.append(self.model.register_forward_hook(self._outer_post))
        if self.decoder is not self.model:
            self.hooks.append(self.decoder.register_forward_pre_hook(self._inner_pre, with_kwargs=True))
        self.hooks.append(self.decoder.register_forward_hook(self._inner_post))
        for l in range(self.first, self.num_layers):
            self.hooks.append(self.layers[l].register_forward_pre_hook(self._layer_hook(l), with_kwargs=True))

    def detach(self):
        for h in self.hooks:
            h.remove()
        self.hooks.clear()

    def _outer_pre(self, module, args, kwargs):
        protect = kwargs.pop("sdtp_protect", None)
        self._begin(args, kwargs, protect)
        if self.mode == "prefill" and kwargs.get("labels") is not None:
            self.labels = kwargs.pop("labels")
        self.pending = True
        return args, kwargs

    def _inner_pre(self, module, args, kwargs):
        protect = kwargs.pop("sdtp_protect", None)
        if self.pending:
            self.pending = False
        else:  # the decoder was called directly
            self._begin(args, kwargs, protect)
        return args, kwargs

    def _begin(self, args, kwargs, protect):
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None:
            raise PruningError("SDTP pruning: the forward got neither input_ids nor inputs_embeds")
        B, T = x.shape[:2]
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is not None:
            from transformers import DynamicCache
            if not isinstance(cache, DynamicCache):
                raise PruningError(f"SDTP pruning needs a DynamicCache (per-layer lengths differ); got "
                                   f"{type(cache).__name__} (static/offloaded/quantised caches are not supported)")
        past = cache.get_seq_length() if cache is not None else 0
        if past > 0:
            if T > 1:
                raise PruningError(f"SDTP pruning: a {T}-token forward on a non-empty cache ({past} tokens): "
                                   "chunked prefill and assisted/speculative decoding are not supported; "
                                   "prefill the whole prompt in one call and decode one token at a time")
            self.mode = "decode" if (self.cache_ref is not None and self.cache_ref() is cache) else "plain"
            return
        self.mode = "prefill"
        am = kwargs.get("attention_mask")
        if am is not None:
            if am.dim() != 2:
                raise PruningError("SDTP pruning: custom 4D attention masks are not supported; pass a 2D mask")
            if not bool(am.all()):  # one check before the layer loop (HF's own mask code does the same)
                raise PruningError("SDTP pruning: padded batches are not supported (the attention_mask has "
                                   "zeros); run prompts one at a time or batch prompts of equal length")
        dev = x.device
        positions = torch.arange(T, device=dev).expand(B, T)
        protect = protect if protect is not None else self.protect
        if protect is not None:
            protect = torch.as_tensor(protect, device=dev).bool()
            if protect.shape[-1] != T or protect.dim() > 2:
                raise PruningError(f"SDTP pruning: protect mask has shape {tuple(protect.shape)}; expected "
                                   f"({B}, {T}) or ({T},) for this prompt")
            protect = protect.expand(B, T)
        forced = forced_mask(self.config, torch.ones(B, T, dtype=torch.long, device=dev), protect)
        num_forced = (min(T, self.config.num_sink + self.config.num_local(T)) if protect is None
                      else int(forced.sum(-1).max()))  # host sync before the loop, only with a protect mask
        spans = None
        if self.config.span_max:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                raise PruningError("SDTP pruning with whole spans (span_max > 0) reads the token ids: pass input_ids, "
                                   "not inputs_embeds")
            spans = self.span_rule.span_ids(ids, self.config.span_max)  # (B, T)
        self.fwd = _Prefill(T=T, positions=positions, forced=forced, num_forced=num_forced, protect=protect,
                            spans=spans)

    def _layer_hook(self, l: int):
        stage = self.stage_of.get(l)

        def hook(module, args, kwargs):
            if self.mode == "prefill":
                return self._prefill_layer(l, stage, args, kwargs)
            if self.mode == "decode":
                self._decode_layer(l, kwargs)
            return args, kwargs
        return hook

    def _prefill_layer(self, l, stage, args, kwargs):
        f = self.fwd
        hidden = args[0] if args else kwargs["hidden_states"]
        if l == self.first:
            cos, sin = kwargs["position_embeddings"]
            f.cos, f.sin, f.mask = cos, sin, kwargs.get("attention_mask")
            if f.mask is not None and f.mask.dim() != 4:
                raise PruningError(f"SDTP pruning: unexpected {f.mask.dim()}D attention mask in prefill")
            cache = kwargs.get("past_key_values", kwargs.get("cache"))
            self.cache_ref = weakref.ref(cache) if cache is not None else None
            self.segment_positions = {}
        if stage is not None:
            k = min(hidden.shape[1], max(self.config.keep_count(stage + 1, f.T), f.num_forced))
            if getattr(self.scorer, "needs_layer", False):  # e.g. window attention: the layer's q/k projections
                scores = self.scorer(hidden, stage, f.positions, layer=self.layers[l],
                                     position_embeddings=(f.cos, f.sin),  # (B, T_cur); a protected
                                     eligible=None if f.protect is None else ~f.protect)  # response is no query
            else:
                scores = self.scorer(hidden, stage, f.positions)  # (B, T_cur)
            idx, f.spans = keep_indices(scores, f.forced, k, f.spans, f.T)  # (B, k) indices into the current tokens
            hidden = _gather_seq(hidden, idx)
            f.positions, f.forced = f.positions.gather(1, idx), f.forced.gather(1, idx)
            f.protect = None if f.protect is None else f.protect.gather(1, idx)
            f.cos, f.sin = _gather_seq(f.cos, idx), _gather_seq(f.sin, idx)
            if f.mask is not None:  # rows = queries, cols = keys: both are the kept tokens
                m = f.mask.expand(idx.shape[0], *f.mask.shape[1:])
                m = m.gather(2, idx[:, None, :, None].expand(-1, m.shape[1], -1, m.shape[3]))
                f.mask = _gather_mask_cols(m, idx)
            f.stage_positions.append(f.positions)
            args = (hidden, *args[1:]) if args else args
            if not args:
                kwargs["hidden_states"] = hidden
        f.kept[l] = hidden.shape[1]
        self.segment_positions[l] = f.positions
        kwargs["position_embeddings"] = (f.cos, f.sin)
        kwargs["attention_mask"] = f.mask
        if "position_ids" in kwargs:  # flash-attn reads gaps in position_ids as packed sequences: hide them
            kwargs["position_ids"] = None if self.attn.startswith("flash") else f.positions
        return args, kwargs

    def _decode_layer(self, l, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None or not torch.is_tensor(mask):
            return
        pos = self.segment_positions[l]  # (B, T_l)
        new = torch.arange(self.stats.prompt_len, mask.shape[-1], device=pos.device).expand(pos.shape[0], -1)
        kwargs["attention_mask"] = _gather_mask_cols(mask, torch.cat([pos, new], dim=1))

    def _inner_post(self, module, args, output):
        if self.mode != "prefill":
            return None
        f, st = self.fwd, self.stats
        kept = [f.kept.get(l, f.T) for l in range(self.num_layers)]
        st.prompt_len, st.batch_size = f.T, f.positions.shape[0]
        st.kept_per_layer, st.stage_positions = kept, f.stage_positions
        st.kept_per_stage = [p.shape[1] for p in f.stage_positions]
        st.kept_positions = f.positions
        st.layer_positions = [self.segment_positions.get(l) for l in range(self.num_layers)]
        pf = getattr(self.scorer, "flops_per_token", None)  # predictor scores the tokens entering each stage
        pred = sum(kept[l - 1] for l in self.config.stage_layers) * pf() if callable(pf) else 0
        st.flops_dense = prefill_flops(self.model, [f.T] * self.num_layers)
        st.flops_pruned = prefill_flops(self.model, kept, predictor_flops=pred)
        st.num_prefills += 1
        self.mode = "idle"
        return None

    def _outer_post(self, module, args, output):
        labels, self.labels = self.labels, None
        if labels is None:
            return None
        logits = output["logits"] if not isinstance(output, tuple) else output[0]
        pos = self.stats.kept_positions[:, -logits.shape[1]:]  # (B, n) positions the logits belong to
        target = F.pad(labels[:, 1:], (0, 1), value=-100).to(pos.device)  # target of position p is labels[p+1]
        target = target.gather(1, pos)
        loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=-100)
        if isinstance(output, tuple):
            return (loss, *output)
        return type(output)(loss=loss, **{k: v for k, v in output.items() if k != "loss"})


def _check_model(model, config: SDTPConfig) -> None:
    check_supported(model)
    cfg = model.config
    config.validate(cfg.num_hidden_layers)
    attn = cfg._attn_implementation
    if attn not in SUPPORTED_ATTN:
        raise PruningError(f"SDTP pruning supports attn_implementation {SUPPORTED_ATTN}, the model uses {attn!r}")
    sw = getattr(cfg, "sliding_window", None)
    uses_sw = getattr(cfg, "use_sliding_window", sw is not None)
    if (sw is not None and uses_sw) or "sliding_attention" in (getattr(cfg, "layer_types", None) or ()):
        raise PruningError("SDTP pruning: sliding-window attention is not supported (the window would be "
                           "counted over kept tokens); disable it in the model config")
    if model in _ACTIVE:
        raise PruningError("this model is already inside a pruning() block; nesting is not supported")


def check_spans(config: SDTPConfig, spans) -> None:
    """A span rule is given exactly when the config keeps whole spans."""
    if config.span_max and not isinstance(spans, SpanRule):
        raise PruningError(f"SDTP pruning: the config keeps whole spans (span_max={config.span_max}) and needs "
                           "spans=SpanRule.from_tokenizer(tokenizer) (sdtp_lib.spans.span_rule(config, tokenizer))")
    if spans is not None and not config.span_max:
        raise PruningError("SDTP pruning: spans= was given but the config keeps tokens (span_max=0); give a config "
                           "with span_max > 0 (a '+W<n>' variant) or no spans")


def prepare_scorer(model, scorer, config: SDTPConfig):
    """A TokenPredictor is checked against the model and config and moved to the model's device and dtype."""
    if isinstance(scorer, TokenPredictor):
        scorer.check_compatible(model, config)
        p = next(model.parameters())
        scorer.to(device=p.device, dtype=p.dtype)
    return scorer


@contextlib.contextmanager
def pruning(model, scorer="norm", config: SDTPConfig | None = None, protect=None, spans: SpanRule | None = None):
    """Prune prefill inside the block; the model is restored exactly on exit.

    scorer: a TokenPredictor, a policy name ("random", "norm", "recent", "attention[-mean|-max][-w<W>][-k<K>]": see
    sdtp_lib.scorers) or callable(hidden, stage, positions).
    protect: optional (B, T) or (T,) bool mask of prompt tokens that must survive (a per-call
    `model(..., sdtp_protect=mask)` overrides it).
    spans: the SpanRule (sdtp_lib.spans) that finds span ends in the prompt's token ids; needed exactly when
    config.span_max > 0 (sdtp_lib.spans.span_rule(config, tokenizer) gives it or None).
    """
    config = config or SDTPConfig.for_model(model)
    _check_model(model, config)
    check_spans(config, spans)
    prepare_scorer(model, scorer, config)
    session = _Session(model, scorer, config, protect, spans)
    _ACTIVE.add(model)
    try:
        session.attach()
        yield session.stats
    finally:
        session.detach()
        _ACTIVE.discard(model)


__all__ = ["pruning", "PruningStats", "PruningError", "select_tokens", "keep_indices", "check_spans"]
