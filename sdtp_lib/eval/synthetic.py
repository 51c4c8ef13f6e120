"""A seeded long-context retrieval suite with exact scoring (in the spirit of RULER): does pruning keep the needle?

    ex = make_passkey(tok, 4096, "question_last", seed=0)   # Example: prompt, answer, depth, needles, ...
    rows = run_suite(model, tok, SuiteConfig(lengths=(1024, 4096)), "runs/synthetic")   # resumable
    print(markdown(summarise(rows)))

Prompts are fitted to `length` tokens of the tokenizer, counted on the chat-templated prompt: whole filler units,
then the best-fitting short tail (a few words, or a shortened JSON pair); never above `length`. Data parallel:
rank r of w runs examples i % w == r into predictions.rank{r}.jsonl; then write_results(out_dir, merge(out_dir, w)).
A predictions file is appended to while its run goes on and gzipped (`.jsonl.gz`) when the run has answered all it
was asked; a resumed run with more to answer (scorers added) continues it, and every reader takes either form.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import random
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..compare import answer_tokens, encode_prompt, greedy_answer
from ..speed.decode import greedy_generate
from ..engine import pruning
from ..io import (atomic_write_text, compress_jsonl, decompress_jsonl, find_jsonl, jsonl_pair, provenance,
                  read_jsonl)
from ..models import config_fingerprint
from ..scorers.oracle import SaliencyOracle
from ..spans import span_rule
from .figures import length_label
from .scorers import ORACLE, make_scorer_for, parse_spec

log = logging.getLogger(__name__)

TASKS = ("passkey", "multikey_niah", "kv_retrieval", "variable_tracking")
LAYOUTS = ("question_first", "question_last")
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
MAX_NEW_TOKENS = {"passkey": 16, "multikey_niah": 24, "kv_retrieval": 64, "variable_tracking": 48}
FORMAT, VERSION = "sdtp-synthetic", 1
DECODES = ("auto", "hf", "static")

PASSKEY_FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                  "There and back again.")
_WORDS = (("The", "This", "That", "Every"),
          ("quiet", "old", "small", "bright", "gentle", "narrow", "distant", "hidden", "busy", "pale"),
          ("river", "garden", "bakery", "village", "meadow", "harbor", "library", "orchard", "bridge", "market"),
          ("rests", "waits", "shines", "sleeps", "changes", "lingers"),
          ("near the hills", "in the morning light", "under a grey sky", "beside the road", "after the rain",
           "at the end of the day", "by the old wall", "in early spring"))
_COMBOS = list(itertools.product(*_WORDS))  # 19200; a stride coprime to that picks 400 distinct ones, spread out
FILLER = tuple(" ".join(_COMBOS[(i * 7919) % len(_COMBOS)]) + "." for i in range(400))
KEYS = tuple(f"{a}-{b}" for a in ("amber", "brave", "calm", "dusty", "eager", "fuzzy", "grand", "hollow", "icy")
             for b in ("badger", "canoe", "falcon", "kettle", "lantern", "orchid", "pepper", "quartz", "rocket"))


@dataclass
class Example:
    task: str
    length: int  # target prompt length in tokens
    layout: str
    seed: int
    prompt: str  # the user message
    answer: str | list[str]
    depth: float  # 0..1: where the target needle sits among the haystack units
    max_new_tokens: int
    question: str = ""  # question + answer-format instruction, as in the prompt
    needles: tuple[str, ...] = ()  # every inserted needle, target first
    prompt_len: int = 0  # tokens of the chat-templated prompt (<= length)

    def __post_init__(self):
        if self.task not in TASKS or self.layout not in LAYOUTS:
            raise ValueError(f"Example: task {self.task!r} / layout {self.layout!r}; known {TASKS} / {LAYOUTS}")
        if not 0.0 <= self.depth <= 1.0 or self.max_new_tokens < 1 or not self.prompt:
            raise ValueError(f"Example: depth must be in [0, 1], max_new_tokens >= 1 and the prompt non-empty; got "
                             f"{self.depth}, {self.max_new_tokens}, {len(self.prompt)} characters")


# ------------------------------------------------------------------ prompt building
def _stream(draw):
    """units(n): the first n filler units; unit i is the same however many were asked for."""
    cache: list[str] = []

    def units(n: int) -> list[str]:
        cache.extend(draw() for _ in range(n - len(cache)))
        return cache[:n]
    return units


def _context(units, needles, sep, tail="") -> str:
    """units with needles [(depth, text)] inserted at round(depth * n) (ties keep list order), then the tail."""
    at = sorted((round(d * len(units)), k) for k, (d, _) in enumerate(needles))
    items = list(units)
    for pos, k in reversed(at):  # from the back, so earlier insertions do not shift later positions
        items.insert(pos, needles[k][1])
    return sep.join(items + ([tail] if tail else []))


def _largest(fits, guess: int) -> int:
    """Largest n >= 0 with fits(n), for a monotone `fits` with fits(0) true, bracketed first around `guess`."""
    lo, hi = max(0, guess - guess // 32 - 2), guess + guess // 32 + 2
    while fits(hi):
        lo, hi = hi, 2 * hi
    while lo > 0 and not fits(lo):
        lo, hi = lo // 2, lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _prefixes(sentences) -> list[str]:
    """Every word prefix of every sentence: the tails that fill the last few tokens."""
    return list(dict.fromkeys(" ".join(s.split()[:j]) for s in sentences for j in range(1, len(s.split()) + 1)))


def _build(task, tok, length, layout, seed, answer, groups, units, tails, intro, question, sep=" ", wrap=("", "")):
    """Fit the haystack to `length` tokens. groups: needle groups [(depth, text)], target first; distractor groups
    are dropped (down to none) while the needles would take more than half the prompt (very short lengths only)."""
    if layout not in LAYOUTS or length < 1:
        raise ValueError(f"{task}: layout must be one of {LAYOUTS} and length >= 1, got {layout!r}, {length}")

    def text(n, tail, needles):
        body = f"{wrap[0]}{_context(units(n), needles, sep, tail)}{wrap[1]}"
        return f"{question}\n\n{intro}\n\n{body}" if layout == "question_first" else f"{intro}\n\n{body}\n\n{question}"

    k = next((k for k in range(len(groups), 1, -1)
              if encode_prompt(tok, text(0, "", sum(groups[:k], []))).shape[1] <= length // 2), 1)
    needles, cache = sum(groups[:k], []), {}

    def count(n, tail=""):
        if (n, tail) not in cache:
            cache[n, tail] = int(encode_prompt(tok, text(n, tail, needles)).shape[1])
        return cache[n, tail]
    if count(0) > length:
        raise ValueError(f"{task}: length {length} is too short for this tokenizer: the prompt without filler "
                         f"takes {count(0)} tokens")
    lens = lambda xs: [len(x) for x in tok([sep + x for x in xs], add_special_tokens=False)["input_ids"]]
    per_unit = sum(lens(units(32))) / 32
    n = _largest(lambda m: count(m) <= length, int((length - count(0)) / max(per_unit, 1.0)))
    best = (count(n), n, "")
    for m in sorted({n, max(0, n - 1)}):  # n - 1 units + a longer tail can fit better than n units
        fitting = sorted(((e, c) for e, c in zip(lens(tails(m)), tails(m)) if e <= length - count(m)), reverse=True)
        best = max(best, next(((count(m, c), m, c) for _, c in fitting[:4] if count(m, c) <= length), best))
    used, n, tail = best
    if used < 0.98 * length:
        log.warning("%s: the prompt has %d tokens for a target of %d (more than 2%% short)", task, used, length)
    return Example(task, length, layout, seed, text(n, tail, needles), answer,
                   round(groups[0][0][0] * n) / n if n else 0.0, MAX_NEW_TOKENS[task], question,
                   tuple(t for _, t in needles), used)


def _start(task, seed, depth):
    rng = random.Random(f"{task}/{seed}")
    d = rng.random()  # drawn either way: the rest of the example does not depend on `depth` being given
    return rng, d if depth is None else float(depth)


def make_passkey(tok, length: int, layout: str, seed: int, depth: float | None = None) -> Example:
    rng, depth = _start("passkey", seed, depth)
    key = str(rng.randrange(10_000, 100_000))
    units = _stream(iter(itertools.cycle(PASSKEY_FILLER)).__next__)
    return _build("passkey", tok, length, layout, seed, key,
                  [[(depth, f"The pass key is {key}. Remember it. {key} is the pass key.")]], units,
                  lambda n: _prefixes(PASSKEY_FILLER), "There is a pass key hidden in the text below. Remember it.",
                  "What is the pass key? Answer with the number only.")


def make_multikey_niah(tok, length: int, layout: str, seed: int, depth: float | None = None) -> Example:
    rng, depth = _start("multikey_niah", seed, depth)
    keys, values = rng.sample(KEYS, 4), [str(v) for v in rng.sample(range(1_000_000, 10_000_000), 4)]
    depths = [depth] + [rng.random() for _ in keys[1:]]
    groups = [[(d, f"One of the special magic numbers for {k} is: {v}.")] for d, k, v in zip(depths, keys, values)]
    units = _stream(lambda: rng.choice(FILLER))
    return _build("multikey_niah", tok, length, layout, seed, values[0], groups, units,
                  lambda n: _prefixes(units(n + 8)[n:]), "Some special magic numbers are hidden in the text below.",
                  f"What is the special magic number for {keys[0]}? Answer with the number only.")


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def make_kv_retrieval(tok, length: int, layout: str, seed: int, depth: float | None = None) -> Example:
    rng, depth = _start("kv_retrieval", seed, depth)
    key, value, tk, tv = (_uuid(rng) for _ in range(4))  # tk, tv: the shortened last pair that fills the budget
    return _build("kv_retrieval", tok, length, layout, seed, value, [[(depth, f'"{key}": "{value}"')]],
                  _stream(lambda: f'"{_uuid(rng)}": "{_uuid(rng)}"'), lambda n: [f'"{tk[:c]}": "{tv[:c]}"' for c in
                  range(1, 36)], "Here is a JSON object of key-value pairs.",
                  f'What is the value for the key "{key}"? Answer with the value only.', ",\n", ("{\n", "\n}"))


def make_variable_tracking(tok, length: int, layout: str, seed: int, depth: float | None = None) -> Example:
    rng, depth = _start("variable_tracking", seed, depth)
    names: list[str] = []
    while len(names) < 15:  # 3 chains of 5 distinct names: the target chain, then 2 distractor chains
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        names += [name] if name not in names else []
    values, groups = rng.sample(range(10_000, 100_000), 3), []
    for c, v in enumerate(values):
        ns, start = names[5 * c:5 * c + 5], depth if c == 0 else rng.random()
        stmts = [f"VAR {ns[0]} = {v}."] + [f"VAR {b} = VAR {a}." for a, b in zip(ns, ns[1:])]
        groups.append(list(zip([start] + sorted(rng.uniform(start, 1.0) for _ in ns[1:]), stmts)))
    units = _stream(lambda: rng.choice(FILLER))
    return _build("variable_tracking", tok, length, layout, seed, names[:5], groups, units,
                  lambda n: _prefixes(units(n + 8)[n:]), "Track the variable assignments below.",
                  f"Which variables are assigned the value {values[0]}? Answer with the names only.")


GENERATORS = {"passkey": make_passkey, "multikey_niah": make_multikey_niah, "kv_retrieval": make_kv_retrieval,
              "variable_tracking": make_variable_tracking}


def make_example(task: str, tok, length: int, layout: str, seed: int, depth: float | None = None) -> Example:
    if task not in GENERATORS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    return GENERATORS[task](tok, length, layout, seed, depth)


def score(task: str, prediction: str, answer: str | list[str]) -> float:
    """Exact: each expected string must appear in the prediction (case and whitespace runs ignored); a list answer
    (variable_tracking) scores the fraction present. Extra text costs nothing."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    norm = lambda s: " ".join(str(s).split()).lower()
    expected = [answer] if isinstance(answer, str) else list(answer)
    if not expected or not all(norm(a) for a in expected):
        raise ValueError(f"score({task!r}): the answer {answer!r} is empty")
    return sum(norm(a) in norm(prediction) for a in expected) / len(expected)


