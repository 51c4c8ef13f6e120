"""The synthetic suite in several processes that share one device.

    rows = run_suite_workers(dict(spec="qwen2.5-coder-0.5b", dtype="bfloat16", device="cuda"), cfg, out, workers=4)

At batch 1 a small model leaves a GPU mostly idle: the engine's Python, the kernel launches and the decode loop's
CUDA-graph capture, not the arithmetic, set the pace of an answer. Each worker loads its own model
(`load_model(**load)`) and answers the examples i with i % workers == rank into predictions.rank{rank}.jsonl
(run_suite's data-parallel path); the parent logs the pace, merges the rank files in canonical order into
predictions.jsonl.gz and writes the results, so the folder ends as one process leaves it. Every answer is the same
batch-1 greedy decode of the same prompt as in one process (tests/test_suite_workers.py).

Answers the folder already holds, in one file or in rank files of another worker count (an interrupted run), are
split again for this count first: nothing answered is asked again. Workers die with the parent (Linux).
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from ..io import atomic_write_text, compress_jsonl, find_jsonl, jsonl_pair, read_jsonl
from . import synthetic as SY

log = logging.getLogger(__name__)


def check_count(workers, what: str) -> None:
    """A worker count is an integer >= 1 (else a ValueError that names `what`)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {workers!r}")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _work(load: dict, suite: dict, out: str, rank: int, workers: int, reuse: list[str], threads: int, box) -> None:
    """One worker process: its shard of the suite; ('ok' | 'error', rank, traceback) into `box`."""
    try:
        _die_with_parent()
        import torch
        torch.set_num_threads(threads)
        from ..models import load_model
        model, tok = load_model(**load)
        SY.run_suite(model, tok, SY.SuiteConfig(**suite), out, progress=False, rank=rank, world_size=workers,
                     reuse=reuse, sharing=workers)  # one device: the answers' times are shared-device times
        box.put(("ok", rank, ""))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        box.put(("error", rank, traceback.format_exc()))


def _count(path: Path) -> int:
    """Answers in a rank file (plain: its lines; gzipped once its rank finished: its records)."""
    try:
        src = find_jsonl(path)
        if src is None:
            return 0
        return len(read_jsonl(src)) if src.suffix == ".gz" else src.read_bytes().count(b"\n")
    except (OSError, ValueError):  # compressed or cut between the look and the read: counted next time
        return 0


def run_suite_workers(load: dict, cfg: SY.SuiteConfig, out_dir, workers: int, reuse=(), threads: int | None = None,
                      every: float = 60.0) -> list[dict]:
    """run_suite's rows for cfg in out_dir, answered by `workers` processes that each load_model(**load); writes
    predictions.jsonl.gz, results.json and results.md as run_suite does. threads: torch's CPU threads per worker
    (None: the cores shared out). A failed worker stops the others and raises with its traceback; what was
    answered stays for the next call."""
    import multiprocessing as mp
    check_count(workers, "run_suite_workers: workers")
    if "spec" not in load:
        raise ValueError(f"run_suite_workers: load must name the model (load_model's arguments), got {load!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = SY.reshard(out, workers)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA context or threads inherited
    box = ctx.Queue()
    procs = [ctx.Process(target=_work, args=(dict(load), asdict(cfg), str(out), r, workers,
                                             [str(p) for p in reuse], threads, box), daemon=True)
             for r in range(workers)]
    log.info("synthetic suite: %d workers on %s, %d answers held", workers, load.get("device") or "the default device",
             start)
    t0 = time.perf_counter()
    pace = SY._Pace(None, start, every, f" in the rank files of {workers} workers")
    done: set[int] = set()
    try:
        for p in procs:
            p.start()
        while len(done) < workers:
            try:
                status, rank, tb = box.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if r not in done and p.exitcode is not None]
                if dead and box.empty():
                    raise RuntimeError(f"synthetic suite worker {dead[0]} died (exit code {procs[dead[0]].exitcode})"
                                       f" without a report; its answers so far are kept in {out}")
                pace.tick(lambda: sum(_count(SY._pred_path(out, r, workers)) for r in range(workers)))
                continue
            if status != "ok":
                raise RuntimeError(f"synthetic suite worker {rank} of {workers} failed; its answers so far are kept "
                                   f"in {out}:\n{tb}")
            done.add(rank)
    finally:
        started = [p for p in procs if p.pid is not None]
        for p in started:  # all reported: let them exit (and clean up their semaphores); else stop them now
            p.join(timeout=60 if len(done) == workers else 0)
        for p in started:
            if p.is_alive():
                p.terminate()
            p.join()
        box.close()
        box.join_thread()
    for r in range(workers):  # every worker reported: a rank with no examples (more workers than examples) wrote none
        if find_jsonl(SY._pred_path(out, r, workers)) is None:
            SY._pred_path(out, r, workers).touch()
    rows = SY.merge(out, workers)
    merged = out / "predictions.jsonl"
    atomic_write_text(merged, "".join(json.dumps(r) + "\n" for r in rows))
    compress_jsonl(merged)
    for r in range(workers):  # the merged file holds them all
        for f in jsonl_pair(SY._pred_path(out, r, workers)):
            f.unlink(missing_ok=True)
    SY.write_results(out, rows)
    log.info("synthetic suite: %d answers from %d workers in %.0f s", len(rows), workers, time.perf_counter() - t0)
    return rows
