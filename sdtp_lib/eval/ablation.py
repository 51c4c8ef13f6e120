"""The paper's ablations, one factor at a time, on one model and one data split (REFERENCE.md sections 2 and 5):

- "losses": predictors trained with the full loss, without L_rank, without L_mse, without both (per seed);
- "stages": 1 vs 5 vs 10 stages at one compression ("sdtp@1.6x+S1" ...), trained predictor and window attention;
- "keep_ratio": r in {0.9, 0.8, 0.7} (a keep ratio needs no retraining);
- "start_layer": the first stage's layer (+L<layer>) x r; a predictor is trained for each placement.

    cfg = AblationConfig(model="smollm2-135m", samples=30, seeds=(0,), synthetic=None)
    results = run_ablations(cfg, "runs/ablations")   # {ablation: results dict}; resumable

Quality: the held-out response loss against dense with a paired bootstrap interval (sdtp_lib.training.validate) and,
when `synthetic` is set, the synthetic suite's accuracy against dense (paired; sdtp_lib.eval.synthetic). Cost: the
compression and the prefill FLOPs ratio (pruned / dense, the scorers' own FLOPs not counted) of the same variant on
the Qwen2-7B shape (a config-only model on the meta device) at `reference_length` tokens.

Predictors live in out_dir/predictors/<loss>_L<first stage layer>/seed<k>/ (10 stages from that layer, the for_model
placement), trained once and shared by the ablations; fewer stages use the first ones (as SDTP-low does). A predictor
is only ever evaluated at the layers it was trained for (TokenPredictor.check_compatible refuses anything else).
The losses other than the full one are trained with the full loss's effective L_cls weight (w_cls x the factor its
loss balance measured, cls_balance off), so that only the switched-off term changes.
Each ablation writes out_dir/<ablation>/: results.json / results.md (schema: docs/ablations.md), config.json,
heldout.jsonl(.gz) (one line per finished setting with its per-sample losses: a rerun skips those settings) and
synthetic/ (the suite's folder); write_figure adds <ablation>.png.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import SDTPConfig, parse_variant
from ..io import atomic_write_text, compress_jsonl, decompress_jsonl, find_jsonl, provenance, read_jsonl
from ..models import load_model
from ..scorers.registry import resolve_scorer
from ..training import data as D
from ..training import saliency as SA
from ..training.run import TrainingRunConfig, _reuse_saliency, training_samples
from ..training.train import TrainConfig, train
from ..training.validate import bootstrap, sample_nll
from . import synthetic as SY
from . import workers as W

log = logging.getLogger(__name__)

ABLATIONS = ("losses", "stages", "keep_ratio", "start_layer")
LOSSES = {"full": (1.0, 1.0), "no_rank": (1.0, 0.0), "no_mse": (0.0, 1.0), "no_both": (0.0, 0.0)}  # (w_mse, w_rank)
LOSS_LABELS = {"full": "full loss", "no_rank": "no ranking loss", "no_mse": "no MSE", "no_both": "no ranking, no MSE"}
TRAIN_STAGES = 10  # predictors are trained for the 10-stage placement; fewer stages use its first ones
PREDICTOR = "predictor"  # in AblationConfig.scorers: the predictors trained here; anything else: a policy name


@dataclass
class AblationConfig:
    model: str = "smollm2-135m"  # load_model spec
    data: str = str(D.DEFAULT_DATA)  # Dolly-schema source (training and held-out split, as the training run)
    samples: int | None = None  # samples to use (None: all)
    seq_len: int = 512
    val_frac: float = 0.2  # held-out share (stratified by layout)
    data_seed: int = 0  # which samples and the split (as TrainingRunConfig.data_seed)
    device: str | None = None
    dtype: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)  # w_mse / w_rank / seed are set per setting
    seeds: tuple[int, ...] = (0, 1)  # training seeds (every trained predictor)
    ablations: tuple[str, ...] = ABLATIONS
    keep_ratio: float = 0.9  # r where the ablation does not vary it (and the predictors' training schedule)
    losses: tuple[str, ...] = tuple(LOSSES)
    stage_counts: tuple[int, ...] = (1, 5, 10)
    compression: float = 1.6  # the stage ablation's compression (the paper's LongBench SDTP: 1.61x)
    keep_ratios: tuple[float, ...] = (0.9, 0.8, 0.7)
    start_layers: tuple[int, ...] = (2, 4, 6, 8)
    start_keep_ratios: tuple[float, ...] = (0.9, 0.8, 0.7)  # the start-layer ablation's r (one line each)
    scorers: tuple[str, ...] = (PREDICTOR, "attention")  # for stages, keep_ratio and start_layer
    synthetic: dict | None = None  # SuiteConfig fields but scorers/keep_ratio (tasks, lengths, layouts, n_samples,
    # seed, decode, stop_at_answer: True unless given, as the ablations report accuracy only); None: no suite
    synthetic_workers: int = 1  # processes answering the suite, each with its own model (eval/workers.py): the
    # same answers, faster where one process leaves the device idle (a small model on a GPU)
    reference_length: int = 32768  # prompt tokens of the cost columns (Qwen2-7B shape)
    n_boot: int = 2000

    def __post_init__(self):
        for name in ("seeds", "ablations", "losses", "stage_counts", "keep_ratios", "start_layers",
                     "start_keep_ratios", "scorers"):
            setattr(self, name, tuple(getattr(self, name)))
        bad = {"ablations": set(self.ablations) - set(ABLATIONS), "losses": set(self.losses) - set(LOSSES)}
        for name, b in bad.items():
            if b:
                raise ValueError(f"AblationConfig.{name}: unknown {sorted(b)}; known: "
                                 f"{list(ABLATIONS if name == 'ablations' else LOSSES)}")
        if "losses" in self.ablations and "full" not in self.losses:
            raise ValueError("AblationConfig.losses must include 'full': the other settings are trained with its "
                             "L_cls weight and compared with it")
        if not self.seeds or any(n < 1 for n in self.stage_counts) or self.compression < 1:
            raise ValueError(f"AblationConfig: give at least one seed, stage counts >= 1 and a compression >= 1, got "
                             f"{self.seeds}, {self.stage_counts}, {self.compression}")
        for r in self.keep_ratios + self.start_keep_ratios + (self.keep_ratio,):
            if not 0 < r <= 1:
                raise ValueError(f"AblationConfig: keep ratios must be in (0, 1], got {r}")
        from ..scorers.registry import is_policy
        unknown = [s for s in self.scorers if s != PREDICTOR and not is_policy(s)]
        if unknown:
            raise ValueError(f"AblationConfig.scorers: {unknown} are neither {PREDICTOR!r} nor a policy name")
        if self.synthetic is not None:
            extra = {"scorers", "keep_ratio"} & set(self.synthetic)
            if extra:
                raise ValueError(f"AblationConfig.synthetic sets {sorted(extra)}: the ablation chooses them")
            SY.SuiteConfig(**self.synthetic)  # refuses bad tasks / lengths before anything runs
        W.check_count(self.synthetic_workers, "AblationConfig.synthetic_workers")

    def load(self) -> dict:
        """load_model's arguments for this configuration's model (here and in the suite's worker processes)."""
        return dict(spec=self.model, dtype=self.dtype, device=self.device)

    def run_config(self) -> TrainingRunConfig:
        """The training run these samples and this split come from (notebook 01 / 02 use the same)."""
        return TrainingRunConfig(model=self.model, data=self.data, samples=self.samples, seq_len=self.seq_len,
                                 val_frac=self.val_frac, data_seed=self.data_seed, device=self.device,
                                 dtype=self.dtype)


@dataclass(frozen=True)
class Setting:
    """One row: a variant (parse_variant text) scored by a trained predictor (loss, seed) or a policy."""
    ablation: str
    label: str  # "no ranking loss", "1 stage", "r=0.8", "L=8, r=0.9"
    variant: str  # "sdtp@0.9+L8"
    scorer: str  # PREDICTOR or a policy name
    seed: int | None = None  # the predictor's training seed (None: a policy)
    loss: str = "full"  # the predictor's loss setting

    @property
    def key(self) -> str:
        return f"{self.label} | {self.scorer} | seed {self.seed}"


def plan(cfg: AblationConfig, ablation: str) -> list[Setting]:
    """The settings of one ablation, in table order."""
    S = lambda label, variant, scorers: [  # noqa: E731 - every scorer (a predictor per seed) of one variant
        Setting(ablation, label, variant, s, seed) for s in scorers
        for seed in (cfg.seeds if s == PREDICTOR else (None,))]
    if ablation == "losses":
        return [Setting(ablation, LOSS_LABELS[loss], f"sdtp@{cfg.keep_ratio}", PREDICTOR, seed, loss)
                for loss in cfg.losses for seed in cfg.seeds]
    if ablation == "stages":
        return sum((S(f"{n} stage" + "s" * (n > 1), f"sdtp@{cfg.compression}x+S{n}", cfg.scorers)
                    for n in cfg.stage_counts), [])
    if ablation == "keep_ratio":
        return sum((S(f"r={r}", f"sdtp@{r}", cfg.scorers) for r in cfg.keep_ratios), [])
    if ablation == "start_layer":
        return sum((S(f"L={L}, r={r}", f"sdtp@{r}+L{L}", cfg.scorers) for L in cfg.start_layers
                    for r in cfg.start_keep_ratios), [])
    raise ValueError(f"unknown ablation {ablation!r}; known: {ABLATIONS}")


def loss_train_config(base: TrainConfig, loss: str, seed: int, cls_scale: float | None = None) -> TrainConfig:
    """The TrainConfig of one loss setting: w_mse / w_rank from LOSSES; the settings other than "full" take the full
    loss's effective L_cls weight (w_cls x cls_scale, its measured balance) with the balance off."""
    w_mse, w_rank = LOSSES[loss]
    tcfg = replace(base, w_mse=w_mse, w_rank=w_rank, seed=seed)
    if loss == "full":
        return tcfg
    if cls_scale is None:
        raise ValueError(f"loss setting {loss!r} needs the full loss's cls_scale (train 'full' first)")
    return replace(tcfg, w_cls=base.w_cls * cls_scale, cls_balance=0.0)


# ------------------------------------------------------------------ predictors and saliency
class PredictorBank:
    """Trained predictors by (loss, stage layers, seed), trained on first use and kept in out_dir/predictors/; the
    saliency they train on is computed once (or reused) for every stage layer any setting needs."""

    def __init__(self, model, cfg: AblationConfig, train_samples, out_dir: Path, layers_needed, saliency_file=None,
                 progress: bool = True):
        self.model, self.cfg, self.samples, self.out = model, cfg, train_samples, Path(out_dir)
        self.needed, self.saliency_file, self.progress = sorted(set(layers_needed)), saliency_file, progress
        self._stores: list | None = None

    def placement(self, start_layer: int | None) -> SDTPConfig:
        return SDTPConfig.for_model(self.model, keep_ratio=self.cfg.keep_ratio, num_stages=TRAIN_STAGES,
                                    start_layer=start_layer)

    def stores(self) -> list:
        """Saliency stores covering self.needed: the reused file and one for the layers it lacks, or one for all."""
        if self._stores is not None:
            return self._stores
        kw = dict(data_source=self.cfg.data, seed=self.cfg.data_seed, seq_len=self.cfg.seq_len)
        main = self.out / "saliency"
        if self.saliency_file is not None:
            _reuse_saliency(Path(self.saliency_file), main)
            layers = SA.SaliencyStore.load(main / SA.FILE_NAME).layers
        else:  # one pass for every layer: a backward pass gives each layer's saliency at no extra cost
            layers = sorted(set(self.placement(None).stage_layers) | set(self.needed))
        try:
            stores = [SA.SaliencyStore.load(SA.compute_saliency(self.model, self.samples, layers, main, **kw))]
        except FileExistsError:
            raise ValueError(f"the saliency file {self.saliency_file or main} was computed for other samples or "
                             "settings (model, data, n_samples, seq_len and seed must equal this run's)") from None
        stats = self.out / SA.STATS_FILE  # for 08's sparsity figure: the saliency files need not travel
        if not stats.exists():
            atomic_write_text(stats, json.dumps(SA.saliency_stats(stores[0]), indent=1) + "\n")
        rest = [l for l in self.needed if l not in stores[0].layers]
        if rest:  # one more pass over the samples for every layer the first file lacks, in a folder named by them
            folder = self.out / f"saliency_layers{'-'.join(map(str, rest))}"
            stores.append(SA.SaliencyStore.load(SA.compute_saliency(self.model, self.samples, rest, folder, **kw)))
        self._stores = stores
        return stores

    def store_for(self, layers) -> SA.SaliencyStore:
        """A store with the scores of exactly `layers` (from whichever file holds each)."""
        stores = self.stores()
        base, scores = stores[0], {}
        for l in layers:
            src = next((s for s in stores if l in s.scores), None)
            if src is None:
                raise ValueError(f"no saliency for layer {l} (have {sorted(set().union(*(s.scores for s in stores)))})")
            if src is not base and not (torch.equal(src.offsets, base.offsets)
                                        and torch.equal(src.input_ids, base.input_ids)):
                raise ValueError("the saliency files of this run hold different samples")
            scores[l] = src.scores[l]
        return replace(base, header={**base.header, "stage_layers": list(layers)}, scores=scores)

    def folder(self, loss: str, conf: SDTPConfig, seed: int) -> Path:
        return self.out / "predictors" / f"{loss}_L{conf.stage_layers[0]}" / f"seed{seed}"

    def path(self, loss: str, start_layer: int | None, seed: int) -> Path:
        """Where the predictor of (loss, placement from start_layer, seed) is or will be."""
        return self.folder(loss, self.placement(start_layer), seed) / "predictor.safetensors"

    def get(self, loss: str, start_layer: int | None, seed: int) -> Path:
        """The predictor file of (loss, placement from start_layer, seed); trained when missing."""
        conf = self.placement(start_layer)
        cls_scale = None
        if loss != "full":
            full = json.loads((self.get("full", start_layer, seed).parent / "pruning_config.json").read_text())
            cls_scale = full["loss_balance"].get("cls_scale", 1.0)
        tcfg = loss_train_config(self.cfg.train, loss, seed, cls_scale)
        path = self.path(loss, start_layer, seed)
        if _trained(path.parent, tcfg, conf):
            return path
        log.info("ablation: training predictor %s (stages %s, seed %d)", path.parent, list(conf.stage_layers), seed)
        train(self.model, self.store_for(conf.stage_layers), conf, tcfg, path.parent, data_source=self.cfg.data,
              progress=self.progress)
        return path


def _trained(out: Path, tcfg: TrainConfig, conf: SDTPConfig) -> bool:
    """A finished predictor of exactly this training configuration is in `out` (another one: an error)."""
    meta = out / "pruning_config.json"
    if not (out / "predictor.safetensors").exists() or not meta.exists():
        return False
    got = json.loads(meta.read_text())
    want = json.loads(json.dumps(asdict(tcfg), default=str))
    if got["train_config"] != want or got["sdtp_config"] != conf.to_dict():
        raise ValueError(f"{out} holds a predictor trained with another configuration; use another out_dir")
    return True


# ------------------------------------------------------------------ cost on the Qwen2-7B shape
class Cost:
    """Compression and prefill FLOPs ratio (pruned / dense) of a variant on the Qwen2-7B shape (meta device)."""

    def __init__(self, length: int):
        from ..flops import prefill_flops
        from ..speed.profiling import qwen2_7b_random
        self.length, self.model, self._flops = length, qwen2_7b_random(device="meta"), prefill_flops
        self.depth = self.model.config.num_hidden_layers
        self.dense = prefill_flops(self.model, [length] * self.depth)

    def __call__(self, variant: str, keep_ratio: float) -> tuple[float, float]:
        conf = parse_variant(variant).config(self.depth, keep_ratio)
        if conf is None:
            return 1.0, 1.0
        kept = conf.tokens_per_layer(self.length)
        return self.length / (sum(kept) / len(kept)), self._flops(self.model, kept) / self.dense


# ------------------------------------------------------------------ evaluation
def _heldout(model, scorer, config, samples, dense=None, n_boot=2000, seed=0) -> dict:
    """Pooled held-out loss of one scorer (None: dense) over `samples`, per-sample values, the paired delta."""
    out = [sample_nll(model, scorer, config, s, "physical") for s in samples]  # (nll sum, tokens, kept per layer)
    nll, tok = np.array([o[0] for o in out]), np.array([o[1] for o in out], dtype=float)
    res = {"loss": float(nll.sum() / tok.sum()), "n": len(samples), "compression_heldout": float(np.mean(
        [o[2][0] / np.mean(o[2]) for o in out])),
        "per_sample": [{"source_index": s.source_index, "layout": s.layout, "nll": float(a), "tokens": int(b)}
                       for s, a, b in zip(samples, nll, tok)]}
    if dense is not None:
        base = np.array([p["nll"] for p in dense["per_sample"]])
        res["delta"] = float(res["loss"] - dense["loss"])
        res["ci"] = list(bootstrap(nll, tok, n_boot, seed, base=base))
    return res


def _row(s: Setting | None, spec: str, model_depth: int, cost: Cost, keep_ratio: float) -> dict:
    """The schema's fields that do not depend on results (s None: the dense row)."""
    v = parse_variant(s.variant) if s is not None else None
    conf = v.config(model_depth, keep_ratio) if v is not None else None
    comp, flops = cost(s.variant, keep_ratio) if s is not None else (1.0, 1.0)
    return {"setting": s.label if s else "dense", "scorer": spec, "scorer_name": s.scorer if s else "dense",
            "loss": s.loss if s and s.scorer == PREDICTOR else None, "seed": s.seed if s else None,
            "keep_ratio": conf.keep_ratio if conf else None, "start_layer": conf.stage_layers[0] if conf else None,
            "stages": conf.num_stages if conf else None, "stage_layers": list(conf.stage_layers) if conf else None,
            "compression": comp, "flops_ratio": flops, "heldout_loss": None, "heldout_loss_dense": None,
            "heldout_delta": None, "heldout_ci": None, "compression_heldout": None, "synthetic_accuracy": None,
            "synthetic_dense_accuracy": None, "synthetic_delta": None, "synthetic_ci": None, "n_synthetic": None,
            "n_heldout": None}


def _config_record(cfg: AblationConfig) -> dict:
    """What decides the rows' values (settings lists excluded: settings can be added to a folder)."""
    keep = ("model", "data", "samples", "seq_len", "val_frac", "data_seed", "dtype", "train", "keep_ratio",
            "synthetic", "reference_length", "n_boot")
    return json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k in keep}, default=str))


