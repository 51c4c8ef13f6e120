"""Stage 1 of SDTP over a data set: the saliency of every token at the stage layers, and its file.

The saliency itself (gradient x activation of the response loss, and its sign) is `token_saliency` in
`sdtp_lib.scorers.oracle`, which the oracle scorer shares; this module runs it over samples, resumably, and stores it.

File `saliency.safetensors`: samples concatenated along one axis (`offsets` (N+1,) delimits them):
input_ids, attention_mask, labels, one `scores.layer{l}` per stage layer; per sample prompt_len and
source_index; a JSON header (schema, model, layers, data source, seed, versions) in the metadata.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .._version import __version__
from ..models import config_fingerprint
from ..scorers.oracle import IGNORE, check_layers, token_saliency

log = logging.getLogger(__name__)

SCHEMA, SCHEMA_VERSION = "sdtp-saliency", 1
META_KEY = "sdtp_saliency"
FILE_NAME, PARTIAL_NAME = "saliency.safetensors", "saliency.partial.safetensors"
STATS_FILE = "saliency_stats.json"  # saliency_stats() of a file, kept where the file may not travel
_TENSORS = ("input_ids", "attention_mask", "labels", "offsets", "prompt_len", "source_index")


class SaliencyFileError(ValueError):
    """A saliency file that cannot be used (not safetensors, other schema, truncated, inconsistent)."""


# ------------------------------------------------------------------ the file
@dataclass
class SaliencyStore:
    """Saliency of N samples; tensors are the samples concatenated, `offsets` (N+1,) delimits them."""
    header: dict
    input_ids: torch.Tensor  # (S,) int64, S = total tokens
    attention_mask: torch.Tensor  # (S,) int8
    labels: torch.Tensor  # (S,) int64, -100 on unlabelled tokens
    offsets: torch.Tensor  # (N+1,) int64
    prompt_len: torch.Tensor  # (N,) int64: tokens [0, prompt_len) are the prunable prompt
    source_index: torch.Tensor  # (N,) int64: index in the data source (-1 if unknown)
    scores: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (S,) float32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.scores))

    def span(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def sample(self, i: int) -> dict:
        s = self.span(i)
        return dict(input_ids=self.input_ids[s], attention_mask=self.attention_mask[s], labels=self.labels[s],
                    prompt_len=int(self.prompt_len[i]), source_index=int(self.source_index[i]),
                    scores={l: v[s] for l, v in self.scores.items()})

    def prompt_scores(self, layer: int, i: int) -> torch.Tensor:
        return self.scores[layer][self.span(i)][: int(self.prompt_len[i])]  # (P,)

    @classmethod
    def from_records(cls, records: list[dict], header: dict) -> "SaliencyStore":
        """records: dicts with input_ids, attention_mask, labels (T,), prompt_len, source_index, scores {l: (T,)}."""
        lengths = torch.tensor([0] + [len(r["input_ids"]) for r in records])
        cat = lambda key, dt: torch.cat([r[key].to(dt) for r in records]) if records else torch.zeros(0, dtype=dt)
        layers = sorted(records[0]["scores"]) if records else list(header.get("stage_layers", []))
        info_keys = sorted({k for r in records for k in r.get("info", {})})
        header = {**header, "num_samples": len(records), "stage_layers": layers,
                  "sample_info": {k: [r.get("info", {}).get(k) for r in records] for k in info_keys}}
        return cls(header=header, input_ids=cat("input_ids", torch.int64),
                   attention_mask=cat("attention_mask", torch.int8), labels=cat("labels", torch.int64),
                   offsets=lengths.cumsum(0), prompt_len=torch.tensor([r["prompt_len"] for r in records], dtype=torch.int64),
                   source_index=torch.tensor([r["source_index"] for r in records], dtype=torch.int64),
                   scores={l: torch.cat([r["scores"][l].float() for r in records]) if records else torch.zeros(0)
                           for l in layers})

    def save(self, path, overwrite: bool = False) -> Path:
        """Atomic write (tmp file + os.replace); refuses an existing file unless overwrite=True."""
        from safetensors.torch import save_file
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        tensors = {k: getattr(self, k).contiguous() for k in _TENSORS}
        tensors.update({f"scores.layer{l}": v.contiguous() for l, v in self.scores.items()})
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(self.header)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path) -> "SaliencyStore":
        from safetensors import safe_open
        path = Path(path)
        fail = lambda why: SaliencyFileError(f"{path}: {why}")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such saliency file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta, names = f.metadata() or {}, set(f.keys())
                if META_KEY not in meta:
                    raise fail(f"not an SDTP saliency file (no '{META_KEY}' entry in the safetensors metadata)")
                header = json.loads(meta[META_KEY])
                if header.get("schema") != SCHEMA or header.get("version") != SCHEMA_VERSION:
                    raise fail(f"schema {header.get('schema')!r} version {header.get('version')!r}; this library "
                               f"reads {SCHEMA!r} version {SCHEMA_VERSION}")
                layers = [int(l) for l in header["stage_layers"]]
                missing = sorted((set(_TENSORS) | {f"scores.layer{l}" for l in layers}) - names)
                if missing:
                    raise fail(f"missing tensor(s) {missing}")
                t = {k: f.get_tensor(k) for k in names}
            store = cls(header=header, **{k: t[k] for k in _TENSORS}, scores={l: t[f"scores.layer{l}"] for l in layers})
            store._validate(fail)
        except SaliencyFileError:
            raise
        except Exception as e:  # safetensors/json errors: not a file we wrote, or a truncated one
            raise fail(f"not a readable saliency safetensors file ({type(e).__name__}: {e})") from None
        return store

    def _validate(self, fail) -> None:
        n, off = int(self.header["num_samples"]), self.offsets
        if off.dim() != 1 or len(off) != n + 1 or off[0] != 0 or (off.diff() < 0).any():
            raise fail(f"offsets {tuple(off.shape)} do not describe the header's {n} samples")
        total = int(off[-1])
        for name, v in [("input_ids", self.input_ids), ("attention_mask", self.attention_mask),
                        ("labels", self.labels), *((f"scores.layer{l}", v) for l, v in self.scores.items())]:
            if v.shape != (total,):
                raise fail(f"{name} has shape {tuple(v.shape)}, expected ({total},) from the offsets")
        if self.prompt_len.shape != (n,) or self.source_index.shape != (n,):
            raise fail(f"prompt_len/source_index must have shape ({n},)")


def model_header(model, layers, *, data_source: str = "", seed: int = 0, seq_len: int | None = None) -> dict:
    import transformers

    cfg = model.config
    return {"schema": SCHEMA, "version": SCHEMA_VERSION,
            "model_id": str(getattr(cfg, "sdtp_model_id", None) or getattr(cfg, "name_or_path", "")),
            "model_fingerprint": config_fingerprint(cfg), "dtype": str(next(model.parameters()).dtype),
            "stage_layers": list(check_layers(model, layers)), "seq_len": seq_len, "data_source": data_source,
            "seed": seed, "loss": "mean CE over labelled tokens (HF shift)", "x": "hidden state entering the layer",
            "sign": "score = (dL/dx * x).sum(-1) of the CE loss: negative = the token lowers the loss",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "sdtp_lib": __version__}}


# ------------------------------------------------------------------ the run
_RUN_KEYS = ("model_id", "model_fingerprint", "stage_layers", "seq_len", "data_source", "seed")


def compute_saliency(model, samples, layers, out_dir, *, data_source: str = "", seed: int = 0,
                     seq_len: int | None = None, resume: bool = True, batch_size: int = 1,
                     overwrite: bool = False, checkpoint_every: int = 50) -> Path:
    """Saliency of every sample -> out_dir/saliency.safetensors; resumable.

    samples: a sequence of objects with `input_ids` and `labels` (and optionally prompt_len, source_index,
    category, layout). Every `checkpoint_every` samples (and on an exception) the results so far go to
    out_dir/saliency.partial.safetensors; a later call with resume=True continues from there. An existing
    final file is returned as is when it matches this run (resume=True), replaced with overwrite=True,
    refused otherwise.
    """
    from tqdm.auto import tqdm
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, partial = out_dir / FILE_NAME, out_dir / PARTIAL_NAME
    N = len(samples)
    lengths = [len(s.input_ids) for s in samples]
    if seq_len is not None and max(lengths, default=0) > seq_len:
        raise ValueError(f"compute_saliency: a sample has {max(lengths)} tokens, more than seq_len={seq_len}")
    header = model_header(model, layers, data_source=data_source, seed=seed,
                          seq_len=seq_len if seq_len is not None else max(lengths, default=0))
    if final.exists() and not overwrite:
        if resume and _matches(SaliencyStore.load(final), header, samples, N):
            log.info("saliency: %s already complete for this run; returning it", final)
            return final
        raise FileExistsError(f"{final} exists from another run; pass overwrite=True to replace it")
    records = _resume(partial, header, samples, N) if resume and partial.exists() else []
    saved = len(records)
    checkpoint = lambda: SaliencyStore.from_records(records, {**header, "num_total": N, "complete": False}).save(
        partial, overwrite=True)
    bar = tqdm(total=N, initial=len(records), desc="saliency", unit="sample")
    try:
        for start in range(len(records), N, batch_size):
            idx = range(start, min(start + batch_size, N))
            records += _records(model, [samples[i] for i in idx], idx, header["stage_layers"])
            bar.update(len(idx))
            if len(records) - saved >= checkpoint_every and len(records) < N:
                checkpoint()
                saved = len(records)
    except BaseException:
        if len(records) > saved:
            log.warning("saliency: interrupted after %d/%d samples; saving %s to resume from", len(records), N, partial)
            checkpoint()
        raise
    finally:
        bar.close()
    SaliencyStore.from_records(records, {**header, "num_total": N, "complete": True}).save(final, overwrite=overwrite)
    partial.unlink(missing_ok=True)
    log.info("saliency: %d samples, layers %s -> %s", N, header["stage_layers"], final)
    return final


def _records(model, batch, idx, layers) -> list[dict]:
    """Saliency of a few samples, right-padded into one batch (a token never sees the padding after it)."""
    ids = [torch.as_tensor(s.input_ids, dtype=torch.long) for s in batch]
    lab = [torch.as_tensor(s.labels, dtype=torch.long) for s in batch]
    T = max(len(x) for x in ids)
    pad = lambda xs, v: torch.stack([F.pad(x, (0, T - len(x)), value=v) for x in xs])  # (B, T)
    mask = pad([torch.ones_like(x) for x in ids], 0)
    sal = token_saliency(model, pad(ids, 0), pad(lab, IGNORE), layers, attention_mask=mask if len(batch) > 1 else None)
    out = []
    for b, (s, i, x, y) in enumerate(zip(batch, idx, ids, lab)):
        labelled = (y != IGNORE).nonzero()
        prompt_len = getattr(s, "prompt_len", None)
        out.append(dict(input_ids=x, attention_mask=torch.ones_like(x), labels=y,
                        prompt_len=int(prompt_len if prompt_len is not None else labelled[0]),
                        source_index=int(getattr(s, "source_index", i)),
                        scores={l: v[b, :len(x)].cpu() for l, v in sal.items()},
                        info={k: getattr(s, k) for k in ("category", "layout") if hasattr(s, k)}))
    return out


def _matches(store: SaliencyStore, header: dict, samples, n: int) -> bool:
    """The stored run has this run's settings and its samples are the first len(store) of `samples`."""
    h = store.header
    if any(h.get(k) != header[k] for k in _RUN_KEYS) or h.get("num_total", len(store)) != n:
        return False
    return all(torch.equal(store.sample(i)["input_ids"], torch.as_tensor(samples[i].input_ids, dtype=torch.long))
               for i in range(len(store)))