# ------------------------------------------------------------------ the runner
@dataclass
class SuiteConfig:
    tasks: tuple[str, ...] = TASKS
    lengths: tuple[int, ...] = LENGTHS
    layouts: tuple[str, ...] = LAYOUTS
    n_samples: int = 10  # examples per task x length x layout (needle depths evenly spaced over 0..1)
    seed: int = 0
    scorers: tuple[str, ...] = ("dense", "sdtp:norm", "sdtp:recent", "sdtp:random", "sdtp-low:norm")
    keep_ratio: float = 0.9
    max_positions: int | None = None  # None: model.config.max_position_embeddings
    decode: str = "auto"  # "hf": model.generate; "static": sdtp_lib.speed.decode's loop (CUDA graphs); auto: static on
    # CUDA, and everywhere when a scorer has an H2O budget ("+H<b>": only the static loop evicts)
    stop_at_answer: bool = False  # the static loop ends once the answer's end-of-sequence token is out (the same
    # answer, fewer steps: a UUID's 32 tokens instead of 64); False: every answer decodes max_new_tokens, so that the
    # KV held at the end and the decode ms/token of every scorer cover the same steps

    def __post_init__(self):
        self.tasks, self.layouts, self.scorers = tuple(self.tasks), tuple(self.layouts), tuple(self.scorers)
        self.lengths = tuple(int(x) for x in self.lengths)
        for name, known in (("tasks", TASKS), ("layouts", LAYOUTS), ("scorers", None), ("lengths", None)):
            vals = getattr(self, name)
            if not vals or len(set(vals)) != len(vals) or (known and set(vals) - set(known)):
                raise ValueError(f"SuiteConfig.{name} {vals}: give at least one, without repeats"
                                 + (f", from {known}" if known else ""))
        if min(self.lengths) < 1:
            raise ValueError(f"SuiteConfig.lengths {self.lengths}: token counts must be >= 1")
        budgets = [s for s in self.scorers if parse_spec(s)[0].kv_budget is not None]
        if self.decode not in DECODES:
            raise ValueError(f"SuiteConfig.decode {self.decode!r}: one of {DECODES}")
        if budgets and self.decode == "hf":
            raise ValueError(f"SuiteConfig: scorers {budgets} have an H2O budget, which only the static decode loop "
                             "applies; use decode 'static' or 'auto'")
        if self.n_samples < 1 or not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"SuiteConfig: n_samples must be >= 1 and keep_ratio in (0, 1], got {self.n_samples}, "
                             f"{self.keep_ratio}")