def run_ablation(model, tok, cfg: AblationConfig, ablation: str, out_dir, bank: PredictorBank, val, cost: Cost,
                 progress: bool = True) -> dict:
    """One ablation into out_dir/<ablation>/ (resumed: finished settings are skipped); returns its results."""
    from tqdm.auto import tqdm
    out = Path(out_dir) / ablation
    out.mkdir(parents=True, exist_ok=True)
    record = _config_record(cfg)
    if (out / "config.json").exists():
        old = json.loads((out / "config.json").read_text())
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if diff:
            raise ValueError(f"{out} holds results of another configuration (differs in {', '.join(diff)}); use "
                             "another run_dir")
    else:
        atomic_write_text(out / "config.json", json.dumps(record, indent=2) + "\n")
    settings, depth = plan(cfg, ablation), model.config.num_hidden_layers
    finished = _finished(out, settings)
    if finished is not None:  # nothing to run: its predictors are not needed (a resumed run may not carry them)
        log.info("ablation %s: every setting finished (%s)", ablation, out / "results.json")
        return finished
    path = out / "heldout.jsonl"
    done = {r["key"]: r for r in read_jsonl(path, repair=True, missing_ok=True)}
    todo = [s for s in settings if s.key not in done] + ([] if "dense" in done else ["dense"])
    if todo:
        decompress_jsonl(path)
    log.info("ablation %s: %d settings, %d done", ablation, len(settings), len(settings) + 1 - len(todo))
    _refuse_lost_predictors(out, ablation, {s.key: (s.variant, bank.path(s.loss, _start_layer(s), s.seed))
                                            for s in settings if s.scorer == PREDICTOR}, done)
    specs = {}  # setting key -> scorer spec runnable here (a predictor by its absolute path)
    for s in settings:
        pred = bank.get(s.loss, _start_layer(s), s.seed) if s.scorer == PREDICTOR else None
        specs[s.key] = f"{s.variant}:{pred if pred else s.scorer}"
    with (open(path, "a", encoding="utf-8") if todo else contextlib.nullcontext()) as f:
        if "dense" not in done:
            done["dense"] = {"key": "dense", **_heldout(model, None, None, val, n_boot=cfg.n_boot)}
            f.write(json.dumps(done["dense"]) + "\n")
            f.flush()
        for s in tqdm([s for s in todo if s != "dense"], desc=f"ablation {ablation}", disable=not progress):
            conf = parse_variant(s.variant).config(model, cfg.keep_ratio)
            scorer, _ = resolve_scorer(specs[s.key].partition(":")[2], model, conf)  # a predictor: layers checked
            done[s.key] = {"key": s.key, **_heldout(model, scorer, conf, val, done["dense"], cfg.n_boot,
                                                     cfg.data_seed)}
            f.write(json.dumps(done[s.key]) + "\n")
            f.flush()
    if find_jsonl(path) is not None:
        compress_jsonl(path)  # every setting of this ablation has its line
    suite = _synthetic(model, tok, cfg, out / "synthetic", [specs[s.key] for s in settings], progress)
    dense = done["dense"]
    rows = [_fill(_row(None, "dense", depth, cost, cfg.keep_ratio), dense, dense, suite, "dense")]
    for s in settings:
        rel = specs[s.key] if s.scorer != PREDICTOR else \
            f"{s.variant}:{Path(specs[s.key].partition(':')[2]).parent.relative_to(Path(out_dir))}"
        rows.append(_fill(_row(s, rel, depth, cost, cfg.keep_ratio), done[s.key], dense, suite,
                          specs[s.key]))
    return write_results(out, ablation, cfg, rows)


