"""The command line: `sdtp <verb> ...` (also `python -m sdtp_lib <verb> ...`): generate, train, profile, pipeline,
models, and the evaluations synthetic, longbench, lmeval; lab starts JupyterLab. `sdtp --help` lists them.

Bad input (a library ValueError, FileNotFoundError, ... see EXPECTED_ERRORS) is one line `error: ...` on stderr and
exit code 2; argparse's usage errors are exit code 2 too."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from .compare import Comparison, compare, encode_prompt
from .config import SDTPConfig
from .engine import PruningError
from .io import atomic_write_text
from .models import ATTN_IMPLEMENTATIONS, UnsupportedModelError, check_attn, load_model
from .scorers.registry import POLICY_NAMES, is_policy
from .scorers.predictor import load_predictor

log = logging.getLogger(__name__)
ATTN_HELP = "attention backend (transformers' own; flash_attention_4 needs pip install '.[fa4]' and a Hopper GPU)"

EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PruningError, UnsupportedModelError, ImportError)


def _policy(name: str) -> str:
    if not is_policy(name):
        raise argparse.ArgumentTypeError(f"unknown policy {name!r}: one of {POLICY_NAMES}")
    return name


# ------------------------------------------------------------------ parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdtp", description="SDTP token pruning for HF decoder LLMs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="greedy generation with a pruned prefill, with timings")
    g.set_defaults(func=cmd_generate)
    g.add_argument("--model", default="smollm2-135m", help="smollm2-135m | tiny-qwen2 | tiny-llama | HF dir/id")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt text")
    src.add_argument("--prompt-file", help="read the prompt from this UTF-8 file")
    scorer = g.add_mutually_exclusive_group()
    scorer.add_argument("--policy", type=_policy, help=f"baseline scorer (default norm): one of {POLICY_NAMES}")
    scorer.add_argument("--predictor", help="a trained predictor: a shipped name (smollm2-135m) or a .safetensors file")
    scorer.add_argument("--scorer", metavar="SPEC", help="a scorer spec as the evaluations take it, variant included, "
                        "e.g. sdtp@0.8+R0.02+W96:hybrid (whole spans; docs/scorers.md); --keep-ratio is the r of a "
                        "spec without its own")
    g.add_argument("--keep-ratio", type=float, default=0.9, help="r: stage s keeps ceil(r**s * T) tokens")
    g.add_argument("--stages", type=int, default=None, help="number of pruning stages (default 10; a --scorer spec "
                   "names its own)")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: float32 on CPU, bfloat16 on GPU")
    g.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    g.add_argument("--attn", choices=ATTN_IMPLEMENTATIONS, default="sdpa", help=ATTN_HELP)
    g.add_argument("--compare", action="store_true", help="also run dense generation and report speedups")
    g.add_argument("--kv-budget", type=float, default=None, metavar="B", help="H2O KV budget B in (0, 1] in decoding "
                   "(a fraction of the sequence length; the project's decode loop): the pruned answer decoded with H2O")
    g.add_argument("--no-chat-template", action="store_true", help="feed the raw prompt (no chat template)")
    g.add_argument("--repeats", type=int, default=3, help="timed prefill runs (median reported)")
    g.add_argument("--json", help="write args, stats, timings and answers to this JSON file")
    g.add_argument("--overwrite", action="store_true", help="let --json replace an existing file")

    t = sub.add_parser("train", help="saliency (stage 1) + predictor training (stage 2) + validation")
    t.set_defaults(func=cmd_train)
    t.add_argument("--model", default="smollm2-135m")
    t.add_argument("--data", default=None, help="Dolly-schema source (default: the project's own data set)")
    t.add_argument("--samples", type=int, default=None, help="use this many samples (default: all)")
    t.add_argument("--seq-len", type=int, default=512)
    t.add_argument("--val-frac", type=float, default=0.2, help="held-out share, stratified by layout")
    t.add_argument("--keep-ratio", type=float, default=0.9)
    t.add_argument("--stages", type=int, default=10)
    t.add_argument("--seeds", type=int, nargs="+", default=[0], help="one predictor per training seed")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--cls-balance", type=float, default=1.0, help="cap the LM loss's gradient on the predictors at "
                   "this many times the saliency losses' (measured on the first batch); 0: the paper's plain sum")
    t.add_argument("--engines", nargs="+", default=["physical", "masked"], choices=("physical", "masked"))
    t.add_argument("--attention-window", type=int, default=0, help="0: the paper's predictor; N > 0: the hybrid, "
                   "which also reads the window attention of the last N prompt tokens (e.g. 32)")
    t.add_argument("--baselines", nargs="*", default=["random", "norm", "recent"],
                   help="scorers validated beside the predictors: policies (random norm recent attention) and "
                        "'oracle' (the saliency oracle of each response: an upper bound)")
    t.add_argument("--saliency", default=None, help="reuse this saliency.safetensors (or its folder) of an earlier "
                   "run of the same samples and settings instead of computing it")
    t.add_argument("--dtype", choices=("float32", "bfloat16"))
    t.add_argument("--device", choices=("cpu", "cuda"))
    t.add_argument("--tensorboard", action="store_true", help="also log losses to <run>/seed<k>/tb (needs tensorboard)")
    t.add_argument("--out", required=True, help="run folder (an existing one is resumed)")

    p = sub.add_parser("profile", help="prefill / end-to-end latency, memory, FLOPs: dense vs SDTP vs SDTP-low")
    p.set_defaults(func=cmd_profile)
    p.add_argument("--model", default="qwen2-7b-random", help="qwen2-7b-random (GPU) or any load_model spec/path")
    p.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536, 131072])
    p.add_argument("--variants", nargs="+", default=["dense", "sdtp", "sdtp-low"],
                   help="dense, sdtp, sdtp-low; the last two also with their own keep ratio, e.g. sdtp@0.8")
    p.add_argument("--engines", nargs="+", default=["hf", "sdtp"], choices=("hf", "sdtp"))
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scorer", default="predictor", help="predictor (production width), hybrid (the same reading "
                   "the window attention too), a policy name (e.g. attention), or several joined by '+' (their rank fusion, "
                   "e.g. predictor+attention)")
    p.add_argument("--keep-ratio", type=float, default=0.9, help="r: stage s keeps ceil(r**s * T) tokens (0.8: about twice the compression of 0.9)")
    p.add_argument("--attn", nargs="+", choices=ATTN_IMPLEMENTATIONS, default=["sdpa"], help=ATTN_HELP + "; several: "
                   "each one's rows in one run (the model loads with the first), speedups vs HF dense with sdpa")
    p.add_argument("--dtype", choices=("float32", "bfloat16"))
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--chunk-tokens", type=int, default=32768, help="engine sdtp: prefill MLP chunk (memory)")
    p.add_argument("--no-fast-kernels", action="store_true", help="engine sdtp: HF's own norms/rotary/MLP")
    p.add_argument("--out", default="runs/profile", help="folder for latency_<timestamp>.json/.md, or a .json path")
    p.add_argument("--resume", default=None, help="a latency_*.json of an unfinished run: keep its rows, run "
                   "the lengths it lacks, write back to it")
    n = sub.add_parser("pipeline", help="run the numbered notebooks with papermill into a new run folder")
    n.set_defaults(func=cmd_pipeline)
    n.add_argument("--profile", default=None, help="a profile name (profiles/<name>.yaml) or a YAML path "
                   "(default: 'default'; with --resume: checked against the run's)")
    n.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter of every notebook that declares it (YAML value), e.g. -p n_samples=100")
    n.add_argument("--only", help="comma-separated notebook numbers or names to run, e.g. 01,02")
    n.add_argument("--skip", help="comma-separated notebook numbers or names to leave out, e.g. 03")
    n.add_argument("--runs-dir", default=None, help="where the run folder is created (default: runs/)")
    n.add_argument("--resume", metavar="RUN_DIR", help="re-run the notebooks of RUN_DIR that did not finish, "
                   "with its recorded parameters")
    n.add_argument("--force", action="store_true", help="with --resume: accept a run of another commit/profile")
    n.add_argument("--redo", help="with --resume: re-run these finished notebooks too (numbers or names), e.g. 08 "
                   "after a change to the figures")
    n.add_argument("--list", action="store_true", help="list the profiles and exit")

    rp = sub.add_parser("report", help="the paper's figures and final_summary.md from a run folder's results "
                        "(what notebook 08_figures does, without papermill)")
    rp.set_defaults(func=cmd_report)
    rp.add_argument("run", help="a pipeline run folder (runs/<time>-<profile>)")
    rp.add_argument("--out", default=None, help="where the figures and final_summary.md go (default: RUN/08_figures)")
    rp.add_argument("--frontier-length", type=int, default=32768, help="the prompt length of the frontier's speedups")

    mo = sub.add_parser("models", help="the embedded GGUF models: list, export as parts, import parts (offline)")
    mo.set_defaults(func=cmd_models)
    msub = mo.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="the embedded models, where each comes from, and whether it is available")
    ex = msub.add_parser("export", help="write a model's GGUF as parts + manifest.json (for offline machines)")
    ex.add_argument("spec", help="an embedded model, e.g. qwen2.5-coder-0.5b")
    ex.add_argument("out", help="a new folder")
    ex.add_argument("--part-size", default="60M", help="largest part (bytes, or with K/M/G; default 60M)")
    im = msub.add_parser("import", help="join exported parts into the cache, verifying every hash")
    im.add_argument("dir", help="the folder written by `models export`")

    ev = sub.add_parser("synthetic", help="the synthetic long-context suite (passkey, multi-key NIAH, kv retrieval, "
                        "variable tracking) for dense and pruned scorers")
    ev.set_defaults(func=cmd_synthetic)
    ev.add_argument("--model", default="smollm2-135m")
    ev.add_argument("--tasks", nargs="+", default=None, help="default: all")
    ev.add_argument("--lengths", type=int, nargs="+", default=None, help="prompt tokens (default 1K-32K, up to the "
                    "model's limit)")
    ev.add_argument("--layouts", nargs="+", default=None, choices=("question_first", "question_last"))
    ev.add_argument("--n-samples", type=int, default=10, help="examples per task x length x layout")
    ev.add_argument("--scorers", nargs="+", default=None, help="dense, VARIANT:SCORER (sdtp:norm, sdtp-low:recent, "
                    "sdtp:PATH-to-predictor ...; +H<b>: H2O KV budget in decoding, e.g. dense+H0.4, sdtp+H0.4:norm)")
    ev.add_argument("--kv-budget", type=float, default=None, metavar="B", help="also run every scorer with H2O at KV "
                    "budget B (side by side: each spec and its +H<B>)")
    ev.add_argument("--keep-ratio", type=float, default=0.9)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--dtype", choices=("float32", "bfloat16"))
    ev.add_argument("--device", default="auto")
    ev.add_argument("--attn", choices=ATTN_IMPLEMENTATIONS, default="sdpa", help=ATTN_HELP)
    ev.add_argument("--decode", default="auto", choices=("auto", "hf", "static"),
                    help="greedy loop: model.generate, or the project's static-cache loop (auto: static on CUDA)")
    ev.add_argument("--stop-at-answer", action="store_true", help="the static loop ends with the answer's end token "
                    "(the same answers in fewer steps; KV and ms/token then cover different step counts per scorer)")
    ev.add_argument("--out", required=True, help="results folder (an existing one of the same settings is resumed)")
    ev.add_argument("--workers", type=int, default=1, help="processes sharing the device, each with its own "
                    "model: the same answers, faster where one process leaves a GPU idle (docs/evaluation.md)")
    ev.epilog = ("Data parallel: accelerate launch --multi_gpu --num_processes N -m sdtp_lib synthetic ... (each process "
                 "runs its share of the examples; rank 0 merges and writes the results).")

    # the evaluations with their own command lines: everything after the verb goes to them (their --help too)
    lb = sub.add_parser("longbench", add_help=False, help="LongBench v1 (16 English tasks, official protocol), dense "
                        "and pruned: run | merge | score (see: sdtp longbench --help)")
    lb.set_defaults(func=cmd_longbench)
    lm = sub.add_parser("lmeval", add_help=False, help="lm-eval-harness with the pruned model `sdtp` and the "
                        "project's paper tasks; lm-eval's own arguments (see: sdtp lmeval --help)")
    lm.set_defaults(func=cmd_lmeval)

    lab = sub.add_parser("lab", help="register the project's Jupyter kernel and start JupyterLab on notebooks/")
    lab.set_defaults(func=cmd_lab)
    lab.add_argument("--no-kernel", action="store_true", help="do not (re)register the 'sdtp' kernel")
    lab.epilog = "Other arguments go to jupyter lab (e.g. --port 8890 --no-browser)."
    return parser


def check_args(args) -> None:
    for name in ("max_new_tokens", "repeats", "stages"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.scorer is not None:
        from .eval.scorers import parse_spec
        variant, _ = parse_spec(args.scorer)  # refuses a malformed spec before the model loads
        if variant.stages is None:
            raise ValueError(f"--scorer {args.scorer!r}: generate prunes; the dense answer comes with --compare")
        if variant.kv_budget is not None:
            raise ValueError(f"--scorer {args.scorer!r}: give the H2O budget as --kv-budget, not in the spec")
        if args.stages is not None:
            raise ValueError("--stages: a --scorer spec names its own stages (sdtp: 10, sdtp-low: 5, +S<n>)")
    if args.kv_budget is not None:
        from .speed.h2o import check_budget
        check_budget(args.kv_budget)
        if args.compare:
            raise ValueError("--kv-budget decodes with the project's loop; --compare times HF generate: give one")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    if args.json:
        refuse_existing(Path(args.json), args.overwrite)  # fail before loading the model, not after the run


def refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def read_prompt(args) -> str:
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path}")
        text = path.read_text(encoding="utf-8")
    else:
        text = args.prompt
    if not text.strip():
        raise ValueError("the prompt is empty")
    return text


# ------------------------------------------------------------------ running
def report(cmp: Comparison) -> None:
    """The user-facing result: answer(s), the summary line, and with --compare dense vs sdtp timings."""
    if cmp.dense is not None:
        print(f"--- dense ---\n{cmp.dense.answer}\n--- sdtp ---")
    print(cmp.sdtp.answer)
    print(f"{cmp.summary} | {cmp.sdtp.timing()}")
    if cmp.dense is not None:
        print(f"dense : {cmp.dense.timing()}")
        print(f"sdtp  : {cmp.sdtp.timing()} | prefill speedup {cmp.prefill_speedup:.2f}x | "
              f"e2e speedup {cmp.e2e_speedup:.2f}x")


def json_payload(args, config: SDTPConfig, cmp: Comparison) -> dict:
    runs = {"sdtp": cmp.sdtp} if cmp.dense is None else {"dense": cmp.dense, "sdtp": cmp.sdtp}
    return {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "config": config.to_dict(),
        "stats": {"prompt_len": cmp.prompt_len, "kept_per_layer": cmp.kept_per_layer,
                  "kept_per_stage": cmp.kept_per_stage, "compression": cmp.compression,
                  "flops_dense": cmp.flops_dense, "flops_pruned": cmp.flops_pruned},
        "timings": {k: {"prefill_s": r.prefill_s, "prefill_runs_s": r.prefill_runs_s, "e2e_s": r.e2e_s,
                        "new_tokens": r.new_tokens}
                    for k, r in runs.items()},
        "answers": {k: r.answer for k, r in runs.items()},
    }


def cmd_generate(args) -> int:
    check_args(args)
    prompt = read_prompt(args)
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device, attn_implementation=args.attn)
    ids = encode_prompt(tok, prompt, chat=not args.no_chat_template)
    spans = None
    if args.scorer is not None:
        from .eval.scorers import resolve_spec
        scorer, _, config, spans = resolve_spec(args.scorer, model, tok, args.keep_ratio)
    else:
        config = SDTPConfig.for_model(model, keep_ratio=args.keep_ratio, num_stages=args.stages or 10)
        scorer = (load_predictor(args.predictor, model=model, config=config) if args.predictor
                  else args.policy or "norm")
    log.info("prompt %d tokens, stages at layers %s, scorer %s", ids.shape[1], list(config.stage_layers),
             args.scorer or args.predictor or args.policy or "norm")
    if args.kv_budget is not None:
        return _generate_h2o(args, model, tok, ids, scorer, config, spans)
    cmp = compare(model, tok, ids, scorer, config, args.max_new_tokens, args.repeats, dense=args.compare, spans=spans)
    report(cmp)
    if args.json:
        atomic_write_text(args.json, json.dumps(json_payload(args, config, cmp), indent=2) + "\n",
                          overwrite=args.overwrite)
    return 0


def _generate_h2o(args, model, tok, ids, scorer, config, spans=None) -> int:
    """`generate --kv-budget B`: the pruned prefill, then the project's decode loop with H2O at B (stops at the
    tokenizer's end of sequence); prints the answer, the prefill summary, the KV held at the end and the timings."""
    from .speed.decode import greedy_generate
    stops = [t for t in (tok.eos_token_id,) if t is not None]
    res = greedy_generate(model, ids.to(next(model.parameters()).device), args.max_new_tokens, scorer, config,
                          kv_budget=args.kv_budget, stop_ids=stops, spans=spans)
    answer = tok.decode(res.tokens[0, :res.new_tokens], skip_special_tokens=True).strip()
    t = res.timings
    print(answer)
    print(f"{res.stats.summary()} | H2O budget {args.kv_budget:g}: KV at the end {res.kv_bytes / 2 ** 20:.2f} MiB "
          f"({sum(res.kv_tokens)} layer-tokens) | prefill {t['prefill_s']:.3f} s | decode "
          f"{t['decode_ms_per_token']:.2f} ms/token | e2e {t['e2e_s']:.2f} s ({res.new_tokens} new tokens)")
    if args.json:
        payload = {"args": {k: v for k, v in vars(args).items() if k != "func"}, "config": config.to_dict(),
                   "stats": {"prompt_len": res.prompt_len, "kept_per_layer": res.kept_per_layer,
                             "kept_per_stage": res.stats.kept_per_stage, "compression": res.stats.compression},
                   "h2o": {"kv_budget": args.kv_budget, "kv_tokens": res.kv_tokens, "kv_bytes": res.kv_bytes},
                   "timings": t, "new_tokens": res.new_tokens, "answers": {"sdtp+h2o": answer}}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n", overwrite=args.overwrite)
    return 0


