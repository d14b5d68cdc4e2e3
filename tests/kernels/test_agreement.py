"""tasks.train.agreement: prompt files, the summary statistics, and one end-to-end run on a tiny M1 model
(random weights, fp32) whose decode and rescoring paths must agree to fp32 rounding."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.train.agreement import measure_agreement, read_prompts, summarize


def test_read_prompts_jsonl_and_text(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"question": "1+1="}\n\n{"prompt": "2+2="}\n')
    assert read_prompts(p) == ["1+1=", "2+2="]
    t = tmp_path / "p.txt"
    t.write_text("first\nsecond\n")
    assert read_prompts(t) == ["first", "second"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_prompts(bad)


def test_summarize_hand_computed():
    m = summarize([0.1, 0.5, 0.9], [0.2, 0.5, 0.8])
    # deviations (-.4, 0, .4) and (-.3, 0, .3): perfectly correlated
    assert m["pearson"] == pytest.approx(1.0)
    assert m["mean_abs_diff"] == pytest.approx(0.2 / 3)
    assert m["max_abs_diff"] == pytest.approx(0.1)
    assert m["tokens"] == 3


def test_end_to_end_tiny_model(tmp_path):
    from model import M1Config, M1ForCausalLM
    from model.tokenizer import train_tokenizer

    texts = [f"{a}+{b}={a + b}" for a in range(30) for b in range(10)]
    tok = train_tokenizer(texts, 300, tmp_path / "tok")
    cfg = M1Config.preset("tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id, kernel_backend="triton")
    model = M1ForCausalLM(cfg)
    summary = measure_agreement(model, tok, ["3+4=", "12+9="], tmp_path / "out", max_new_tokens=5, batch_size=2)
    assert set(summary["heads"]) == {"bf16", "fp32"}
    for m in summary["heads"].values():
        assert m["tokens"] >= 2
        assert m["mean_abs_diff"] < 1e-5  # fp32 weights: decode and chunked paths agree to rounding
    saved = json.loads((tmp_path / "out" / "agreement.json").read_text())
    assert saved["heads"]["fp32"]["tokens"] == summary["heads"]["fp32"]["tokens"]
    assert (tmp_path / "out" / "agreement.png").stat().st_size > 0
