"""The command line (`python -m sdtp_lib <verb>`, the `sdtp` script), on the tiny random model: fast, no download.
Every verb refuses bad input in one line (`error: ...`, exit code 2; the pipeline's own errors: 1)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdtp_lib.cli import main
from sdtp_lib.models import tiny_config

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "longbench_fixture"

PROMPT = "The quick brown fox jumps over the lazy dog. " * 4
BASE = ["generate", "--model", "tiny-qwen2", "--prompt", PROMPT, "--max-new-tokens", "4", "--repeats", "1"]


def test_generate_prints_summary(capsys):
    assert main(BASE) == 0
    out = capsys.readouterr().out
    summary = [line for line in out.splitlines() if "kept per stage" in line]
    assert len(summary) == 1
    assert "compression" in summary[0] and "prefill" in summary[0] and "e2e" in summary[0]


def test_compare_prints_dense_and_speedup(capsys):
    assert main(BASE + ["--compare", "--policy", "recent"]) == 0
    out = capsys.readouterr().out
    assert "--- dense ---" in out and "dense : prefill" in out and "prefill speedup" in out


def test_generate_takes_a_scorer_spec_with_its_variant_and_whole_spans(tmp_path, capsys):
    path = tmp_path / "spec.json"
    assert main(BASE + ["--scorer", "sdtp@0.8+R0.02+W8:attention", "--json", str(path)]) == 0
    data = json.loads(path.read_text())  # the engine refuses a config with spans but no rule: they reached it
    assert (data["config"]["keep_ratio"], data["config"]["local_frac"], data["config"]["span_max"]) == (0.8, 0.02, 8)
    from sdtp_lib.config import SDTPConfig
    T = data["stats"]["prompt_len"]
    assert data["stats"]["kept_per_stage"] == SDTPConfig.from_dict(data["config"]).keep_schedule(T)
    assert "kept per stage" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["--scorer", "dense"], "the dense answer comes with --compare"),
    (["--scorer", "sdtp+H0.4:attention"], "--kv-budget"),
    (["--scorer", "sdtp:attention", "--stages", "5"], "names its own stages"),
    (["--scorer", "sdtp@2:attention"], "sdtp@2:attention"),
    (["--scorer", "sdtp:attention", "--policy", "norm"], "not allowed with argument"),
])
def test_generate_refuses_a_bad_scorer_spec(extra, needle, capsys):
    assert main(BASE + extra) == 2
    assert needle in capsys.readouterr().err


def test_bad_keep_ratio_exits_2(capsys):
    assert main(BASE + ["--keep-ratio", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "keep_ratio" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_unknown_model_exits_2(capsys):
    args = ["generate", "--model", "no-such-model", "--prompt", "hi"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-model" in err


def test_missing_prompt_file_exits_2(tmp_path, capsys):
    args = ["generate", "--model", "tiny-qwen2", "--prompt-file", str(tmp_path / "missing.txt")]
    assert main(args) == 2
    assert "prompt file not found" in capsys.readouterr().err


def test_json_written_and_not_overwritten(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert main(BASE + ["--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert len(data["stats"]["kept_per_layer"]) == tiny_config("qwen2").num_hidden_layers
    assert data["stats"]["prompt_len"] == data["stats"]["kept_per_layer"][0]
    assert data["args"]["keep_ratio"] == 0.9 and data["answers"]["sdtp"] is not None
    assert data["timings"]["sdtp"]["prefill_s"] > 0
    capsys.readouterr()

    before = path.read_text()
    assert main(BASE + ["--json", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert path.read_text() == before
    assert main(BASE + ["--json", str(path), "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind


def test_lab_registers_this_python_as_kernel_and_serves_notebooks(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    from sdtp_lib.cli import lab_argv, register_kernel
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    spec = register_kernel()
    kernel = json.loads((spec / "kernel.json").read_text())
    assert spec == tmp_path / "kernels" / "sdtp" and kernel["display_name"] == "Python (sdtp)"
    assert kernel["argv"][0] == sys.executable
    argv = lab_argv(["--port", "8890"])
    root = Path(argv[4].split("=", 1)[1])
    assert argv[:4] == [sys.executable, "-m", "jupyter", "lab"] and argv[-2:] == ["--port", "8890"]
    assert (root / "00_explore.ipynb").exists()
    assert lab_argv(["--ServerApp.root_dir", str(tmp_path)])[4:] == ["--ServerApp.root_dir", str(tmp_path)]  # theirs
    with pytest.raises(FileNotFoundError, match="no such folder"):  # a root that is not there: before anything starts
        lab_argv(["--ServerApp.root_dir", str(tmp_path / "x")])


def test_synthetic_command_writes_results_and_figures(tmp_path, capsys):
    out = tmp_path / "syn"
    args = ["synthetic", "--model", "tiny-qwen2", "--tasks", "passkey", "--lengths", "256", "--n-samples", "1",
            "--scorers", "dense", "sdtp:norm", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    assert "| passkey | 256 | question_first |" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["n_rows"] == 2 * 2 and res["git_commit"]  # 2 layouts x 2 scorers
    for png in ("heatmap_sdtp_norm", "heatmap_dense", "accuracy_vs_length", "accuracy_vs_length_by_layout"):
        assert (out / f"{png}.png").stat().st_size > 5_000
    assert main(args[:-1] + [str(out)]) == 0  # resumed: nothing left to generate, same results
    assert json.loads((out / "results.json").read_text())["summary"] == res["summary"]


# ------------------------------------------------------------------ bad input, one verb at a time
def one_line_error(err: str, *needles) -> str:
    """stderr is one line `error: ...` that names every needle; no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(n in lines[0] for n in needles), (needles, lines[0])
    return lines[0]