def _start_layer(s: Setting) -> int | None:
    """The first stage's layer a setting's predictor is trained for (None: the default placement)."""
    return parse_variant(s.variant).start_layer if s.ablation == "start_layer" else None


def _refuse_lost_predictors(out: Path, ablation: str, preds: dict[str, tuple[str, Path]], done: dict) -> None:
    """Refuse to go on where held-out rows or suite answers were made with predictors that are no longer there (a
    run folder moved without its weights): training them again would put two different predictors in one table.
    preds: setting key -> (variant, its predictor's path) for the predictor settings."""
    cfg_file = out / "synthetic" / "config.json"
    asked = set(json.loads(cfg_file.read_text())["suite"]["scorers"]) if cfg_file.exists() else set()
    lost = [str(path) for key, (variant, path) in preds.items()
            if not path.exists() and (key in done or f"{variant}:{path}" in asked)]
    if lost:
        raise ValueError(f"{out} holds results of {len(lost)} predictor setting(s) whose predictors are gone "
                         f"({', '.join(sorted(set(lost)))}): a folder moved without its weights? Training them "
                         f"again would mix two predictors in one table; remove {out} to run the {ablation!r} "
                         "ablation again, or put the predictors back")


def _finished(out: Path, settings: list[Setting]) -> dict | None:
    """The ablation's results.json when it holds exactly these settings (its configuration was checked against
    config.json), else None."""
    path = out / "results.json"
    if not path.exists():
        return None
    res = json.loads(path.read_text(encoding="utf-8"))
    have = [f"{r['setting']} | {r['scorer_name']} | seed {r['seed']}" for r in res["rows"][1:]]
    return res if have == [s.key for s in settings] else None


