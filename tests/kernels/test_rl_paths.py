"""The RL update's and the samplers' paths through the kernels: on a GPU (or the interpreter on CPU)
``response_logprobs`` runs the Triton lightning prefill from a repeated cache and the fused fp32
log-probs, and must give what ``token_logprobs`` gives on the whole sequences, values and gradients;
the top-p cut must be the full sort's on the device's own topk and cumsum."""

from __future__ import annotations

import os

import torch

from model import M1Config, M1ForCausalLM
from model.generation import nucleus, nucleus_by_sort
from tests.test_model_generation import check_replies_against_whole_sequences

DEV = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


def test_response_logprobs_through_the_kernels_equal_the_whole_sequences():
    torch.manual_seed(0)
    cfg = M1Config.preset("tiny", vocab_size=60, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"],
                          block_size=16, kernel_backend="triton")
    model = M1ForCausalLM(cfg).to(DEV).train()
    g = torch.Generator().manual_seed(1)
    rand = lambda n: torch.randint(3, 60, (n,), generator=g).tolist()  # noqa: E731
    prompts, replies = [], []
    for j, n in enumerate((19, 26, 7)):  # prompts crossing a lightning block, left-padded when shared
        p = rand(n)
        for i in range(3):
            prompts.append(p)
            replies.append(rand(1 + (7 * i + 5 * j) % 21))
    check_replies_against_whole_sequences(model, prompts, replies, atol=1e-4, grad_atol=2e-4)


def test_nucleus_is_the_full_sorts_on_the_device():
    g = torch.Generator().manual_seed(0)
    for scale in (8.0, 3.0, 0.5):
        logits = torch.randn(256, 1024, generator=g) * scale
        logits[:64] *= 10
        probs = torch.softmax(logits, dim=-1).to(DEV)
        for top_p in (0.5, 0.95):
            assert torch.equal(nucleus(probs, top_p), nucleus_by_sort(probs, top_p))
