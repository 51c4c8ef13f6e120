"""The saliency explorer (sdtp_lib.workspace.explorer): traces agree with the engine, HTML is escaped and self-contained."""
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.workspace import explorer
from sdtp_lib.engine import forced_mask, select_tokens
from sdtp_lib.scorers import token_saliency

PROMPT = ("Summarise the following note in one line: the meeting moved to Thursday at noon, "
          "bring the budget sheet and the two drafts")
NASTY = 'x <script>alert(1)</script> a & b "quotes"\n\tcafé 😀 done'
ASCII = 'Hello world\n\tline two: a & b <tag> "x" <|im_end|> text'


def chat_ids(tok, text: str) -> torch.Tensor:
    s = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return torch.tensor([tok(s, add_special_tokens=False)["input_ids"]])  # (1, T)


@pytest.fixture(scope="module")
def qwen():
    model, tok = S.load_model("tiny-qwen2", dtype=torch.float32, device="cpu")
    return model, tok, S.SDTPConfig.for_model(model)


@pytest.fixture(scope="module")
def nasty(qwen):
    model, tok, config = qwen
    ids = chat_ids(tok, NASTY * 2)
    return ids, explorer.trace_prompt(model, tok, ids, "norm", config, answer_ids=torch.tensor(tok("ok")["input_ids"]),
                                 title="nasty <b>")


class Spans(HTMLParser):
    """Token spans (attrs, unescaped text) and start/end tag counts of rendered HTML."""
    def __init__(self, text):
        super().__init__()
        self.spans, self.depth, self.opened, self.closed = [], 0, {}, {}
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "meta":  # void element
            return
        self.opened[tag] = self.opened.get(tag, 0) + 1
        a = dict(attrs)
        if tag == "span" and "sdtp-tok" in a.get("class", "").split():
            self.spans.append([a, ""])
            self.depth = 1
        elif self.depth:
            self.depth += 1

    def handle_endtag(self, tag):
        self.closed[tag] = self.closed.get(tag, 0) + 1
        self.depth = max(0, self.depth - 1)

    def handle_data(self, data):
        if self.depth:
            self.spans[-1][1] += data


# ------------------------------------------------------------------ trace_prompt
def test_trace_kept_is_forced_plus_top_k_by_recorded_score(tiny_sdpa):
    model, tok = tiny_sdpa
    config = S.SDTPConfig.for_model(model)
    ids = chat_ids(tok, PROMPT)
    T = ids.shape[1]
    assert 100 <= T <= 150
    with torch.no_grad():
        before = model(ids).logits
        hidden = model(ids, output_hidden_states=True).hidden_states  # hidden[l] enters layer l
    tr = explorer.trace_prompt(model, tok, ids, "norm", config)
    assert tr.prompt_len == T and tr.token_ids == ids[0].tolist()
    assert tr.score.shape == tr.kept.shape == (config.num_stages, T) and tr.saliency is None
    assert tr.kept_counts == config.keep_schedule(T)
    # stage 0 scores are the norm of the hidden state entering the first stage layer, for every token
    np.testing.assert_allclose(tr.score[0], hidden[config.stage_layers[0]][0].norm(dim=-1).numpy(), rtol=1e-5)
    forced = forced_mask(config, torch.ones(1, T, dtype=torch.long), None)[0].numpy()  # (T,)
    entering = np.ones(T, bool)
    for s, k in enumerate(config.keep_schedule(T)):
        assert not (tr.kept[s] & ~entering).any(), f"stage {s}: kept a token dropped earlier"
        assert np.array_equal(np.isnan(tr.score[s]), ~entering), f"stage {s}: NaN exactly on dropped tokens"
        idx = np.flatnonzero(entering)
        sel = select_tokens(torch.from_numpy(tr.score[s, idx])[None], torch.from_numpy(forced[idx])[None], k)
        expect = np.zeros(T, bool)
        expect[idx[sel[0].numpy()]] = True
        assert np.array_equal(tr.kept[s], expect)
        assert tr.kept[s][forced].all()
        free_kept, free_dropped = tr.kept[s] & ~forced, entering & ~tr.kept[s] & ~forced
        if free_kept.any() and free_dropped.any():  # independent of select_tokens: sorted by score
            assert tr.score[s, free_kept].min() >= tr.score[s, free_dropped].max()
        entering = tr.kept[s]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)
    assert not any(len(m._forward_pre_hooks) for m in model.modules())


