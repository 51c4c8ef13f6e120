"""The training run: stage 1 + stage 2 on one model: data -> saliency -> predictors (one per seed) -> validation.

(Not to be confused with `sdtp_lib.workspace.pipeline`, which runs the numbered notebooks with papermill.)

    python -m sdtp_lib train --model smollm2-135m --samples 30 --out runs/train_demo

writes into the run folder: saliency/saliency.safetensors (+ stats.md), seed<k>/predictor.safetensors,
pruning_config.json, train_log.csv, validation.json/.md (physical engine and masked simulation) and
run.json (the full configuration, library versions, git commit).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import data as D
from . import saliency as SA
from ..config import SDTPConfig
from ..models import load_model
from ..io import atomic_write_text, provenance
from .train import TrainConfig, format_rows, train, validate

log = logging.getLogger(__name__)


@dataclass
class TrainingRunConfig:
    model: str = "smollm2-135m"  # model spec for load_model
    data: str = str(D.DEFAULT_DATA)  # Dolly-schema source
    samples: int | None = None  # how many samples to use (None: all)
    seq_len: int = 512  # truncate contexts to fit
    val_frac: float = 0.2  # held-out share (stratified by layout)
    keep_ratio: float = 0.9  # r
    stages: int = 10  # number of stages (placement from SDTPConfig.for_model)
    seeds: tuple[int, ...] = (0,)  # one predictor per training seed
    train: TrainConfig = field(default_factory=TrainConfig)
    engines: tuple[str, ...] = ("physical", "masked")  # validation engines
    baselines: tuple[str, ...] = ("random", "norm", "recent")  # validated beside the predictors (+ "attention",
    # the window-attention policy, and "oracle", the saliency oracle of each sample's response: an upper bound)
    device: str | None = None
    dtype: str | None = None
    data_seed: int = 0  # which samples (when `samples` is set) and the train/validation split


def _check_baselines(names) -> None:
    from ..scorers.registry import POLICY_NAMES, is_policy
    bad = [b for b in names if not is_policy(b) and b != "oracle"]
    if bad:
        raise ValueError(f"unknown baseline scorer(s) {bad}; known: 'oracle', {POLICY_NAMES}")


def training_samples(cfg: TrainingRunConfig, tok) -> tuple[list, list]:
    """(train, validation) samples of this run; notebook 01 computes saliency on the same train split."""
    samples = D.build_samples(D.load_instructions(cfg.data), tok, seq_len=cfg.seq_len, n=cfg.samples,
                              seed=cfg.data_seed)
    return D.split(samples, val_frac=cfg.val_frac, seed=cfg.data_seed)


def run_training(cfg: TrainingRunConfig, out_dir, progress: bool = True, tensorboard: bool = False,
                 saliency_file=None) -> dict:
    """Run (or resume) the training run into out_dir. saliency_file: a saliency.safetensors computed for the
    same samples (notebook 01's), reused instead of recomputed; one from other settings is refused."""
    _check_baselines(cfg.baselines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if saliency_file is not None:
        _reuse_saliency(Path(saliency_file), out / "saliency")
    t0 = time.perf_counter()
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    conf = SDTPConfig.for_model(model, keep_ratio=cfg.keep_ratio, num_stages=cfg.stages)
    tr, va = training_samples(cfg, tok)
    log.info("%d train / %d validation samples; stages %s", len(tr), len(va), list(conf.stage_layers))
    timing = {}

    t = time.perf_counter()
    try:
        sal_path = SA.compute_saliency(model, tr, conf.stage_layers, out / "saliency", data_source=cfg.data,
                                       seed=cfg.data_seed, seq_len=cfg.seq_len)
    except FileExistsError:
        if saliency_file is None:
            raise
        raise ValueError(f"the saliency file {saliency_file} was computed for other samples or settings than this "
                         "training run (model, data, n_samples, seq_len and seed must equal notebook 01's)") from None
    timing["saliency_s"] = time.perf_counter() - t
    store = SA.SaliencyStore.load(sal_path)
    stats = SA.saliency_stats(store)
    atomic_write_text(out / "saliency" / "stats.md", SA.format_stats(stats) + "\n")

    rows, preds = [], {}
    for seed in cfg.seeds:
        tcfg = TrainConfig(**{**asdict(cfg.train), "seed": seed})
        t = time.perf_counter()
        preds[seed] = train(model, store, conf, tcfg, out / f"seed{seed}", data_source=cfg.data, progress=progress,
                            tensorboard=tensorboard)
        timing[f"train_seed{seed}_s"] = time.perf_counter() - t
    kind = "hybrid" if cfg.train.attention_window else "predictor"
    scorers = {f"{kind}-s{s}": p for s, p in preds.items()}
    scorers.update({b: b for b in cfg.baselines})
    t = time.perf_counter()
    for engine in cfg.engines:
        rows += validate(model, scorers, conf, va, engine=engine, progress=progress)
    timing["validate_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    n_tr = len(tr)
    speed = {"saliency_samples_per_s": n_tr / timing["saliency_s"],
             "train_samples_per_s": n_tr * cfg.train.epochs * len(cfg.seeds)
             / sum(v for k, v in timing.items() if k.startswith("train_"))}
    summary = {"config": _jsonable(asdict(cfg)), "sdtp_config": conf.to_dict(), "num_train": n_tr,
               "num_val": len(va), "device": str(next(model.parameters()).device),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "timing": timing, "speed": speed, "saliency_stats": stats, "validation": rows, **provenance()}
    atomic_write_text(out / "run.json", json.dumps(_jsonable(summary), indent=2) + "\n")
    atomic_write_text(out / "validation.md", format_rows(rows) + "\n")
    return summary


def _reuse_saliency(src: Path, dst_dir: Path) -> None:
    """Copy src into dst_dir (compute_saliency then checks that it matches this run's samples and settings)."""
    src = src / SA.FILE_NAME if src.is_dir() else src
    if not src.is_file():
        raise FileNotFoundError(f"saliency file to reuse not found: {src}")
    dst = dst_dir / SA.FILE_NAME
    if dst.exists():
        if dst.read_bytes() != src.read_bytes():
            raise FileExistsError(f"{dst} exists and differs from {src}; use another run folder")
        return
    dst_dir.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    log.info("reusing saliency from %s", src)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x
