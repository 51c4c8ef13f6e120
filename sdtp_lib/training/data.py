"""Instruction data for saliency marking and predictor training (databricks-dolly-15k schema).

load_instructions(source) -> records {"instruction", "context", "response", "category"[, "layout"]};
build_samples(records, tokenizer) -> Sample (chat-templated token ids, labels only on the response);
split(samples) -> (train, val); collate(samples, pad_id) -> padded batch tensors.

The prompt (system + user turn + assistant header) is what SDTP prunes; the response is what the
saliency loss and L_cls are computed on, so it is never truncated and should be protected from pruning.
"""
from __future__ import annotations

import json
import logging
import random
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "sdtp_default" / "train.jsonl"  # the checkout's data/
REQUIRED_FIELDS = ("instruction", "context", "response", "category")   # databricks-dolly-15k
LAYOUTS = ("instruction_first", "context_first")                         # where the instruction goes
CONTEXT_LABEL = "Context:"
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".arrow")


# ------------------------------------------------------------------ loading
def load_instructions(source: str | Path = DEFAULT_DATA, limit: int | None = None) -> list[dict]:
    """Records in the Dolly schema (plus an optional "layout") from a .jsonl file, a `save_to_disk` folder,
    a folder holding exactly one .jsonl file, or a hub id (only when no such path exists; needs network).

    Every record must have string fields instruction, context, response, category; "layout", when
    present, must be one of LAYOUTS. Returns at most `limit` records, in file order.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _read_jsonl(path, limit)
    if path.is_dir():
        if any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
            return _from_dataset(_datasets(f"loading the save_to_disk folder {path}").load_from_disk(str(path)),
                                 str(path), limit)
        jsonl = sorted(path.glob("*.jsonl"))
        if len(jsonl) != 1:
            raise ValueError(f"{path} is neither a datasets.save_to_disk folder nor a folder with exactly one .jsonl "
                             f"file (found {len(jsonl)}: {[p.name for p in jsonl]})")
        return _read_jsonl(jsonl[0], limit)
    return _from_hub(str(source), limit)


def _datasets(why: str):
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"{why} needs the `datasets` package, which is not installed: pip install datasets") from e
    return datasets


def _check(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with fields {', '.join(REQUIRED_FIELDS)}, "
                         f"got {type(row).__name__}")
    for f in REQUIRED_FIELDS:
        if f not in row:
            raise ValueError(f"{where}: missing field {f!r} (databricks-dolly-15k schema: "
                             f"{', '.join(REQUIRED_FIELDS)})")
        if not isinstance(row[f], str):
            raise ValueError(f"{where}: field {f!r} must be a string, got {type(row[f]).__name__}")
    if row.get("layout") is not None and row["layout"] not in LAYOUTS:
        raise ValueError(f"{where}: field 'layout' is {row['layout']!r}; use one of {LAYOUTS}")
    return dict(row)


def _read_jsonl(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from e
            rows.append(_check(row, f"{path}, line {n}"))
    return rows


def _from_dataset(ds, where: str, limit: int | None) -> list[dict]:
    if isinstance(ds, dict):  # a DatasetDict: take "train", or its only split
        splits = list(ds)
        if "train" not in splits and len(splits) != 1:
            raise ValueError(f"{where} holds splits {splits} and none is called 'train'; save the split to use")
        ds = ds["train" if "train" in splits else splits[0]]
    missing = [f for f in REQUIRED_FIELDS if f not in ds.column_names]
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r} (columns: {ds.column_names}; "
                         f"databricks-dolly-15k schema: {', '.join(REQUIRED_FIELDS)})")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return [_check(row, f"{where}, row {i}") for i, row in enumerate(ds)]


def _from_hub(source: str, limit: int | None) -> list[dict]:
    if not _HUB_ID.match(source) or source.endswith(_FILE_SUFFIXES):
        raise FileNotFoundError(f"{source} does not exist (expected a .jsonl file, a datasets.save_to_disk folder, "
                                "a folder with one .jsonl file, or a hub id such as databricks/databricks-dolly-15k)")
    log.info("%s is not a local path: trying it as a Hugging Face hub data set", source)
    try:
        datasets = _datasets("loading it as a hub data set")
        ds = datasets.load_dataset(source, split="train")
    except Exception as e:  # ImportError, network, unknown id: report both ways it was tried
        raise FileNotFoundError(f"{source} does not exist as a local path, and loading it as a Hugging Face hub "
                                f"data set failed: {type(e).__name__}: {e}") from e
    return _from_dataset(ds, f"hub data set {source}", limit)


# ------------------------------------------------------------------ samples
@dataclass
class Sample:
    input_ids: list[int]      # prompt + response (+ end-of-turn)
    labels: list[int]         # -100 on the prompt, the token ids on the response
    prompt_len: int           # tokens [0, prompt_len) are the prompt: what SDTP prunes
    category: str
    layout: str
    source_index: int         # index of the record this sample came from

    @property
    def response_len(self) -> int:
        return len(self.input_ids) - self.prompt_len


def user_message(instruction: str, context: str, layout: str = "instruction_first") -> str:
    """The user turn: the instruction and the labelled context, in the record's layout, a blank line apart."""
    instruction, context = instruction.strip(), context.strip()
    if not context:
        return instruction
    block = f"{CONTEXT_LABEL}\n{context}"
    if layout == "instruction_first":
        return f"{instruction}\n\n{block}"
    if layout == "context_first":
        return f"{block}\n\n{instruction}"
    raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_text(tokenizer, user: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def _response_text(tokenizer, user: str, response: str) -> str:
    """The assistant response plus the template's end-of-turn marker (trailing whitespace dropped)."""
    prompt = _prompt_text(tokenizer, user)
    full = tokenizer.apply_chat_template([{"role": "user", "content": user},
                                          {"role": "assistant", "content": response}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the tokenizer's chat template renders the conversation with a response differently from "
                         "the prompt with add_generation_prompt=True; cannot separate prompt and response")
    return full[len(prompt):].rstrip()


def build_samples(records: list[dict], tokenizer, seq_len: int = 512, n: int | None = None,
                  seed: int = 0) -> list[Sample]:
    """Chat-templated samples of at most seq_len tokens: prompt = user turn (instruction + context by layout),
    response = assistant turn + end-of-turn, labelled. Too long -> the context is cut from its end (never the
    instruction, never the response); a record whose response does not fit even without context is dropped.
    n: how many samples to build, from the records shuffled with `seed` (default: all, in order).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; build_samples needs an instruct model's tokenizer")
    order = list(range(len(records)))
    if n is not None:
        random.Random(seed).shuffle(order)
    out, dropped, truncated = [], 0, 0
    for i in order:
        if n is not None and len(out) >= n:
            break
        s, cut = _build_one(records[i], i, tokenizer, seq_len)
        if s is None:
            dropped += 1
            continue
        truncated += cut
        out.append(s)
    if n is not None and len(out) < n:
        log.warning("asked for %d samples, only %d could be built", n, len(out))
    if out:
        p = [s.prompt_len for s in out]
        r = [s.response_len for s in out]
        log.info("built %d samples (seq_len %d): %d dropped (response does not fit), %d contexts truncated; "
                 "tokens mean/max: prompt %.0f/%d, response %.1f/%d, total %.0f/%d", len(out), seq_len, dropped,
                 truncated, statistics.mean(p), max(p), statistics.mean(r), max(r),
                 statistics.mean(a + b for a, b in zip(p, r)), max(a + b for a, b in zip(p, r)))
    else:
        log.warning("built no samples (seq_len %d): %d dropped (response does not fit)", seq_len, dropped)
    return out


def _build_one(rec: dict, index: int, tokenizer, seq_len: int) -> tuple[Sample | None, bool]:
    layout = rec.get("layout") or "instruction_first"
    instruction, context = rec["instruction"], rec.get("context") or ""
    resp_ids = _ids(tokenizer, _response_text(tokenizer, user_message(instruction, context, layout),
                                              rec["response"].strip()))
    prompt_ids = _ids(tokenizer, _prompt_text(tokenizer, user_message(instruction, context, layout)))
    cut = False
    if len(prompt_ids) + len(resp_ids) > seq_len:
        bare = _ids(tokenizer, _prompt_text(tokenizer, user_message(instruction, "", layout)))
        if len(bare) + len(resp_ids) > seq_len:
            return None, False
        ctx_ids = _ids(tokenizer, context.strip())
        keep = len(ctx_ids) - (len(prompt_ids) + len(resp_ids) - seq_len)
        while True:  # decode/re-tokenize can shift a token or two: shrink until it fits
            ctx = ""
            if keep > 0:  # no clean-up: it would drop spaces before punctuation in byte-level BPE text
                ctx = tokenizer.decode(ctx_ids[:keep], clean_up_tokenization_spaces=False).rstrip().rstrip("\ufffd")
            prompt_ids = _ids(tokenizer, _prompt_text(tokenizer, user_message(instruction, ctx, layout)))
            over = len(prompt_ids) + len(resp_ids) - seq_len
            if over <= 0:
                break
            keep -= over
        cut = True
    return Sample(input_ids=prompt_ids + resp_ids, labels=[-100] * len(prompt_ids) + resp_ids,
                  prompt_len=len(prompt_ids), category=rec.get("category", ""), layout=layout,
                  source_index=index), cut


def split(samples: list[Sample], val_frac: float = 0.1, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Deterministic (train, val), stratified by layout: each layout gives round(val_frac * its count) samples
    to val (at least one when it has two or more), so validation can be reported per layout. Order is kept."""
    if not 0 <= val_frac < 1:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.layout, []).append(i)
    val_idx = set()
    for layout in sorted(groups):
        idx = groups[layout]
        k = round(len(idx) * val_frac)
        if val_frac > 0 and len(idx) >= 2:
            k = max(k, 1)
        val_idx.update(rng.sample(idx, k))
    return ([s for i, s in enumerate(samples) if i not in val_idx],
            [s for i, s in enumerate(samples) if i in val_idx])


def collate(samples: list[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids (B, T), labels (B, T) with -100 on pads, attention_mask (B, T)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    T = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), T), -100, dtype=torch.long)
    mask = torch.zeros((len(samples), T), dtype=torch.long)
    for b, s in enumerate(samples):
        L = len(s.input_ids)
        ids[b, :L] = torch.tensor(s.input_ids)
        labels[b, :L] = torch.tensor(s.labels)
        mask[b, :L] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def response_protect(prompt_len: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: tokens never pruned in training/validation: the response and the last prompt token
    (its logits predict the first response token). prompt_len (B,), attention_mask (B, T) (right padding)."""
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (pos[None] >= (prompt_len[:, None] - 1)) & attention_mask.bool()