def plan_lengths(model, cfg: SuiteConfig) -> tuple[list[int], list[dict], dict[int, int]]:
    """(lengths to run, [{length, reason}] skipped, {length: prompt tokens}). A prompt must leave room for the longest
    generation: a length up to the model's limit whose generation would not fit is fitted to limit - new tokens
    (RULER's rule: the "32K" row of a 32K model), a length beyond the limit is skipped. When no length is left to
    run: a ValueError that names the lengths and the limit (nothing would be evaluated)."""
    limit = cfg.max_positions or getattr(model.config, "max_position_embeddings", None)
    budget = max(MAX_NEW_TOKENS[t] for t in cfg.tasks)
    if limit is None:
        return list(cfg.lengths), [], {n: n for n in cfg.lengths}
    where = (f"SuiteConfig.max_positions {limit}" if cfg.max_positions else
             f"the model's max_position_embeddings {limit}")
    if limit - budget < 1:
        raise ValueError(f"{where} leaves no room for a prompt and the longest answer ({budget} new tokens of the "
                         f"tasks {list(cfg.tasks)}): nothing to run")
    targets = {n: min(n, limit - budget) for n in cfg.lengths if n <= limit}
    if not targets:
        raise ValueError(f"every requested length ({', '.join(map(str, cfg.lengths))} tokens) exceeds {where}: "
                         f"nothing to run; ask for lengths up to {limit}")
    return list(targets), [{"length": n, "reason": f"{n} tokens > the model's {limit} positions"}
                           for n in cfg.lengths if n not in targets], targets


def plan(cfg: SuiteConfig, lengths) -> list[dict]:
    """Every example in canonical order (task, length, layout, sample); both layouts of a sample share the seed
    and the needle depth."""
    out = []
    for task, length, layout, i in itertools.product(cfg.tasks, lengths, cfg.layouts, range(cfg.n_samples)):
        seed = int(hashlib.sha256(f"{cfg.seed}/{task}/{length}/{i}".encode()).hexdigest()[:8], 16)
        out.append({"index": len(out), "id": f"{task}/{length}/{layout}/{i}", "task": task, "length": length,
                    "layout": layout, "sample": i, "seed": seed,
                    "depth": i / (cfg.n_samples - 1) if cfg.n_samples > 1 else 0.5})
    return out


def _pred_path(out: Path, rank: int, world_size: int) -> Path:
    return out / ("predictions.jsonl" if world_size == 1 else f"predictions.rank{rank}.jsonl")


def _answer_files(out: Path) -> list[Path]:
    """Every predictions file of the folder: the one-process file and any rank files (plain or gzipped)."""
    names = {jsonl_pair(p)[0] for p in out.glob("predictions*.jsonl*")}
    return sorted(p for p in names if find_jsonl(p) is not None)


def reshard(out: Path, workers: int) -> int:
    """Split the answers held in out/ (any layout: one file, or rank files of any count) into the files of `workers`
    processes (one: predictions.jsonl) by example index; returns their count. A repeated (id, scorer) keeps its
    first row (a merge interrupted after writing the merged file)."""
    files = _answer_files(out)
    wanted = [_pred_path(out, r, workers) for r in range(workers)]
    rows, placed = {}, True  # placed: every row already in its rank's file, once (the names hold no worker count)
    for p in files:
        for row in read_jsonl(p, repair=True):
            key = (row["id"], row["scorer"])
            placed &= key not in rows and p in wanted and wanted.index(p) == row["index"] % workers
            rows.setdefault(key, row)
    if placed:
        return len(rows)
    parts: list[list[str]] = [[] for _ in range(workers)]
    for row in sorted(rows.values(), key=lambda x: x["index"]):  # stable: scorers keep their order
        parts[row["index"] % workers].append(json.dumps(row) + "\n")
    for r, path in enumerate(wanted):  # written whole first, then the old files go
        atomic_write_text(jsonl_pair(path)[0], "".join(parts[r]))
    for p in files:
        plain, gz = jsonl_pair(p)
        gz.unlink(missing_ok=True)  # its rows are in the plain files just written
        if p not in wanted:
            plain.unlink(missing_ok=True)
    log.info("synthetic suite: %d answers held in %s split for %d workers", len(rows), out, workers)
    return len(rows)


