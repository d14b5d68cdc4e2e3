"""The project tokenizer: byte-level BPE on the shipped corpus, special tokens, chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.tokenizer import SPECIAL_TOKENS, build_corpus, load_tokenizer, main, train_tokenizer

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tokenizer_corpus.txt"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    texts = CORPUS.read_text().splitlines(keepends=True)[:4000]
    train_tokenizer(texts, 512, out)
    return load_tokenizer(out)


def test_special_tokens_and_size(tok):
    assert len(tok) == 512
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.pad_token_id == 0 and tok.eos_token == "<|im_end|>"


def test_chat_template_and_reply_round_trip(tok):
    msgs = [{"role": "user", "content": "What is 12 + 30?"}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n"
    reply = "<think>12 + 30 = 42.</think><answer>42</answer><|im_end|>"
    ids = tok(reply)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<think>") and ids[-1] == tok.eos_token_id
    assert tok.decode(ids) == reply
    unicode = "naïve ∑ 東京 🙂"  # byte-level: nothing is unknown
    assert tok.decode(tok(unicode)["input_ids"]) == unicode


def test_bpe_learned_merges(tok):
    assert len(tok("the answer is")["input_ids"]) < len("the answer is") / 2


def test_shipped_corpus_is_the_generated_one():
    assert CORPUS.read_text() == "".join(build_corpus())


def test_too_small_vocab_is_refused(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], 100, tmp_path)


def test_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    corpus = tmp_path / "c.txt"
    main(["corpus", "--output", str(corpus)])
    corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:800]))
    main(["--output", str(tmp_path / "tok"), "--vocab-size", "400", "--corpus", str(corpus)])
    assert len(load_tokenizer(tmp_path / "tok")) == 400
