"""The package's layout: no import cycles, lower layers never import higher ones, `import sdtp_lib` stays light, and
old module paths keep working or name the new ones. Every import statement counts, also those inside functions."""
import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import sdtp_lib
from sdtp_lib._moved import MOVED

PKG = Path(sdtp_lib.__file__).resolve().parent
# lowest first; a module may import from its own layer or below (named by its first part under sdtp_lib)
LAYERS = [
    {"_version", "_active", "_moved", "config", "models", "embedded", "io", "ops", "flops"},  # foundations
    {"scorers", "spans"},  # what scores tokens, and the spans a stage keeps whole
    {"engine", "compare"},  # the pruning engine, and dense vs pruned on one prompt
    {"training", "speed"},  # stage 1 + 2; kernels, decode loop, profiling
    {"eval"},  # the evaluations
    {"workspace", "cli", "__main__", "__init__"},  # notebooks' pipeline, explorer, plots; the command line
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """sdtp_lib modules that `name` imports (a `from pkg import sub` of a submodule names the submodule)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "sdtp_lib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sdtp_lib":
                continue
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
            out |= subs if subs and len(subs) == len(node.names) else subs | {target}
    return {m for m in out if m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(n, p, set(mods)) for n, p in mods.items()}


def layer(name: str) -> int:
    parts = name.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for i, group in enumerate(LAYERS):
        if key in group:
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_layout.py: add its package to LAYERS")


def test_every_module_has_a_layer_and_imports_only_known_modules():
    g = graph()
    for name, deps in g.items():
        layer(name)
        assert deps <= set(g), f"{name} imports {sorted(deps - set(g))}, which do not exist"


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(n, path):
        state[n] = 1
        for d in sorted(g[n]):
            if d == "sdtp_lib" and n != "sdtp_lib":
                pytest.fail(f"{n} imports the top package sdtp_lib (its __init__ imports everything): import the "
                            "module it needs")
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])


def test_lower_layers_never_import_higher_ones():
    bad = [f"{n} (layer {layer(n)}) imports {d} (layer {layer(d)})"
           for n, deps in graph().items() for d in sorted(deps) if layer(d) > layer(n)]
    assert not bad, "\n".join(bad)


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The walker resolves relative imports (also inside functions); a planted cycle and upward import are found."""
    pkg = tmp_path / "sdtp_lib"
    (pkg / "scorers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "scorers" / "__init__.py").write_text("")
    (pkg / "engine.py").write_text("from .scorers import a\n")
    (pkg / "scorers" / "a.py").write_text("def f():\n    from ..engine import pruning\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    g = graph()
    assert g["sdtp_lib.engine"] == {"sdtp_lib.scorers.a"} and g["sdtp_lib.scorers.a"] == {"sdtp_lib.engine"}
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match=r"sdtp_lib.scorers.a \(layer 1\) imports sdtp_lib.engine \(layer 2\)"):
        test_lower_layers_never_import_higher_ones()


def test_import_sdtp_lib_loads_no_training_speed_eval_or_workspace_code():
    code = ("import sys, sdtp_lib; print(' '.join(m for m in sys.modules if m.split('.')[:2] and len(m.split('.')) > 1"
            " and m.split('.')[0] == 'sdtp_lib' and m.split('.')[1] in ('training', 'speed', 'eval', 'workspace')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"import sdtp_lib loaded {out}"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_still_import_and_name_the_new_place(old):
    """`import sdtp_lib.<old>` works; each of its names comes from the new module (with a DeprecationWarning that
    names it); a name that exists nowhere is an ImportError naming the new modules."""
    import importlib
    mod = importlib.import_module(f"sdtp_lib.{old}")
    new = [importlib.import_module(f"sdtp_lib.{m}") for m in MOVED[old]]
    public = list(getattr(new[0], "__all__", None) or [
        n for n in dir(new[0]) if not n.startswith("_") and getattr(getattr(new[0], n), "__module__", "") == new[0].__name__])
    assert public, f"sdtp_lib.{MOVED[old][0]} defines no public names"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(mod, public[0]) is getattr(new[0], public[0])
    assert any(f"sdtp_lib.{MOVED[old][0]}" in str(w.message) for w in caught)
    with pytest.raises(ImportError, match=f"sdtp_lib.{old} moved to sdtp_lib.{MOVED[old][0]}"):
        exec(f"from sdtp_lib.{old} import no_such_name_anywhere", {})


def test_old_paths_used_by_earlier_notebooks_resolve():
    """The import lines of notebooks executed before the move (saved in run folders) still run."""
    from sdtp_lib import data as D, notebook_pipeline as NP, profiling as P, saliency as SA, viz
    from sdtp_lib.training import data, saliency
    from sdtp_lib.workspace import explorer, pipeline
    assert (D.build_samples, SA.compute_saliency, viz.explorer, NP.run_pipeline) == (
        data.build_samples, saliency.compute_saliency, explorer.explorer, pipeline.run_pipeline)
    assert P.summary.__module__ == "sdtp_lib.speed.profiling"
    from sdtp_lib.policies import SaliencyOracle, make_scorer  # noqa: F401  (now sdtp_lib.scorers)
    from sdtp_lib.predictor import resolve_scorer
    from sdtp_lib.scorers.registry import resolve_scorer as new
    from sdtp_lib.training_run import TrainingRunConfig  # noqa: F401
    assert resolve_scorer is new
