"""The synthetic long-context suite (sdtp_lib.eval.synthetic) on the tiny random Qwen2: prompt construction,
exact scoring, the resumable / sharded runner. Random weights cannot answer: machinery and invariants only."""
import gzip
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.compare import encode_prompt
from sdtp_lib.eval import scorers as SC
from sdtp_lib.eval import synthetic as Y
from sdtp_lib.io import compress_jsonl, read_jsonl

RESULTS = Path(__file__).resolve().parent.parent / "reports" / "results"

SCORERS = ("dense", "sdtp:norm", "sdtp-low:recent", "sdtp@1.0:random")
CFG = Y.SuiteConfig(tasks=("passkey", "multikey_niah"), lengths=(256,), n_samples=2, scorers=SCORERS)


@pytest.fixture(scope="module")
def tiny():
    return S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def first_run(tiny, tmp_path_factory):
    """(out_dir, rows) of one full single-process run of CFG."""
    out = tmp_path_factory.mktemp("suite")
    return out, Y.run_suite(*tiny, CFG, out, progress=False)


def gz_lines(path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)


def count_generate(monkeypatch, model) -> list:
    """Counts model.generate calls (an instance attribute shadowing the method, undone after the test)."""
    calls, generate = [], model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    return calls


# ------------------------------------------------------------------ 1. prompts
@pytest.mark.parametrize("length", [256, 1024])
@pytest.mark.parametrize("layout", Y.LAYOUTS)
@pytest.mark.parametrize("task", Y.TASKS)
def test_prompt_invariants(tiny, task, layout, length):
    tok = tiny[1]
    for seed in (0, 1, 2):
        ex = Y.make_example(task, tok, length, layout, seed)
        n = encode_prompt(tok, ex.prompt).shape[1]
        assert n == ex.prompt_len and 0.98 * length <= n <= length, (n, length)
        assert 0.0 <= ex.depth <= 1.0 and ex.max_new_tokens == Y.MAX_NEW_TOKENS[task]
        # every needle once; the answer nowhere but inside the needles (the pass key sentence holds it twice)
        answers = [ex.answer] if isinstance(ex.answer, str) else ex.answer
        assert all(ex.prompt.count(nd) == 1 for nd in ex.needles)
        for a in answers:
            assert ex.prompt.count(a) == sum(nd.count(a) for nd in ex.needles) >= 1, a
        assert Y.score(task, ex.answer if isinstance(ex.answer, str) else " ".join(ex.answer), ex.answer) == 1.0
        if task == "multikey_niah":
            numbers = re.findall(r"\d{7}", ex.prompt)
            assert len(numbers) == len(set(numbers)) == len(ex.needles) and numbers.count(ex.answer) == 1
            assert length < 1024 or len(ex.needles) == 4  # distractors dropped only at very short lengths
        if task == "variable_tracking":
            assert ex.needles[0].startswith(f"VAR {ex.answer[0]} = ") and len(set(ex.answer)) == 5
            values = [m for nd in ex.needles for m in re.findall(r"= (\d+)\.", nd)]
            assert len(values) == len(set(values)) == len(ex.needles) // 5
            assert not any(a in nd for a in ex.answer for nd in ex.needles[5:])  # distractor chains: other names
            assert length < 1024 or len(ex.needles) == 15
        # deterministic in the seed
        assert Y.make_example(task, tok, length, layout, seed).prompt == ex.prompt
        assert Y.make_example(task, tok, length, layout, seed + 100).prompt != ex.prompt
        # the question (with its answer-format instruction) before / after the whole context
        q, size = ex.question, len(ex.prompt)
        start, first, last = ex.prompt.index(q), min(map(ex.prompt.index, ex.needles)), max(
            ex.prompt.index(nd) + len(nd) for nd in ex.needles)
        if layout == "question_first":
            assert start == 0 and start + len(q) < first
            assert length < 1024 or start + len(q) <= 0.2 * size
        else:
            assert start + len(q) == size and start > last
            assert length < 1024 or start >= 0.8 * size


def test_filler_pool():
    assert len(set(Y.FILLER)) == len(Y.FILLER) == 400 and not any(ch.isdigit() for ch in "".join(Y.FILLER))
    assert len(set(Y.KEYS)) == len(Y.KEYS) >= 4


