"""Prefill and end-to-end latency, memory and FLOPs: dense vs SDTP vs SDTP-low, HF's loop vs this project's.

    python -m sdtp_lib profile --model qwen2-7b-random --lengths 4096 32768 --out runs/profile
    python -m sdtp_lib profile --model qwen2-7b-random --lengths 32768 --variants dense sdtp sdtp@0.8 \
        --attn sdpa flash_attention_4

Definitions: prefill = one forward from input ids to the first token's logits (logits_to_keep=1);
end-to-end = prefill + `new_tokens` greedy tokens (fixed length); every timing follows a discarded warm-up
of the same shape, CUDA-synchronised, median of `repeats` (min/max kept); peak memory =
torch.cuda.max_memory_allocated over the end-to-end run. Engines: "hf" = model(...) / model.generate(...);
"sdtp" = the same prefill + sdtp_lib.speed.decode.greedy_generate (static per-layer caches, CUDA graphs).
Variants: "dense", "sdtp", "sdtp-low", the last two also as "sdtp@0.8" (keep ratio r = 0.8 instead of the config's),
"sdtp@2.04x" (the ratio that compresses 2.04x) and "+L8" (first stage at layer 8): sdtp_lib.config.parse_variant.
Attention backends: one run may time several (ProfileConfig.attns), switched at runtime on the same model; rows are
keyed by (prompt_len, attn, variant, engine), speedups are against HF dense with SDPA (else the run's first backend).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import numbers
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..config import VARIANTS, SDTPConfig, Variant, parse_variant
from ..models import ATTN_IMPLEMENTATIONS
from .decode import greedy_generate
from ..engine import forced_mask, keep_indices, pruning
from ..spans import SpanRule
from ..scorers.base import ScorerWrapper
from ..scorers.fusion import RankFusion, fusion_parts
from ..scorers.registry import make_scorer
from ..scorers.predictor import TokenPredictor

log = logging.getLogger(__name__)

QWEN2_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072, rope_theta=1_000_000.0,
                use_sliding_window=False, tie_word_embeddings=False)
ENGINES = ("hf", "sdtp")


@dataclass
class ProfileConfig:
    lengths: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072)  # prompt lengths
    variants: tuple[str, ...] = ("dense", "sdtp", "sdtp-low")
    engines: tuple[str, ...] = ENGINES  # "hf": model/generate; "sdtp": the CUDA-graph loop
    attns: tuple[str, ...] = ("sdpa",)  # attention backends (models.ATTN_IMPLEMENTATIONS); the model loads with
    # the first, profile() switches between them at runtime
    new_tokens: int = 128  # generated tokens for end-to-end
    repeats: int = 3  # timed prefill repeats (median reported)
    keep_ratio: float = 0.9  # r
    scorer: str = "predictor"  # "predictor" (production width, untrained weights are as fast), "hybrid" (the
    # same with the window attention as an input) or a policy ("attention": the window attention alone)
    chunk_tokens: int | None = 32768  # engine "sdtp": prefill MLPs in chunks of this many tokens (memory)
    fast_kernels: bool = True  # engine "sdtp": fused norms / rotary / SiLU-mul in prefill (sdtp_lib.speed.kernels)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse a configuration that cannot be profiled (before any model is loaded), naming what and why."""
        def count(name: str, v, what: str) -> None:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"ProfileConfig.{name} {v!r}: {what}")
        lengths = list(self.lengths)
        if not lengths:
            raise ValueError("ProfileConfig.lengths is empty: give at least one prompt length (tokens)")
        bad = [T for T in lengths if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1]
        if bad:
            raise ValueError(f"ProfileConfig.lengths {lengths}: {', '.join(map(repr, bad))} "
                             f"{'is not a usable prompt length' if len(bad) == 1 else 'are not usable prompt lengths'}"
                             " (a prompt length is a whole number of tokens >= 1)")
        twice = sorted({T for T in lengths if lengths.count(T) > 1})
        if twice:
            raise ValueError(f"ProfileConfig.lengths {lengths}: {', '.join(map(str, twice))} given twice (rows are "
                             "keyed by prompt length)")
        for name, vals, known in (("variants", self.variants, None), ("engines", self.engines, ENGINES),
                                  ("attns", self.attns, ATTN_IMPLEMENTATIONS)):
            vals = list(vals)
            unknown = [v for v in vals if known is not None and v not in known]  # variants: checked below
            if not vals or unknown or len(set(vals)) != len(vals):
                raise ValueError(f"ProfileConfig.{name} {vals}: give at least one, without repeats, from " + (
                    f"{list(known)}" if known else f"{list(VARIANTS)} (sdtp, sdtp-low also with @r, e.g. sdtp@0.8)"))
        count("new_tokens", self.new_tokens, "generate at least 1 token for end-to-end")
        count("repeats", self.repeats, "time at least 1 repeat")
        if self.chunk_tokens is not None:
            count("chunk_tokens", self.chunk_tokens, "a chunk has at least 1 token (or None: no chunking)")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"ProfileConfig.keep_ratio {self.keep_ratio!r}: must be in (0, 1]")
        same = {}  # the resolved variant -> its text: "sdtp" and "sdtp@0.9" are one variant when keep_ratio is 0.9
        for v in self.variants:
            try:
                key = self.variant(v)
            except ValueError as e:
                raise ValueError(f"ProfileConfig.variants {list(self.variants)}: {e}") from None
            if key in same:
                raise ValueError(f"ProfileConfig.variants {list(self.variants)}: {same[key]!r} and {v!r} are the same "
                                 f"variant (keep_ratio {self.keep_ratio})")
            same[key] = v

    def variant(self, text: str) -> Variant:
        """The variant a text names, its keep ratio filled in from keep_ratio when it names neither a ratio nor a
        compression (dense: none)."""
        v = parse_variant(text)
        if v.stages is None or v.keep_ratio is not None or v.compression is not None:
            return v
        return replace(v, keep_ratio=self.keep_ratio)


