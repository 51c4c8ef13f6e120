"""The final summary beside the paper (`final_summary.md`, written by notebook 08 into its run_dir): the run's
hardware, versions, configuration and time; every paper table (workspace.paper_tables) beside this project's numbers;
a verdict computed from the numbers against stated tolerances (workspace.verdict; also the headline table at the
top), and a short hand-written part, marked as such.

    src = sources.load_sources(run)
    text = final_summary(src, {"frontier": ("frontier.png", ""), "h2o": (None, "why"), ...}, frontier=fr, h2o=pts)
"""
from __future__ import annotations

from pathlib import Path

from ..models import project_root
from . import verdict as V
from .paper import CITATION
from .paper_tables import (NOISE_RULE, ablation_section, fmt, h2o_section, latency_section, lmeval_section,
                           longbench_section, md_table, run_models)
from .sources import Sources


# ------------------------------------------------------------------ the run
def run_section(src: Sources) -> str:
    run = src.get("run")
    if run is None:
        return f"## The run\n\n{src.run}: no run.json ({src.items['run'].why}): hardware, versions and time unknown.\n"
    v = run.get("versions", {})
    steps = run.get("notebooks", [])
    total = sum(s.get("duration_s") or 0 for s in steps)
    sittings = lambda s: f" in {s['sittings']} sittings" if (s.get("sittings") or 0) > 1 else ""  # noqa: E731
    rows = [[s["name"], s.get("status"), fmt(s.get("duration_s"), ".0f", " s") + sittings(s),
             ", ".join(f"{k}={val}" for k, val in s.get("parameters", {}).items() if k != "run_dir")] for s in steps]
    return (f"## The run\n\n- folder: `{src.run}`; profile `{run.get('profile')}` ({run.get('description', '')})\n"
            f"- hardware: {run.get('device')}\n"
            f"- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; commit {run.get('git_commit')}"
            + _resumed(run) + "\n"
            f"- time: {run.get('started')} to " + (run.get("ended") or "its end: this summary is written while its "
                                                    "last notebook runs") + f"; {total:.0f} s in the notebooks before"
            f" this one; status {run.get('status')}\n\n" + md_table(["notebook", "status", "time", "parameters"], rows))


def _resumed(run: dict) -> str:
    """'; resumed 3 times, at commits abc1234, def5678 (re-running 08_figures)' where the run was resumed."""
    res = run.get("resumed") or []
    if not res:
        return ""
    commits = list(dict.fromkeys(str(r.get("git_commit", "?"))[:7] for r in res))
    redo = sorted({n for r in res for n in r.get("redo", [])})
    return (f"; resumed {len(res)} time{'s' if len(res) > 1 else ''}, at commit{'s' if len(commits) > 1 else ''} "
            f"{', '.join(commits)}" + (f" (re-running {', '.join(redo)})" if redo else ""))


def shown(path) -> str:
    """A path as the summary shows it: relative to this checkout (or the working folder) where it lies inside."""
    p = Path(path).resolve()
    for base in (project_root(), Path.cwd()):
        if base is not None and p.is_relative_to(Path(base).resolve()):
            return str(p.relative_to(Path(base).resolve()))
    return str(path)


def sources_section(src: Sources) -> str:
    rows = [[name, "found" if s.found else "**missing**", f"`{shown(s.path)}`" if s.found else s.why]
            for name, s in src.items.items()]
    return "## Sources\n\n" + md_table(["source", "", "file"], rows)


# ------------------------------------------------------------------ verdict
def verdict(src: Sources, frontier: dict | None, h2o: list[dict], items: list | None = None) -> str:
    items = V.verdict_items(src, frontier, h2o) if items is None else items
    return (f"## Verdict\n\nIn the ablations, {NOISE_RULE}.\n\n" + V.bullets(items)
            + "\n**Hand-written** (a reading of the committed results, not a computed verdict): " + _scorer_note(src)
            + " LongBench and lm-eval stay stand-ins until they run on real Qwen2-7B weights and data.\n")


def headline(items: list) -> str:
    """The verdict's items as a table, at the top of the summary."""
    return ("## Headline\n\nThe paper's claims beside this run's and the committed results (details: Verdict, at the "
            "end):\n\n" + V.headline_table(items))


SCORERS_RUN = "2026-11-30_qwen2.5-0.5b_scorers_h200x2"  # the main scorer comparison (docs/scorers.md)
SPANS_RUN = "2026-12-06_qwen2.5-0.5b_whole-spans_1k-32k_h100"  # whole spans at r = 0.9 and 0.8 (the same suite)
SPANS_SPECS = (("the shipped hybrid", "sdtp@0.8+R0.02+W96:hybrid"), ("the paper's predictor",
               "sdtp@0.8+R0.02+W96:predictor"), ("window attention", "sdtp@0.8+R0.02+W96:attention"))