def test_depth_moves_the_needle(tiny):
    tok = tiny[1]
    at = {d: Y.make_passkey(tok, 2048, "question_last", 3, depth=d) for d in (0.0, 0.5, 1.0)}
    pos = {d: ex.prompt.index(ex.needles[0]) / len(ex.prompt) for d, ex in at.items()}
    assert pos[0.0] < 0.1 < pos[0.5] < 0.6 < pos[1.0]
    assert at[0.0].depth == 0.0 and at[1.0].depth == 1.0 and abs(at[0.5].depth - 0.5) < 0.01


def test_too_short_length_is_refused(tiny):
    with pytest.raises(ValueError, match="too short"):
        Y.make_kv_retrieval(tiny[1], 64, "question_last", 0)
    with pytest.raises(ValueError, match="layout"):
        Y.make_passkey(tiny[1], 512, "sideways", 0)


# ------------------------------------------------------------------ 2. scoring
def test_score():
    assert Y.score("passkey", "The pass key is 58213.", "58213") == 1.0
    assert Y.score("passkey", "It is 5821.", "58213") == 0.0
    assert Y.score("kv_retrieval", '  "A1B2-C3D4"\n', "a1b2-c3d4") == 1.0  # case
    assert Y.score("multikey_niah", "the value:\n  58   213 ", " 58 213\t") == 1.0  # whitespace runs
    names = ["QWERT", "ASDFG", "ZXCVB", "POIUY"]
    assert Y.score("variable_tracking", "QWERT, asdfg", names) == 0.5  # partial credit
    assert Y.score("variable_tracking", "QWERT ASDFG ZXCVB POIUY and also LKJHG", names) == 1.0  # extras are free
    assert Y.score("variable_tracking", "", names) == 0.0
    with pytest.raises(ValueError, match="unknown task"):
        Y.score("trivia", "x", "y")
    with pytest.raises(ValueError, match="empty"):
        Y.score("passkey", "x", " ")


# ------------------------------------------------------------------ 3. the runner
def test_run_suite_rows(tiny, first_run):
    model, _ = tiny
    out, rows = first_run
    examples = Y.plan(CFG, [256])
    assert [(r["id"], r["scorer"]) for r in rows] == [(e["id"], s) for e in examples for s in SCORERS]
    assert len(rows) == 2 * 2 * 2 * len(SCORERS)
    for r in rows:
        T = r["prompt_len"]
        assert 0.98 * 256 <= T <= 256 and 0.0 <= r["score"] <= 1.0
        variant, ratio, _ = SC.parse_scorer(r["scorer"])
        assert r["needle_kept"] is not None and 0.0 <= r["needle_kept"] <= 1.0  # located in every prompt
        if variant == "dense" or ratio == 1.0:
            assert r["needle_kept"] == 1.0
        if variant == "dense":
            assert r["compression"] == 1.0 and r["kept_tokens"] == T
            continue
        conf = S.SDTPConfig.for_model(model, keep_ratio=ratio or CFG.keep_ratio, num_stages=SC.VARIANTS[variant])
        per_layer = conf.tokens_per_layer(T, model.config.num_hidden_layers)
        assert r["compression"] == pytest.approx(T / (sum(per_layer) / len(per_layer)), rel=1e-12)
        assert r["kept_tokens"] == conf.keep_schedule(T)[-1]
        assert (r["compression"] > 1.0) == (ratio is None)
    by = {(r["id"], r["scorer"]): r for r in rows}
    for e in examples:  # keep ratio 1.0 keeps every token: exactly the dense answer, whatever the scorer
        assert by[e["id"], "sdtp@1.0:random"]["prediction"] == by[e["id"], "dense"]["prediction"]
    res = json.loads((out / "results.json").read_text())
    assert res["versions"]["transformers"] and "git_commit" in res and res["skipped"] == []
    assert len(res["summary"]) == 2 * 2 * len(SCORERS) and all(s["n"] == 2 for s in res["summary"])
    md = (out / "results.md").read_text()
    assert "| task | length | layout | dense | sdtp:norm |" in md and "| passkey | 256 | question_first |" in md
    assert "## Does the needle survive?" in md and len(res["retention"]) == 2 * len(SCORERS)
    assert sorted(p.name for p in out.glob("predictions*")) == ["predictions.jsonl.gz"]  # finished: gzipped
    assert read_jsonl(out / "predictions.jsonl.gz") == rows  # in canonical order, as answered


