"""What SDTP does to one prompt, stage by stage: stage-1 saliency, the scorer's scores, kept/dropped tokens.

trace_prompt -> PromptTrace; render_html (self-contained HTML, no JS/CDN), heatmap_figure (seaborn),
explorer (ipywidgets), save_static (standalone .html + .png, for places without a live kernel).
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import SDTPConfig
from ..engine import prepare_scorer, pruning
from ..io import atomic_write_text
from ..scorers.base import ScorerWrapper
from ..scorers.registry import make_scorer
from ..spans import span_rule

log = logging.getLogger(__name__)

VIEWS = ("saliency", "score", "kept")  # stage-1 saliency / the scorer's score / kept-dropped
VIEW_LABELS = {"saliency": "stage-1 saliency", "score": "predictor score", "kept": "kept / dropped"}
SALIENCY_CMAP, SCORE_CMAP = "PiYG", "Blues"  # green = useful / dark blue = high score
KEPT, DROP_NOW, DROP_BEFORE, UNSCORED = "#b9e4bd", "#f7b0b0", "#e6e6e6", "#e6e6e6"
_MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace"


@dataclass
class PromptTrace:
    """What SDTP does to one prompt, stage by stage."""
    token_ids: list[int]  # (T,)
    tokens: list[str]  # (T,) display text of each prompt token (see token_strings)
    special: list[bool]  # (T,) chat-template / special tokens
    stage_layers: tuple[int, ...]  # (S,)
    saliency: np.ndarray | None  # (S, T) float32 stage-1 saliency at each stage layer (dense model), or None
    score: np.ndarray  # (S, T) float32 score of each token ENTERING stage s; NaN if dropped before stage s
    kept: np.ndarray  # (S, T) bool: token survives stage s (kept[s] is a subset of kept[s-1])
    title: str = ""

    @property
    def prompt_len(self) -> int:
        return len(self.token_ids)

    @property
    def num_stages(self) -> int:
        return len(self.stage_layers)

    @property
    def kept_counts(self) -> list[int]:
        return [int(k.sum()) for k in self.kept]


# ------------------------------------------------------------------ tokens
def _byte_decoder() -> dict[str, int]:
    """GPT-2's unicode char -> byte table (the inverse of its bytes_to_unicode)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:  # the unprintable bytes map to chr(256), chr(257), ... in byte order
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTES = _byte_decoder()
_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # SentencePiece byte-fallback tokens


def _raw_bytes(piece: str) -> bytes | None:
    m = _HEX_BYTE.match(piece)
    if m:
        return bytes([int(m.group(1), 16)])
    if piece and all(c in _BYTES for c in piece):
        return bytes(_BYTES[c] for c in piece)
    return None


def token_strings(tokenizer, ids) -> tuple[list[str], list[bool]]:
    """(display text, is special) of each token id. Specials keep their literal text; partial UTF-8 bytes
    show as escapes like `\\xe2\\x80` (byte-level BPE and byte-fallback tokens), else as U+FFFD."""
    ids = [int(i) for i in torch.as_tensor(ids).flatten().tolist()]
    specials = set(tokenizer.all_special_ids)
    specials |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    texts, flags = [], []
    for i in ids:
        if i in specials:
            texts.append(str(tokenizer.convert_ids_to_tokens(i)))
            flags.append(True)
            continue
        text = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        piece = str(tokenizer.convert_ids_to_tokens(i))
        if "\ufffd" in text:
            raw = _raw_bytes(piece)
            text = raw.decode("utf-8", errors="backslashreplace") if raw is not None else text
        elif piece.startswith("\u2581") and not text.startswith(" "):  # SentencePiece drops a lone token's space
            text = " " + text
        texts.append(text)
        flags.append(False)
    return texts, flags


