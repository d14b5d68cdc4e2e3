"""Generation: incremental decoding equals a full forward pass; sampling, stop and truncation rules."""

from __future__ import annotations

import math

import pytest
import torch

from model import M1Config, M1ForCausalLM
import model.generation as generation
from model.generation import SamplingParams, TorchEngine, nucleus, nucleus_by_sort, sample
from model.logprobs import response_logprobs, token_logprobs


@pytest.fixture(scope="module")
def m1():
    torch.manual_seed(0)
    # partial RoPE (as the real M1) and short lightning blocks so prefill crosses block borders
    return M1ForCausalLM(M1Config.preset("tiny", rotary_dim=16, block_size=4)).eval()


def test_incremental_decoding_equals_full_forward(m1):
    ids = torch.randint(0, 1024, (3, 19))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding on row 0
    mask[2, :2] = 0
    with torch.no_grad():
        full = m1(ids, attention_mask=mask).logits  # [B, T, V]
        out = m1(ids[:, :9], attention_mask=mask[:, :9], use_cache=True)
        steps = [out.logits]
        cache = out.cache
        for t in range(9, 19):
            out = m1(ids[:, t:t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    inc = torch.cat(steps, dim=1)
    real = mask.bool()
    assert (inc - full)[real].abs().max().item() < 1e-4


def _check_logprobs_match(model, prompts, out):
    for p, toks, lps in zip(prompts, out.tokens, out.logprobs):
        with torch.no_grad():
            ref = token_logprobs(model, torch.tensor([p + toks]))[0][0, len(p):]
        assert torch.allclose(ref, torch.tensor(lps), atol=1e-4)


def test_generated_logprobs_match_training_path_m1(m1):
    prompts = [[5, 6, 7], list(range(1, 14)), [9]]
    g = torch.Generator().manual_seed(1)
    out = TorchEngine(m1).generate(prompts, SamplingParams(max_new_tokens=12), g)
    assert out.finish_reasons == ["length"] * 3 and all(len(t) == 12 for t in out.tokens)
    _check_logprobs_match(m1, prompts, out)


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_generated_logprobs_match_training_path_hf_llama():
    hf = _tiny_llama()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10]]
    out = TorchEngine(hf).generate(prompts, SamplingParams(max_new_tokens=8), torch.Generator().manual_seed(0))
    _check_logprobs_match(hf, prompts, out)


def test_batch_rows_decode_as_if_alone(m1):
    prompts = [[3, 4, 5, 6, 7, 8], [11, 12]]
    params = SamplingParams(max_new_tokens=6, temperature=0)
    both = TorchEngine(m1).generate(prompts, params)
    for i, p in enumerate(prompts):
        alone = TorchEngine(m1).generate([p], params)
        assert alone.tokens[0] == both.tokens[i]


class _CountingPrefill(TorchEngine):
    """Records the batch size of every prefill (a call with more than one new token)."""

    def _forward(self, ids, new_mask, full_mask, cache):
        if ids.shape[1] > 1:
            self.prefills.append(ids.shape[0])
        return super()._forward(ids, new_mask, full_mask, cache)


@pytest.mark.parametrize("decode", ["eager", "static"])
def test_a_repeated_prompt_is_prefilled_once_and_samples_as_if_alone(m1, decode):
    prompts = [[3, 4, 5, 6, 7, 8]] * 4 + [[11, 12]] * 3  # two groups, as RL's G samples of a prompt
    params = SamplingParams(max_new_tokens=8)
    eng = _CountingPrefill(m1, decode=decode)
    eng.prefills = []
    shared = eng.generate(prompts, params, torch.Generator().manual_seed(5))
    assert eng.prefills == [2]
    _check_logprobs_match(m1, prompts, shared)
    assert len({tuple(t) for t in shared.tokens[:4]}) > 1  # the copies sample apart
    # the same draws as prefilling every row: equal logits, so equal samples from the same generator
    full = TorchEngine(m1, decode=decode)
    full._prefill = lambda ids, mask: full._forward(ids, mask, mask, None)
    ref = full.generate(prompts, params, torch.Generator().manual_seed(5))
    assert shared.tokens == ref.tokens
    for a, b in zip(shared.logprobs, ref.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)


def test_prompts_equal_only_after_padding_are_not_merged(m1):
    # [0, 5] and [5] both pad to ids [0, 5] with pad id 0; their masks differ, so are their replies
    prompts = [[0, 5], [5], [0, 5], [5]]
    eng = _CountingPrefill(m1)
    eng.prefills = []
    out = eng.generate(prompts, SamplingParams(max_new_tokens=4, temperature=0))
    assert eng.prefills == [2]
    _check_logprobs_match(m1, prompts, out)


