"""sdtp: Saliency-driven Dynamic Token Pruning on HF decoder LLMs (Qwen2, Llama, Mistral).

Layout, lowest layer first (a module imports only from its own layer or below; tests/test_layout.py checks it):
config / models / embedded / io / ops / flops -> scorers/ -> engine, compare -> training/, speed/ -> eval/ ->
workspace/, cli.
"""
from ._moved import install as _install_moved
from ._version import __version__
from .compare import Comparison, compare
from .config import SDTPConfig
from .engine import PruningError, PruningStats, pruning, select_tokens
from .flops import prefill_flops
from .models import SUPPORTED_FAMILIES, UnsupportedModelError, load_model, resolve_device
from .scorers import (NormScorer, RandomScorer, RecencyScorer, TokenPredictor, load_predictor, make_scorer,
                      shipped_predictors)

_install_moved()  # old module paths (sdtp_lib.policies, sdtp_lib.kernels, ...) keep working

__all__ = ["SDTPConfig", "pruning", "PruningStats", "PruningError", "select_tokens", "prefill_flops", "load_model",
           "resolve_device", "compare", "Comparison", "SUPPORTED_FAMILIES", "UnsupportedModelError", "TokenPredictor",
           "RandomScorer", "NormScorer", "RecencyScorer", "make_scorer", "load_predictor", "shipped_predictors"]