def test_trace_of_a_span_config_keeps_what_the_engine_keeps_with_the_tokenizers_spans(tiny_sdpa):
    from sdtp_lib.engine import keep_indices
    from sdtp_lib.spans import span_rule
    model, tok = tiny_sdpa
    config = S.SDTPConfig.for_model(model, keep_ratio=0.8, span_max=6)
    ids = chat_ids(tok, PROMPT)
    T = ids.shape[1]
    tr = explorer.trace_prompt(model, tok, ids, "norm", config)
    assert tr.kept_counts == config.keep_schedule(T)
    spans = span_rule(config, tok).span_ids(ids, config.span_max)  # (1, T)
    forced = forced_mask(config, torch.ones(1, T, dtype=torch.long), None)  # (1, T)
    entering, moved = np.ones(T, bool), False
    for s, k in enumerate(config.keep_schedule(T)):  # each stage: keep_indices on the recorded scores and spans
        idx = np.flatnonzero(entering)
        sel, _ = keep_indices(torch.from_numpy(tr.score[s, idx])[None], forced[:, idx], k, spans[:, idx], T)
        expect = np.zeros(T, bool)
        expect[idx[sel[0].numpy()]] = True
        assert np.array_equal(tr.kept[s], expect), f"stage {s}"
        top = select_tokens(torch.from_numpy(tr.score[s, idx])[None], forced[:, idx], k)
        moved |= not np.array_equal(np.sort(idx[top[0].numpy()]), np.flatnonzero(expect))
        entering = tr.kept[s]
    assert moved  # spans changed the choice somewhere: the trace did not keep tokens one by one


def test_trace_with_predictor_records_its_scores(tiny_sdpa):
    model, tok = tiny_sdpa
    config = S.SDTPConfig.for_model(model)
    ids = chat_ids(tok, PROMPT)
    pred = S.TokenPredictor.for_model(model, config, seed=0)
    tr = explorer.trace_prompt(model, tok, ids[0], pred, config)
    with torch.no_grad():
        h = model(ids, output_hidden_states=True).hidden_states[config.stage_layers[0]]
        ref = pred(h, 0)[0].numpy()
    np.testing.assert_allclose(tr.score[0], ref, rtol=1e-5, atol=1e-6)
    assert not np.isnan(tr.score[1:]).all() and np.isnan(tr.score[1]).sum() == ids.shape[1] - tr.kept_counts[0]
    # the recording wrapper keeps the predictor's FLOPs in the engine's count
    rec, plain = explorer._RecordingScorer(pred), lambda h, s, p: pred(h, s, p)
    with torch.no_grad():
        with S.pruning(model, rec, config) as st_rec:
            model(ids)
        with S.pruning(model, pred, config) as st_pred:
            model(ids)
        with S.pruning(model, plain, config) as st_plain:
            model(ids)
    assert st_rec.flops_pruned == st_pred.flops_pruned > st_plain.flops_pruned
    with pytest.raises(ValueError, match="stages at layers"):
        explorer.trace_prompt(model, tok, ids, pred, S.SDTPConfig(stage_layers=(1, 3), num_layers=4))


def test_trace_saliency_equals_token_saliency(tiny_sdpa):
    model, tok = tiny_sdpa
    config = S.SDTPConfig.for_model(model)
    ids = chat_ids(tok, PROMPT)[0]
    T = len(ids)
    ans = torch.tensor(tok("Meeting: Thursday noon, bring budget and drafts.")["input_ids"])
    tr = explorer.trace_prompt(model, tok, ids, "random", config, answer_ids=ans)
    full = torch.cat([ids, ans])
    labels = full.clone()
    labels[:T] = -100
    ref = token_saliency(model, full, labels, config.stage_layers)
    assert tr.saliency.shape == (config.num_stages, T) and tr.saliency.dtype == np.float32
    for s, l in enumerate(config.stage_layers):
        np.testing.assert_allclose(tr.saliency[s], ref[l][0, :T].numpy(), rtol=1e-5, atol=1e-8)
    assert np.abs(tr.saliency).max() > 0


