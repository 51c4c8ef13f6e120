"""The floor on kept tokens (SDTPConfig.min_keep, "+M<n>"): short prompts are pruned less, long ones as before."""
import pytest
import torch

import sdtp_lib as S
from sdtp_lib.config import parse_variant
from sdtp_lib.training.masked import masked_pruning

from .conftest import prompt_ids


def test_the_schedule_never_drops_below_the_floor_and_is_unchanged_above_it():
    plain = S.SDTPConfig.for_model(24, keep_ratio=0.8)
    floored = S.SDTPConfig.for_model(24, keep_ratio=0.8, min_keep=256)
    assert plain.keep_schedule(1024)[-1] == 110 and floored.keep_schedule(1024)[-1] == 256
    assert floored.keep_schedule(1024) == [max(k, 256) for k in plain.keep_schedule(1024)]
    assert floored.keep_schedule(8192) == plain.keep_schedule(8192)  # 0.8**10 * 8192 = 880 > 256
    assert floored.keep_schedule(200) == [200] * 10  # a prompt shorter than the floor is not pruned


@torch.no_grad()
def test_engine_and_masked_simulation_keep_the_floor(tiny):
    model, _ = tiny
    c = S.SDTPConfig.for_model(model, keep_ratio=0.5, min_keep=40)
    ids = prompt_ids(150, seed=3)
    with S.pruning(model, "norm", c) as phys:
        model(ids)
    assert phys.kept_per_stage == c.keep_schedule(150) and min(phys.kept_per_stage) == 40
    am = torch.ones_like(ids)
    with masked_pruning(model, "norm", c, am, mode="topk") as st:
        model(ids, attention_mask=am)
    for m, kept in zip(st.masks, phys.stage_positions):
        assert m[0].nonzero().flatten().tolist() == kept[0].tolist()


def test_variant_and_json(tiny_sdpa):
    model, _ = tiny_sdpa
    c = parse_variant("sdtp@0.8+R0.02+W96+M256").config(model)
    assert (c.min_keep, c.span_max, c.local_frac) == (256, 96, 0.02)
    assert S.SDTPConfig.from_json(c.to_json()) == c
    assert "min_keep" not in S.SDTPConfig.for_model(model).to_dict()
    with pytest.raises(ValueError, match="min_keep"):
        S.SDTPConfig.for_model(model, min_keep=-1)
    with pytest.raises(ValueError, match="keeps every token"):
        parse_variant("dense+M64")
