"""The quality-vs-speed frontier's data: each scorer and keep ratio of a synthetic-suite result (its accuracy as a
share of dense) matched, explicitly, to one prefill measurement on the Qwen2-7B shape (its speedup over HF dense
with SDPA at one prompt length).

Matching rules (`speed_scorer`): the predictor, "auto" and predictor files use the predictor's rows; "attention"
and its settings ("attention-mean-k15", ...) the window-attention rows; "hybrid" the hybrid's; the norm / recent /
random policies have no measurement of their own and use the predictor's row (their scoring costs less than the
predictor's MLP, so the row understates their speed slightly); the saliency oracle is not deployable (it needs the
answer) and gets no speed. Variant (SDTP / SDTP-low), keep ratio, always-kept fraction, whole spans (+W) and keep
floor (+M) must be equal; a spec with its own first layer, stage count or H2O budget gets no row. A row's HF dense
baseline comes from the same GPU. Every point names the row it uses (file, backend, seconds, and where its HF dense
baseline comes from).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..config import parse_variant
from ..eval.scorers import parse_spec

POLICY_PROXY = ("norm", "recent", "random")  # no speed row of their own: the predictor's row stands in
H2O = re.compile(r"\+H([^+:]+)")


def h2o_base(spec: str) -> tuple[str, float | None]:
    """"sdtp+H0.4:attention" -> ("sdtp:attention", 0.4), "dense+H0.4" -> ("dense", 0.4); without +H: (spec, None)."""
    m = H2O.search(spec)
    return (spec, None) if m is None else (H2O.sub("", spec, count=1), float(m.group(1)))


parse = parse_spec  # (variant, scorer); an H2O budget is the variant's kv_budget

@dataclass(frozen=True)
class SpeedRow:
    """One pruned prefill on this project's engine and the HF dense SDPA prefill it is compared with."""
    scorer: str
    variant: str
    keep_ratio: float
    local_frac: float
    prompt_len: int
    attn: str
    prefill_s: float
    base_prefill_s: float
    source: str  # the file, relative to reports/results
    base_source: str  # the file the HF dense baseline comes from
    span_max: int = 0  # whole spans of at most this many tokens (+W); 0: tokens
    min_keep: int = 0  # the keep floor (+M); 0: none
    gpu: str = ""  # the profile's GPU (its header), which the baseline shares

    @property
    def speedup(self) -> float:
        return self.base_prefill_s / self.prefill_s

    def describe(self) -> str:
        base = "same file" if self.base_source == self.source else self.base_source
        gpu = f", {self.gpu}" if self.gpu else ""
        extra = _settings(self.local_frac, self.span_max, self.min_keep)
        return (f"{self.scorer}, {self.variant} r={self.keep_ratio:g}{extra}, {self.prompt_len // 1024}K{gpu}, "
                f"{self.attn}: "
                f"{self.prefill_s:.3f} s vs HF dense SDPA {self.base_prefill_s:.3f} s ({base}) = "
                f"{self.speedup:.2f}x; {self.source}")


def _settings(local_frac: float, span_max: int, min_keep: int) -> str:
    """" R=0.02 W=96 M=256": what a row or spec sets besides its keep ratio (the paper's 10% always kept, tokens and
    no floor are left out)."""
    return "".join(f" {k}={x:g}" for k, x, default in (("R", local_frac, 0.1), ("W", span_max, 0), ("M", min_keep, 0))
                   if x != default)


def _dense_hf(rows: list[dict], header: dict, length: int) -> dict | None:
    return next((r for r in rows if r["variant"] == "dense" and r["engine"] == "hf" and r["prompt_len"] == length
                 and (r.get("attn") or header.get("attn", "sdpa")) == "sdpa"), None)


def speed_rows(files: dict[str, dict]) -> list[SpeedRow]:
    """The pruned rows on this project's engine of profile files {path relative to reports/results: JSON}, each
    with its HF dense SDPA baseline at the same length on the same GPU: from the same file, else another file of the
    same folder, else the first file given (the headline run). A row without any baseline is left out, and so is a
    row with its own first layer, stage count or compression target (no spec is matched to those)."""
    out = []
    first = next(iter(files), None)
    for rel, d in files.items():
        head, rows = d["header"], d["rows"]
        pc = head.get("profile_config", {})
        folder = PurePosixPath(rel).parts[0]
        order = [rel] + [k for k in files if k != rel and PurePosixPath(k).parts[0] == folder] + \
                ([first] if first not in (None, rel) else [])
        order = [k for k in order if files[k]["header"].get("gpu") == head.get("gpu")]
        for r in rows:
            if r["engine"] != "sdtp" or r["variant"] == "dense":
                continue
            v = parse_variant(r["variant"])  # "sdtp", or "sdtp@0.8+R0.02+W96" in newer profiles
            if v.start_layer is not None or v.num_stages is not None or v.compression is not None:
                continue
            base = next(((k, b) for k in order if (b := _dense_hf(files[k]["rows"], files[k]["header"],
                                                                  r["prompt_len"])) is not None), None)
            if base is None:
                continue
            local = r.get("local_frac") if r.get("local_frac") is not None else v.local_frac
            out.append(SpeedRow(r.get("scorer") or pc.get("scorer", "predictor"), v.name,
                                float(r.get("keep_ratio") or v.keep_ratio or pc.get("keep_ratio", 0.9)),
                                float(local if local is not None else 0.1),
                                r["prompt_len"], r.get("attn") or head.get("attn", "sdpa"), r["prefill_s"],
                                base[1]["prefill_s"], rel, base[0], int(r.get("span_max") or v.span_max or 0),
                                int(r.get("min_keep") or v.min_keep or 0), str(head.get("gpu") or "")))
    return out


