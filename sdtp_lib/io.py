"""Result files: atomic writes (a crash never leaves a half-written file) and run provenance."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch


def atomic_write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write via a temp file + os.replace; with overwrite=False an existing file is refused. The temp file is the
    process's own, so processes of one data-parallel run may write the same file at once (the last one wins)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def atomic_torch_save(obj, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def provenance() -> dict:
    """Library versions and the git commit ($SDTP_GIT_COMMIT where the code travelled without its .git)."""
    import transformers

    from ._version import __version__
    commit = os.environ.get("SDTP_GIT_COMMIT")
    if commit is None:
        try:
            r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                               cwd=Path(__file__).parent, timeout=5)
            commit = r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "sdtp": __version__},
            "git_commit": commit}
