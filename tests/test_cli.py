"""The command line (`python -m sdtp_lib generate`), on the tiny random model: fast, no download."""
import json

from sdtp_lib.cli import main
from sdtp_lib.models import tiny_config

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
    assert lab_argv(["--ServerApp.root_dir", "/x"])[4:] == ["--ServerApp.root_dir", "/x"]  # the user's root wins


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