def test_resume_generates_only_the_missing(tiny, first_run, tmp_path, monkeypatch):
    model, tok = tiny
    out = tmp_path / "resume"
    shutil.copytree(first_run[0], out)
    plain, gz = out / "predictions.jsonl", out / "predictions.jsonl.gz"
    lines = gz_lines(gz)
    gz.unlink()  # an interrupted run: plain lines, the last one cut short
    plain.write_text("".join(lines[:-6]) + lines[-6][:40])  # 5 lines gone, 1 cut short
    calls = count_generate(monkeypatch, model)
    rows = Y.run_suite(model, tok, CFG, out, progress=False)
    assert len(calls) == 6 and rows == first_run[1]
    assert not plain.exists() and gz_lines(gz) == lines
    assert gz.read_bytes() == (first_run[0] / "predictions.jsonl.gz").read_bytes()  # deterministic gzip
    assert Y.run_suite(model, tok, CFG, out, progress=False) == rows and len(calls) == 6  # all done: nothing runs
    assert not plain.exists()  # ... and the finished file stays gzipped
    for other in (Y.SuiteConfig(**{**CFG.__dict__, "n_samples": 3}), Y.SuiteConfig(**{**CFG.__dict__, "seed": 1})):
        with pytest.raises(ValueError, match="another configuration.*suite"):
            Y.run_suite(model, tok, other, out, progress=False)
    assert len(calls) == 6
    # a finished (gzipped) run of the first three scorers, resumed with all four: it reads the .gz, answers only
    # the fourth scorer, and gives exactly the uninterrupted run's rows; the stored lines stay as they were
    last = SCORERS[-1]
    kept = [x for x in lines if json.loads(x)["scorer"] != last]
    meta = json.loads((out / "config.json").read_text())
    meta["suite"]["scorers"] = list(SCORERS[:-1])
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    gz.unlink()
    plain.write_text("".join(kept))
    compress_jsonl(plain)
    assert Y.run_suite(model, tok, CFG, out, progress=False) == first_run[1] and len(calls) == 6 + 8
    assert not plain.exists() and gz_lines(gz) == kept + [x for x in lines if json.loads(x)["scorer"] == last]


def test_answers_of_another_folder_of_the_same_configuration_are_copied_not_asked(tiny, first_run, tmp_path,
                                                                                monkeypatch, caplog):
    """The ablations share dense (and some settings): a suite reusing a finished folder asks only what it lacks and
    gives the rows an uninterrupted run would; a folder of another configuration is not read."""
    model, tok = tiny
    calls = count_generate(monkeypatch, model)
    more = Y.SuiteConfig(**{**CFG.__dict__, "scorers": ("dense", "sdtp:recent", "sdtp:norm")})
    rows = Y.run_suite(model, tok, more, tmp_path / "b", progress=False, reuse=[tmp_path / "none", first_run[0]])
    assert len(calls) == 8  # sdtp:recent's 8 examples; dense and sdtp:norm copied
    old = {(r["id"], r["scorer"]): r for r in first_run[1]}
    assert [r for r in rows if r["scorer"] != "sdtp:recent"] == [old[r["id"], r["scorer"]] for r in rows
                                                                  if r["scorer"] != "sdtp:recent"]
    assert sorted(json.loads(x)["scorer"] for x in gz_lines(tmp_path / "b" / "predictions.jsonl.gz")) == \
        sorted(s for r in rows for s in [r["scorer"]])  # the copies are stored: the folder stands alone
    other = Y.SuiteConfig(**{**more.__dict__, "n_samples": 1})  # another configuration: nothing copied
    caplog.set_level(logging.INFO, logger="sdtp_lib.eval.synthetic")
    Y.run_suite(model, tok, other, tmp_path / "c", progress=False, reuse=[first_run[0]])
    assert len(calls) == 8 + 4 * 3 and "not reusing" in caplog.text  # 4 examples (2 tasks x 2 layouts) x 3