def _resume(partial: Path, header: dict, samples, n: int) -> list[dict]:
    store = SaliencyStore.load(partial)
    if not _matches(store, header, samples, n):
        raise ValueError(f"{partial}: partial results from a different run (model, layers, data, seed or samples "
                         "differ); delete it or pass resume=False")
    log.info("saliency: resuming from %s (%d/%d samples done)", partial, len(store), n)
    info = store.header.get("sample_info", {})
    recs = []
    for i in range(len(store)):
        r = store.sample(i)
        r["info"] = {k: v[i] for k, v in info.items()}
        recs.append(r)
    return recs


# ------------------------------------------------------------------ statistics
def saliency_stats(store: SaliencyStore, fractions=(0.1, 0.35)) -> dict:
    """Per stage layer, over the prompt tokens (the prunable ones), mean over samples:
    share of total |saliency| held by the top 10% / 35% of tokens, and the Spearman correlation of the
    (signed) saliency with the next stage layer's."""
    layers, rows = store.layers, []
    for j, l in enumerate(layers):
        shares, rhos, mean_abs = {f: [] for f in fractions}, [], []
        for i in range(len(store)):
            s = store.prompt_scores(l, i).double()  # (P,)
            a = s.abs().sort(descending=True).values
            if a.sum() > 0:
                for f in fractions:
                    shares[f].append(float(a[: math.ceil(f * len(a))].sum() / a.sum()))
                mean_abs.append(float(a.mean()))
            if j + 1 < len(layers):
                rho = spearman(s, store.prompt_scores(layers[j + 1], i).double())
                if rho is not None:
                    rhos.append(rho)
        row = {"layer": l, **{f"top{round(100 * f)}_share": _mean(v) for f, v in shares.items()},
               "mean_abs": _mean(mean_abs), "spearman_next": _mean(rhos) if j + 1 < len(layers) else None}
        rows.append(row)
    return {"num_samples": len(store), "fractions": list(fractions), "per_layer": rows}


