"""Stage 2: train the per-stage token predictors on a frozen model, pruning simulated by attention masking.

Loss (paper: unweighted sum of the first three):
    L = w_cls * L_cls + w_mse * L_mse + w_rank * L_rank [+ w_ratio * L_ratio] [+ w_kl * L_kl]
- L_cls: LM cross-entropy on the response tokens (reaches the predictors through the masks);
- L_mse: predictor score (keep - drop) vs the stage's saliency, z-scored per sequence over the prunable
  prompt tokens (target = |saliency| by default: see TrainConfig.saliency_target);
- L_rank: pairwise logistic ranking loss on `rank_pairs` sampled pairs per sequence and stage;
- L_ratio: squared gap between each stage's kept fraction of the prunable tokens and the engine's target.
Masks (deviation, documented): by default "st_topk", a straight-through Gumbel top-k that keeps exactly the
inference budget at every stage. The paper's per-token Gumbel-softmax ("gumbel", with L_ratio as in
DynamicViT) conflicts with L_mse: z-scored targets pull scores to mean 0, i.e. keep probability 0.5 per
stage, and the cumulative mask then dropped every prunable token (measured: kept 12-20% of the prompt
where the schedule keeps 35%, ranking loss at chance).
- L_kl (optional, off by default): KL to the dense model's response distribution.
Balance (deviation, documented): on Qwen2.5-Coder-0.5B the gradient of L_cls on the predictors was 7-85x that of
L_mse + L_rank (SmolLM2-135M: ~3x), so Adam followed L_cls alone, the ranking loss rose above chance and the scores
diverged (measured on 2 x H200: held-out loss worse than random). On CPU, 15 steps on Qwen2.5 without L_cls took
the ranking loss from 0.70 to 0.63, while with L_cls at 0.45 of its weight it stayed at 0.70-0.72. With
`cls_balance` = k > 0 (default 1), training first measures both gradient norms on `balance_batches` batches and
scales w_cls down, once, so that L_cls's gradient is at most k times the saliency terms' (median ratio); the factor
is logged, kept for resume and written to pruning_config.json. k = 0 is the paper's plain sum.
"""
from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import SDTPConfig
from .data import response_protect
from ..io import atomic_torch_save, atomic_write_text, provenance
from .masked import forced_mask, masked_pruning, stage_budget
from ..scorers.predictor import TokenPredictor
from .validate import format_rows, validate  # re-exported: sdtp_lib.training.train.validate

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    lr: float = 1e-3  # AdamW on the predictors only (they are tiny; the base is frozen)
    batch_size: int = 4  # sequences per step (right-padded)
    epochs: int = 2  # the paper trains 2 epochs
    seed: int = 0  # data order, Gumbel noise, pair sampling and predictor init
    mask: str = "st_topk"  # "st_topk": exact budgets, straight-through (default); "gumbel": DynamicViT + w_ratio
    tau: float = 1.0  # Gumbel temperature (noise scale and sigmoid width for st_topk)
    w_cls: float = 1.0  # LM loss on the response
    w_mse: float = 1.0  # scores vs normalised saliency
    w_rank: float = 1.0  # pairwise ranking vs saliency
    w_ratio: float = 2.0  # keep-ratio term, mask="gumbel" only (st_topk keeps the budget exactly)
    w_kl: float = 0.0  # KL to dense outputs (extra dense forward per step)
    rank_pairs: int = 256  # sampled pairs per sequence and stage (all pairs is O(T^2))
    saliency_target: str = "abs"  # "abs": |grad*x| or "neg": -grad*x (first-order loss increase on removal)
    grad_checkpointing: bool = False  # recompute layer activations in backward (memory for time)
    attention_window: int = 0  # 0: the paper's predictor; N > 0: the hybrid (window attention of the last N
    # prompt tokens as a further input of every stage MLP, see TokenPredictor)
    attention_kernel: int = 15  # the hybrid's max-pooling over neighbouring tokens (odd)
    cls_balance: float = 1.0  # cap L_cls's gradient at k x that of L_mse + L_rank (median over the first
    # balance_batches batches, measured once); 0: the paper's plain sum
    balance_batches: int = 4

    def __post_init__(self):
        if self.saliency_target not in ("abs", "neg"):
            raise ValueError(f"saliency_target must be 'abs' or 'neg', got {self.saliency_target!r}")
        if self.mask not in ("st_topk", "gumbel"):
            raise ValueError(f"mask must be 'st_topk' or 'gumbel', got {self.mask!r}")
        if self.attention_window < 0 or self.attention_kernel < 1 or self.attention_kernel % 2 == 0:
            raise ValueError("TrainConfig: attention_window must be >= 0 and attention_kernel an odd number >= 1, "
                             f"got {self.attention_window}, {self.attention_kernel}")
        if self.cls_balance < 0 or self.balance_batches < 1:
            raise ValueError(f"TrainConfig: cls_balance must be >= 0 (0: off) and balance_batches >= 1, got "
                             f"{self.cls_balance}, {self.balance_batches}")
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("TrainConfig: batch_size and epochs must be >= 1 and lr > 0")