def test_scorers_can_be_added_not_removed(tiny, first_run, tmp_path, monkeypatch):
    """A folder resumed with more scorers answers only the new ones and reports them all; fewer is refused."""
    model, tok = tiny
    out = tmp_path / "more"
    shutil.copytree(first_run[0], out)
    calls = count_generate(monkeypatch, model)
    more = Y.SuiteConfig(**{**CFG.__dict__, "scorers": ("sdtp:recent", *SCORERS)})
    rows = Y.run_suite(model, tok, more, out, progress=False)
    assert len(calls) == 8  # the 8 examples of the new scorer, nothing else
    old = {(r["id"], r["scorer"]): r for r in first_run[1]}
    assert [r for r in rows if r["scorer"] != "sdtp:recent"] == [old[r["id"], r["scorer"]] for r in rows
                                                                  if r["scorer"] != "sdtp:recent"]
    assert Y._load_meta(out)["suite"]["scorers"] == list(more.scorers)
    old_lines = gz_lines(first_run[0] / "predictions.jsonl.gz")  # resumed from the .gz: its lines kept as they were
    assert gz_lines(out / "predictions.jsonl.gz")[:len(old_lines)] == old_lines
    assert not (out / "predictions.jsonl").exists()
    assert "sdtp:recent" in (out / "results.md").read_text()
    with pytest.raises(ValueError, match=r"also holds scorers \['sdtp:recent'\]"):
        Y.run_suite(model, tok, CFG, out, progress=False)
    assert len(calls) == 8


def test_resume_ignores_where_the_tokenizer_was_loaded_from(tiny, first_run, tmp_path, monkeypatch):
    """The tokenizer's name is the path it was loaded from (a cache folder can move): a resume compares its size
    (the prompts' hashes guard the rest), and refuses another size."""
    model, tok = tiny
    out = tmp_path / "moved"
    shutil.copytree(first_run[0], out)
    meta = json.loads((out / "config.json").read_text())
    meta["tokenizer"][0] = "/some/other/cache/tokenizer"
    (out / "config.json").write_text(json.dumps(meta))
    calls = count_generate(monkeypatch, model)
    assert Y.run_suite(model, tok, CFG, out, progress=False) == first_run[1] and calls == []
    meta["tokenizer"][1] += 1
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another configuration.*tokenizer size"):
        Y.run_suite(model, tok, CFG, out, progress=False)


