"""Dense vs pruned on one prompt: answers side by side with prefill / end-to-end time, compression and FLOPs.

    cmp = compare(model, tok, "Summarise ...", scorer=pred, config=config)
    cmp.markdown()          # the side-by-side table (notebook 00, `generate --compare`)
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from .config import SDTPConfig
from .engine import pruning

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """One measured configuration (dense or pruned)."""
    answer: str
    answer_ids: list[int]
    e2e_s: float
    new_tokens: int
    prefill_runs_s: list[float] = field(default_factory=list)

    @property
    def prefill_s(self) -> float:
        return statistics.median(self.prefill_runs_s)

    def timing(self) -> str:
        return f"prefill {self.prefill_s:.3f} s | e2e {self.e2e_s:.2f} s ({self.new_tokens} new tokens)"


@dataclass
class Comparison:
    prompt_len: int
    sdtp: RunResult
    dense: RunResult | None
    kept_per_stage: list[int]
    kept_per_layer: list[int]
    compression: float
    flops_dense: int
    flops_pruned: int
    summary: str  # PruningStats.summary() of the pruned prefill

    @property
    def prefill_speedup(self) -> float | None:
        return self.dense.prefill_s / self.sdtp.prefill_s if self.dense else None

    @property
    def e2e_speedup(self) -> float | None:
        return self.dense.e2e_s / self.sdtp.e2e_s if self.dense else None

    def markdown(self) -> str:
        """Dense and SDTP as two columns: answer, prefill, end-to-end, tokens per layer, FLOPs."""
        cols = ([("dense", self.dense, 1.0, self.flops_dense)] if self.dense else []) + \
            [("sdtp", self.sdtp, self.compression, self.flops_pruned)]
        cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>") or "(empty)"
        rows = [("answer", [cell(r.answer) for _, r, _, _ in cols]),
                ("prefill s (median)", [f"{r.prefill_s:.3f}" for _, r, _, _ in cols]),
                ("end-to-end s", [f"{r.e2e_s:.2f} ({r.new_tokens} tokens)" for _, r, _, _ in cols]),
                ("compression", [f"{c:.2f}x" for _, _, c, _ in cols]),
                ("prefill GFLOP", [f"{f / 1e9:.2f}" for _, _, _, f in cols])]
        if self.dense:
            rows.append(("speedup prefill / e2e", ["", f"{self.prefill_speedup:.2f}x / {self.e2e_speedup:.2f}x"]))
        head = f"| prompt: {self.prompt_len} tokens | " + " | ".join(n for n, *_ in cols) + " |"
        sep = "|---|" + "---|" * len(cols)
        return "\n".join([head, sep] + [f"| {k} | " + " | ".join(v) + " |" for k, v in rows])

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("sdtp", "dense"):
            if d[k] is not None:
                d[k]["prefill_s"] = getattr(self, k).prefill_s
        return d


def encode_prompt(tok, prompt: str, chat: bool = True) -> torch.Tensor:
    """(1, T) input ids: the prompt as one user message in the chat template (when the tokenizer has one), or raw."""
    if not prompt.strip():
        raise ValueError("the prompt is empty")
    if chat and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        return tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    if chat:
        log.info("the tokenizer has no chat template: using the raw prompt")
    return tok(prompt, return_tensors="pt").input_ids


def _timed(fn, device: torch.device):
    """(fn(), seconds), synchronising CUDA before each clock read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def pad_id(tok) -> int:
    """The id generate pads with: the tokenizer's pad token, else its end-of-sequence token."""
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def answer_tokens(tok, out: list[int]) -> list[int]:
    """A generated continuation without its end-of-turn / padding tokens (all of it if that leaves nothing)."""
    return [t for t in out if t not in (tok.eos_token_id, tok.pad_token_id)] or out


@torch.no_grad()
def greedy_answer(model, tok, ids: torch.Tensor, max_new_tokens: int) -> list[int]:
    """The model's greedy continuation of (1, T) ids, as token ids (the end-of-turn token dropped)."""
    ids = ids.to(next(model.parameters()).device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=pad_id(tok))[0, ids.shape[1]:].tolist()
    return answer_tokens(tok, out)


@torch.no_grad()
def measure(model, tok, ids: torch.Tensor, max_new_tokens: int, repeats: int) -> RunResult:
    """Warm-up prefill, `repeats` timed prefills, the greedy answer, then one timed generate of exactly
    max_new_tokens tokens (so dense and pruned end-to-end times cover the same work)."""
    pad = pad_id(tok)

    def forward():
        return model(ids, logits_to_keep=1)

    def generate(min_new_tokens=0):
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                              min_new_tokens=min_new_tokens, do_sample=False, pad_token_id=pad)

    forward()  # warm-up, discarded
    prefill = [_timed(forward, ids.device)[1] for _ in range(repeats)]
    new = generate()[0, ids.shape[1]:]
    answer = tok.decode(new, skip_special_tokens=True).strip()
    out, e2e = _timed(lambda: generate(max_new_tokens), ids.device)
    return RunResult(answer=answer, answer_ids=new.tolist(), e2e_s=e2e, new_tokens=out.shape[1] - ids.shape[1],
                     prefill_runs_s=prefill)


def compare(model, tok, prompt, scorer="norm", config: SDTPConfig | None = None, max_new_tokens: int = 48,
            repeats: int = 3, dense: bool = True, chat: bool = True, spans=None) -> Comparison:
    """Greedy answers and timings of the pruned model (and the dense one) on `prompt` (text, or (1, T) ids); spans:
    the SpanRule a config with whole spans needs (sdtp_lib.spans.span_rule(config, tok))."""
    if max_new_tokens < 1 or repeats < 1:
        raise ValueError(f"max_new_tokens and repeats must be >= 1, got {max_new_tokens} and {repeats}")
    ids = encode_prompt(tok, prompt, chat) if isinstance(prompt, str) else torch.as_tensor(prompt)
    ids = (ids[None] if ids.dim() == 1 else ids).to(next(model.parameters()).device)
    if ids.shape[0] != 1:
        raise ValueError(f"compare takes one prompt, got a batch of {ids.shape[0]}")
    config = config or SDTPConfig.for_model(model)
    base = measure(model, tok, ids, max_new_tokens, repeats) if dense else None
    with pruning(model, scorer, config, spans=spans) as stats:
        pruned = measure(model, tok, ids, max_new_tokens, repeats)
    return Comparison(prompt_len=stats.prompt_len, sdtp=pruned, dense=base, kept_per_stage=list(stats.kept_per_stage),
                      kept_per_layer=list(stats.kept_per_layer), compression=stats.compression,
                      flops_dense=stats.flops_dense, flops_pruned=stats.flops_pruned, summary=stats.summary())
