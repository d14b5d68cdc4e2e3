"""Policy losses, advantages, dynamic sampling and overlong penalty against hand-computed values.

The shared example: two sequences, three tokens, the second sequence's last token is padding.
IS weights r = [[1.5, 1.0, 0.5], [1.1, 0.7, 2.0]], advantages A = [1, -2],
log pi = [[-1, -0.5, -2], [-0.2, -1.5, -3]].
"""

from __future__ import annotations

import math

import pytest
import torch

from tasks.train.rl.advantages import group_advantages
from tasks.train.rl.losses import policy_loss
from tasks.train.rl.sampling import GroupBatch, group_minibatches, informative_groups, overlong_penalty

RATIO = torch.tensor([[1.5, 1.0, 0.5], [1.1, 0.7, 2.0]], dtype=torch.float64)
LOGP = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.5, -3.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.float64)


def _inputs():
    logp = LOGP.clone().requires_grad_(True)
    old = LOGP - torch.log(RATIO)
    return logp, old


def test_cispo_token_level_value_and_gradient():
    # clip to [0.8, 1.28]: [[1.28, 1.0, 0.8], [1.1, 0.8, -]]; terms r^ * A * log pi:
    # seq0: -1.28 - 0.5 - 1.6 = -3.38; seq1: 0.44 + 2.4 = 2.84; token mean over 5 tokens = -0.108.
    logp, old = _inputs()
    loss, m = policy_loss(logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28)
    assert loss.item() == pytest.approx(0.108, abs=1e-12)
    loss.backward()
    # the clipped IS weight is detached: d loss / d log pi = -r^ * A / 5
    expected = -torch.tensor([[1.28, 1.0, 0.8], [1.1 * -2, 0.8 * -2, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(logp.grad, expected)
    assert m["is_weight_mean"] == pytest.approx((1.5 + 1.0 + 0.5 + 1.1 + 0.7) / 5)
    assert m["clip_fraction"] == pytest.approx(3 / 5)  # 1.5, 0.5, 0.7 lie outside [0.8, 1.28]
    assert m["masked_fraction"] == 0.0  # CISPO keeps every token's gradient


def test_cispo_sample_and_combined_normalization():
    # sample: mean(-3.38 / 3, 2.84 / 2) = 0.1466667; combined = (token + sample) / 2
    logp, old = _inputs()
    loss, _ = policy_loss(logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28, normalization="sample")
    assert loss.item() == pytest.approx(-(-3.38 / 3 + 2.84 / 2) / 2, abs=1e-12)
    loss, _ = policy_loss(logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28, normalization="combined")
    assert loss.item() == pytest.approx(-0.5 * (-0.108 + 0.1466666666666667), abs=1e-12)


def test_cispo_with_trust_region_mask():
    # Eq. 7 drops seq0 t0 (A>0, r=1.5>1.28) and seq1 t1 (A<0, r=0.7<0.8); the padded token with
    # r=2.0 would not count either way. Terms left: -0.5 - 1.6 + 0.44 = -1.66; / 5 tokens.
    logp, old = _inputs()
    loss, m = policy_loss(
        logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28, trust_region_mask=True
    )
    assert loss.item() == pytest.approx(1.66 / 5, abs=1e-12)
    assert m["masked_fraction"] == pytest.approx(2 / 5)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[1, 1].item() == 0.0


def test_grpo_clipped_surrogate_per_sequence_mean():
    # clip [0.8, 1.2]; min(r A, clip(r) A): seq0: 1.2, 1.0, 0.5 (mean 0.9); seq1: -2.2, -1.6 (mean -1.9)
    logp, old = _inputs()
    loss, m = policy_loss(
        logp, old, ADV, MASK, algorithm="grpo", eps_low=0.2, eps_high=0.2, normalization="sample"
    )
    assert loss.item() == pytest.approx(-(0.9 - 1.9) / 2, abs=1e-12)
    loss.backward()
    # clipped branches carry no gradient; the others: d/dlogp (r A) = r A, over seq length and 2 seqs
    expected = -torch.tensor([[0.0, 1.0 / 3, 0.5 / 3], [1.1 * -2 / 2, 0.0, 0.0]], dtype=torch.float64) / 2
    torch.testing.assert_close(logp.grad, expected)
    assert m["masked_fraction"] == pytest.approx(2 / 5)


def test_dapo_clip_higher_token_level():
    # clip [0.8, 1.28]: seq0: 1.28 + 1.0 + 0.5 = 2.78; seq1: -2.2 - 1.6 = -3.8; token mean -0.204
    logp, old = _inputs()
    loss, _ = policy_loss(logp, old, ADV, MASK, algorithm="dapo", eps_low=0.2, eps_high=0.28)
    assert loss.item() == pytest.approx(0.204, abs=1e-12)


def test_clip_convention_is_one_plus_eps_not_an_absolute_cap():
    # r = 1.25 with eps_high = 0.2 is clipped to 1.2 (an absolute cap of 5 would leave 1.25);
    # eps_low = 1.0 puts the lower bound at 0, the report's "no lower bound".
    logp = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    old = -torch.log(torch.tensor([[1.25, 0.01]], dtype=torch.float64))
    loss, m = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2), algorithm="cispo", eps_low=1.0, eps_high=0.2)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.2 / 2, -0.01 / 2]], dtype=torch.float64))
    assert m["clip_fraction"] == pytest.approx(0.5)