def _read_rows(path: Path, allowed: set, repair: bool) -> dict:
    """{(id, scorer): row} from a predictions file (.jsonl or .jsonl.gz; none: {}); a last line cut short by a crash
    is dropped (repair) or refused; rows of other examples (another configuration or world_size) and repeats are
    refused."""
    src = find_jsonl(path) or path
    got = {}
    for k, row in enumerate(read_jsonl(path, repair=repair, missing_ok=True), 1):
        key = (row.get("id"), row.get("scorer"))
        if key not in allowed or key in got:
            raise ValueError(f"{src}:{k}: example {key[0]} / scorer {key[1]} " + ("appears twice" if key in got else
                             "does not belong here (another configuration or world_size)"))
        got[key] = row
    return got


def _load_meta(out: Path) -> dict:
    if not (out / "config.json").exists():
        raise ValueError(f"{out / 'config.json'} is missing: not a synthetic-suite folder, or run_suite never started")
    return json.loads((out / "config.json").read_text())


def _flat(meta: dict) -> dict:
    """config.json as the keys two suite folders are compared by (the tokenizer by size: its name is a path)."""
    return {**{k: v for k, v in meta.items() if k not in ("suite", "tokenizer")},
            "tokenizer size": meta["tokenizer"][1],
            **{f"suite.{k}": v for k, v in meta["suite"].items()}}


def _reusable(meta: dict, folders, wanted: set) -> dict:
    """{(id, scorer): row} of the wanted answers already in other suite folders of exactly this configuration but
    their scorers (the same model, prompts and decode loop: the same greedy answer); other folders are skipped."""
    mine = {k: v for k, v in _flat(meta).items() if k != "suite.scorers"}
    got: dict = {}
    for folder in map(Path, folders):
        if not (folder / "config.json").exists() or find_jsonl(folder / "predictions.jsonl") is None:
            continue
        theirs = _flat(_load_meta(folder))
        if {k: v for k, v in theirs.items() if k != "suite.scorers"} != mine:
            log.info("synthetic suite: not reusing %s (another configuration)", folder)
            continue
        for row in read_jsonl(folder / "predictions.jsonl", repair=True, missing_ok=True):
            key = (row.get("id"), row.get("scorer"))
            if key in wanted:
                got.setdefault(key, row)
    return got


def _check_meta(out: Path, meta: dict, path: Path) -> None:
    """Write config.json, or refuse a folder whose config.json (and so predictions) came from another run."""
    if not (out / "config.json").exists():
        found = find_jsonl(path)
        if found is not None:
            raise ValueError(f"{found} exists but {out / 'config.json'} does not: cannot tell what produced it")
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")  # ranks may start together
        return
    old, new = _flat(_load_meta(out)), _flat(meta)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff == ["suite.scorers"]:  # more scorers on the same examples: the stored ones are kept, the new ones added
        dropped = [s for s in old["suite.scorers"] if s not in new["suite.scorers"]]
        if dropped:
            raise ValueError(f"{out} also holds scorers {dropped}: list them too (scorers can be added to a results "
                             "folder, not removed), or use another out_dir")
        log.info("synthetic suite: adding scorers %s to %s", [s for s in new["suite.scorers"]
                                                               if s not in old["suite.scorers"]], out)
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    elif diff:
        raise ValueError(f"{out} holds predictions of another configuration (differs in {', '.join(diff)}); use "
                         "another out_dir or delete it")


@dataclass
class _Spec:
    """A resolved scorer spec: scorer and SDTPConfig (None, None for dense), H2O's KV budget (None: no eviction) and
    the SpanRule of a whole-span variant (None: tokens)."""
    scorer: object = None
    config: object = None
    kv_budget: float | None = None
    spans: object = None


def _resolve(spec: str, model, tok, cfg: SuiteConfig) -> _Spec:
    variant, name = parse_spec(spec)
    config = variant.config(model, cfg.keep_ratio)
    if config is None:  # dense
        return _Spec(kv_budget=variant.kv_budget)
    spans = span_rule(config, tok)
    if name == ORACLE:  # built per example from its answer (_predict)
        return _Spec(ORACLE, config, variant.kv_budget, spans)
    return _Spec(make_scorer_for(name, model, config, spec)[0], config, variant.kv_budget, spans)


def _oracle(model, tok, ex: Example, ids: torch.Tensor, config) -> SaliencyOracle:
    """The saliency oracle of one example: the gold answer as the assistant's reply after the prompt."""
    text = ex.answer if isinstance(ex.answer, str) else " ".join(map(str, ex.answer))
    answer = torch.tensor([tok.encode(text, add_special_tokens=False)])  # (1, A)
    return SaliencyOracle.for_answer(model, ids, answer, config)


def resolve_decode(cfg: SuiteConfig, model) -> str:
    """The greedy loop: HF's generate, or the project's static-cache loop (same greedy tokens, tests/test_decode.py;
    on CUDA one graph replay per token instead of ~40 ms of Python per token on a 24-layer model)."""
    gc = model.generation_config
    extra = {k: getattr(gc, k, None) for k in ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids")
             if getattr(gc, k, None) not in (None, 1.0, 0)}  # processors greedy_generate does not apply
    budgets = any(parse_spec(s)[0].kv_budget is not None for s in cfg.scorers)
    if (cfg.decode == "static" or budgets) and extra:
        raise ValueError(f"SuiteConfig.decode 'static' (or an H2O budget) ignores the model's generation config "
                         f"{extra}; use 'hf' without +H scorers")
    if cfg.decode != "auto":
        return cfg.decode
    if budgets:  # every scorer through the same loop: comparable decode times and KV sizes
        return "static"
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda and extra:
        log.info("synthetic suite: decoding with model.generate (the generation config sets %s)", extra)
    return "static" if cuda and not extra else "hf"


def _suite_record(cfg: SuiteConfig) -> dict:
    """The configuration a folder records; stop_at_answer only when set (folders made before it say nothing of it
    and decoded every step, its default), so that they resume and are reused as before."""
    rec = asdict(cfg)
    if not rec["stop_at_answer"]:
        del rec["stop_at_answer"]
    return rec


def _stop_ids(model, tok) -> set:
    eos = getattr(model.generation_config, "eos_token_id", None)
    return {t for t in [*(eos if isinstance(eos, (list, tuple)) else [eos]), tok.eos_token_id] if t is not None}


def needle_positions(tok, ids: torch.Tensor, needle: str) -> list[int]:
    """Positions of the prompt tokens (ids: (T,)) that overlap the first occurrence of `needle` in the decoded
    prompt (tokens decoded one by one, so each has its character span); [] when the needle is not found."""
    pieces = tok.batch_decode([[t] for t in ids.tolist()])  # each token's text, in one call
    start = "".join(pieces).find(needle)
    if start < 0 or not needle:
        return []
    end, out, pos = start + len(needle), [], 0
    for k, piece in enumerate(pieces):
        if pos < end and pos + len(piece) > start:
            out.append(k)
        pos += len(piece)
    return out


