"""TorchEngine's static decoder (the CUDA-graph path's step, run eagerly on CPU) equals eager decoding."""

from __future__ import annotations

import pytest
import torch

from model import M1Config, M1ForCausalLM
from model.generation import SamplingParams, TorchEngine, dense_moe


@pytest.fixture(scope="module")
def m1():
    torch.manual_seed(0)
    # partial RoPE, two softmax layers, short lightning blocks: every path of the step is exercised
    cfg = M1Config.preset("tiny", rotary_dim=16, block_size=4, num_hidden_layers=4,
                          layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"])
    return M1ForCausalLM(cfg).eval()


def test_dense_moe_equals_sparse_moe(m1):
    moe = m1.model.layers[0].block_sparse_moe
    x = torch.randn(37, m1.config.hidden_size)
    with torch.no_grad():
        sparse, _ = moe(x)
        dense = dense_moe(moe, x)
    assert (sparse - dense).abs().max().item() < 1e-6


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_decoding_equals_eager(m1, temperature):
    prompts = [[5, 6, 7], list(range(1, 14)), [9]]  # left padding of 10 and 12 tokens
    params = SamplingParams(max_new_tokens=20, temperature=temperature, repetition_n=10**6)
    runs = {mode: TorchEngine(m1, decode=mode).generate(prompts, params, torch.Generator().manual_seed(4))
            for mode in ("eager", "static")}
    assert runs["static"].tokens == runs["eager"].tokens
    for a, b in zip(runs["static"].logprobs, runs["eager"].logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)


def test_static_decoding_stops_rows_like_eager(m1):
    # a stop token ends row 0 early: eager drops it from the batch, static keeps decoding it and
    # ignores it; greedy, since sampling draws differ once the batch shrinks
    prompts = [[3, 4], [8, 9, 10], [1]]
    eager = TorchEngine(m1, decode="eager").generate(prompts, SamplingParams(max_new_tokens=30, temperature=0))
    stop = eager.tokens[0][4]
    params = SamplingParams(max_new_tokens=30, temperature=0, stop_token_ids=(stop,))
    runs = [TorchEngine(m1, decode=mode).generate(prompts, params) for mode in ("eager", "static")]
    assert runs[0].tokens == runs[1].tokens and runs[0].finish_reasons == runs[1].finish_reasons
    assert runs[1].finish_reasons[0] == "eos" and len(runs[1].tokens[0]) <= 5


def test_static_decoding_needs_the_native_model():
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="needs M1ForCausalLM"):
        TorchEngine(hf, decode="graph")
    with pytest.raises(ValueError, match="expected one of"):
        TorchEngine(hf, decode="fast")