def _synthetic(model, tok, cfg: AblationConfig, out: Path, specs: list[str], progress: bool):
    """The suite's rows for dense and every spec (None when the ablation runs without it)."""
    if cfg.synthetic is None:
        return None
    suite = SY.SuiteConfig(**{"stop_at_answer": True, **cfg.synthetic}, scorers=["dense", *dict.fromkeys(specs)],
                           keep_ratio=cfg.keep_ratio)  # accuracy only: decoding may end with the answer
    others = [out.parent.parent / a / out.name for a in ABLATIONS if a != out.parent.name]  # dense (and the same
    if cfg.synthetic_workers > 1:  # settings): answered once
        return W.run_suite_workers(cfg.load(), suite, out, cfg.synthetic_workers, reuse=others)
    return SY.run_suite(model, tok, suite, out, progress=progress, reuse=others)


def _fill(row: dict, held: dict, dense: dict, suite, spec: str) -> dict:
    row.update(heldout_loss=held["loss"], heldout_loss_dense=dense["loss"], n_heldout=held["n"],
               heldout_delta=held.get("delta", 0.0), heldout_ci=held.get("ci"),
               compression_heldout=held["compression_heldout"])
    if suite is not None:
        mine = [r["score"] for r in suite if r["scorer"] == spec]
        base = [r["score"] for r in suite if r["scorer"] == "dense"]
        row.update(synthetic_accuracy=float(np.mean(mine)), synthetic_dense_accuracy=float(np.mean(base)),
                   n_synthetic=len(mine))
        if spec == "dense":
            row["synthetic_delta"] = 0.0
        else:
            d = SY.paired_difference(suite, spec, "dense")
            row.update(synthetic_delta=d["diff"], synthetic_ci=[d["lo"], d["hi"]])
    return row