# --------------------------------------------------------------------- batches
def collate_store(store, idx: list[int], layers, device) -> dict:
    """Right-padded batch from a SaliencyStore: ids, mask, labels, prompt mask, saliency per stage layer."""
    items = [store.sample(i) for i in idx]
    T = max(len(it["input_ids"]) for it in items)
    B = len(items)
    out = dict(input_ids=torch.zeros(B, T, dtype=torch.long), attention_mask=torch.zeros(B, T, dtype=torch.long),
               labels=torch.full((B, T), -100, dtype=torch.long), prompt_len=torch.zeros(B, dtype=torch.long),
               saliency=[torch.zeros(B, T) for _ in layers])
    for b, it in enumerate(items):
        n = len(it["input_ids"])
        out["input_ids"][b, :n] = it["input_ids"]
        out["attention_mask"][b, :n] = 1
        out["labels"][b, :n] = it["labels"]
        out["prompt_len"][b] = it["prompt_len"]
        for s, l in enumerate(layers):
            out["saliency"][s][b, :n] = it["scores"][l]
    return {k: ([x.to(device) for x in v] if isinstance(v, list) else v.to(device)) for k, v in out.items()}


# ---------------------------------------------------------------------- losses
def lm_loss(model, hidden, labels, reduction="mean"):
    """CE of the response: logits only where a label follows (hidden (B, T, C), labels (B, T))."""
    tgt = labels[:, 1:]
    sel = tgt != -100  # (B, T-1)
    logits = model.get_output_embeddings()(hidden[:, :-1][sel]).float()  # (N, V)
    return F.cross_entropy(logits, tgt[sel], reduction=reduction), logits, sel


def normalise(sal: torch.Tensor, valid: torch.Tensor, target: str) -> torch.Tensor:
    """Per-sequence z-score of the saliency over `valid` tokens (B, T)."""
    x = sal.abs() if target == "abs" else -sal  # saliency of a CE loss: negative = the token lowers the loss
    n = valid.sum(-1, keepdim=True).clamp(min=1)
    mean = (x * valid).sum(-1, keepdim=True) / n
    std = (((x - mean) * valid) ** 2).sum(-1, keepdim=True).div(n).sqrt().clamp(min=1e-6)
    return (x - mean) / std * valid


def mse_loss(scores, target, valid):
    return ((scores - target) ** 2 * valid).sum() / valid.sum().clamp(min=1)


def rank_loss(scores, target, valid, pairs: int, gen: torch.Generator | None = None):
    """Mean of log(1 + exp(-(p_i - p_j) * sign(s_i - s_j))) over sampled pairs of valid tokens."""
    B, T = scores.shape
    w = valid.float() + 1e-12 * (~valid)  # sample only valid tokens (tiny weight keeps rows with none finite)
    i = torch.multinomial(w, pairs, replacement=True, generator=gen)  # (B, P)
    j = torch.multinomial(w, pairs, replacement=True, generator=gen)
    sign = torch.sign(target.gather(1, i) - target.gather(1, j))
    ok = (sign != 0) & valid.gather(1, i) & valid.gather(1, j)
    margin = (scores.gather(1, i) - scores.gather(1, j)) * sign
    return (F.softplus(-margin) * ok).sum() / ok.sum().clamp(min=1)


def ratio_loss(state, config, batch, forced, prunable):
    lengths, n_forced = batch["attention_mask"].sum(-1), forced.sum(-1)
    n_prunable = prunable.sum(-1).clamp(min=1).float()
    total = 0.0
    for s, m in enumerate(state.masks):
        target = ((stage_budget(config, s, lengths, n_forced) - n_forced).float() / n_prunable).clamp(0, 1)
        frac = (m * prunable).sum(-1) / n_prunable
        total = total + ((frac - target) ** 2).mean()
    return total / max(1, len(state.masks))


