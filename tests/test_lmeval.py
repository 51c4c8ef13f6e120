"""lm-eval integration (sdtp_lib.eval.lmeval): the registered `sdtp` model, the offline paper tasks, run_lmeval, CLI.

Tiny models on the CPU. Torch runs single-threaded inside these tests: for hidden-size-64 models thread
start-up dominates (a 750-token forward takes 17 ms on one thread and 0.8 s on two busy cores).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

import sdtp_lib as S  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from sdtp_lib.eval import lmeval as L  # noqa: E402
from sdtp_lib.io import read_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "data" / "lmeval_fixture"
TASKS = ("sdtp_copa", "sdtp_boolq")
SCHEMA = {  # the HF data sets' field names
    "copa": {"premise", "choice1", "choice2", "question", "idx", "label"},
    "piqa": {"goal", "sol1", "sol2", "label"},
    "winogrande": {"sentence", "option1", "option2", "answer"},
    "mathqa": {"Problem", "Rationale", "options", "correct", "annotated_formula", "linear_formula", "category"},
    "boolq": {"question", "passage", "idx", "label"},
    "cb": {"premise", "hypothesis", "idx", "label"},
    "wic": {"word", "sentence1", "sentence2", "start1", "start2", "end1", "end2", "idx", "label"},
    "wsc": {"text", "span1_index", "span2_index", "span1_text", "span2_text", "idx", "label"},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    return S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")


def lm(tiny, **kw):
    model, tok = tiny
    return L.SDTPLM(pretrained=model, tokenizer=tok, **kw)


def requests(pairs):
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]


def long_pairs():
    """Contexts of 120+ byte tokens (the tiny tokenizer is byte-level) and continuations long enough to reach
    outside the always-kept last 10%: only protection keeps them."""
    ctx = ("The lighthouse keeper walked along the harbour wall every evening, counting the boats that came back "
           "before dark, and wrote their names in a small blue notebook.")
    return [(ctx, " The last boat was called the Morning Star and it came back at nine."),
            (ctx + " He always waited", " for the last one."),
            (ctx + " He always waited", " for the last one before locking the door."),
            (ctx[:110], " X")]


# ------------------------------------------------------------------------------------------------ data
def test_fixture_schema_and_size():
    from lm_eval.tasks.mathqa.utils import doc_to_choice as mathqa_choices
    total = 0
    for task, fields in SCHEMA.items():
        for split in ("train", "validation"):
            path = FIXTURE / task / f"{split}.jsonl"
            total += path.stat().st_size
            docs = [json.loads(line) for line in path.read_text().splitlines()]
            assert len(docs) == 8 and all(set(d) == fields for d in docs), (task, split)
            for d in docs:
                if task == "wic":
                    assert d["sentence1"][d["start1"]:d["end1"]] and d["word"] in d["sentence1"][d["start1"]:d["end1"]]
                    assert d["word"] in d["sentence2"][d["start2"]:d["end2"]]
                if task == "wsc":
                    words = d["text"].split()
                    assert words[d["span2_index"]].startswith(d["span2_text"])
                    assert " ".join(words[d["span1_index"]:]).startswith(d["span1_text"])
                if task == "mathqa":
                    assert len(mathqa_choices(d)) == 5 and d["correct"] in "abcde"
                if task == "winogrande":
                    assert d["sentence"].count("_") == 1 and d["answer"] in ("1", "2")
                if "label" in d:
                    assert d["label"] in ((0, 1, 2) if task == "cb" else (0, 1))
    assert total < 100_000
    assert "own" in (FIXTURE / "README.md").read_text()


def test_tasks_load_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data_files are relative: resolved against the data folder, not the cwd
    loaded = L.task_manager().load([L.GROUP])
    assert set(loaded["tasks"]) == set(L.PAPER_TASKS) and L.GROUP in loaded["groups"]
    for name, task in loaded["tasks"].items():
        assert len(task.validation_docs()) == 8 and len(task.fewshot_docs()) == 8
        assert task.config.num_fewshot == 5 and [m["metric"] for m in task.config.metric_list] == ["acc"]
    copa = loaded["tasks"]["sdtp_copa"]
    doc = copa.validation_docs()[0]
    assert copa.doc_to_text(doc) == "The glass fell off the table therefore"  # the official COPA prompt
    assert copa.doc_to_choice(doc) == [" it shattered on the floor.", " it filled with juice."]
    # $SDTP_LMEVAL_DATA points the tasks elsewhere
    (tmp_path / "alt" / "copa").mkdir(parents=True)
    for split in ("train", "validation"):
        lines = (FIXTURE / "copa" / f"{split}.jsonl").read_text().splitlines()[:3]
        (tmp_path / "alt" / "copa" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv(L.DATA_ENV, str(tmp_path / "alt"))
    assert len(L.task_manager().load(["sdtp_copa"])["tasks"]["sdtp_copa"].validation_docs()) == 3
    monkeypatch.setenv(L.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        L.data_dir()


# ----------------------------------------------------------------------------------------- the model
def test_registered():
    from lm_eval.api.registry import get_model
    assert get_model("sdtp") is L.SDTPLM and issubclass(L.SDTPLM, HFLM)


def test_keep_ratio_one_equals_dense_hflm(tiny):
    model, tok = tiny
    reqs = requests([("The quick brown fox", " jumps"), ("The quick brown fox", " sleeps all day"),
                     ("Hello world, this is a test of", " the system"), *long_pairs()])
    dense = HFLM(pretrained=model, tokenizer=tok, batch_size=1).loglikelihood(reqs)
    for bs in (1, 3):  # 3: padded batches, every row run alone at its own length
        sdtp = lm(tiny, keep_ratio=1.0, predictor="norm", batch_size=bs)
        assert sdtp.loglikelihood(reqs) == dense
        assert sdtp.sdtp_info()["prefills"] > 0


def test_pruned_continuations_are_scored_with_real_logits(tiny):
    model, tok = tiny
    pairs = long_pairs()
    reqs = requests(pairs)
    dense = HFLM(pretrained=model, tokenizer=tok, batch_size=1).loglikelihood(reqs)
    sdtp = lm(tiny, keep_ratio=0.9, predictor="norm", batch_size=1)
    got = sdtp.loglikelihood(reqs)
    assert all(torch.isfinite(torch.tensor(ll)) for ll, _ in got)
    assert all(g[0] != d[0] for g, d in zip(got, dense))
    assert lm(tiny, keep_ratio=0.9, predictor="norm", batch_size=4).loglikelihood(reqs) == got
    info = sdtp.sdtp_info()
    assert info["compression"] > 1.05 and info["stage_layers"] == list(S.SDTPConfig.for_model(model).stage_layers)

    config = S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10)
    pruned_some = False
    for (ctx, cont), (ll, _) in zip(pairs, got):
        c, k = tok(ctx)["input_ids"], tok(cont)["input_ids"]
        full = torch.tensor([c + k])
        inp = full[:, :-1]  # lm-eval's input: the last continuation token is never an input
        T = inp.shape[1]
        assert T > 100
        protect = torch.zeros(T, dtype=torch.bool)
        protect[T - len(k):] = True  # the last context token .. the continuation's second-to-last
        with torch.no_grad(), S.pruning(model, "norm", config) as st:
            logits = model(inp, sdtp_protect=protect).logits
        pos = st.kept_positions[0]
        assert set(protect.nonzero().flatten().tolist()) <= set(pos.tolist())
        full_logits = torch.zeros(1, T, logits.shape[-1])
        full_logits[0, pos] = logits[0]
        logp = torch.log_softmax(full_logits[:, T - len(k):], dim=-1)
        direct = float(torch.gather(logp, 2, torch.tensor([k]).unsqueeze(-1)).squeeze(-1).sum())
        assert ll == pytest.approx(direct, abs=1e-5, rel=1e-6)
        with torch.no_grad(), S.pruning(model, "norm", config) as st2:  # without protection some would go
            model(inp)
        pruned_some |= not set(protect.nonzero().flatten().tolist()) <= set(st2.kept_positions[0].tolist())
    assert pruned_some


def test_generate_pruned_prefill(tiny):
    model, tok = tiny
    gen = [Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": 6}), i)
           for i, p in enumerate([long_pairs()[0][0], "Hi there"])]
    dense = HFLM(pretrained=model, tokenizer=tok, batch_size=2).generate_until(gen)
    assert lm(tiny, keep_ratio=1.0, predictor="norm", batch_size=2).generate_until(gen) == dense
    one = lm(tiny, keep_ratio=0.5, predictor="norm", batch_size=1)
    out1 = one.generate_until(gen)
    assert lm(tiny, keep_ratio=0.5, predictor="norm", batch_size=2).generate_until(gen) == out1
    assert one.sdtp_info()["prefills"] == 2 and one.sdtp_info()["compression"] > 1.2


def test_refusals(tiny):
    with pytest.raises(ValueError, match="auto"):
        lm(tiny, batch_size="auto")
    sdtp = lm(tiny, predictor="norm")
    with pytest.raises(S.PruningError, match="matches no recorded request"):
        sdtp._model_call(torch.tensor([[5, 6, 7]]))  # not built by _loglikelihood_tokens


# ------------------------------------------------------------------------------------------------- runs
def test_run_lmeval_two_tasks(tiny, tmp_path):
    out = tmp_path / "suite"
    by = L.run_lmeval_suite(tiny, TASKS, out, predictor="norm", limit=4, num_fewshot=5, device="cpu")
    assert list(by) == ["dense", "sdtp", "sdtp-low"]
    for name, res in by.items():
        saved = json.loads((out / name / "results.json").read_text())
        assert saved["accuracy"] == res["accuracy"] and set(res["accuracy"]) == set(TASKS)
        assert all(0.0 <= a <= 1.0 for a in res["accuracy"].values())
        assert res["lm_eval"]["n-shot"] == {t: 5 for t in TASKS} and res["n_samples"] == {t: 4 for t in TASKS}
        assert saved["provenance"]["lm_eval"] == lm_eval.__version__ and "git_commit" in saved["provenance"]
        assert saved["lm_eval"]["config"]["model_args"]["pretrained"] == "tiny-qwen2"
        assert sorted(p.name for p in (out / name / "samples").iterdir()) == sorted(f"{t}.jsonl.gz" for t in TASKS)
        for t in TASKS:
            assert saved["samples"][t] == str(out / name / "samples" / f"{t}.jsonl.gz")  # written gzipped
            recs = read_jsonl(out / name / "samples" / f"{t}.jsonl.gz")
            assert len(recs) == 4 and all(len(r["resps"]) == len(r["arguments"]) for r in recs)
    assert by["dense"]["sdtp"] is None and by["dense"]["lm_eval"]["config"]["model"] == "hf"
    assert by["sdtp"]["sdtp"]["prefills"] > 0 and by["sdtp"]["sdtp"]["flops_reduction"] > 0
    table = (out / "results.md").read_text()
    assert "| task | n | dense | sdtp | sdtp-low |" in table and "| copa | 4 |" in table and "| boolq | 4 |" in table
    dense_ll = [r["filtered_resps"] for r in read_jsonl(out / "dense/samples/sdtp_boolq.jsonl")]
    sdtp_ll = [r["filtered_resps"] for r in read_jsonl(out / "sdtp/samples/sdtp_boolq.jsonl")]
    assert dense_ll != sdtp_ll  # the 5-shot boolq prompts (> 1000 tokens) are pruned


def test_compress_samples_of_a_command_line_run(tmp_path):
    """lm-eval's --log_samples files (samples_<task>_<date>.jsonl) are gzipped once the run is done; its results
    files are left alone, and a second call finds nothing to do."""
    run = tmp_path / "out" / "model"
    run.mkdir(parents=True)
    recs = {t: [{"doc_id": i, "resps": [[["-1.5", False]]]} for i in range(3)] for t in TASKS}
    for t in TASKS:
        (run / f"samples_{t}_2026-11-30T14-21-50.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[t]))
    (run / "results_2026-11-30T14-21-50.json").write_text("{}")
    gz = L.compress_samples(tmp_path / "out")
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [f"samples_{t}_2026-11-30T14-21-50.jsonl.gz" for t in TASKS] + ["results_2026-11-30T14-21-50.json"])
    assert [read_jsonl(p) for p in gz] == [recs[t] for t in sorted(TASKS)]
    assert L.compress_samples(tmp_path / "out") == []


def _start(args, cwd, out):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, *args, "--limit", "4", "--device", "cpu", "--output_path", str(out),
                             "--log_samples"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _check(proc, out, suffix):
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log[-6000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    for t in TASKS:
        assert 0.0 <= results["results"][t]["acc,none"] <= 1.0 and results["n-shot"][t] == 5
        samples = list(out.rglob(f"samples_{t}_*.jsonl*"))
        assert [s.name.endswith(suffix) for s in samples] == [True] and len(read_jsonl(samples[0])) == 4
    assert results["config"]["model"] == "sdtp" and results["config"]["sdtp"]["prefills"] > 0
    return results


def test_command_line(tmp_path):
    """Both forms at once (each spends ~15 s indexing lm-eval's 14k built-in tasks)."""
    model_args = "pretrained=tiny-qwen2,keep_ratio=0.9,predictor=norm"
    # the documented form: registers `sdtp`, then lm-eval's own CLI (--include_path added for the project's tasks)
    wrapped = _start(["-m", "sdtp_lib", "lmeval", "--model", "sdtp", "--model_args", model_args,
                      "--tasks", ",".join(TASKS)], tmp_path, tmp_path / "wrapped")
    # plain `python -m lm_eval`: given task YAML paths, loading them imports sdtp_lib.eval.lmeval (their
    # custom_dataset) before lm-eval builds the model, so `sdtp` is registered in time
    yamls = ",".join(str(L.TASKS_DIR / f"{t}.yaml") for t in TASKS)
    plain = _start(["-m", "lm_eval", "--model", "sdtp", "--model_args", model_args, "--tasks", yamls], tmp_path,
                   tmp_path / "plain")
    # `sdtp lmeval` gzips its samples once lm-eval is done; plain lm-eval leaves them as it writes them
    a, b = _check(wrapped, tmp_path / "wrapped", ".jsonl.gz"), _check(plain, tmp_path / "plain", ".jsonl")
    assert a["results"] == b["results"]  # same tasks, same pruned model, same few-shot seed


def test_suite_takes_the_shared_scorer_syntax(tiny):
    runs = L._suite_runs(None, None, ["dense", "sdtp:norm", "sdtp-low@0.8:random", "sdtp:runs/x"], 0.9, "auto")
    assert runs["dense"]["scorer"] == "dense"
    assert runs["sdtp:norm"] == dict(scorer="sdtp", stages=10, predictor="norm", keep_ratio=0.9, start_layer=None,
                                     local_frac=None)
    assert runs["sdtp-low@0.8:random"] == dict(scorer="sdtp", stages=5, predictor="random", keep_ratio=0.8,
                                               start_layer=None, local_frac=None)
    got = L._suite_runs(tiny[0], None, ["sdtp@1.5x+L2+R0.02:norm"], 0.9, "auto")["sdtp@1.5x+L2+R0.02:norm"]
    conf = S.SDTPConfig.for_compression(tiny[0], 1.5, 10, start_layer=2, local_frac=0.02)  # 1.5x from layer 2
    assert got == dict(scorer="sdtp", stages=10, predictor="norm", keep_ratio=conf.keep_ratio, start_layer=2,
                       local_frac=0.02)
    assert runs["sdtp:runs/x"]["predictor"] == "runs/x"
    assert L._suite_runs(None, None, None, 0.9, "norm")["sdtp-low"] == dict(scorer="sdtp", stages=5, predictor="norm",
                                                                             keep_ratio=0.9)  # the variants default
    with pytest.raises(ValueError, match="not both"):
        L._suite_runs(None, {"dense": None}, ["dense"], 0.9, "auto")
    with pytest.raises(ValueError, match="without repeats"):
        L._suite_runs(None, None, ["dense", "dense"], 0.9, "auto")
    with pytest.raises(ValueError, match="expected 'dense'"):
        L._suite_runs(None, None, ["sdtp"], 0.9, "auto")
    with pytest.raises(ValueError, match="no shipped predictor for model tiny-qwen2"):
        L._suite_runs(tiny[0], None, ["sdtp:predictor"], 0.9, "auto")
    with pytest.raises(ValueError, match="needs each sample's answer"):  # before the model loads
        L._suite_runs(None, None, ["dense", "sdtp:oracle"], 0.9, "auto")


def test_start_layer_model_arg_moves_the_first_stage(tiny):
    """model_args start_layer / local_frac (strings, as lm-eval passes them) place the stages from that layer and
    set the newest fraction always kept."""
    model, tok = tiny
    lm = L.SDTPLM(pretrained=model, tokenizer=tok, predictor="norm", start_layer="2")
    assert lm.sdtp_config == S.SDTPConfig.for_model(model, keep_ratio=0.9, num_stages=10, start_layer=2)
    assert lm.sdtp_info()["stage_layers"][0] == 2
    assert L.SDTPLM(pretrained=model, tokenizer=tok, predictor="norm").sdtp_config == S.SDTPConfig.for_model(model)
    lm = L.SDTPLM(pretrained=model, tokenizer=tok, predictor="norm", local_frac="0.02")  # the newest 2% always kept
    assert lm.sdtp_config == S.SDTPConfig.for_model(model, local_frac=0.02)
