"""sdtp_lib.io's JSON-lines files: read plain or gzipped, a crash-cut last line, atomic and deterministic gzip, and
the states an interrupted (de)compression can leave."""
import gzip
import json
import os

import pytest

from sdtp_lib import io as IO

ROWS = [{"id": 0, "pred": "a"}, {"id": 1, "pred": "é ü"}, {"id": 2, "pred": ""}]
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS)


def test_read_plain_and_gzipped(tmp_path):
    plain = tmp_path / "p.jsonl"
    plain.write_text(TEXT)
    assert IO.read_jsonl(plain) == IO.read_jsonl(tmp_path / "p.jsonl.gz") == ROWS  # named either way
    assert IO.find_jsonl(plain) == plain
    gz = IO.compress_jsonl(plain)
    assert gz == tmp_path / "p.jsonl.gz" and not plain.exists()
    assert gzip.decompress(gz.read_bytes()).decode() == TEXT
    assert IO.read_jsonl(plain) == IO.read_jsonl(gz) == ROWS and IO.find_jsonl(plain) == gz
    assert IO.compress_jsonl(plain) == gz  # already compressed: nothing to do
    assert IO.read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == [] and IO.find_jsonl(tmp_path / "none") is None
    with pytest.raises(FileNotFoundError, match=r"none\.jsonl nor .*none\.jsonl\.gz"):
        IO.read_jsonl(tmp_path / "none.jsonl")
    with pytest.raises(FileNotFoundError):
        IO.compress_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "bad.jsonl").write_text(TEXT + "{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:4 is not a JSON line"):
        IO.read_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "list.jsonl").write_text("[1]\n")
    with pytest.raises(ValueError, match=r"list\.jsonl:1 is not a JSON object"):
        IO.read_jsonl(tmp_path / "list.jsonl")


def test_a_cut_last_line_is_dropped_on_repair_else_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(TEXT + '{"id": 3, "pr')  # a crash in the middle of a write
    with pytest.raises(ValueError, match="incomplete line"):
        IO.read_jsonl(path)
    with pytest.raises(ValueError, match="incomplete line"):
        IO.compress_jsonl(path)  # a cut file is never frozen into a .gz
    assert path.read_text().endswith('"pr')  # refusing changes nothing
    assert IO.read_jsonl(path, repair=True) == ROWS and path.read_text() == TEXT  # dropped, and the file repaired
    path.write_text('{"id": 0')  # nothing but a cut line
    assert IO.read_jsonl(path, repair=True) == [] and path.read_text() == ""
    gz = tmp_path / "g.jsonl.gz"
    gz.write_bytes(gzip.compress(TEXT.encode()[:-1], mtime=0))  # a .gz is written whole: a cut one is corrupt
    with pytest.raises(ValueError, match="incomplete line"):
        IO.read_jsonl(gz, repair=True)
    gz.write_bytes(gzip.compress(TEXT.encode(), mtime=0)[:-9])  # the gzip stream itself cut short
    with pytest.raises(ValueError, match="not a complete gzip file"):
        IO.read_jsonl(gz)


def test_compression_is_deterministic(tmp_path):
    a, b = tmp_path / "a" / "x.jsonl", tmp_path / "b" / "y.jsonl"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(TEXT)
    os.utime(b, (1, 1))
    ga, gb = IO.compress_jsonl(a), IO.compress_jsonl(b)
    data = ga.read_bytes()
    assert data == gb.read_bytes()  # another name, another mtime: the same bytes
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # no file name, mtime 0
    assert IO.write_jsonl(tmp_path / "c.jsonl", ROWS).read_bytes() == \
        gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS).encode(), 9, mtime=0)


def test_compression_is_atomic(tmp_path, monkeypatch):
    """A crash before the .gz is in place leaves the plain file as it was (and no temp file); one after it, before
    the plain file is removed, leaves two files with the same records: read as one, and finished by the next call."""
    plain = tmp_path / "p.jsonl"
    plain.write_text(TEXT)

    def crash(*a, **k):
        raise OSError("disk gone")
    monkeypatch.setattr(IO.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        IO.compress_jsonl(plain)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"] and plain.read_text() == TEXT
    unlink = type(plain).unlink
    monkeypatch.setattr(type(plain), "unlink", lambda self, missing_ok=False: crash() if self == plain
                        else unlink(self, missing_ok=missing_ok))  # the crash comes just before the plain file goes
    with pytest.raises(OSError):
        IO.compress_jsonl(plain)
    monkeypatch.undo()
    gz = tmp_path / "p.jsonl.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "p.jsonl.gz"]
    assert IO.read_jsonl(plain) == IO.read_jsonl(gz) == ROWS and IO.find_jsonl(gz) == plain
    assert IO.compress_jsonl(plain) == gz and not plain.exists() and IO.read_jsonl(gz) == ROWS
    plain.write_text(TEXT + json.dumps({"id": 3}) + "\n")  # two files that disagree: refused, both named
    for call in (IO.read_jsonl, IO.find_jsonl, IO.compress_jsonl, IO.decompress_jsonl):
        with pytest.raises(ValueError, match=r"both .*p\.jsonl and .*p\.jsonl\.gz exist"):
            call(plain)


def test_decompress_for_appending(tmp_path):
    plain = tmp_path / "p.jsonl"
    assert IO.decompress_jsonl(plain) == plain and not plain.exists()  # nothing yet: nothing to do
    plain.write_text(TEXT)
    gz = IO.compress_jsonl(plain)
    assert IO.decompress_jsonl(gz) == plain and not gz.exists() and plain.read_text() == TEXT
    assert IO.decompress_jsonl(plain) == plain and plain.read_text() == TEXT  # already plain
    gz.write_bytes(gzip.compress(TEXT.encode()))  # the twin an interrupted decompression leaves: removed
    assert IO.decompress_jsonl(plain) == plain and not gz.exists()
    with open(plain, "a") as f:
        f.write(json.dumps({"id": 3}) + "\n")
    assert IO.read_jsonl(IO.compress_jsonl(plain)) == ROWS + [{"id": 3}]
    IO.write_jsonl(plain, ROWS[:1])  # a whole new set replaces both forms
    plain.write_text(TEXT)
    with pytest.raises(ValueError, match="both"):
        IO.read_jsonl(plain)
    IO.write_jsonl(plain, ROWS[:1])
    assert not plain.exists() and IO.read_jsonl(plain) == ROWS[:1]


def test_provenance_says_when_the_library_differs_from_its_commit(monkeypatch):
    from pathlib import Path
    monkeypatch.delenv("SDTP_GIT_COMMIT", raising=False)
    before = IO.provenance()
    if before["git_commit"] is None:
        pytest.skip("not a git checkout")
    if before["git_dirty"]:
        pytest.skip("sdtp_lib already has uncommitted changes")
    assert before["git_dirty"] is False
    probe = Path(IO.__file__).parent / "_dirty_probe.py"
    probe.write_text("# a new file: the tree no longer matches the commit\n")
    try:
        assert IO.provenance()["git_dirty"] is True
    finally:
        probe.unlink()
    assert IO.provenance()["git_dirty"] is False
