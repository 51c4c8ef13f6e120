"""sdtp: Saliency-driven Dynamic Token Pruning on HF decoder LLMs (Qwen2, Llama, Mistral)."""
from .config import SDTPConfig
from .engine import PruningError, PruningStats, pruning, select_tokens
from .flops import prefill_flops
from .compare import Comparison, compare
from .models import SUPPORTED_FAMILIES, UnsupportedModelError, load_model, resolve_device
from .policies import NormScorer, RandomScorer, RecencyScorer, make_scorer
from .predictor import TokenPredictor, load_predictor, shipped_predictors

__version__ = "0.1.0"
__all__ = ["SDTPConfig", "pruning", "PruningStats", "PruningError", "select_tokens", "prefill_flops", "load_model", "resolve_device",
           "compare", "Comparison",
           "SUPPORTED_FAMILIES", "UnsupportedModelError", "TokenPredictor", "RandomScorer", "NormScorer",
           "RecencyScorer", "make_scorer", "load_predictor", "shipped_predictors"]
