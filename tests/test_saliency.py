"""Stage 1 saliency: gradient x activation against finite differences, model left untouched, the file, resume, stats."""
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import sdtp_lib as S
from sdtp_lib.training.saliency import (PARTIAL_NAME, SaliencyFileError, SaliencyStore, compute_saliency, format_stats,
                               saliency_stats, spearman, token_saliency)

from .conftest import FAMILIES, prompt_ids

T, LAB = 24, slice(10, 16)  # labelled positions 10..15; positions >= 15 cannot influence the loss


def ids_labels(T=T, lab=LAB, seed=0):
    ids = prompt_ids(T, seed=seed)
    labels = torch.full_like(ids, -100)
    labels[:, lab] = ids[:, lab]
    return ids, labels


def n_hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


# ------------------------------------------------------------------ correctness
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
def test_saliency_equals_finite_difference(family, attn):
    """(grad . x)_t = d/d eps L(x_t -> (1 + eps) x_t) at 0, the loss recomputed independently (full logits, F.cross_entropy)."""
    model, _ = S.load_model(family, dtype=torch.float64, device="cpu", attn_implementation=attn)
    ids, labels = ids_labels()
    sal = token_saliency(model, ids, labels, [0, 2, 3])
    assert set(sal) == {0, 2, 3} and sal[2].shape == (1, T) and sal[2].dtype == torch.float32

    def loss(layer, t, eps):
        def scale(module, args, kwargs):
            h = (args[0] if args else kwargs["hidden_states"]).clone()
            h[:, t] *= 1 + eps
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
        handle = model.get_decoder().layers[layer].register_forward_pre_hook(scale, with_kwargs=True)
        try:
            with torch.no_grad():
                logits = model(ids).logits  # (1, T, V)
        finally:
            handle.remove()
        return F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100).item()

    # RMSNorm computes in float32 even in a float64 model: eps = 1e-2 keeps the rounding noise of the
    # difference near 1e-4 of the layer's largest saliency (the O(eps^2) truncation error is smaller)
    eps = 1e-2
    for layer in (0, 2, 3):
        scale = sal[layer].abs().max().item()
        for t in (0, 7, 14, 18):
            fd = (loss(layer, t, eps) - loss(layer, t, -eps)) / (2 * eps)
            assert fd == pytest.approx(sal[layer][0, t].item(), rel=2e-3, abs=1e-3 * scale), (layer, t)
    # the normalisation is HF's: mean CE over labelled tokens
    with torch.no_grad():
        hf = model(ids, labels=labels).loss.item()
    assert hf == pytest.approx(loss(0, 0, 0.0), rel=1e-5)


def test_tokens_after_last_label_have_zero_saliency(tiny):
    """The last label (position 15) is predicted at position 14: hidden states at positions >= 15 never reach it."""
    model, _ = tiny
    ids, labels = ids_labels()
    sal = token_saliency(model, ids, labels, range(model.config.num_hidden_layers))
    for layer, s in sal.items():
        assert torch.all(s[0, LAB.stop - 1:] == 0), layer
        assert torch.all(s[0, :LAB.stop - 1] != 0), layer  # every earlier token does reach the loss