# ------------------------------------------------------------------ tracing
class _RecordingScorer(ScorerWrapper):
    """Wraps a scorer; keeps each stage's (scores, positions) as device tensors (no host sync in the loop)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.records = {}

    def __call__(self, hidden, stage, positions, **layer_kw):
        scores = self.inner(hidden, stage, positions, **layer_kw)  # (B, T_cur)
        self.records[stage] = (scores, positions)
        return scores


def trace_prompt(model, tokenizer, input_ids, scorer, config: SDTPConfig, answer_ids=None,
                 title: str = "") -> PromptTrace:
    """One pruned prefill of `input_ids` ((1, T) or (T,)) with `scorer`, recorded stage by stage; with
    `answer_ids` ((A,), the dense model's answer) also the stage-1 saliency of the prompt tokens. A config that keeps
    whole spans (span_max > 0) takes its span boundaries from `tokenizer` (sdtp_lib.spans.span_rule)."""
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"trace_prompt: input_ids must be one prompt, (1, T) or (T,); got shape {tuple(ids.shape)}")
    p = next(model.parameters())
    ids = ids.long().to(p.device)
    T, S = ids.numel(), config.num_stages
    rec = _RecordingScorer(prepare_scorer(model, make_scorer(scorer), config))  # the engine sees only the wrapper
    with torch.no_grad(), pruning(model, rec, config, spans=span_rule(config, tokenizer)) as stats:
        model(input_ids=ids[None], use_cache=False, logits_to_keep=1)  # only the scores matter
    score = np.full((S, T), np.nan, dtype=np.float32)  # (S, T)
    kept = np.zeros((S, T), dtype=bool)  # (S, T)
    for s in range(S):
        vals, pos = rec.records[s]
        score[s, pos[0].cpu().numpy()] = vals[0].detach().float().cpu().numpy()
        kept[s, stats.stage_positions[s][0].cpu().numpy()] = True
    log.info("trace_prompt %s: %s", title or "", stats.summary())
    saliency = None
    if answer_ids is not None:
        from ..scorers.oracle import IGNORE, token_saliency
        ans = torch.as_tensor(answer_ids).long().flatten().to(p.device)
        if ans.numel() == 0:
            raise ValueError("trace_prompt: answer_ids is empty; pass the dense model's answer or None")
        labels = torch.cat([torch.full_like(ids, IGNORE), ans])
        sal = token_saliency(model, torch.cat([ids, ans])[None], labels[None], config.stage_layers)
        saliency = np.stack([sal[l][0, :T].cpu().numpy() for l in config.stage_layers]).astype(np.float32)  # (S, T)
    tokens, special = token_strings(tokenizer, ids.cpu())
    return PromptTrace(ids.cpu().tolist(), tokens, special, tuple(config.stage_layers), saliency, score, kept, title)


# ------------------------------------------------------------------ colours
def _check(trace: PromptTrace, stage, view: str | None = None) -> None:
    if view is not None and view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
    S = trace.num_stages
    is_int = isinstance(stage, (int, np.integer)) and not isinstance(stage, bool)
    if stage is not None and not (is_int and 1 <= stage <= S):
        raise ValueError(f"stage {stage!r} out of range: stages are 1-based, this trace has {S} (1..{S})")


def _colors(cmap: str, x) -> list[str]:
    """Hex colours of x in [0, 1] on a matplotlib colormap."""
    import matplotlib
    rgba = np.atleast_2d(matplotlib.colormaps[cmap](np.asarray(x, dtype=float)))  # (N, 4)
    return ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in row[:3]) for row in rgba]


def _useful(trace: PromptTrace) -> np.ndarray:
    """(S, T) -saliency / robust scale per stage, clipped to [-1, 1]: +1 = useful, -1 = distractor."""
    v = np.nan_to_num(-trace.saliency.astype(np.float64), posinf=0.0, neginf=0.0)
    scale = np.percentile(np.abs(v), 99, axis=1, keepdims=True)  # (S, 1)
    return np.clip(v / np.where(scale > 0, scale, 1.0), -1, 1)


def _score_rank(trace: PromptTrace) -> np.ndarray:
    """(S, T) rank of each token's score among the tokens entering the stage, in [0, 1]; NaN if not scored."""
    out = np.full(trace.score.shape, np.nan)
    for s, row in enumerate(trace.score):
        idx = np.flatnonzero(~np.isnan(row))
        out[s, idx] = row[idx].argsort(kind="stable").argsort() / max(len(idx) - 1, 1)
    return out


def _kept_code(trace: PromptTrace) -> np.ndarray:
    """(S, T): 2 = kept, 1 = dropped at this stage, 0 = dropped before."""
    entering = np.vstack([np.ones((1, trace.prompt_len), bool), trace.kept[:-1]])  # (S, T)
    return trace.kept.astype(int) + entering.astype(int)


def _swatch(color: str, label: str, extra: str = "") -> str:
    return (f'<span style="display:inline-block;width:12px;height:12px;background:{color};border:1px solid #999;'
            f'vertical-align:middle;{extra}"></span> {html.escape(label)}&nbsp;&nbsp;')


def _gradient(cmap: str, left: str, right: str, lo: float = 0.0) -> str:
    stops = ",".join(_colors(cmap, np.linspace(lo, 1, 7)))
    return (f'{html.escape(left)} <span style="display:inline-block;width:160px;height:12px;vertical-align:middle;'
            f'background:linear-gradient(to right,{stops});border:1px solid #999"></span> '
            f'{html.escape(right)}&nbsp;&nbsp;')


def _view_colors(trace: PromptTrace, s: int, view: str):
    """(background (T,), text colour (T,), tooltip note (T,), legend HTML) of stage index s in one view."""
    T, code, layer = trace.prompt_len, _kept_code(trace)[s], trace.stage_layers[s]
    if view == "kept":
        bg = [{2: KEPT, 1: DROP_NOW, 0: DROP_BEFORE}[c] for c in code]
        legend = (_swatch(KEPT, "kept") + _swatch(DROP_NOW, f"dropped at stage {s + 1}")
                  + _swatch(DROP_BEFORE, "dropped at an earlier stage", "text-decoration:line-through"))
        return bg, ["#999" if c == 0 else "#000" for c in code], [""] * T, legend
    if view == "saliency":
        u = _useful(trace)[s]  # (T,)
        bg, grey = _colors(SALIENCY_CMAP, (u + 1) / 2), np.zeros(T, bool)
        notes = [f"-saliency {-v:+.3g} (scaled {x:+.2f})" for v, x in zip(trace.saliency[s], u)]
        legend = (_gradient(SALIENCY_CMAP, "pink: distractor (removing it lowers the loss)",
                            "green: useful (removing it raises the loss)")
                  + f"<i>-saliency at layer {layer}, scaled per stage by the 99th percentile of |saliency|</i>")
    else:
        r = _score_rank(trace)[s]  # (T,)
        grey = np.isnan(r)
        bg = [UNSCORED if g else c for c, g in zip(_colors(SCORE_CMAP, 0.1 + 0.9 * np.nan_to_num(r)), grey)]
        notes = ["not scored" if g else f"score {v:.4g} (rank {x:.2f})" for v, x, g in zip(trace.score[s], r, grey)]
        legend = (_gradient(SCORE_CMAP, "low score (dropped first)", "high score (kept)", lo=0.1)
                  + _swatch(UNSCORED, "dropped before this stage (not scored)"))
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in bg]) / 255.0  # (T, 3)
    dark = rgb @ np.array([0.299, 0.587, 0.114]) < 0.5
    return bg, ["#999" if g else "#fff" if d else "#000" for g, d in zip(grey, dark)], notes, legend


