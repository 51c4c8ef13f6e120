"""Fused elementwise ops shared by the scorers (window attention's key norm) and the fast prefill
(`sdtp_lib.speed.kernels`): an HF RMSNorm module's maths as torch's one-pass `F.rms_norm`."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


def is_rmsnorm(m) -> bool:
    return type(m).__name__.endswith("RMSNorm") and hasattr(m, "weight") and hasattr(m, "variance_epsilon")


def rms_norm(norm: nn.Module, x):  # (B, T, C): an HF RMSNorm module's maths as torch's fused F.rms_norm
    return F.rms_norm(x, x.shape[-1:], norm.weight, norm.variance_epsilon)


class FusedRMSNorm(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.inner = norm

    def forward(self, x):  # (B, T, C)
        return rms_norm(self.inner, x)