BAD_INPUT = {  # verb: (arguments, exit code, what the message must name); {tmp} is the test's folder
    "generate": (["generate", "--model", "tiny-qwen2", "--prompt", "hi", "--max-new-tokens", "0"], 2,
                 ["--max-new-tokens", ">= 1", "0"]),
    "train": (["train", "--model", "tiny-qwen2", "--baselines", "nosuch", "--out", "{tmp}/train"], 2,
              ["unknown baseline", "nosuch"]),
    "profile": (["profile", "--model", "tiny-qwen2", "--lengths", "0", "--device", "cpu", "--out", "{tmp}/prof"], 2,
                ["lengths", "0 is not a usable prompt length", ">= 1"]),
    "pipeline": (["pipeline", "--profile", "nope", "--runs-dir", "{tmp}/runs"], 1,  # the pipeline's own code
                 ["profile 'nope' not found", "profiles:"]),
    "synthetic": (["synthetic", "--model", "tiny-qwen2", "--tasks", "passkey", "--lengths", "100000", "--n-samples",
                   "1", "--scorers", "dense", "--device", "cpu", "--out", "{tmp}/syn"], 2,
                  ["every requested length", "100000", "max_position_embeddings 4096"]),
    "longbench": (["longbench", "run", "--model", "tiny-qwen2", "--data", "{tmp}/nonexistent", "--out", "{tmp}/lb"], 2,
                  ["LongBench data folder not found", "nonexistent", "<task>.jsonl"]),
    "lmeval": (["lmeval", "--model", "sdtp", "--model_args", "pretrained=tiny-qwen2"], 2,
               ["no --tasks given", "--tasks sdtp_paper"]),
    "models": (["models", "import", "{tmp}/missing"], 2, ["missing/manifest.json not found", "models export"]),
    "report": (["report", "{tmp}/nope"], 2, ["run folder", "nope", "does not exist"]),
    "lab": (["lab", "--no-kernel", "--ServerApp.root_dir={tmp}/missing"], 2,
            ["--ServerApp.root_dir", "missing", "no such folder"]),
}


@pytest.mark.parametrize("verb", list(BAD_INPUT))
def test_every_verb_refuses_bad_input_in_one_line(verb, tmp_path, capsys, monkeypatch):
    import os
    args, code, needles = BAD_INPUT[verb]
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail(f"started {a}"))  # lab must never get that far
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == code
    captured = capsys.readouterr()
    one_line_error(captured.err, *needles)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_every_verb_has_a_bad_input_test():
    from sdtp_lib.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(BAD_INPUT)