def cmd_train(args) -> int:
    from .training.run import TrainingRunConfig, run_training
    from .training.train import TrainConfig
    from .training.data import DEFAULT_DATA
    cfg = TrainingRunConfig(model=args.model, data=args.data or str(DEFAULT_DATA), samples=args.samples,
                         seq_len=args.seq_len, val_frac=args.val_frac, keep_ratio=args.keep_ratio, stages=args.stages,
                         seeds=tuple(args.seeds), engines=tuple(args.engines), device=args.device, dtype=args.dtype,
                         baselines=tuple(args.baselines),
                         train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                           attention_window=args.attention_window, cls_balance=args.cls_balance))
    summary = run_training(cfg, args.out, tensorboard=args.tensorboard, saliency_file=args.saliency)
    from .training.train import format_rows
    print(format_rows(summary["validation"]))
    sp = summary["speed"]
    print(f"{summary['num_train']} train / {summary['num_val']} val samples on {summary['device']} | saliency "
          f"{sp['saliency_samples_per_s']:.2f} samples/s | training {sp['train_samples_per_s']:.2f} samples/s | "
          f"total {summary['timing']['total_s']:.0f} s | run folder {args.out}")
    return 0


def cmd_profile(args) -> int:
    from .speed import profiling as P
    cfg = P.ProfileConfig(lengths=tuple(args.lengths), variants=tuple(args.variants), engines=tuple(args.engines),
                          new_tokens=args.new_tokens, repeats=args.repeats, scorer=args.scorer,
                          chunk_tokens=args.chunk_tokens, fast_kernels=not args.no_fast_kernels,
                          keep_ratio=args.keep_ratio, attns=tuple(args.attn))  # checked here, before the model loads
    for attn in cfg.attns:  # installed, and usable on the device (qwen2-7b-random: the GPU)
        check_attn(attn, "cuda" if args.model == "qwen2-7b-random" else args.device)
    model, weights = P.load_profile_model(args.model, dtype=args.dtype, device=args.device, attn=cfg.attns[0])
    head = P.header(model, cfg, weights, check_sync=not args.resume)  # a resumed run keeps its header's check
    print(f"{head['gpu']} | {head['model']} | weights: {weights} | transformers {head['transformers']}")
    old: list[dict] = []
    done: set = set()
    if args.resume:
        path = Path(args.resume)
        head, old = P.resume(path, head, cfg)
        done = P.done_groups(old, head["attn"])
        lengths = sorted({T for T, _ in done} | set(cfg.lengths))
        cfg.lengths = tuple(T for T in lengths if any((T, a) not in done for a in cfg.attns))
        head["profile_config"] = {**head["profile_config"], "lengths": lengths}
        print(f"resuming {path}: {len(old)} rows kept, lengths to run {list(cfg.lengths)}")
    else:
        path = Path(args.out) if args.out.endswith(".json") else \
            Path(args.out) / f"latency_{time.strftime('%Y%m%d-%H%M%S')}.json"
        P.write(path, head, [])
    rows = old + P.profile(model, cfg, on_row=lambda new: P.write(path, {**head, "complete": False}, old + new,
                                                                   partial_ok=True), skip=done)
    rows.sort(key=P.row_order(cfg))
    P.write(path, {**head, "complete": True}, rows, partial_ok=True)
    table = P.markdown(rows, head["attn"])
    if len(cfg.attns) > 1:  # SDTP per backend vs HF dense with sdpa and with the same backend
        table += "\n\n" + P.backend_summary(rows, head["attn"])
    atomic_write_text(path.with_suffix(".md"), f"weights: {weights}\n\n{table}\n")  # the table of that JSON
    print(table)
    print(f"wrote {path}")
    return 0


