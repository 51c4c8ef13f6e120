"""Result files: atomic writes (a crash never leaves a half-written file), per-sample JSON-lines files that are
gzipped once finished, and run provenance.

JSON lines: an evaluation appends records to a plain `X.jsonl` while it runs (crash-safe, resumable) and
`compress_jsonl` turns it into `X.jsonl.gz` once its unit of work is done; `read_jsonl` reads either, so a results
folder with only `.gz` files can be re-scored, and `decompress_jsonl` turns a finished file back into plain lines
when a resumed run has more to append. Both files existing is the leftover of an interrupted (de)compression when
they hold the same bytes (the plain one is used), else an error that names both.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import zlib
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def atomic_write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write via a temp file + fsync + os.replace (_atomic_write_bytes); with overwrite=False an existing file is
    refused. The temp file is the process's own, so processes of one data-parallel run may write the same file at
    once (the last one wins)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Temp file (the process's own) + fsync + os.replace: the file is whole or absent, also after a power loss."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the replace; a failed write leaves no temp behind
    return path


def jsonl_pair(path: str | Path) -> tuple[Path, Path]:
    """(X.jsonl, X.jsonl.gz) for a path given either way."""
    path = Path(path)
    plain = path.with_name(path.name[:-3]) if path.name.endswith(".gz") else path
    return plain, plain.with_name(plain.name + ".gz")


def _gunzip(gz: Path) -> bytes:
    try:
        return gzip.decompress(gz.read_bytes())
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{gz} is not a complete gzip file ({e})") from None


def find_jsonl(path: str | Path) -> Path | None:
    """The file that holds X's records: X.jsonl or X.jsonl.gz, whichever exists (None: neither). Both: the plain one
    when they hold the same bytes (an interrupted compress_jsonl / decompress_jsonl), else a ValueError."""
    plain, gz = jsonl_pair(path)
    if not gz.exists():
        return plain if plain.exists() else None
    if not plain.exists():
        return gz
    if plain.read_bytes() != _gunzip(gz):
        raise ValueError(f"both {plain} and {gz} exist and hold different records: keep the right one and delete "
                         "the other")
    return plain


def read_jsonl(path: str | Path, repair: bool = False, missing_ok: bool = False) -> list[dict]:
    """The records of X.jsonl or X.jsonl.gz (`path` names either; find_jsonl picks the file). A plain file whose last
    line was cut short by a crash: the line is dropped and the file rewritten without it (repair=True), else a
    ValueError. A .gz is written whole, so a cut one is an error either way. No file: [] if missing_ok, else
    FileNotFoundError."""
    src = find_jsonl(path)
    if src is None:
        if missing_ok:
            return []
        plain, gz = jsonl_pair(path)
        raise FileNotFoundError(f"neither {plain} nor {gz} exists")
    gzipped = src.name.endswith(".gz")
    text = (_gunzip(src) if gzipped else src.read_bytes()).decode("utf-8")
    if text and not text.endswith("\n"):
        if gzipped or not repair:
            raise ValueError(f"{src} ends in an incomplete line (an interrupted write)"
                             + ("" if gzipped else ": re-run to repair it"))
        log.warning("%s: dropping an incomplete last line (an interrupted write)", src)
        text = text[:text.rfind("\n") + 1]
        _atomic_write_bytes(src, text.encode("utf-8"))
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{src}:{k} is not a JSON line") from None
        if not isinstance(rows[-1], dict):
            raise ValueError(f"{src}:{k} is not a JSON object")
    return rows


def _gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: no file name, mtime 0 (the same records give the same bytes)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def compress_jsonl(path: str | Path) -> Path:
    """Turn a finished X.jsonl into X.jsonl.gz (written atomically, deterministic bytes), then remove X.jsonl;
    returns the .gz. Already compressed: nothing to do. A plain file ending in an incomplete line is refused."""
    src = find_jsonl(path)
    plain, gz = jsonl_pair(path)
    if src is None:
        raise FileNotFoundError(f"neither {plain} nor {gz} exists")
    if src == gz:
        return gz
    data = plain.read_bytes()
    if data and not data.endswith(b"\n"):
        raise ValueError(f"{plain} ends in an incomplete line (an interrupted write): not compressing it")
    _atomic_write_bytes(gz, _gzip_bytes(data))
    plain.unlink()
    return gz


def decompress_jsonl(path: str | Path) -> Path:
    """X.jsonl ready for appending: a finished X.jsonl.gz turned back into X.jsonl (atomically, then the .gz
    removed); returns X.jsonl (which may not exist: nothing was written yet)."""
    src = find_jsonl(path)
    plain, gz = jsonl_pair(path)
    if src == gz:
        _atomic_write_bytes(plain, _gunzip(gz))
    if src is not None and gz.exists():  # also the leftover twin of an interrupted (de)compression
        gz.unlink()
    return plain


def write_jsonl(path: str | Path, records) -> Path:
    """A finished set of records straight into X.jsonl.gz (atomically, deterministic bytes), replacing X.jsonl /
    X.jsonl.gz; returns the .gz."""
    plain, gz = jsonl_pair(path)
    gz.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    _atomic_write_bytes(gz, _gzip_bytes(text.encode("utf-8")))
    plain.unlink(missing_ok=True)
    return gz


def atomic_torch_save(obj, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def provenance() -> dict:
    """Library versions, the git commit ($SDTP_GIT_COMMIT where the code travelled without its .git) and git_dirty:
    whether the library's files differ from that commit (changed or new files under sdtp_lib/; None: unknown)."""
    import transformers

    from ._version import __version__
    commit, dirty = os.environ.get("SDTP_GIT_COMMIT"), None
    here = Path(__file__).parent
    try:
        if commit is None:
            r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, timeout=5)
            commit = r.stdout.strip() if r.returncode == 0 else None
            if commit:
                r = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                                   cwd=here, timeout=5)
                dirty = bool(r.stdout.strip()) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass  # no usable git: the commit stays as found (None), git_dirty unknown
    return {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "sdtp": __version__},
            "git_commit": commit, "git_dirty": dirty}
