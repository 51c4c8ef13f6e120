"""lm-eval-harness with a pruned prefill: the registered model `sdtp` and the project's offline paper tasks.

    from sdtp_lib.eval.lmeval import run_lmeval, run_lmeval_suite, markdown
    res = run_lmeval("tiny-qwen2", ["sdtp_copa", "sdtp_boolq"], "runs/lmeval", keep_ratio=0.9, stages=10,
                     predictor="norm", limit=4)                         # -> res["accuracy"]["sdtp_copa"]
    by_scorer = run_lmeval_suite("smollm2-135m", ["sdtp_paper"], "runs/lmeval_suite")   # dense / sdtp / sdtp-low
    by_scorer = run_lmeval_suite("smollm2-135m", ["sdtp_paper"], "runs/x", scorers=["dense", "sdtp:random"])
    print(markdown(by_scorer))

Command line (lm-eval 0.4.x has no plugin discovery, so the module that registers `sdtp` must be imported
first; the verb `lmeval` does that and hands every argument to lm-eval's own CLI, adding `--include_path` for the
project's tasks when it is not given; `sdtp lmeval --help` shows lm-eval's arguments):

    python -m sdtp_lib lmeval --model sdtp --model_args pretrained=tiny-qwen2,keep_ratio=0.9,predictor=norm \
        --tasks sdtp_copa --limit 4 --device cpu --output_path runs/lmeval_cli --log_samples
    python -c "import sdtp_lib.eval.lmeval, lm_eval.__main__ as m; m.cli_evaluate()" --model sdtp ...   # the same

**The model `sdtp`** (`SDTPLM`, an `HFLM` subclass like lm-eval's `steered`: only the model calls change).
Model args on top of HFLM's: `keep_ratio` (0.9), `stages` (10; 5 = SDTP-low), `start_layer` (the first stage's
layer; default: the standard placement), `local_frac` (the newest fraction always kept; default 0.1), `predictor` (what
`sdtp_lib.scorers.resolve_scorer` accepts: "auto", "norm", "random", "recent", a shipped predictor name, a
predictor file or a run folder; "dense" = no pruning at all, HFLM's own calls). `pretrained` is a local
path / hub id (loaded by HFLM), one of this project's specs ("tiny-qwen2", "tiny-llama", "smollm2-135m",
"qwen2.5-coder-0.5b": loaded by `sdtp_lib.load_model`), or a `PreTrainedModel` (+ `tokenizer=`).

- Log-likelihoods: lm-eval feeds `(context + continuation)[:-1]`, right-padded into a batch, and reads the
  logits of the last `len(continuation)` positions (position p predicts token p + 1). The engine refuses
  padded batches and returns logits only for surviving tokens, so `_model_call` runs every row alone at its
  own length inside `pruning(..., protect=...)`, protecting exactly those last `len(continuation)` input
  positions (the last context token and the continuation but its final token), and scatters the surviving
  logits back into a (B, T, V) tensor at `stats.kept_positions` (0.0 at pruned and padded positions, which
  lm-eval never reads). A row's true length and continuation length are not in `_model_call`'s arguments:
  `_loglikelihood_tokens` (otherwise HFLM's own, batching and the one-token-continuation logits cache
  included) first records every request's exact input token sequence -> its continuation length, and
  `_model_call` looks each row up there (a padded row: the one recorded sequence that is the row minus
  trailing zero padding; ambiguity or an unknown row is an error, never a guess). Continuation tokens are
  therefore never pruned and are always scored with real logits (checked on every call).
- Generation: `model.generate` inside `pruning(...)` (the prefill is pruned, decoding is HF's), one row at a
  time at its unpadded length.
- `batch_size="auto"` is refused (its probe batches are not requests); with `keep_ratio=1.0` the
  log-likelihoods equal the dense HFLM's exactly (tests/test_lmeval.py).

**Tasks** (`lmeval_tasks/`, group `sdtp_paper`): sdtp_copa, sdtp_piqa, sdtp_winogrande, sdtp_mathqa,
sdtp_boolq, sdtp_cb, sdtp_wic, sdtp_wsc: the official prompts (the official utils functions, imported from the
installed lm_eval, where the official config uses them), 5-shot from `train`, metric acc, on JSONL files in
the official schema. `dataset_kwargs.data_files` are relative to the data folder: the task metadata key
`sdtp_lmeval_data` (`--metadata '{"sdtp_lmeval_data": "/data"}'`), else `$SDTP_LMEVAL_DATA`, else the
checkout's `data/lmeval_fixture/` (the project's own 8 + 8 examples per task). `load_fixture` (the tasks'
`custom_dataset`) resolves them, so the tasks work from any working directory; `task_manager()` gives a
TaskManager that knows them.
"""
from __future__ import annotations