def needle_span(tok, ex: Example, ids: torch.Tensor) -> list[int]:
    """The target needle's token positions in the prompt ids (1, T); [] when it cannot be located. Once per
    example: every scorer of the example reads the same span."""
    return needle_positions(tok, ids[0], ex.needles[0]) if ex.needles else []


def needle_kept(span: list[int], stats) -> float | None:
    """Share of the needle's tokens (span: needle_span) still present after the last stage (1.0 dense, stats None;
    None when the needle was not located)."""
    if not span:
        return None
    if stats is None:
        return 1.0
    kept = set(stats.stage_positions[-1][0].tolist())
    return sum(k in kept for k in span) / len(span)


def needle_held(span: list[int], h2o_state) -> float | None:
    """With H2O: share of the needle's tokens (span: needle_span) the caches hold when decoding ends, averaged over
    layers and KV heads (h2o_state: DecodeResult.h2o; None when the needle was not located)."""
    if not span:
        return None
    shares = [sum(k in held for k in span) / len(span) for p in h2o_state.positions for held in
              (set(h.tolist()) for h in p[0])]  # p (B, KVH, S): sample 0's heads
    return sum(shares) / len(shares)


@torch.no_grad()
def _predict(model, tok, ex: Example, ids: torch.Tensor, entry: dict, spec: str, sp: _Spec, decode: str,
             span: list[int], stop_at_answer: bool = False) -> dict:
    """One greedy answer; `entry` is the plan's entry plus the prompt's hash, `span` the needle's (needle_span).
    The static loop also gives the KV bytes held when decoding ends and the decode ms/token (None with "hf")."""
    oracle = isinstance(sp.scorer, str) and sp.scorer == ORACLE
    scorer = _oracle(model, tok, ex, ids, sp.config) if oracle else sp.scorer
    kv, ms, held, timings = None, None, None, {}
    if decode == "static":  # greedy tokens (all max_new_tokens unless stop_at_answer), cut where generate would stop
        stops = _stop_ids(model, tok)
        res = greedy_generate(model, ids.to(next(model.parameters()).device), ex.max_new_tokens, scorer, sp.config,
                              kv_budget=sp.kv_budget, spans=sp.spans, stop_ids=sorted(stops) if stop_at_answer else ())
        gen, stats = res.tokens[0].tolist(), res.stats
        out = answer_tokens(tok, gen[:next((k for k, t in enumerate(gen) if t in stops), len(gen)) + 1])
        kv, ms = res.kv_bytes, res.timings["decode_ms_per_token"]
        timings = {k: res.timings[k] for k in ("prefill_s", "setup_s", "decode_s")}  # setup: the graph's capture
        # (timings like decode_ms_per_token: only where the static loop measured them; "hf" records stay exact)
        held = needle_held(span, res.h2o) if sp.kv_budget is not None else None
    else:  # a fresh block per prompt: the random policy draws the same scores however the examples are sharded
        with (pruning(model, scorer, sp.config, spans=sp.spans) if scorer is not None else
              contextlib.nullcontext()) as stats:
            out = greedy_answer(model, tok, ids, ex.max_new_tokens)
    compression, kept = (stats.compression, stats.kept_per_stage[-1]) if stats is not None else (1.0, ids.shape[1])
    prediction = tok.decode(out, skip_special_tokens=True).strip()
    return {**entry, "scorer": spec, "prompt_len": ids.shape[1], "depth_realised": ex.depth,
            "answer": ex.answer, "prediction": prediction, "score": score(ex.task, prediction, ex.answer),
            "compression": compression, "kept_tokens": kept, "new_tokens": len(out),
            "needle_kept": needle_kept(span, stats) if held is None else held, "kv_budget": sp.kv_budget,
            "kv_bytes": kv, "decode_ms_per_token": ms, **timings}


class _Pace:
    """A log line every `every` seconds: answers done (of the total, when known) and the rate of this call's
    answers. `done`: a count, or a function that counts (called only when a line is due)."""

    def __init__(self, total: int | None, start: int, every: float = 60.0, what: str = ""):
        self.total, self.start, self.every, self.what = total, start, every, what
        self.t0 = self.last = time.perf_counter()

    def tick(self, done) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            done = done() if callable(done) else done
            of = f" / {self.total}" if self.total is not None else ""
            log.info("synthetic suite: %d%s answers%s, %.2f answers/s", done, of, self.what,
                     (done - self.start) / (now - self.t0))


