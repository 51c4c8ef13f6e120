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


def test_notebooks_paired_and_without_outputs():
    for ipynb in NB.glob("*.ipynb"):
        assert ipynb.with_suffix(".py").exists(), f"{ipynb.name} has no jupytext .py pair"
        nb = json.loads(ipynb.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{ipynb.name} has outputs"
