"""Wheels for a GPU server without network: what the headless pipeline needs (papermill, the kernel, the evaluation
libraries, ...) that the server's own Python lacks, at the versions this machine's environment resolved.

    python scripts/offline_wheels.py DEST --have have.txt [--python-version 3.12]

have.txt: the distributions the server already has, one per line or comma-separated (`pip list --format=freeze`
there, or an image's package list); torch and transformers are never fetched (the server's own builds stay). Reads
the requirement closure from this environment's installed metadata (run it with the .venv's python), then
downloads each missing distribution's wheel for the server (manylinux x86-64, CPython of --python-version) and
builds the few that PyPI has only as source. On the server:

    python3 -m pip install --no-index --no-deps --target /tmp/site DEST/*.whl && export PYTHONPATH=/tmp/site
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as norm

ROOTS = ["papermill", "ipykernel", "ipywidgets", "matplotlib", "seaborn", "pyyaml", "datasets", "lm-eval", "rouge",
         "fuzzywuzzy", "gguf", "accelerate", "safetensors", "tqdm", "filelock"]
NEVER = {"torch", "transformers"}  # the server's own builds (torch's CUDA one; transformers >= 5.17, docs/models.md)
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 26, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64",
                                                                                    "manylinux1_x86_64"]


def closure(roots: list[str]) -> dict[str, str]:
    """{distribution: installed version} of the roots and everything they require here (extras off)."""
    seen: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = norm(stack.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed in {sys.prefix}: run this with the environment that has "
                             "sdtp[notebooks,eval] (the .venv)") from None
        seen[name] = dist.version
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return seen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest")
    ap.add_argument("--have", required=True, help="file: the server's distributions, by line or comma")
    ap.add_argument("--python-version", default="3.12")
    args = ap.parse_args(argv)
    have = {norm(re.split(r"[=<> ]", x.strip())[0]) for x in re.split(r"[,\n]", Path(args.have).read_text())
            if x.strip()}
    need = {n: v for n, v in closure(ROOTS).items() if n not in have and n not in NEVER}
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    print(f"{len(need)} distributions missing there: " + " ".join(f"{n}=={v}" for n, v in sorted(need.items())))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    target = ["--implementation", "cp", "--python-version", args.python_version,
              *[a for p in PLATFORMS for a in ("--platform", p)]]
    built = []
    for name, version in sorted(need.items()):
        got = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", *target, "-d", str(dest),
                              f"{name}=={version}"], capture_output=True, text=True)
        if got.returncode != 0:  # only a source distribution: a wheel built here (pure Python ones)
            subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dest), f"{name}=={version}"], check=True)
            built.append(name)
    print(f"wrote {len(list(dest.glob('*.whl')))} wheels to {dest}" + (f"; built here: {', '.join(built)}"
                                                                          if built else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
