"""tasks.envs.mathverify: clean values, equivalence, and timeouts that work off the main thread."""

from __future__ import annotations

import threading
import time

import pytest

from tasks.envs.mathverify import parse_clean, verify_math

# text -> canonical LaTeX of the one value it holds (values worked out by hand)
CLEAN = {
    "42": "42",
    "\\frac{2}{4}": "\\frac{1}{2}",
    "0.5": "\\frac{1}{2}",
    "-3": "-3",
    "2,000": "2000",
    "\\boxed{7}": "7",
    "2\\pi": "2 \\pi",
    "x^2+2x+1": "x^{2} + 2 x + 1",
    "\\sqrt{2}": "\\sqrt{2}",
    "[1, 3)": "\\left[1, 3\\right)",
    "5 \\text{ cm}": "5",
    "1e5": "1 \\cdot 10^{5}",
}

NOT_CLEAN = ["True", "(B)", "A", "hello world", "answer: 7 apples", "\\text{yes}", "1, 2", "2 and 3", ""]


@pytest.mark.parametrize("text,canonical", sorted(CLEAN.items()))
def test_parse_clean_value_and_round_trip(text, canonical):
    assert parse_clean(text, timeout_s=5.0) == canonical
    assert verify_math(text, canonical, timeout_s=5.0)


@pytest.mark.parametrize("text", NOT_CLEAN)
def test_parse_clean_rejects_labels_words_and_several_values(text):
    assert parse_clean(text, timeout_s=5.0) is None


@pytest.mark.parametrize("gold,pred,expected", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac12", "1/2", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("2\\pi", "\\boxed{2\\pi}", True),
    ("12", "12 dollars", True),
    ("\\frac{1638}{5}", "\\$327.60", True),
    ("12", "13 dollars", False),
    ("42", "41", False),
    ("42", "forty-two", False),
    ("[1, 3)", "(1, 3)", False),
    ("not math", "42", False),
])
def test_verify_math(gold, pred, expected, timeout_s=5.0):
    assert verify_math(gold, pred, timeout_s=5.0) is expected


def test_works_off_the_main_thread():
    results = []

    def work():
        results.append((parse_clean("\\frac{3}{6}", timeout_s=5.0), verify_math("1/2", "0.5", timeout_s=5.0), verify_math("3", "4", timeout_s=5.0)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [("\\frac{1}{2}", True, False)] * 3


def test_many_threads_share_a_bounded_pool():
    import tasks.envs.mathverify as mv

    results = [None] * 12

    def work(i):
        results[i] = verify_math(str(i), f"{i}.0", timeout_s=5.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 12
    assert len(mv._POOL.idle) <= mv._MAX_WORKERS


def test_pathological_input_times_out_from_a_thread_and_the_pool_recovers():
    # sympy tries to evaluate 10^(10^(10^10)) exactly: it would run for hours
    out = {}

    def work():
        t0 = time.monotonic()
        out["verdict"] = verify_math("1", "10^{10^{10^{10}}}", timeout_s=1.0)
        out["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    assert out["verdict"] is False
    assert out["elapsed"] < 30  # the 1 s deadline, plus slack for a loaded machine; not hours
    assert verify_math("2", "2.0", timeout_s=5.0)  # a fresh worker took the killed one's place