def qwen2_7b_random(device="cuda", dtype=torch.bfloat16, attn="sdpa"):
    """Qwen2-7B's architecture with random weights (speed does not depend on weight values)."""
    from transformers import AutoModelForCausalLM, Qwen2Config
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN2_7B), dtype=dtype, attn_implementation=attn)
    model.config.sdtp_model_id = "qwen2-7b-random"
    return model.eval()


def load_profile_model(spec: str, dtype=None, device=None, attn: str = "sdpa"):
    """(model, weights label) for a profile: "qwen2-7b-random" (GPU), a tiny test model (random weights),
    or any load_model spec with real weights, with the attention backend `attn` (models.ATTN_IMPLEMENTATIONS).
    The label goes into every output."""
    from ..models import check_attn, load_model
    if spec == "qwen2-7b-random":
        if not torch.cuda.is_available():
            raise ValueError("qwen2-7b-random needs a GPU; on CPU profile the default: --model smollm2-135m")
        check_attn(attn, "cuda")
        return qwen2_7b_random(attn=attn), "random (Qwen2-7B architecture; speed does not depend on weights)"
    model, _ = load_model(spec, dtype=dtype, device=device, attn_implementation=attn)
    return model, "random (tiny test model)" if spec in ("tiny-qwen2", "tiny-llama") else "real"


def host_sync_in_prefill(model, scorer, config, ids) -> str | None:
    """Run a pruned prefill with torch.cuda.set_sync_debug_mode("error") around the decoder's layer loop;
    None when nothing synchronised with the host, else the error message."""
    dec = model.get_decoder()
    pre = dec.layers[0].register_forward_pre_hook(lambda *a: torch.cuda.set_sync_debug_mode("error"))
    post = dec.norm.register_forward_hook(lambda *a: torch.cuda.set_sync_debug_mode("default"))
    try:
        with torch.no_grad(), pruning(model, scorer, config, spans=profile_spans(model, config)):
            model(ids, logits_to_keep=1)
        return None
    except RuntimeError as e:
        return str(e)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        pre.remove()
        post.remove()


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, stats: dict | None = None):
    """(median, min, max) seconds of fn() after one discarded warm-up call (its time goes to stats["warmup_s"]:
    a first call at a new shape pays one-off costs, e.g. cuDNN building attention plans)."""
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    if stats is not None:
        stats["warmup_s"] = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts), max(ts)


