"""The notebook pipeline end to end on tiny profiles: a complete run, a failing run, resume, and bad requests."""
import json
import shutil

import pytest
import yaml

from sdtp_lib.workspace import pipeline as NP
from sdtp_lib.cli import main


def write_profile(tmp_path, notebooks, notebook_parameters, name="t"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"description": "test", "notebooks": notebooks,
                                    "parameters": {"model": "tiny-qwen2", "device": "cpu", "seed": 0},
                                    "notebook_parameters": notebook_parameters}))
    return str(path)


def only_run(runs):
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run, json.loads((run / "run.json").read_text())


def test_tiny_profile_complete_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["pipeline", "--profile", "tiny", "--runs-dir", str(runs)]) == 0
    run, rec = only_run(runs)
    assert run.name.endswith("-tiny") and f"run folder: {run}" in capsys.readouterr().out
    assert rec["status"] == "ok" and rec["profile"] == "tiny" and rec["ended"] >= rec["started"]
    assert rec["git_commit"] and rec["versions"]["papermill"] and rec["device"].startswith("cpu")
    names = [s["name"] for s in rec["notebooks"]]
    assert names == ["00_explore", "01_saliency", "02_training", "03_profiling", "04_longbench", "05_lmeval",
                     "06_synthetic", "07_ablations", "08_figures"]
    for s in rec["notebooks"]:
        assert s["status"] == "ok" and s["duration_s"] > 0 and s["error"] is None
        assert s["parameters"]["run_dir"] == str(run / s["name"]) and s["parameters"]["model"] == "tiny-qwen2"
        executed = json.loads((run / f"{s['name']}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["run_dir"] == str(run / s["name"])
    assert (run / "00_explore" / "compare.json").exists() and (run / "00_explore" / "explore_0.html").exists()
    sal = run / "01_saliency" / "saliency.safetensors"
    assert (run / "02_training" / "saliency" / "saliency.safetensors").read_bytes() == sal.read_bytes()  # reused
    assert (run / "02_training" / "seed0" / "predictor.safetensors").exists()
    assert len(list((run / "03_profiling").glob("latency_*.json"))) == 1
    # the evaluations: results with every scorer the profile asked for, and their figures
    lb = json.loads((run / "04_longbench" / "results.json").read_text())
    assert list(lb["scorers"]) == ["dense", "sdtp:norm", "sdtp:attention"] and lb["tasks"] == ["hotpotqa", "trec"]
    assert all(s["n_samples"] == 2 and not s["partial"] for s in lb["scorers"].values())
    assert lb["scorers"]["sdtp:norm"]["mean_compression"] > 1.05 and lb["config"]["max_length"] == 300
    assert (run / "04_longbench" / "longbench.png").stat().st_size > 10_000
    lm = json.loads((run / "05_lmeval" / "results.json").read_text())
    assert list(lm["scorers"]) == ["dense", "sdtp:norm", "sdtp-low:random"]
    assert all(set(r["accuracy"]) == {"sdtp_copa"} and r["n_samples"]["sdtp_copa"] == 2 for r in lm["scorers"].values())
    assert lm["scorers"]["dense"]["sdtp"] is None and lm["scorers"]["sdtp-low:random"]["sdtp"]["stages"] == 5
    assert lm["scorers"]["sdtp:norm"]["sdtp"]["scorer"] == "norm policy"
    assert (run / "05_lmeval" / "sdtp-low_random" / "results.json").exists()
    assert (run / "05_lmeval" / "lmeval.png").stat().st_size > 10_000
    syn = json.loads((run / "06_synthetic" / "results.json").read_text())
    specs = ("dense", "sdtp:norm", "sdtp:oracle", "dense+H0.4", "sdtp+H0.4:norm")  # +H0.4: H2O in decoding
    assert {(s["scorer"], s["length"]) for s in syn["summary"]} == {(s, n) for s in specs for n in (256, 512)}
    for png in ("accuracy_vs_length", "accuracy_vs_length_by_layout", "heatmap_dense", "heatmap_sdtp_norm"):
        assert (run / "06_synthetic" / f"{png}.png").stat().st_size > 10_000
    abl = run / "07_ablations"  # every ablation, 01's saliency reused, the start layer's extra layers computed
    assert (abl / "saliency" / "saliency.safetensors").read_bytes() == sal.read_bytes()
    for name in ("losses", "stages", "keep_ratio", "start_layer"):
        res = json.loads((abl / name / "results.json").read_text())
        assert res["ablation"] == name and res["rows"][0]["scorer"] == "dense" and len(res["rows"]) > 2
        assert all(r["n_synthetic"] == 1 and r["heldout_loss"] is not None for r in res["rows"])
        assert (abl / name / f"{name}.png").stat().st_size > 5_000
    assert (abl / "predictors" / "full_L2" / "seed0" / "predictor.safetensors").exists()
    # 08: the paper's figures from this run's files, the ablations (07) included
    fig = run / "08_figures"
    for png in ("saliency_sparsity", "latency_run", "longbench", "lmeval", "frontier", "h2o"):
        assert (fig / f"{png}.png").stat().st_size > 10_000, png
    summary = (fig / "final_summary.md").read_text()
    assert f"`{run}`" in summary and "## Verdict" in summary and "42.34" in summary  # the paper's LongBench original
    assert "07_ablations/losses/results.json not found" not in summary
    for png in ("losses", "stages", "keep_ratio", "start_layer"):
        assert (fig / f"{png}.png").stat().st_size > 10_000, png
    # the sparsity figure's numbers stay with 08: the run, committed without its saliency files, draws it again
    from sdtp_lib.training import saliency as SA
    from sdtp_lib.workspace.sources import load_sources
    stats = json.loads((fig / "saliency_stats.json").read_text())
    assert stats == json.loads(json.dumps(SA.saliency_stats(SA.SaliencyStore.load(sal))))
    slim = tmp_path / "slim"
    shutil.copytree(run, slim, ignore=shutil.ignore_patterns("*.safetensors"))
    src = load_sources(slim)
    assert src.path("saliency") == slim / "08_figures" / "saliency_stats.json" and src.get("saliency") == stats
    (slim / "08_figures" / "saliency_stats.json").unlink()  # before any 08: what 07 kept of the same file
    src = load_sources(slim)
    assert src.path("saliency") == slim / "07_ablations" / "saliency_stats.json" and src.get("saliency") == stats
    log = (run / "pipeline.log").read_text()
    assert "[9/9] 08_figures done" in log and "run complete" in log


def test_failing_notebook_stops_the_run_then_resume_skips_finished(tmp_path, capsys):
    runs = tmp_path / "runs"
    # 02 reuses a saliency file that is not there yet: it fails; the user puts it there and resumes
    prof = write_profile(tmp_path, ["01_saliency", "02_training", "03_profiling"], {
        "01_saliency": {"n_samples": 6, "seq_len": 200},
        "02_training": {"n_samples": 6, "seq_len": 200, "epochs": 1, "saliency": "{run}/later"},
        "03_profiling": {"lengths": [64], "new_tokens": 2, "repeats": 1}})
    assert main(["pipeline", "--profile", prof, "--runs-dir", str(runs)]) == 1
    err = capsys.readouterr().err
    run, rec = only_run(runs)
    assert "notebook 02_training failed in cell" in err and "FileNotFoundError" in err and "later" in err
    assert f"--resume {run}" in err and "Traceback" not in err
    assert [s["status"] for s in rec["notebooks"]] == ["ok", "failed", "pending"] and rec["status"] == "failed"
    assert "FileNotFoundError" in rec["notebooks"][1]["error"]
    assert (run / "01_saliency" / "saliency.safetensors").exists() and (run / "02_training.ipynb").exists()
    assert not (run / "03_profiling.ipynb").exists()

    first = (run / "01_saliency.ipynb").read_bytes()
    shutil.copytree(run / "01_saliency", run / "later")
    assert main(["pipeline", "--resume", str(run)]) == 0
    rec2 = json.loads((run / "run.json").read_text())
    assert [s["status"] for s in rec2["notebooks"]] == ["ok", "ok", "ok"] and rec2["status"] == "ok"
    assert rec2["notebooks"][0] == rec["notebooks"][0]  # not re-run: same record ...
    assert (run / "01_saliency.ipynb").read_bytes() == first  # ... and the same executed notebook
    assert len(rec2["resumed"]) == 1 and (run / "02_training" / "seed0" / "predictor.safetensors").exists()
    assert main(["pipeline", "--resume", str(run)]) == 0  # nothing left to do


def test_a_moved_run_folder_resumes_where_it_is(tmp_path, capsys):
    """A run copied elsewhere (another machine, a committed results folder) resumes into its new place: the
    parameters planned inside the old folder ("{run}/...", each run_dir) are pointed at the new one, and recorded."""
    runs = tmp_path / "runs"
    prof = write_profile(tmp_path, ["01_saliency", "02_training"], {
        "01_saliency": {"n_samples": 6, "seq_len": 200},
        "02_training": {"n_samples": 6, "seq_len": 200, "epochs": 1, "saliency": "{run}/later"}})
    assert main(["pipeline", "--profile", prof, "--runs-dir", str(runs)]) == 1  # 02 fails: no {run}/later yet
    capsys.readouterr()
    old, _ = only_run(runs)
    new = tmp_path / "elsewhere" / old.name
    shutil.copytree(old, new)
    shutil.copytree(new / "01_saliency", new / "later")
    assert main(["pipeline", "--resume", str(new)]) == 0
    rec = json.loads((new / "run.json").read_text())
    assert [s["status"] for s in rec["notebooks"]] == ["ok", "ok"]
    assert rec["moved"][0]["from"] == str(old) and rec["moved"][0]["to"] == str(new.resolve())
    params = rec["notebooks"][1]["parameters"]
    assert params["run_dir"] == str(new.resolve() / "02_training")
    assert params["saliency"] == str(new.resolve() / "later")
    assert (new / "02_training" / "seed0" / "predictor.safetensors").exists()
    assert not (old / "02_training" / "seed0").exists()  # nothing written into the old place


def test_resume_refuses_other_commit_or_profile(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rec = {"profile": "tiny", "git_commit": "0" * 40, "status": "failed",
           "notebooks": [{"name": "01_saliency", "parameters": {}, "status": "ok"}]}
    (run / "run.json").write_text(json.dumps(rec))
    with pytest.raises(NP.PipelineError, match="commit 0000000000"):
        NP.resume_pipeline(run)
    with pytest.raises(NP.PipelineError, match="profile 'tiny', not 'default'"):
        NP.resume_pipeline(run, profile="default", force=False)
    assert NP.resume_pipeline(run, force=True) == run.resolve()  # forced: everything already ok
    with pytest.raises(NP.PipelineError, match="no run.json"):
        NP.resume_pipeline(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["-p", "n_sampels=3"], "'n_sampels' is declared by none"),
    (["-p", "n_samples"], "expected NAME=VALUE"),
    (["--only", "09"], "'09' matches no notebook"),
    (["--only", "01", "--skip", "01"], "no notebook left"),
    (["--profile", "nope"], "profile 'nope' not found"),
    (["--profile", "qwen2-7b"], "needs the environment variable SDTP_QWEN2_7B"),
])
def test_bad_requests_fail_before_running(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("SDTP_QWEN2_7B", raising=False)
    runs = tmp_path / "runs"
    args = args if "--profile" in args else ["--profile", "tiny", *args]
    assert main(["pipeline", "--runs-dir", str(runs), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())  # no run folder left behind


def test_plan_merges_parameters_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_MODEL", "tiny-llama")
    prof = NP.load_profile(write_profile(tmp_path, ["01_saliency", "03_profiling"],
                                         {"01_saliency": {"n_samples": 5, "data": "{run}/d.jsonl"}}))
    prof.parameters["model"] = "${MY_MODEL}"
    steps = NP.plan(prof, {"seed": 3, "lengths": [64]}, tmp_path / "R")
    p1, p3 = steps[0].parameters, steps[1].parameters
    assert p1 == {"model": "tiny-llama", "device": "cpu", "seed": 3, "n_samples": 5,
                  "data": f"{tmp_path / 'R'}/d.jsonl", "run_dir": str(tmp_path / "R" / "01_saliency")}
    assert p3["lengths"] == [64] and "lengths" not in p1 and "data" not in p3  # only to notebooks declaring them
    with pytest.raises(NP.PipelineError, match="does not declare \\['lenghts'\\]"):
        NP.plan(NP.load_profile(write_profile(tmp_path, ["03_profiling"], {"03_profiling": {"lenghts": [1]}})),
                {}, tmp_path / "R")


def test_parse_override_values():
    assert NP.parse_override("n_samples=100") == ("n_samples", 100)
    assert NP.parse_override("lengths=[256, 512]") == ("lengths", [256, 512])
    assert NP.parse_override("data=None") == ("data", None) and NP.parse_override("data=null") == ("data", None)
    assert NP.parse_override("model=/m/Qwen2-7B") == ("model", "/m/Qwen2-7B")


def test_every_profile_plans(tmp_path, monkeypatch):
    """Every shipped profile names notebooks that exist and parameters they declare, with valid scorers; a profile
    name may hold dots (qwen2.5-0.5b)."""
    from sdtp_lib.eval.scorers import parse_scorer
    for var in ("SDTP_QWEN2_7B", "SDTP_LONGBENCH", "SDTP_LMEVAL_DATA"):
        monkeypatch.setenv(var, f"/x/{var}")
    assert {"default", "qwen2-7b", "qwen2.5-0.5b", "qwen2.5-1.5b", "tiny"} <= set(NP.available_profiles())
    for name in NP.available_profiles():
        prof = NP.load_profile(name)
        steps = NP.plan(prof, {}, tmp_path / name)
        assert prof.name == name and [s.name for s in steps] == prof.notebooks
        for s in steps:
            for spec in s.parameters.get("scorers") or []:
                parse_scorer(spec)
    assert NP.profile_name("profiles/qwen2.5-0.5b.yaml") == NP.profile_name("qwen2.5-0.5b") == "qwen2.5-0.5b"
    assert NP.load_profile(str(NP.PROFILES_DIR / "qwen2.5-0.5b.yaml")).name == "qwen2.5-0.5b"
    # qwen2-7b: the evaluations score with this run's trained predictor, LongBench on the official data
    p = {s.name: s.parameters for s in NP.plan(NP.load_profile("qwen2-7b"), {}, tmp_path / "R")}
    assert p["04_longbench"]["data"] == "/x/SDTP_LONGBENCH" and p["05_lmeval"]["data"] == "/x/SDTP_LMEVAL_DATA"
    assert f"sdtp:{tmp_path / 'R'}" in p["06_synthetic"]["scorers"]
    monkeypatch.delenv("SDTP_LONGBENCH")
    with pytest.raises(NP.PipelineError, match="needs the environment variable SDTP_LONGBENCH"):
        NP.plan(NP.load_profile("qwen2-7b"), {}, tmp_path / "R", only=["04"])


def test_sigterm_stops_a_sitting_keeping_its_time_and_resume_goes_on(tmp_path):
    """A time-limited sitting (`timeout` sends SIGTERM) records the notebook as stopped with the time it ran; the
    next sitting re-runs it, counts both sittings and adds their times."""
    import os
    import signal
    import subprocess
    import sys
    import time
    runs = tmp_path / "runs"
    prof = write_profile(tmp_path, ["03_profiling"], {"03_profiling": {"lengths": [64], "new_tokens": 2,
                                                                         "repeats": 300}})
    env = {**os.environ, "PYTHONPATH": str(NP.ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sdtp_lib", "pipeline", "--profile", prof, "--runs-dir",
                             str(runs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the notebook runs, then let it run a while
            recs = list(runs.glob("*/run.json")) if runs.is_dir() else []
            if recs and json.loads(recs[0].read_text())["notebooks"][0]["status"] == "running":
                break
            time.sleep(0.2)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    run, rec = only_run(runs)
    (step,) = rec["notebooks"]
    assert proc.returncode == 1 and "stopped by SIGTERM during 03_profiling" in out and f"--resume {run}" in out
    assert rec["status"] == "stopped" and step["status"] == "stopped" and step["sittings"] == 1
    assert 2.5 < step["duration_s"] < 120
    assert main(["pipeline", "--resume", str(run)]) == 0
    (step2,) = json.loads((run / "run.json").read_text())["notebooks"]
    assert step2["status"] == "ok" and step2["sittings"] == 2 and step2["duration_s"] > step["duration_s"]


def test_slim_run_keeps_results_gzips_raw_files_drops_weights_and_links_the_summary(tmp_path):
    import gzip
    import os
    import subprocess
    run = tmp_path / "runs" / "r"
    for rel, text in {"run.json": "{}", "06_synthetic/predictions.jsonl": '{"a": 1}\n', "06_synthetic/results.md": "# r",
                      "07_ablations/predictors/full_L3/seed0/predictor.safetensors": "w",
                      "07_ablations/predictors/full_L3/seed0/train_state.pt": "s",
                      "07_ablations/predictors/full_L3/seed0/train_log.csv": "step,loss\n",
                      "07_ablations/saliency/saliency.safetensors": "x", "00_explore.ipynb": "{}",
                      "08_figures/final_summary.md": f"![frontier](frontier.png) and [a](../x.md)\n"
                                                     f"folder: `{run}`; source `{run}/run.json`\n",
                      "08_figures/frontier.png": "png"}.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    dest, summary = tmp_path / "reports" / "results" / "d", tmp_path / "reports" / "final_summary.md"
    cmd = ["bash", str(NP.ROOT / "scripts" / "slim_run.sh"), str(run), str(dest)]
    env = {**os.environ, "SUMMARY": str(summary)}
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    files = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert files == {"run.json", "06_synthetic/predictions.jsonl.gz", "06_synthetic/results.md", "00_explore.ipynb.gz",
                     "07_ablations/predictors/full_L3/seed0/train_log.csv", "08_figures/final_summary.md",
                     "08_figures/frontier.png"}
    assert gzip.open(dest / "06_synthetic" / "predictions.jsonl.gz", "rt").read() == '{"a": 1}\n'
    assert summary.read_text() == ("![frontier](results/d/08_figures/frontier.png) and [a](../x.md)\n"
                                   f"folder: `{dest}`; source `{dest}/run.json`\n")  # the run's paths: its new place
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "exists: nothing is overwritten" in again.stderr
    assert not list((tmp_path / "reports" / "results").glob(".slim*"))  # no half-written folder left


def test_a_results_folder_restores_into_a_run_that_resumes_and_slims_again(tmp_path):
    """slim_run.sh's folder (committed) -> restore_run.sh -> pipeline --resume finishes the stopped notebook in the
    new place -> slim_run.sh again: the round trip a run takes between GPU loans."""
    import subprocess
    runs = tmp_path / "runs"
    prof = write_profile(tmp_path, ["03_profiling"], {"03_profiling": {"lengths": [64], "new_tokens": 2, "repeats": 1}},
                         name="p")
    assert main(["pipeline", "--profile", prof, "--runs-dir", str(runs)]) == 0
    run, rec = only_run(runs)
    rec["notebooks"][0]["status"], rec["status"] = "stopped", "stopped"  # as a sitting cut at its time limit
    (run / "run.json").write_text(json.dumps(rec))
    script = lambda name, *a: subprocess.run(["bash", str(NP.ROOT / "scripts" / name), *map(str, a)],  # noqa: E731
                                             capture_output=True, text=True)
    assert script("slim_run.sh", run, tmp_path / "results" / "r").returncode == 0
    assert (tmp_path / "results" / "r" / "03_profiling.ipynb.gz").exists()
    shutil.rmtree(runs)  # another machine: only the committed folder is there
    got = script("restore_run.sh", tmp_path / "results" / "r", tmp_path / "gpu")
    new = tmp_path / "gpu" / run.name
    assert got.returncode == 0 and got.stdout.strip() == str(new)
    assert (new / "03_profiling.ipynb").exists() and (new / "pipeline.log").exists()
    assert not list(new.rglob("*.ipynb.gz")) and not list(new.rglob("*.log.gz"))
    assert main(["pipeline", "--resume", str(new)]) == 0
    rec2 = json.loads((new / "run.json").read_text())
    assert rec2["status"] == "ok" and rec2["moved"][0]["from"] == str(run)
    assert rec2["notebooks"][0]["parameters"]["run_dir"] == str(new.resolve() / "03_profiling")
    assert len(list((new / "03_profiling").glob("latency_*.json"))) >= 1 and not runs.exists()
    assert script("slim_run.sh", new, tmp_path / "results" / "r2").returncode == 0
    again = script("restore_run.sh", tmp_path / "results" / "r", tmp_path / "gpu")
    assert again.returncode == 1 and "exists: nothing is overwritten" in again.stderr
    assert not list((tmp_path / "gpu").glob(".restore*"))


def test_slim_run_copies_the_headline_into_the_readme(tmp_path):
    import os
    import subprocess
    import sys
    from sdtp_lib.workspace.report import README_BEGIN, README_END
    run = tmp_path / "run"
    (run / "08_figures").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    table = "| claim | the paper | ours | verdict |\n|---|---|---|---|\n| Speed | 2x | 1.9x | **reproduces** |\n"
    (run / "08_figures" / "final_summary.md").write_text(f"# S\n\n## Headline\n\nIntro:\n\n{table}\n## Run\n\n| a |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"# P\n\n{README_BEGIN}\n| old |\n{README_END}\n\nmore\n")
    cmd = ["bash", str(NP.ROOT / "scripts" / "slim_run.sh"), str(run), str(tmp_path / "d")]
    env = {**os.environ, "SUMMARY": str(tmp_path / "s.md"), "README": str(readme), "PYTHON": sys.executable}
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert readme.read_text() == f"# P\n\n{README_BEGIN}\n{table}{README_END}\n\nmore\n"
    readme.write_text("# P without a block\n")  # refused before anything is written
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "d2")], env={**env, "SUMMARY": str(tmp_path / "s2.md")},
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "has no headline block" in bad.stderr and not (tmp_path / "d2").exists()


def test_carry_fits_counts_the_tree_with_each_folder(tmp_path):
    """`carry.sh fits` adds the repository's tree (what every device call sends) to each folder's size."""
    import os
    import subprocess
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=NP.ROOT,
                             capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum((NP.ROOT / f).stat().st_size for f in tracked if f and (NP.ROOT / f).is_file())
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "p.bin").write_bytes(b"x" * 1_000_000)
    folder = int(subprocess.run(["du", "-sb", str(tmp_path / "part")], capture_output=True, text=True,
                                check=True).stdout.split()[0])
    def fits(limit):
        return subprocess.run(["bash", str(NP.ROOT / "scripts" / "carry.sh"), "fits", str(tmp_path / "part")],
                              env={**os.environ, "LIMIT": str(limit)}, capture_output=True, text=True)
    ok, over = fits(tree + folder), fits(tree + folder - 1)
    assert ok.returncode == 0 and f"({tree} bytes)" in ok.stdout
    assert over.returncode == 1 and f"{tree + folder} bytes with the tree" in over.stderr


def test_resume_redo_reruns_a_finished_notebook_and_nothing_else(tmp_path):
    runs = tmp_path / "runs"
    prof = write_profile(tmp_path, ["03_profiling"], {"03_profiling": {"lengths": [64], "new_tokens": 2, "repeats": 1}},
                         name="p")
    assert main(["pipeline", "--profile", prof, "--runs-dir", str(runs)]) == 0
    run, rec = only_run(runs)
    assert NP.resume_pipeline(run) == run.resolve()  # finished: nothing runs
    assert json.loads((run / "run.json").read_text()).get("resumed") is None
    (run / "03_profiling.ipynb").write_text("stale")  # what the redo must replace
    with pytest.raises(NP.PipelineError, match="'09' matches no notebook"):
        NP.resume_pipeline(run, redo=["09"])
    assert main(["pipeline", "--resume", str(run), "--redo", "03"]) == 0
    rec2 = json.loads((run / "run.json").read_text())
    step = rec2["notebooks"][0]
    assert step["status"] == "ok" and step["sittings"] == 1 and rec2["resumed"][-1]["redo"] == ["03_profiling"]
    assert json.loads((run / "03_profiling.ipynb").read_text())["cells"]  # executed again
    assert main(["pipeline", "--profile", prof, "--redo", "03"]) == 1  # --redo needs --resume