def test_bad_scorers_are_refused_before_anything_is_written(tiny, tmp_path):
    with pytest.raises(ValueError, match="no shipped predictor"):
        Y.run_suite(*tiny, Y.SuiteConfig(**{**CFG.__dict__, "scorers": ("dense", "sdtp:predictor")}), tmp_path)
    with pytest.raises(ValueError, match="no shipped hybrid"):
        Y.run_suite(*tiny, Y.SuiteConfig(**{**CFG.__dict__, "scorers": ("dense", "sdtp:hybrid")}), tmp_path)
    assert not (tmp_path / "config.json").exists()
    for bad in ("sdtp", "sdtp-lo:norm", "sdtp@1.5:norm", "sdtp@x:norm", "dense:norm"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            SC.parse_scorer(bad)
    assert SC.parse_scorer("sdtp-low@0.8:/p/pred.safetensors") == ("sdtp-low", 0.8, "/p/pred.safetensors")
    for kw, word in ((dict(tasks=("trivia",)), "tasks"), (dict(lengths=(0,)), "lengths"),
                     (dict(layouts=()), "layouts"), (dict(scorers=("dense", "dense")), "scorers"),
                     (dict(n_samples=0), "n_samples"), (dict(keep_ratio=0.0), "keep_ratio")):
        with pytest.raises(ValueError, match=word):
            Y.SuiteConfig(**kw)


# ------------------------------------------------------------------ 4. data parallel
def test_shards_merge_to_the_single_process_run(tiny, first_run, tmp_path):
    out = tmp_path / "ranks"
    shards = [Y.run_suite(*tiny, CFG, out, progress=False, rank=r, world_size=2) for r in (0, 1)]
    assert all(r["index"] % 2 == k for k, rows in enumerate(shards) for r in rows)
    assert not (out / "results.json").exists() and not (out / "predictions.jsonl").exists()
    assert Y.merge(out, 2) == first_run[1]
    assert Y.write_results(out, Y.merge(out, 2))["summary"] == Y.summarise(first_run[1])
    assert sorted(p.name for p in out.glob("predictions*")) == ["predictions.rank0.jsonl.gz",
                                                                 "predictions.rank1.jsonl.gz"]  # each rank's, gzipped
    r0, r1 = ("".join(gz_lines(out / f"predictions.rank{k}.jsonl.gz")) for k in (0, 1))
    (out / "predictions.rank1.jsonl.gz").unlink()  # rank 1 as plain lines (as while it runs); merge reads both forms
    first = json.loads(r0.splitlines()[0])
    (out / "predictions.rank1.jsonl").write_text(r1 + r0.splitlines(keepends=True)[0])  # a duplicate across ranks
    with pytest.raises(ValueError, match=re.escape(f"example {first['id']} / scorer dense appears twice")):
        Y.merge(out, 2)
    (out / "predictions.rank1.jsonl").write_text("".join(r1.splitlines(keepends=True)[1:]))  # one missing
    missing = json.loads(r1.splitlines()[0])
    with pytest.raises(ValueError, match=re.escape(f"e.g. example {missing['id']} / scorer {missing['scorer']}")):
        Y.merge(out, 2)
    (out / "predictions.rank1.jsonl").write_text(r1)
    assert Y.merge(out, 2) == first_run[1]
    (out / "predictions.rank1.jsonl").unlink()
    with pytest.raises(ValueError, match=r"predictions\.rank1\.jsonl is missing"):
        Y.merge(out, 2)
    with pytest.raises(ValueError, match="does not belong here"):  # rank 0's examples under world_size 3
        Y.run_suite(*tiny, CFG, out, progress=False, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2"):
        Y.run_suite(*tiny, CFG, out, rank=2, world_size=2)


# ------------------------------------------------------------------ 5. lengths over the model's limit
def test_lengths_over_the_limit_are_skipped_or_fitted(tiny, tmp_path, caplog):
    model, tok = tiny  # 4096 positions
    cfg = Y.SuiteConfig(tasks=("passkey",), lengths=(256, 4096, 8192), layouts=("question_last",), n_samples=1,
                        scorers=("dense",))
    assert Y.plan_lengths(model, cfg) == ([256, 4096], [{"length": 8192, "reason": "8192 tokens > the model's 4096 "
                                                                                   "positions"}],
                                          {256: 256, 4096: 4096 - 16})  # 4096 leaves room for passkey's 16 tokens
    assert Y.plan_lengths(model, Y.SuiteConfig(**{**cfg.__dict__, "max_positions": 10_000}))[0] == [256, 4096, 8192]
    with caplog.at_level("INFO", logger="sdtp_lib.eval.synthetic"):
        rows = Y.run_suite(model, tok, Y.SuiteConfig(**{**cfg.__dict__, "lengths": (256, 8192)}), tmp_path,
                           progress=False)
    assert [r["length"] for r in rows] == [256] and "skipping length 8192" in caplog.text
    res = json.loads((tmp_path / "results.json").read_text())
    assert [s["length"] for s in res["skipped"]] == [8192]
    assert "skipped length 8192" in (tmp_path / "results.md").read_text()


def test_a_length_at_the_limit_is_fitted_to_leave_room_for_the_answer(tiny, tmp_path):
    model, tok = tiny
    cfg = Y.SuiteConfig(tasks=("passkey",), lengths=(512,), layouts=("question_last",), n_samples=1,
                        scorers=("dense",), max_positions=512)
    rows = Y.run_suite(model, tok, cfg, tmp_path, progress=False)
    assert [r["length"] for r in rows] == [512]  # reported under its nominal length ...
    assert 512 - 16 - 8 <= rows[0]["prompt_len"] <= 512 - 16  # ... with a prompt that leaves the answer room
    assert rows[0]["prompt_len"] + rows[0]["new_tokens"] <= 512
    assert "length 512 fitted to 496 prompt tokens" in (tmp_path / "results.md").read_text()


def test_reports(first_run):
    summary = Y.summarise(first_run[1])
    md = Y.markdown(summary)
    assert md.count("\n| passkey |") == 2 and "| **mean** |" in md and "n = 2 examples" in md
    fig = Y.heatmap_figure(summary, "sdtp:norm")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["sdtp:norm: question_first", "sdtp:norm: question_last"]
    import matplotlib.pyplot as plt
    plt.close(fig)
    with pytest.raises(ValueError, match="no results for scorer 'sdtp:oracle'"):
        Y.heatmap_figure(summary, "sdtp:oracle")
    comp = Y.compression_by_scorer(first_run[1])
    for scorer, value in comp.items():
        mine = [r["compression"] for r in first_run[1] if r["scorer"] == scorer]
        assert value == pytest.approx(sum(mine) / len(mine))
    assert comp["dense"] == 1.0 and comp["sdtp:norm"] > 1.0
    assert "| sdtp:norm | " + f"{comp['sdtp:norm']:.2f}x |" in (first_run[0] / "results.md").read_text()


def _rows(scores: dict, lengths=(1024, 2048), layouts=("question_first", "question_last"), n=4):
    """Fabricated suite rows: scores[scorer](length, layout, i) -> score, for one task."""
    return [{"id": f"passkey/{L}/{lay}/{i}", "task": "passkey", "length": L, "layout": lay, "scorer": s,
             "score": float(f(L, lay, i)), "compression": 1.0}
            for s, f in scores.items() for L in lengths for lay in layouts for i in range(n)]


def test_compare_against_dense():
    rows = _rows({"dense": lambda L, lay, i: i < 3,                         # 75% everywhere
                  "same": lambda L, lay, i: i < 3,                          # = dense on every prompt
                  "loses_2k": lambda L, lay, i: i < 3 and not (L == 2048 and lay == "question_last" and i > 0),
                  "zero": lambda L, lay, i: 0})
    t = {(r["layout"], r["scorer"]): r for r in Y.compare(rows, n_boot=2000)}
    assert len(t) == 2 * 4 and all(r["n"] == 8 and r["baseline_accuracy"] == 0.75 for r in t.values())
    same = t["question_last", "same"]
    assert same["share"] == 1.0 and same["worst_share"] == 1.0 and same["diff"] == same["diff_lo"] == same["diff_hi"] == 0
    lo = t["question_last", "loses_2k"]  # 2 of 3 correct answers lost at 2K only: 4/8 correct
    assert lo["accuracy"] == 0.5 and lo["share"] == pytest.approx(0.5 / 0.75)
    assert (lo["worst_length"], lo["worst_share"], lo["worst_accuracy"]) == (2048, pytest.approx(1 / 3), 0.25)
    assert lo["diff"] == -0.25 and lo["diff_lo"] < -0.25 < lo["diff_hi"] <= 0  # the interval holds the mean
    assert t["question_first", "loses_2k"]["diff"] == 0 and t["question_first", "loses_2k"]["share"] == 1.0
    assert t["question_first", "zero"]["share"] == 0 and t["question_first", "zero"]["diff"] == -0.75
    assert t["question_first", "dense"]["worst_length"] is None  # the baseline is not compared with itself
    md = Y.comparison_markdown(Y.compare(rows, n_boot=200))
    assert "| question_last | loses_2k | 50.0 | 67% | 2K: 33% (25 vs 75) | -25.0 [" in md
    assert "| question_first | dense | 75.0 | 100% | - | - |" in md


def test_compare_refuses_what_it_cannot_pair():
    rows = _rows({"dense": lambda L, lay, i: 1, "a": lambda L, lay, i: 0})
    with pytest.raises(ValueError, match="no results for the baseline 'full'"):
        Y.compare(rows, baseline="full")
    with pytest.raises(ValueError, match="no results for scorer 'b'"):
        Y.paired_difference(rows, "b")
    with pytest.raises(ValueError, match="not run on the same prompts .1 only in the first, 0 only in the second"):
        Y.paired_difference(rows + _rows({"a": lambda L, lay, i: 0}, lengths=(4096,), n=1, layouts=("question_last",)),
                            "a")


def test_results_and_figures_of_a_folder(first_run, tmp_path):
    out, rows = first_run
    res = json.loads((out / "results.json").read_text())
    assert res["comparison"] == json.loads(json.dumps(Y.compare(rows)))  # the same table, seeded bootstrap
    assert "## Against dense, per layout" in (out / "results.md").read_text()
    import matplotlib.pyplot as plt
    paths = Y.write_figures(tmp_path, Y.summarise(rows), ["dense", "sdtp:norm"], close=False)
    assert [p.name for p in paths] == ["accuracy_vs_length.png", "accuracy_vs_length_by_layout.png",
                                       "heatmap_dense.png", "heatmap_sdtp_norm.png"]
    assert all(p.stat().st_size > 10_000 for p in paths) and len(plt.get_fignums()) >= 4  # left open for inline display
    plt.close("all")
    Y.write_figures(tmp_path, Y.summarise(rows), ["dense"])
    assert plt.get_fignums() == []


def test_committed_comparison_reproduces_from_the_gzipped_predictions():
    """Run 5's comparison.md (written from its predictions with compare()) and its results.json summary come back
    from the committed predictions.rank*.jsonl.gz alone, read by merge()."""
    run = RESULTS / "2026-11-30_qwen2.5-0.5b_scorers_h200x2" / "synthetic"
    assert sorted(p.name for p in run.glob("predictions*")) == ["predictions.rank0.jsonl.gz",
                                                                 "predictions.rank1.jsonl.gz"]
    rows = Y.merge(run, 2)
    head = "# Against dense, per layout (run 5, n = 10)\n\n"  # the file's title, given by hand
    assert head + Y.comparison_markdown(Y.compare(rows)) == (run / "comparison.md").read_text()
    res = json.loads((run / "results.json").read_text())
    summary, comp = json.loads(json.dumps(Y.summarise(rows))), Y.compression_by_scorer(rows)
    assert len(rows) == res["n_rows"] == 3360 and Y.markdown(summary) in (run / "results.md").read_text()
    if sys.version_info >= (3, 12):
        assert summary == res["summary"] and comp == res["compression"]
    else:  # the run's Python 3.12 sums floats with compensation (sum() changed in 3.12): the last bit may differ
        assert [{**s, "accuracy": pytest.approx(s["accuracy"], rel=1e-12, abs=1e-15)} for s in res["summary"]] \
            == summary
        assert comp == pytest.approx(res["compression"], rel=1e-12)


def test_static_decode_loop_gives_the_same_predictions_as_generate(tiny, tmp_path):
    model, tok = tiny
    base = dict(tasks=("passkey", "variable_tracking"), lengths=(256,), layouts=("question_last",), n_samples=2,
                scorers=("dense", "sdtp:norm", "sdtp@0.6:random"))
    rows = {d: Y.run_suite(model, tok, Y.SuiteConfig(**base, decode=d), tmp_path / d, progress=False)
            for d in ("hf", "static")}
    keep = ("id", "scorer", "prediction", "score", "compression", "kept_tokens", "new_tokens", "needle_kept")
    assert [{k: r[k] for k in keep} for r in rows["static"]] == [{k: r[k] for k in keep} for r in rows["hf"]]
    assert json.loads((tmp_path / "static" / "config.json").read_text())["decode"] == "static"
    for r in rows["static"]:  # where the answer's time went (the static loop measures it; generate does not)
        assert r["prefill_s"] > 0 and r["setup_s"] >= 0 and r["decode_s"] >= 0 and r["decode_ms_per_token"] >= 0
    assert not {"prefill_s", "setup_s", "decode_s"} & set(rows["hf"][0])
    assert Y.resolve_decode(Y.SuiteConfig(**base), model) == "hf"  # auto: the static loop on CUDA only
    with pytest.raises(ValueError, match="decode"):
        Y.SuiteConfig(**base, decode="fast")


def test_stopping_at_the_answer_gives_the_same_answers_in_fewer_steps(tiny, tmp_path, monkeypatch):
    """stop_at_answer: the static loop ends at the end-of-sequence token; every answer is the one the full-length
    loop cuts there, and decoding held fewer tokens. (The tiny random model rarely ends an answer: every even id
    counts as an end here, for both runs.)"""
    model, tok = tiny
    monkeypatch.setattr(Y, "_stop_ids", lambda model, tok: set(range(0, len(tok), 2)))
    base = dict(tasks=("passkey", "kv_retrieval"), lengths=(256,), layouts=("question_last",), n_samples=2,
                scorers=("dense", "sdtp:norm", "dense+H0.5"), decode="static")
    full, short = (Y.run_suite(model, tok, Y.SuiteConfig(**base, stop_at_answer=s), tmp_path / str(s), progress=False)
                   for s in (False, True))
    keep = ("id", "scorer", "prediction", "score", "compression", "new_tokens", "needle_kept")
    assert [{k: r[k] for k in keep} for r in short] == [{k: r[k] for k in keep} for r in full]
    assert all(a["kv_bytes"] <= b["kv_bytes"] for a, b in zip(short, full))
    assert sum(a["kv_bytes"] < b["kv_bytes"] for a, b in zip(short, full) if "+H" not in a["scorer"]) > 0
    assert "stop_at_answer" not in json.loads((tmp_path / "False" / "config.json").read_text())["suite"]
    assert json.loads((tmp_path / "True" / "config.json").read_text())["suite"]["stop_at_answer"] is True


@pytest.mark.parametrize("task", ["passkey", "multikey_niah", "kv_retrieval", "variable_tracking"])
def test_needle_positions_cover_the_needle(tiny, task):
    """The located tokens decode to text that contains the target needle, and dropping either end token breaks it."""
    tok = tiny[1]
    ex = Y.make_example(task, tok, 1024, "question_first", seed=3)
    ids = encode_prompt(tok, ex.prompt)[0]
    pos = Y.needle_positions(tok, ids, ex.needles[0])
    assert pos == list(range(pos[0], pos[-1] + 1))  # one contiguous span
    assert ex.needles[0] in tok.decode(ids[pos[0]:pos[-1] + 1])
    for cut in (ids[pos[0] + 1:pos[-1] + 1], ids[pos[0]:pos[-1]]):
        assert ex.needles[0] not in tok.decode(cut)
    assert Y.needle_positions(tok, ids, "no such text anywhere") == []


@torch.no_grad()
def test_needle_kept_is_the_share_of_its_tokens_in_the_last_stage(tiny):
    model, tok = tiny
    ex = Y.make_example("passkey", tok, 512, "question_last", seed=1, depth=0.5)
    ids = encode_prompt(tok, ex.prompt)
    pos = Y.needle_positions(tok, ids[0], ex.needles[0])
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.5)
    with S.pruning(model, "recent", conf) as st:  # keeps the sink and the newest tokens: a mid-prompt needle goes
        model(ids)
    kept = set(st.stage_positions[-1][0].tolist())
    want = sum(k in kept for k in pos) / len(pos)
    span = Y.needle_span(tok, ex, ids)
    assert span == pos
    assert Y.needle_kept(span, st) == want < 1.0
    assert Y.needle_kept(span, None) == 1.0  # dense
    assert Y.needle_kept([], st) is None  # not located


def test_retention_table():
    rows = [dict(layout="question_last", scorer=s, score=sc, needle_kept=k) for s, sc, k in
            [("dense", 1.0, 1.0), ("dense", 0.0, 1.0), ("sdtp:x", 1.0, 1.0), ("sdtp:x", 0.0, 0.25),
             ("sdtp:x", 0.0, 0.5)]] + [dict(layout="question_last", scorer="old", score=1.0)]  # no needle_kept
    t = {r["scorer"]: r for r in Y.retention(rows)}
    assert set(t) == {"dense", "sdtp:x"}
    assert t["dense"] == dict(layout="question_last", scorer="dense", n=2, needle_kept=1.0, whole=1.0,
                              accuracy_whole=0.5, accuracy_cut=None)
    x = t["sdtp:x"]
    assert x["needle_kept"] == pytest.approx(1.75 / 3) and x["whole"] == pytest.approx(1 / 3)
    assert x["accuracy_whole"] == 1.0 and x["accuracy_cut"] == 0.0
    md = Y.retention_markdown(Y.retention(rows))
    assert "| question_last | sdtp:x | 58% | 33% | 100% | 0% |" in md and "| question_last | dense | 100% | 100% | 50% | - |" in md


def test_specs_with_a_compression_and_a_start_layer(tiny):
    """"sdtp@1.5x+L2:norm": the suite prunes with the ratio that compresses 1.5x from layer 2 (the same SDTPConfig
    as SDTPConfig.for_compression), and the rows show that compression."""
    model, tok = tiny
    spec = "sdtp@1.5x+L2:norm"
    sp = Y._resolve(spec, model, tok, Y.SuiteConfig(tasks=("passkey",), lengths=(256,), scorers=("dense", spec)))
    scorer, conf = sp.scorer, sp.config
    assert scorer == "norm" and conf == S.SDTPConfig.for_compression(model, 1.5, 10, start_layer=2)
    assert conf.stage_layers[0] == 2
    with pytest.raises(ValueError, match=r"expected 'dense' or '<variant>:<scorer>'.*\(variant 'sdtp\+L0': the first"):
        SC.parse_spec("sdtp+L0:norm")
    with pytest.raises(ValueError, match=r"scorer 'sdtp\+L9': expected"):  # no scorer
        SC.parse_spec("sdtp+L9")


def test_the_log_shows_the_suites_progress_at_most_once_per_period(caplog):
    caplog.set_level(logging.INFO, logger="sdtp_lib.eval.synthetic")
    Y._Pace(720, 80, every=3600).tick(100)
    assert "answers" not in caplog.text  # within the period: quiet
    Y._Pace(720, 80, every=0).tick(100)
    assert re.search(r"synthetic suite: 100 / 720 answers, [0-9.]+ answers/s", caplog.text)
