"""Data parallel evaluation with `accelerate launch` and two CPU processes (gloo): the synthetic suite, LongBench
and lm-eval each give, merged, exactly what one process gives: every sample once, the same predictions, the same
scores. The single-process references run as a subprocess with one thread, as each launched process does."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdtp_lib.eval import longbench as L
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.io import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
pytestmark = pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


def _launch(module_args: list[str], cwd: Path, n: int = 2) -> str:
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m", *module_args]
    return _run(cmd, cwd)


def _single(module_args: list[str], cwd: Path) -> str:
    return _run([sys.executable, "-m", *module_args], cwd)


def _run(cmd: list[str], cwd: Path) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p.stdout


def test_synthetic_two_processes_equal_one(tmp_path):
    args = ["sdtp_lib", "synthetic", "--model", "tiny-qwen2", "--tasks", "passkey", "kv_retrieval", "--lengths",
            "256", "--layouts", "question_last", "--n-samples", "3", "--scorers", "dense", "sdtp:norm", "--device",
            "cpu"]
    _launch(args + ["--out", str(tmp_path / "dp")], tmp_path)
    _single(args + ["--out", str(tmp_path / "one")], tmp_path)
    rank_ids = [{r["id"] for r in read_jsonl(tmp_path / "dp" / f"predictions.rank{k}.jsonl.gz")} for k in (0, 1)]
    assert rank_ids[0] and rank_ids[1] and not rank_ids[0] & rank_ids[1]  # both worked, on different examples
    merged = Y.merge(tmp_path / "dp", 2)
    one = read_jsonl(tmp_path / "one" / "predictions.jsonl.gz")  # finished runs leave gzipped predictions
    key = lambda r: {k: v for k, v in r.items() if k not in ("index",)}  # noqa: E731
    assert [key(r) for r in merged] == [key(r) for r in one]  # same rows, same canonical order
    res = {d: json.loads((tmp_path / d / "results.json").read_text()) for d in ("dp", "one")}
    assert res["dp"]["summary"] == res["one"]["summary"] and res["dp"]["n_rows"] == len(one) == 2 * 3 * 2


def test_longbench_two_processes_equal_one(tmp_path):
    args = ["sdtp_lib", "longbench", "run", "--model", "tiny-qwen2", "--data", str(ROOT / "data" /
            "longbench_fixture"), "--tasks", "hotpotqa", "trec", "--max-length", "300",
            "--scorers", "dense", "sdtp:norm", "--device", "cpu", "--dtype", "float32", "--warmup", "none"]
    out = _launch(args + ["--out", str(tmp_path / "dp")], tmp_path)
    assert "average over tasks" in out  # rank 0 merged and scored
    _single(args + ["--out", str(tmp_path / "one")], tmp_path)
    for scorer in ("dense", "sdtp:norm"):
        for task in ("hotpotqa", "trec"):
            ranks = [L.read_predictions(L.pred_path(tmp_path / "dp", scorer, task, k, 2)) for k in (0, 1)]
            assert len(ranks[0]) == len(ranks[1]) == 1  # the fixture has 2 samples per task
            dp, one = (L.read_predictions(L.pred_path(tmp_path / d, scorer, task)) for d in ("dp", "one"))
            assert [(r["_id"], r["pred"]) for r in dp] == [(r["_id"], r["pred"]) for r in one]
    scores = {d: L.score_longbench(tmp_path / d, write=False) for d in ("dp", "one")}
    for scorer in ("dense", "sdtp:norm"):
        a, b = (scores[d]["scorers"][scorer] for d in ("dp", "one"))
        assert {t: v["score"] for t, v in a["tasks"].items()} == {t: v["score"] for t, v in b["tasks"].items()}
        assert a["n_samples"] == b["n_samples"] == 4


def test_lmeval_two_processes_equal_one(tmp_path):
    # zero-shot: lm-eval draws each rank's few-shot examples from one sequence, so with shots the contexts (and so
    # the scores) depend on the number of processes; that is lm-eval's behaviour, not the model's
    args = ["sdtp_lib", "lmeval", "--model", "sdtp", "--model_args",
            "pretrained=tiny-qwen2,keep_ratio=0.9,predictor=norm", "--tasks", "sdtp_copa", "--num_fewshot", "0",
            "--limit", "6", "--log_samples"]
    _launch(args + ["--output_path", str(tmp_path / "dp")], tmp_path)
    _single(args + ["--output_path", str(tmp_path / "one"), "--device", "cpu"], tmp_path)
    res, samples = {}, {}
    for d in ("dp", "one"):
        (res[d],) = (json.loads(p.read_text()) for p in (tmp_path / d).rglob("results_*.json"))
        (path,) = (tmp_path / d).rglob("samples_sdtp_copa_*.jsonl*")  # gzipped by rank 0 once lm-eval is done
        assert path.name.endswith(".jsonl.gz"), path
        samples[d] = {r["doc_id"]: (r["arguments"], r["resps"]) for r in read_jsonl(path)}
    assert sorted(samples["dp"]) == sorted(samples["one"]) == list(range(6))  # every doc once
    assert samples["dp"] == samples["one"]  # same prompts, same log-likelihoods
    assert res["dp"]["results"]["sdtp_copa"]["acc,none"] == res["one"]["results"]["sdtp_copa"]["acc,none"]
    info = {d: res[d]["config"]["sdtp"] for d in ("dp", "one")}
    assert info["dp"]["prefills"] == info["one"]["prefills"] == 12  # both ranks' prefills counted, once
    assert info["dp"]["layer_tokens_pruned"] == info["one"]["layer_tokens_pruned"]
