"""LongBench v1, the 16 English tasks, with the official protocol: prompts, middle truncation, chat-template rule,
greedy generation, post-processing and metrics as in THUDM/LongBench (`LongBench/pred.py`, `eval.py`,
`metrics.py`, `config/*.json`), run dense and pruned (SDTP) on one model.

    data = load_task("path/to/longbench/data", "hotpotqa")            # the official release layout
    ids = build_prompt(tok, data[0], "hotpotqa", max_length=31500)     # (1, T)
    run_longbench(model, tok, ["hotpotqa", "trec"], "path/to/data", "runs/lb",
                  scorers={"dense": None, "sdtp": "auto", "sdtp-low": "norm"})
    res = score_longbench("runs/lb")                                    # writes results.json / results.md
    print(markdown(res))

Prediction files: `out_dir/<scorer, ':' as '_'>/<task>.jsonl` (rank r of w > 1: `<task>.rank<r>.jsonl`, then `merge(out_dir)`),
one JSON line per sample, appended and flushed as it is made; a re-run skips the samples already there. A file
is gzipped (`<task>[.rank<r>].jsonl.gz`) once its scorer has answered every sample of the task the run asked for
(merge writes the joined file gzipped); a re-run asking for more continues it, and every reader takes either form.
`out_dir/config.json` records what the predictions depend on (model, tokenizer, max_length, keep ratio, scorers)
and a folder written with other settings is refused; `out_dir/tasks/<task>.json` records each task's sample ids
in the official order.

Protocol notes (where this differs from, or has to choose beyond, pred.py):
- max_length default (pred.py's model2maxlen is per model: 3500 for 4K models, 7500 for 8K, 15500 for 16K,
  31500 for 32K models): `default_max_length` = min(31500, (max_position_embeddings - 500) rounded down to a
  multiple of 500), which reproduces every entry of model2maxlen.
- The chat template is the tokenizer's own (`apply_chat_template`, one user turn, add_generation_prompt=True),
  where pred.py hard-codes one per model; skipped for trec, triviaqa, samsum, lcc, repobench-p as there, and a
  tokenizer without a chat template gets the raw prompt (pred.py's fall-through).
- Greedy: do_sample=False, num_beams=1, and the model's generation_config sampling / repetition_penalty settings
  neutralised (pred.py passes temperature=1.0 to models whose configs have no repetition penalty).
- samsum stops at the end of a line as in pred.py (eos_token_id = [tokenizer eos, the "\\n" token], at least one
  new token); the model's generation_config eos ids are kept as stops too.
- trec's all_classes is each sample's own (eval.py takes the last line's; they are the same list).
- Not in pred.py: each record also has prompt_len, new_tokens, compression (PruningStats.compression, 1.0 for
  dense), flops_ratio, prefill_s (generate's first forward, timed by hooks around it, CUDA synchronised at both
  ends; by default after an untimed prefill of the same prompt) and gen_s (the whole generate call).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import string
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from ..compare import pad_id
from ..config import SDTPConfig
from ..engine import pruning
from ..models import ATTN_IMPLEMENTATIONS
from ..io import (atomic_write_text, compress_jsonl, decompress_jsonl, find_jsonl, provenance, read_jsonl,
                  write_jsonl)
from ..scorers.oracle import SaliencyOracle
from ..spans import span_rule
from .scorers import ORACLE, VARIANTS, file_stem, make_scorer_for, parse_spec, with_budgets

log = logging.getLogger(__name__)

FORMAT, VERSION = "sdtp-longbench", 1
HUB_ID = "THUDM/LongBench"

CATEGORIES = {
    "single-doc QA": ("narrativeqa", "qasper", "multifieldqa_en"),
    "multi-doc QA": ("hotpotqa", "2wikimqa", "musique"),
    "summarization": ("gov_report", "qmsum", "multi_news"),
    "few-shot": ("trec", "triviaqa", "samsum"),
    "synthetic": ("passage_count", "passage_retrieval_en"),
    "code": ("lcc", "repobench-p"),
}
TASKS = tuple(t for ts in CATEGORIES.values() for t in ts)
CATEGORY_OF = {t: c for c, ts in CATEGORIES.items() for t in ts}
NO_CHAT_TASKS = ("trec", "triviaqa", "samsum", "lcc", "repobench-p")  # pred.py: raw prompt, no chat template
FIRST_LINE_TASKS = ("trec", "triviaqa", "samsum")  # eval.py: only the first line of the prediction is scored
FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")
WARMUPS = ("sample", "once", "none")

# config/dataset2prompt.json (exact text, including its "asconcisely" typos)
PROMPTS = {
    "narrativeqa": 'You are given a story, which can be either a novel or a movie script, and a question. Answer the question asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:',
    "qasper": 'You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:',
    "multifieldqa_en": 'Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:',
    "hotpotqa": 'Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:',
    "2wikimqa": 'Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:',
    "musique": 'Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:',
    "gov_report": 'You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:',
    "qmsum": 'You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:',
    "multi_news": 'You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:',
    "trec": 'Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}',
    "triviaqa": 'Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}',
    "samsum": 'Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}',
    "passage_count": 'There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ',
    "passage_retrieval_en": 'Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like "Paragraph 1", "Paragraph 2", etc.\n\nThe answer is: ',
    "lcc": 'Please complete the code given below. \n{context}Next line of code:\n',
    "repobench-p": 'Please complete the code given below. \n{context}{input}Next line of code:\n',
}

# config/dataset2maxlen.json: max new tokens
MAXLEN = {
    "narrativeqa": 128, "qasper": 128, "multifieldqa_en": 64, "hotpotqa": 32, "2wikimqa": 32, "musique": 32,
    "gov_report": 512, "qmsum": 512, "multi_news": 512, "trec": 64, "triviaqa": 32, "samsum": 128,
    "passage_count": 32, "passage_retrieval_en": 32, "lcc": 64, "repobench-p": 64,
}


# ======================================================================= metrics (LongBench/metrics.py)
def _metric_lib(name: str):
    """rouge.Rouge or fuzzywuzzy.fuzz, imported on first use (fuzzywuzzy's "slow SequenceMatcher" warning muted)."""
    try:
        if name == "rouge":
            from rouge import Rouge
            return Rouge
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fuzzywuzzy import fuzz
        return fuzz
    except ImportError:
        raise ImportError(f"LongBench's official metrics need the {name!r} package: pip install rouge==1.0.1 "
                          "fuzzywuzzy==0.18.0") from None


def metric_libraries() -> dict:
    """Versions of the metric libraries, and fuzzywuzzy's backend (difflib unless python-Levenshtein is installed:
    the two give slightly different ratios)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("rouge", "fuzzywuzzy", "python-Levenshtein"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        mod = _metric_lib("fuzz").SequenceMatcher.__module__
        out["fuzzywuzzy_backend"] = "difflib" if mod == "difflib" else "python-Levenshtein"
    except ImportError:
        out["fuzzywuzzy_backend"] = None
    return out


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, then the articles a/an/the, then collapse whitespace (SQuAD's, as LongBench)."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_tokens(prediction: list, ground_truth: list) -> float:
    """Bag-of-tokens F1 (Counter intersection)."""
    common = Counter(prediction) & Counter(ground_truth)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction)
    recall = 1.0 * num_same / len(ground_truth)
    return (2 * precision * recall) / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str, **kwargs) -> float:
    return f1_tokens(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def rouge_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """ROUGE-L F (the `rouge` package, sentences split at "."); 0.0 wherever it raises (empty prediction, a
    sentence too long for its recursive LCS), as metrics.py's bare except."""
    rouge = _metric_lib("rouge")()
    try:
        scores = rouge.get_scores([prediction], [ground_truth], avg=True)
    except Exception:  # noqa: BLE001 - the official metric swallows every error
        return 0.0
    return float(scores["rouge-l"]["f"])


def classification_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """trec: the classes named (as substrings) in the prediction; those that are substrings of the gold class (and
    not the gold itself) are dropped, with metrics.py's remove-while-iterating (the element after a removed one is
    not examined); 1/len(matches) if the gold class is among them, else 0."""
    all_classes = kwargs.get("all_classes")
    if not all_classes:
        raise ValueError("classification_score (trec) needs all_classes=[...] (the task's class names)")
    em_match_list = [c for c in all_classes if c in prediction]
    for match_term in em_match_list:  # mutating while iterating: the official quirk, kept on purpose
        if match_term in ground_truth and match_term != ground_truth:
            em_match_list.remove(match_term)
    return 1.0 / len(em_match_list) if ground_truth in em_match_list else 0.0


def retrieval_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """passage_retrieval_en: gold "Paragraph N"; the share of the numbers in the prediction that equal N."""
    matches = re.findall(r"Paragraph (\d+)", ground_truth)
    if not matches:
        raise ValueError(f"retrieval_score: the gold answer {ground_truth!r} has no 'Paragraph N'")
    numbers = re.findall(r"\d+", prediction)
    right = sum(1 for n in numbers if str(n) == str(matches[0]))
    return 0.0 if not numbers else float(right / len(numbers))


def count_score(prediction: str, ground_truth, **kwargs) -> float:
    """passage_count: the share of the numbers in the prediction that equal the gold count."""
    numbers = re.findall(r"\d+", prediction)
    right = sum(1 for n in numbers if str(n) == str(ground_truth))
    return 0.0 if not numbers else float(right / len(numbers))


def code_sim_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """lcc / repobench-p: the first line (after leading newlines) with no "`", "#" or "//" (empty if none), then
    fuzzywuzzy's fuzz.ratio / 100 against the gold next line."""
    line = next((l for l in prediction.lstrip("\n").split("\n") if "`" not in l and "#" not in l and "//" not in l),
                "")
    return _metric_lib("fuzz").ratio(line, ground_truth) / 100


METRIC_FAMILIES = {
    "qa_f1": qa_f1_score, "rouge": rouge_score, "classification": classification_score,
    "retrieval": retrieval_score, "count": count_score, "code_sim": code_sim_score,
}
METRIC_OF = {  # eval.py's dataset2metric
    "narrativeqa": "qa_f1", "qasper": "qa_f1", "multifieldqa_en": "qa_f1", "hotpotqa": "qa_f1", "2wikimqa": "qa_f1",
    "musique": "qa_f1", "gov_report": "rouge", "qmsum": "rouge", "multi_news": "rouge", "trec": "classification",
    "triviaqa": "qa_f1", "samsum": "rouge", "passage_count": "count", "passage_retrieval_en": "retrieval",
    "lcc": "code_sim", "repobench-p": "code_sim",
}
METRICS = {t: METRIC_FAMILIES[m] for t, m in METRIC_OF.items()}  # task -> metric(prediction, ground_truth, **kw)


def postprocess(task: str, prediction: str) -> str:
    """eval.py: for trec, triviaqa and samsum only the first line (after leading newlines) is scored."""
    return prediction.lstrip("\n").split("\n")[0] if task in FIRST_LINE_TASKS else prediction


def score_sample(task: str, prediction: str, answers: list, all_classes=None) -> float:
    """One sample's score in [0, 1]: the best over its gold answers (eval.py's `scorer`)."""
    _check_task(task)
    prediction = postprocess(task, prediction)
    score = 0.0
    for ground_truth in answers:
        score = max(score, METRICS[task](prediction, ground_truth, all_classes=all_classes))
    return score


def task_score(task: str, predictions: list[str], answers: list[list], all_classes=None) -> float:
    """eval.py: round(100 * mean score, 2). all_classes: one list for all samples, or one per sample."""
    if not predictions or len(predictions) != len(answers):
        raise ValueError(f"task_score({task}): {len(predictions)} predictions for {len(answers)} answer lists")
    per_sample = isinstance(all_classes, (list, tuple)) and len(all_classes) == len(predictions) and \
        all(c is None or isinstance(c, (list, tuple)) for c in all_classes)
    total = 0.0
    for k, (p, a) in enumerate(zip(predictions, answers)):
        total += score_sample(task, p, a, all_classes[k] if per_sample else all_classes)
    return round(100 * total / len(predictions), 2)


# ======================================================================= data
def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown LongBench task {task!r}; the English tasks are {', '.join(TASKS)}")


def _check_tasks(tasks) -> tuple[str, ...]:
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks or TASKS)
    for t in tasks:
        _check_task(t)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks {list(tasks)}: a task is named twice")
    return tasks