def speed_scorer(name: str) -> tuple[str | None, str]:
    """(the scorer whose speed rows stand for `name`, how): ("predictor", "own") ... (None, why not)."""
    if name == "oracle":
        return None, "the saliency oracle needs the answer: not deployable, no speed"
    if name in ("predictor", "attention", "hybrid"):
        return name, "own"
    if name == "auto" or "/" in name or name.endswith(".safetensors"):
        return "predictor", "a predictor"
    if name.startswith("attention"):
        return "attention", "window attention's row"
    if name in POLICY_PROXY:
        return "predictor", "predictor's row (policy: no measurement)"
    return None, f"no speed rows for scorer {name!r}"


def quality(result: dict) -> list[dict]:
    """Per scorer of a synthetic-suite results.json: accuracy over all its prompts as a share of dense's over the
    same cells (task x length x layout), overall and per layout; compression. Empty without a dense scorer."""
    summary = result["summary"]
    cells = {(s["task"], s["length"], s["layout"], s["scorer"]): s for s in summary}
    dense = {k[:3]: v for k, v in cells.items() if k[3] == "dense"}
    if not dense:
        return []
    default_r = result.get("config", {}).get("suite", {}).get("keep_ratio", 0.9)
    out = []
    for scorer in dict.fromkeys(s["scorer"] for s in summary):
        mine = [(c, v) for (*c, s), v in cells.items() if s == scorer and tuple(c) in dense]

        def share(layout=None):
            sel = [(v, dense[tuple(c)]) for c, v in mine if layout is None or c[2] == layout]
            a = sum(v["accuracy"] * v["n"] for v, _ in sel)
            b = sum(d["accuracy"] * d["n"] for _, d in sel)
            return a / b if b > 0 else None
        variant, name = parse(scorer)
        out.append({"scorer": scorer, "variant": variant, "policy": name,
                    "keep_ratio": None if variant.stages is None else (variant.keep_ratio or default_r),
                    "share": share(), "by_layout": {lay: share(lay) for lay in dict.fromkeys(c[2] for c, _ in mine)},
                    "compression": result.get("compression", {}).get(scorer)})
    return out


def match(q: dict, rows: list[SpeedRow], length: int) -> tuple[SpeedRow | None, str]:
    """The speed row for a quality point at `length`, and how it was chosen (or why there is none). SDPA rows first,
    then the files' order."""
    v = q["variant"]
    if v.kv_budget is not None:
        return None, "an H2O budget changes the decoding, not the prefill: see the H2O figure"
    if v.stages is None:
        return None, "dense"
    if v.compression is not None or v.start_layer is not None or v.num_stages is not None or v.kv_budget is not None:
        return None, "no speed row for its own compression / first layer / stage count"
    scorer, how = speed_scorer(q["policy"])
    if scorer is None:
        return None, how
    local = 0.1 if v.local_frac is None else v.local_frac
    hits = [r for r in rows if r.scorer == scorer and r.variant == v.name and abs(r.keep_ratio - q["keep_ratio"]) < 1e-9
            and abs(r.local_frac - local) < 1e-9 and r.prompt_len == length and r.span_max == (v.span_max or 0)
            and r.min_keep == (v.min_keep or 0)]
    if not hits:
        extra = _settings(local, v.span_max or 0, v.min_keep or 0)
        return None, f"no {scorer} row for {v.name} r={q['keep_ratio']:g}{extra} at {length // 1024}K"
    hits.sort(key=lambda r: r.attn != "sdpa")  # stable: the files' order within each backend
    return hits[0], how


def frontier(results: dict[str, dict], rows: list[SpeedRow], length: int = 32768) -> dict:
    """{"points": [{source, scorer, share, by_layout, speedup, speed (SpeedRow or None), how}], "unmatched":
    [{source, scorer, share, why}]}; dense is a point at 1x."""
    points, unmatched = [], []
    for label, res in results.items():
        qs = [q for q in quality(res) if q["share"] is not None]
        if not qs:  # said, not skipped silently
            unmatched.append({"source": label, "scorer": "every scorer", "share": None,
                              "why": "no dense scorer, or dense answers nothing: no % of dense"})
        for q in qs:
            row, how = match(q, rows, length)
            if q["variant"].stages is None and q["variant"].kv_budget is None:
                points.append({"source": label, **q, "speedup": 1.0, "speed": None, "how": "dense"})
            elif row is None:
                unmatched.append({"source": label, "scorer": q["scorer"], "share": q["share"], "why": how})
            else:
                points.append({"source": label, **q, "speedup": row.speedup, "speed": row, "how": how})
    return {"points": points, "unmatched": unmatched, "length": length}


def nondominated(items: list, key) -> list:
    """The items no other item beats: key(item) is a tuple of values, each the higher the better; another item at
    least as high in every value and higher in one beats it (an equal one does not)."""
    ks = [key(i) for i in items]
    return [i for i, a in zip(items, ks) if not any(all(x >= y for x, y in zip(b, a)) and b != a for b in ks)]


def pareto(points: list[dict]) -> dict[str, list[dict]]:
    """Per source, its measured pruned points that no other point of the same source beats on both accuracy (share
    of dense) and prefill speedup, by speedup. Sources are kept apart: their models and prompts differ."""
    out: dict[str, list[dict]] = {}
    pruned = [p for p in points if p["speed"] is not None]
    for src in dict.fromkeys(p["source"] for p in pruned):
        keep = nondominated([p for p in pruned if p["source"] == src], lambda p: (p["share"], p["speedup"]))
        out[src] = sorted(keep, key=lambda p: (p["speedup"], p["share"]))
    return out
