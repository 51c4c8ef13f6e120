"""Instruction data: loading (JSONL, save_to_disk, errors), chat-templated samples, truncation, split, collate."""
import json
import logging

import pytest
import torch

from sdtp_lib.training.data import (DEFAULT_DATA, Sample, build_samples, collate, load_instructions, split,
                           user_message)
from sdtp_lib.models import load_model, tiny_tokenizer

RESP_END = "<|im_end|>"   # the tiny tokenizer's end-of-turn marker


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def rec(i=0, layout="instruction_first", ctx_len=6, response=None):
    context = " ".join(f"Record {i}.{j}: the door of house {j} is painted colour {j}." for j in range(ctx_len))
    return {"instruction": f"What colour is the door of house {ctx_len // 2}? (q{i})", "context": context,
            "response": response or f"The door of house {ctx_len // 2} is colour {ctx_len // 2}.",
            "category": "closed_qa", "layout": layout}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prompt_text(tok, s: Sample) -> str:
    return tok.decode(s.input_ids[:s.prompt_len])


# ------------------------------------------------------------------ loading
def test_jsonl_round_trip(tmp_path):
    rows = [rec(i, layout) for i, layout in enumerate(["instruction_first", "context_first"] * 3)]
    rows.append({k: v for k, v in rec(9).items() if k != "layout"})       # layout is optional
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert load_instructions(path) == rows
    assert load_instructions(str(path), limit=2) == rows[:2]
    assert load_instructions(tmp_path) == rows                           # a folder with one .jsonl file