def test_per_token_advantages_and_bad_inputs():
    logp, old = _inputs()
    per_token = ADV[:, None].expand(2, 3)
    a, _ = policy_loss(logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28)
    b, _ = policy_loss(logp, old, per_token, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.28)
    assert a.item() == b.item()
    with pytest.raises(ValueError, match="algorithm"):
        policy_loss(logp, old, ADV, MASK, algorithm="ppo", eps_low=0.2, eps_high=0.2)
    with pytest.raises(ValueError, match="normalization"):
        policy_loss(logp, old, ADV, MASK, algorithm="cispo", eps_low=0.2, eps_high=0.2, normalization="seq")


def test_group_advantages():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    adv = group_advantages(rewards)
    s = math.sqrt(1 / 3)  # row 0: deviations +-0.5, ddof=1 variance 1/3
    torch.testing.assert_close(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-6))
    assert adv[1].abs().sum() == 0  # all equal: no signal
    # row 2: mean 0.75, ddof=1 std = sqrt((3 * 0.5625 + 5.0625) / 3) = 1.5
    torch.testing.assert_close(adv[2], torch.tensor([-0.75, -0.75, -0.75, 2.25]) / (1.5 + 1e-6))
    assert group_advantages(torch.tensor([[1.0], [0.0]])).abs().sum() == 0


def test_dynamic_sampling_and_overlong_penalty():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    assert informative_groups(rewards).tolist() == [False, True, False]
    batch = GroupBatch(target=2, dynamic=True)
    batch.add(["a", "b", "c"], rewards)
    assert batch.groups == ["b"] and batch.dropped == 2 and not batch.full
    batch.add(["d", "e"], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert batch.groups == ["b", "d"] and batch.full  # "e" beyond the target is not kept
    assert batch.finish() == (["b", "d"], 0)
    short = GroupBatch(target=3, dynamic=True)
    short.add(["a", "b", "c"], rewards)
    assert short.finish() == (["b", "a", "c"], 2)  # bound reached: topped up with zero-advantage groups
    static = GroupBatch(target=3, dynamic=False)
    static.add(["a", "b", "c"], rewards)
    assert static.full and static.dropped == 0
    pen = overlong_penalty(torch.tensor([10, 15, 17, 20, 25]), max_len=20, buffer=5, factor=1.0)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.0, -0.4, -1.0, -1.0]))
    assert overlong_penalty(torch.tensor([20]), max_len=20, buffer=0, factor=1.0).item() == 0.0


def test_minibatches_keep_prompt_groups_whole():
    # 8 groups of 4 replies with 0/1 rewards, cut into 4 minibatches: each holds 2 whole groups, so its
    # advantages sum to 0; cutting the 32 sequences at random instead leaves sums far from 0
    rewards = (torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    adv = group_advantages(rewards).reshape(-1)  # [32], group j = sequences 4j .. 4j + 3
    batches = group_minibatches(8, 4, 4, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(batches).tolist()) == list(range(32))
    for idx in batches:
        groups = idx.view(-1, 4) // 4  # [2, 4]: the group of each sequence, one row per group held
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0].tolist())) == 2
        assert abs(adv[idx].sum().item()) < 1e-5
    assert adv.abs().sum() > 0
    split = torch.randperm(32, generator=torch.Generator().manual_seed(1)).tensor_split(4)
    assert max(abs(adv[idx].sum().item()) for idx in split) > 1.0
    assert [b.tolist() for b in batches] == [b.tolist() for b in group_minibatches(8, 4, 4, torch.Generator().manual_seed(1))]
    with pytest.raises(ValueError, match="6 prompt groups do not split into 4 minibatches"):
        group_minibatches(6, 4, 4, torch.Generator())