def task_file(folder, task: str) -> Path | None:
    """Where load_task reads `task` in a data folder: `<folder>/<task>.jsonl`, else `<folder>/data/<task>.jsonl`
    (the official data.zip unpacked); None when neither is there."""
    folder = Path(folder).expanduser()
    return next((p for p in (folder / f"{task}.jsonl", folder / "data" / f"{task}.jsonl") if p.is_file()), None)


def check_source(source, tasks=None) -> None:
    """Refuse a data source that cannot give every one of `tasks` (default: all 16), before a model is loaded or
    anything is written: a FileNotFoundError naming the folder and what it lacks. "hub" is checked as each task
    loads (load_task)."""
    tasks = _check_tasks(tasks)
    if isinstance(source, str) and source == "hub":
        return
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"LongBench data folder not found: {folder} (expected a folder with one <task>.jsonl "
                                "per task, e.g. the official data.zip unpacked, or 'hub')")
    missing = [t for t in tasks if task_file(folder, t) is None]
    have = [t for t in TASKS if task_file(folder, t) is not None]
    if missing and not have:
        raise FileNotFoundError(f"LongBench data folder {folder} holds no task file (expected one <task>.jsonl per "
                                "task, e.g. hotpotqa.jsonl, there or under data/): give the folder of the official "
                                "data.zip unpacked, or 'hub'")
    if missing:
        raise FileNotFoundError(f"LongBench data folder {folder} has no {', '.join(f'{t}.jsonl' for t in missing)} "
                                f"(nor under data/), expected for the tasks asked for; it has {', '.join(have)}: ask "
                                "only for those, or give the folder of the official data.zip unpacked")