# ------------------------------------------------------------------ results
def write_results(out: Path, ablation: str, cfg: AblationConfig, rows: list[dict]) -> dict:
    res = {"ablation": ablation, "model": cfg.model, "config": json.loads(json.dumps(asdict(cfg), default=str)),
           **_provenance(), "rows": rows}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(out / "results.md", markdown(res))
    return res


def _provenance() -> dict:
    p = provenance()
    return {"versions": p["versions"], "commit": p["git_commit"]}


def markdown(res: dict) -> str:
    """results.md: one line per row."""
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    ci = lambda c: "" if c is None else f" [{c[0]:+.3f}, {c[1]:+.3f}]"  # noqa: E731
    pts = lambda c: "" if c is None else f" [{100 * c[0]:+.1f}, {100 * c[1]:+.1f}]"  # noqa: E731
    c = res["config"]
    lines = [f"# Ablation: {res['ablation']} ({res['model']}, commit {res['commit'] or 'unknown'})", "",
             "| setting | scorer | seed | r | first layer | stages | compression | FLOPs ratio | held-out loss | "
             "minus dense [95% CI] | synthetic accuracy | minus dense [95% CI] |", "|" + "---|" * 12]
    for r in res["rows"]:
        syn = "-" if r["synthetic_accuracy"] is None else f"{100 * r['synthetic_accuracy']:.1f}%"
        sd = "-" if r["synthetic_delta"] is None else f"{100 * r['synthetic_delta']:+.1f}{pts(r['synthetic_ci'])}"
        lines.append(f"| {r['setting']} | {r['scorer']} | {f(r['seed'], 'd')} | {f(r['keep_ratio'], '.3g')} | "
                     f"{f(r['start_layer'], 'd')} | {f(r['stages'], 'd')} | {r['compression']:.2f}x | "
                     f"{r['flops_ratio']:.3f} | {r['heldout_loss']:.3f} | {r['heldout_delta']:+.3f}"
                     f"{ci(r['heldout_ci'])} | {syn} | {sd} |")
    n = res["rows"][0]
    syn = (f"synthetic suite: {n['n_synthetic']} prompts per scorer, paired bootstrap (points of accuracy)"
           if n["n_synthetic"] else "no synthetic suite in this run")
    return "\n".join(lines) + (
        f"\n\nheld-out response loss over {n['n_heldout']} samples (physical engine), its difference to dense with a "
        f"paired bootstrap 95% interval; {syn}. Compression and FLOPs ratio (pruned / dense prefill, the scorers' "
        f"own FLOPs not counted) of the same variant on the Qwen2-7B shape at {c['reference_length']} tokens.\n")


