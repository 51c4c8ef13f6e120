import contextlib

import pytest
import torch

import sdtp_lib as S

FAMILIES = ("tiny-qwen2", "tiny-llama")
ATTNS = ("sdpa", "eager")


@pytest.fixture(scope="session", params=[(f, a) for f in FAMILIES for a in ATTNS], ids=lambda p: f"{p[0]}-{p[1]}")
def tiny(request):
    """(model, tokenizer) for every tiny family x attention implementation."""
    family, attn = request.param
    torch.manual_seed(0)
    return S.load_model(family, dtype=torch.float32, device="cpu", attn_implementation=attn)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_sdpa(request):
    return S.load_model(request.param, dtype=torch.float32, device="cpu")


def prompt_ids(T: int, B: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, T), generator=g)


def cfg(model, r: float) -> S.SDTPConfig:
    """The default stage placement for `model` at keep ratio r."""
    return S.SDTPConfig.for_model(model, keep_ratio=r)


@contextlib.contextmanager
def favouring(model, token_id: int, bonus: float = 100.0):
    """The model's logits with `bonus` added to one token (a forward hook on the output embeddings, removed after)."""
    hook = model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: out.index_add(-1, torch.tensor([token_id]), torch.full((*out.shape[:-1], 1), bonus)))
    try:
        yield
    finally:
        hook.remove()


def assert_masked_keeps_what_the_engine_keeps(model, scorer, config, ids, spans=None):
    """The masked simulation (mode "topk") keeps the physical engine's tokens at every stage, and its logits at the
    kept positions are the engine's. `scorer` is a name or a zero-argument factory (a fresh scorer for each run)."""
    from sdtp_lib.training.masked import masked_pruning
    make = scorer if callable(scorer) else (lambda: scorer)
    with S.pruning(model, make(), config, spans=spans) as phys:
        ref = model(ids).logits
    am = torch.ones_like(ids)
    extra = {} if spans is None else {"spans": spans, "input_ids": ids}
    with masked_pruning(model, make(), config, am, mode="topk", **extra) as sim:
        out = model(ids, attention_mask=am).logits
    for m, kept in zip(sim.masks, phys.stage_positions):
        assert m[0].nonzero().flatten().tolist() == kept[0].tolist()
    torch.testing.assert_close(out[:, phys.kept_positions[0]], ref, rtol=1e-4, atol=1e-4)
    return phys
