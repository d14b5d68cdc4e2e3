"""Where RL's prompts come from: the RL data folder and the curriculum's phases."""

from __future__ import annotations

import pytest

from tasks.config import ParamsError, UsageError
from tasks.curate.rl_data import write_generated
from tasks.train.rl.config import Phase, RLParams
from tasks.train.rl.data import RLData, draw_prompts, phase_at, phase_weights


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return RLData.load(write_generated(tmp_path_factory.mktemp("d"), {"arithmetic": 2, "dyck_languages": 1}, items=40,
                                       heldout_items=4))


def _cfg(*phases):
    return RLParams(curriculum=tuple(Phase(steps=s, weights=w) for s, w in phases))


def test_phases_follow_their_steps_and_the_last_runs_on():
    cfg = _cfg((3, {"a": 1}), (2, {"b": 1}), (1, {"c": 1}))
    assert [phase_at(cfg, s) for s in range(9)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]


def test_draws_follow_the_phase_weights_and_repeat_for_a_cursor(data):
    cfg = _cfg((2, {"arithmetic": 1.0}), (1, {"arithmetic": 1.0, "dyck_languages": 3.0}))
    weights = phase_weights(cfg, data)
    n_a, n_d = len(data.rows["arithmetic"]), len(data.rows["dyck_languages"])
    assert weights == [{"arithmetic": n_a}, {"arithmetic": n_a, "dyck_languages": 3.0 * n_d}]  # weight x rows
    first = draw_prompts(cfg, weights, data, 0, 400, step=0)
    assert {t for t, _ in first} == {"arithmetic"}
    later = draw_prompts(cfg, weights, data, 400, 400, step=2)
    share = sum(t == "dyck_languages" for t, _ in later) / len(later)
    expected = 3 * n_d / (n_a + 3 * n_d)
    assert abs(share - expected) < 0.07  # 400 draws: 3 standard deviations
    assert all(item in data.rows[t] for t, item in later)
    assert draw_prompts(cfg, weights, data, 400, 400, step=2) == later  # resume draws the same prompts
    assert sorted(data.heldout) == ["arithmetic", "dyck_languages"] and len(data.heldout["arithmetic"]) == 4


def test_a_task_without_rows_is_left_out_and_a_phase_without_any_is_an_error(data):
    cfg = _cfg((1, {"arithmetic": 1.0, "open_prompt": 1.0}))
    assert phase_weights(cfg, data) == [{"arithmetic": float(len(data.rows["arithmetic"]))}]
    with pytest.raises(UsageError, match=r"rl.curriculum\[1\].weights: none of \['open_prompt'\] has rows"):
        phase_weights(_cfg((1, {"arithmetic": 1.0}), (1, {"open_prompt": 1.0})), data)
    with pytest.raises(ParamsError, match=r"rl.curriculum = \[\]: allowed: at least one phase"):
        RLParams(curriculum=())
    with pytest.raises(UsageError, match="mix.parquet: no such file"):
        RLData.load("/nonexistent")


def test_a_task_with_one_row_is_drawn_as_one_row_not_as_a_task(data):
    """The difficulty filter can leave a task one row (code_io kept 1 of 38 on 2026-12-02); with
    task-level shares that row was a sixth of all prompts and RL taught its program for every code
    prompt. Per-row weights draw it as often as any other row."""
    one = RLData({"arithmetic": data.rows["arithmetic"], "code_io": data.rows["dyck_languages"][:1]}, data.heldout)
    cfg = _cfg((1, {"arithmetic": 1.0, "code_io": 1.0}))
    drawn = draw_prompts(cfg, phase_weights(cfg, one), one, 0, 2000, step=0)
    share = sum(t == "code_io" for t, _ in drawn) / len(drawn)
    assert share < 3 / len(one.rows["arithmetic"])  # about 1 / (rows + 1), not 1/2
