"""Held-out response loss of policies (no training): a training run's validation split, scored by each policy at
the same schedule beside dense, with 95% bootstrap intervals (sdtp_lib.training.validate). For settings a run did not cover.

    python scripts/heldout_scorers.py --model qwen2.5-coder-0.5b --data train.jsonl --seq-len 3072 \
        --scorers attention attention-mean-k15 --out runs/heldout
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import sdtp_lib as S
from sdtp_lib.io import atomic_write_text, provenance
from sdtp_lib.training.run import TrainingRunConfig, _check_baselines, training_samples
from sdtp_lib.training.validate import format_rows, validate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="the training run's Dolly-schema JSONL")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--val-frac", type=float, default=0.2)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--scorers", nargs="+", required=True, help="policies, e.g. attention norm recent oracle")
    ap.add_argument("--engine", default="physical", choices=["physical", "masked"])
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    _check_baselines(args.scorers)
    out = Path(args.out)
    if (out / "validation.json").exists():
        raise SystemExit(f"{out / 'validation.json'} exists: choose another --out")
    cfg = TrainingRunConfig(model=args.model, data=args.data, seq_len=args.seq_len, val_frac=args.val_frac,
                            data_seed=args.data_seed, dtype=args.dtype, device=args.device)
    model, tok = S.load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    conf = S.SDTPConfig.for_model(model, keep_ratio=cfg.keep_ratio, num_stages=cfg.stages)
    _, va = training_samples(cfg, tok)
    rows = validate(model, {s: s for s in args.scorers}, conf, va, engine=args.engine)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "validation.md", format_rows(rows) + "\n")
    atomic_write_text(out / "validation.json", json.dumps(dict(config=vars(args), n_validation=len(va), rows=rows,
                                                               **provenance()), indent=1, default=str))
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
