"""ShardedEngine and ShardedBackward: CPU generation and gradients over worker processes that read the caller's weights."""

from __future__ import annotations

import pytest
import torch

from model import M1Config, M1ForCausalLM
from model.generation import SamplingParams, TorchEngine
from model.sharded import ShardedBackward, ShardedEngine, make_engine

PROMPTS = [[5, 6, 7], list(range(1, 14)), [9], [5, 6, 7], [40, 41], list(range(20, 31)), [3]]
GREEDY = SamplingParams(max_new_tokens=10, temperature=0.0)


@pytest.fixture(scope="module")
def m1():
    torch.manual_seed(0)
    return M1ForCausalLM(M1Config.preset("tiny", rotary_dim=16, block_size=4)).eval()


@pytest.fixture(scope="module")
def engine(m1):
    eng = ShardedEngine(m1, workers=3)
    yield eng
    eng.close()


def _assert_same(a, b):
    assert a.tokens == b.tokens and a.finish_reasons == b.finish_reasons
    for x, y in zip(a.logprobs, b.logprobs):
        assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-4)


def test_greedy_rows_come_back_in_order_as_one_process_decodes_them(m1, engine):
    _assert_same(engine.generate(PROMPTS, GREEDY), TorchEngine(m1).generate(PROMPTS, GREEDY))
    _assert_same(engine.generate(PROMPTS[:2], GREEDY), TorchEngine(m1).generate(PROMPTS[:2], GREEDY))  # fewer rows than workers


def test_sampling_is_reproducible_per_generator_seed(engine):
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    a = engine.generate(PROMPTS, params, torch.Generator().manual_seed(3))
    b = engine.generate(PROMPTS, params, torch.Generator().manual_seed(3))
    c = engine.generate(PROMPTS, params, torch.Generator().manual_seed(4))
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    assert a.tokens != c.tokens


def test_workers_decode_with_the_callers_updated_weights():
    torch.manual_seed(1)
    model = M1ForCausalLM(M1Config.preset("tiny", rotary_dim=16, block_size=4)).eval()
    eng = ShardedEngine(model, workers=2)
    try:
        before = eng.generate(PROMPTS, GREEDY)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)  # an in-place update, as RL's optimizer makes
        model(torch.tensor([list(range(1, 14))])).logits.logsumexp(-1).sum().backward()
        opt.step()
        after = eng.generate(PROMPTS, GREEDY)
        assert after.tokens != before.tokens
        _assert_same(after, TorchEngine(model).generate(PROMPTS, GREEDY))
        fresh = {k: v.clone() * 0.5 for k, v in model.state_dict().items()}
        model.load_state_dict(fresh, assign=True)  # new storages: the workers restart on them
        _assert_same(eng.generate(PROMPTS, GREEDY), TorchEngine(model).generate(PROMPTS, GREEDY))
    finally:
        eng.close()


def test_a_worker_error_is_raised_and_the_engine_keeps_working(m1, engine):
    with pytest.raises((RuntimeError, IndexError)):
        engine.generate([[1], [10**6], [2]], GREEDY)  # row 1 (a worker's) holds an id past the vocabulary
    _assert_same(engine.generate(PROMPTS, GREEDY), TorchEngine(m1).generate(PROMPTS, GREEDY))


def test_close_stops_the_workers_and_make_engine_picks_the_engine(m1):
    eng = make_engine(m1, workers=2)
    assert isinstance(eng, ShardedEngine) and eng.workers == 2
    procs = list(eng._procs)
    eng.close()
    assert not any(p.is_alive() for p in procs)
    assert isinstance(make_engine(m1, workers=1), TorchEngine)
    with pytest.raises(ValueError, match="workers >= 2"):
        ShardedEngine(m1, workers=1)


def _sum_of_logsumexp(model, ids):
    return model(ids).logits.logsumexp(-1).sum()


def test_sharded_backward_gives_the_one_process_gradient_with_the_callers_updated_weights():
    torch.manual_seed(2)
    model = M1ForCausalLM(M1Config.preset("tiny", rotary_dim=16, block_size=4)).train()
    jobs = [(torch.tensor([p]),) for p in PROMPTS]
    pool = ShardedBackward(model, workers=3)
    try:
        for _ in range(2):  # the second round after an in-place step: the workers see the new weights
            model.zero_grad(set_to_none=True)
            want_loss = sum(_sum_of_logsumexp(model, *j).item() for j in jobs)
            want = torch.autograd.grad(sum(_sum_of_logsumexp(model, *j) for j in jobs), list(model.parameters()))
            model.zero_grad(set_to_none=True)
            loss = pool.backward(_sum_of_logsumexp, [jobs[:2], jobs[2:3], jobs[3:]])
            assert loss == pytest.approx(want_loss, rel=1e-5)
            for p, w in zip(model.parameters(), want):
                assert p.grad is not None and torch.allclose(p.grad, w, rtol=1e-4, atol=1e-5)
            torch.optim.SGD(model.parameters(), lr=0.05).step()
        with pytest.raises(RuntimeError, match="worker .* failed"):
            pool.backward(_sum_of_logsumexp, [jobs[:1], [(torch.tensor([[10**6]]),)]])  # a worker's id past the vocabulary
        model.zero_grad(set_to_none=True)
        assert pool.backward(_sum_of_logsumexp, [jobs[:1], jobs[1:2]]) == pytest.approx(
            sum(_sum_of_logsumexp(model, *j).item() for j in jobs[:2]), rel=1e-5)
        with pytest.raises(ValueError, match="4 shards for 3 workers"):
            pool.backward(_sum_of_logsumexp, [jobs[:1]] * 4)
    finally:
        pool.close()