# ------------------------------------------------------------------ HTML
def _display(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "↵\n").replace("\t", "→\t")


def render_html(trace: PromptTrace, stage: int, view: str) -> str:
    """One stage (1-based) of one view as a self-contained `<div class="sdtp-explore">` (inline styles, no script)."""
    _check(trace, stage, view)
    s, T, layer, k = stage - 1, trace.prompt_len, trace.stage_layers[stage - 1], trace.kept_counts[stage - 1]
    head = (f'<div class="sdtp-explore" data-view="{view}" style="font-family:sans-serif">'
            f'<div class="sdtp-summary" data-stage="{stage}" '
            f'data-layer="{layer}" data-kept-count="{k}" data-prompt-len="{T}" style="font-weight:600;margin:2px 0">'
            f'stage {stage} of {trace.num_stages} · layer {layer} · {k} of {T} tokens kept '
            f'({100 * k / T:.0f}%)</div>')
    if view == "saliency" and trace.saliency is None:
        return (head + '<div class="sdtp-legend"></div><div class="sdtp-message" style="padding:6px;color:#555;'
                'font-style:italic">no saliency for this prompt (trace_prompt was called without answer_ids)'
                '</div></div>')
    code = _kept_code(trace)[s]  # (T,)
    bg, fg, notes, legend = _view_colors(trace, s, view)
    status = {2: "kept", 1: f"dropped at stage {stage}", 0: "dropped before this stage"}
    spans = []
    for i, (tok, sp) in enumerate(zip(trace.tokens, trace.special)):
        style = f"background:{bg[i]};color:{fg[i]};box-shadow:inset -1px 0 rgba(255,255,255,.6)"
        style += ";text-decoration:line-through" if view == "kept" and code[i] == 0 else ""
        style += ";border:1px solid #777;border-radius:3px;font-size:0.75em;padding:0 2px;margin:0 1px" if sp else ""
        shown = tok.replace("\n", "↵").replace("\t", "→")
        tip = f"#{i} «{shown}» · {status[int(code[i])]}" + (f" · {notes[i]}" if notes[i] else "")
        cls = "sdtp-tok sdtp-special" if sp else "sdtp-tok"
        spans.append(f'<span class="{cls}" data-i="{i}" data-kept="{int(code[i] == 2)}" style="{style}" '
                     f'title="{html.escape(tip, quote=True)}">{_display(tok)}</span>')
    return (f'{head}<div class="sdtp-legend" style="font-size:12px;margin:2px 0 4px">{legend}</div>'
            f'<div class="sdtp-tokens" style="white-space:pre-wrap;font-family:{_MONO};font-size:12px;'
            f'line-height:1.8;border:1px solid #ddd;padding:6px">{"".join(spans)}</div></div>')


