"""The synthetic suite in worker processes (sdtp_lib.eval.workers) on the tiny random Qwen2: the same rows as one
process, answers already held (in any layout) kept rather than asked again, a failing worker reported."""
import json
import shutil

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.eval import workers as W
from sdtp_lib.io import find_jsonl, read_jsonl

CFG = Y.SuiteConfig(tasks=("passkey", "kv_retrieval"), lengths=(256,), layouts=("question_last",), n_samples=3,
                    scorers=("dense", "sdtp:norm"))
LOAD = dict(spec="tiny-qwen2", dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """(folder, rows) of one process, with one torch thread as each worker has (the same arithmetic)."""
    threads, out = torch.get_num_threads(), tmp_path_factory.mktemp("one")
    torch.set_num_threads(1)
    try:
        return out, Y.run_suite(*S.load_model(**LOAD), CFG, out, progress=False)
    finally:
        torch.set_num_threads(threads)


def files(out) -> list[str]:
    return sorted(p.name for p in out.glob("predictions*"))


def test_workers_give_the_single_process_rows_and_keep_held_answers(one, tmp_path, caplog):
    out, (ref, one) = tmp_path / "w", one
    out.mkdir()
    # an interrupted earlier run with 3 workers left rank files: 2 answers, one of them marked so that a re-asked
    # answer would show (a kept row is copied, never recomputed); example 2 is rank 2's of 3, rank 0's of 2
    shutil.copy(ref / "config.json", out / "config.json")
    held = [dict(one[0], prediction="HELD"), one[5]]
    assert [r["index"] for r in held] == [0, 2]
    for row in held:
        with open(out / f"predictions.rank{row['index'] % 3}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    with caplog.at_level("INFO"):
        rows = W.run_suite_workers(LOAD, CFG, out, workers=2, threads=1)
    assert "2 answers held" in caplog.text and "split for 2 workers" in caplog.text
    assert rows[0]["prediction"] == "HELD" and "device_sharing" not in rows[0]  # kept, not asked again
    # every asked answer says its times were taken with 2 processes on the device (the held ones, rows 0 and 5,
    # came from one process); otherwise the rows are one process's
    assert [r.get("device_sharing") for r in rows] == [None if k in (0, 5) else 2 for k in range(len(rows))]
    assert [{k: v for k, v in r.items() if k != "device_sharing"} for r in rows[1:]] == one[1:]
    assert len(rows) == 2 * 3 * 2 == len(one)
    assert files(out) == ["predictions.jsonl.gz"]  # merged: the folder as one process leaves it
    assert read_jsonl(out / "predictions.jsonl.gz") == rows
    res = json.loads((out / "results.json").read_text())
    assert res["n_rows"] == len(rows) and (out / "results.md").exists()
    # a finished folder: run again, nothing is asked (the marked row survives) and the files are the same
    assert W.run_suite_workers(LOAD, CFG, out, workers=2, threads=1) == rows
    assert files(out) == ["predictions.jsonl.gz"]


def test_reshard_moves_every_answer_once(tmp_path):
    rows = [{"index": i, "id": f"e{i}", "scorer": s} for i in range(7) for s in ("dense", "x")]
    for r in range(3):
        (tmp_path / f"predictions.rank{r}.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in rows if x["index"] % 3 == r))
    (tmp_path / "predictions.jsonl").write_text(json.dumps(rows[0]) + "\n")  # a repeat (an interrupted merge)
    assert Y.reshard(tmp_path, 2) == len(rows)
    assert files(tmp_path) == ["predictions.rank0.jsonl", "predictions.rank1.jsonl"]
    got = [read_jsonl(tmp_path / f"predictions.rank{r}.jsonl") for r in (0, 1)]
    assert all(x["index"] % 2 == r for r in (0, 1) for x in got[r])
    assert sorted(got[0] + got[1], key=lambda x: (x["index"], x["scorer"])) == rows
    assert Y.reshard(tmp_path, 1) == len(rows) and files(tmp_path) == ["predictions.jsonl"]
    assert find_jsonl(tmp_path / "predictions.jsonl") is not None


def test_reshard_reads_rows_not_file_names(tmp_path):
    """Rank files 0 and 1 of a 3-worker run carry the names 2 workers use: their rows still move (4 % 2 = 0)."""
    rows = [{"index": i, "id": f"e{i}", "scorer": "dense"} for i in (0, 1, 3, 4)]
    for r in (0, 1):
        (tmp_path / f"predictions.rank{r}.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in rows if x["index"] % 3 == r))
    assert Y.reshard(tmp_path, 2) == 4
    assert [[x["index"] for x in read_jsonl(tmp_path / f"predictions.rank{r}.jsonl")] for r in (0, 1)] == \
        [[0, 4], [1, 3]]
    before = [(tmp_path / f"predictions.rank{r}.jsonl").stat().st_mtime_ns for r in (0, 1)]
    assert Y.reshard(tmp_path, 2) == 4  # placed already: left as it is
    assert [(tmp_path / f"predictions.rank{r}.jsonl").stat().st_mtime_ns for r in (0, 1)] == before


def test_a_failing_worker_is_reported_with_its_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"worker \d of 2 failed(.|\n)*no-such-model"):
        W.run_suite_workers(dict(LOAD, spec=str(tmp_path / "no-such-model")), CFG, tmp_path / "out", workers=2)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(workers, tmp_path):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        W.run_suite_workers(LOAD, CFG, tmp_path, workers=workers)


def test_more_workers_than_examples(tmp_path):
    cfg = Y.SuiteConfig(tasks=("passkey",), lengths=(256,), layouts=("question_last",), n_samples=1, scorers=("dense",))
    rows = W.run_suite_workers(LOAD, cfg, tmp_path, workers=2, threads=1)
    assert [r["id"] for r in rows] == ["passkey/256/question_last/0"] and files(tmp_path) == ["predictions.jsonl.gz"]


def test_one_process_keeps_what_interrupted_workers_answered(one, tmp_path, monkeypatch):
    (ref, rows), out = one, tmp_path / "w"
    out.mkdir()
    shutil.copy(ref / "config.json", out / "config.json")
    for r in (0, 1):  # two workers stopped after answering everything but the last example's rows
        (out / f"predictions.rank{r}.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in rows[:-2] if x["index"] % 2 == r))
    asked, real = [], Y._predict
    monkeypatch.setattr(Y, "_predict", lambda *a: asked.append((a[4]["id"], a[5])) or real(*a))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = Y.run_suite(*S.load_model(**LOAD), CFG, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert asked == [(r["id"], r["scorer"]) for r in rows[-2:]] and again == rows
    assert files(out) == ["predictions.jsonl.gz"]