def test_repeated_prompts_share_prefill_on_a_hf_model():
    hf = _tiny_llama()
    prompts = [[1, 2, 3]] * 3 + [[4, 5, 6, 7, 8, 9, 10]] * 2
    eng = _CountingPrefill(hf)
    eng.prefills = []
    out = eng.generate(prompts, SamplingParams(max_new_tokens=8), torch.Generator().manual_seed(0))
    assert eng.prefills == [2]
    _check_logprobs_match(hf, prompts, out)


def _reference_run(m1, n=40):
    out = TorchEngine(m1).generate([[7, 8, 9]], SamplingParams(max_new_tokens=n, repetition_n=10**6),
                                   torch.Generator().manual_seed(3))
    return out.tokens[0], out.logprobs[0]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_repetition_truncation_fires_at_the_nth_confident_token(m1, n):
    toks, lps = _reference_run(m1)
    probs = sorted({math.exp(lp) for lp in lps})
    k = len(probs) // 3
    p = (probs[k] + probs[k + 1]) / 2  # about two thirds of tokens are "confident"; no token sits at p
    streak, expected = 0, None
    for i, lp in enumerate(lps):
        streak = streak + 1 if math.exp(lp) > p else 0
        if streak == n:
            expected = i + 1
            break
    assert expected is not None
    out = TorchEngine(m1).generate([[7, 8, 9]], SamplingParams(max_new_tokens=40, repetition_n=n, repetition_p=p),
                                   torch.Generator().manual_seed(3))
    assert out.finish_reasons == ["repetition"]
    assert out.tokens[0] == toks[:expected]


def test_stop_token_ends_with_eos_and_is_kept(m1):
    toks, _ = _reference_run(m1)
    k = 5
    stop = toks[k]
    first = toks.index(stop)
    out = TorchEngine(m1).generate([[7, 8, 9]], SamplingParams(max_new_tokens=40, stop_token_ids=(stop,)),
                                   torch.Generator().manual_seed(3))
    assert out.finish_reasons == ["eos"] and out.tokens[0] == toks[: first + 1]


def test_finished_rows_leave_the_batch_and_others_continue(m1):
    toks, _ = _reference_run(m1)
    stop = toks[0]
    prompts = [[7, 8, 9], [1, 2]]
    out = TorchEngine(m1).generate(prompts, SamplingParams(max_new_tokens=10, stop_token_ids=(stop,), temperature=0))
    greedy = TorchEngine(m1).generate([[1, 2]], SamplingParams(max_new_tokens=10, stop_token_ids=(stop,), temperature=0))
    assert out.tokens[1] == greedy.tokens[0] and out.finish_reasons[1] == greedy.finish_reasons[0]


def test_sampling_truncation_rules():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen_k = {sample(logits, SamplingParams(top_k=2), g)[0].item() for _ in range(200)}
    assert seen_k == {0, 1}
    seen_p = {sample(logits, SamplingParams(top_p=0.8), g)[0].item() for _ in range(200)}
    assert seen_p == {0, 1}  # 0.5 < 0.8 needs the second token, 0.8 reached: stop
    seen_p = {sample(logits, SamplingParams(top_p=0.81), g)[0].item() for _ in range(300)}
    assert seen_p == {0, 1, 2}
    tok, lp = sample(logits, SamplingParams(temperature=2.0, top_k=1), g)
    tempered = torch.log_softmax(logits / 2.0, dim=-1)
    assert tok.item() == 0 and abs(lp.item() - tempered[0, 0].item()) < 1e-6  # log-prob before truncation


@pytest.mark.parametrize("scale", [8.0, 3.0, 1.0, 0.1])
def test_nucleus_from_the_top_k_is_the_full_sorts_to_the_bit(scale):
    """Peaked rows (a trained policy's) to flat ones (an untrained one's: the nucleus is past the top k)."""
    g = torch.Generator().manual_seed(0)
    for top_p in (0.5, 0.9, 0.95, 0.999):
        for k in (1, 8, 64):
            logits = torch.randn(64, 1024, generator=g) * scale
            logits[:8] *= 10  # peaked rows beside flat ones: each row takes its own path
            probs = torch.softmax(logits, dim=-1)
            probs[3, torch.randperm(1024, generator=g)[:1000]] = 0.0  # top-k survivors
            assert torch.equal(nucleus(probs, top_p, k), nucleus_by_sort(probs, top_p))