def _peak_reset():
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None  # None on CPU


class TimedScorer(ScorerWrapper):
    """Wraps a scorer and times every call inside a real prefill: CUDA events around it on GPU (no host sync;
    the sum is the device time the scorer's kernels occupy), wall clock on CPU."""

    def __init__(self, scorer):
        super().__init__(scorer)
        self.spans = []

    def __call__(self, hidden, stage, positions=None, **layer_kw):
        if hidden.is_cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = self.inner(hidden, stage, positions, **layer_kw)
            b.record()
            self.spans.append((a, b))
            return out
        t = time.perf_counter()
        out = self.inner(hidden, stage, positions, **layer_kw)
        self.spans.append(time.perf_counter() - t)
        return out

    def durations(self) -> list[float]:
        """Seconds of each call, in call order."""
        _sync()
        return [s if isinstance(s, float) else s[0].elapsed_time(s[1]) / 1e3 for s in self.spans]

    def per_prefill(self, prefills: int, skip: int = 1) -> list[float]:
        """The scorer's seconds in each of `prefills` equal prefills (every prefill calls it once per stage), the
        first `skip` (the warm-up, which pays first-call costs at a new shape) left out."""
        d = self.durations()
        if prefills < 1 or len(d) % prefills:
            raise ValueError(f"{len(d)} scorer calls do not split into {prefills} prefills of equal stages")
        k = len(d) // prefills
        return [sum(d[i * k:(i + 1) * k]) for i in range(skip, prefills)]


HYBRID_WINDOW = 32  # the hybrid predictor profiled: window attention of the last 32 tokens (as trained)


PROFILE_SPAN_EVERY = 16  # a profile's prompts are random ids: with spans on, every 16th vocabulary id ends a span


def profile_spans(model, conf: SDTPConfig | None):
    """The SpanRule a profile prunes with when the variant keeps whole spans ("+W<n>"), else None. The prompts are
    random ids, so the rule is a stand-in: ids divisible by PROFILE_SPAN_EVERY end a span (spans of 16 tokens on
    average, as a sentence). What it times, ranking spans and gathering them, does not depend on where they end."""
    if conf is None or not conf.span_max:
        return None
    return stand_in_rule(model.config.vocab_size)


@functools.lru_cache(maxsize=None)
def stand_in_rule(vocab_size: int) -> SpanRule:
    """The stand-in SpanRule of a vocabulary: ids divisible by PROFILE_SPAN_EVERY end a span (built once per size)."""
    return SpanRule(range(0, vocab_size, PROFILE_SPAN_EVERY), vocab_size)


SELECTION_REPEATS = 20


