"""Whole spans (sdtp_lib.spans): span ids, the kept set is whole spans, engine == masked simulation."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.engine import PruningError
from sdtp_lib.spans import SpanRule, span_order

from .conftest import assert_masked_keeps_what_the_engine_keeps, prompt_ids

ENDS = list(range(0, 256, 9))  # a boundary every ~9 ids of the tiny models' first 256: spans of a few tokens


def rule(model) -> SpanRule:
    return SpanRule(ENDS, model.config.vocab_size)


def spanned(model, r: float = 0.6, span_max: int = 6, **kw) -> S.SDTPConfig:
    return S.SDTPConfig.for_model(model, keep_ratio=r, span_max=span_max, **kw)


def test_span_ids_end_after_a_boundary_and_cap_the_length():
    r = SpanRule([5], vocab_size=10)
    ids = torch.tensor([[1, 5, 2, 2, 2, 2, 2, 5, 5, 1]])
    assert r.span_ids(ids, 100).tolist() == [[0, 0, 1, 1, 1, 1, 1, 1, 2, 3]]
    assert r.span_ids(ids, 2).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 5]]  # pieces of <= 2 tokens
    with pytest.raises(ValueError, match="outside the rule's vocabulary"):
        r.span_ids(torch.tensor([[10]]), 4)
    with pytest.raises(ValueError, match="max_len"):
        r.span_ids(ids, 0)


def test_span_order_takes_the_best_span_whole_before_the_next():
    score = torch.tensor([[0.0, 9.0, 1.0, 1.0, 5.0, 5.0, 0.5, 0.0]])
    spans = torch.tensor([[0, 1, 1, 1, 2, 2, 2, 3]])
    forced = torch.tensor([[True, False, False, False, False, False, False, True]])
    order = span_order(score, forced, spans, 4)[0].tolist()
    assert order[:2] == [0, 7]  # forced first
    assert order[2:5] == [1, 2, 3]  # span 1 (best token 9) whole, though its others score below span 2's
    assert order[5:] == [4, 5, 6]


@torch.no_grad()
def test_kept_tokens_are_whole_spans_but_one_per_stage(tiny):
    model, _ = tiny
    c, ids = spanned(model), prompt_ids(150, seed=3)
    sp = rule(model).span_ids(ids, c.span_max)[0]  # (T,)
    with S.pruning(model, "norm", c, spans=rule(model)) as st:
        model(ids)
    forced = S.engine.forced_mask(c, torch.ones_like(ids), None)[0]
    alive = torch.ones(150, dtype=torch.bool)
    for kept in st.stage_positions:
        keep = torch.zeros(150, dtype=torch.bool)
        keep[kept[0]] = True
        cut = [int(s) for s in sp[alive & ~forced].unique()
               if 0 < int((keep & ~forced & (sp == s)).sum()) < int((alive & ~forced & (sp == s)).sum())]
        assert len(cut) <= 1, f"spans cut at one stage: {cut}"
        alive = keep
    assert st.kept_per_stage == c.keep_schedule(150)  # the budget is the paper's


@torch.no_grad()
def test_spans_change_what_is_kept(tiny_sdpa):
    model, _ = tiny_sdpa
    ids = prompt_ids(150, seed=3)
    with S.pruning(model, "norm", spanned(model), spans=rule(model)) as a:
        model(ids)
    with S.pruning(model, "norm", spanned(model, span_max=0)) as b:
        model(ids)
    assert a.stage_positions[-1].tolist() != b.stage_positions[-1].tolist()


@torch.no_grad()
@pytest.mark.parametrize("scorer", ["norm", "attention"])
def test_masked_simulation_keeps_the_engines_spans(tiny, scorer):
    model, _ = tiny
    assert_masked_keeps_what_the_engine_keeps(model, scorer, spanned(model), prompt_ids(150, seed=3), rule(model))


def test_a_span_config_needs_its_rule_and_only_it(tiny_sdpa):
    model, _ = tiny_sdpa
    with pytest.raises(PruningError, match="span_max=6"):
        with S.pruning(model, "norm", spanned(model)):
            pass
    with pytest.raises(PruningError, match="keeps tokens"):
        with S.pruning(model, "norm", spanned(model, span_max=0), spans=rule(model)):
            pass
    with pytest.raises(ValueError, match="span_max"):
        spanned(model, span_max=-1)


def test_variant_syntax_and_json_round_trip(tiny_sdpa):
    model, _ = tiny_sdpa
    v = S.config.parse_variant("sdtp@0.8+R0.02+W32")
    c = v.config(model)
    assert (c.span_max, c.local_frac, c.keep_ratio) == (32, 0.02, 0.8)
    assert S.SDTPConfig.from_json(c.to_json()) == c
    assert "span_max" not in S.SDTPConfig.for_model(model).to_dict()  # token configs read as before
    with pytest.raises(ValueError, match="at least 1 token"):
        S.config.parse_variant("sdtp+W0")
    with pytest.raises(ValueError, match="keeps every token"):
        S.config.parse_variant("dense+W8")


def test_the_suite_runs_whole_span_specs_on_both_decode_loops(tiny_sdpa, tmp_path):
    """A "+W" spec reaches the engine with the tokenizer's rule: both decode loops answer alike, and the last
    stage keeps whole spans of the prompt (all but at most one span cut)."""
    from sdtp_lib.eval import synthetic as Y
    model, tok = tiny_sdpa
    spec = "sdtp@0.7+R0.02+W8:norm"
    base = dict(tasks=("passkey", "kv_retrieval"), lengths=(256,), layouts=("question_last",), n_samples=1,
                scorers=("dense", spec, "sdtp@0.7+R0.02:norm"))
    rows = {d: Y.run_suite(model, tok, Y.SuiteConfig(**base, decode=d), tmp_path / d, progress=False)
            for d in ("hf", "static")}
    keep = ("id", "scorer", "prediction", "compression", "kept_tokens", "needle_kept")
    assert [{k: r[k] for k in keep} for r in rows["static"]] == [{k: r[k] for k in keep} for r in rows["hf"]]
    spanned_rows = [r for r in rows["hf"] if r["scorer"] == spec]
    token_rows = [r for r in rows["hf"] if r["scorer"] == "sdtp@0.7+R0.02:norm"]
    assert len(spanned_rows) == 2 and [r["kept_tokens"] for r in spanned_rows] == [r["kept_tokens"] for r in token_rows]
    rule_ = SpanRule.from_tokenizer(tok)
    assert SpanRule.from_tokenizer(tok) is rule_  # built once per tokenizer
    assert bool(rule_.table[tok.convert_tokens_to_ids(tok.tokenize("."))[-1]])