def _from_hub(task: str) -> list[dict]:
    try:
        from datasets import load_dataset
        ds = load_dataset(HUB_ID, task, split="test")
        return [dict(r) for r in ds]
    except Exception as e:  # noqa: BLE001 - offline, no datasets, a script-based dataset refused: all the same fix
        raise RuntimeError(f"could not load {HUB_ID} task {task!r} from the hub ({type(e).__name__}: {e}); pass a "
                           "local folder instead: the official data.zip unpacked, with <task>.jsonl files") from e


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{k} is not a JSON line ({e})") from None
            if not isinstance(rows[-1], dict):
                raise ValueError(f"{path}:{k} is not a JSON object")
    return rows


def load_task(source, task: str, limit: int | None = None) -> list[dict]:
    """The samples of `task`, in the official order (the first `limit` of them).

    source: a folder in the official release layout (`<folder>/<task>.jsonl`, or `<folder>/data/<task>.jsonl`
    as data.zip unpacks), or the string "hub" for datasets.load_dataset("THUDM/LongBench", task, split="test")."""
    _check_task(task)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"load_task: limit must be a positive int or None, got {limit!r}")
    if isinstance(source, str) and source == "hub":
        rows, where = _from_hub(task), f"{HUB_ID}/{task}"
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"LongBench data folder not found: {folder} (give a folder with <task>.jsonl "
                                    "files, e.g. the official data.zip unpacked, or source='hub')")
        path = task_file(folder, task)
        if path is None:
            raise FileNotFoundError(f"LongBench task file not found: {folder / f'{task}.jsonl'} (the folder {folder} "
                                    f"has no {task}.jsonl)")
        rows, where = _read_jsonl(path), str(path)
    if not rows:
        raise ValueError(f"{where}: no samples")
    rows = rows[:limit] if limit else rows
    seen = set()
    for k, row in enumerate(rows, 1):
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"{where}: sample {k} has no field {missing[0]!r}"
                             + (f" (nor {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
                             + f"; LongBench samples have {', '.join(FIELDS)}")
        if not isinstance(row["answers"], list) or not row["answers"]:
            raise ValueError(f"{where}: sample {k} field 'answers' must be a non-empty list, got {row['answers']!r}")
        if row["dataset"] != task:
            raise ValueError(f"{where}: sample {k} belongs to dataset {row['dataset']!r}, not {task!r}")
        if task == "trec" and not row["all_classes"]:
            raise ValueError(f"{where}: sample {k} has no 'all_classes' (trec's class names)")
        if row["_id"] in seen:
            raise ValueError(f"{where}: sample {k} repeats _id {row['_id']!r}")
        seen.add(row["_id"])
    return rows


# ======================================================================= prompts
def default_max_length(model) -> int:
    """pred.py's model2maxlen rule: min(31500, (max positions - 500) rounded down to a multiple of 500)."""
    cfg = getattr(model, "config", model)
    cfg = getattr(cfg, "text_config", cfg) if not hasattr(cfg, "max_position_embeddings") else cfg
    mpe = getattr(cfg, "max_position_embeddings", None)
    if mpe is None:
        return 31500
    n = min(31500, (int(mpe) - 500) // 500 * 500)
    if n < 500:
        raise ValueError(f"the model has {mpe} positions: too few for a LongBench default; pass max_length")
    return n


def truncate_middle(tok, prompt: str, max_length: int) -> str:
    """pred.py: a prompt over max_length tokens becomes its first max_length//2 tokens + its last max_length//2
    tokens, each half decoded back to text (special tokens skipped)."""
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    ids = tok(prompt, truncation=False, return_tensors="pt").input_ids[0]
    if len(ids) > max_length:
        half = int(max_length / 2)
        prompt = tok.decode(ids[:half], skip_special_tokens=True) + tok.decode(ids[-half:], skip_special_tokens=True)
    return prompt


def uses_chat_template(tok, task: str) -> bool:
    return task not in NO_CHAT_TASKS and bool(getattr(tok, "chat_template", None))


def format_prompt(tok, sample: dict, task: str, max_length: int | None) -> str:
    """The final prompt text: the task template filled, middle-truncated, then (except for trec, triviaqa,
    samsum, lcc, repobench-p) wrapped in the tokenizer's chat template as one user turn."""
    _check_task(task)
    prompt = PROMPTS[task].format(**sample)
    if max_length is not None:
        prompt = truncate_middle(tok, prompt, max_length)
    if uses_chat_template(tok, task):
        prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return prompt


def build_prompt(tok, sample: dict, task: str, max_length: int | None) -> torch.Tensor:
    """(1, T) input ids of `sample`'s prompt (format_prompt, then tokenised; a chat-templated text already holds
    its special tokens, a raw one gets the tokenizer's, as pred.py's tokenizer(prompt))."""
    text = format_prompt(tok, sample, task, max_length)
    return tok(text, truncation=False, add_special_tokens=not uses_chat_template(tok, task),
               return_tensors="pt").input_ids


# ======================================================================= generation
def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def generation_kwargs(model, tok, task: str) -> dict:
    """model.generate kwargs: greedy, MAXLEN[task] new tokens; samsum stops at the end of a line (pred.py)."""
    gc = getattr(model, "generation_config", None)
    kw = dict(max_new_tokens=MAXLEN[task], do_sample=False, num_beams=1, pad_token_id=pad_id(tok))
    if gc is not None:
        if getattr(gc, "repetition_penalty", None) not in (None, 1.0):
            kw["repetition_penalty"] = 1.0
        for k in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            if getattr(gc, k, None) is not None:
                kw[k] = None  # sampling settings: not used by greedy search (and not warned about)
    if task == "samsum":
        newline = tok.encode("\n", add_special_tokens=False)[-1]
        eos = [tok.eos_token_id, newline] + _as_list(getattr(gc, "eos_token_id", None))
        kw["eos_token_id"] = list(dict.fromkeys(e for e in eos if e is not None))
        kw["min_new_tokens"] = 1  # pred.py: min_length = context_length + 1
    return kw


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PrefillTimer:
    """Times the first forward of the model inside the block (generate's prefill): from before every other
    pre-hook to after every other hook, synchronising CUDA at both ends."""

    def __init__(self, model, device):
        self.model, self.device, self.seconds, self._t0, self._hooks = model, device, None, None, []

    def __enter__(self):
        self._hooks = [self.model.register_forward_pre_hook(self._pre, prepend=True),
                       self.model.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        return False

    def _pre(self, module, args):
        if self._t0 is None:
            _sync(self.device)
            self._t0 = time.perf_counter()

    def _post(self, module, args, output):
        if self.seconds is None and self._t0 is not None:
            _sync(self.device)
            self.seconds = time.perf_counter() - self._t0


@torch.no_grad()
def generate_answer(model, tok, ids: torch.Tensor, task: str) -> dict:
    """The greedy answer to (1, T) ids: {"pred", "prompt_len", "new_tokens", "prefill_s", "gen_s"} (pred decoded
    with special tokens skipped and otherwise as generated: post-processing is the scorer's)."""
    device = next(model.parameters()).device
    ids = ids.to(device)
    kw = generation_kwargs(model, tok, task)
    with _PrefillTimer(model, device) as timer:
        _sync(device)
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        _sync(device)
        gen_s = time.perf_counter() - t0
    new = out[0, ids.shape[1]:]
    return {"pred": tok.decode(new, skip_special_tokens=True), "prompt_len": int(ids.shape[1]),
            "new_tokens": int(new.shape[0]), "prefill_s": timer.seconds, "gen_s": gen_s}


@torch.no_grad()
def generate_answer_h2o(model, tok, ids: torch.Tensor, task: str, scorer, config, kv_budget: float,
                        warm: bool) -> tuple[dict, object]:
    """generate_answer's record (and the pruned prefill's stats, None for dense) from the project's decode loop with
    H2O at kv_budget (sdtp_lib.speed.h2o), with generate's stop rules: MAXLEN[task] new tokens at most, stopping
    at the generation config's end-of-sequence ids (samsum: also the newline, and never as the first token).
    prefill_s is the loop's prefill (H2O's attention column sums included), gen_s the whole call; warm: an untimed
    prefill of the same prompt first."""
    from ..speed.decode import greedy_generate
    device = next(model.parameters()).device
    ids = ids.to(device)
    kw = generation_kwargs(model, tok, task)
    stops = _as_list(kw.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None)))
    spans = span_rule(config, tok) if scorer is not None else None
    if warm:
        with pruning(model, scorer, config, spans=spans) if scorer is not None else contextlib.nullcontext():
            model(ids, logits_to_keep=1)
    res = greedy_generate(model, ids, kw["max_new_tokens"], scorer, config, kv_budget=kv_budget, stop_ids=stops,
                          suppress_first=stops if kw.get("min_new_tokens") else (), spans=spans)
    new = res.tokens[0, :res.new_tokens]
    return {"pred": tok.decode(new, skip_special_tokens=True), "prompt_len": int(ids.shape[1]),
            "new_tokens": res.new_tokens, "prefill_s": res.timings["prefill_s"], "gen_s": res.timings["e2e_s"],
            "kv_bytes": res.kv_bytes, "decode_ms_per_token": res.timings["decode_ms_per_token"]}, res.stats


