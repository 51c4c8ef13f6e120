"""LongBench v1 (English) with the official protocol (sdtp_lib.eval.longbench): metrics against hand-computed
values, prompt building, loading errors, and the runner (resume, sharding, keep ratio 1.0, scores) on the
project's fixture with the tiny random Qwen2: fast, CPU, no download."""
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

import sdtp_lib as S
from sdtp_lib.eval import longbench as L
from sdtp_lib.io import write_jsonl

from .conftest import favouring

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "data" / "longbench_fixture"
RUN_TASKS = ["hotpotqa", "trec"]  # a chat-templated QA task (32 new tokens), a raw few-shot one with all_classes
MAX_LEN = 400  # prompt tokens: the tiny byte-level model runs fast, and the fixture's prompts get truncated
TIMING = ("prefill_s", "gen_s", "decode_ms_per_token")


@pytest.fixture(scope="module")
def tiny():
    return S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _rows(path):
    return L.read_predictions(path)  # path or path.gz


def _files(out):
    """The prediction files of a run folder, relative to it."""
    return sorted(str(p.relative_to(out)) for p in out.glob("*/*.jsonl*"))


# ----------------------------------------------------------------------------------------------------- metrics
def test_task_tables_match_the_official_configs():
    assert len(L.TASKS) == 16 and set(L.PROMPTS) == set(L.MAXLEN) == set(L.METRICS) == set(L.TASKS)
    assert L.METRIC_OF == {
        "narrativeqa": "qa_f1", "qasper": "qa_f1", "multifieldqa_en": "qa_f1", "hotpotqa": "qa_f1",
        "2wikimqa": "qa_f1", "musique": "qa_f1", "gov_report": "rouge", "qmsum": "rouge", "multi_news": "rouge",
        "trec": "classification", "triviaqa": "qa_f1", "samsum": "rouge", "passage_count": "count",
        "passage_retrieval_en": "retrieval", "lcc": "code_sim", "repobench-p": "code_sim"}
    assert L.MAXLEN["gov_report"] == 512 and L.MAXLEN["hotpotqa"] == 32 and L.MAXLEN["samsum"] == 128
    assert L.PROMPTS["lcc"] == "Please complete the code given below. \n{context}Next line of code:\n"
    assert "asconcisely" in L.PROMPTS["narrativeqa"]  # the official text, typos included
    assert sum(len(ts) for ts in L.CATEGORIES.values()) == 16


def test_normalize_answer_and_qa_f1():
    assert L.normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert L.normalize_answer("An apple a day") == "apple day"
    assert L.normalize_answer("Theatre") == "theatre"  # articles only as whole words
    f1 = L.METRICS["hotpotqa"]
    assert f1("The Eiffel Tower!", "eiffel tower") == 1.0
    # [cat, sat] vs [cat, sat, down]: precision 1, recall 2/3 -> 0.8
    assert f1("a cat sat", "the cat sat down") == pytest.approx(0.8)
    # [cat, cat] vs [cat]: Counter intersection counts "cat" once: p 1/2, r 1 -> 2/3
    assert f1("cat cat", "cat") == pytest.approx(2 / 3)
    out = f1("dog", "cat")
    assert out == 0.0 and isinstance(out, float)
    assert f1("", "cat") == 0.0


def test_rouge_l():
    rouge = L.METRICS["gov_report"]
    assert rouge("the cat sat on the mat.", "the cat sat on the mat.") == pytest.approx(1.0, abs=1e-7)
    # rouge's summary-level ROUGE-L: m = 5 distinct reference words, n = 3, union LCS "the cat" = 2:
    # r = 0.4, p = 2/3, F = 0.5 (minus its 1e-8 epsilon)
    assert rouge("the cat sat", "the cat was on the mat") == pytest.approx(0.5, abs=1e-7)
    assert rouge("", "the cat") == 0.0  # rouge raises on an empty hypothesis: metrics.py returns 0
    assert L.METRICS["qmsum"] is L.METRICS["multi_news"] is L.METRICS["samsum"] is rouge


