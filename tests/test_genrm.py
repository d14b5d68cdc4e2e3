"""GenRM pieces that need no model: verdict parsing, the Swiss round, the length-bias monitor and its
reward shaping, the general tasks' rules, and the labels of the judge data (report section 4.2)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tasks.envs.genrm.data import adversarial_pair, build_examples, length_pair, pair_examples
from tasks.envs.genrm.general import INSTRUCT, OPEN_PROMPT, constraint_met, satisfy
from tasks.envs.genrm.monitor import Judged, LengthBiasMonitor
from tasks.envs.genrm.params import GenRMParams, JudgeDataParams, MonitorParams
from tasks.envs.genrm.swiss import default_rounds, swiss
from tasks.envs.genrm.verdict import PairResult, Verdict, parse_grade, parse_pair
from tasks.envs.genrm.world import equivalent_forms, graded_answer, number_words, pad, quality, reply


@pytest.mark.parametrize("text, value", [
    ("<answer>5</answer>", 5), ("<answer> 3 </answer><|im_end|>", 3), ("<think>hm</think><answer>1</answer>", 1),
    ("<answer>+2</answer>", 2)])
def test_grade_verdicts_parse(text, value):
    assert parse_grade(text) == Verdict(value)


@pytest.mark.parametrize("text, error", [
    ("", "no <answer> verdict"), ("5", "no <answer> verdict"), ("<answer>5", "no <answer> verdict"),
    ("<answer>6</answer>", "out of range 1..5: 6"), ("<answer>0</answer>", "out of range 1..5: 0"),
    ("<answer>4.5</answer>", "not one of 1, 2, 3, 4, 5: '4.5'"), ("<answer>good</answer>", "not one of"),
    ("<answer>4</answer><answer>5</answer>", "2 verdicts"), ("<answer></answer>", "not one of")])
def test_malformed_grade_verdicts_carry_a_reason_and_no_value(text, error):
    v = parse_grade(text)
    assert v.value is None and not v.ok and error in v.error


def test_pair_verdicts_parse_and_refuse_grades():
    assert [parse_pair(f"<answer>{x}</answer>").value for x in (-1, 0, 1)] == [-1, 0, 1]
    assert parse_pair("<answer>2</answer>").error == "out of range -1..1: 2"
    assert parse_pair("<answer>A</answer>").value is None


def test_a_pair_counts_only_when_both_positions_agree():
    assert PairResult(Verdict(1), Verdict(-1)).value == 1
    assert PairResult(Verdict(0), Verdict(0)).value == 0
    biased = PairResult(Verdict(1), Verdict(1))  # "the first is better" whatever comes first
    assert not biased.consistent and biased.value is None and not biased.malformed
    broken = PairResult(Verdict(1), Verdict(None, "no <answer> verdict"))
    assert broken.malformed and broken.value is None


def _play(quality_of, noise=0.0, seed=0):
    rng = random.Random(seed)

    def play(matches):
        out = []
        for t, i, j in matches:
            d = quality_of[t][i] - quality_of[t][j] + rng.gauss(0, noise)
            out.append(1 if d > 0.5 else -1 if d < -0.5 else 0)
        return out

    return play


def test_swiss_round_recovers_a_known_ordering():
    rng = random.Random(1)
    qualities = [rng.sample(range(16), 16) for _ in range(20)]  # 20 tournaments of 16 distinct strengths
    result = swiss([16] * 20, _play(qualities), seed=3)
    for q, order in zip(qualities, result.order):
        assert q[order[0]] == 15  # the strongest wins every tournament
        ranked = [q[p] for p in order]
        assert np.corrcoef(ranked, sorted(ranked, reverse=True))[0, 1] > 0.8
    assert result.matches == 20 * 8 * default_rounds(16)  # 5 rounds of 8 matches: 40 < 120 round-robin


def test_swiss_round_with_a_noisy_judge_and_odd_fields():
    rng = random.Random(2)
    qualities = [[rng.random() * 8 for _ in range(7)] for _ in range(200)]
    result = swiss([7] * 200, _play(qualities, noise=1.0, seed=4), seed=5)
    top = [q[o[0]] == max(q) for q, o in zip(qualities, result.order)]
    in_top2 = [max(q) in (q[o[0]], q[o[1]]) for q, o in zip(qualities, result.order)]
    assert np.mean(top) > 0.5 and np.mean(in_top2) > 0.8  # random choice: 1/7 and 2/7
    assert all(sorted(o) == list(range(7)) for o in result.order)


def test_undecided_matches_are_draws():
    result = swiss([4], lambda matches: [None] * len(matches), rounds=3)
    assert result.scores == [[1.5, 1.5, 1.5, 1.5]]


def _trace(steps, hacking, seed=0, groups=8, per_group=8):
    """Judged replies per step. Honest: length random, judge score follows rule success only. Hacking:
    lengths grow step by step and, at equal rule success, the longer reply gets the higher score."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        js = []
        for g in range(groups):
            for _ in range(per_group):
                success = float(rng.random() < 0.5)
                base = 40 + (6 * step if hacking else 0)
                length = int(base + rng.integers(0, 30))
                score = 0.5 * success + (0.02 * (length - base) if hacking else 0.0) + rng.normal(0, 0.15)
                js.append(Judged(group=g, success=success, length=length, score=float(np.clip(score, 0, 1))))
        out.append(js)
    return out