def selection_s(conf: SDTPConfig, T: int, vocab_size: int, device, repeats: int = SELECTION_REPEATS) -> float:
    """Median seconds a prefill of T tokens spends choosing what its stages keep (engine.keep_indices: top-k, or
    whole spans under the stand-in rule of profile_spans, span ids included), alone on random scores, synchronised
    before and after, so host launches count: an upper bound of what the same kernels cost inside a prefill. A '+W'
    variant's value minus that of the same variant without spans is what span selection adds."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(vocab_size, (1, T), generator=g).to(device)  # (1, T)
    scores0 = torch.rand(1, T, generator=g).to(device)  # (1, T)
    forced0 = forced_mask(conf, torch.ones(1, T, dtype=torch.long, device=device), None)  # (1, T)
    rule = stand_in_rule(vocab_size) if conf.span_max else None

    def select():
        spans = rule.span_ids(ids, conf.span_max) if rule is not None else None
        scores, forced = scores0, forced0
        for k in conf.keep_schedule(T):  # tokens left after each stage, as in the engine
            idx, spans = keep_indices(scores, forced, k, spans, T)  # (1, k)
            scores, forced = scores.gather(1, idx), forced.gather(1, idx)
    return timed(select, repeats)[0]


def profile_scorer(model, conf: SDTPConfig, name: str):
    """The scorer a profile times: an untrained predictor of production width ("predictor", "hybrid": as fast as
    a trained one), a policy, or several of these joined by '+' (their rank fusion, sdtp_lib.scorers.fusion)."""
    parts = fusion_parts(name)
    if parts is not None:
        return RankFusion(tuple(profile_scorer(model, conf, part) for part in parts))
    if name in ("predictor", "hybrid"):
        p = next(model.parameters())
        return TokenPredictor.for_model(model, conf, attn_window=HYBRID_WINDOW if name == "hybrid" else 0).to(
            device=p.device, dtype=p.dtype)
    return make_scorer(name)


def set_attn(model, attn: str) -> None:
    """Switch the model's attention backend at runtime: transformers 5.x's set_attn_implementation where the model
    has it, else its config. Refuses a model that did not switch (its rows would time another backend)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
    else:
        model.config._attn_implementation = attn
    if model.config._attn_implementation != attn:
        raise ValueError(f"ProfileConfig.attns: {type(model).__name__} cannot switch its attention backend to "
                         f"{attn!r} at runtime; profile one backend per run (--attn {attn})")


def _plan(model, cfg: ProfileConfig, variant: str):
    """(SDTPConfig, scorer) of a variant; (None, None) for dense."""
    conf = cfg.variant(variant).config(model, cfg.keep_ratio)
    if conf is None:
        return None, None
    return conf, profile_scorer(model, conf, cfg.scorer)


@torch.no_grad()
def profile(model, cfg: ProfileConfig, progress=print, on_row=None, skip=frozenset()) -> list[dict]:
    """Rows for every (length, attn, variant, engine); the backend is switched at runtime before each attn's rows
    (the same scorers for every backend) and restored at the end; on_row(rows) after each row (e.g. to save
    partial results); the (prompt_len, attn) pairs in `skip` are not run (a resumed run holds them)."""
    p = next(model.parameters())
    dev, t_start = p.device, time.perf_counter()
    rows = []
    plans = {v: _plan(model, cfg, v) for v in cfg.variants}
    loaded = model.config._attn_implementation
    try:
        for T in cfg.lengths:
            attns = [a for a in cfg.attns if (T, a) not in skip]
            if not attns:
                continue
            ids = torch.randint(0, model.config.vocab_size - 1, (1, T), device=dev)
            for attn in attns:
                set_attn(model, attn)
                for variant in cfg.variants:
                    rows += _variant_rows(model, cfg, ids, attn, variant, plans[variant], rows, on_row, progress,
                                          t_start)
            del ids
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finally:
        set_attn(model, loaded)
    return rows