def figure(res: dict):
    """One small figure: held-out loss minus dense (and synthetic accuracy minus dense when run) per setting, one
    series per scorer (seeds averaged, their range as the error bar when several)."""
    import matplotlib.pyplot as plt
    rows = [r for r in res["rows"] if r["scorer"] != "dense"]
    labels = list(dict.fromkeys(r["setting"] for r in rows))
    kinds = list(dict.fromkeys(r["scorer_name"] for r in rows))
    panels = [("heldout_delta", "held-out loss minus dense")]
    if rows and rows[0]["synthetic_delta"] is not None:
        panels.append(("synthetic_delta", "synthetic accuracy minus dense"))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + 0.9 * len(labels) * len(panels), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for j, kind in enumerate(kinds):
            x, y, lo, hi = [], [], [], []
            for i, lab in enumerate(labels):
                v = [r[key] for r in rows if r["setting"] == lab and r["scorer_name"] == kind]
                if v:
                    x.append(i + 0.15 * (j - (len(kinds) - 1) / 2))
                    y.append(float(np.mean(v)))
                    lo.append(y[-1] - min(v))
                    hi.append(max(v) - y[-1])
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o", capsize=3, label=kind)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{res['ablation']} ({res['model']})", fontsize=10)
    fig.tight_layout()
    return fig