def test_monitor_fires_on_length_hacking_and_stays_quiet_on_an_honest_trace():
    p = MonitorParams()
    for hacking, expect in ((True, True), (False, False)):
        monitor = LengthBiasMonitor(p)
        fired = []
        for step, js in enumerate(_trace(20, hacking)):
            monitor.observe(step, js)
            fired.append(monitor.check(step).fired)
        assert any(fired) == expect, (hacking, monitor.reading())
    monitor = LengthBiasMonitor(p)
    for step, js in enumerate(_trace(20, True)):
        monitor.observe(step, js)
        monitor.check(step)
    assert monitor.fired_at[0] == p.window - 1  # as soon as a full window shows it
    assert all(b - a > p.cooldown for a, b in zip(monitor.fired_at, monitor.fired_at[1:]))


def test_monitor_ignores_length_that_buys_rule_success():
    """Longer replies that succeed more often are not length bias: the correlation is taken at equal
    rule-checked success, and the success gain vetoes."""
    rng = np.random.default_rng(0)
    monitor = LengthBiasMonitor(MonitorParams())
    for step in range(12):
        js = []
        for g in range(8):
            for _ in range(8):
                p_success = min(0.95, 0.2 + 0.07 * step)
                success = float(rng.random() < p_success)
                length = int(40 + 6 * step + 20 * success + rng.integers(0, 10))
                js.append(Judged(g, success, length, float(np.clip(success + rng.normal(0, 0.1), 0, 1))))
        monitor.observe(step, js)
        assert not monitor.check(step).fired


def test_shaping_removes_length_slope_and_clips():
    monitor = LengthBiasMonitor(MonitorParams(length_debias=1.0))
    for step, js in enumerate(_trace(6, True)):
        monitor.observe(step, js)
    slope = monitor.reading()[1]
    assert slope > 0.01
    shaped = monitor.shape([[(40, 0.5), (60, 0.9), (50, None)]])[0]
    assert shaped[2] is None
    assert shaped[0] == pytest.approx(min(1.0, 0.5 + slope * 10)) and shaped[1] == pytest.approx(0.9 - slope * 10)
    assert all(0.0 <= s <= 1.0 for s in monitor.shape([[(0, 1.0), (1000, 0.0)]])[0])


def test_world_quality_counts_distinct_facts_and_padding_keeps_it():
    rng = random.Random(0)
    for facts in range(4):
        text = reply(rng, "bees", facts)
        assert quality("bees", text) == facts
        longer = pad(rng, "bees", text, 3)
        assert len(longer) > len(text) and quality("bees", longer) == facts
    assert quality("bees", "bees make honey. cats chase mice.") == 0  # an off-topic fact costs one
    assert number_words(185) == "one hundred eighty-five" and number_words(40) == "forty"
    assert equivalent_forms("\\frac{3}{4}") == ["3/4", "0.75"] and "1,085" in equivalent_forms("1085")