def test_profile_refuses_unusable_lengths_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from sdtp_lib.speed import profiling as P
    monkeypatch.setattr(P, "load_profile_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for lengths, named in ((["0"], "0 is not"), (["64", "-5"], "-5 is not"), (["64", "64"], "64 given twice")):
        assert main(["profile", "--model", "tiny-qwen2", "--lengths", *lengths, "--device", "cpu",
                     "--out", str(tmp_path / "prof")]) == 2
        one_line_error(capsys.readouterr().err, "ProfileConfig.lengths", named)
    assert not (tmp_path / "prof").exists()


def test_synthetic_skips_the_lengths_over_the_limit_and_refuses_when_none_is_left(tmp_path, capsys):
    args = ["synthetic", "--model", "tiny-qwen2", "--tasks", "passkey", "--layouts", "question_last", "--n-samples",
            "1", "--scorers", "dense", "--device", "cpu"]
    assert main(args + ["--lengths", "100000", "200000", "--out", str(tmp_path / "none")]) == 2
    one_line_error(capsys.readouterr().err, "every requested length (100000, 200000 tokens)", "max_position_embeddings "
                   "4096", "up to 4096")
    assert not (tmp_path / "none").exists()
    assert main(args + ["--lengths", "256", "100000", "--out", str(tmp_path / "some")]) == 0  # some fit: skip, report
    assert "skipped length 100000: 100000 tokens > the model's 4096 positions" in capsys.readouterr().out


def test_longbench_refuses_a_data_folder_without_the_tasks_before_loading_the_model(tmp_path, capsys, monkeypatch):
    import sdtp_lib.models
    monkeypatch.setattr(sdtp_lib.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    base = ["longbench", "run", "--model", "tiny-qwen2", "--out", str(tmp_path / "out")]
    assert main(base + ["--data", str(tmp_path / "nonexistent")]) == 2
    one_line_error(capsys.readouterr().err, f"LongBench data folder not found: {tmp_path / 'nonexistent'}",
                   "<task>.jsonl")
    (tmp_path / "empty").mkdir()
    assert main(base + ["--data", str(tmp_path / "empty")]) == 2
    one_line_error(capsys.readouterr().err, str(tmp_path / "empty"), "holds no task file", "<task>.jsonl")
    (tmp_path / "some").mkdir()
    shutil.copy(FIXTURE / "trec.jsonl", tmp_path / "some")
    assert main(base + ["--data", str(tmp_path / "some"), "--tasks", "trec", "hotpotqa"]) == 2
    one_line_error(capsys.readouterr().err, "has no hotpotqa.jsonl", "it has trec")
    assert not (tmp_path / "out").exists()


def test_old_entries_still_work_and_refuse_bad_input_in_one_line(tmp_path):
    """`python -m sdtp_lib.eval.longbench` / `.lmeval` (commands in saved run folders) behave as the verbs."""
    for module, args, needle in (
            ("sdtp_lib.eval.longbench", ["run", "--model", "tiny-qwen2", "--data", str(tmp_path / "nonexistent"),
                                         "--out", str(tmp_path / "lb")], "LongBench data folder not found"),
            ("sdtp_lib.eval.lmeval", ["--model", "sdtp"], "no --tasks given")):
        p = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 2, p.stderr
        one_line_error(p.stderr, needle)


# ------------------------------------------------------------------ the evaluations' own command lines
def test_help_lists_the_evaluations_and_reaches_their_own_parsers(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "longbench           LongBench v1" in out and "lmeval              lm-eval-harness" in out
    assert main(["longbench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sdtp longbench") and all(c in out for c in ("run", "merge", "score"))
    assert main(["longbench", "run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog at the terminal's width
    assert all(o in out for o in ("--data", "--max-length", "--warmup", "-m sdtp_lib longbench run"))
    assert main(["lmeval", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sdtp lmeval: lm-eval") and all(o in out for o in ("--model_args", "--num_fewshot",
                                                                              "--tasks", "--output_path"))
    assert main(["longbench", "run", "--model", "x"]) == 2  # argparse's usage error, from LongBench's parser
    assert "sdtp longbench run: error: the following arguments are required: --data, --out" in capsys.readouterr().err


def fabricated_longbench_run(out: Path) -> Path:
    """A finished LongBench results folder (two scorers, two hotpotqa samples) without running a model."""
    from sdtp_lib.eval import longbench as L
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "format": L.FORMAT, "version": L.VERSION, "model": {"id": "fabricated"}, "max_length": 300,
        "scorers": {"dense": {"kind": "dense"}, "sdtp:norm": {"kind": "sdtp", "scorer": "norm"}}}))
    (out / "tasks").mkdir()
    (out / "tasks" / "hotpotqa.json").write_text(json.dumps({"task": "hotpotqa", "ids": ["a", "b"]}))
    for scorer, preds in (("dense", ["Paris", "blue"]), ("sdtp:norm", ["Paris", "red"])):
        path = L.pred_path(out, scorer, "hotpotqa")
        path.parent.mkdir()
        path.write_text("".join(json.dumps({"_id": i, "pred": p, "answers": [a], "all_classes": None, "length": 9,
                                            "prompt_len": 100, "new_tokens": 2, "compression": c, "flops_ratio": 1.0,
                                            "prefill_s": 0.1 * c, "gen_s": 0.5}) + "\n"
                                for i, p, a, c in zip("ab", preds, ["Paris", "blue"], [1.0, 1.5])))
    return out


def test_longbench_score_gives_the_same_output_through_every_entry_point(tmp_path, capsys):
    from sdtp_lib.eval import longbench as L
    run = fabricated_longbench_run(tmp_path / "run")
    assert main(["longbench", "score", "--out", str(run)]) == 0
    new = capsys.readouterr().out
    md = (run / "results.md").read_text()
    assert f"| {L.CATEGORY_OF['hotpotqa']} | hotpotqa | 2 | 100.00 | 50.00 |" in new and new.strip() == md.strip()
    assert L.main(["score", "--out", str(run)]) == 0
    assert capsys.readouterr().out == new and (run / "results.md").read_text() == md
    p = subprocess.run([sys.executable, "-m", "sdtp_lib.eval.longbench", "score", "--out", str(run)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and p.stdout == new, p.stderr
    assert (run / "results.md").read_text() == md