def _hf_efficiency(model, rec: dict, stats) -> dict:
    """KV bytes HF's cache holds when generate ends (each layer's kept prompt tokens + the new tokens fed back) and
    decode ms/token ((gen_s - prefill_s) over the tokens after the first; None for a one-token answer)."""
    from ..speed.decode import kv_bytes
    kept = stats.kept_per_layer if stats is not None else [rec["prompt_len"]] * model.config.num_hidden_layers
    n = rec["new_tokens"]
    ms = 1000 * (rec["gen_s"] - rec["prefill_s"]) / (n - 1) if n > 1 and rec["prefill_s"] is not None else None
    return {"kv_bytes": kv_bytes(model, [k + max(0, n - 1) for k in kept]), "decode_ms_per_token": ms}


# ======================================================================= scorers (dense / SDTP variants)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+=-]*$")


class _Variant:
    def __init__(self, name, scorer=None, config: SDTPConfig | None = None, label="dense", scorer_id="dense",
                 kv_budget: float | None = None):
        self.name, self.scorer, self.config, self.label, self.scorer_id = name, scorer, config, label, scorer_id
        self.kv_budget = kv_budget  # H2O's KV budget: decoded with the project's loop (generate_answer_h2o)

    @property
    def dense(self) -> bool:
        return self.config is None

    def describe(self) -> dict:
        h2o = {} if self.kv_budget is None else {"kv_budget": self.kv_budget}
        if self.dense:
            return {"kind": "dense", **h2o}
        c = self.config
        return {"kind": "sdtp", "scorer": self.label, "scorer_id": self.scorer_id, "keep_ratio": c.keep_ratio,
                "stage_layers": list(c.stage_layers), "num_sink": c.num_sink, "local_frac": c.local_frac,
                **({"span_max": c.span_max} if c.span_max else {}), **h2o}

    @property
    def oracle(self) -> bool:
        return isinstance(self.scorer, str) and self.scorer == ORACLE

    def context(self, model, tok):
        """The block around all of a task's samples (none for dense, for the oracle, built per sample, and with an H2O
        budget: the decode loop opens its own)."""
        if self.dense or self.oracle or self.kv_budget:
            return contextlib.nullcontext(None)
        return pruning(model, self.scorer, self.config, spans=span_rule(self.config, tok))

    def sample_scorer(self, model, tok, ids: torch.Tensor, sample: dict):
        """The scorer of one sample: the oracle's, from the saliency of the sample's first gold answer on the dense
        model; else the variant's."""
        if not self.oracle:
            return self.scorer
        answer = torch.tensor([tok.encode(str(_as_list(sample["answers"])[0]), add_special_tokens=False)])  # (1, A)
        return SaliencyOracle.for_answer(model, ids, answer, self.config)

    def sample_context(self, model, tok, ids: torch.Tensor, sample: dict, stats):
        """The block around one sample: the oracle's own; else the task's block (its stats)."""
        if not self.oracle:
            return contextlib.nullcontext(stats)
        return pruning(model, self.sample_scorer(model, tok, ids, sample), self.config,
                       spans=span_rule(self.config, tok))