if __name__ == "__main__":  # register through the importable module (one class, one registration), then run
    import sys as _sys

    from sdtp_lib.eval.lmeval import cli as _cli
    try:  # the old entry (commands in saved run folders): now `sdtp lmeval ...`
        _sys.exit(_cli())
    except (ValueError, FileNotFoundError) as _e:  # bad input: one line, exit code 2 (as the command line does)
        print(f"error: {_e}", file=_sys.stderr)
        _sys.exit(2)

import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from ..config import SDTPConfig
from ..engine import PruningError, pruning
from ..io import atomic_write_text, compress_jsonl, provenance, write_jsonl
from ..models import BUILTIN_SPECS, load_model, project_root, resolve_device
from ..scorers.registry import resolve_scorer
from .distributed import launched
from .scorers import file_stem

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent / "lmeval_tasks"
GROUP = "sdtp_paper"
PAPER_TASKS = ("sdtp_copa", "sdtp_piqa", "sdtp_winogrande", "sdtp_mathqa", "sdtp_boolq", "sdtp_cb", "sdtp_wic",
               "sdtp_wsc")
DATA_ENV = "SDTP_LMEVAL_DATA"
DATA_KEY = "sdtp_lmeval_data"  # task metadata key (TaskManager(metadata=...) / lm-eval's --metadata)
VARIANTS = {"dense": None, "sdtp": 10, "sdtp-low": 5}  # run_lmeval_suite: name -> stages (None: plain HFLM)


# ----------------------------------------------------------------------------------------------- data
def data_dir(override: str | Path | None = None) -> Path:
    """The folder the tasks' data_files are relative to: `override`, else $SDTP_LMEVAL_DATA, else the checkout's
    data/lmeval_fixture/."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV]).expanduser()
    else:
        root = project_root()
        if root is None:
            raise FileNotFoundError(f"no lm-eval data folder: set ${DATA_ENV} (this is not a source checkout, so "
                                    "there is no data/lmeval_fixture/)")
        path = root / "data" / "lmeval_fixture"
    if not path.is_dir():
        raise FileNotFoundError(f"lm-eval data folder {path} does not exist (from "
                                f"{'the argument' if override else '$' + DATA_ENV if os.environ.get(DATA_ENV) else 'the default'})")
    return path.resolve()


def load_fixture(data_files: dict | None = None, **metadata):
    """The tasks' `custom_dataset`: `datasets.load_dataset("json", data_files=...)` with relative data_files
    resolved against `data_dir(metadata["sdtp_lmeval_data"])`. lm-eval passes the task metadata (model args
    included) as keyword arguments; the other keys are ignored."""
    import datasets
    if not data_files:
        raise ValueError("load_fixture: the task's dataset_kwargs has no data_files")
    root = data_dir(metadata.get(DATA_KEY))
    files = {}
    for split, f in data_files.items():
        p = Path(f).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise FileNotFoundError(f"lm-eval task data: no file {p} (split {split!r}; data folder {root})")
        files[split] = str(p)
    return datasets.load_dataset("json", data_files=files)


def task_manager(data: str | Path | None = None, include_defaults: bool = False):
    """A TaskManager that knows the project's tasks (and lm-eval's own with include_defaults=True)."""
    from lm_eval.tasks import TaskManager
    meta = {DATA_KEY: str(data_dir(data))} if data else None
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults, metadata=meta)


# ---------------------------------------------------------------------------------------------- model
def _device(device) -> str:
    """lm-eval's CLI passes "cuda:0" by default; like HFLM, fall back to the CPU where there is no GPU."""
    if device in (None, "auto") or (str(device).startswith("cuda") and not torch.cuda.is_available()):
        return resolve_device("auto")
    return str(device)


