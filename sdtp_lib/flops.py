"""Prefill FLOPs counted from the model's real shapes (every nn.Linear in a layer + causal attention)."""
from __future__ import annotations

import torch.nn as nn


def layer_linear_macs(layer: nn.Module) -> int:
    """Multiply-accumulates per token of all linear maps in one decoder layer (q, k, v, o, gate, up, down)."""
    return sum(m.in_features * m.out_features for m in layer.modules() if isinstance(m, nn.Linear))


def attention_dims(model) -> tuple[int, int]:
    """(query heads, head dim) from the model config."""
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return heads, head_dim


def prefill_flops(model, tokens_per_layer: list[int], logits_positions: int = 1,
                  predictor_flops: int = 0) -> int:
    """FLOPs of one prefill where layer l computes on tokens_per_layer[l] tokens (causal, empty cache).

    per layer with n tokens: 2 * n * linear_macs  +  2 * 2 * heads * head_dim * n(n+1)/2  (QK^T and AV over
    the causal pairs), plus the LM head on `logits_positions` tokens and the predictors' own FLOPs.
    """
    layers = model.get_decoder().layers
    if len(tokens_per_layer) != len(layers):
        raise ValueError(f"tokens_per_layer has {len(tokens_per_layer)} entries for a {len(layers)}-layer model")
    heads, hd = attention_dims(model)
    total = 0
    for layer, n in zip(layers, tokens_per_layer):
        total += 2 * n * layer_linear_macs(layer) + 4 * heads * hd * (n * (n + 1) // 2)
    head = model.get_output_embeddings()
    total += 2 * logits_positions * head.in_features * head.out_features
    return total + predictor_flops
