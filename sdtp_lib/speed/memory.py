"""Peak-memory savers that change no result beyond float reassociation.

`chunked_mlp(model, chunk_tokens)`: inside the block every decoder layer's MLP runs over the sequence in
chunks, so its (T, intermediate) temporaries (gate, up, their product: ~15 GB for Qwen2-7B at 128K tokens)
exist for one chunk at a time. The MLP modules are wrapped in place and put back on exit.
(sdtp_lib.speed.kernels.fast_prefill does the same and also fuses the elementwise work.)
"""
from __future__ import annotations

import contextlib

import torch.nn as nn


class ChunkedMLP(nn.Module):
    def __init__(self, mlp: nn.Module, chunk_tokens: int):
        super().__init__()
        self.inner, self.chunk_tokens = mlp, chunk_tokens

    def _run(self, x):
        return self.inner(x)

    def forward(self, x):  # (B, T, C) -> (B, T, C), token-wise: chunks along T are independent
        T = x.shape[1]
        if T <= self.chunk_tokens:
            return self._run(x)
        out = x.new_empty(x.shape)  # the MLP maps C -> C
        n = -(-T // self.chunk_tokens)
        step = -(-T // n)  # n equal chunks of <= chunk_tokens (no small, inefficient remainder GEMM)
        for i in range(0, T, step):
            out[:, i: i + step] = self._run(x[:, i: i + step])
        return out


@contextlib.contextmanager
def chunked_mlp(model, chunk_tokens: int = 8192):
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    layers = model.get_decoder().layers
    originals = [layer.mlp for layer in layers]
    if any(isinstance(m, ChunkedMLP) for m in originals):
        raise RuntimeError("chunked_mlp: the model's MLPs are already chunked (nested block)")
    try:
        for layer, mlp in zip(layers, originals):
            layer.mlp = ChunkedMLP(mlp, chunk_tokens)
        yield model
    finally:
        for layer, mlp in zip(layers, originals):
            layer.mlp = mlp