def _no_cell_banners(record) -> bool:
    return not (record.name == "papermill" and str(record.msg).startswith(
        ("Executing Cell", "Ending Cell", "Executing notebook with kernel")))


def cmd_pipeline(args) -> int:
    from .workspace import pipeline as NP
    if args.list:
        for name in NP.available_profiles():
            print(f"{name:12s} {NP.load_profile(name).description}")
        return 0
    logging.getLogger("sdtp_lib.workspace.pipeline").setLevel(logging.INFO)
    logging.getLogger("papermill").setLevel(logging.INFO)  # cell outputs stream to the console: progress
    for h in logging.getLogger().handlers:  # papermill's per-cell banners stay in pipeline.log only
        if _no_cell_banners not in h.filters:
            h.addFilter(_no_cell_banners)
    split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None
    try:
        if args.resume:
            if args.param or args.only or args.skip or args.runs_dir:
                raise NP.PipelineError("--resume re-runs with the run's recorded parameters: -p, --only, --skip "
                                       "and --runs-dir cannot be combined with it")
            run = NP.resume_pipeline(args.resume, profile=args.profile, force=args.force, redo=split(args.redo))
        else:
            if args.redo:
                raise NP.PipelineError("--redo re-runs notebooks of an existing run: use it with --resume RUN_DIR")
            overrides = dict(NP.parse_override(p) for p in args.param)
            run = NP.run_pipeline(args.profile or "default", overrides, only=split(args.only), skip=split(args.skip),
                                  runs_dir=args.runs_dir or NP.RUNS_DIR)
    except NP.PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"run folder: {run}")
    return 0