def run_suite(model, tok, cfg: SuiteConfig, out_dir, progress: bool = True, rank: int = 0,
              world_size: int = 1, reuse=(), sharing: int = 1) -> list[dict]:
    """Greedy answers for every (example, scorer) of this rank, resumed from its predictions file; returns its rows
    in canonical order (and, when world_size == 1, writes results.json / results.md). reuse: other suite folders
    whose answers of the same (example, scorer) are copied rather than asked again, where their configuration equals
    this one but for the scorers (the ablations of one run share dense and some settings). sharing: processes
    answering on this device at once (eval/workers.py); when > 1 each new row records it as `device_sharing`, since
    its times (prefill, decode ms/token) were then taken on a shared device and are not one stream's latency."""
    from tqdm.auto import tqdm
    if not 0 <= rank < world_size:
        raise ValueError(f"run_suite: rank {rank} is not in [0, world_size={world_size})")
    if not isinstance(sharing, int) or sharing < 1:
        raise ValueError(f"run_suite: sharing must be an int >= 1 (processes on the device), got {sharing!r}")
    out = Path(out_dir)
    lengths, skipped, targets = plan_lengths(model, cfg)
    for s in skipped:
        log.info("synthetic suite: skipping length %d (%s)", s["length"], s["reason"])
    fitted = [{"length": n, "tokens": t} for n, t in targets.items() if t != n]
    for f in fitted:
        log.info("synthetic suite: length %d fitted to %d prompt tokens (room for the answer)", f["length"],
                 f["tokens"])
    meta = json.loads(json.dumps({
        "format": FORMAT, "version": VERSION, "suite": _suite_record(cfg), "lengths_run": lengths, "skipped": skipped,
        "fitted": fitted, "decode": resolve_decode(cfg, model),
        "model": str(getattr(model.config, "sdtp_model_id", None) or model.config.name_or_path),
        "model_fingerprint": config_fingerprint(model.config),
        "tokenizer": [getattr(tok, "name_or_path", "") or type(tok).__name__, len(tok)]}))
    out.mkdir(parents=True, exist_ok=True)
    path = _pred_path(out, rank, world_size)
    scorers = {spec: _resolve(spec, model, tok, cfg) for spec in cfg.scorers}  # refuse a bad scorer before writing
    _check_meta(out, meta, path)
    if world_size == 1 and any(out.glob("predictions.rank*")):  # answers interrupted worker processes left
        reshard(out, 1)
    todo = [e for e in plan(cfg, lengths) if e["index"] % world_size == rank]
    done = _read_rows(path, {(e["id"], s) for e in todo for s in cfg.scorers}, repair=True)
    log.info("synthetic suite: rank %d/%d, %d examples x %d scorers, %d done", rank, world_size, len(todo),
             len(scorers), len(done))
    more = len(done) < len(todo) * len(scorers)
    copied = _reusable(meta, reuse, {(e["id"], s) for e in todo for s in cfg.scorers} - set(done)) if more else {}
    if copied:
        log.info("synthetic suite: %d answers copied from %s", len(copied), ", ".join(map(str, reuse)))
    if more:
        decompress_jsonl(path)  # a finished (gzipped) file goes on as plain lines
    pace = _Pace(len(todo) * len(scorers), len(done) + len(copied))  # the log's progress: a bar is not kept there
    with (open(path, "a", encoding="utf-8") if more else contextlib.nullcontext()) as f, \
            tqdm(total=len(todo) * len(scorers), initial=len(done), disable=not progress, desc="synthetic") as bar:
        for e in todo:
            for s in cfg.scorers:  # in plan order, like the answers asked
                if (e["id"], s) in copied:
                    done[e["id"], s] = copied[e["id"], s]
                    f.write(json.dumps(copied[e["id"], s]) + "\n")
                    bar.update(1)
            missing = [s for s in cfg.scorers if (e["id"], s) not in done]
            if not missing:
                continue
            ex = make_example(e["task"], tok, targets[e["length"]], e["layout"], e["seed"], e["depth"])
            ids = encode_prompt(tok, ex.prompt)  # (1, T)
            sha = hashlib.sha256(ex.prompt.encode()).hexdigest()[:16]
            if any(done[e["id"], s]["prompt_sha"] != sha for s in cfg.scorers if s not in missing):
                raise ValueError(f"{path}: the prompt of {e['id']} is not the one its stored rows were made from "
                                 "(generator or tokenizer changed); use another out_dir")
            span = needle_span(tok, ex, ids)  # decoded once, read by every scorer
            for s in missing:
                done[e["id"], s] = row = _predict(model, tok, ex, ids, {**e, "prompt_sha": sha}, s, scorers[s],
                                                  meta["decode"], span, cfg.stop_at_answer)
                if sharing > 1:
                    row["device_sharing"] = sharing
                f.write(json.dumps(row) + "\n")
                f.flush()
                bar.update(1)
                pace.tick(len(done))
    rows = [done[e["id"], s] for e in todo for s in cfg.scorers]
    if find_jsonl(path) is not None:
        compress_jsonl(path)  # this rank has answered everything it was asked
    if world_size == 1:
        write_results(out, rows)
    return rows


def merge(out_dir, world_size: int) -> list[dict]:
    """All ranks' rows in canonical order; a missing rank file, a missing or a duplicated prediction is an error."""
    out = Path(out_dir)
    meta = _load_meta(out)
    cfg = SuiteConfig(**meta["suite"])
    keys = [(e["id"], s) for e in plan(cfg, meta["lengths_run"]) for s in cfg.scorers]
    got: dict = {}
    for r in range(world_size):
        path = _pred_path(out, r, world_size)
        if find_jsonl(path) is None:
            raise ValueError(f"merge: {path} is missing (rank {r} of {world_size} has not run)")
        rows = _read_rows(path, set(keys), repair=False)
        dup = next((k for k in rows if k in got), None)
        if dup:
            raise ValueError(f"merge: example {dup[0]} / scorer {dup[1]} appears twice ({path} and an earlier rank)")
        got.update(rows)
    missing = [k for k in keys if k not in got]
    if missing:
        raise ValueError(f"merge: {len(missing)} predictions missing, e.g. example {missing[0][0]} / scorer "
                         f"{missing[0][1]}")
    return [got[k] for k in keys]


# ------------------------------------------------------------------ reports
def summarise(rows: list[dict]) -> list[dict]:
    """Accuracy (mean score) and n per task x length x layout x scorer, in the rows' order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], r["length"], r["layout"], r["scorer"]), []).append(r["score"])
    return [{"task": t, "length": n, "layout": lay, "scorer": s, "accuracy": sum(v) / len(v), "n": len(v)}
            for (t, n, lay, s), v in groups.items()]


def compression_by_scorer(rows: list[dict]) -> dict[str, float]:
    """Mean compression (prompt tokens / mean tokens per layer) per scorer, in the rows' order."""
    got: dict = {}
    for r in rows:
        got.setdefault(r["scorer"], []).append(r["compression"])
    return {s: sum(v) / len(v) for s, v in got.items()}


def efficiency_by_scorer(rows: list[dict]) -> dict[str, dict]:
    """Per scorer: mean compression, mean KV bytes held when decoding ends and mean decode ms/token (None where
    the rows have none: "hf" decoding or older predictions)."""
    got: dict = {}
    for r in rows:
        got.setdefault(r["scorer"], []).append(r)
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return {s: {"compression": mean([r["compression"] for r in rs]),
                "kv_bytes": mean([r["kv_bytes"] for r in rs if r.get("kv_bytes") is not None]),
                "decode_ms_per_token": mean([r["decode_ms_per_token"] for r in rs
                                             if r.get("decode_ms_per_token") is not None]),
                "device_sharing": max(r.get("device_sharing", 1) for r in rs)}
            for s, rs in got.items()}


def efficiency_markdown(eff: dict[str, dict]) -> str:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = ["| scorer | mean compression | KV held at the end, MiB | decode ms/token |", "|---|---|---|---|"]
    lines += [f"| {s} | {e['compression']:.2f}x | {fmt(e['kv_bytes'] and e['kv_bytes'] / 2 ** 20, '.2f')} | "
              f"{fmt(e['decode_ms_per_token'], '.2f')} |" for s, e in eff.items()]
    shared = max((e.get("device_sharing") or 1) for e in eff.values()) if eff else 1
    note = (f"\n\nDecode ms/token: taken while up to {shared} processes answered on the same device (workers), so "
            "they compare scorers within this run, not with one stream's latency" if shared > 1 else "")
    return "\n".join(lines) + ("\n\nKV: sum over layers of the cached tokens x 2 x KV heads x head dim x dtype bytes "
                               "when the decode loop ends (max_new_tokens - 1 steps); mean over the prompts" + note
                               + "\n")