def test_classification_trec():
    cls = L.METRICS["trec"]
    classes = ["City", "Country", "Other", "Other location"]
    assert cls("Country", "Country", all_classes=classes) == 1.0
    assert cls("City or Country", "Country", all_classes=classes) == 0.5  # two classes named: 1/2
    assert cls("Mountain", "Country", all_classes=classes) == 0.0
    # "Other" is named too (a substring of the prediction) but is a substring of the gold: dropped
    assert cls("Other location", "Other location", all_classes=classes) == 1.0
    assert cls("Other", "Other location", all_classes=classes) == 0.0
    # metrics.py removes from the list it iterates: after "Num" is removed, "Number" is skipped and stays
    assert cls("Number of something", "Number of something",
               all_classes=["Num", "Number", "Number of something"]) == 0.5
    with pytest.raises(ValueError, match="all_classes"):
        cls("Country", "Country")


def test_retrieval_and_count():
    ret = L.METRICS["passage_retrieval_en"]
    assert ret("Paragraph 3", "Paragraph 3") == 1.0
    assert ret("Paragraph 3 or Paragraph 13", "Paragraph 3") == 0.5  # numbers [3, 13]: one right
    assert ret("The answer is Paragraph 30", "Paragraph 3") == 0.0
    assert ret("paragraph three", "Paragraph 3") == 0.0  # no number at all
    with pytest.raises(ValueError, match="Paragraph N"):
        ret("3", "three")
    cnt = L.METRICS["passage_count"]
    assert cnt("3", "3") == 1.0 and cnt("There are 3 unique paragraphs, not 4", "3") == 0.5
    assert cnt("three", "3") == 0.0 and cnt("3", 3) == 1.0


def test_code_sim_line_selection():
    sim = L.METRICS["lcc"]
    assert L.METRICS["repobench-p"] is sim
    gold = "        return math.sqrt(self.dot(self))"
    assert sim(gold, gold) == 1.0
    # leading newlines dropped, then the first line without "`", "#" or "//"
    assert sim("\n\n# the length\n```python\n" + gold + "\nmore", gold) == 1.0
    assert sim("// js comment\nx = 1;", "x = 1;") == 1.0
    assert sim("# only\n# comments", gold) == 0.0  # no line qualifies: "" scores 0
    assert sim("abcd", "abce") == pytest.approx(0.75)  # fuzz.ratio: 2 * 3 matches / 8 characters


def test_first_line_rule_and_task_score():
    # trec / triviaqa / samsum: only the first line (after leading newlines) is scored
    assert L.score_sample("triviaqa", "\nChemistry\nand physics", ["Physics", "chemistry"]) == 1.0
    # hotpotqa: the whole prediction: [braga, more] vs [braga] -> 2/3
    assert L.score_sample("hotpotqa", "Braga\nmore", ["Braga"]) == pytest.approx(2 / 3)
    assert L.score_sample("trec", "Country\nCity", ["Country"], ["City", "Country"]) == 1.0
    assert L.task_score("hotpotqa", ["Braga", "x", "y"], [["Braga"], ["z"], ["z"]]) == 33.33
    assert L.task_score("trec", ["City", "Country"], [["City"], ["City"]], [["City", "Country"]] * 2) == 50.0
    assert L.task_score("passage_retrieval_en", ["Paragraph 2"], [["Paragraph 2"]]) == 100.0


# ----------------------------------------------------------------------------------------------------- data
def test_fixture_is_complete_and_consistent():
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 200_000
    assert (FIXTURE / "README.md").exists()
    for task in L.TASKS:
        rows = L.load_task(FIXTURE, task)
        assert len(rows) == 2
        for r in rows:
            assert r["dataset"] == task and r["language"] == "en"
            words = len(r["input"].split()) + len(r["context"].split()) + sum(len(a.split()) for a in r["answers"])
            assert r["length"] == words
            assert (r["all_classes"] is not None) == (task == "trec")
            if task == "trec":
                assert len(r["all_classes"]) == 50 and all(a in r["all_classes"] for a in r["answers"])
            # the gold answer gets the metric's maximum
            assert L.score_sample(task, r["answers"][0], r["answers"], r["all_classes"]) == pytest.approx(1.0,
                                                                                                          abs=1e-7)
    assert len(L.load_task(FIXTURE, "trec", limit=1)) == 1