def step_losses(model, predictor, config: SDTPConfig, tcfg: TrainConfig, batch, gen=None,
                cls_scale: float = 1.0) -> dict:
    """All loss terms of one batch (tensors; 'total' is what backward uses, with w_cls * cls_scale)."""
    am = batch["attention_mask"]
    protect = response_protect(batch["prompt_len"], batch["attention_mask"])
    forced = forced_mask(config, am, protect) & am.bool()
    pos = torch.arange(am.shape[1], device=am.device)
    prunable = (pos[None] < batch["prompt_len"][:, None]) & am.bool() & ~forced
    with masked_pruning(model, predictor, config, am, protect=protect, mode=tcfg.mask, tau=tcfg.tau) as st:
        hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=am).last_hidden_state
    cls, logits, sel = lm_loss(model, hidden, batch["labels"])
    out = {"cls": cls, "mse": cls.new_zeros(()), "rank": cls.new_zeros(()), "kl": cls.new_zeros(())}
    for s, scores in enumerate(st.scores):
        tgt = normalise(batch["saliency"][s], prunable, tcfg.saliency_target)
        out["mse"] = out["mse"] + mse_loss(scores, tgt, prunable) / len(st.scores)
        out["rank"] = out["rank"] + rank_loss(scores, tgt, prunable, tcfg.rank_pairs, gen) / len(st.scores)
    out["ratio"] = ratio_loss(st, config, batch, forced, prunable)  # logged in both modes
    if tcfg.w_kl > 0:
        with torch.no_grad():
            dense_h = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=am).last_hidden_state
            dense = model.get_output_embeddings()(dense_h[:, :-1][sel]).float()
        out["kl"] = F.kl_div(logits.log_softmax(-1), dense.log_softmax(-1), log_target=True, reduction="batchmean")
    out["total"] = (tcfg.w_cls * cls_scale * out["cls"] + tcfg.w_mse * out["mse"] + tcfg.w_rank * out["rank"]
                    + (tcfg.w_ratio * out["ratio"] if tcfg.mask == "gumbel" else 0) + tcfg.w_kl * out["kl"])
    out["kept_last"] = (st.masks[-1] * am).sum(-1).float().div(am.sum(-1)).mean().detach()
    return out


# ------------------------------------------------------------------- training
def grad_norms(predictor, losses: dict, tcfg: TrainConfig) -> tuple[float, float]:
    """(|grad w_cls L_cls|, |grad (w_mse L_mse + w_rank L_rank)|) over the predictor's parameters."""
    params = [p for p in predictor.parameters() if p.requires_grad]

    def norm(loss):
        if not loss.requires_grad:
            return 0.0
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None)))
    return norm(tcfg.w_cls * losses["cls"]), norm(tcfg.w_mse * losses["mse"] + tcfg.w_rank * losses["rank"])


def measure_balance(model, predictor, config, tcfg: TrainConfig, store, batches, device) -> tuple[float, dict]:
    """(factor for w_cls, what was measured): min(1, k / r), r = the median over the first `balance_batches`
    batches of |grad L_cls| / |grad L_mse + L_rank| (k = cls_balance; 1.0 when off or a term has no gradient)."""
    if tcfg.cls_balance <= 0:
        return 1.0, {"cls_scale": 1.0, "batches": 0, "ratio": None}
    ratios = []
    for idx in batches[: tcfg.balance_batches]:
        losses = step_losses(model, predictor, config, tcfg, collate_store(store, idx, config.stage_layers, device))
        n_cls, n_sal = grad_norms(predictor, losses, tcfg)
        if n_cls > 0 and n_sal > 0:
            ratios.append(n_cls / n_sal)
        del losses
    if not ratios:
        return 1.0, {"cls_scale": 1.0, "batches": 0, "ratio": None}
    r = float(np.median(ratios))
    scale = min(1.0, tcfg.cls_balance / r)
    return scale, {"cls_scale": scale, "batches": len(ratios), "ratio": r, "ratios": ratios}