def markdown(summary: list[dict]) -> str:
    """One row per task / length / layout, one column per scorer: accuracy in %, and the mean over the rows."""
    scorers, cells = list(dict.fromkeys(s["scorer"] for s in summary)), {}
    for s in summary:
        cells.setdefault((s["task"], s["length"], s["layout"]), {})[s["scorer"]] = s["accuracy"]
    fmt = lambda v: f"{100 * v:.1f}" if v is not None else "-"
    lines = ["| task | length | layout | " + " | ".join(scorers) + " |", "|---|---|---|" + "---|" * len(scorers)]
    lines += [f"| {t} | {length_label(n)} | {lay} | " + " | ".join(fmt(c.get(s)) for s in scorers) + " |"
              for (t, n, lay), c in cells.items()]
    means = [[c[s] for c in cells.values() if s in c] for s in scorers]
    lines.append("| **mean** | | | " + " | ".join(fmt(sum(m) / len(m)) for m in means) + " |")
    return "\n".join(lines) + f"\n\naccuracy in %; n = {', '.join(map(str, sorted({s['n'] for s in summary})))} " \
                              "examples per cell\n"


def _scores_by_scorer(rows: list[dict], layout: str | None = None) -> dict:
    """{scorer: {example id: score}} over the rows of `layout` (None: all)."""
    by: dict = {}
    for r in rows:
        if layout is None or r["layout"] == layout:
            by.setdefault(r["scorer"], {})[r["id"]] = r["score"]
    return by


def _paired(a: dict, b: dict, names: tuple[str, str], n_boot: int, seed: int) -> dict:
    """Mean of a - b over the same example ids, with a 95% bootstrap interval (ids resampled)."""
    import numpy as np
    if a.keys() != b.keys():
        raise ValueError(f"paired_difference: {names[0]!r} and {names[1]!r} were not run on the same prompts "
                         f"({len(a.keys() - b.keys())} only in the first, {len(b.keys() - a.keys())} only in the "
                         "second); compare scorers of one results folder")
    x = np.array([a[i] - b[i] for i in sorted(a)], dtype=np.float64)  # (n,)
    boot = x[np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))].mean(axis=1)  # (n_boot,)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(x.mean()), "lo": float(lo), "hi": float(hi), "n": len(x)}


def paired_difference(rows: list[dict], scorer: str, baseline: str = "dense", layout: str | None = None,
                      n_boot: int = 10_000, seed: int = 0) -> dict:
    """Mean accuracy difference scorer - baseline over the same prompts (paired by example id), with a 95% bootstrap
    interval (prompts resampled): {"diff", "lo", "hi", "n"} in accuracy units (0..1)."""
    by = _scores_by_scorer(rows, layout)
    for s in (scorer, baseline):
        if s not in by:
            raise ValueError(f"paired_difference: no results for scorer {s!r}"
                             + (f" in layout {layout!r}" if layout else "") + f"; have {sorted(by)}")
    return _paired(by[scorer], by[baseline], (scorer, baseline), n_boot, seed)


def compare(rows: list[dict], baseline: str = "dense", n_boot: int = 10_000, seed: int = 0) -> list[dict]:
    """Every scorer against the baseline, per layout: accuracy, its share of the baseline's, the worst length (the
    lowest share among lengths where the baseline scores) and the paired difference with its 95% bootstrap interval.
    Shares are None where the baseline scores 0."""
    summary = summarise(rows)
    layouts, scorers = list(dict.fromkeys(r["layout"] for r in rows)), list(dict.fromkeys(r["scorer"] for r in rows))
    if baseline not in scorers:
        raise ValueError(f"compare: no results for the baseline {baseline!r}; have {scorers}")
    share = lambda a, b: a / b if b > 0 else None  # noqa: E731
    out = []
    for layout in layouts:
        by = _scores_by_scorer(rows, layout)  # {scorer: {id: score}}
        acc: dict = {}  # (scorer, length) -> [accuracy of each task]
        for s in summary:
            if s["layout"] == layout:
                acc.setdefault((s["scorer"], s["length"]), []).append(s["accuracy"])
        mean = lambda s, n: sum(acc[s, n]) / len(acc[s, n])  # noqa: E731 - tasks weigh equally, as in the figures
        lengths = sorted({n for _, n in acc})
        missing = [s for s in scorers if s not in by]
        if missing:
            raise ValueError(f"compare: no results for {missing} in layout {layout!r}; have {sorted(by)}")
        base = by[baseline]
        base_acc = sum(base.values()) / len(base)
        for s in scorers:
            per = [(share(mean(s, n), mean(baseline, n)), n) for n in lengths
                   if (s, n) in acc and (baseline, n) in acc and mean(baseline, n) > 0]
            worst = min(per, default=(None, None)) if s != baseline else (None, None)
            d = _paired(by[s], base, (s, baseline), n_boot, seed)
            accuracy = sum(by[s].values()) / len(by[s])
            out.append({"layout": layout, "scorer": s, "n": d["n"], "accuracy": accuracy,
                        "baseline": baseline, "baseline_accuracy": base_acc, "share": share(accuracy, base_acc),
                        "worst_length": worst[1], "worst_share": worst[0],
                        "worst_accuracy": mean(s, worst[1]) if worst[1] else None,
                        "worst_baseline": mean(baseline, worst[1]) if worst[1] else None,
                        "diff": d["diff"], "diff_lo": d["lo"], "diff_hi": d["hi"]})
    return out


