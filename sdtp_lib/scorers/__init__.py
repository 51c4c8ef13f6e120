"""Token scorers, one module per family (the interface: `base`):

- `baselines`: random, hidden-state norm, recency: no training, the floor;
- `attention`: window attention, question-aware, no training;
- `predictor`: the paper's trained per-stage MLP (`TokenPredictor`), and the hybrid that adds window attention;
- `fusion`: two scorers as one by their ranks (`RankFusion`, "predictor+attention" in a spec);
- `oracle`: stage-1 saliency of the gold answer (`token_saliency`, `SaliencyOracle`): an upper bound;
- `registry`: names -> scorers (`make_scorer`, `resolve_scorer`).
"""
from .attention import TIE_BREAK, WindowAttentionScorer, max_pool_alive, normed_proj, window_attention
from .base import ScorerWrapper
from .baselines import NormScorer, RandomScorer, RecencyScorer
from .fusion import RankFusion, rank_quantile
from .oracle import SaliencyOracle, token_saliency
from .predictor import TokenPredictor, load_predictor, shipped_name, shipped_predictors
from .registry import POLICIES, POLICY_NAMES, is_policy, make_scorer, resolve_scorer

__all__ = ["WindowAttentionScorer", "window_attention", "max_pool_alive", "normed_proj", "TIE_BREAK", "ScorerWrapper",
           "NormScorer", "RandomScorer", "RecencyScorer", "RankFusion", "rank_quantile", "SaliencyOracle",
           "token_saliency", "TokenPredictor", "load_predictor", "shipped_name", "shipped_predictors", "POLICIES",
           "POLICY_NAMES", "is_policy", "make_scorer", "resolve_scorer"]