def _variant_rows(model, cfg, ids, attn, variant, plan, done, on_row, progress, t_start) -> list[dict]:
    """One variant's rows on every engine, under the backend now set; on_row(done + rows so far) after each."""
    conf, scorer = plan
    block = (lambda: pruning(model, scorer, conf, spans=profile_spans(model, conf))) if conf else None
    T, out = ids.shape[1], []
    sel_s = selection_s(conf, T, model.config.vocab_size, ids.device) if conf else None  # the same on every engine
    for engine in cfg.engines:
        chunk = cfg.chunk_tokens if engine == "sdtp" else None
        fast = cfg.fast_kernels and engine == "sdtp"
        row = dict(prompt_len=T, variant=variant, engine=engine, attn=attn,
                   keep_ratio=conf.keep_ratio if conf else None, stage_layers=list(conf.stage_layers) if conf else None,
                   local_frac=conf.local_frac if conf else None, chunk_tokens=chunk, fast_kernels=bool(fast),
                   **({"span_max": conf.span_max} if conf and conf.span_max else {}))
        row.update(_prefill_row(model, ids, conf, scorer, block, cfg.repeats, chunk, fast))
        if sel_s is not None:
            row["selection_pct"] = 100 * sel_s / row["prefill_s"]
        row.update(_e2e(model, ids, engine, conf, scorer, block, cfg.new_tokens, chunk, fast, row["prefill_s"]))
        out.append(row)
        if on_row is not None:
            on_row(done + out)
        where = f"{attn:>17} " if len(cfg.attns) > 1 else ""
        progress(f"{T:>7} {where}{variant:>8} {engine:>4}: prefill {row['prefill_s']:.3f} s | e2e "
                 f"{row['e2e_s']:.2f} s | decode {row['decode_ms_per_token']:.1f} ms/tok | peak "
                 f"{_fmt(row['peak_mem_gib'])} GiB | compression {row['compression']:.2f}x | "
                 f"{time.perf_counter() - t_start:.0f} s elapsed")
    return out


def _prefill_row(model, ids, conf, scorer, block, repeats, chunk=None, fast=False) -> dict:
    from ..flops import prefill_flops
    from .kernels import prefill_kernels
    T = ids.shape[1]

    def fwd():
        with prefill_kernels(model, chunk, fast):
            return model(ids, logits_to_keep=1)
    w: dict = {}
    if block is None:
        med, lo, hi = timed(fwd, repeats, w)
        kept = [T] * model.config.num_hidden_layers
        flops, pred_s = prefill_flops(model, kept), 0.0
    else:  # a predictor or a layer-reading scorer (window attention) is timed inside the timed prefills themselves
        timed_scorer = (isinstance(scorer, (TokenPredictor, RankFusion))
                        or getattr(scorer, "needs_layer", False))  # (CUDA events)
        ts = TimedScorer(scorer) if timed_scorer else None
        with (pruning(model, ts, conf, spans=profile_spans(model, conf)) if ts else block()) as st:
            med, lo, hi = timed(fwd, repeats, w)
        kept, flops = st.kept_per_layer, st.flops_pruned
        pred_s = statistics.median(ts.per_prefill(repeats + 1)) if ts else 0.0  # the timed prefills, not the warm-up
    return dict(prefill_s=med, prefill_min_s=lo, prefill_max_s=hi, prefill_warmup_s=w["warmup_s"], flops=flops,
                tflops_per_s=flops / med / 1e12, kept_per_layer=kept, compression=T / (sum(kept) / len(kept)),
                kv_cache_gib=kv_cache_bytes(model, kept) / 2**30, predictor_overhead_pct=100 * pred_s / med)


def kv_cache_bytes(model, tokens_per_layer: list[int]) -> int:
    """Bytes of K and V held after a prefill where layer l cached tokens_per_layer[l] tokens."""
    from ..flops import attention_dims
    per_token = 2 * model.config.num_key_value_heads * attention_dims(model)[1] * next(model.parameters()).element_size()
    return per_token * sum(tokens_per_layer)


def _e2e(model, ids, engine, conf, scorer, block, new_tokens, chunk=None, fast=False, prefill_s=None) -> dict:
    """End-to-end on the engine; HF's decode ms/token = (e2e - the row's prefill median) / (new_tokens - 1);
    decode_attn: the decode loop's attention kernel (engine "sdtp"; None for "hf")."""
    if engine == "sdtp":
        run = lambda: greedy_generate(model, ids, new_tokens, scorer=scorer, config=conf, chunk_tokens=chunk,
                                      fast_kernels=fast, spans=profile_spans(model, conf))
        warm = run().timings["e2e_s"]  # warm-up of the same shape
        _peak_reset()
        res = run()
        t = res.timings
        return dict(e2e_s=t["e2e_s"], e2e_warmup_s=warm, decode_ms_per_token=t["decode_ms_per_token"],
                    peak_mem_gib=_peak_gib(), decode_attn=res.decode_attn)
    gen = lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    ctx = block() if block else contextlib.nullcontext()
    with ctx:
        _sync()
        t0 = time.perf_counter()
        gen()  # warm-up of the same shape
        _sync()
        warm = time.perf_counter() - t0
        _peak_reset()
        _sync()
        t0 = time.perf_counter()
        gen()
        _sync()
        e2e = time.perf_counter() - t0
    return dict(e2e_s=e2e, e2e_warmup_s=warm, decode_ms_per_token=1000 * (e2e - prefill_s) / max(1, new_tokens - 1),
                peak_mem_gib=_peak_gib(), decode_attn=None)  # HF's own decode: the model's backend