def test_graded_answers_need_the_reference_to_be_graded():
    """Value and form are drawn apart: every form occurs with several grades, so only comparing the
    answer with the reference tells the grade; the rationale names what the judge should see."""
    rng = random.Random(0)
    drawn = [graded_answer(rng, "85") for _ in range(400)]
    grades_by_form: dict[str, set[int]] = {}
    for text, grade, kind, rationale in drawn:
        grades_by_form.setdefault(kind.split(": ")[-1], set()).add(grade)
        if kind == "same: plain":
            assert (text, grade, rationale) == ("85", 5, "85 vs 85: same")
        if kind == "near: plain":
            assert grade == 2 and sum(a != b for a, b in zip(text, "85")) == 1 and rationale.endswith("near miss")
        if kind == "same: hedged":
            assert grade == 3 and "85" in text.split(" or ")
    assert all(len(g) >= 2 for form, g in grades_by_form.items() if form != "no answer"), grades_by_form
    assert {g for _, g, _, _ in drawn} == {1, 2, 3, 4, 5}
    fractions = [graded_answer(rng, "\\frac{3}{4}") for _ in range(50)]
    assert all(" vs 3/4: " in r for _, _, k, r in fractions if k != "no answer")
    assert ("3/4", 5, "same: equivalent", "3/4 vs 3/4: same") in fractions


def test_constraint_rules():
    assert constraint_met("sentences", 2, "bees make honey. bees can sting.")
    assert not constraint_met("sentences", 1, "bees make honey. bees can sting.")
    assert constraint_met("word", "honey", "BEES MAKE HONEY!") and not constraint_met("word", "honey", "bees sting")
    assert constraint_met("exclaim", None, "bees make honey!") and not constraint_met("exclaim", None, "bees.")
    assert constraint_met("capitals", None, "BEES MAKE HONEY.") and not constraint_met("capitals", None, "Bees.")
    rng = random.Random(0)
    for kind, arg in (("sentences", 1), ("word", "hives"), ("exclaim", None), ("capitals", None)):
        assert constraint_met(kind, arg, satisfy(kind, arg, "bees can sting. bees make honey.", rng, "bees"))


def test_general_items_and_their_rules():
    items = INSTRUCT.generate(5, seed=0, difficulty=3)
    assert all(len(it["metadata"]["constraints"]) == 3 and it["answer"] == "" for it in items)
    assert items == INSTRUCT.generate(5, seed=0, difficulty=3)
    it = items[0]
    best = it["metadata"]["solution"].split("<answer>")[1].removesuffix("</answer>")
    assert INSTRUCT.rules(it, best) == max(INSTRUCT.rules(it, c) for c in it["metadata"]["candidates"])
    with pytest.raises(ValueError, match="scored by the generative judge"):
        OPEN_PROMPT.verify_batch(OPEN_PROMPT.generate(1, 0, 1), ["<answer>bees make honey.</answer>"])


def test_judge_data_labels_match_the_annotator():
    p = JudgeDataParams(grade_examples=200, pair_examples=400)
    train = build_examples(p, seed=0, split="train")["train"]
    assert len(train) == 600
    assert {e.label for e in train if e.mode == "grade"} == {1, 2, 3, 4, 5}
    pairs = pair_examples(p, 400, seed=0)
    for a, b in zip(pairs[::2], pairs[1::2]):  # every pair in both positions, labels and rationale mirrored
        assert (a.first, a.second, a.label) == (b.second, b.first, -b.label)
        qa, qb = (int(x) for x in a.rationale.removeprefix("A ").split(", B "))
        assert a.label == (qa > qb) - (qa < qb) and b.rationale == f"A {qb}, B {qa}"
    rng = random.Random(0)
    for i in range(50):
        e = length_pair(rng, p, i)
        assert e.label == 0 and len(e.second) > len(e.first)
        if e.kind == "length: open":
            topic = e.question.removeprefix("tell me about ").rstrip(".")
            assert quality(topic, e.first) == quality(topic, e.second)
        a = adversarial_pair(rng, p, i)
        assert a.label == 1 and len(a.second) > len(a.first)
    held_out = build_examples(p, seed=0, split="eval")
    seen = {e.prompt for e in train}
    assert not any(e.prompt in seen for e in held_out["grade"])


def test_params_defaults_are_valid_and_cross_checked():
    GenRMParams()
    from tasks.config import ParamsError

    with pytest.raises(ParamsError, match="genrm.data.adversarial_share"):
        JudgeDataParams(length_share=0.8, adversarial_share=0.3)
    with pytest.raises(ParamsError, match="genrm.monitor.clip"):
        MonitorParams(clip=(1.0, 0.0))