def cmd_report(args) -> int:
    from .workspace import paper_run as PR
    from .workspace.sources import load_sources
    src = load_sources(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "08_figures"
    made = PR.draw_figures(src, out, length=args.frontier_length)
    path = PR.write_summary(src, out, made)
    for name, m in made.items():
        print(f"{name}: {out / m.file}" if m.file else f"{name}: not drawn ({m.why})")
    print(f"wrote {path}")
    return 0


KERNEL_NAME = "sdtp"


def register_kernel(user: bool = True) -> Path:
    """Register this Python as the Jupyter kernel "Python (sdtp)"; returns the kernel spec's folder."""
    from ipykernel.kernelspec import install
    return Path(install(user=user, kernel_name=KERNEL_NAME, display_name="Python (sdtp)"))


ROOT_OPTIONS = ("--ServerApp.root_dir", "--notebook-dir")


def lab_argv(extra: list[str]) -> list[str]:
    """JupyterLab on notebooks/ with this Python (unless `extra` names another root); `extra` goes to jupyter lab.
    A root folder given in `extra` that does not exist is a FileNotFoundError (before anything starts)."""
    from .workspace.pipeline import NOTEBOOKS_DIR
    own_root = any(a.startswith(ROOT_OPTIONS) for a in extra)
    for k, a in enumerate(extra):
        opt, eq, value = a.partition("=")
        if opt in ROOT_OPTIONS:
            value = value if eq else (extra[k + 1] if k + 1 < len(extra) else "")
            if not value or not Path(value).expanduser().is_dir():
                raise FileNotFoundError(f"{opt} {value!r}: no such folder (JupyterLab's root must be an existing "
                                        "folder; leave it out to serve notebooks/)")
    return [sys.executable, "-m", "jupyter", "lab", *([] if own_root else [f"--ServerApp.root_dir={NOTEBOOKS_DIR}"]),
            *extra]


def cmd_lab(args) -> int:
    import os
    cmd = lab_argv(args.rest)  # checks the arguments before the kernel is registered
    if not args.no_kernel:
        print(f"registered the Jupyter kernel 'Python (sdtp)' in {register_kernel()}")
    print("starting:", " ".join(cmd), flush=True)
    os.execv(sys.executable, cmd)  # JupyterLab takes over this process (Ctrl-C stops it)


def cmd_models(args) -> int:
    from .embedded import EMBEDDED, export_parts, gguf_path, import_parts, parse_size
    from .models import cache_dir
    if args.action == "list":
        for spec, emb in EMBEDDED.items():
            try:
                where = str(gguf_path(spec, cache_dir()))
            except FileNotFoundError:
                where = f"not installed: {emb.install}"
            print(f"{spec}: {emb.name} ({emb.architecture}); from {emb.upstream}\n  {where}")
    elif args.action == "export":
        path = export_parts(args.spec, Path(args.out), parse_size(args.part_size), cache_dir())
        n = len(json.loads(path.read_text())["parts"])
        print(f"wrote {n} parts and {path}; on the other machine: python -m sdtp_lib models import {args.out}")
    else:
        print(f"imported and verified: {import_parts(Path(args.dir), cache_dir())}")
    return 0


def cmd_synthetic(args) -> int:
    from .eval import synthetic as SY
    from .eval.distributed import launched
    from .models import resolve_device
    from .eval.scorers import with_budgets
    scorers = args.scorers or (SY.SuiteConfig.scorers if args.kv_budget is not None else None)
    given = dict(tasks=args.tasks, lengths=args.lengths, layouts=args.layouts,
                 scorers=with_budgets(scorers, args.kv_budget) if scorers else None)
    cfg = SY.SuiteConfig(**{k: tuple(v) for k, v in given.items() if v}, n_samples=args.n_samples, seed=args.seed,
                         keep_ratio=args.keep_ratio, decode=args.decode, stop_at_answer=args.stop_at_answer)
    shard = launched()  # rank / world size under accelerate launch
    load = dict(spec=args.model, dtype=args.dtype, device=shard.device or resolve_device(args.device),
                attn_implementation=args.attn)
    if args.workers != 1:
        if shard.world_size > 1:
            raise SystemExit("error: --workers > 1 under accelerate launch: use one or the other")
        from .eval.workers import run_suite_workers
        rows = run_suite_workers(load, cfg, args.out, args.workers)
    else:
        rows = SY.run_suite(*load_model(**load), cfg, args.out, progress=shard.main, rank=shard.rank,
                            world_size=shard.world_size)
    shard.wait()
    if not shard.main:
        return 0
    if shard.world_size > 1:
        rows = SY.merge(args.out, shard.world_size)
        SY.write_results(args.out, rows)
        log.info("merged the predictions of %d processes into %s", shard.world_size, args.out)
    print((Path(args.out) / "results.md").read_text())
    summary = SY.summarise(rows)
    SY.write_figures(args.out, summary, cfg.scorers)
    return 0


def _delegate(entry, argv: list[str]) -> int:
    """Run a command line of its own (LongBench's, lm-eval's) on `argv`; its --help and usage errors end in
    SystemExit (argparse has printed them), which becomes the exit code."""
    try:
        return entry(argv)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"error: {e.code}", file=sys.stderr)
        return 1


def cmd_longbench(args) -> int:
    from .eval import longbench as LB
    return _delegate(LB.main, args.rest)


def cmd_lmeval(args) -> int:
    from .eval import lmeval as LM  # registers the model `sdtp` with lm-eval
    return _delegate(LM.cli, args.rest)


PASS_THROUGH = ("longbench", "lmeval", "lab")  # verbs whose other arguments go on (to their parser, jupyter lab)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if rest and args.command not in PASS_THROUGH:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.rest = rest
    except SystemExit as e:  # --help or a usage error (argparse has printed it)
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except EXPECTED_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