def test_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [rec(i) for i in range(4)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert load_instructions(tmp_path / "ds") == rows
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    assert load_instructions(tmp_path / "dd", limit=3) == rows[:3]
    datasets.Dataset.from_list([{"instruction": "x", "context": "", "category": "open_qa"}]).save_to_disk(
        str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="missing field 'response'"):
        load_instructions(tmp_path / "bad")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_instructions(tmp_path / "nope.jsonl")


def test_missing_field_names_file_line_and_field(tmp_path):
    bad = rec(1)
    del bad["response"]
    path = write_jsonl(tmp_path / "bad.jsonl", [rec(0), bad])
    with pytest.raises(ValueError) as e:
        load_instructions(path)
    msg = str(e.value)
    assert "bad.jsonl" in msg and "line 2" in msg and "'response'" in msg


def test_bad_layout_and_bad_json_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="line 1.*layout"):
        load_instructions(write_jsonl(tmp_path / "a.jsonl", [dict(rec(0), layout="sideways")]))
    (tmp_path / "b.jsonl").write_text(json.dumps(rec(0)) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_instructions(tmp_path / "b.jsonl")


def test_folder_without_a_single_jsonl_is_refused(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        write_jsonl(tmp_path / name, [rec(0)])
    with pytest.raises(ValueError, match="exactly one .jsonl"):
        load_instructions(tmp_path)


def test_default_data_loads_with_both_layouts():
    rows = load_instructions(DEFAULT_DATA)
    assert len(rows) >= 400
    layouts = {r["layout"] for r in rows}
    assert layouts == {"instruction_first", "context_first"}
    cats = {r["category"] for r in rows}
    assert {"closed_qa", "information_extraction", "summarization"} <= cats
    with_ctx = [r for r in rows if r["context"]]
    assert len(with_ctx) >= 0.8 * len(rows)
    n_first = sum(r["layout"] == "instruction_first" for r in with_ctx)
    assert n_first == len(with_ctx) - n_first                             # context samples: exactly half each


# ------------------------------------------------------------------ samples
def test_layouts_put_the_instruction_where_they_should(tok):
    a, b = build_samples([rec(0, "instruction_first"), rec(0, "context_first")], tok, seq_len=2048)
    for s, first in ((a, True), (b, False)):
        text = prompt_text(tok, s)
        i, c = text.index("What colour is the door"), text.index("Context:\nRecord 0.0")
        assert (i < c) == first
        assert s.layout == ("instruction_first" if first else "context_first")
    assert user_message("Q?", "C.", "instruction_first") == "Q?\n\nContext:\nC."
    assert user_message("Q?", "C.", "context_first") == "Context:\nC.\n\nQ?"
    assert user_message("Q?", "", "context_first") == "Q?"


def test_missing_layout_defaults_to_instruction_first(tok):
    r = {k: v for k, v in rec(0, "context_first").items() if k != "layout"}
    (s,) = build_samples([r], tok, seq_len=2048)
    assert s.layout == "instruction_first"
    assert prompt_text(tok, s).index("What colour") < prompt_text(tok, s).index("Context:")


def test_labels_are_minus_100_exactly_on_the_prompt(tok):
    samples = build_samples([rec(i, lay) for i, lay in enumerate(["instruction_first", "context_first"] * 2)],
                            tok, seq_len=2048)
    for s, r in zip(samples, [rec(i, lay) for i, lay in enumerate(["instruction_first", "context_first"] * 2)]):
        assert len(s.labels) == len(s.input_ids)
        assert all(x == -100 for x in s.labels[:s.prompt_len])
        assert s.labels[s.prompt_len:] == s.input_ids[s.prompt_len:]
        assert all(x != -100 for x in s.labels[s.prompt_len:])
        assert tok.decode(s.input_ids[s.prompt_len:]) == r["response"] + RESP_END
        assert prompt_text(tok, s).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("layout", ["instruction_first", "context_first"])
def test_truncation_cuts_the_context_not_the_response(tok, layout, caplog):
    long = rec(0, layout, ctx_len=40)
    (full,) = build_samples([long], tok, seq_len=10_000)
    seq_len = 400
    assert len(full.input_ids) > seq_len
    with caplog.at_level(logging.INFO, logger="sdtp_lib.training.data"):
        (s,) = build_samples([long], tok, seq_len=seq_len)
    assert len(s.input_ids) <= seq_len
    assert len(s.input_ids) >= seq_len - 5                                 # cut no more than needed
    assert s.input_ids[s.prompt_len:] == full.input_ids[full.prompt_len:]  # response intact
    assert s.labels[s.prompt_len:] == full.input_ids[full.prompt_len:]
    text = prompt_text(tok, s)
    assert long["instruction"] in text                                     # instruction intact, in place
    assert "Record 0.0:" in text and "Record 0.39:" not in text            # context cut from its end
    assert (text.index(long["instruction"]) < text.index("Context:")) == (layout == "instruction_first")
    assert "1 contexts truncated" in caplog.text


def test_samples_whose_response_does_not_fit_are_dropped_and_counted(tok, caplog):
    rows = [rec(0), rec(1, response="x" * 500), rec(2)]
    with caplog.at_level(logging.INFO, logger="sdtp_lib.training.data"):
        samples = build_samples(rows, tok, seq_len=300)
    assert [s.source_index for s in samples] == [0, 2]
    assert "1 dropped" in caplog.text


def test_n_samples_with_the_seed(tok):
    rows = [rec(i) for i in range(12)]
    a = build_samples(rows, tok, seq_len=2048, n=5, seed=3)
    b = build_samples(rows, tok, seq_len=2048, n=5, seed=3)
    c = build_samples(rows, tok, seq_len=2048, n=5, seed=4)
    assert [s.source_index for s in a] == [s.source_index for s in b]
    assert len({s.source_index for s in a}) == 5
    assert [s.source_index for s in a] != [s.source_index for s in c]
    assert [s.source_index for s in build_samples(rows, tok, seq_len=2048)] == list(range(12))


def test_split_is_deterministic_disjoint_and_stratified(tok):
    rows = [rec(i, ["instruction_first", "context_first"][i % 2]) for i in range(40)]
    samples = build_samples(rows, tok, seq_len=2048)
    tr, va = split(samples, val_frac=0.2, seed=1)
    tr2, va2 = split(samples, val_frac=0.2, seed=1)
    idx = lambda xs: [s.source_index for s in xs]   # noqa: E731
    assert idx(tr) == idx(tr2) and idx(va) == idx(va2)
    assert not set(idx(tr)) & set(idx(va))
    assert sorted(idx(tr) + idx(va)) == list(range(40))
    assert len(va) == 8
    assert sum(s.layout == "context_first" for s in va) == 4
    assert idx(split(samples, val_frac=0.2, seed=2)[1]) != idx(va)


def test_collate_pads_right(tok):
    samples = build_samples([rec(0, ctx_len=2), rec(1, ctx_len=6)], tok, seq_len=2048)
    batch = collate(samples, pad_id=tok.pad_token_id)
    B, T = batch["input_ids"].shape
    assert (B, T) == (2, max(len(s.input_ids) for s in samples))
    for b, s in enumerate(samples):
        L = len(s.input_ids)
        assert batch["input_ids"][b, :L].tolist() == s.input_ids
        assert batch["labels"][b, :L].tolist() == s.labels
        assert batch["attention_mask"][b].tolist() == [1] * L + [0] * (T - L)
        assert (batch["input_ids"][b, L:] == tok.pad_token_id).all() and (batch["labels"][b, L:] == -100).all()
    assert all(t.dtype == torch.long for t in batch.values())


@torch.no_grad()
def test_batch_runs_through_a_tiny_model(tok):
    model, _ = load_model("tiny-qwen2", device="cpu")
    samples = build_samples([rec(0), rec(1, "context_first", ctx_len=3)], tok, seq_len=512)
    out = model(**collate(samples, pad_id=tok.pad_token_id))
    assert torch.isfinite(out.loss)


@pytest.mark.slow
def test_default_data_with_the_smollm2_tokenizer():
    """The real default: nothing dropped or truncated at 512; at 200 tokens contexts are cut, responses kept."""
    _, tok = load_model("smollm2-135m", device="cpu")
    rows = load_instructions(DEFAULT_DATA, limit=60)
    full = build_samples(rows, tok, seq_len=512)
    assert len(full) == 60 and max(len(s.input_ids) for s in full) <= 512
    short = build_samples(rows, tok, seq_len=200)
    assert len(short) == 60
    for s, f in zip(short, full):
        assert len(s.input_ids) <= 200
        assert s.input_ids[s.prompt_len:] == f.input_ids[f.prompt_len:]
        assert tok.decode(s.input_ids[s.prompt_len:]) == rows[s.source_index]["response"] + "<|im_end|>"
        assert rows[s.source_index]["instruction"] in tok.decode(s.input_ids[:s.prompt_len])