def header(model, cfg: ProfileConfig, weights: str, check_sync: bool = True) -> dict:
    import transformers

    from ..io import provenance
    sync = None
    if check_sync and next(model.parameters()).is_cuda:  # proof that the pruned prefill's layer loop never syncs with the host
        conf = SDTPConfig.for_model(model, keep_ratio=cfg.keep_ratio)
        ids = torch.randint(0, model.config.vocab_size - 1, (1, 2048), device=next(model.parameters()).device)
        pred = profile_scorer(model, conf, cfg.scorer)  # the scorer this profile times
        from .kernels import prefill_kernels
        with prefill_kernels(model, cfg.chunk_tokens, cfg.fast_kernels):
            if cfg.fast_kernels:
                model(ids, logits_to_keep=1)  # compile the fused kernels before the check
            err = host_sync_in_prefill(model, pred, conf, ids)
        where = "fast_prefill" if cfg.fast_kernels else "HF modules"
        sync = (f"no host sync ({where}, scorer {cfg.scorer}, set_sync_debug_mode('error'))" if err is None
                else f"host sync ({cfg.scorer}): {err}")
    return {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "host_sync_check": sync,
            "weights": weights, "model": getattr(model.config, "sdtp_model_id", model.config.name_or_path),
            "dtype": str(next(model.parameters()).dtype), "attn": model.config._attn_implementation,
            "profile_config": asdict(cfg), "transformers": transformers.__version__, **provenance()}


def resume(path, head: dict, cfg: ProfileConfig) -> tuple[dict, list[dict]]:
    """(header, rows) of an unfinished profile at `path`; refuses one made with another configuration, model
    or GPU. Rows of a (length, attn) with fewer than variants x engines rows are dropped (that pair reruns).
    A file from before attns (no attns in its profile_config) ran its header's attn alone."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no profile at {path}")
    data = json.loads(path.read_text())
    h = data["header"]
    keep = ("gpu", "model", "weights", "dtype", "attn", "versions", "git_commit")  # same code, same machine
    mine = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k != "lengths"}  # tuples as lists
    theirs = {"attns": [h.get("attn", "sdpa")], **h.get("profile_config", {})}
    diff = [k for k in keep if h.get(k) != head.get(k)] + [k for k in mine if mine[k] != theirs.get(k)]
    if diff:
        raise ValueError(f"--resume: {path} was made with a different {', '.join(diff)}; start a new run")
    groups: dict = {}  # (prompt_len, attn) -> rows: the unit that resumes
    for r in data["rows"]:
        groups.setdefault((r["prompt_len"], r.get("attn", h.get("attn", "sdpa"))), []).append(r)
    need = len(cfg.variants) * len(cfg.engines)
    rows = [r for rs in groups.values() if len(rs) == need for r in rs]
    h = {**h, "resumed": h.get("resumed", 0) + 1}
    return h, rows


def done_groups(rows: list[dict], default_attn: str = "sdpa") -> set[tuple[int, str]]:
    """The (prompt_len, attn) pairs that rows hold (profile(..., skip=) does not run them again)."""
    return {(r["prompt_len"], r.get("attn", default_attn)) for r in rows}


def row_order(cfg: ProfileConfig):
    """Sort key putting rows in profile()'s order: length, attn, variant, engine (resumed rows first otherwise)."""
    def key(r):
        pos = lambda seq, v: list(seq).index(v) if v in seq else len(seq)
        return (r["prompt_len"], pos(cfg.attns, r.get("attn")), pos(cfg.variants, r["variant"]),
                pos(cfg.engines, r["engine"]))
    return key