def test_load_task_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        L.load_task(tmp_path / "no_such_folder", "hotpotqa")
    with pytest.raises(FileNotFoundError, match=r"hotpotqa\.jsonl"):
        L.load_task(tmp_path, "hotpotqa")
    with pytest.raises(ValueError, match="unknown LongBench task"):
        L.load_task(FIXTURE, "dureader")
    row = json.loads((FIXTURE / "hotpotqa.jsonl").read_text().splitlines()[0])
    del row["answers"]
    (tmp_path / "hotpotqa.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"hotpotqa\.jsonl.*'answers'"):
        L.load_task(tmp_path, "hotpotqa")
    (tmp_path / "qasper.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"qasper\.jsonl:1"):
        L.load_task(tmp_path, "qasper")


def test_load_task_hub_offline_says_pass_a_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="local folder"):
        L.load_task("hub", "hotpotqa")


# ----------------------------------------------------------------------------------------------------- prompts
def test_chat_template_only_where_the_official_code_uses_it(tiny):
    _, tok = tiny
    raw_tok = copy.deepcopy(tok)
    raw_tok.chat_template = None
    for task in L.TASKS:
        sample = L.load_task(FIXTURE, task, limit=1)[0]
        text = L.PROMPTS[task].format(**sample)
        ids = L.build_prompt(tok, sample, task, max_length=100_000)
        assert ids.shape[0] == 1
        decoded = tok.decode(ids[0])
        if task in ("trec", "triviaqa", "samsum", "lcc", "repobench-p"):
            assert ids[0].tolist() == tok(text).input_ids
        else:
            assert decoded == f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        # a tokenizer without a chat template gets the raw prompt everywhere (pred.py's fall-through)
        assert L.build_prompt(raw_tok, sample, task, max_length=100_000)[0].tolist() == tok(text).input_ids


def test_middle_truncation_keeps_first_and_last_halves(tiny):
    _, tok = tiny
    for task in ("trec", "hotpotqa"):  # raw and chat-templated
        sample = L.load_task(FIXTURE, task)[0]
        text = L.PROMPTS[task].format(**sample)
        full = tok(text).input_ids
        assert len(full) > 300
        ids = L.build_prompt(tok, sample, task, max_length=300)
        body = tok.decode(ids[0])
        if task == "hotpotqa":
            head, tail = "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"
            assert body.startswith(head) and body.endswith(tail)
            body = body[len(head):-len(tail)]
        # the byte-level tokenizer round-trips exactly: the first 150 and the last 150 tokens, nothing between
        assert tok(body).input_ids == full[:150] + full[-150:]
        assert body.startswith(text[:150]) and body.endswith(text[-150:]) and len(body) == 300
        assert text[len(text) // 2 - 20:len(text) // 2 + 20] not in body
    # odd max_length: int(max_length / 2) from each side, as pred.py
    assert L.build_prompt(tok, sample, "trec", max_length=301).shape[1] == 300
    # a prompt within max_length is untouched
    assert L.format_prompt(tok, sample, "trec", max_length=len(full)) == L.PROMPTS["trec"].format(**sample)


def test_default_max_length_reproduces_model2maxlen(tiny):
    model, _ = tiny
    assert L.default_max_length(model) == 3500  # 4096 positions
    for positions, official in ((4096, 3500), (8192, 7500), (16384, 15500), (32768, 31500), (131072, 31500)):
        model.config.max_position_embeddings, saved = positions, model.config.max_position_embeddings
        try:
            assert L.default_max_length(model) == official
        finally:
            model.config.max_position_embeddings = saved


def test_samsum_generation_stops_at_newline(tiny):
    model, tok = tiny
    kw = L.generation_kwargs(model, tok, "samsum")
    nl = tok.encode("\n", add_special_tokens=False)[-1]
    assert kw["eos_token_id"][:2] == [tok.eos_token_id, nl] and kw["min_new_tokens"] == 1
    assert kw["max_new_tokens"] == 128 and kw["do_sample"] is False
    assert "eos_token_id" not in L.generation_kwargs(model, tok, "hotpotqa")
    # on a model pushed towards "\n": one other token first (min_new_tokens), then the newline ends it
    sample = L.load_task(FIXTURE, "samsum", limit=1)[0]
    ids = L.build_prompt(tok, sample, "samsum", max_length=200)
    with favouring(model, nl):
        rec = L.generate_answer(model, tok, ids, "samsum")
    assert rec["new_tokens"] == 2 and rec["pred"].endswith("\n") and "\n" not in rec["pred"][:-1]
    assert rec["prompt_len"] == ids.shape[1] and rec["prefill_s"] > 0


# ----------------------------------------------------------------------------------------------------- runner
SCORERS = {"dense": None, "sdtp": "norm"}


@pytest.fixture(scope="module")
def run1(tiny, tmp_path_factory):
    model, tok = tiny
    out = tmp_path_factory.mktemp("lb") / "run1"
    summary = L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, limit=2, max_length=MAX_LEN,
                              progress=False)
    return out, summary


def test_run_writes_every_prediction(run1):
    out, summary = run1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["max_length"] == MAX_LEN and set(cfg["scorers"]) == {"dense", "sdtp"}
    assert cfg["scorers"]["sdtp"]["keep_ratio"] == 0.9 and cfg["scorers"]["sdtp"]["scorer"] == "norm policy"
    for name in SCORERS:
        for task in RUN_TASKS:
            assert summary[name][task] == {"generated": 2, "skipped": 0,
                                           "file": str(out / name / f"{task}.jsonl.gz")}
            rows = _rows(out / name / f"{task}.jsonl")
            ids = [r["_id"] for r in L.load_task(FIXTURE, task)]
            assert [r["_id"] for r in rows] == ids
            for r in rows:
                assert set(r) >= {"pred", "answers", "all_classes", "length", "_id", "prompt_len", "compression",
                                  "prefill_s"}
                assert r["prefill_s"] > 0 and isinstance(r["pred"], str)
                assert r["prompt_len"] <= MAX_LEN + 40
                assert (r["compression"] == 1.0) == (name == "dense")
    assert _files(out) == sorted(f"{n}/{t}.jsonl.gz" for n in SCORERS for t in RUN_TASKS)  # finished: only .gz


def test_resume_regenerates_only_the_missing_sample(run1, tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "resume"
    shutil.copytree(run1[0], out)
    path, gz = out / "sdtp" / "hotpotqa.jsonl", out / "sdtp" / "hotpotqa.jsonl.gz"
    rows = _rows(gz)
    gz.unlink()
    path.write_text(json.dumps(rows[1], ensure_ascii=False) + "\n")  # an interrupted run that lost the first sample
    summary = L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, limit=2, max_length=MAX_LEN,
                              progress=False)
    assert summary["sdtp"]["hotpotqa"] == {"generated": 1, "skipped": 1, "file": str(gz)}
    assert all(summary[n][t]["generated"] == 0 for n in SCORERS for t in RUN_TASKS if (n, t) != ("sdtp", "hotpotqa"))
    new = _rows(gz)
    assert new[1] == rows[1]  # the kept record is untouched, and the regenerated one is back in first place
    assert _strip(new[:1]) == _strip(rows[:1]) and not path.exists()
    # an interrupted write (a cut last line) is dropped and redone
    gz.unlink()
    path.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n" + json.dumps(rows[1])[:20])
    summary = L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, limit=2, max_length=MAX_LEN,
                              progress=False)
    assert summary["sdtp"]["hotpotqa"]["generated"] == 1
    assert _strip(_rows(gz)) == _strip(rows) and _files(out) == _files(run1[0])