# ------------------------------------------------------------------ tokens and HTML
def test_nasty_tokens_are_escaped_and_shown(qwen, nasty):
    model, tok, config = qwen
    ids, tr = nasty
    T, sched = ids.shape[1], config.keep_schedule(ids.shape[1])
    texts, special = explorer.token_strings(tok, ids)
    assert texts == tr.tokens and special == tr.special and len(texts) == T
    assert "\\xf0\\x9f\\x98\\x80" in "".join(texts) and "\\xc3\\xa9" in "".join(texts)  # 😀 and é, byte by byte
    assert [t for t, sp in zip(texts, special) if sp] == ["<|im_start|>", "<|im_end|>", "<|im_start|>"]
    for view in explorer.VIEWS:
        for stage in range(1, config.num_stages + 1):
            out = explorer.render_html(tr, stage, view)
            p = Spans(out)
            assert p.opened == p.closed, "unbalanced tags"
            assert "<script" not in out.lower() and ">&lt;</span>" in out and ">&gt;</span>" in out
            assert "&amp;" in out and "&quot;" in out and "↵" in out and "→" in out
            assert not set("ĠĊĉ\ufffd") & set(out)
            assert "&lt;|im_start|&gt;" in out and "<|im" not in out
            assert len(p.spans) == T == len(re.findall(r'class="sdtp-tok[" ]', out))
            assert [a["data-i"] for a, _ in p.spans] == [str(i) for i in range(T)]
            for (a, text), sp in zip(p.spans, special):
                assert ("sdtp-special" in a["class"]) == sp
                assert text.replace("↵", "").replace("→", "") == texts[int(a["data-i"])]
            assert "<script>alert(1)</script>" in "".join(text for _, text in p.spans)
            kept = [a["data-kept"] == "1" for a, _ in p.spans]
            assert kept == tr.kept[stage - 1].tolist()
            m = re.search(r'class="sdtp-summary" data-stage="(\d+)" data-layer="(\d+)" data-kept-count="(\d+)" '
                          r'data-prompt-len="(\d+)"', out)
            assert m.groups() == (str(stage), str(config.stage_layers[stage - 1]), str(sched[stage - 1]), str(T))
            assert f"{sched[stage - 1]} of {T} tokens kept" in out


