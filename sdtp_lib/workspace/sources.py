"""The result files that notebook 08 (the paper's figures and the final summary) reads: a pipeline run folder
(`<run>/<notebook>/...`) and the committed `reports/results/*/` folders. Every source is found or said missing, with
the path that was looked for; nothing is read from anywhere else.

    src = load_sources("runs/20261204-192915-default")
    src.get("synthetic")          # the run's 06_synthetic/results.json (a dict), or None
    src.missing()                 # [(name, why), ...] of the sources that were not there
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..eval.ablation import ABLATIONS  # 07_ablations/<name>/results.json
from ..models import project_root
from ..training.saliency import STATS_FILE

log = logging.getLogger(__name__)

# the committed Qwen2-7B-shape profiles (H200; H100 for the whole-spans settings) the frontier takes its prefill
# speedups from, in order of preference (the first file with a matching row wins; see sdtp_lib.workspace.frontier)
SPEED_FILES = (
    "2026-11-29_qwen2-7b-shape_latency_h200/latency.json",  # the headline: predictor, r 0.9, SDTP and SDTP-low
    "2026-12-04_qwen2-7b-shape_attention-latency_h200/latency.json",  # window attention, r 0.9
    "2026-12-04_qwen2-7b-shape_flash-attn4-latency_h200/sdpa_r0.9.json",  # predictor, r 0.9 (SDPA, same session)
    "2026-12-05_qwen2-7b-shape_fa4-decode_h200/latency_fa4_h200.json",  # predictor, r 0.9 / 0.8, SDPA + flash-attn 4
    "2026-12-04_qwen2-7b-shape_flash-attn4-latency_h200/fa4_r0.8.json",  # predictor, r 0.8 (flash-attn 4)
    "2026-12-06_qwen2-7b-shape_fa4-128k_h200/scorer_cost_attention_fa4.json",  # attention, r 0.9 / 0.8 (flash-attn 4)
    "2026-11-30_qwen2-7b-shape_scorer-cost_h200/profile_fold/attention.json",  # attention, r 0.9, SDTP engine only
    "2026-11-30_qwen2-7b-shape_scorer-cost_h200/profile_fold/hybrid.json",  # hybrid, r 0.9, SDTP engine only
    *(f"2026-12-06_qwen2-7b-shape_frontier-speed_h100/{name}.json"  # the whole-spans settings, with HF dense (H100)
      for name in ("dense", "attention", "predictor", "hybrid")),
)
HEADLINE_LATENCY = SPEED_FILES[0]
# both attention backends and keep ratios, each length in one run (the final summary's "with flash-attn 4" lines)
BACKEND_LATENCY = ("2026-12-05_qwen2-7b-shape_fa4-decode_h200/latency_fa4_h200.json",  # 32K
                   "2026-12-06_qwen2-7b-shape_fa4-128k_h200/latency_fa4_h200_128k.json")  # 128K
SCORER_RESULTS = ("*scorers*/synthetic/results.json",  # the committed scorer comparisons on the synthetic suite
                  "*whole-spans*/suite/results.json")  # ... with whole spans (+W) at r = 0.9 and 0.8


@dataclass
class Source:
    """One result file: its data, or why it is not there."""
    name: str
    path: Path
    data: object = None
    why: str = ""  # set when data is None

    @property
    def found(self) -> bool:
        return self.data is not None


@dataclass
class Sources:
    run: Path
    results_dir: Path  # the committed reports/results
    items: dict = field(default_factory=dict)  # name -> Source

    def add(self, s: Source) -> Source:
        self.items[s.name] = s
        return s

    def get(self, name: str):
        s = self.items.get(name)
        return s.data if s is not None else None

    def path(self, name: str) -> Path | None:
        s = self.items.get(name)
        return s.path if s is not None else None

    def missing(self) -> list[tuple[str, str]]:
        return [(s.name, s.why) for s in self.items.values() if not s.found]


def _json(name: str, path: Path) -> Source:
    if not path.is_file():
        return Source(name, path, why=f"{path} not found")
    try:
        return Source(name, path, json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        return Source(name, path, why=f"{path} is not valid JSON ({e})")


def _newest(name: str, folder: Path, pattern: str) -> Source:
    hits = sorted(folder.glob(pattern))  # latency_<YYYYmmdd-HHMMSS>.json: the name sorts by time
    if not hits:
        return Source(name, folder / pattern, why=f"no {pattern} in {folder}")
    return _json(name, hits[-1])


SALIENCY_STATS = STATS_FILE  # what 07 and 08 keep of a saliency file (07_ablations/, 08_figures/)


def _saliency(run: Path) -> Source:
    """Per-layer sparsity statistics of the run's stage-1 saliency file: 01_saliency's, else 02_training's own, else
    07_ablations' (the qwen2.5-0.5b profile runs neither 01 nor 02). Where the files did not travel (a run folder
    committed, or moved between machines, without its weights and saliency files): the statistics an earlier 08
    kept in 08_figures/, else those 07 kept of its file in 07_ablations/."""
    cands = [run / "01_saliency" / "saliency.safetensors", run / "02_training" / "saliency" / "saliency.safetensors",
             run / "07_ablations" / "saliency" / "saliency.safetensors", run / "08_figures" / SALIENCY_STATS,
             run / "07_ablations" / SALIENCY_STATS]
    path = next((p for p in cands if p.is_file()), None)
    if path is None:
        return Source("saliency", cands[0], why=f"none of {', '.join(map(str, cands))} found")
    if path.suffix == ".json":
        return _json("saliency", path)
    from ..training import saliency as SA
    return Source("saliency", path, SA.saliency_stats(SA.SaliencyStore.load(path)))


def load_sources(run, results_dir=None) -> Sources:
    """Every source of notebook 08: the run's results and the committed ones (results_dir: reports/results of this
    checkout by default)."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist (give a pipeline run folder: runs/<time>-<profile>)")
    results_dir = Path(results_dir) if results_dir is not None else (project_root() or Path.cwd()) / "reports" / "results"
    src = Sources(run, results_dir)
    src.add(_json("run", run / "run.json"))
    src.add(_saliency(run))
    src.add(_newest("latency", run / "03_profiling", "latency*.json"))
    src.add(_json("longbench", run / "04_longbench" / "results.json"))
    src.add(_json("lmeval", run / "05_lmeval" / "results.json"))
    src.add(_json("synthetic", run / "06_synthetic" / "results.json"))
    for a in ABLATIONS:
        src.add(_json(f"ablation_{a}", run / "07_ablations" / a / "results.json"))
    for rel in SPEED_FILES:
        src.add(_json(f"speed:{rel}", results_dir / rel))
    for rel in BACKEND_LATENCY:
        src.add(_json(f"backend:{rel}", results_dir / rel))
    committed = sorted(p for pattern in SCORER_RESULTS for p in results_dir.glob(pattern))
    if not committed:
        src.add(Source("committed_synthetic", results_dir / SCORER_RESULTS[0],
                       why=f"none of {', '.join(SCORER_RESULTS)} in {results_dir}"))
    for p in committed:
        src.add(_json(f"synthetic:{p.relative_to(results_dir).parts[0]}", p))
    for name, why in src.missing():
        log.info("08: %s missing: %s", name, why)
    return src


def speed_files(src: Sources) -> dict[str, dict]:
    """{relative path: profile JSON} of the committed speed files that were found, in SPEED_FILES order."""
    return {rel: src.get(f"speed:{rel}") for rel in SPEED_FILES if src.get(f"speed:{rel}") is not None}


def quality_results(src: Sources) -> dict[str, dict]:
    """{label: synthetic results.json} for the run's 06_synthetic and the committed scorer comparisons."""
    out = {}
    if src.get("synthetic") is not None:
        out[f"this run ({src.run.name})"] = src.get("synthetic")
    out.update({name.split(":", 1)[1]: s.data for name, s in src.items.items()
                if name.startswith("synthetic:") and s.found})
    return out