def test_batch_rows_are_independent(tiny_sdpa):
    model, _ = tiny_sdpa
    ids, labels = ids_labels()
    ids2, labels2 = ids_labels(seed=1, lab=slice(5, 20))
    both = token_saliency(model, torch.cat([ids, ids2]), torch.cat([labels, labels2]), [1, 3])
    for b, (x, y) in enumerate([(ids, labels), (ids2, labels2)]):
        one = token_saliency(model, x, y, [1, 3])
        for l in (1, 3):
            torch.testing.assert_close(both[l][b], one[l][0], rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------ model left untouched
@pytest.mark.parametrize("family", FAMILIES)
def test_model_left_untouched(family):
    model, _ = S.load_model(family, dtype=torch.float32, device="cpu")
    model.get_decoder().layers[1].mlp.up_proj.weight.requires_grad_(False)  # a mixed pattern to restore
    flags = [p.requires_grad for p in model.parameters()]
    hooks = n_hooks(model)
    model.train()
    ids, labels = ids_labels()
    before = model(ids).logits.detach()
    token_saliency(model, ids, labels, [0, 3])
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert n_hooks(model) == hooks
    assert all(m.training for m in model.modules())
    model.eval()
    token_saliency(model, ids, labels, [2])
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=0)

    def boom(*a):
        raise RuntimeError("boom")
    handle = model.get_decoder().layers[2].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        token_saliency(model, ids, labels, [0, 3])
    handle.remove()
    assert [p.requires_grad for p in model.parameters()] == flags
    assert n_hooks(model) == hooks and all(p.grad is None for p in model.parameters())


def test_clear_errors(tiny_sdpa):
    model, _ = tiny_sdpa
    ids, labels = ids_labels()
    with pytest.raises(ValueError, match="out of range.*4 decoder layers"):
        token_saliency(model, ids, labels, [4])
    with pytest.raises(ValueError, match="out of range"):
        token_saliency(model, ids, labels, [-1])
    with pytest.raises(ValueError, match="no layer"):
        token_saliency(model, ids, labels, [])
    with pytest.raises(ValueError, match="no labelled token"):
        token_saliency(model, ids, torch.full_like(ids, -100), [0])
    only_first = torch.full_like(ids, -100)
    only_first[0, 0] = 1  # labels[0] is never predicted
    with pytest.raises(ValueError, match="no labelled token"):
        token_saliency(model, ids, only_first, [0])
    with pytest.raises(ValueError, match="must both be"):
        token_saliency(model, ids, labels[:, :-1], [0])
    with pytest.raises(ValueError, match="attention_mask"):
        token_saliency(model, ids, labels, [0], attention_mask=torch.ones(1, T + 1))
    with S.pruning(model, "norm", S.SDTPConfig.for_model(model)):
        with pytest.raises(ValueError, match="outside a pruning"):
            token_saliency(model, ids, labels, [0])