def _scorer_id(scorer) -> str:
    """What identifies a scorer across runs: a predictor's weights hash, a policy's name, a callable's name."""
    from ..scorers.predictor import TokenPredictor
    if isinstance(scorer, TokenPredictor):
        h = hashlib.sha256()
        for k, v in sorted(scorer.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        return f"predictor sha256:{h.hexdigest()[:16]}"
    if isinstance(scorer, str):
        return scorer
    qual = getattr(scorer, "__qualname__", None) or type(scorer).__qualname__
    return f"{getattr(scorer, '__module__', None) or type(scorer).__module__}.{qual}"


def _is_low(name: str) -> bool:
    return re.split(r"[:@]", name)[0].endswith("-low")


def _resolve_one(model, name: str, value, keep_ratio: float, kv_budget: float | None = None) -> _Variant:
    if not _NAME.match(name) or name == "tasks":
        raise ValueError(f"scorer name {name!r}: use letters, digits and . _ @ : + = - (it names a folder)")
    if value is None:
        return _Variant(name, kv_budget=kv_budget)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], SDTPConfig):
        value, config = value
    else:
        config = SDTPConfig.for_model(model, keep_ratio=keep_ratio, num_stages=VARIANTS["sdtp-low" if _is_low(name)
                                                                                         else "sdtp"])
    if isinstance(value, str) and value == ORACLE:  # built per sample from its answer (_Variant.sample_context)
        return _Variant(name, ORACLE, config, "saliency oracle (first gold answer)", ORACLE, kv_budget)
    if isinstance(value, str):
        scorer, label = make_scorer_for(value, model, config, name)
    else:
        scorer, label = value, type(value).__name__
    return _Variant(name, scorer, config, label, _scorer_id(scorer), kv_budget)