def test_a_finished_task_resumes_from_its_gzipped_file(run1, tiny, tmp_path):
    """A run of the first sample leaves <task>.jsonl.gz; asked for both samples, the next run reads the .gz, answers
    only the second one, and gives exactly the records of the uninterrupted run (run1), the first one unchanged."""
    model, tok = tiny
    out = tmp_path / "more"
    first = L.run_longbench(model, tok, ["hotpotqa"], FIXTURE, out, scorers={"sdtp": "norm"}, limit=1,
                            max_length=MAX_LEN, progress=False)
    gz = out / "sdtp" / "hotpotqa.jsonl.gz"
    assert first["sdtp"]["hotpotqa"] == {"generated": 1, "skipped": 0, "file": str(gz)} and _files(out) == [
        "sdtp/hotpotqa.jsonl.gz"]
    stored = _rows(gz)
    more = L.run_longbench(model, tok, ["hotpotqa"], FIXTURE, out, scorers={"sdtp": "norm"}, limit=2,
                           max_length=MAX_LEN, progress=False)
    assert more["sdtp"]["hotpotqa"] == {"generated": 1, "skipped": 1, "file": str(gz)}
    assert _files(out) == ["sdtp/hotpotqa.jsonl.gz"] and _rows(gz)[:1] == stored
    assert _strip(_rows(gz)) == _strip(_rows(run1[0] / "sdtp" / "hotpotqa.jsonl"))


