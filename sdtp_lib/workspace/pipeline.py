"""The notebook pipeline: the numbered notebooks, in order, run headlessly with papermill into one run folder.

    python -m sdtp_lib pipeline --profile default [-p n_samples=100] [--only 01,02] [--skip 03]
    python -m sdtp_lib pipeline --resume runs/20261130-101500-default

(Not to be confused with `sdtp_lib.training.run`, the stage-1 + stage-2 training run that notebook 02 calls.)

A profile (`profiles/<name>.yaml`) names the notebooks and their parameters:

    description: SmolLM2-135M on CPU, the whole study at small sizes
    notebooks: [00_explore, 01_saliency, 02_training, 03_profiling]
    parameters: {model: smollm2-135m, device: auto, n_samples: 30}   # to every notebook that declares them
    notebook_parameters:                                             # to one notebook (it must declare them)
      02_training: {saliency: "{run}/01_saliency"}                   # "{run}": the run folder

Every notebook gets `run_dir = <run>/<notebook>/` for its results and figures. The run folder holds the executed
notebooks, `pipeline.log`, and `run.json` (profile, overrides, the parameters of every notebook, versions, git
commit, device, start/end times, per-notebook status and duration), rewritten atomically after every notebook.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io import atomic_write_text, provenance
from ..models import project_root

log = logging.getLogger(__name__)

ROOT = project_root() or Path.cwd()
PROFILES_DIR, NOTEBOOKS_DIR, RUNS_DIR = ROOT / "profiles", ROOT / "notebooks", ROOT / "runs"
KERNEL = "python3"  # the kernel of the Python running the pipeline (ipykernel's native spec)


class PipelineError(RuntimeError):
    """A notebook failed, or a profile / override / resume request cannot be honoured."""


@dataclass
class Profile:
    name: str
    notebooks: list[str]
    parameters: dict = field(default_factory=dict)
    notebook_parameters: dict = field(default_factory=dict)
    description: str = ""
    path: str = ""


@dataclass
class Step:
    """One notebook of a run and what happened to it."""
    name: str
    parameters: dict
    status: str = "pending"  # pending | running | ok | failed | stopped (by SIGTERM / Ctrl-C: resumes)
    duration_s: float | None = None  # over every sitting it ran in
    error: str | None = None
    sittings: int = 0  # how many times it started: a stopped notebook goes on in the next sitting


class _Stopped(BaseException):
    """SIGTERM arrived (e.g. `timeout` ending a time-limited sitting); a BaseException, as KeyboardInterrupt, so that
    no `except Exception` on the way (papermill, nbclient) takes it for an error of the notebook."""


# ------------------------------------------------------------------ profiles and parameters
def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_name(name_or_path: str) -> str:
    """"qwen2.5-0.5b" and "profiles/qwen2.5-0.5b.yaml" -> "qwen2.5-0.5b" (a name may hold dots)."""
    name = Path(name_or_path).name
    return name.rsplit(".", 1)[0] if name.lower().endswith((".yaml", ".yml")) else name


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (profiles/<name>.yaml) or a path to a YAML file (*.yaml / *.yml)."""
    import yaml
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise PipelineError(f"profile {name_or_path!r} not found ({path}); profiles: {', '.join(available_profiles())}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"profile {path} is not valid YAML: {e}") from None
    unknown = set(d) - {"description", "notebooks", "parameters", "notebook_parameters"}
    if unknown or not isinstance(d.get("notebooks"), list) or not d["notebooks"]:
        raise PipelineError(f"profile {path}: needs a non-empty 'notebooks' list"
                            + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
    for key in ("parameters", "notebook_parameters"):
        if not isinstance(d.get(key) or {}, dict):
            raise PipelineError(f"profile {path}: '{key}' must be a mapping")
    return Profile(name=profile_name(str(path)), notebooks=[str(n) for n in d["notebooks"]], parameters=d.get("parameters") or {},
                   notebook_parameters=d.get("notebook_parameters") or {}, description=d.get("description", ""),
                   path=str(path))


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.is_file():
        have = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
        raise PipelineError(f"notebook {name!r} not found in {NOTEBOOKS_DIR}; numbered notebooks: {', '.join(have)}")
    return path


def declared_parameters(name: str) -> dict:
    """{name: default source text} of the notebook's cell tagged `parameters`."""
    import papermill as pm
    params = pm.inspect_notebook(str(notebook_path(name)))
    if "run_dir" not in params:
        raise PipelineError(f"notebook {name} has no `run_dir` parameter (its cell tagged 'parameters' must declare "
                            "it: every numbered notebook writes into run_dir)")
    return params


def parse_override(text: str) -> tuple[str, object]:
    """'n_samples=100' -> ('n_samples', 100); values are YAML ('[1, 2]', 'true', 'null'; 'None' is None too)."""
    import yaml
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise PipelineError(f"-p {text!r}: expected NAME=VALUE, e.g. -p n_samples=100")
    v = None if value.strip() == "None" else yaml.safe_load(value) if value.strip() else ""
    return key.strip(), v


def select(notebooks: list[str], only: list[str] | None, skip: list[str] | None) -> list[str]:
    """Filter by number or name: --only 01,02 / --skip 03 (a prefix that matches no notebook is an error)."""
    def match(keys):
        out = set()
        for k in keys:
            hit = [n for n in notebooks if n == k or n.split("_")[0] == k]
            if not hit:
                raise PipelineError(f"{k!r} matches no notebook of this profile ({', '.join(notebooks)})")
            out.update(hit)
        return out
    keep = match(only) if only else set(notebooks)
    drop = match(skip) if skip else set()
    chosen = [n for n in notebooks if n in keep and n not in drop]
    if not chosen:
        raise PipelineError("no notebook left to run after --only/--skip")
    return chosen


def plan(profile: Profile, overrides: dict, run_dir: Path, only=None, skip=None) -> list[Step]:
    """The notebooks to run and each one's parameters: profile parameters (to the notebooks that declare them),
    then the notebook's own, then the command line's; "{run}" in a string becomes the run folder."""
    names = select(profile.notebooks, only, skip)
    declared = {n: declared_parameters(n) for n in names}
    for nb, extra in profile.notebook_parameters.items():
        if nb not in profile.notebooks:
            raise PipelineError(f"profile {profile.name}: notebook_parameters for {nb!r}, which is not in its notebooks")
        if nb not in declared:  # not selected (--only/--skip): not inspected, not checked
            continue
        unknown = set(extra or {}) - set(declared[nb])
        if unknown:
            raise PipelineError(f"profile {profile.name}: notebook {nb} does not declare {sorted(unknown)} "
                                f"(its parameters: {', '.join(declared[nb])})")
    for key in {**profile.parameters, **overrides}:
        if not any(key in d for d in declared.values()):
            raise PipelineError(f"parameter {key!r} is declared by none of the notebooks to run "
                                f"({', '.join(names)}); check the spelling")
    steps = []
    for n in names:
        p = {k: v for k, v in profile.parameters.items() if k in declared[n]}
        p.update(profile.notebook_parameters.get(n) or {})
        p.update({k: v for k, v in overrides.items() if k in declared[n]})
        p["run_dir"] = str(run_dir / n)
        steps.append(Step(n, {k: _expand(v, run_dir, f"{n}: {k}") for k, v in p.items()}))
    return steps


def _expand(v, run_dir: Path, where: str):
    """"{run}" -> the run folder; "${NAME}" -> the environment variable NAME (unset: a clear error)."""
    if isinstance(v, list):
        return [_expand(x, run_dir, where) for x in v]
    if not isinstance(v, str):
        return v
    def env(m):
        if m.group(1) not in os.environ:
            raise PipelineError(f"parameter {where} = {v!r} needs the environment variable {m.group(1)}, which is "
                                f"not set; set it or override the parameter with -p {where.split(': ')[1]}=VALUE")
        return os.environ[m.group(1)]
    return re.sub(r"\$\{(\w+)\}", env, v.replace("{run}", str(run_dir)))


# ------------------------------------------------------------------ running
def _device() -> str:
    import torch
    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"


def _new_run_dir(profile: str, runs_dir: Path) -> Path:
    base = runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"
    run, k = base, 1
    while run.exists():  # never reuse a folder someone wrote into
        run, k = base.with_name(f"{base.name}-{k}"), k + 1
    run.mkdir(parents=True)
    return run


def _versions() -> dict:
    import importlib.metadata as md
    v = provenance()
    for pkg in ("papermill", "ipykernel", "nbclient"):
        try:
            v["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    v["versions"]["python"] = platform.python_version()
    return v


def _save(run_dir: Path, record: dict, steps: list[Step]) -> None:
    record["notebooks"] = [asdict(s) for s in steps]
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2, default=str) + "\n")


def _log_to(run_dir: Path) -> logging.Handler:
    h = logging.FileHandler(run_dir / "pipeline.log", encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    h.setLevel(logging.INFO)
    for name in (__name__, "papermill"):
        lg = logging.getLogger(name)
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
    return h


def _describe_failure(e, step: Step, out_nb: Path) -> str:
    from papermill.exceptions import PapermillExecutionError
    if isinstance(e, PapermillExecutionError):
        first = next((ln for ln in (e.source or "").splitlines() if ln.strip() and not ln.startswith("#")), "")
        return (f"notebook {step.name} failed in cell {e.cell_index} (execution count {e.exec_count}: "
                f"`{first.strip()[:80]}`): {e.ename}: {e.evalue}; the executed notebook with the traceback is {out_nb}")
    return f"notebook {step.name} could not run: {type(e).__name__}: {e}"


def execute(run_dir: Path, record: dict, steps: list[Step], progress: bool = True) -> Path:
    """Run the steps that are not done yet, in order; stop at the first failure (PipelineError)."""
    import papermill as pm
    handler = _log_to(run_dir)

    def on_term(signum, frame):
        raise _Stopped()
    previous = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        todo = [s for s in steps if s.status != "ok"]
        log.info("run folder %s: %d notebook(s) to run: %s", run_dir, len(todo), ", ".join(s.name for s in todo))
        for i, step in enumerate(todo, 1):
            out_nb = run_dir / f"{step.name}.ipynb"
            earlier = (step.duration_s or 0.0) if step.status == "stopped" else 0.0
            step.status, step.error, step.sittings = "running", None, step.sittings + 1
            _save(run_dir, record, steps)
            log.info("[%d/%d] %s: %s", i, len(todo), step.name,
                     ", ".join(f"{k}={v!r}" for k, v in step.parameters.items()))
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(str(notebook_path(step.name)), str(out_nb), parameters=step.parameters,
                                    kernel_name=KERNEL, cwd=str(ROOT), progress_bar=progress, log_output=True)
            except (_Stopped, KeyboardInterrupt) as e:  # the sitting ends: keep its time, the next one goes on
                step.status, step.duration_s = "stopped", earlier + time.perf_counter() - t0
                record["status"], record["ended"] = "stopped", None
                _save(run_dir, record, steps)
                why = "SIGTERM" if isinstance(e, _Stopped) else "an interrupt"
                log.warning("%s stopped by %s after %.0f s in this sitting", step.name, why, time.perf_counter() - t0)
                raise PipelineError(f"stopped by {why} during {step.name}; what it finished is kept: continue with "
                                    f"python -m sdtp_lib pipeline --resume {run_dir}") from None
            except Exception as e:  # papermill's error, or the kernel could not start
                step.status, step.duration_s = "failed", time.perf_counter() - t0
                step.error = _describe_failure(e, step, out_nb)
                record["status"], record["ended"] = "failed", _now()
                _save(run_dir, record, steps)
                log.error("%s", step.error)
                raise PipelineError(f"{step.error}\nrun folder kept: {run_dir}\nafter fixing it, continue with: "
                                    f"python -m sdtp_lib pipeline --resume {run_dir}") from None
            step.status, step.duration_s = "ok", earlier + time.perf_counter() - t0
            _save(run_dir, record, steps)
            log.info("[%d/%d] %s done in %.1f s", i, len(todo), step.name, step.duration_s)
        record["status"], record["ended"] = "ok", _now()
        _save(run_dir, record, steps)
        log.info("run complete: %s", run_dir)
        return run_dir
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for name in (__name__, "papermill"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_pipeline(profile: str = "default", overrides: dict | None = None, only=None, skip=None,
                 runs_dir: str | Path = RUNS_DIR, progress: bool = True) -> Path:
    """A new run folder runs_dir/<timestamp>-<profile>/ with every selected notebook executed in order."""
    prof = load_profile(profile)
    overrides = dict(overrides or {})
    runs_dir = Path(runs_dir).resolve()
    run_dir = _new_run_dir(prof.name, runs_dir)
    try:
        steps = plan(prof, overrides, run_dir, only, skip)
    except Exception:
        run_dir.rmdir()  # nothing was written into it yet
        raise
    record = {"profile": prof.name, "profile_file": prof.path, "description": prof.description,
              "overrides": overrides, "only": only, "skip": skip, "device": _device(), "started": _now(),
              "ended": None, "status": "running", **_versions()}
    return execute(run_dir, record, steps, progress)


def _relocate(steps: list[Step], run_dir: Path) -> str | None:
    """Point the steps' paths inside the run folder they were planned in (each `run_dir` parameter's parent, and
    "{run}"-expanded values under it) at run_dir; returns the old folder, or None when it is run_dir already."""
    olds = {str(Path(s.parameters["run_dir"]).parent) for s in steps if "run_dir" in s.parameters}
    if not olds or olds == {str(run_dir)}:
        return None
    if len(olds) > 1:
        raise PipelineError(f"{run_dir}/run.json: the notebooks' run_dir parameters lie in several folders "
                            f"({', '.join(sorted(olds))}); not a run folder this pipeline wrote")
    (old,) = olds
    def move(v):
        if isinstance(v, list):
            return [move(x) for x in v]
        if isinstance(v, str) and (v == old or v.startswith(old + os.sep)):
            return str(run_dir) + v[len(old):]
        return v
    for s in steps:
        s.parameters = {k: move(v) for k, v in s.parameters.items()}
    return old


def resume_pipeline(run_dir: str | Path, profile: str | None = None, force: bool = False,
                    progress: bool = True, redo: list[str] | None = None) -> Path:
    """Re-run the notebooks of run_dir that did not finish, with the parameters recorded in its run.json; `redo`
    (numbers or names) re-runs those too although they finished, e.g. ["08"] to redraw the figures and the summary
    after a change to their code (their executed notebooks and outputs are replaced, their time starts again).
    Refuses a run made by another commit or profile unless force=True."""
    run_dir = Path(run_dir).resolve()
    path = run_dir / "run.json"
    if not path.is_file():
        raise PipelineError(f"--resume {run_dir}: no run.json there (not a pipeline run folder)")
    record = json.loads(path.read_text(encoding="utf-8"))
    here = provenance()["git_commit"]
    problems = []
    if record.get("git_commit") != here:
        problems.append(f"it was made by commit {record.get('git_commit')}, this checkout is {here}")
    if profile is not None and record.get("profile") != profile_name(profile):
        problems.append(f"it was made with profile {record.get('profile')!r}, not {profile!r}")
    if problems and not force:
        raise PipelineError(f"refusing to resume {run_dir}: {'; '.join(problems)} (pass --force to resume anyway)")
    for p in problems:
        log.warning("resuming anyway: %s", p)
    steps = [Step(**{k: v for k, v in s.items() if k in Step.__dataclass_fields__}) for s in record["notebooks"]]
    moved = _relocate(steps, run_dir)
    if moved is not None:  # copied or unpacked elsewhere: its notebooks write here, not where it was made
        log.info("%s was made as %s: its parameters now point here", run_dir, moved)
        record.setdefault("moved", []).append({"at": _now(), "from": moved, "to": str(run_dir)})
        _save(run_dir, record, steps)
    again = select([s.name for s in steps], redo, None) if redo else []
    for s in steps:
        if s.name in again:
            s.status, s.duration_s, s.error, s.sittings = "pending", None, None, 0
    if all(s.status == "ok" for s in steps):
        log.info("%s: every notebook already finished; nothing to do", run_dir)
        return run_dir
    record.setdefault("resumed", []).append({"at": _now(), "git_commit": here, "forced": bool(problems),
                                             **({"redo": again} if again else {})})
    record["status"], record["ended"] = "running", None
    return execute(run_dir, record, steps, progress)