def spearman(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Spearman rank correlation (average ranks for ties); None if undefined (< 2 tokens or constant)."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = (rx.norm() * ry.norm())
    return float((rx * ry).sum() / den) if den > 0 else None


def _ranks(x: torch.Tensor) -> torch.Tensor:
    r = torch.empty(len(x), dtype=torch.float64)
    r[x.argsort()] = torch.arange(len(x), dtype=torch.float64)
    _, inv = torch.unique(x, return_inverse=True)
    mean_rank = torch.zeros(int(inv.max()) + 1, dtype=torch.float64).index_add_(0, inv, r) / inv.bincount()
    return mean_rank[inv]  # (n,)


def _mean(v: list) -> float | None:
    return float(sum(v) / len(v)) if v else None


def format_stats(stats: dict) -> str:
    """Markdown table of saliency_stats."""
    fr = stats["fractions"]
    f = lambda v: "-" if v is None else f"{v:.3f}"
    head = ["layer", *(f"top-{round(100 * x)}% share" for x in fr), "mean abs", "Spearman vs next stage"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in stats["per_layer"]:
        cells = [str(r["layer"]), *(f(r[f"top{round(100 * x)}_share"]) for x in fr), f"{r['mean_abs']:.3g}"
                 if r["mean_abs"] is not None else "-", f(r["spearman_next"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{stats['num_samples']} samples; shares and correlations over prompt tokens, " \
                              "mean over samples."