def test_other_settings_are_refused(run1, tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "refuse"
    shutil.copytree(run1[0], out)
    with pytest.raises(ValueError, match="max_length"):
        L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, limit=2, max_length=MAX_LEN + 2,
                        progress=False)
    with pytest.raises(ValueError, match="scorers.sdtp"):
        L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers={"sdtp": "recent"}, limit=2,
                        max_length=MAX_LEN, progress=False)
    with pytest.raises(ValueError, match="scorers.sdtp"):
        L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, keep_ratio=0.8, limit=2,
                        max_length=MAX_LEN, progress=False)


def test_sharded_run_merges_to_the_single_run(run1, tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "sharded"
    for rank in (1, 0):
        summary = L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers=SCORERS, limit=2,
                                  max_length=MAX_LEN, rank=rank, world_size=2, progress=False)
        assert summary["dense"]["hotpotqa"]["generated"] == 1
        assert (out / "dense" / f"hotpotqa.rank{rank}.jsonl.gz").exists()  # this rank's share done: gzipped
    with pytest.raises(ValueError, match="merge"):
        L.score_longbench(out)
    merged = L.merge(out)
    assert set(merged) == set(SCORERS) and set(merged["sdtp"]) == set(RUN_TASKS)
    for name in SCORERS:
        for task in RUN_TASKS:
            assert _strip(_rows(out / name / f"{task}.jsonl")) == _strip(_rows(run1[0] / name / f"{task}.jsonl"))
    assert _files(out) == sorted(f"{n}/{t}{r}.jsonl.gz" for n in SCORERS for t in RUN_TASKS
                                 for r in ("", ".rank0", ".rank1"))  # merged files written gzipped
    # a duplicated and a missing sample are errors
    r0, r1 = out / "dense" / "trec.rank0.jsonl", out / "dense" / "trec.rank1.jsonl"
    saved = _rows(r1)
    write_jsonl(r1, saved + _rows(r0))
    with pytest.raises(ValueError, match="appears in both"):
        L.merge(out)
    write_jsonl(r1, [])
    with pytest.raises(ValueError, match="lacks 1 of 2"):
        L.merge(out)
    (out / "dense" / "trec.rank1.jsonl.gz").unlink()
    with pytest.raises(ValueError, match="rank 1 of 2"):
        L.merge(out)