@register_model("sdtp")
class SDTPLM(HFLM):
    """HFLM whose model calls run inside `sdtp_lib.pruning` (see the module docstring)."""

    def __init__(self, pretrained, keep_ratio: float = 0.9, stages: int = 10, predictor: str = "auto",
                 tokenizer=None, dtype="auto", device: str | None = None, batch_size=1, start_layer=None,
                 local_frac=None, **kwargs):
        self.sdtp_spec = pretrained if isinstance(pretrained, str) else None
        self._sdtp_builtin = isinstance(pretrained, str) and pretrained in BUILTIN_SPECS
        shard = launched()  # accelerate launch: this process's device and share of the requests
        if self._sdtp_builtin:
            model, tok = load_model(pretrained, dtype=None if dtype in (None, "auto") else dtype,
                                    device=shard.device or _device(device))
            pretrained, tokenizer = model, tokenizer if tokenizer is not None else tok
        predictor = "dense" if predictor is None else str(predictor)
        self.sdtp_dense = predictor == "dense"
        if str(batch_size).startswith("auto") and not self.sdtp_dense:
            raise ValueError("sdtp: batch_size='auto' is not supported (its probe batches are not requests, and "
                             "pruned rows run one at a time anyway); give an integer batch size")
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, dtype=dtype, device=device,
                         batch_size=batch_size, **kwargs)
        if self.backend != "causal":
            raise ValueError("sdtp: only decoder-only (causal) models can be pruned")
        if shard.world_size > 1 and self.world_size == 1:  # HFLM itself shards only hub/path checkpoints on GPUs
            from accelerate import Accelerator
            self.accelerator = Accelerator()
            self._rank, self._world_size = shard.rank, shard.world_size
            if self.model.device != torch.device(shard.device):
                self.model.to(shard.device)
            self._device = torch.device(shard.device)
        if self.sdtp_spec is None:
            self.sdtp_spec = (getattr(self.model.config, "sdtp_model_id", None)
                              or getattr(self.model.config, "_name_or_path", None) or type(self.model).__name__)
        self.sdtp_predictor = predictor
        unset = (None, "", "None")  # model_args give strings
        start_layer = None if start_layer in unset else int(start_layer)
        local = {} if local_frac in unset else {"local_frac": float(local_frac)}  # else SDTPConfig's (the paper's)
        self.sdtp_config = None if self.sdtp_dense else SDTPConfig.for_model(
            self.model, keep_ratio=float(keep_ratio), num_stages=int(stages), start_layer=start_layer, **local)
        self.sdtp_scorer, self.sdtp_scorer_label = ((None, "dense (no pruning)") if self.sdtp_dense else
                                                    resolve_scorer(predictor, self.model, self.sdtp_config))
        self.sdtp_stages_requested = int(stages)
        self._sdtp_rows: dict[int, dict[tuple, int]] = {}  # input length -> {input tokens: scored positions}
        self._sdtp_counts = dict(prefills=0, prompt_tokens=0, layer_tokens_dense=0, layer_tokens_pruned=0,
                                 flops_dense=0, flops_pruned=0, protected_tokens=0)
        self._sdtp_totals = None  # data parallel: the counts summed over all processes after each request type
        log.info("sdtp: %s", self.sdtp_info())

    # -------------------------------------------------------------------------------- bookkeeping
    def sdtp_info(self) -> dict:
        """The pruning configuration and what the pruned prefills did so far (totals over all calls)."""
        c = dict(self._sdtp_counts if self._sdtp_totals is None else self._sdtp_totals)
        info = {"model": self.sdtp_spec, "predictor": self.sdtp_predictor, "scorer": self.sdtp_scorer_label}
        if self.sdtp_config is not None:
            info.update(keep_ratio=self.sdtp_config.keep_ratio, stages=self.sdtp_stages_requested,
                        stage_layers=list(self.sdtp_config.stage_layers))
        info.update(c)
        info["compression"] = (c["layer_tokens_dense"] / c["layer_tokens_pruned"]) if c["layer_tokens_pruned"] else 1.0
        info["flops_reduction"] = (1 - c["flops_pruned"] / c["flops_dense"]) if c["flops_dense"] else 0.0
        return info

    def _sdtp_account(self, stats, protected: int = 0) -> None:
        c = self._sdtp_counts
        c["prefills"] += 1
        c["prompt_tokens"] += stats.prompt_len
        c["layer_tokens_dense"] += stats.prompt_len * len(stats.kept_per_layer)
        c["layer_tokens_pruned"] += sum(stats.kept_per_layer)
        c["flops_dense"] += stats.flops_dense
        c["flops_pruned"] += stats.flops_pruned
        c["protected_tokens"] += protected

    def _sdtp_sum_over_processes(self) -> None:
        """Data parallel: every process calls each request type once (lm-eval pads the shards to equal length, so
        the few padding duplicates are counted too); sum the counts so rank 0 reports the whole run's totals."""
        if self.world_size > 1:
            keys = list(self._sdtp_counts)
            t = torch.tensor([float(self._sdtp_counts[k]) for k in keys], dtype=torch.float64, device=self.device)
            t = self.accelerator.reduce(t, reduction="sum")
            self._sdtp_totals = {k: int(v) for k, v in zip(keys, t.tolist())}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        out = super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        self._sdtp_sum_over_processes()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        out = super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        self._sdtp_sum_over_processes()
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = super().generate_until(requests, disable_tqdm=disable_tqdm)
        self._sdtp_sum_over_processes()
        return out

    def get_model_info(self) -> dict:
        if self._sdtp_builtin:  # no hub lookup for the project's own specs
            info = {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                    "model_dtype": str(self.model.dtype), "model_revision": self.revision, "model_sha": ""}
        else:
            info = super().get_model_info()
        info["sdtp"] = self.sdtp_info()
        return info

    # ------------------------------------------------------------------------------ log-likelihood
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        """HFLM's own, after recording each request's model input (built as HFLM builds it) -> how many of its
        last positions are read (the continuation length; the longest one where inputs coincide, as
        HFLM's logits cache computes one row for such a group)."""
        if self.sdtp_dense:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        rows: dict[int, dict[tuple, int]] = {}
        for _, context_enc, continuation_enc in requests:
            inp = tuple((context_enc + continuation_enc)[-(self.max_length + 1):][:-1])
            by_len = rows.setdefault(len(inp), {})
            by_len[inp] = max(by_len.get(inp, 0), len(continuation_enc))
        self._sdtp_rows = rows
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._sdtp_rows = {}

    def _sdtp_row(self, row: torch.Tensor, padded: bool) -> tuple[int, int]:
        """(true length, scored positions) of one row of a right-padded (with 0) batch."""
        toks = row.tolist()
        T = len(toks)
        shortest = T
        if padded:
            while shortest > 0 and toks[shortest - 1] == 0:
                shortest -= 1
        found = [(L, self._sdtp_rows[L][key]) for L in range(shortest, T + 1)
                 if L in self._sdtp_rows and (key := tuple(toks[:L])) in self._sdtp_rows[L]]
        if len(found) != 1:
            what = "matches no recorded request" if not found else f"is ambiguous (lengths {[f[0] for f in found]})"
            raise PruningError(f"sdtp: a log-likelihood row of {T} tokens {what}: the sdtp model scores only "
                               "rows built by HFLM._loglikelihood_tokens" + (", use batch_size=1" if found else ""))
        return found[0]

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self.sdtp_dense or attn_mask is not None or labels is not None:  # (seq2seq never gets here)
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        B, T = inps.shape
        out = None
        for r in range(B):
            L, n_scored = self._sdtp_row(inps[r], padded=B > 1)
            protect = torch.zeros(L, dtype=torch.bool, device=inps.device)
            protect[L - min(n_scored, L):] = True
            with pruning(self.model, self.sdtp_scorer, self.sdtp_config, protect=protect) as stats:
                logits = super()._model_call(inps[r:r + 1, :L])  # (1, kept, V): the survivors, in order
            pos = stats.kept_positions[0, -logits.shape[1]:]
            if int(protect[pos].sum()) != int(protect.sum()):
                raise PruningError("sdtp: a protected (scored) position was pruned")  # the engine's promise
            if out is None:
                out = logits.new_zeros(B, T, logits.shape[-1])
            out[r, pos] = logits[0]
            self._sdtp_account(stats, int(protect.sum()))
        return out

    # ---------------------------------------------------------------------------------- generation
    def _model_generate(self, context, max_length: int, stop, **generation_kwargs):
        if self.sdtp_dense:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        mask = generation_kwargs.pop("attention_mask", None)
        B, T = context.shape
        outs = []
        for r in range(B):
            ids = context[r:r + 1] if mask is None else context[r:r + 1, mask[r].bool()]  # drop left padding
            L = ids.shape[1]
            with pruning(self.model, self.sdtp_scorer, self.sdtp_config) as stats:
                gen = super()._model_generate(ids, max_length - T + L, stop, attention_mask=torch.ones_like(ids),
                                              **generation_kwargs)
            self._sdtp_account(stats)
            outs.append(torch.cat([context[r], gen[0, L:]]))  # HFLM cuts at the padded context length
        width = max(x.shape[0] for x in outs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return torch.stack([F.pad(x, (0, width - x.shape[0]), value=pad) for x in outs])


# ------------------------------------------------------------------------------------------------ runs
def _accuracy(res: dict) -> tuple[dict, dict, dict]:
    """(acc, stderr, n) per task/group from an lm-eval results dict."""
    acc, err, n = {}, {}, {}
    for section in ("results", "groups"):
        for name, metrics in (res.get(section) or {}).items():
            if "acc,none" in metrics and isinstance(metrics["acc,none"], (int, float)):
                acc[name] = float(metrics["acc,none"])
                e = metrics.get("acc_stderr,none")
                err[name] = float(e) if isinstance(e, (int, float)) else None
    for name, s in (res.get("n-samples") or {}).items():
        n[name] = s.get("effective", s.get("original"))
    return acc, err, n


def _jsonable(obj):
    from lm_eval.utils import handle_non_serializable
    return json.loads(json.dumps(obj, default=handle_non_serializable, ensure_ascii=False))


def run_lmeval(model_spec, tasks=(GROUP,), out_dir: str | Path | None = None, keep_ratio: float = 0.9,
               stages: int = 10, predictor: str = "auto", limit: int | float | None = None, num_fewshot: int = 5,
               device: str = "auto", batch_size: int = 1, *, scorer: str = "sdtp", name: str | None = None,
               dtype=None, data: str | Path | None = None, log_samples: bool = True, seed: int = 0,
               start_layer: int | None = None, local_frac: float | None = None) -> dict:
    """One lm-eval run. scorer="sdtp": `simple_evaluate(model="sdtp")` (keep_ratio, stages, predictor);
    scorer="dense": `model="hf"`, plain HFLM on the same loaded model. model_spec: a `load_model` spec / local
    path, or a loaded (model, tokenizer). Writes out_dir/results.json (this dict: accuracy per task, lm-eval's
    results, the run's configuration, the pruning totals, provenance) and out_dir/samples/<task>.jsonl.gz
    (lm-eval's per-sample records, gzipped JSON lines: sdtp_lib.io.read_jsonl), atomically; returns the dict."""
    import lm_eval

    if scorer not in ("sdtp", "dense"):
        raise ValueError(f"run_lmeval: scorer must be 'sdtp' or 'dense', got {scorer!r}")
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    t0 = time.time()
    if isinstance(model_spec, (tuple, list)):
        model, tok = model_spec
        spec = getattr(model.config, "sdtp_model_id", None) or getattr(model.config, "_name_or_path", "model")
    else:
        spec = str(model_spec)
        model, tok = load_model(spec, dtype=dtype, device=resolve_device(device))
    model_args = {"pretrained": model, "tokenizer": tok}
    if scorer == "sdtp":
        model_args.update(keep_ratio=keep_ratio, stages=stages, predictor=predictor)
        placement = {"start_layer": start_layer, "local_frac": local_frac}  # None: the default placement / window
        model_args.update({k: v for k, v in placement.items() if v is not None})
    ours = set(PAPER_TASKS) | {GROUP}
    tm = task_manager(data, include_defaults=any(t not in ours for t in tasks))
    res = lm_eval.simple_evaluate(model="sdtp" if scorer == "sdtp" else "hf", model_args=model_args, tasks=tasks,
                                  num_fewshot=num_fewshot, limit=limit, batch_size=batch_size,
                                  log_samples=log_samples, task_manager=tm, random_seed=seed, numpy_random_seed=seed,
                                  torch_random_seed=seed, fewshot_random_seed=1234)
    samples = res.pop("samples", None) or {}
    acc, err, n = _accuracy(res)
    lm_cfg = dict(res.get("config") or {})
    lm_cfg["model_args"] = {k: (spec if k == "pretrained" else type(v).__name__ if k == "tokenizer" else v)
                            for k, v in (lm_cfg.get("model_args") or {}).items()}
    label = name or ("dense" if scorer == "dense" else "sdtp-low" if int(stages) == 5 else "sdtp")
    out = {
        "name": label, "model": spec, "scorer": scorer, "tasks": tasks, "accuracy": acc, "stderr": err,
        "n_samples": n,
        "config": {"keep_ratio": keep_ratio if scorer == "sdtp" else 1.0, "stages": stages if scorer == "sdtp" else 0,
                   "start_layer": start_layer if scorer == "sdtp" else None,
                   "local_frac": local_frac if scorer == "sdtp" else None,
                   "predictor": predictor if scorer == "sdtp" else None, "limit": limit, "num_fewshot": num_fewshot,
                   "batch_size": batch_size, "device": str(model.device), "dtype": str(model.dtype), "seed": seed,
                   "data": str(data_dir(data))},
        "sdtp": lm_cfg.pop("sdtp", None),
        "lm_eval": {"version": lm_eval.__version__, "config": lm_cfg, "results": res.get("results"),
                    "groups": res.get("groups"), "n-shot": res.get("n-shot"), "versions": res.get("versions"),
                    "n-samples": res.get("n-samples")},
        "provenance": {**provenance(), "lm_eval": lm_eval.__version__},
        "time_s": round(time.time() - t0, 2),
    }
    out = _jsonable(out)
    if out_dir is not None:
        out_dir = Path(out_dir)
        paths = {}
        for task, recs in samples.items():
            p = write_jsonl(out_dir / "samples" / f"{task}.jsonl", (_jsonable(r) for r in recs))
            paths[task] = str(p)
        out["samples"] = paths
        atomic_write_text(out_dir / "results.json", json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


def compress_samples(folder) -> list[Path]:
    """Gzip the per-sample files of a finished lm-eval command-line run (`--log_samples`: samples_<task>_<date>.jsonl
    under --output_path) and any plain samples/<task>.jsonl: each X.jsonl becomes X.jsonl.gz
    (sdtp_lib.io.compress_jsonl); returns the .gz files. Run it once lm-eval has finished."""
    folder = Path(folder)
    plain = sorted(set(folder.rglob("samples_*.jsonl")) | set(folder.rglob("samples/*.jsonl")))
    return [compress_jsonl(p) for p in plain]


def run_lmeval_suite(model_spec, tasks=(GROUP,), out_dir: str | Path | None = None, variants: dict | None = None,
                     keep_ratio: float = 0.9, predictor: str = "auto", limit=None, num_fewshot: int = 5,
                     device: str = "auto", batch_size: int = 1, dtype=None, data=None, log_samples: bool = True,
                     seed: int = 0, scorers=None) -> dict:
    """dense / sdtp (10 stages) / sdtp-low (5 stages) on one loaded model: {name: run_lmeval dict}, each in
    out_dir/<name>/, and out_dir/results.json (every run's accuracy, configuration and pruning totals) and
    results.md (the accuracy table). variants: {name: stages, None = dense}, all with `predictor` and
    `keep_ratio`. Or scorers: the evaluations' scorer specs (sdtp_lib.eval.scorers: "dense", "sdtp:auto",
    "sdtp-low:norm", "sdtp@0.8:random", "sdtp:PATH"), one run each, named by its spec (its folder:
    `scorers.file_stem(spec)`, e.g. sdtp-low_norm)."""
    _suite_runs(None, variants, scorers, keep_ratio, predictor)  # a bad spec fails before the model loads
    loaded = model_spec if isinstance(model_spec, (tuple, list)) else load_model(
        str(model_spec), dtype=dtype, device=resolve_device(device))
    runs = _suite_runs(loaded[0], variants, scorers, keep_ratio, predictor)
    by_name = {}
    for vname, run in runs.items():
        folder = None if out_dir is None else Path(out_dir) / file_stem(vname)
        by_name[vname] = run_lmeval(loaded, tasks, folder, limit=limit, num_fewshot=num_fewshot, device=device,
                                    batch_size=batch_size, name=vname, data=data, log_samples=log_samples, seed=seed,
                                    **run)
    if out_dir is not None:
        keep = ("name", "model", "scorer", "accuracy", "stderr", "n_samples", "config", "sdtp", "time_s")
        summary = {"tasks": list(tasks) if not isinstance(tasks, str) else [tasks], "provenance": provenance(),
                   "scorers": {n: {k: r.get(k) for k in keep} for n, r in by_name.items()}}
        atomic_write_text(Path(out_dir) / "results.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(Path(out_dir) / "results.md", markdown(by_name) + "\n")
    return by_name


def _suite_runs(model, variants, scorers, keep_ratio, predictor) -> dict:
    """{name: run_lmeval keyword arguments} of a suite, from `variants` or from scorer specs ("predictor", the
    shipped one, is checked against `model` unless it is None)."""
    if variants is not None and scorers is not None:
        raise ValueError("run_lmeval_suite: give variants or scorers, not both")
    if scorers is None:
        return {n: dict(scorer="dense" if st is None else "sdtp", stages=st or 0, predictor=predictor,
                        keep_ratio=keep_ratio) for n, st in (VARIANTS if variants is None else variants).items()}
    from .scorers import check_scorer_name, parse_spec
    specs = [scorers] if isinstance(scorers, str) else list(scorers)
    if not specs or len(set(specs)) != len(specs):
        raise ValueError(f"run_lmeval_suite: scorers {specs}: give at least one, without repeats")
    runs = {}
    for spec in specs:
        variant, name = parse_spec(spec)
        if variant.kv_budget is not None:
            raise ValueError(f"scorer {spec!r}: lm-eval's tasks here are loglikelihood-only (no decoding), so an H2O "
                             "KV budget (+H, applied while decoding) has nothing to act on; drop the +H part")
        if variant.stages is None:
            runs[spec] = dict(scorer="dense", stages=0, predictor=predictor, keep_ratio=keep_ratio)
            continue
        check_scorer_name(name, model, spec)  # "predictor": the shipped one, required; no oracle here
        name = "auto" if name == "predictor" else name
        ratio = variant.keep_ratio  # "@<c>x": the ratio that compresses c-fold on this model (known once it loads)
        if variant.compression is not None and model is not None:
            ratio = variant.config(model).keep_ratio
        runs[spec] = dict(scorer="sdtp", stages=variant.stages, predictor=name, keep_ratio=ratio or keep_ratio,
                          start_layer=variant.start_layer, local_frac=variant.local_frac)
    return runs


def markdown(results_by_scorer: dict) -> str:
    """Accuracy table: rows = tasks (then the sdtp_paper mean), columns = scorers (dense, sdtp, sdtp-low first).
    Values: run_lmeval dicts or raw lm-eval results dicts."""
    order = [k for k in VARIANTS if k in results_by_scorer] + [k for k in results_by_scorer if k not in VARIANTS]
    accs, ns = {}, {}
    for k in order:
        r = results_by_scorer[k]
        if "accuracy" in r:
            accs[k], ns[k] = r["accuracy"], r.get("n_samples", {})
        else:
            a, _, n = _accuracy(r)
            accs[k], ns[k] = a, n
    names = []
    for k in order:
        names += [t for t in accs[k] if t not in names]
    rows = [t for t in PAPER_TASKS if t in names] + [t for t in names if t not in PAPER_TASKS and t != GROUP]
    rows += [GROUP] if GROUP in names else []
    lines = ["| task | n | " + " | ".join(order) + " |", "|---|---|" + "---|" * len(order)]
    for t in rows:
        n = next((ns[k][t] for k in order if ns[k].get(t) is not None), "")
        label = f"**{GROUP} (mean acc)**" if t == GROUP else t.removeprefix("sdtp_")
        cells = [f"{accs[k][t]:.3f}" if t in accs[k] else "-" for k in order]
        lines.append(f"| {label} | {n if t != GROUP else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)



def pruning_markdown(results_by_scorer: dict) -> str:
    """What each run's pruned forwards did (totals: prefills, prompt tokens, compression, FLOPs saved; "-" for
    dense) and its wall time. Values: run_lmeval dicts."""
    lines = ["| scorer | scorer used | stages | prefills | prompt tokens | compression | prefill FLOPs saved "
             "| time s |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results_by_scorer.items():
        p = r.get("sdtp") or {}
        if not p.get("prefills"):
            lines.append(f"| {name} | dense (no pruning) | - | - | - | 1.00x | - | {r['time_s']} |")
            continue
        lines.append(f"| {name} | {p['scorer']} | {p.get('stages')} | {p['prefills']} | {p['prompt_tokens']} | "
                     f"{p['compression']:.2f}x | {100 * p['flops_reduction']:.1f}% | {r['time_s']} |")
    return "\n".join(lines)

PROG = "sdtp lmeval"  # the command line's verb (python -m sdtp_lib lmeval ...)


def cli(argv: list[str] | None = None, prog: str = PROG) -> int:
    """`sdtp lmeval <lm-eval's own arguments>`: lm-eval's own CLI with `sdtp` registered (and --include_path for the
    project's tasks unless given). argv: the arguments after the verb (None: sys.argv[1:]). `--help` alone (or no
    argument) shows lm-eval's `run` help, what `sdtp lmeval --model sdtp ...` runs, after a line saying so."""
    import sys

    import lm_eval
    from lm_eval.__main__ import cli_evaluate
    args = list(sys.argv[1:] if argv is None else argv)
    if args in ([], ["-h"], ["--help"]):
        print(f"{prog}: lm-eval {lm_eval.__version__}'s own command line with the model `sdtp` registered and the "
              f"project's tasks (--include_path {TASKS_DIR} is added when --tasks is given). Where lm-eval's help "
              f"below says `lm-eval run`, type `{prog}`; `{prog} ls tasks` and `{prog} validate --tasks ...` work "
              "too.\n", flush=True)
        args = ["run", "--help"]
    has = lambda *opts: any(a == o or a.startswith(o + "=") for a in args for o in opts)  # noqa: E731
    running = args[0] not in ("ls", "validate") and not has("-h", "--help")  # lm-eval's `run`, named or implied
    if running and not has("--tasks", "-t", "--config", "-C"):  # lm-eval would load the model first, then say so
        raise ValueError(f"{prog}: no --tasks given: name the lm-eval tasks to run, e.g. --tasks {GROUP} (the "
                         f"project's {len(PAPER_TASKS)} paper tasks) or --tasks sdtp_copa; `{prog} ls tasks` lists "
                         "them")
    if has("--tasks", "-t") and not has("--include_path"):
        args += ["--include_path", str(TASKS_DIR)]
    saved, sys.argv = sys.argv, ["lm-eval", *args]  # lm-eval's CLI reads sys.argv
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    out = _option(args, "--output_path", "-o")
    if running and out and has("--log_samples", "-s") and int(os.environ.get("RANK", "0")) == 0:
        compress_samples(out)  # lm-eval writes the samples on rank 0 only, before cli_evaluate returns there
    return 0


def _option(args: list[str], *names: str) -> str | None:
    """The value of the last of `names` in a command line (`--opt value` or `--opt=value`), or None."""
    value = None
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith(n + "="):
                value = a.split("=", 1)[1]
    return value


__all__ = ["SDTPLM", "run_lmeval", "run_lmeval_suite", "markdown", "pruning_markdown", "task_manager", "load_fixture",
           "data_dir", "cli", "compress_samples", "TASKS_DIR", "PAPER_TASKS", "GROUP", "VARIANTS"]