def resolve_scorers(model, scorers, keep_ratio: float = 0.9) -> dict[str, _Variant]:
    """{name: variant} from a dict {name: None (dense) | scorer | (scorer, SDTPConfig)} (a name ending in "-low"
    gets 5 stages, others 10) or from a list of spec strings ("dense", "sdtp:norm", "sdtp-low@0.8:auto", ...; an
    H2O budget "+H<b>" only this way: "dense+H0.4", "sdtp+H0.4:norm")."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")
    if scorers is None:
        scorers = {"dense": None}
    elif isinstance(scorers, str):
        scorers = [scorers]
    budgets = {}
    if isinstance(scorers, dict):
        for name in scorers:
            if "+H" in str(name):
                raise ValueError(f"scorer name {name!r}: an H2O budget (+H) is given as a spec string in a list "
                                 "(e.g. ['dense+H0.4', 'sdtp+H0.4:norm']), not as a dict name")
    else:
        items = {}
        for spec in scorers:
            variant, sc = parse_spec(spec)
            name = re.sub(r"[^A-Za-z0-9._@:+=-]", "_", spec)
            if name in items:
                raise ValueError(f"scorer {spec!r} is given twice")
            config = variant.config(model, keep_ratio)
            items[name] = None if config is None else (sc, config)
            budgets[name] = variant.kv_budget
        scorers = items
    if not scorers:
        raise ValueError("no scorers given: pass e.g. {'dense': None, 'sdtp': 'auto'}")
    dirs = [scorer_dir(n) for n in scorers]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"scorers {list(scorers)} would share a predictions folder ({dirs}); rename one")
    return {name: _resolve_one(model, name, value, keep_ratio, budgets.get(name)) for name, value in scorers.items()}


# ======================================================================= files
def _write_json(path: Path, obj) -> None:
    """Atomic JSON write (ranks of one run may write the same file at once: atomic_write_text's temp is per process)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def scorer_dir(scorer: str) -> str:
    """The folder of a scorer's predictions: its name made portable (`scorers.file_stem`: ':' and '/' as '_')."""
    return file_stem(scorer)


def pred_path(out_dir, scorer: str, task: str, rank: int = 0, world_size: int = 1) -> Path:
    name = f"{task}.jsonl" if world_size == 1 else f"{task}.rank{rank}.jsonl"
    return Path(out_dir) / scorer_dir(scorer) / name


def read_predictions(path, repair: bool = False) -> list[dict]:
    """The records of a prediction file, `path` or its gzipped `path.gz` (neither: []); a last line cut short by a
    crash is dropped (repair) or refused."""
    return read_jsonl(path, repair=repair, missing_ok=True)


def _rank_files(out: Path, scorer: str, task: str) -> list[Path]:
    folder = out / scorer_dir(scorer)
    return sorted(folder.glob(f"{task}.rank*.jsonl")) + sorted(folder.glob(f"{task}.rank*.jsonl.gz"))


def _index(rows: list[dict], path: Path, allowed) -> dict:
    got = {}
    for row in rows:
        i = row.get("_id")
        if allowed is not None and i not in allowed:
            raise ValueError(f"{path}: sample {i!r} does not belong here (another data set, limit order or "
                             "world_size wrote it)")
        if i in got:
            raise ValueError(f"{path}: sample {i!r} appears twice")
        got[i] = row
    return got


def _settings(model, tok, max_length: int, world_size: int, variants: dict, warmup: str) -> dict:
    from ..models import config_fingerprint
    cfg = model.config
    tmpl = getattr(tok, "chat_template", None)
    tmpl = tmpl if isinstance(tmpl, str) or tmpl is None else json.dumps(tmpl, sort_keys=True)
    return {"format": FORMAT, "version": VERSION,
            "protocol": "LongBench v1 English, official prompts / truncation / chat rule / metrics; greedy",
            "model": {"id": str(getattr(cfg, "sdtp_model_id", None) or cfg.name_or_path),
                      "fingerprint": config_fingerprint(cfg),
                      "dtype": str(next(model.parameters()).dtype).replace("torch.", "")},
            "tokenizer": {"name": getattr(tok, "name_or_path", "") or type(tok).__name__, "size": len(tok),
                          "chat_template_sha256": hashlib.sha256(tmpl.encode()).hexdigest()[:16] if tmpl else None},
            "max_length": int(max_length), "world_size": int(world_size), "warmup": warmup,
            "scorers": {n: v.describe() for n, v in variants.items()}}


def _check_config(out: Path, settings: dict) -> dict:
    """Write config.json, or check the folder's: refuse other settings; new scorers are added."""
    path = out / "config.json"
    if not path.exists():
        if any(out.glob("*/*.jsonl*")):  # plain or gzipped
            raise ValueError(f"{out} holds prediction files but no config.json: cannot tell what made them; use "
                             "another out_dir")
        _write_json(path, settings)
        return settings
    old = _read_json(path)
    diff = [k for k in sorted(set(old) | set(settings)) if k != "scorers" and old.get(k) != settings.get(k)]
    same = lambda a, b: {k: v for k, v in a.items() if k != "scorer"} == {k: v for k, v in b.items() if k != "scorer"}
    diff += [f"scorers.{n}" for n, d in settings["scorers"].items() if n in old.get("scorers", {})
             and not same(old["scorers"][n], d)]  # "scorer" is a label: scorer_id identifies it
    if diff:
        detail = "; ".join(f"{k}: {_get(old, k)!r} -> {_get(settings, k)!r}" for k in diff)
        raise ValueError(f"{out} holds LongBench predictions made with other settings ({detail}); use another "
                         "out_dir, or another scorer name for another scorer")
    new = [n for n in settings["scorers"] if n not in old["scorers"]]
    if new:
        old["scorers"].update({n: settings["scorers"][n] for n in new})
        _write_json(path, old)
    return old


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _update_manifest(out: Path, task: str, ids: list) -> list:
    """tasks/<task>.json holds the task's sample ids in the official order (the longest run so far)."""
    path = out / "tasks" / f"{task}.json"
    if path.exists():
        old = _read_json(path)["ids"]
        if old[:len(ids)] == ids:
            return old
        if ids[:len(old)] != old:
            raise ValueError(f"{out}: the {task} samples differ from those this folder was run on ({path}); "
                             "use another out_dir")
    _write_json(path, {"task": task, "ids": ids})
    return ids


def _manifest(out: Path, task: str) -> list | None:
    path = out / "tasks" / f"{task}.json"
    return _read_json(path)["ids"] if path.exists() else None


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_ordered(path: Path, rows: list[dict], order: list) -> Path:
    """The finished file, in the official order, gzipped (path + ".gz", replacing path)."""
    pos = {i: k for k, i in enumerate(order)}
    return write_jsonl(path, sorted(rows, key=lambda r: pos[r["_id"]]))


# ======================================================================= runner
def run_longbench(model, tok, tasks, source, out_dir, scorers=None, keep_ratio: float = 0.9,
                  limit: int | None = None, max_length: int | None = None, rank: int = 0, world_size: int = 1,
                  warmup: str = "sample", progress: bool = True) -> dict:
    """Greedy answers to every sample of `tasks` (this rank's share: sample i where i % world_size == rank) for
    every scorer, appended to out_dir/<scorer>/<task>[.rank<r>].jsonl; samples already there are skipped.

    scorers: {name: None (dense) | a scorer (policy name, "auto", "predictor", predictor path, TokenPredictor,
    callable) | (scorer, SDTPConfig)}; SDTP variants generate inside pruning(model, scorer, config) with
    SDTPConfig.for_model(model, keep_ratio, 10 stages, or 5 for a name ending in "-low"). Or a list of the
    project's spec strings ("dense", "sdtp:norm", "sdtp-low:auto"). Default: dense only.
    max_length: prompt tokens before the chat template (None: default_max_length(model)).
    warmup: "sample" (an untimed prefill of each prompt before its timed generation: every shape is seen once
    before it is timed, e.g. cuDNN attention plans are built per shape), "once" (one per scorer) or "none".
    Returns {scorer: {task: {"generated": n, "skipped": n, "file": path}}}."""
    from tqdm.auto import tqdm
    tasks = _check_tasks(tasks)
    check_source(source, tasks)  # every task's file is there: refuse before writing anything
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1 or \
            not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"run_longbench: rank {rank!r} is not in [0, world_size={world_size!r})")
    if warmup not in WARMUPS:
        raise ValueError(f"warmup must be one of {WARMUPS}, got {warmup!r}")
    max_length = int(max_length) if max_length is not None else default_max_length(model)
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = resolve_scorers(model, scorers, keep_ratio)
    settings = _settings(model, tok, max_length, world_size, variants, warmup)
    _check_config(out, settings)
    summary = {name: {} for name in variants}
    warm = set()
    for task in tasks:
        data = load_task(source, task, limit)
        ids_all = _update_manifest(out, task, [s["_id"] for s in data])
        mine = [s for k, s in enumerate(data) if k % world_size == rank]
        allowed = {i for k, i in enumerate(ids_all) if k % world_size == rank}
        for name, var in variants.items():
            path = pred_path(out, name, task, rank, world_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            done = _index(read_predictions(path, repair=True), path, allowed)
            todo = [s for s in mine if s["_id"] not in done]
            summary[name][task] = {"generated": len(todo), "skipped": len(mine) - len(todo), "file": str(path)}
            log.info("longbench %s / %s: rank %d/%d, %d samples, %d done", task, name, rank, world_size, len(mine),
                     len(mine) - len(todo))
            if todo:
                decompress_jsonl(path)  # a finished (gzipped) file goes on as plain lines
                with var.context(model, tok) as stats, tqdm(total=len(todo), disable=not progress,
                                                       desc=f"{task} {name}") as bar:
                    for s in todo:
                        ids = build_prompt(tok, s, task, max_length)
                        warm_now = warmup == "sample" or (warmup == "once" and name not in warm)
                        if var.kv_budget is not None:  # the project's loop with H2O (its own pruning block)
                            rec, st = generate_answer_h2o(model, tok, ids, task, var.sample_scorer(model, tok, ids, s),
                                                          var.config, var.kv_budget, warm_now)
                            warm.add(name)
                        else:
                            with var.sample_context(model, tok, ids, s, stats) as st:  # the oracle: one block each
                                if warm_now:
                                    with torch.no_grad():  # untimed prefill of the same shape
                                        model(ids.to(next(model.parameters()).device), logits_to_keep=1)
                                    warm.add(name)
                                before = st.num_prefills if st is not None else 0
                                rec = generate_answer(model, tok, ids, task)
                            if st is not None and st.num_prefills != before + 1:
                                raise RuntimeError(f"{name}: the prompt was not prefilled through the pruning engine")
                            rec.update(_hf_efficiency(model, rec, st))
                        comp = st.compression if st is not None else 1.0
                        flops = st.flops_pruned / st.flops_dense if st is not None else 1.0
                        _append(path, {"_id": s["_id"], "pred": rec["pred"], "answers": s["answers"],
                                       "all_classes": s["all_classes"], "length": s["length"],
                                       "prompt_len": rec["prompt_len"], "new_tokens": rec["new_tokens"],
                                       "compression": comp, "flops_ratio": flops, "prefill_s": rec["prefill_s"],
                                       "gen_s": rec["gen_s"], "kv_bytes": rec["kv_bytes"],
                                       "decode_ms_per_token": rec["decode_ms_per_token"]})
                        bar.update(1)
            if world_size == 1:
                rows = read_predictions(path)
                if [r["_id"] for r in rows] != [i for i in ids_all if i in {r["_id"] for r in rows}]:
                    _write_ordered(path, rows, ids_all)  # a resumed sample went to the end: restore the order
            if find_jsonl(path) is not None:  # every sample asked for is answered: gzip the file
                summary[name][task]["file"] = str(compress_jsonl(path))
    return summary


def merge(out_dir) -> dict:
    """Join the rank files of a sharded run into out_dir/<scorer>/<task>.jsonl, in the official order; a missing
    rank file, a missing or a duplicated sample is an error. Returns {scorer: {task: merged file}}."""
    out = Path(out_dir)
    if not (out / "config.json").exists():
        raise ValueError(f"{out / 'config.json'} is missing: not a LongBench run folder")
    cfg = _read_json(out / "config.json")
    ws = cfg["world_size"]
    merged = {}
    for name in cfg["scorers"]:
        for task in TASKS:
            ids = _manifest(out, task)
            if ids is None or ws == 1:
                continue
            paths = [pred_path(out, name, task, r, ws) for r in range(ws)]
            if not any(find_jsonl(p) for p in paths):
                continue  # this scorer did not run this task
            got, where = {}, {}
            for r, p in enumerate(paths):
                if find_jsonl(p) is None:
                    raise ValueError(f"merge: {p} is missing (rank {r} of {ws} has not run {task} for {name})")
                for i, row in _index(read_predictions(p), p, set(ids)).items():
                    if i in got:
                        raise ValueError(f"merge: sample {i!r} of {task} appears in both {where[i]} and {p}")
                    got[i], where[i] = row, p
            missing = [i for i in ids if i not in got]
            if missing:
                raise ValueError(f"merge: {name}/{task} lacks {len(missing)} of {len(ids)} samples (first: "
                                 f"{missing[:3]}); finish every rank first")
            path = _write_ordered(pred_path(out, name, task), list(got.values()), ids)
            merged.setdefault(name, {})[task] = str(path)
    return merged


# ======================================================================= scores
def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def score_longbench(out_dir, partial: bool = False, write: bool = True) -> dict:
    """Official per-task scores (mean x 100, 2 decimals), category averages, the average over tasks and over
    categories, per scorer; mean compression / prefill seconds / prompt tokens and the prefill speedup over the
    dense scorer (on the samples both have). Writes results.json and results.md (atomically) unless write=False.
    A task with fewer predictions than samples is an error unless partial=True (then it is scored as it is and
    marked)."""
    out = Path(out_dir)
    if not (out / "config.json").exists():
        raise ValueError(f"{out / 'config.json'} is missing: not a LongBench run folder")
    cfg = _read_json(out / "config.json")
    tasks = [t for t in TASKS if _manifest(out, t) is not None]
    res = {"format": FORMAT, "version": VERSION, "out_dir": str(out), "config": cfg,
           "provenance": {**provenance(), "metric_libraries": metric_libraries()}, "tasks": tasks,
           "dense": next((n for n, d in cfg["scorers"].items() if d["kind"] == "dense"
                           and d.get("kv_budget") is None), None), "scorers": {}}
    records = {}
    for name in cfg["scorers"]:
        per_task, recs = {}, {}
        for task in tasks:
            ids = _manifest(out, task)
            path = pred_path(out, name, task)
            if find_jsonl(path) is None:
                if _rank_files(out, name, task):
                    raise ValueError(f"{path} is missing but rank files exist: run merge({str(out)!r}) first")
                continue
            rows = list(_index(read_predictions(path), path, set(ids)).values())
            if not rows:
                continue
            if len(rows) < len(ids) and not partial:
                raise ValueError(f"{path}: {len(rows)} of {len(ids)} samples; finish the run, or score with "
                                 "partial=True")
            sc = task_score(task, [r["pred"] for r in rows], [r["answers"] for r in rows],
                            [r.get("all_classes") for r in rows])
            per_task[task] = {"score": sc, "n": len(rows), "expected": len(ids), "category": CATEGORY_OF[task],
                              "mean_compression": _mean(r.get("compression") for r in rows),
                              "mean_prefill_s": _mean(r.get("prefill_s") for r in rows),
                              "mean_prompt_len": _mean(r.get("prompt_len") for r in rows)}
            recs.update({(task, r["_id"]): r for r in rows})
        cats = {}
        for c, ts in CATEGORIES.items():
            got = [per_task[t]["score"] for t in ts if t in per_task]
            if got:
                cats[c] = {"score": round(sum(got) / len(got), 2), "n_tasks": len(got), "of": len(ts)}
        all_recs = list(recs.values())
        res["scorers"][name] = {
            "kind": cfg["scorers"][name]["kind"], "tasks": per_task, "categories": cats,
            "average": round(_mean(v["score"] for v in per_task.values()), 2) if per_task else None,
            "category_average": round(_mean(v["score"] for v in cats.values()), 2) if cats else None,
            "n_tasks": len(per_task), "n_samples": len(all_recs),
            "partial": any(v["n"] < v["expected"] for v in per_task.values()),
            "mean_compression": _mean(r.get("compression") for r in all_recs),
            "mean_prefill_s": _mean(r.get("prefill_s") for r in all_recs),
            "mean_prompt_len": _mean(r.get("prompt_len") for r in all_recs)}
        if any(r.get("kv_bytes") is not None for r in all_recs):  # older predictions have none
            budget = cfg["scorers"][name].get("kv_budget")
            res["scorers"][name].update(kv_budget=budget, decode_loop="hf_generate" if budget is None else "sdtp",
                                        mean_kv_bytes=_mean(r.get("kv_bytes") for r in all_recs),
                                        mean_decode_ms_per_token=_mean(r.get("decode_ms_per_token") for r in all_recs))
        records[name] = recs
    dense = res["dense"]
    for name, s in res["scorers"].items():
        s["prefill_speedup_vs_dense"] = s["e2e_speedup_vs_dense"] = None
        if dense is not None and name != dense:
            both = [k for k in records[name] if k in records[dense]]
            for key, field in (("prefill_speedup_vs_dense", "prefill_s"), ("e2e_speedup_vs_dense", "gen_s")):
                t_d = sum(records[dense][k].get(field) or 0.0 for k in both)
                t_s = sum(records[name][k].get(field) or 0.0 for k in both)
                s[key] = t_d / t_s if both and t_s > 0 else None
            s["speedup_samples"] = len(both)
    if write:
        atomic_write_text(out / "results.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(out / "results.md", markdown(res) + "\n")
    return res


def _fmt(x, spec=".2f", none="-") -> str:
    return none if x is None else format(x, spec)


def markdown(result: dict) -> str:
    """Per-task scores (rows) x scorers (columns), category and overall averages, then efficiency per scorer."""
    names = list(result["scorers"])
    sc = result["scorers"]
    lines = [f"LongBench v1 (English), official metrics x 100. max_length {result['config']['max_length']}, model "
             f"{result['config']['model']['id']}.", "",
             "| category | task | n | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for task in result["tasks"]:
        cells, n = [], None
        for name in names:
            t = sc[name]["tasks"].get(task)
            n = n or (t and t["expected"])
            cells.append("-" if t is None else f"{t['score']:.2f}" + (f" ({t['n']}/{t['expected']})"
                                                                       if t["n"] < t["expected"] else ""))
        lines.append(f"| {CATEGORY_OF[task]} | {task} | {n or '-'} | " + " | ".join(cells) + " |")
    for c, ts in CATEGORIES.items():
        if any(c in sc[name]["categories"] for name in names):
            cells = [(lambda v: "-" if v is None else f"{v['score']:.2f}"
                      + (f" ({v['n_tasks']}/{v['of']} tasks)" if v["n_tasks"] < v["of"] else ""))(
                sc[name]["categories"].get(c)) for name in names]
            lines.append(f"| **{c}** | average | | " + " | ".join(cells) + " |")
    lines.append("| **all** | average over tasks | | " + " | ".join(
        f"{_fmt(sc[n]['average'])} ({sc[n]['n_tasks']} tasks)" for n in names) + " |")
    lines.append("| **all** | average over categories | | " + " | ".join(
        f"{_fmt(sc[n]['category_average'])} ({len(sc[n]['categories'])} categories)" for n in names) + " |")
    kv = any("mean_kv_bytes" in sc[n] for n in names)  # predictions made before the KV columns have none
    lines += ["", "| scorer | samples | mean prompt tokens | mean compression | mean prefill s | "
              "prefill speedup vs dense | end-to-end speedup vs dense |" + (" KV at the end, MiB | decode ms/token |"
                                                                         if kv else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|" if kv else "")]
    speed = lambda s, k: "(baseline)" if n == result["dense"] else f"{s[k]:.2f}x" if s.get(k) else "-"  # noqa: E731
    for n in names:
        s = sc[n]
        lines.append(f"| {n} | {s['n_samples']} | {_fmt(s['mean_prompt_len'], '.0f')} | "
                     f"{_fmt(s['mean_compression'], '.2f')}x | {_fmt(s['mean_prefill_s'], '.4f')} | "
                     f"{speed(s, 'prefill_speedup_vs_dense')} | {speed(s, 'e2e_speedup_vs_dense')} |" + (
                         f" {_fmt(s.get('mean_kv_bytes') and s['mean_kv_bytes'] / 2 ** 20, '.2f')} | "
                         f"{_fmt(s.get('mean_decode_ms_per_token'), '.2f')} |" if kv else ""))
    lines += ["", "Speedups: total time over the samples both scorers answered; end-to-end is the whole greedy generation, "
              "so it also counts answers of different lengths." + (
                  " KV: sum over layers of the cached tokens x 2 x KV heads x head dim x dtype bytes when decoding "
                  "ends; decode ms/token: HF generate's (whole call - prefill) per token after the first, or the "
                  "project's loop for H2O scorers (+H<b>)." if kv else "")]
    return "\n".join(lines)


# ======================================================================= command line
PROG = "sdtp longbench"  # the command line's verb (python -m sdtp_lib longbench ...)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of `sdtp longbench {run,merge,score} ...` (the old `python -m sdtp_lib.eval.longbench` too)."""
    p = argparse.ArgumentParser(prog=prog, description="LongBench v1, the 16 English tasks, with the official "
                                "protocol (THUDM/LongBench), dense and pruned: run, then score.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run,merge,score}")
    r = sub.add_parser("run", help="generate predictions (resumable; one rank of a sharded run)",
                       epilog="Data parallel: accelerate launch --multi_gpu --num_processes N -m sdtp_lib longbench "
                              "run ... (every process runs its share of the samples; rank 0 merges and scores).")
    r.add_argument("--model", required=True, help="a load_model spec or a local HF checkpoint")
    r.add_argument("--data", required=True, help="folder with <task>.jsonl (official layout), or 'hub'")
    r.add_argument("--out", required=True)
    r.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK")
    r.add_argument("--scorers", nargs="+", default=["dense", "sdtp:auto", "sdtp-low:auto"],
                   help="'dense[+H<b>]' or '<sdtp|sdtp-low>[@<r>|@<c>x][+L<layer>][+R<fraction>][+S<stages>][+H<b>]:"
                        "<policy|auto|predictor|path>' (+H<b>: H2O KV budget b in (0, 1] in decoding)")
    r.add_argument("--kv-budget", type=float, default=None, metavar="B",
                   help="also run every given scorer with H2O at KV budget B (each spec side by side with its +H<B>)")
    r.add_argument("--keep-ratio", type=float, default=0.9)
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--max-length", type=int, default=None)
    r.add_argument("--rank", type=int, default=0, help="this shard (default: from accelerate launch, else 0)")
    r.add_argument("--world-size", type=int, default=1, help="shards (default: from accelerate launch, else 1)")
    r.add_argument("--dtype", default=None)
    r.add_argument("--device", default="auto")
    r.add_argument("--attn", default="sdpa", choices=ATTN_IMPLEMENTATIONS, help="attention backend")
    r.add_argument("--warmup", default="sample", choices=WARMUPS)
    m = sub.add_parser("merge", help="join the rank files of a sharded run")
    m.add_argument("--out", required=True)
    s = sub.add_parser("score", help="official scores -> results.json / results.md")
    s.add_argument("--out", required=True)
    s.add_argument("--partial", action="store_true")
    return p


def main(argv=None, prog: str = PROG) -> int:
    """`sdtp longbench {run,merge,score} ...`: argv without the verb (None: sys.argv[1:]). Bad input is a ValueError
    / FileNotFoundError from the library (the command line prints it as one line), or argparse's SystemExit."""
    p = build_parser(prog)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.cmd == "run":
        from ..models import load_model, resolve_device
        from .distributed import launched
        shard = launched()  # accelerate launch: every process runs its share, rank 0 merges and scores
        if shard.world_size > 1 and (a.rank, a.world_size) not in ((0, 1), (shard.rank, shard.world_size)):
            p.error(f"--rank {a.rank} --world-size {a.world_size} contradict accelerate launch (rank "
                    f"{shard.rank} of {shard.world_size}); leave them out")
        rank, world = (shard.rank, shard.world_size) if shard.world_size > 1 else (a.rank, a.world_size)
        check_source(a.data, a.tasks)  # before the model loads
        with_budgets(a.scorers, a.kv_budget)  # a bad spec or budget too
        model, tok = load_model(a.model, dtype=a.dtype, device=shard.device or resolve_device(a.device),
                                attn_implementation=a.attn)
        run_longbench(model, tok, a.tasks, a.data, a.out, scorers=with_budgets(a.scorers, a.kv_budget),
                      keep_ratio=a.keep_ratio,
                      limit=a.limit, max_length=a.max_length, rank=rank, world_size=world, warmup=a.warmup,
                      progress=shard.main)
        shard.wait()
        if shard.world_size > 1 and shard.main:
            merge(a.out)
        if world == 1 or (shard.world_size > 1 and shard.main):
            print(markdown(score_longbench(a.out, partial=True)))
    elif a.cmd == "merge":
        print(json.dumps(merge(a.out), indent=2))
    else:
        print(markdown(score_longbench(a.out, partial=a.partial)))
    return 0


if __name__ == "__main__":  # the old entry (commands in saved run folders): now `sdtp longbench ...`
    import sys
    try:
        raise SystemExit(main())
    except (ValueError, FileNotFoundError) as e:  # bad input: one line, exit code 2 (as the command line does)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