# ------------------------------------------------------------------ the file
def records(n=3, layers=(1, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        L = 5 + 3 * i
        ids = torch.randint(0, 100, (L,), generator=g)
        out.append(dict(input_ids=ids, attention_mask=torch.ones(L, dtype=torch.int8), labels=ids.clone(),
                        prompt_len=L - 2, source_index=10 + i, info={"layout": "q_first"},
                        scores={l: torch.randn(L, generator=g) for l in layers}))
    return out


def test_store_round_trip(tmp_path):
    store = SaliencyStore.from_records(records(), {"schema": "sdtp-saliency", "version": 1, "seed": 3})
    path = store.save(tmp_path / "s.safetensors")
    back = SaliencyStore.load(path)
    assert len(back) == 3 and back.layers == (1, 3) and back.header == store.header
    assert back.header["sample_info"] == {"layout": ["q_first"] * 3}
    for i, r in enumerate(records()):
        s = back.sample(i)
        assert torch.equal(s["input_ids"], r["input_ids"]) and s["prompt_len"] == r["prompt_len"]
        assert s["source_index"] == 10 + i and torch.equal(s["scores"][3], r["scores"][3])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        store.save(path)
    store.save(path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name != "s.safetensors"]  # no tmp file left


def test_bad_files_fail_clearly(tmp_path):
    from safetensors.torch import save_file
    store = SaliencyStore.from_records(records(), {"schema": "sdtp-saliency", "version": 1})
    good = store.save(tmp_path / "good.safetensors")

    text = tmp_path / "text.safetensors"
    text.write_text("hello, not a tensor file")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    other = tmp_path / "other.safetensors"
    SaliencyStore.from_records(records(), {"schema": "sdtp-saliency", "version": 99}).save(other)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(foreign))
    missing = tmp_path / "missing.safetensors"
    save_file({"input_ids": store.input_ids}, str(missing), metadata={"sdtp_saliency": json.dumps(store.header)})
    bad_json = tmp_path / "bad_json.safetensors"
    save_file({"x": torch.zeros(3)}, str(bad_json), metadata={"sdtp_saliency": "{not json"})

    for path, why in [(text, "not a readable"), (truncated, "not a readable"), (other, "version 99"),
                      (foreign, "not an SDTP saliency file"), (missing, "missing tensor"), (bad_json, "not a readable")]:
        with pytest.raises(SaliencyFileError, match=why) as e:
            SaliencyStore.load(path)
        assert str(path) in str(e.value)
    assert isinstance(SaliencyFileError("x"), ValueError)
    with pytest.raises(FileNotFoundError):
        SaliencyStore.load(tmp_path / "nope.safetensors")


# ------------------------------------------------------------------ the run, resume
@dataclass
class Rec:  # duck-typed like sdtp_lib.training.data.Sample
    input_ids: list
    labels: list
    prompt_len: int
    source_index: int = 0
    layout: str = "q_first"


def make_samples(n=6):
    out = []
    for i in range(n):
        L = 20 + 4 * i
        ids = prompt_ids(L, seed=100 + i)[0].tolist()
        P = L - 6
        out.append(Rec(ids, [-100] * P + ids[P:], P, source_index=i))
    return out


class Crash(Exception):
    pass


class Interrupting(list):
    """Raises when sample `at` is requested: the run stops with `at` samples done."""
    def __init__(self, items, at, action=None):
        super().__init__(items)
        self.at, self.action = at, action

    def __getitem__(self, i):
        if i == self.at:
            if self.action is None:
                raise Crash
            self.action()
        return super().__getitem__(i)


def same_store(a: SaliencyStore, b: SaliencyStore):
    assert len(a) == len(b) and a.layers == b.layers
    for k in ("input_ids", "attention_mask", "labels", "offsets", "prompt_len", "source_index"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    for l in a.layers:
        assert torch.equal(a.scores[l], b.scores[l]), l
    assert a.header == b.header


def test_compute_and_resume_equals_uninterrupted(tiny_sdpa, tmp_path):
    model, _ = tiny_sdpa
    samples, layers = make_samples(), [1, 3]
    ref = SaliencyStore.load(compute_saliency(model, samples, layers, tmp_path / "ref", data_source="synthetic"))
    assert len(ref) == 6 and ref.layers == (1, 3) and ref.header["data_source"] == "synthetic"
    assert ref.header["model_id"] == "tiny-qwen2" or ref.header["model_id"] == "tiny-llama"
    assert set(ref.header["versions"]) == {"torch", "transformers", "sdtp_lib"}
    assert ref.prompt_len.tolist() == [s.prompt_len for s in samples]
    assert ref.header["sample_info"]["layout"] == ["q_first"] * 6

    out = tmp_path / "run"
    with pytest.raises(Crash):
        compute_saliency(model, Interrupting(samples, 3), layers, out, data_source="synthetic", checkpoint_every=100)
    assert not (out / "saliency.safetensors").exists()
    assert len(SaliencyStore.load(out / PARTIAL_NAME)) == 3  # saved on the way out
    with pytest.raises(ValueError, match="different run"):
        compute_saliency(model, samples, layers, out, data_source="synthetic", seed=1)
    path = compute_saliency(model, samples, layers, out, data_source="synthetic")
    assert not (out / PARTIAL_NAME).exists()
    same_store(SaliencyStore.load(path), ref)

    # an existing final file: returned as is for the same run, refused for another, replaced with overwrite
    mtime = path.stat().st_mtime_ns
    assert compute_saliency(model, samples, layers, out, data_source="synthetic") == path
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError):
        compute_saliency(model, samples, [0, 2], out, data_source="synthetic")
    compute_saliency(model, samples, [0, 2], out, data_source="synthetic", overwrite=True)
    assert SaliencyStore.load(path).layers == (0, 2)


def test_periodic_checkpoint_resumes_after_hard_kill(tiny_sdpa, tmp_path):
    """A kill that skips the except path (SIGKILL, OOM) loses at most the samples since the last checkpoint."""
    model, _ = tiny_sdpa
    samples, out = make_samples(), tmp_path / "run"
    snapshot = tmp_path / "snapshot.safetensors"
    take = lambda: snapshot.write_bytes((out / PARTIAL_NAME).read_bytes())
    ref = compute_saliency(model, Interrupting(samples, 5, take), [1, 3], out, checkpoint_every=2)  # ckpts at 2, 4
    assert len(SaliencyStore.load(snapshot)) == 4
    ref_store = SaliencyStore.load(ref)
    ref.unlink()
    (out / PARTIAL_NAME).write_bytes(snapshot.read_bytes())
    same_store(SaliencyStore.load(compute_saliency(model, samples, [1, 3], out)), ref_store)


def test_batched_equals_one_by_one(tiny_sdpa, tmp_path):
    model, _ = tiny_sdpa
    samples = make_samples(5)
    one = SaliencyStore.load(compute_saliency(model, samples, [0, 3], tmp_path / "a"))
    many = SaliencyStore.load(compute_saliency(model, samples, [0, 3], tmp_path / "b", batch_size=3))
    assert torch.equal(one.input_ids, many.input_ids) and torch.equal(one.offsets, many.offsets)
    for l in (0, 3):
        torch.testing.assert_close(many.scores[l], one.scores[l], rtol=1e-4, atol=1e-7)


def test_seq_len_is_checked(tiny_sdpa, tmp_path):
    with pytest.raises(ValueError, match="seq_len=10"):
        compute_saliency(tiny_sdpa[0], make_samples(2), [1], tmp_path, seq_len=10)


# ------------------------------------------------------------------ statistics
def test_stats_known_concentration():
    P, tail = 100, 5
    onehot = torch.zeros(P + tail)
    onehot[37] = -2.0  # one token holds all |saliency|
    onehot[P:] = 1e3  # response tokens: not prunable, not counted
    uniform = torch.cat([torch.ones(P), torch.full((tail,), 1e3)])
    ramp = torch.arange(P + tail, dtype=torch.float32)
    recs = [dict(input_ids=torch.zeros(P + tail, dtype=torch.long), attention_mask=torch.ones(P + tail),
                 labels=torch.zeros(P + tail, dtype=torch.long), prompt_len=P, source_index=i,
                 scores={4: s4, 7: s7, 10: s10})
            for i, (s4, s7, s10) in enumerate([(onehot, ramp, -ramp), (uniform, ramp, -ramp)])]
    stats = saliency_stats(SaliencyStore.from_records(recs, {}))
    rows = {r["layer"]: r for r in stats["per_layer"]}
    assert stats["num_samples"] == 2
    assert rows[4]["top10_share"] == pytest.approx((1.0 + 0.1) / 2)
    assert rows[4]["top35_share"] == pytest.approx((1.0 + 0.35) / 2)
    assert rows[7]["spearman_next"] == pytest.approx(-1.0)
    assert rows[10]["spearman_next"] is None
    assert rows[4]["spearman_next"] == pytest.approx(0.0, abs=0.2)  # onehot/uniform: near-constant ranks
    assert all(isinstance(v, float) for r in stats["per_layer"] for k, v in r.items() if k in ("top10_share", "top35_share"))
    json.dumps(stats)
    table = format_stats(stats)
    assert table.splitlines()[0].startswith("| layer | top-10% share | top-35% share")
    assert "| 4 | 0.550 | 0.675 |" in table


def test_spearman():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x) == pytest.approx(1.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, torch.tensor([1.0, 1.0, 2.0, 2.0])) == pytest.approx(0.894427, abs=1e-5)  # scipy's value
    assert spearman(x, torch.ones(4)) is None and spearman(x[:1], x[:1]) is None