def _scorer_note(src: Sources) -> str:
    """The predictor's weakness on retrieval against window attention, then what whole spans change at r = 0.8, the
    numbers read from the committed comparisons (per layout, % of dense)."""
    from .frontier import quality
    res = src.get(f"synthetic:{SCORERS_RUN}")
    q = {x["scorer"]: x["by_layout"] for x in quality(res)} if res is not None else {}
    if "sdtp:predictor" not in q or "sdtp:attention" not in q:
        return f"(the committed scorer comparison {SCORERS_RUN} was not found: no numbers for this note.)"
    pct = lambda by: " / ".join(f"{100 * v:.0f}%" for v in by.values())  # noqa: E731
    note = (f"the paper's token-local predictor is weak on retrieval: on the synthetic suite ({SCORERS_RUN}, "
            f"Qwen2.5-Coder-0.5B, layouts {' / '.join(q['sdtp:predictor'])}) it keeps {pct(q['sdtp:predictor'])} of "
            f"dense accuracy, the question-aware window-attention scorer {pct(q['sdtp:attention'])} at the same "
            "compression and about the same speed (frontier figure): in a causal model the context's tokens cannot "
            "know a question that comes after them (docs/scorers.md).")
    spans = src.get(f"synthetic:{SPANS_RUN}")
    qs = {x["scorer"]: x for x in quality(spans)} if spans is not None else {}
    if all(spec in qs for _, spec in SPANS_SPECS):
        comp = qs[SPANS_SPECS[0][1]]["compression"]
        note += (" Keeping whole spans (a sentence, a line, a key with its value: `+W96`) changes the order: at "
                 f"r = 0.8 ({comp:.2f}x, {SPANS_RUN}) " + ", ".join(f"{name} keeps {pct(qs[spec]['by_layout'])}"
                                                                   for name, spec in SPANS_SPECS)
                 + " of dense; the losses left are short prompts and key-value retrieval (its README).")
    return note


# ------------------------------------------------------------------ all of it
def figures_section(figures: dict, frontier: dict | None = None) -> str:
    rows = [[name, f"![{name}]({path})" if path else "**not drawn**: " + why]
            for name, (path, why) in figures.items()]
    left = "".join(f"- frontier, not drawn: {u['source']}: {u['scorer']} ({u['why']})\n"
                   for u in (frontier or {}).get("unmatched", []))
    return "## Figures\n\n" + md_table(["figure", ""], rows) + ("\n" + left if left else "")


def final_summary(src: Sources, figures: dict, frontier: dict | None = None, h2o: list[dict] | None = None) -> str:
    """The whole final_summary.md. figures: {name: (file name or None, why not drawn)}."""
    model = run_models(src)
    items = V.verdict_items(src, frontier, h2o or [])  # the headline and the verdict: the same lines
    return "\n".join([
        f"# Final summary: this run beside the paper\n\nPaper: {CITATION}. Our models: {model}. Every number below is "
        "read from the files listed under Sources; the paper's from sdtp_lib/workspace/paper.py.\n",
        headline(items), run_section(src), latency_section(src), longbench_section(src), lmeval_section(src),
        ablation_section(src), h2o_section(h2o or [], src), figures_section(figures, frontier),
        verdict(src, frontier, h2o or [], items),
        sources_section(src)])


# ------------------------------------------------------------------ the README's copy of the headline
README_BEGIN = "<!-- headline: copied from reports/final_summary.md by scripts/slim_run.sh; edit that, not this -->"
README_END = "<!-- /headline -->"


def headline_rows(summary: str) -> str:
    """The headline table of a final_summary.md's text (its lines from the header row on)."""
    if "## Headline" not in summary:
        raise ValueError("no '## Headline' section: not a final_summary.md, or one from before headlines")
    body = summary.split("## Headline", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in body.splitlines() if ln.startswith("|")]
    if len(rows) < 3:
        raise ValueError("the '## Headline' section holds no table")
    return "\n".join(rows) + "\n"


def with_headline(readme: str, summary: str) -> str:
    """readme with the block between README_BEGIN and README_END replaced by the summary's headline table."""
    if readme.count(README_BEGIN) != 1 or readme.count(README_END) != 1 or \
            readme.index(README_BEGIN) > readme.index(README_END):
        raise ValueError(f"the README needs exactly one {README_BEGIN!r} ... {README_END!r} block")
    head, rest = readme.split(README_BEGIN, 1)
    return head + README_BEGIN + "\n" + headline_rows(summary) + README_END + rest.split(README_END, 1)[1]