def test_nucleus_defers_to_the_sort_only_where_its_cut_is_not_clear(monkeypatch):
    """A tie across the cut, or a cut within the margin of top_p, goes to the full sort; a clear cut
    inside the top k does not sort."""
    tie = torch.full((1, 256), 0.1 / 253)
    tie[0, :3] = torch.tensor([0.5, 0.2, 0.2])  # top-p 0.6: 0.5 and one of the two 0.2s
    edge = torch.full((1, 256), 0.2 / 253)
    edge[0, :3] = torch.tensor([0.5, 0.3, 0.0])  # top-p 0.8: mass before the third is 0.8, the threshold
    for probs, top_p in ((tie / tie.sum(), 0.6), (edge, 0.8)):
        assert torch.equal(nucleus(probs, top_p), nucleus_by_sort(probs, top_p))
    peaked = torch.softmax(torch.randn(64, 1024, generator=torch.Generator().manual_seed(1)) * 8, dim=-1)
    expected = nucleus_by_sort(peaked, 0.95)
    monkeypatch.setattr(generation, "nucleus_by_sort", lambda *a: pytest.fail("sorted a clear cut"))
    assert torch.equal(nucleus(peaked, 0.95), expected)
    for probs, top_p in ((tie / tie.sum(), 0.6), (edge, 0.8)):
        with pytest.raises(pytest.fail.Exception):
            nucleus(probs, top_p)


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_token_logprobs_padding_and_gradient(m1):
    model = M1ForCausalLM(M1Config.preset("tiny"))
    ids = torch.randint(0, 1024, (2, 10))
    lp, ent = token_logprobs(model, ids)
    full = torch.log_softmax(model(ids).logits.float(), dim=-1)
    ref = full[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert torch.allclose(lp[:, 1:], ref, atol=1e-5) and (lp[:, 0] == 0).all()
    assert torch.allclose(ent[:, 1:], -(full.exp() * full).sum(-1)[:, :-1], atol=1e-4)
    lp.sum().backward()
    assert model.lm_head.weight.grad is not None and model.model.embed_tokens.weight.grad.abs().sum() > 0
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids[:1]), dim=1)  # left padding
    mask = torch.cat((torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)), dim=1)
    with torch.no_grad():
        lp_pad, _ = token_logprobs(model, padded, mask)
    assert torch.allclose(lp_pad[0, 3:], lp[0].detach(), atol=1e-5) and (lp_pad[0, :4] == 0).all()


def _whole(prompts, replies, device="cpu"):
    """Right-padded prompt + reply ids, attention mask and reply mask."""
    width = max(len(p) + len(r) for p, r in zip(prompts, replies))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    attn, mask = torch.zeros_like(ids), torch.zeros(len(prompts), width)
    for i, (p, r) in enumerate(zip(prompts, replies)):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attn[i, : len(p) + len(r)] = 1
        mask[i, len(p) : len(p) + len(r)] = 1
    return ids.to(device), attn.to(device), mask.to(device)


def check_replies_against_whole_sequences(model, prompts, replies, atol, grad_atol):
    """``response_logprobs`` against ``token_logprobs`` on the whole sequences: values and entropies
    within ``atol``, zeros past each reply, every gradient within ``grad_atol`` of its largest entry."""
    ids, attn, mask = _whole(prompts, replies, next(model.parameters()).device)
    lp_all, ent_all = token_logprobs(model, ids, attn)
    (lp_all * mask).sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    lp, ent = response_logprobs(model, prompts, replies)
    assert lp.shape == (len(prompts), max(map(len, replies)))
    for i, (p, r) in enumerate(zip(prompts, replies)):
        assert torch.allclose(lp[i, : len(r)], lp_all[i, len(p) : len(p) + len(r)], atol=atol)
        assert torch.allclose(ent[i, : len(r)], ent_all[i, len(p) : len(p) + len(r)], atol=atol)
        assert (lp[i, len(r):] == 0).all() and (ent[i, len(r):] == 0).all()
    lp.sum().backward()
    for n, p in model.named_parameters():  # every response's gradient reaches the shared prompt's weights
        scale = want[n].abs().max().clamp(min=1e-6)
        assert torch.allclose(p.grad, want[n], atol=grad_atol * float(scale)), n


def _llama():
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2))


@pytest.mark.parametrize("build", [lambda: M1ForCausalLM(M1Config.preset("tiny", vocab_size=60, block_size=4)), _llama],
                         ids=["m1", "llama"])
def test_response_logprobs_equal_the_whole_sequences_and_their_gradients(build):
    torch.manual_seed(0)
    model = build().train()
    g = torch.Generator().manual_seed(1)
    rand = lambda n: torch.randint(3, 60, (n,), generator=g).tolist()  # noqa: E731
    # three prompts of different lengths (left-padded when shared), each with replies of 1 to 9 tokens
    prompts, replies = [], []
    for j, n in enumerate((9, 13, 6)):
        p = rand(n)
        for i in range(3):
            prompts.append(p)
            replies.append(rand(1 + (4 * i + 3 * j) % 9))
    check_replies_against_whole_sequences(model, prompts, replies, atol=1e-5, grad_atol=1e-4)


def test_response_logprobs_refuses_an_empty_prompt():
    model = M1ForCausalLM(M1Config.preset("tiny", vocab_size=60))
    with pytest.raises(ValueError, match="non-empty"):
        response_logprobs(model, [[]], [[5]])
