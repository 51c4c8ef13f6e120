"""The numbered notebooks run headlessly with papermill on tiny parameters and write their results."""
import json
from pathlib import Path

import papermill as pm

NB = Path(__file__).resolve().parent.parent / "notebooks"


def test_03_profiling_runs(tmp_path):
    out = tmp_path / "run"
    pm.execute_notebook(str(NB / "03_profiling.ipynb"), str(tmp_path / "03.ipynb"), kernel_name="python3",
                        parameters=dict(model="tiny-qwen2", lengths=[64, 128], new_tokens=3, repeats=1,
                                        out_dir=str(out)), progress_bar=False)
    (path,) = out.glob("latency_*.json")
    d = json.loads(path.read_text())
    assert d["header"]["complete"] and len(d["rows"]) == 2 * 3 * 2
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert "NVIDIA H200 | weights: random" in (tmp_path / "03.ipynb").read_text()  # the committed run, for comparison


def test_notebooks_paired_and_without_outputs():
    for ipynb in NB.glob("*.ipynb"):
        assert ipynb.with_suffix(".py").exists(), f"{ipynb.name} has no jupytext .py pair"
        nb = json.loads(ipynb.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{ipynb.name} has outputs"


def test_01_and_02_run(tmp_path):
    for name, params in (("01_saliency", dict(samples=8, seq_len=200)),
                         ("02_training", dict(samples=10, seq_len=200, epochs=1))):
        out = tmp_path / name
        pm.execute_notebook(str(NB / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
                            parameters=dict(model="tiny-qwen2", out_dir=str(out), **params), progress_bar=False)
    assert (tmp_path / "01_saliency" / "saliency.safetensors").exists()
    assert (tmp_path / "01_saliency" / "saliency_sparsity.png").stat().st_size > 10_000
    assert (tmp_path / "02_training" / "seed0" / "predictor.safetensors").exists()
    assert (tmp_path / "02_training" / "training_curves.png").stat().st_size > 10_000
    assert "predictor-s0" in (tmp_path / "02_training" / "validation.md").read_text()
