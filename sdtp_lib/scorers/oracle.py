"""Stage-1 saliency (gradient x activation at the stage layers) and the oracle that scores with it.

token_saliency[b, t] at layer l = (dL/dx * x)[b, t].sum(-1), x = the hidden state ENTERING decoder layer l (for
l = 0 the embedding output), L = mean cross-entropy over the labelled tokens (HF labels: -100 ignored,
logits at p predict labels[p + 1]). To first order, -saliency[t] is the loss change when token t's
input to layer l is zeroed. Sign: L is a LOSS, so NEGATIVE saliency = removing the token would raise the
loss (it helps predict the labels), positive = a distractor; "higher = keep" scorers want -saliency or |saliency|.

The training targets of stage 1 (`sdtp_lib.training.saliency`, over a data set) and the `SaliencyOracle` (the
same quantity for one sample's gold answer: an upper bound, not a method) both come from `token_saliency`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._active import ACTIVE

IGNORE = -100


def token_saliency(model, input_ids, labels, layers, attention_mask=None) -> dict[int, torch.Tensor]:
    """{layer: (B, T) float32 saliency} from one forward + backward; the model is left exactly as it was.

    Parameters get no gradient (requires_grad is switched off during the call and restored, also on
    error); the graph starts at the embedding output. Runs in eval mode; the train/eval flags are restored.
    For B > 1 each row's loss is its own mean (rows summed), so a row's saliency does not depend on its
    batch. input_ids/labels/attention_mask: (B, T) or (T,).
    """
    if model in ACTIVE:
        raise ValueError("saliency needs all tokens present: call token_saliency outside a pruning() block")
    input_ids, labels, attention_mask = _check_inputs(model, input_ids, labels, attention_mask)
    layers = check_layers(model, layers)
    blocks = model.get_decoder().layers
    entering: dict[int, torch.Tensor] = {}

    def capture(l):
        def hook(module, args, kwargs):
            entering[l] = args[0] if args else kwargs["hidden_states"]  # (B, T, C)
        return hook

    def graph_root(module, args, out):  # embedding output: a leaf that requires grad
        return out.detach().requires_grad_()

    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    hooks = []
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        hooks.append(model.get_input_embeddings().register_forward_hook(graph_root))
        hooks += [blocks[l].register_forward_pre_hook(capture(l), with_kwargs=True) for l in layers]
        with torch.inference_mode(False), torch.enable_grad():
            loss = _loss(model, input_ids, labels, attention_mask)
            grads = torch.autograd.grad(loss, [entering[l] for l in layers])
    finally:
        for h in hooks:
            h.remove()
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        for m, t in modes:
            m.training = t
    return {l: (g.float() * entering[l].detach().float()).sum(-1) for l, g in zip(layers, grads)}  # (B, T)


def _loss(model, input_ids, labels, attention_mask) -> torch.Tensor:
    target = labels[:, 1:]  # (B, T-1): position p predicts labels[p + 1]
    keep = (target != IGNORE).any(0).nonzero().squeeze(-1)  # (K,) positions whose logits matter
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep)
    target = target[:, keep]  # (B, K)
    ce = F.cross_entropy(out.logits.float().transpose(1, 2), target, ignore_index=IGNORE, reduction="none")  # (B, K)
    return (ce.sum(1) / (target != IGNORE).sum(1)).sum()


def check_layers(model, layers) -> tuple[int, ...]:
    n = len(model.get_decoder().layers)
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError("saliency: no layer given")
    bad = [l for l in layers if isinstance(l, bool) or not isinstance(l, int) or not 0 <= l < n]
    if bad:
        raise ValueError(f"saliency: layer index {bad} out of range: the model has {n} decoder layers (0..{n - 1})")
    return tuple(sorted(set(layers)))


def _check_inputs(model, input_ids, labels, attention_mask):
    device = next(model.parameters()).device
    ids, lab = torch.as_tensor(input_ids), torch.as_tensor(labels)
    ids, lab = (ids[None], lab[None]) if ids.dim() == 1 else (ids, lab)
    if ids.dim() != 2 or lab.shape != ids.shape:
        raise ValueError(f"saliency: input_ids {tuple(ids.shape)} and labels {tuple(lab.shape)} must both be (B, T) or (T,)")
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask)
        attention_mask = attention_mask[None] if attention_mask.dim() == 1 else attention_mask
        if attention_mask.shape != ids.shape:
            raise ValueError(f"saliency: attention_mask {tuple(attention_mask.shape)} does not match input_ids "
                             f"{tuple(ids.shape)}")
        attention_mask = attention_mask.to(device)
    n_lab = (lab[:, 1:] != IGNORE).sum(1)
    if (n_lab == 0).any():
        rows = (n_lab == 0).nonzero().flatten().tolist()
        raise ValueError(f"saliency: labels of row(s) {rows} have no labelled token after position 0 "
                         f"(all -100; labels[0] is never predicted), so there is no loss to differentiate")
    return ids.long().to(device), lab.long().to(device), attention_mask


@dataclass
class SaliencyOracle:
    """An upper bound, not a method: it needs the answer. Each stage scores the current tokens by the stage-1
    saliency of the answer's loss at that stage's layer (`token_saliency` of prompt + answer on the dense
    model), read at their original positions; |grad x activation| ("abs", the predictor's default training target)
    or its negation ("neg": the first-order loss increase when the token is removed)."""
    saliency: dict  # stage index -> (B, T_prompt) float32 saliency of the prompt tokens at that stage's layer
    target: str = "abs"

    def __post_init__(self):
        if self.target not in ("abs", "neg"):
            raise ValueError(f"SaliencyOracle: target must be 'abs' or 'neg', got {self.target!r}")

    @classmethod
    def for_labels(cls, model, ids: torch.Tensor, labels: torch.Tensor, config, target: str = "abs"):
        """The oracle of every token of ids (B, T): the saliency of the loss on `labels` (call outside pruning())."""
        sal = token_saliency(model, ids, labels, config.stage_layers)
        return cls({s: sal[l] for s, l in enumerate(config.stage_layers)}, target)

    @classmethod
    def for_answer(cls, model, prompt_ids: torch.Tensor, answer_ids: torch.Tensor, config, target: str = "abs"):
        """The oracle of one prompt (1, T) with the answer tokens (1, A) that follow it (call outside pruning())."""
        T = prompt_ids.shape[-1]
        dev = next(model.parameters()).device
        ids = torch.cat([prompt_ids, answer_ids], dim=-1).to(dev)  # (1, T + A)
        labels = ids.clone()
        labels[:, :T] = -100  # the loss of the answer only
        full = cls.for_labels(model, ids, labels, config, target)
        return cls({s: sal[:, :T] for s, sal in full.saliency.items()}, target)

    def __call__(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        sal = self.saliency[stage].to(hidden.device)  # (B, T_prompt)
        if positions is not None:
            sal = sal.gather(1, positions)  # (B, T_cur)
        return sal.abs() if self.target == "abs" else -sal
