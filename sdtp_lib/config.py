"""SDTPConfig: where to prune and how much. Shared by the engine, saliency and training."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_START_LAYER = 4  # paper's placement study: start at layer 4 ...
DEFAULT_STEP = 3  # ... with a stage every 3 layers
DEFAULT_STAGES = 10  # SDTP; fewer stages (SDTP-low: 5) are the first ones of this placement
_EPS = 1e-9  # guards ceil() against float noise: 0.9**2 * 100 = 81.00000000000001


@dataclass(frozen=True)
class SDTPConfig:
    stage_layers: tuple[int, ...]  # layer l_s: its input decides stage s, and l_s already runs on the kept set
    keep_ratio: float = 0.9  # r: stage s keeps ceil(r**s * T) of the original prompt length T
    num_sink: int = 4  # first tokens always kept (attention sinks)
    local_frac: float = 0.1  # most recent fraction of the prompt always kept (locality)
    num_layers: int | None = None  # depth of the model the stages were placed for (None: checked at use)
    span_max: int = 0  # > 0: keep whole spans of at most this many tokens (sdtp_lib.spans); 0: tokens (the paper)
    min_keep: int = 0  # no stage keeps fewer than min(T, min_keep) tokens: short prompts are pruned less; 0: the paper
    meta: dict = field(default_factory=dict, compare=False)  # free-form notes (model id, variant name)

    def __post_init__(self):
        object.__setattr__(self, "stage_layers", tuple(int(l) for l in self.stage_layers))
        self.validate()

    # ---------------------------------------------------------------- checks
    def validate(self, num_layers: int | None = None) -> None:
        layers, depth = self.stage_layers, num_layers or self.num_layers
        if not layers:
            raise ValueError("SDTPConfig.stage_layers is empty: give at least one stage layer")
        if not (isinstance(self.keep_ratio, (int, float)) and 0.0 < self.keep_ratio <= 1.0):
            raise ValueError(f"SDTPConfig.keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        if layers[0] < 1:
            raise ValueError(f"SDTPConfig.stage_layers: no stage at layer {layers[0]} (the first stage must be >= 1: "
                             "layer 0's input is the raw embedding)")
        if any(b <= a for a, b in zip(layers, layers[1:])):
            raise ValueError(f"SDTPConfig.stage_layers must be strictly increasing, got {list(layers)}")
        if depth is not None and layers[-1] >= depth:
            raise ValueError(f"SDTPConfig.stage_layers {list(layers)}: layer {layers[-1]} is beyond the model's "
                             f"depth ({depth} layers, indices 0..{depth - 1})")
        if not (isinstance(self.min_keep, int) and self.min_keep >= 0):
            raise ValueError(f"SDTPConfig.min_keep must be an int >= 0 (0: no floor), got {self.min_keep!r}")
        if not (isinstance(self.span_max, int) and self.span_max >= 0):
            raise ValueError(f"SDTPConfig.span_max must be an int >= 0 (0: no spans), got {self.span_max!r}")
        if self.num_sink < 0 or not 0.0 <= self.local_frac <= 1.0:
            raise ValueError(f"SDTPConfig: num_sink must be >= 0 and local_frac in [0, 1], "
                             f"got {self.num_sink}, {self.local_frac}")

    # ------------------------------------------------------------- schedule
    @property
    def num_stages(self) -> int:
        return len(self.stage_layers)

    def keep_count(self, stage: int, prompt_len: int) -> int:
        """Tokens kept after stage `stage` (1-based) for a prompt of `prompt_len` tokens (before forced tokens):
        ceil(r**s * T), never below min_keep (nor above T)."""
        k = max(math.ceil(self.keep_ratio ** stage * prompt_len - _EPS), self.min_keep)
        return max(1, min(prompt_len, k))

    def num_local(self, prompt_len: int) -> int:
        return math.ceil(self.local_frac * prompt_len - _EPS)

    def keep_schedule(self, prompt_len: int) -> list[int]:
        """Tokens left after each stage (no protect mask): ceil(r**s * T), never below the always-kept ones."""
        forced = min(prompt_len, self.num_sink + self.num_local(prompt_len))
        return [max(self.keep_count(s, prompt_len), forced) for s in range(1, self.num_stages + 1)]

    def tokens_per_layer(self, prompt_len: int, num_layers: int | None = None) -> list[int]:
        """Tokens each layer computes on for a prompt of `prompt_len` tokens (no protect mask)."""
        depth = num_layers or self.num_layers
        if depth is None:
            raise ValueError("tokens_per_layer needs num_layers (the config does not record the model depth)")
        out, n, it = [], prompt_len, iter(zip(self.stage_layers, self.keep_schedule(prompt_len)))
        nxt = next(it, None)
        for layer in range(depth):
            if nxt is not None and layer == nxt[0]:
                n, nxt = nxt[1], next(it, None)
            out.append(n)
        return out

    # --------------------------------------------------------------- factory
    @classmethod
    def for_model(cls, model_or_depth, keep_ratio: float = 0.9, num_stages: int = 10, start_layer: int | None = None,
                  **kw) -> "SDTPConfig":
        """Default placement: stages from layer 4 every 3 layers, squeezed so the last stage is the last layer.

        Qwen2-7B (28 layers): [4, 7, 10, 13, 16, 19, 21, 23, 25, 27]; Llama2-7B (32): [4, 7, ..., 31].
        Shallow models get fewer stages. "SDTP-low" is num_stages=5: fewer than 10 stages are the first ones of the
        10-stage placement, so a predictor trained for SDTP also serves SDTP-low (on 24 layers, Qwen2.5-0.5B:
        [3, 6, 9, 11, 13], not a placement of its own squeezed to [3, 6, 9, 12, 15]).
        start_layer: the first stage's layer instead of the default (then every 3 layers, squeezed the same way;
        Qwen2-7B from layer 10: [10, 13, 16, 19, 22, 23, 24, 25, 26, 27]).
        """
        depth = model_or_depth if isinstance(model_or_depth, int) else _depth(model_or_depth)
        if depth < 2:
            raise ValueError(f"SDTPConfig.for_model: a model with {depth} layer(s) has no layer to prune at")
        if num_stages < 1:
            raise ValueError(f"SDTPConfig.for_model: num_stages must be >= 1, got {num_stages}")
        if start_layer is not None and not 1 <= start_layer <= depth - 1:
            raise ValueError(f"SDTPConfig.for_model: start_layer must be in [1, {depth - 1}] for a model with {depth} "
                             f"layers, got {start_layer}")
        if num_stages < DEFAULT_STAGES:
            full = cls.for_model(depth, keep_ratio, DEFAULT_STAGES, start_layer, **kw)
            return cls(stage_layers=full.stage_layers[:num_stages], keep_ratio=keep_ratio, num_layers=depth, **kw)
        start = min(DEFAULT_START_LAYER, max(1, depth // 7)) if start_layer is None else start_layer
        n = min(num_stages, depth - start)
        last = depth - 1
        min_step = 2 if last - start >= 2 * (n - 1) else 1
        layers = []
        for i in range(n):
            cand = start if i == 0 else layers[-1] + DEFAULT_STEP
            layers.append(min(cand, last - (n - 1 - i) * min_step) if i else cand)
        return cls(stage_layers=tuple(layers), keep_ratio=keep_ratio, num_layers=depth, **kw)

    @classmethod
    def for_compression(cls, model_or_depth, compression: float, num_stages: int = 10,
                        start_layer: int | None = None, prompt_len: int = 32768, **kw) -> "SDTPConfig":
        """The for_model placement with the keep ratio that gives `compression` (prompt tokens / mean tokens per
        layer) on a `prompt_len`-token prompt (bisection; the ratio barely depends on the length): a later first
        stage then needs a steeper ratio for the same compression."""
        depth = model_or_depth if isinstance(model_or_depth, int) else _depth(model_or_depth)
        make = lambda r: cls.for_model(depth, r, num_stages, start_layer, **kw)  # noqa: E731
        got = lambda c: prompt_len / (sum(c.tokens_per_layer(prompt_len)) / depth)  # noqa: E731
        most = got(make(1e-6))
        if not 1.0 <= compression <= most:
            raise ValueError(f"SDTPConfig.for_compression: {compression}x is out of reach for stages "
                             f"{list(make(0.9).stage_layers)} on {depth} layers: between 1x and {most:.2f}x (the "
                             "always-kept sink and local tokens bound it)")
        lo, hi = 1e-6, 1.0  # compression falls as r grows
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if got(make(mid)) > compression else (lo, mid)
        return make(round(hi, 6))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = asdict(self)
        d["stage_layers"] = list(self.stage_layers)
        for key in ("span_max", "min_keep"):  # configs without them read as they always did
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SDTPConfig":
        known = {"stage_layers", "keep_ratio", "num_sink", "local_frac", "num_layers", "meta", "span_max", "min_keep"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"SDTPConfig: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "SDTPConfig":
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(text_or_path)
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"SDTPConfig: not valid JSON ({p or 'string'}): {e}") from None


def _depth(model) -> int:
    cfg = getattr(model, "config", model)
    cfg = getattr(cfg, "text_config", cfg) if not hasattr(cfg, "num_hidden_layers") else cfg
    return int(cfg.num_hidden_layers)


VARIANTS = {"dense": None, "sdtp": DEFAULT_STAGES, "sdtp-low": 5}  # variant -> number of stages (None: no pruning)


@dataclass(frozen=True)
class Variant:
    """A pruning variant as the evaluations and the profiler write it: "dense", "sdtp" (10 stages) or "sdtp-low"
    (5), optionally with a keep ratio ("sdtp@0.8") or a target compression ("sdtp@2.04x"), the first stage's
    layer ("sdtp@0.8+L8"), the newest fraction always kept ("sdtp@0.8+R0.02": 2% instead of the paper's 10%), whole
    spans of at most n tokens ("sdtp@0.8+R0.02+W32", sdtp_lib.spans), the fewest tokens a stage keeps
    ("sdtp@0.8+M256": short prompts are pruned less), the
    number of stages ("sdtp@2x+S1": one stage at the compression of ten) and an H2O KV budget for the decoding, a
    fraction of the sequence length ("dense+H0.4", "sdtp+H0.4"; dense takes only this one; sdtp_lib.speed.h2o). parse_variant reads the
    text; config() builds the SDTPConfig."""
    name: str
    keep_ratio: float | None = None  # None: the caller's default
    compression: float | None = None  # instead of a keep ratio: the ratio that gives this compression
    start_layer: int | None = None  # None: the default placement
    local_frac: float | None = None  # the newest fraction always kept; None: SDTPConfig's (0.1, the paper's)
    num_stages: int | None = None  # None: the variant's (10 for sdtp, 5 for sdtp-low)
    kv_budget: float | None = None  # H2O's KV budget in decoding, a fraction of the sequence length; None: no eviction
    span_max: int | None = None  # whole spans of at most this many tokens (sdtp_lib.spans); None: tokens
    min_keep: int | None = None  # no stage keeps fewer tokens than this; None: no floor

    @property
    def stages(self) -> int | None:
        """Pruning stages; None for dense."""
        if VARIANTS[self.name] is None:
            return None
        return self.num_stages or VARIANTS[self.name]

    def config(self, model_or_depth, keep_ratio: float = 0.9) -> SDTPConfig | None:
        """None for dense, else the variant's SDTPConfig (keep_ratio: the default when the text names none)."""
        if self.stages is None:
            return None
        kw = {} if self.local_frac is None else {"local_frac": self.local_frac}
        kw |= {} if self.span_max is None else {"span_max": self.span_max}
        kw |= {} if self.min_keep is None else {"min_keep": self.min_keep}
        if self.compression is not None:
            return SDTPConfig.for_compression(model_or_depth, self.compression, self.stages, self.start_layer, **kw)
        return SDTPConfig.for_model(model_or_depth, keep_ratio=self.keep_ratio or keep_ratio, num_stages=self.stages,
                                    start_layer=self.start_layer, **kw)


VARIANT_SYNTAX = ("<dense|sdtp|sdtp-low>[@<keep ratio in (0, 1]>|@<compression>x][+L<first stage layer>]"
                  "[+R<newest fraction always kept, in [0, 1]>][+W<whole spans of at most n tokens>]"
                  "[+M<fewest tokens a stage keeps>][+S<stages>]"
                  "[+H<H2O KV budget in (0, 1]>]")


def parse_variant(text: str) -> Variant:
    """"sdtp" -> Variant("sdtp"); "sdtp@0.8+L8" -> keep ratio 0.8, first stage at layer 8; "sdtp-low@2x" -> the
    ratio that compresses 2x. Refuses anything else with the syntax, naming the text."""
    import re
    m = re.fullmatch(r"(?P<name>[a-z-]+)(?:@(?P<num>[0-9.]+)(?P<x>x?))?(?:\+L(?P<start>\d+))?"
                     r"(?:\+R(?P<local>[0-9.]+))?(?:\+W(?P<span>\d+))?(?:\+M(?P<floor>\d+))?(?:\+S(?P<stages>\d+))?(?:\+H(?P<kv>[^+]+))?", str(text))
    bad = lambda why: ValueError(f"variant {text!r}: {why}; expected {VARIANT_SYNTAX}")  # noqa: E731
    if m is None or m["name"] not in VARIANTS:
        raise bad("not a variant")
    if VARIANTS[m["name"]] is None and (m["num"] or m["start"] or m["local"] or m["span"] or m["floor"] or m["stages"]):
        raise bad(f"{m['name']} keeps every token, it has no keep ratio or stages")
    def number(key: str, ok, rule: str) -> float | None:  # the group as a float, None when absent
        if not m[key]:
            return None
        try:
            v = float(m[key])
        except ValueError:
            raise bad(f"{m[key]!r} is not a number") from None
        if not ok(v):
            raise bad(rule.format(v))
        return v
    if m["x"]:
        num = number("num", lambda v: v >= 1.0, "a compression is >= 1x, got {}x")
    else:
        num = number("num", lambda v: 0.0 < v <= 1.0, "the keep ratio must be in (0, 1], got {}")
    start = int(m["start"]) if m["start"] else None
    if start is not None and start < 1:
        raise bad("the first stage's layer must be >= 1")
    local = number("local", lambda v: 0.0 <= v <= 1.0, "the newest fraction always kept must be in [0, 1], got {}")
    span = int(m["span"]) if m["span"] else None
    if span is not None and span < 1:
        raise bad("a span holds at least 1 token (+W<n>, n >= 1)")
    floor = int(m["floor"]) if m["floor"] else None
    stages = int(m["stages"]) if m["stages"] else None
    if stages is not None and stages < 1:
        raise bad("the number of stages must be >= 1")
    kv = number("kv", lambda v: 0.0 < v <= 1.0, "the H2O KV budget is a fraction of the sequence length in (0, 1], got {}")
    return Variant(m["name"], None if m["x"] else num, num if m["x"] else None, start, local, stages, kv, span, floor)