def row_attns(rows: list[dict], default_attn: str = "sdpa") -> list[str]:
    """The attention backends of rows, in order of appearance; a row without "attn" (files from before attns)
    ran `default_attn` (its header's attn)."""
    return list(dict.fromkeys(r.get("attn", default_attn) for r in rows))


def baseline_attn(rows: list[dict], default_attn: str = "sdpa") -> str:
    """The backend of the speedups' baseline (HF dense): "sdpa" when the rows have it, else their first."""
    attns = row_attns(rows, default_attn)
    return "sdpa" if "sdpa" in attns or not attns else attns[0]


def rows_by_key(rows: list[dict], default_attn: str = "sdpa") -> dict:  # (prompt_len, variant, engine, attn) -> row
    return {(r["prompt_len"], r["variant"], r["engine"], r.get("attn", default_attn)): r for r in rows}


def rows_per_length(runs) -> dict[int, tuple[str, list[dict]]]:
    """{prompt length: (label, rows)} from runs [(label, rows), ...]: each length's rows whole from the last run
    that has that length, so every speedup stays within one run (its own HF dense baseline)."""
    out: dict[int, tuple[str, list[dict]]] = {}
    for label, rows in runs:
        for T in {r["prompt_len"] for r in rows}:
            out[T] = (label, [r for r in rows if r["prompt_len"] == T])
    return dict(sorted(out.items()))


def _x(base: dict | None, row: dict, key: str) -> str:  # speedup base / row, "-" without a base
    return f"{base[key] / row[key]:.2f}x" if base else "-"


def markdown(rows: list[dict], default_attn: str = "sdpa") -> str:
    """Table: per prompt length, (attn,) variant and engine; speedups vs HF dense of the same length with the
    baseline backend (baseline_attn). The attn column appears when the rows have more than one backend."""
    b_attn = baseline_attn(rows, default_attn)
    by = rows_by_key(rows, default_attn)
    several = len(row_attns(rows, default_attn)) > 1
    cols = 13 + several
    out = ["| prompt | variant | engine | " + ("attn | " if several else "") + "prefill s (min-max) | prefill x | "
           "e2e s | e2e x | decode ms/tok | peak GiB | TFLOPs | TFLOP/s | compression | predictor % | selection % |",
           "|" + "---|" * (cols + 1)]
    for r in rows:
        b = by.get((r["prompt_len"], "dense", "hf", b_attn))
        attn = f"{r.get('attn', default_attn)} | " if several else ""
        out.append(f"| {_len_label(r['prompt_len'])} | {r['variant']} | {r['engine']} | {attn}{r['prefill_s']:.3f} "
                   f"({r['prefill_min_s']:.3f}-{r['prefill_max_s']:.3f}) | {_x(b, r, 'prefill_s')} | "
                   f"{r['e2e_s']:.2f} | {_x(b, r, 'e2e_s')} | {r['decode_ms_per_token']:.1f} | {_fmt(r['peak_mem_gib'])} | "
                   f"{r['flops'] / 1e12:.1f} | {r['tflops_per_s']:.3g} | {r['compression']:.2f}x | "
                   f"{r['predictor_overhead_pct']:.2f} | {_fmt(r.get('selection_pct'), '.2f')} |")
    return "\n".join(out)