def train(model, store, config: SDTPConfig, tcfg: TrainConfig, out_dir, *, resume: bool = True,
          data_source: str = "", tensorboard: bool = False, progress: bool = True) -> TokenPredictor:
    """Train predictors on `store` (a SaliencyStore computed for config.stage_layers); writes to out_dir:
    predictor.safetensors, pruning_config.json, train_log.csv, train_state.pt (per epoch, for resume)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tuple(store.layers) != tuple(config.stage_layers):
        raise ValueError(f"saliency was computed for layers {list(store.layers)}, the config has stages at "
                         f"{list(config.stage_layers)}")
    if (out_dir / "predictor.safetensors").exists() and not resume:
        raise FileExistsError(f"{out_dir} already holds a trained predictor; use another folder or resume=True")
    device = next(model.parameters()).device
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    pred = TokenPredictor.for_model(model, config, seed=tcfg.seed, attn_window=tcfg.attention_window,
                                    attn_kernel=tcfg.attention_kernel)
    pred.float().train()
    opt = torch.optim.AdamW(pred.parameters(), lr=tcfg.lr)
    start_epoch, step, cls_scale, balance = 0, 0, None, {}
    state_path = out_dir / "train_state.pt"
    if resume and state_path.exists():
        ck = torch.load(state_path, map_location=device, weights_only=False)
        same = lambda d: {k: v for k, v in d.items() if k != "epochs"}  # more epochs may be added on resume
        if same(ck["train_config"]) != same(asdict(tcfg)) or ck["sdtp_config"] != config.to_dict():
            raise ValueError(f"{state_path} was written with another configuration; use a new output folder")
        pred.load_state_dict(ck["predictor"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, step = ck["epoch"], ck["step"]
        cls_scale, balance = ck.get("cls_scale", 1.0), ck.get("balance", {})
        log.info("resuming from epoch %d (step %d)", start_epoch, step)
    writer = _tensorboard(out_dir) if tensorboard else None
    was_training, gc = model.training, tcfg.grad_checkpointing
    model.eval()  # no dropout in the frozen base
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    log_path = out_dir / "train_log.csv"
    fields = ["epoch", "step", "total", "cls", "mse", "rank", "ratio", "kl", "kept_last"]
    if not log_path.exists() or start_epoch == 0:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)
    try:
        for epoch in range(start_epoch, tcfg.epochs):
            order = list(range(len(store)))
            random.Random(tcfg.seed * 1000 + epoch).shuffle(order)
            torch.manual_seed(tcfg.seed * 1000 + epoch)  # Gumbel noise: a resumed epoch replays exactly
            gen = torch.Generator(device=device).manual_seed(tcfg.seed * 1000 + epoch)
            batches = [order[i: i + tcfg.batch_size] for i in range(0, len(order), tcfg.batch_size)]
            bar = tqdm(batches, desc=f"train epoch {epoch + 1}/{tcfg.epochs}", disable=not progress)
            for idx in bar:
                batch = collate_store(store, idx, config.stage_layers, device)
                if cls_scale is None:  # a fresh run: balance L_cls against the saliency terms, once
                    cls_scale, balance = measure_balance(model, pred, config, tcfg, store, batches, device)
                    log.info("loss balance over %d batches: median |grad L_cls| / |grad L_mse + L_rank| = %s -> "
                             "w_cls x %.3g", balance["batches"], balance["ratio"], cls_scale)
                    gen.manual_seed(tcfg.seed * 1000 + epoch)  # the step itself draws what it would have drawn
                    torch.manual_seed(tcfg.seed * 1000 + epoch)
                losses = step_losses(model, pred, config, tcfg, batch, gen, cls_scale)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                step += 1
                row = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{row['total']:.3f}", kept=f"{row['kept_last']:.2f}")
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow([epoch + 1, step] + [f"{row[k]:.6g}" for k in fields[2:]])
                if writer is not None:
                    for k in fields[2:]:
                        writer.add_scalar(f"train/{k}", row[k], step)
            atomic_torch_save({"predictor": pred.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                "step": step, "train_config": asdict(tcfg), "sdtp_config": config.to_dict(),
                                "cls_scale": cls_scale, "balance": balance},
                               state_path)
    finally:
        if gc:
            model.gradient_checkpointing_disable()
        model.train(was_training)
        for p, rg in frozen.items():
            p.requires_grad_(rg)
        if writer is not None:
            writer.close()
    pred.eval()
    pred.save(out_dir / "predictor.safetensors", overwrite=True)
    meta = {"sdtp_config": config.to_dict(), "train_config": asdict(tcfg), "loss_balance": balance,
            "data_source": data_source,
            "num_samples": len(store), "steps": step, "saliency_header": store.header,
            **provenance()}
    atomic_write_text(out_dir / "pruning_config.json", json.dumps(meta, indent=2, default=str) + "\n")
    return pred


def _tensorboard(out_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ImportError(f"tensorboard=True needs the tensorboard package ({e}); pip install tensorboard") from None
    return SummaryWriter(str(out_dir / "tb"))


__all__ = ["TrainConfig", "train", "step_losses", "rank_loss", "mse_loss", "normalise", "lm_loss", "validate", "format_rows"]
