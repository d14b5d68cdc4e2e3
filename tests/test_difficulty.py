"""pass@k difficulty filter: the arithmetic of rates and strict bounds on a stub policy whose
outcomes are chosen by hand, both verifiers, and one real run through TorchEngine on a tiny Llama."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tasks.config import ParamsError, UsageError
from tasks.envs.params import EnvParams
from tasks.curate.difficulty import DifficultyParams, difficulty, pass_rates, task_verifier

verify = task_verifier(EnvParams())


class StubPolicy:
    """Answers question i right ``right[i]`` times out of k (right ones first); records its calls."""

    def __init__(self, right: dict[str, int], answer: dict[str, str]):
        self.right, self.answer, self.calls = right, answer, []

    def sample(self, questions, k):
        self.calls.append(len(questions))
        return [[f"<think>.</think><answer>{self.answer[q] if j < self.right[q] else 'nope'}</answer>" for j in range(k)]
                for q in questions]


def test_rates_and_strict_bounds(tmp_path):
    # passes out of 10: 0 -> too hard, 10 and 9 -> too easy (0.9 is not strictly below 0.9), 1 and 5 kept
    right = {"q0": 0, "q1": 1, "q5": 5, "q9": 9, "q10": 10}
    rows = [{"id": q, "question": q, "answer": "\\frac{1}{2}"} for q in right]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = StubPolicy(right, {q: "0.5" for q in right})  # math-verify: 0.5 == 1/2
    report = difficulty(tmp_path / "in.jsonl", tmp_path / "out", DifficultyParams(k=10, batch_size=20), policy, verify)
    kept = pl.read_parquet(tmp_path / "out" / "kept.parquet")
    rej = pl.read_parquet(tmp_path / "out" / "rejected.parquet")
    assert dict(zip(kept["id"], kept["pass_rate"])) == {"q1": 0.1, "q5": 0.5}
    assert dict(zip(rej["id"], rej["reason"])) == {"q0": "too_hard", "q9": "too_easy", "q10": "too_easy"}
    assert dict(zip(rej["id"], rej["pass_rate"])) == {"q0": 0.0, "q9": 0.9, "q10": 1.0}
    assert policy.calls == [2, 2, 1]  # 20 sequences per call = 2 prompts x k=10
    assert report["passes_histogram"]["9/10"] == 1 and report["passes_histogram"]["0/10"] == 1


def test_other_bounds_and_bad_bounds(tmp_path):
    right = {"a": 2, "b": 3}
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"question": q, "answer": "7"}) + "\n" for q in right))
    difficulty(tmp_path / "in.jsonl", tmp_path / "out", DifficultyParams(k=4, lower=0.5, upper=1.0),
               StubPolicy(right, {"a": "7", "b": "7"}), verify)
    kept = pl.read_parquet(tmp_path / "out" / "kept.parquet")
    assert kept["question"].to_list() == ["b"]  # 3/4 kept; 2/4 = 0.5 is not strictly above 0.5
    with pytest.raises(ParamsError, match=r"difficulty.upper = 0.9: allowed: a number > lower \(0.9\)"):
        DifficultyParams(lower=0.9, upper=0.9)


def test_task_verifier_math_and_registered_task():
    assert verify({"answer": "\\frac{1}{2}"}, "<think>x</think><answer>0.5</answer>") == 1.0
    assert verify({"answer": "3"}, "<think>x</think><answer>4</answer>") == 0.0
    assert verify({"answer": "3"}, "no answer tag") == 0.0
    item = {"task": "arithmetic", "question": "12+30=", "answer": "42", "metadata": "{}"}
    assert verify(item, "<think>.</think><answer>42</answer>") == 1.0
    with pytest.raises(KeyError, match="unknown task"):
        verify({"task": "no_such_task", "answer": "1"}, "")


def test_pass_rates_with_a_custom_verifier():
    policy = StubPolicy({"x": 2}, {"x": "yes"})
    rates = pass_rates([{"question": "x"}], policy, k=4, verifier=lambda item, r: 0.5 if "yes" in r else 0.0, pass_reward=0.5)
    assert rates.tolist() == [0.5]


def test_real_run_through_torch_engine(tmp_path):
    from model.tokenizer import train_tokenizer
    from tasks.train.policy import SamplingPolicy, build_policy, save_policy

    qs = ["What is 2+3?", "Compute 4*5.", "What is 10-7?"]
    tok = train_tokenizer(qs * 5, vocab_size=300, out_dir=tmp_path / "tok")
    model = build_policy({"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256}, tok)
    save_policy(model, tok, tmp_path / "policy")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"question": q, "answer": "5"}) + "\n" for q in qs))
    seen = []

    def verifier(item, response):
        seen.append((item["question"], response))
        return 1.0 if len(seen) % 2 else 0.0  # every other sample passes: each item gets 1/2

    params = DifficultyParams(k=2, max_new_tokens=4, batch_size=4, device="cpu")
    policy = SamplingPolicy.load(tmp_path / "policy", max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                 top_p=params.top_p, batch_size=params.batch_size, seed=params.seed, device=params.device)
    report = difficulty(tmp_path / "in.jsonl", tmp_path / "out", params, policy, verifier)
    assert report["rows_in"] == 3 and report["kept"] == 3
    assert pl.read_parquet(tmp_path / "out" / "kept.parquet")["pass_rate"].to_list() == [0.5, 0.5, 0.5]
    assert [q for q, _ in seen] == [q for q in qs for _ in range(2)]
    assert all(isinstance(r, str) for _, r in seen)
    assert (params.temperature, params.top_p) == (1.0, 0.95)  # the report's sampling settings
    assert policy.sampling.stop_token_ids == (tok.eos_token_id,)


def test_pool_gathers_every_source_inside_the_calibrated_bounds(tmp_path):
    from tasks.curate.difficulty import GeneratedSource, build_pool, counts_by
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task

    held = next(f"What is {n} + 1?" for n in range(1000) if is_held_out(f"What is {n} + 1?"))
    curated = [{"id": "c0", "question": "What is 3 + 4?", "answer": "7"}, {"id": "c1", "question": held, "answer": "0"}]
    (tmp_path / "math.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curated))
    items = [{"task": "dyck_languages", **it} for lv in (1, 2, 3) for it in get_task("dyck_languages").generate(6, 0, lv)]
    (tmp_path / "synlogic.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp_path / "bounds.json").write_text(json.dumps({"dyck_languages": {"low": 2, "high": 3}}))
    params = DifficultyParams(synlogic_items=5, generated={"code_io": GeneratedSource(levels=(1,), items=4)})
    pool = build_pool(tmp_path / "math.jsonl", tmp_path / "synlogic.jsonl", tmp_path / "bounds.json", params, EnvParams())
    by = {s: pool.filter(pl.col("source") == s) for s in ("curated", "synlogic", "generated")}
    assert by["curated"]["id"].to_list() == ["c0"] and by["curated"]["task"].to_list() == ["math"]  # held-out c1 left out
    syn = by["synlogic"]
    assert sorted(syn["difficulty"].to_list()) == [2, 2, 2, 3, 3]  # 5 spread over the bounds' two levels
    assert set(syn["task"]) == {"dyck_languages"}
    assert all(not is_held_out(q) for q in pool["question"])
    code = by["generated"].filter(pl.col("task") == "code_io")
    assert code.height == sum(not is_held_out(it["question"]) for it in get_task("code_io").generate(4, 2, 1))
    assert json.loads(code["metadata"][0])["tests"]  # the verifier's spec travels as JSON text
    (tmp_path / "bounds.json").write_text(json.dumps({"dyck_languages": {"low": 4, "high": 5}}))
    with pytest.raises(UsageError, match="no dyck_languages items at levels 4-5"):
        build_pool(tmp_path / "math.jsonl", tmp_path / "synlogic.jsonl", tmp_path / "bounds.json", params, EnvParams())

    out = tmp_path / "graded"
    out.mkdir()
    pool.with_columns(pass_rate=pl.lit(0.5)).head(3).write_parquet(out / "kept.parquet")
    pool.tail(pool.height - 3).with_columns(pass_rate=pl.lit(0.0), reason=pl.lit("too_hard")).write_parquet(
        out / "rejected.parquet")
    counts = counts_by(out, "source")
    assert counts["curated"] == {"kept": 1, "too_easy": 0, "too_hard": 0}
    assert sum(c["kept"] + c["too_hard"] for c in counts.values()) == pool.height
