"""The numbered notebooks: one parameter vocabulary, committed without outputs, and each one runs headlessly with
papermill on the tiny model with just `-p model tiny-qwen2 -p n_samples 4 -p run_dir D`."""
import json
from pathlib import Path

import papermill as pm
import pytest

import sdtp_lib as S
from sdtp_lib.models import tiny_config

NB = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NB.glob("[0-9][0-9]_*.ipynb"))
VOCABULARY = {"model", "run_dir", "n_samples", "device", "seed"}  # + data where a notebook reads a data set


def run(name, tmp_path, **extra):
    out = tmp_path / name
    pm.execute_notebook(str(NB / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
                        parameters={"model": "tiny-qwen2", "n_samples": 4, "run_dir": str(out), **extra},
                        progress_bar=False)
    return out, (tmp_path / f"{name}.ipynb").read_text()


def test_notebooks_share_one_parameter_vocabulary():
    assert NOTEBOOKS == ["00_explore", "01_saliency", "02_training", "03_profiling", "04_longbench", "05_lmeval",
                         "06_synthetic", "07_ablations", "08_figures"]
    for name in NOTEBOOKS:
        params = pm.inspect_notebook(str(NB / f"{name}.ipynb"))
        assert VOCABULARY <= set(params), f"{name} lacks {VOCABULARY - set(params)}"
        assert not {"out_dir", "samples", "out"} & set(params), name
        assert params["device"]["default"] == '"auto"'


def test_notebooks_paired_and_without_outputs():
    for ipynb in NB.glob("*.ipynb"):
        assert ipynb.with_suffix(".py").exists(), f"{ipynb.name} has no jupytext .py pair"
        nb = json.loads(ipynb.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{ipynb.name} has outputs"
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{ipynb.name}: one cell tagged 'parameters'"


def test_00_explore_runs(tmp_path):
    out, text = run("00_explore", tmp_path, max_new_tokens=4, repeats=1)
    cmp = json.loads((out / "compare.json").read_text())
    conf = S.SDTPConfig.for_model(tiny_config("qwen2").num_hidden_layers)  # the notebook's defaults: r 0.9, 10 stages
    assert cmp["dense"]["answer_ids"] and cmp["sdtp"]["prefill_runs_s"] and cmp["compression"] > 1.1
    assert cmp["kept_per_stage"] == conf.keep_schedule(cmp["prompt_len"]) and cmp["prompt_len"] > 1000
    assert cmp["scorer"].startswith("norm policy")  # no shipped predictor for the tiny model: said so
    html = sorted(out.glob("explore_*.html"))
    assert len(html) == 5 and all(p.with_suffix(".png").stat().st_size > 10_000 for p in html)  # prompt + 4 samples
    assert 'sdtp-summary' in text and 'sdtp-tok' in text  # the static view is in the executed notebook's output


def test_00_explore_takes_a_scorer_spec_with_whole_spans(tmp_path):
    spec = "sdtp@0.8+R0.02+W8:attention"
    out, text = run("00_explore", tmp_path, max_new_tokens=4, repeats=1, n_samples=0, spec=spec)
    cmp = json.loads((out / "compare.json").read_text())
    conf = S.SDTPConfig.for_model(tiny_config("qwen2").num_hidden_layers, keep_ratio=0.8, local_frac=0.02, span_max=8)
    assert cmp["kept_per_stage"] == conf.keep_schedule(cmp["prompt_len"]) and "attention" in cmp["scorer"]
    assert len(sorted(out.glob("explore_*.html"))) == 1 and "sdtp-tok" in text


def test_01_and_02_run_02_reusing_01(tmp_path):
    out1, _ = run("01_saliency", tmp_path, seq_len=200)
    out2, _ = run("02_training", tmp_path, seq_len=200, epochs=1, saliency=str(out1))
    assert (out1 / "saliency_sparsity.png").stat().st_size > 10_000
    assert (out2 / "saliency" / "saliency.safetensors").read_bytes() == (out1 / "saliency.safetensors").read_bytes()
    assert (out2 / "seed0" / "predictor.safetensors").exists()
    assert (out2 / "training_curves.png").stat().st_size > 10_000
    assert "predictor-s0" in (out2 / "validation.md").read_text()


def test_02_refuses_saliency_of_other_samples(tmp_path):
    out1, _ = run("01_saliency", tmp_path, seq_len=200)
    with pytest.raises(pm.PapermillExecutionError, match="computed for other samples or settings"):
        run("02_training", tmp_path, seq_len=200, epochs=1, saliency=str(out1), seed=1)


def test_03_profiling_runs(tmp_path):
    out, text = run("03_profiling", tmp_path, lengths=[64, 128], new_tokens=3, repeats=1)
    (path,) = out.glob("latency_*.json")
    d = json.loads(path.read_text())
    assert d["header"]["complete"] and len(d["rows"]) == 2 * 3 * 2
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert "NVIDIA H200 | weights: random" in text  # the committed run, for comparison


def test_evaluation_notebooks_share_the_scorer_vocabulary():
    """04-06 (run in the tiny profile's pipeline test, tests/test_pipeline.py) take one scorer syntax."""
    from sdtp_lib.eval.scorers import parse_scorer
    for name in ("04_longbench", "05_lmeval", "06_synthetic"):
        params = pm.inspect_notebook(str(NB / f"{name}.ipynb"))
        assert {"scorers", "keep_ratio", "dtype"} <= set(params), name
        scorers = eval(params["scorers"]["default"])  # a literal list
        assert scorers[0] == "dense" and all(parse_scorer(s) for s in scorers)
        assert {"sdtp", "sdtp-low"} <= {parse_scorer(s)[0] for s in scorers}, name


def test_08_figures_runs_on_a_run_folder(tmp_path):
    """08 on the committed default-profile run's result files (no saliency file, no ablations): the figures their
    sources allow, the others named missing in final_summary.md."""
    import shutil
    runf = tmp_path / "run"
    shutil.copytree(NB.parent / "reports" / "results" / "2026-12-04_smollm2_pipeline-default_cpu", runf)
    out, text = run("08_figures", tmp_path, run=str(runf))
    assert {p.name for p in out.glob("*.png")} == {"latency_run.png", "latency_qwen2-7b-shape_h200.png", "longbench.png",
                                                   "lmeval.png", "frontier.png"}
    summary = (out / "final_summary.md").read_text()
    assert "saliency_sparsity | **not drawn**: missing source saliency" in summary
    assert f"{runf}/07_ablations/start_layer/results.json not found" in summary
    assert "no +H<budget> scorer in" in summary
    assert "smollm2-135m" in summary and "**fixture**" in summary  # the stand-in said in the table