def summary(rows: list[dict], variant: str = "sdtp", attn: str | None = None, default_attn: str = "sdpa") -> str:
    """The issue's two questions per prompt length, for one variant on backend `attn` (default: the baseline's):
    (1) what pruning buys on this project's engine (speedup vs its own dense of the same backend, against the FLOPs
    ratio; KV bytes vs tokens kept; predictor share) and (2) what a user gets (this project's SDTP vs plain HF dense
    with the baseline backend, SDPA when the run has it: prefill, end-to-end, peak memory)."""
    base = baseline_attn(rows, default_attn)
    attn = attn or base
    by = rows_by_key(rows, default_attn)
    out = [f"| prompt | {variant} prefill vs own dense (FLOPs ratio) | KV bytes / dense (tokens kept / dense) | "
           "predictor % | prefill vs HF dense | e2e vs HF dense | decode ms/tok HF dense -> SDTP | "
           "peak GiB HF dense -> SDTP |", "|" + "---|" * 8]
    for T in sorted({r["prompt_len"] for r in rows}):
        hf, dn = by.get((T, "dense", "hf", base)), by.get((T, "dense", "sdtp", attn))
        sp = by.get((T, variant, "sdtp", attn))
        if not (hf and sp):
            continue
        own = f"{dn['prefill_s'] / sp['prefill_s']:.2f}x ({dn['flops'] / sp['flops']:.2f}x)" if dn else "-"
        kv = f"{sp['kv_cache_gib'] / hf['kv_cache_gib']:.3f} ({sum(sp['kept_per_layer']) / sum(hf['kept_per_layer']):.3f})"
        mem = "-"
        if hf["peak_mem_gib"] is not None:
            less = 100 * (1 - sp["peak_mem_gib"] / hf["peak_mem_gib"])
            mem = f"{hf['peak_mem_gib']:.1f} -> {sp['peak_mem_gib']:.1f} ({f'{less:.0f}% less' if less >= 0.5 else 'same'})"
        out.append(f"| {_len_label(T)} | {own} | {kv} | {sp['predictor_overhead_pct']:.2f} | {hf['prefill_s'] / sp['prefill_s']:.2f}x | "
                   f"{hf['e2e_s'] / sp['e2e_s']:.2f}x | {hf['decode_ms_per_token']:.1f} -> {sp['decode_ms_per_token']:.1f} | {mem} |")
    return "\n".join(out)


def backend_summary(rows: list[dict], default_attn: str = "sdpa") -> str:
    """Per prompt length, backend and pruned variant: SDTP on this project's engine against HF dense with the
    baseline backend (SDPA when the run has it) and against HF dense with the same backend (e.g. flash-attn 4)."""
    base = baseline_attn(rows, default_attn)
    by = rows_by_key(rows, default_attn)
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows) if parse_variant(v).stages is not None]
    out = [f"| prompt | attn | variant | SDTP prefill s | prefill vs HF dense {base} | prefill vs HF dense same attn | "
           f"e2e vs HF dense {base} | e2e vs HF dense same attn | decode ms/tok | decode attn | compression |",
           "|" + "---|" * 11]
    for T in sorted({r["prompt_len"] for r in rows}):
        hf = by.get((T, "dense", "hf", base))
        for attn in row_attns(rows, default_attn):
            own = by.get((T, "dense", "hf", attn))
            for v in variants:
                sp = by.get((T, v, "sdtp", attn))
                if sp is None:
                    continue
                out.append(f"| {_len_label(T)} | {attn} | {v} | {sp['prefill_s']:.3f} | {_x(hf, sp, 'prefill_s')} | "
                           f"{_x(own, sp, 'prefill_s')} | {_x(hf, sp, 'e2e_s')} | {_x(own, sp, 'e2e_s')} | "
                           f"{sp['decode_ms_per_token']:.1f} | {sp.get('decode_attn') or '-'} | "
                           f"{sp['compression']:.2f}x |")
    return "\n".join(out)


def _len_label(n: int) -> str:  # 4096 -> "4K"; other lengths as they are
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def write(path, head: dict, rows: list[dict], partial_ok: bool = False) -> Path:
    """Atomic JSON write; an existing file is only replaced by the same run's update (partial_ok)."""
    from ..io import atomic_write_text
    return atomic_write_text(path, json.dumps({"header": head, "rows": rows}, indent=1) + "\n", overwrite=partial_ok)
