"""The paper's predictor: one small MLP per stage, 2 logits (keep, drop); score = keep - drop. With an attention
feature (`attn_window`) it is the hybrid. Trained by `sdtp_lib.training`; the shipped ones are in `sdtp_lib/predictors/`."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from ..config import SDTPConfig
from ..models import config_fingerprint
from .attention import WindowAttentionScorer

FORMAT = "sdtp-predictor"
FORMAT_VERSION = 3  # 2: the hybrid (attn_window / attn_kernel); 3: its feature standardised per sequence and fc1's
# feature column kept apart (a plain predictor is still written as 1; format-2 hybrids are refused: retrain them)


class StageMLP(nn.Module):
    """Linear -> GELU -> Linear on the parameter-free layer-normalised hidden state.

    The normalisation is a deviation from the paper's plain MLP: decoder hidden states carry a few huge
    "massive activation" channels whose scale differs by layer, which made unnormalised scores explode.
    With `extra` = 1 (the hybrid) a per-token feature (the log window attention) is a further input of fc1 and is
    also added to the keep logit with a learned gain (1 at initialisation: the hybrid starts as the attention)."""
    def __init__(self, hidden_size: int, width: int, extra: int = 0):
        super().__init__()
        if extra not in (0, 1):
            raise ValueError(f"StageMLP: extra must be 0 or 1 (one feature), got {extra}")
        self.fc1 = nn.Linear(hidden_size, width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width, 2)
        if extra:  # fc1's column for the feature, kept apart: slicing it off one (width, C + 1) weight left a
            # (width, C) view with an odd row stride, which cuBLAS runs far slower at long prompts
            bound = (hidden_size + 1) ** -0.5  # nn.Linear's initialisation for C + 1 inputs
            self.fc1_feature = nn.Parameter(torch.empty(width).uniform_(-bound, bound))
            self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x, feature=None):  # (B, T, C) [, (B, T)] -> (B, T, 2)
        x = nn.functional.layer_norm(x, x.shape[-1:])
        if feature is None:
            return self.fc2(self.act(self.fc1(x)))
        f = feature.to(x.dtype)[..., None]  # (B, T, 1)
        h = self.fc1(x) + f * self.fc1_feature  # (B, T, width): fc1 of [x, f] without concatenating x
        return self.fc2(self.act(h)) + nn.functional.pad(self.gain * f, (0, 1))  # keep logit += gain * feature


class TokenPredictor(nn.Module):
    """The paper's predictor (attn_window = 0: scores from each token's own hidden state) or, with
    attn_window > 0, the hybrid: the stage MLP also reads the log window attention of the token (the
    `WindowAttentionScorer` of the last attn_window prompt tokens at the stage layer), standardised over the
    sequence, so it needs the stage layer (`needs_layer`) like the attention scorer."""
    def __init__(self, hidden_size: int, stage_layers, width: int | None = None, model_id: str = "",
                 fingerprint: str = "", attn_window: int = 0, attn_kernel: int = 15):
        super().__init__()
        self.hidden_size, self.stage_layers = int(hidden_size), tuple(int(l) for l in stage_layers)
        self.width = int(width or max(8, hidden_size // 4))  # ~d/4 keeps it under 1% of the model's FLOPs
        self.model_id, self.fingerprint = model_id, fingerprint
        if attn_window < 0:
            raise ValueError(f"TokenPredictor: attn_window must be >= 0 (0: no attention feature), got {attn_window}")
        self.attn_window, self.attn_kernel = int(attn_window), int(attn_kernel)
        self.attention = (WindowAttentionScorer(self.attn_window, self.attn_kernel, heads="mean")  # as trained
                          if self.attn_window else None)
        extra = 1 if self.attention is not None else 0
        self.stages = nn.ModuleList(StageMLP(self.hidden_size, self.width, extra) for _ in self.stage_layers)

    @property
    def needs_layer(self) -> bool:  # the engine then passes the stage layer (see sdtp_lib.scorers.base)
        return self.attention is not None

    @classmethod
    def for_model(cls, model, config: SDTPConfig, width: int | None = None, seed: int = 0, attn_window: int = 0,
                  attn_kernel: int = 15) -> "TokenPredictor":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pred = cls(model.config.hidden_size, config.stage_layers, width,
                       model_id=str(getattr(model.config, "sdtp_model_id", model.config.name_or_path)),
                       fingerprint=config_fingerprint(model.config), attn_window=attn_window,
                       attn_kernel=attn_kernel)
        p = next(model.parameters())
        return pred.to(device=p.device, dtype=p.dtype)

    def attention_feature(self, hidden: torch.Tensor, **layer_kw) -> torch.Tensor:
        """(B, T) log(pooled window attention + 1e-4 / n), z-scored over each sequence's present tokens (all current
        ones in the engine, the kept ones in the masked simulation; n of them), 0 for absent ones. At the scale of
        the z-scored saliency targets, so a hybrid starts with the attention's ranking at the targets' scale (an
        unscaled log attention, -9 to +8, made the first run's score MSE 34)."""
        if layer_kw.get("layer") is None:
            raise TypeError("this predictor reads the window attention (attn_window > 0): it needs the stage layer, "
                            "which sdtp_lib.pruning and masked_pruning pass")
        p = self.attention(hidden, 0, **layer_kw)  # (B, T)
        alive = layer_kw.get("alive")
        present = alive if alive is not None else torch.ones_like(p, dtype=torch.bool)
        n = present.sum(-1, keepdim=True).clamp(min=1)  # (B, 1)
        f = torch.log(p + 1e-4 / n)
        mean = torch.where(present, f, 0.0).sum(-1, keepdim=True) / n
        var = torch.where(present, (f - mean) ** 2, 0.0).sum(-1, keepdim=True) / n
        return torch.where(present, (f - mean) * torch.rsqrt(var + 1e-6), 0.0)

    def logits(self, hidden: torch.Tensor, stage: int, **layer_kw) -> torch.Tensor:
        """(B, T, 2); layer_kw: what the engine passes a layer-reading scorer (the hybrid needs it)."""
        mlp = self.stages[stage]
        feature = self.attention_feature(hidden, **layer_kw) if self.attention is not None else None
        return mlp(hidden.to(mlp.fc1.weight.dtype), feature)  # (B, T, 2)

    def forward(self, hidden: torch.Tensor, stage: int, positions: torch.Tensor | None = None,
                **layer_kw) -> torch.Tensor:
        lg = self.logits(hidden, stage, **layer_kw)
        return lg[..., 0] - lg[..., 1]  # (B, T) keep - drop

    def flops_per_token(self) -> int:
        extra = 1 if self.attention is not None else 0
        mlp = 2 * ((self.hidden_size + extra) * self.width + self.width * 2)  # fc1 (+ its feature column), fc2
        return mlp + (self.attention.flops_per_token() if self.attention is not None else 0)

    # ---------------------------------------------------------- compatibility
    def check_compatible(self, model, config: SDTPConfig | None = None) -> None:
        hs = model.config.hidden_size
        if hs != self.hidden_size:
            raise ValueError(f"TokenPredictor was trained for hidden size {self.hidden_size} "
                             f"({self.model_id or 'unknown model'}), but this model has hidden size {hs}")
        fp = config_fingerprint(model.config)
        if self.fingerprint and fp != self.fingerprint:
            raise ValueError(f"TokenPredictor was trained for another model ({self.model_id or '?'}, config "
                             f"fingerprint {self.fingerprint}); this model's fingerprint is {fp}")
        n = len(config.stage_layers) if config is not None else 0
        if config is not None and tuple(config.stage_layers) != self.stage_layers[:n]:  # a prefix: SDTP-low
            raise ValueError(f"TokenPredictor has stages at layers {list(self.stage_layers)} but the SDTPConfig "
                             f"asks for {list(config.stage_layers)} (it may use the first stages only, as "
                             "SDTP-low does)")

    # --------------------------------------------------------------- save/load
    def header(self) -> dict:
        h = {"format": FORMAT, "version": FORMAT_VERSION if self.attention is not None else 1,
             "model_id": self.model_id, "fingerprint": self.fingerprint, "hidden_size": self.hidden_size,
             "stage_layers": list(self.stage_layers), "width": self.width}
        if self.attention is not None:
            h.update(attn_window=self.attn_window, attn_kernel=self.attn_kernel)
        return h

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        from safetensors.torch import save_file
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(tmp), metadata={"sdtp": json.dumps(self.header())})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model=None, config: SDTPConfig | None = None) -> "TokenPredictor":
        from safetensors import safe_open
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"predictor file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for truncated/garbage files
            raise ValueError(f"corrupt or unreadable predictor checkpoint {path}: {e}") from None
        try:
            h = json.loads(meta["sdtp"])
            assert h["format"] == FORMAT
        except Exception:
            raise ValueError(f"{path} is a safetensors file but not an SDTP predictor (no 'sdtp' header)") from None
        if h["version"] > FORMAT_VERSION:
            raise ValueError(f"{path}: predictor format version {h['version']} is newer than this library's "
                             f"({FORMAT_VERSION}); upgrade sdtp")
        if h["version"] == 2:
            raise ValueError(f"{path} is a hybrid of format 2, whose attention feature was not standardised: this "
                             "library reads it differently; train it again (python -m sdtp_lib train "
                             "--attention-window N)")
        pred = cls(h["hidden_size"], h["stage_layers"], h["width"], h.get("model_id", ""), h.get("fingerprint", ""),
                   attn_window=h.get("attn_window", 0), attn_kernel=h.get("attn_kernel", 15))
        try:
            pred.load_state_dict(tensors)
        except RuntimeError as e:
            raise ValueError(f"corrupt predictor checkpoint {path}: tensors do not match its header ({e})") from None
        if model is not None:
            pred.check_compatible(model, config)
            p = next(model.parameters())
            pred = pred.to(device=p.device, dtype=p.dtype)
        return pred


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "predictors"  # sdtp_lib/predictors/


def shipped_name(model, hybrid: bool = False) -> str:
    """The name a shipped predictor (or hybrid) of `model` has: its embedded spec name [+ "-hybrid"]."""
    return str(getattr(model.config, "sdtp_model_id", "")) + ("-hybrid" if hybrid else "")


def shipped_predictors() -> list[str]:
    """Names of the predictors that ship inside the package (trained on the project's default data)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.safetensors"))


def load_predictor(name_or_path: str | Path, model=None, config: SDTPConfig | None = None) -> TokenPredictor:
    """A shipped predictor by model name (e.g. "smollm2-135m") or a predictor file path."""
    shipped = SHIPPED_DIR / f"{name_or_path}.safetensors"
    if shipped.exists():
        return TokenPredictor.load(shipped, model=model, config=config)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return TokenPredictor.load(path, model=model, config=config)
    raise FileNotFoundError(f"no predictor {str(name_or_path)!r}: not a file, and not one of the shipped predictors "
                            f"{shipped_predictors()}")