def write_figure(out: Path, res: dict, dpi: int = 110, close: bool = True) -> Path:
    """figure(res) into out/<ablation>.png; close=False leaves it open (a notebook shows it inline)."""
    import matplotlib.pyplot as plt
    fig, path = figure(res), Path(out) / f"{res['ablation']}.png"
    fig.savefig(path, dpi=dpi)
    if close:
        plt.close(fig)
    return path


# ------------------------------------------------------------------ the run
def layers_needed(cfg: AblationConfig, depth: int) -> list[int]:
    """Every stage layer a predictor of this run is trained for."""
    starts = {None}
    if "start_layer" in cfg.ablations and PREDICTOR in cfg.scorers:
        starts |= set(cfg.start_layers)
    return sorted({l for L in starts for l in SDTPConfig.for_model(depth, num_stages=TRAIN_STAGES,
                                                                     start_layer=L).stage_layers})


def run_ablations(cfg: AblationConfig, out_dir, saliency_file=None, progress: bool = True) -> dict[str, dict]:
    """Every ablation of cfg into out_dir/<ablation>/; saliency_file: notebook 01's (or a training run's) saliency for
    the same samples, reused (layers it lacks are computed once more)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_model(**cfg.load())
    tr, val = training_samples(cfg.run_config(), tok)
    log.info("ablations %s: %d train / %d held-out samples", list(cfg.ablations), len(tr), len(val))
    depth = model.config.num_hidden_layers
    bank = PredictorBank(model, cfg, tr, out, layers_needed(cfg, depth), saliency_file, progress)
    cost = Cost(cfg.reference_length)
    return {a: run_ablation(model, tok, cfg, a, out, bank, val, cost, progress) for a in cfg.ablations}