def test_keep_ratio_one_gives_the_dense_predictions(run1, tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "r1"
    L.run_longbench(model, tok, RUN_TASKS, FIXTURE, out, scorers={"sdtp": "norm"}, keep_ratio=1.0, limit=2,
                    max_length=MAX_LEN, progress=False)
    for task in RUN_TASKS:
        pruned, dense = _rows(out / "sdtp" / f"{task}.jsonl"), _rows(run1[0] / "dense" / f"{task}.jsonl")
        assert [r["pred"] for r in pruned] == [r["pred"] for r in dense]
        assert [r["compression"] for r in pruned] == [1.0, 1.0]


def test_scores_and_markdown(run1):
    out = run1[0]
    res = L.score_longbench(out)
    assert (out / "results.json").exists() and (out / "results.md").exists()
    saved = json.loads((out / "results.json").read_text())
    assert saved["scorers"]["dense"]["tasks"]["hotpotqa"]["score"] == res["scorers"]["dense"]["tasks"]["hotpotqa"][
        "score"]
    assert saved["provenance"]["metric_libraries"]["rouge"] and saved["config"]["max_length"] == MAX_LEN
    assert res["tasks"] == RUN_TASKS and res["dense"] == "dense"
    for name in SCORERS:
        s = res["scorers"][name]
        for task in RUN_TASKS:
            rows = _rows(out / name / f"{task}.jsonl")
            expect = L.task_score(task, [r["pred"] for r in rows], [r["answers"] for r in rows],
                                  [r["all_classes"] for r in rows])
            assert s["tasks"][task]["score"] == expect and s["tasks"][task]["n"] == 2
        assert s["average"] == round((s["tasks"]["hotpotqa"]["score"] + s["tasks"]["trec"]["score"]) / 2, 2)
        assert set(s["categories"]) == {"multi-doc QA", "few-shot"} and s["n_samples"] == 4
        assert s["mean_prefill_s"] > 0
    assert res["scorers"]["dense"]["mean_compression"] == 1.0
    assert res["scorers"]["sdtp"]["mean_compression"] > 1.0 and res["scorers"]["sdtp"]["prefill_speedup_vs_dense"] > 0
    both = [(_rows(out / n / f"{t}.jsonl"), n) for t in RUN_TASKS for n in ("dense", "sdtp")]
    gen = {n: sum(r["gen_s"] for rows, m in both if m == n for r in rows) for n in ("dense", "sdtp")}
    assert res["scorers"]["sdtp"]["e2e_speedup_vs_dense"] == pytest.approx(gen["dense"] / gen["sdtp"])
    assert res["scorers"]["dense"]["e2e_speedup_vs_dense"] is None
    md = L.markdown(res)
    for task in RUN_TASKS:
        assert sum(line.startswith(f"| {L.CATEGORY_OF[task]} | {task} |") for line in md.splitlines()) == 1
    assert "| dense |" in md and "| sdtp |" in md and "average over tasks" in md
    assert (out / "results.md").read_text().strip() == md.strip()


def test_score_refuses_an_unfinished_task(run1, tmp_path):
    out = tmp_path / "partial"
    shutil.copytree(run1[0], out)
    path = out / "dense" / "trec.jsonl"
    write_jsonl(path, _rows(path)[:1])
    with pytest.raises(ValueError, match="1 of 2"):
        L.score_longbench(out, write=False)
    res = L.score_longbench(out, partial=True, write=False)
    assert res["scorers"]["dense"]["partial"] and "(1/2)" in L.markdown(res)


def test_committed_scores_reproduce_from_the_gzipped_predictions(tmp_path):
    """The eval-baselines LongBench folder holds only gzipped predictions; scoring a copy of it gives its committed
    results.json (but where and with what it was scored) and results.md, byte for byte."""
    run = ROOT / "reports" / "results" / "2026-11-30_qwen2.5-0.5b_eval-baselines_h200x2" / "longbench"
    out = tmp_path / "longbench"
    shutil.copytree(run, out)  # scoring writes results.json / results.md: never into reports/
    assert not list(out.glob("*/*.jsonl")) and len(list(out.glob("*/*.jsonl.gz"))) == 5 * 16
    assert L.main(["score", "--out", str(out)]) == 0
    new, old = (json.loads((d / "results.json").read_text()) for d in (out, run))
    assert {k: v for k, v in new.items() if k not in ("out_dir", "provenance")} == \
        {k: v for k, v in old.items() if k not in ("out_dir", "provenance")}
    assert (out / "results.md").read_bytes() == (run / "results.md").read_bytes()


def test_scorer_specs_and_variants():
    from types import SimpleNamespace
    deep = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=28))  # policies need only the depth
    v = L.resolve_scorers(deep, {"dense": None, "sdtp": "norm", "sdtp-low": "norm"})
    assert v["dense"].describe() == {"kind": "dense"}
    assert len(v["sdtp"].config.stage_layers) == 10 and len(v["sdtp-low"].config.stage_layers) == 5
    assert v["sdtp"].config.stage_layers == (4, 7, 10, 13, 16, 19, 21, 23, 25, 27)
    v = L.resolve_scorers(deep, ["dense", "sdtp:recent", "sdtp-low@0.8:norm"], keep_ratio=0.9)
    assert list(v) == ["dense", "sdtp:recent", "sdtp-low@0.8:norm"]
    assert v["sdtp:recent"].config.keep_ratio == 0.9 and v["sdtp-low@0.8:norm"].config.keep_ratio == 0.8
    assert len(v["sdtp-low@0.8:norm"].config.stage_layers) == 5 and v["sdtp:recent"].scorer_id == "recent"
    with pytest.raises(ValueError, match="variant"):
        L.resolve_scorers(deep, ["sdtp-high:norm"])
    with pytest.raises(ValueError, match="share a predictions folder"):  # 'sdtp:norm' is stored as sdtp_norm/
        L.resolve_scorers(deep, {"sdtp:norm": "norm", "sdtp_norm": "recent"})
    with pytest.raises(ValueError, match="scorer name"):
        L.resolve_scorers(deep, {"a/b": None})


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["run", "--model", "tiny-qwen2", "--data", str(FIXTURE), "--out", str(out), "--tasks", "trec",
            "--scorers", "dense", "sdtp:norm", "--limit", "1", "--max-length", "300", "--device", "cpu"]
    assert L.main(args) == 0
    assert "| few-shot | trec | 1 |" in capsys.readouterr().out
    assert len(_rows(out / "sdtp_norm" / "trec.jsonl")) == 1 and not (out / "sdtp:norm").exists()
    assert L.main(["score", "--out", str(out)]) == 0
    assert "average over tasks" in capsys.readouterr().out and (out / "results.md").exists()
