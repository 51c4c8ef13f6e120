"""The fast greedy loop (static per-layer caches; CUDA graphs on GPU) against HF generate."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.decode import greedy_generate

from .conftest import prompt_ids


@torch.no_grad()
@pytest.mark.parametrize("r", [None, 0.6])
def test_fast_loop_matches_hf_generate(tiny, r):
    model, _ = tiny
    ids = prompt_ids(90, B=2, seed=4)
    N = 12
    conf = S.SDTPConfig.for_model(model, keep_ratio=r) if r else None
    scorer = "norm" if r else None
    res = greedy_generate(model, ids, N, scorer=scorer, config=conf, cuda_graph=False)
    if r:
        with S.pruning(model, scorer, conf) as st:
            ref = model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        assert res.kept_per_layer == st.kept_per_layer
    else:
        ref = model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        assert res.kept_per_layer == [90] * model.config.num_hidden_layers
    assert torch.equal(res.tokens, ref[:, 90:])
    assert set(res.timings) >= {"prefill_s", "decode_s", "e2e_s", "decode_ms_per_token"}
    assert not any(len(l._forward_pre_hooks) for l in model.get_decoder().layers)  # hooks removed


def test_fast_loop_bad_input(tiny_sdpa):
    model, _ = tiny_sdpa
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, prompt_ids(10), 0)
