"""Length extension's pure parts (report section 5): windows from the report's ratios, the promotion
rule on synthetic perplexity / p99 traces (promoting and holding), each window's RL settings with
every mitigation on and off, and the refilter before the last window."""

from __future__ import annotations

import math

import pytest

from tasks.config import ParamsError
from tasks.train.extend.data import kept_share, refilter
from tasks.train.extend.params import ExtendParams, ExtensionTask
from tasks.train.extend.schedule import eps_high_at, promotion, window_params, windows
from tasks.train.rl.config import RLParams


def _steps(ppl: list[float], p99: list[float]) -> list[dict[str, float]]:
    return [{"step": i + 1, "rollout/perplexity": a, "length/p99": b} for i, (a, b) in enumerate(zip(ppl, p99))]


def test_windows_are_the_reports_ratios_times_the_base():
    assert windows(ExtendParams(base_tokens=1000)) == [40_000, 48_000, 56_000, 64_000, 72_000, 80_000]
    assert windows(ExtendParams(base_tokens=0.5)) == [20, 24, 28, 32, 36, 40]
    with pytest.raises(ParamsError, match="increasing windows"):
        windows(ExtendParams(base_tokens=0.01))  # 40 * 0.01 and 48 * 0.01 both round to 0 -> 1
    with pytest.raises(ParamsError, match="extend.ratios"):
        ExtendParams(ratios=(40, 40, 56))


def test_eps_high_falls_linearly_from_the_first_window_to_the_last():
    assert [round(eps_high_at(k, 6, 0.28, 0.2), 4) for k in range(6)] == [0.28, 0.264, 0.248, 0.232, 0.216, 0.2]
    assert eps_high_at(0, 1, 0.28, 0.2) == 0.28


def test_promotes_when_perplexity_is_flat_and_p99_presses_on_the_window():
    p = ExtendParams(ppl_window=2, ppl_tolerance=0.05, p99_near=0.9)
    rows = _steps([1.80, 1.50, 1.32, 1.30, 1.33, 1.31], [35, 40, 40, 38, 40, 39])
    d = promotion(rows, 40, p)
    # blocks (1.32, 1.30) and (1.33, 1.31): means 1.31 and 1.32, a change of 0.76%; mean p99 (40 + 39) / 2
    assert d.promote and d.reason.startswith("promote:")
    assert d.ppl_change == pytest.approx(0.01 / 1.31) and d.p99 == 39.5
    assert "1.320, 0.8% from the 2 before (< 5%)" in d.reason and "39.5 >= 0.9 x 40" in d.reason


def test_holds_while_perplexity_still_moves():
    p = ExtendParams(ppl_window=2, ppl_tolerance=0.05, p99_near=0.9)
    d = promotion(_steps([1.60, 1.50, 1.40, 1.30], [40, 40, 40, 40]), 40, p)
    assert not d.promote and d.ppl_change == pytest.approx(0.2 / 1.55)  # 12.9% >= 5%
    assert d.reason.startswith("hold:") and "12.9% from the 2 before (>= 5%)" in d.reason


def test_holds_while_replies_stay_short_of_the_window():
    p = ExtendParams(ppl_window=2, ppl_tolerance=0.05, p99_near=0.9)
    d = promotion(_steps([1.30, 1.30, 1.30, 1.30], [40, 40, 34, 35]), 40, p)  # last block's p99 34.5 < 36
    assert not d.promote and d.ppl_change == 0.0 and "34.5 < 0.9 x 40" in d.reason


def test_one_noisy_step_does_not_block_a_flat_block_mean():
    p = ExtendParams(ppl_window=3, ppl_tolerance=0.05, p99_near=0.9)
    # single steps move by 8%, the two block means by 0.3%
    assert promotion(_steps([1.30, 1.40, 1.34, 1.40, 1.30, 1.35], [40] * 6), 40, p).promote


def test_holds_until_the_window_has_enough_steps_and_skips_evaluation_lines():
    p = ExtendParams(ppl_window=2)
    rows = _steps([1.3, 1.3, 1.3], [40, 40, 40]) + [{"step": 4, "eval/accuracy": 0.5}]
    d = promotion(rows, 40, p)
    assert not d.promote and math.isnan(d.ppl_change) and "3 of the 4 steps" in d.reason
    assert promotion(rows + _steps([1.3], [40]), 40, p).promote


def test_window_settings_apply_each_mitigation_and_switch_off_to_rls():
    rl = RLParams()
    p = ExtendParams(base_tokens=0.5, grad_clip=0.1, eps_high_last=0.2, repetition_n=24, prompts_per_step=8)
    wins = windows(p)
    last = window_params(rl, p, 5, wins, end=70)
    assert (last.max_new_tokens, last.steps, last.prompts_per_step) == (40, 70, 8)
    assert last.algo.normalization == "combined" and last.grad_clip == 0.1 and last.repetition_n == 24
    assert last.algo.eps_high == pytest.approx(0.2)
    assert window_params(rl, p, 0, wins, end=70).algo.eps_high == rl.algo.eps_high
    assert last.overlong_buffer == round(rl.overlong_buffer * 40 / rl.max_new_tokens)
    assert dict(last.curriculum[0].weights) == {"arithmetic": 1.0, "dyck_languages": 1.0}
    off = ExtendParams(base_tokens=0.5, combined_normalization=False, lower_grad_clip=False,
                       decreasing_eps_high=False, early_truncation=False)
    plain = window_params(rl, off, 5, wins, end=70)
    assert plain.algo.normalization == rl.algo.normalization and plain.grad_clip == rl.grad_clip
    assert plain.algo.eps_high == rl.algo.eps_high and plain.repetition_n == rl.repetition_n
    assert rl == RLParams()  # rl's own settings untouched


def test_refilter_drops_easy_items_and_downsamples_synthetic_ones():
    p = ExtendParams(refilter_easy=0.75, synthetic_keep=0.5)
    rows = [{"id": f"a{i}", "task": "arithmetic", "source": "generated"} for i in range(4)] + \
           [{"id": f"s{i}", "task": "object_counting", "source": "synlogic"} for i in range(200)]
    rates = [1.0, 0.75, 0.5, 0.0] + [0.25] * 200
    kept, report = refilter(rows, rates, p)
    assert [r["id"] for r in kept if r["task"] == "arithmetic"] == ["a2", "a3"]  # 1.0 and 0.75 are easy
    synthetic = [r for r in kept if r["source"] == "synlogic"]
    assert synthetic == [{**r, "pass_rate": 0.25} for r in rows[4:] if kept_share(r["id"]) < 0.5]
    assert 80 < len(synthetic) < 120  # about half, the same half on every run
    assert report["too_easy"] == 2 and report["synthetic_dropped"] == 200 - len(synthetic)
    assert report["by_task"] == {"arithmetic": {"before": 4, "after": 2},
                                 "object_counting": {"before": 200, "after": len(synthetic)}}
    with pytest.raises(ValueError, match="pass rates"):
        refilter(rows, rates[:-1], p)


def test_extension_task_needs_items_with_levels():
    with pytest.raises(ParamsError, match="extend.tasks.*items"):
        ExtensionTask(weight=1.0, levels=(2, 3), items=0)
    with pytest.raises(ParamsError, match="extend.tasks"):
        ExtendParams(tasks={"arithmetic": ExtensionTask(weight=0.0)})