# ------------------------------------------------------------------ heatmap
def _pyplot():
    import matplotlib
    matplotlib.use("Agg") if matplotlib.get_backend().lower().startswith("tk") else None
    import matplotlib.pyplot as plt
    return plt


def _tick(text: str) -> str:
    text = text.replace("\n", "↵").replace("\t", "→").replace(" ", "␣").replace("$", r"\$")
    return text if len(text) <= 10 else text[:9] + "…"


def heatmap_figure(trace: PromptTrace, view: str, stage: int | None = None):
    """Stages (rows) x tokens (columns) heatmap of one view; `stage` (1-based) is outlined."""
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle
    _check(trace, stage, view)
    plt = _pyplot()
    S, T = trace.num_stages, trace.prompt_len
    if view == "saliency":
        if trace.saliency is None:
            raise ValueError("heatmap_figure: this trace has no saliency (trace_prompt was called without answer_ids)")
        data, kw = _useful(trace), dict(cmap=SALIENCY_CMAP, vmin=-1, vmax=1)  # (S, T)
        cbar = ("-saliency", [-1, 0, 1], ["distractor", "0", "useful"])
    elif view == "score":
        data, kw = _score_rank(trace), dict(cmap=SCORE_CMAP, vmin=0, vmax=1)
        cbar = ("score rank", [0, 1], ["low", "high"])
    else:
        data, kw = _kept_code(trace), dict(cmap=ListedColormap([DROP_BEFORE, DROP_NOW, KEPT]), vmin=-0.5, vmax=2.5)
        cbar = ("", [0, 1, 2], ["dropped before", "dropped here", "kept"])
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.12 * T + 2)), 1.6 + 0.35 * S))
    ax.set_facecolor(UNSCORED)  # NaN cells: not scored
    rows = [f"s{s + 1} · L{l}" for s, l in enumerate(trace.stage_layers)]
    sns.heatmap(data, ax=ax, xticklabels=False, yticklabels=rows, cbar_kws=dict(label=cbar[0]), **kw)
    ax.collections[0].colorbar.set_ticks(cbar[1], labels=cbar[2])
    ticks = list(range(0, T, max(1, -(-T // 40))))  # at most ~40 labels
    ax.set_xticks([i + 0.5 for i in ticks])
    ax.set_xticklabels([_tick(trace.tokens[i]) for i in ticks], rotation=90, fontsize=7, fontfamily="monospace")
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    if stage is not None:
        ax.add_patch(Rectangle((0, stage - 1), T, 1, fill=False, edgecolor="black", lw=2, clip_on=False))
    ax.set_xlabel(f"prompt tokens ({T})")
    ax.set_title(" · ".join(t for t in (trace.title, VIEW_LABELS[view]) if t), fontsize=10)
    fig.tight_layout()
    return fig


def _png(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------ widget
def explorer(traces: dict[str, PromptTrace], stage: int = 1, view: str = "kept"):
    """ipywidgets explorer: prompt dropdown, stage slider, view toggle; token HTML with the heatmap below."""
    import ipywidgets as W
    if not traces:
        raise ValueError("explorer: no traces given")
    _check(next(iter(traces.values())), stage, view)
    sample = W.Dropdown(options=list(traces), description="prompt")
    slider = W.IntSlider(value=stage, min=1, max=traces[sample.value].num_stages, description="stage",
                         continuous_update=False)
    views = W.ToggleButtons(options=[(VIEW_LABELS[v], v) for v in VIEWS], value=view)
    tokens, heat = W.HTML(), W.Output()
    pngs: dict = {}  # (prompt, view, stage) -> heatmap PNG bytes (figures are closed once drawn)

    def update(change=None):
        t = traces[sample.value]
        if slider.max != t.num_stages:
            slider.max = t.num_stages  # may clamp the value, which calls update again first
        name, v, s = sample.value, views.value, slider.value
        tokens.value = render_html(t, s, v)
        if v == "saliency" and t.saliency is None:
            heat.outputs = ({"output_type": "stream", "name": "stdout", "text": "no saliency for this prompt\n"},)
            return
        if (name, v, s) not in pngs:
            pngs[name, v, s] = _png(heatmap_figure(t, v, s))
        heat.outputs = ({"output_type": "display_data", "metadata": {}, "data": {
            "image/png": base64.b64encode(pngs[name, v, s]).decode("ascii"), "text/plain": f"<heatmap: {v}>"}},)

    for w in (sample, slider, views):
        w.observe(update, names="value")
    update()
    box = W.VBox([W.HBox([sample, views]), slider, tokens, heat])
    box.add_class("sdtp-explorer")
    box.sdtp_controls = dict(sample=sample, stage=slider, view=views, html=tokens, heatmap=heat)
    return box


# ------------------------------------------------------------------ static files
def save_static(trace: PromptTrace, out_dir, stage: int | None = None, name: str = "explore") -> tuple[Path, Path]:
    """out_dir/{name}.html (standalone page, the three views at `stage`, default the last) and
    out_dir/{name}.png (kept-view heatmap, stage outlined), both written atomically."""
    stage = trace.num_stages if stage is None else stage
    _check(trace, stage)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = html.escape(trace.title or "SDTP: one prompt", quote=True)
    parts = [f"<h2>{VIEW_LABELS[v]}</h2>\n{render_html(trace, stage, v)}" for v in VIEWS]
    page = ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{title}</title>\n</head>\n<body style=\"font-family:sans-serif;margin:1em\">\n<h1>{title}</h1>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    html_path = atomic_write_text(out_dir / f"{name}.html", page)
    png_path, tmp = out_dir / f"{name}.png", out_dir / f".{name}.png.tmp"
    fig = heatmap_figure(trace, "kept", stage)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, png_path)
    finally:
        _pyplot().close(fig)
        tmp.unlink(missing_ok=True)
    log.info("save_static: %s, %s", html_path, png_path)
    return html_path, png_path


__all__ = ["VIEWS", "PromptTrace", "token_strings", "trace_prompt", "render_html", "heatmap_figure", "explorer",
           "save_static"]