def comparison_markdown(table: list[dict]) -> str:
    """compare()'s table: one row per layout and scorer, in %."""
    if not table:
        return ""
    b = table[0]["baseline"]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    lines = [f"| layout | scorer | accuracy | % of {b} | worst length: % of {b} (accuracy vs {b}) | "
             f"minus {b} [95% CI] |", "|---|---|---|---|---|---|"]
    for t in table:
        worst = "-" if t["worst_length"] is None else (
            f"{length_label(t['worst_length'])}: {pct(t['worst_share'])} "
            f"({100 * t['worst_accuracy']:.0f} vs {100 * t['worst_baseline']:.0f})")
        diff = "-" if t["scorer"] == b else \
            f"{100 * t['diff']:+.1f} [{100 * t['diff_lo']:+.1f}, {100 * t['diff_hi']:+.1f}]"
        lines.append(f"| {t['layout']} | {t['scorer']} | {100 * t['accuracy']:.1f} | {pct(t['share'])} | {worst} | "
                     f"{diff} |")
    n = ", ".join(f"{lay} {k}" for lay, k in {t["layout"]: t["n"] for t in table}.items())
    return "\n".join(lines) + (f"\n\naccuracy in %, mean over the layout's prompts; the worst length weighs tasks "
                               f"equally; the difference is paired over the same prompts (bootstrap; prompts per "
                               f"scorer: {n})\n")


def heatmap_figure(summary: list[dict], scorer: str):
    """Accuracy heatmap (tasks x lengths) for one scorer, one panel per layout (seaborn)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns
    rows = [s for s in summary if s["scorer"] == scorer]
    if not rows:
        raise ValueError(f"heatmap_figure: no results for scorer {scorer!r}; "
                         f"have {sorted({s['scorer'] for s in summary})}")
    layouts, tasks = list(dict.fromkeys(s["layout"] for s in rows)), list(dict.fromkeys(s["task"] for s in rows))
    lengths, acc = sorted({s["length"] for s in rows}), {(s["task"], s["length"], s["layout"]): s for s in rows}
    fig, axes = plt.subplots(1, len(layouts), figsize=(len(layouts) * (len(lengths) + 3), 0.6 * len(tasks) + 1.6),
                             squeeze=False)
    for j, (ax, layout) in enumerate(zip(axes[0], layouts)):
        grid = np.array([[100 * acc[t, n, layout]["accuracy"] if (t, n, layout) in acc else np.nan for n in lengths]
                         for t in tasks])  # (tasks, lengths)
        sns.heatmap(grid, ax=ax, vmin=0, vmax=100, annot=True, fmt=".0f", cmap="RdYlGn", cbar=j == len(layouts) - 1,
                    xticklabels=[length_label(n) for n in lengths], yticklabels=tasks)
        ax.set(title=f"{scorer}: {layout}", xlabel="prompt tokens", ylabel="")
    fig.tight_layout()
    return fig


def write_figures(out_dir, summary: list[dict], scorers, dpi: int = 110, close: bool = True) -> list[Path]:
    """The suite's figures into out_dir: accuracy vs length per task and per layout, a heatmap per scorer. close=False
    leaves them open (a notebook shows them inline)."""
    import matplotlib.pyplot as plt
    from .figures import accuracy_vs_length_figure
    from .scorers import file_stem
    out = Path(out_dir)
    figs = {"accuracy_vs_length.png": lambda: accuracy_vs_length_figure(summary),
            "accuracy_vs_length_by_layout.png": lambda: accuracy_vs_length_figure(summary, by="layout")}
    figs.update({f"heatmap_{file_stem(s)}.png": (lambda s=s: heatmap_figure(summary, s)) for s in scorers})
    paths = []
    for name, make in figs.items():
        fig = make()
        fig.savefig(out / name, dpi=dpi)
        paths.append(out / name)
        if close:
            plt.close(fig)
    return paths


def retention(rows: list[dict]) -> list[dict]:
    """Per layout and scorer: how much of the target needle survives the last stage (rows with needle_kept; older
    predictions have none), the share of prompts that keep all of it, and the accuracy with and without it whole:
    tells a scorer that drops the fact from one that keeps it and still answers wrong."""
    groups: dict = {}
    for r in rows:
        if r.get("needle_kept") is not None:
            groups.setdefault((r["layout"], r["scorer"]), []).append(r)
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    out = []
    for (layout, scorer), rs in groups.items():
        whole = [r["score"] for r in rs if r["needle_kept"] >= 1.0]
        part = [r["score"] for r in rs if r["needle_kept"] < 1.0]
        out.append({"layout": layout, "scorer": scorer, "n": len(rs),
                    "needle_kept": mean([r["needle_kept"] for r in rs]), "whole": len(whole) / len(rs),
                    "accuracy_whole": mean(whole), "accuracy_cut": mean(part)})
    return out


def retention_markdown(table: list[dict]) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    lines = ["| layout | scorer | needle tokens kept | prompts with the whole needle | accuracy, whole needle | "
             "accuracy, needle cut |", "|---|---|---|---|---|---|"]
    lines += [f"| {t['layout']} | {t['scorer']} | {pct(t['needle_kept'])} | {pct(t['whole'])} | "
              f"{pct(t['accuracy_whole'])} | {pct(t['accuracy_cut'])} |" for t in table]
    return "\n".join(lines) + ("\n\nthe target needle's tokens present after the last stage (the engine's kept positions); "
                               "with an H2O budget (+H): held in the caches when decoding ends, mean over layers and "
                               "KV heads\n")


def write_results(out_dir, rows: list[dict]) -> dict:
    """results.json (config, versions, commit, skipped lengths, summary) and results.md, written atomically."""
    out = Path(out_dir)
    meta, summary = _load_meta(out), summarise(rows)
    comp, eff = compression_by_scorer(rows), efficiency_by_scorer(rows)
    table = compare(rows) if "dense" in comp else []  # every scorer against dense, per layout
    kept = retention(rows)
    res = {"config": meta, **provenance(), "skipped": meta["skipped"], "n_rows": len(rows), "summary": summary,
           "compression": comp, "efficiency": eff, "comparison": table, "retention": kept}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2) + "\n")
    skipped = "".join(f"- skipped length {s['length']}: {s['reason']}\n" for s in meta["skipped"]) + "".join(
        f"- length {length_label(f['length'])} fitted to {f['tokens']} prompt tokens (room for the longest answer)\n"
        for f in meta.get("fitted", []))
    dirty = " with uncommitted changes to sdtp_lib" if res.get("git_dirty") else ""
    head = f"# Synthetic long-context suite: {meta['model']} (commit {res['git_commit'] or 'unknown'}{dirty})\n\n"
    eff = "\n" + efficiency_markdown(eff)
    vs = "\n## Against dense, per layout\n\n" + comparison_markdown(table) if table else ""
    vs += "\n## Does the needle survive?\n\n" + retention_markdown(kept) if kept else ""
    atomic_write_text(out / "results.md", head + markdown(summary) + eff + vs + ("\n" + skipped if skipped else ""))
    return res