def test_token_strings_sentencepiece_byte_fallback():
    """Llama/Mistral-style tokenizer: '▁' word starts keep their space, <0x..> byte tokens show as bytes."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6,
             "<0xC3>": 7, "<0xA9>": 8, "<0x0A>": 9}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "a")], byte_fallback=True, unk_token="<unk>"))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    ids = [1] + tok("a ab é\nb", add_special_tokens=False)["input_ids"]
    assert explorer.token_strings(tok, ids) == (["<s>", " a", " a", "b", " ", "\\xc3", "\\xa9", "\n", "b"],
                                           [True] + [False] * 8)


def test_ascii_tokens_reproduce_decode(qwen):
    model, tok, config = qwen
    ids = chat_ids(tok, ASCII)
    tr = explorer.trace_prompt(model, tok, ids, "recent", config)
    p = Spans(explorer.render_html(tr, 1, "kept"))
    shown = "".join(text.replace("↵", "").replace("→", "") for _, text in p.spans)
    assert shown == tok.decode(ids[0])
    assert sum("sdtp-special" in a["class"] for a, _ in p.spans) == 4  # 3 from the template, 1 in the text


def test_whole_tag_token_is_escaped_everywhere():
    """A tokenizer with whole-word tokens: the tag must be escaped in the text and in the title attribute."""
    toks = ["<|im_start|>", "<script>alert(1)</script>", ' a & "b"\n', "\tc"]
    tr = explorer.PromptTrace([0, 1, 2, 3], toks, [True, False, False, False], (1,), None,
                         np.array([[1, 2, 3, 4]], np.float32), np.array([[1, 0, 1, 1]], bool))
    for view in explorer.VIEWS:
        out = explorer.render_html(tr, 1, view)
        assert "<script" not in out.lower() and "<|" not in out
        assert view == "saliency" or out.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # text + title
        assert view == "saliency" or ('&amp; &quot;b&quot;↵\n</span>' in out and ">→\tc</span>" in out)


def test_view_colours():
    T = 6
    kept = np.array([[1, 1, 1, 1, 0, 1], [1, 0, 1, 1, 0, 1]], bool)
    score = np.array([[5, 4, 3, 2, 1, 6], [3, 1, 2, 4, np.nan, 5]], np.float32)
    sal = np.array([[-1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32)
    tr = explorer.PromptTrace(list(range(T)), list("abcdef"), [False] * T, (1, 2), sal, score, kept)
    bg = lambda out: re.findall(r'class="sdtp-tok" [^>]*style="background:(#[0-9a-f]{6})', out)
    k2, s2 = bg(explorer.render_html(tr, 2, "kept")), bg(explorer.render_html(tr, 2, "score"))
    a1 = bg(explorer.render_html(tr, 1, "saliency"))
    assert k2[0] == k2[2] != k2[1] != k2[4] != k2[0]  # kept / dropped here / dropped before
    assert "line-through" in explorer.render_html(tr, 2, "kept").split('data-i="4"')[1].split("</span>")[0]
    assert s2[4] == explorer.UNSCORED and len(set(s2) - {explorer.UNSCORED}) == 5  # rank colours, distinct
    assert a1[0] != a1[1] and a1[2] == a1[3]  # useful (negative saliency) vs distractor vs neutral
    assert "green: useful (removing it raises the loss)" in explorer.render_html(tr, 1, "saliency")
    no_sal = explorer.PromptTrace(tr.token_ids, tr.tokens, tr.special, (1, 2), None, score, kept)
    assert "sdtp-message" in explorer.render_html(no_sal, 1, "saliency")
    assert tr.kept_counts == [5, 4] and tr.num_stages == 2 and tr.prompt_len == 6


def test_bad_input(qwen, nasty):
    model, tok, config = qwen
    ids, tr = nasty
    S_ = tr.num_stages
    for bad in (0, S_ + 1):
        with pytest.raises(ValueError, match=f"stage {bad} out of range"):
            explorer.render_html(tr, bad, "kept")
        with pytest.raises(ValueError, match="out of range"):
            explorer.heatmap_figure(tr, "kept", bad)
    with pytest.raises(ValueError, match="unknown view 'foo'"):
        explorer.render_html(tr, 1, "foo")
    with pytest.raises(ValueError, match="unknown view 'foo'"):
        explorer.heatmap_figure(tr, "foo")
    with pytest.raises(ValueError, match="unknown view"):
        explorer.explorer({"a": tr}, view="foo")
    with pytest.raises(ValueError, match="one prompt"):
        explorer.trace_prompt(model, tok, ids.repeat(2, 1), "norm", config)
    with pytest.raises(ValueError, match="unknown pruning policy"):
        explorer.trace_prompt(model, tok, ids, "nope", config)


# ------------------------------------------------------------------ figure, widget, files
def test_heatmap_figure_long_prompt():
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    rng = np.random.default_rng(0)
    T, layers = 1000, (4, 7, 10)
    kept = np.ones((3, T), bool)
    for s in range(3):
        kept[s] = kept[s - 1] if s else kept[s]
        kept[s, rng.choice(np.flatnonzero(kept[s]), 100, replace=False)] = False
    score = np.where(np.vstack([np.ones((1, T), bool), kept[:-1]]), rng.normal(size=(3, T)), np.nan).astype(np.float32)
    tr = explorer.PromptTrace(list(range(T)), [f"t{i}$" for i in range(T)], [False] * T, layers,
                         rng.normal(size=(3, T)).astype(np.float32), score, kept)
    for view in explorer.VIEWS:
        fig = explorer.heatmap_figure(tr, view, stage=2)
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert 20 <= len(labels) <= 40 and labels[0] == r"t0\$"
        assert [t.get_text() for t in ax.get_yticklabels()] == ["s1 · L4", "s2 · L7", "s3 · L10"]
        assert fig.get_size_inches()[0] <= 14
        assert [p.get_xy() for p in ax.patches if isinstance(p, Rectangle)] == [(0, 1)]
        plt.close(fig)
    assert len(explorer.render_html(tr, 3, "score")) < 400_000


def test_explorer_updates(qwen, nasty):
    model, tok, config = qwen
    ids, tr = nasty
    short = explorer.trace_prompt(model, tok, ids, "norm", S.SDTPConfig.for_model(model, num_stages=2), title="2 stages")
    w = explorer.explorer({"nasty": tr, "short": short}, stage=1, view="kept")
    c = w.sdtp_controls
    assert "sdtp-explorer" in w._dom_classes and c["stage"].description == "stage"
    assert c["heatmap"].outputs and "image/png" in c["heatmap"].outputs[0]["data"]
    sched = config.keep_schedule(ids.shape[1])
    kept_count = lambda: int(re.search(r'data-kept-count="(\d+)"', c["html"].value).group(1))
    assert kept_count() == sched[0]
    c["stage"].value = 3
    assert kept_count() == sched[2] != sched[0]
    colours = lambda: re.findall(r"background:(#[0-9a-f]{6})", c["html"].value.split("sdtp-tokens")[1])
    before, png_before = colours(), c["heatmap"].outputs[0]["data"]["image/png"]
    c["view"].value = "score"
    assert colours() != before and c["heatmap"].outputs[0]["data"]["image/png"] != png_before
    c["sample"].value = "short"
    assert c["stage"].max == 2 and c["stage"].value == 2 and 'data-stage="2"' in c["html"].value
    c["view"].value = "saliency"  # no saliency in this trace: a message, not an error
    assert "sdtp-message" in c["html"].value and c["heatmap"].outputs[0]["output_type"] == "stream"


def test_save_static(tmp_path, nasty):
    ids, tr = nasty
    html_path, png_path = explorer.save_static(tr, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["explore.html", "explore.png"]
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and '<meta charset="utf-8">' in page
    assert "<title>nasty &lt;b&gt;</title>" in page and "<script" not in page.lower()
    assert [m for m in re.findall(r'data-view="(\w+)"', page)] == list(explorer.VIEWS)
    assert page.count(f'data-stage="{tr.num_stages}"') == 3
    p = Spans(page)
    assert p.opened == p.closed and len(p.spans) == 3 * tr.prompt_len
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    html2, _ = explorer.save_static(tr, tmp_path / "out", stage=1, name="s1")
    assert html2.name == "s1.html" and 'data-stage="1"' in html2.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="out of range"):
        explorer.save_static(tr, tmp_path, stage=tr.num_stages + 1)


def test_trace_with_a_layer_reading_scorer(tiny_sdpa):
    """The recording wrapper passes the stage layer through: the window-attention scorer works in the explorer and
    records the scores the engine kept by (the same kept tokens as an unwrapped pruned prefill)."""
    model, tok = tiny_sdpa
    config = S.SDTPConfig.for_model(model, keep_ratio=0.7)
    ids = chat_ids(tok, PROMPT)
    tr = explorer.trace_prompt(model, tok, ids, "attention", config)
    with torch.no_grad(), S.pruning(model, "attention", config) as st:
        model(ids)
    for s, pos in enumerate(st.stage_positions):
        assert np.flatnonzero(tr.kept[s]).tolist() == pos[0].tolist()
    assert not np.isnan(tr.score[0]).any() and (tr.score[0] >= 0).all()  # attention mass, smoothed
