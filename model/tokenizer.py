"""python -m model.tokenizer --output runs/tokenizer --vocab-size 1024 --corpus data/tokenizer_corpus.txt

The project tokenizer: a byte-level BPE (the ``tokenizers`` library) trained on the project's own
text, saved in Hugging Face format (``tokenizer.json`` + ``tokenizer_config.json`` with the chat
template) beside a model.

Chat format: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message;
``add_generation_prompt=True`` ends with ``<|im_start|>assistant\\n``. An assistant reply is
``<think>...</think><answer>...</answer><|im_end|>`` (``<|im_end|>`` is the eos token).

``python -m model.tokenizer corpus --output data/tokenizer_corpus.txt`` regenerates the shipped corpus:
seeded synthetic reasoning text in the chat format (arithmetic with worked steps, sequences, ciphers,
English connective prose), so the tokenizer never depends on downloaded data.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from pathlib import Path

PAD, IM_START, IM_END = "<|pad|>", "<|im_start|>", "<|im_end|>"
THINK, THINK_END, ANSWER, ANSWER_END = "<think>", "</think>", "<answer>", "</answer>"
# pad first so its id is 0, TorchEngine's default pad_token_id
SPECIAL_TOKENS = [PAD, IM_START, IM_END, THINK, THINK_END, ANSWER, ANSWER_END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path, *, split_digits: bool = False):
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) and save it.

    ``split_digits``: every digit is its own token, so merges compress words but never numbers
    (a merged "58" would hide the column a tiny model adds digit by digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    n_min = len(SPECIAL_TOKENS) + 256
    if vocab_size < n_min:
        raise ValueError(f"vocab_size = {vocab_size}: needs at least {n_min} (256 bytes + special tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), tok.pre_tokenizer])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=IM_END, bos_token=None, unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return fast


def load_tokenizer(path: str | Path):
    """Load a tokenizer saved by ``train_tokenizer`` (or any Hugging Face fast tokenizer)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path}/tokenizer.json not found")
    return PreTrainedTokenizerFast.from_pretrained(str(path))


_WORDS = (
    "the a an of to and in is that for it as with on by this be are from at or which we let first "
    "then next so therefore thus because since if each every number answer question step check "
    "compute add subtract multiply divide sum product difference total result value equal equals "
    "two three four five six seven eight nine ten hundred thousand digit digits letter letters word "
    "words grid row column cell cells puzzle rule rules solve solution true false yes no person "
    "people says liar truth teller key shift cipher decode encode sequence pattern term next "
    "integer even odd prime remainder carry borrow problem find given write final sorted order"
).split()
_OPENERS = ("Let me think step by step.", "We need to find the answer.", "First, read the question.",
            "Let us check each case.", "The rule says", "So the result is", "Now verify:")


def _reply(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(10 ** rng.randint(1, 4)), rng.randrange(10 ** rng.randint(1, 4))
        op = rng.choice("+-*")
        val = {"+": a + b, "-": a - b, "*": a * b}[op]
        q = f"What is {a} {op} {b}?"
        think = f"{rng.choice(_OPENERS)} We compute {a} {op} {b}. {a} {op} {b} = {val}."
        return q, f"{THINK}{think}{THINK_END}{ANSWER}{val}{ANSWER_END}"
    if kind == 1:
        start, step = rng.randrange(50), rng.randrange(1, 12)
        seq = [start + i * step for i in range(5)]
        q = f"Find the next term: {', '.join(map(str, seq))}"
        think = f"The difference between terms is {step}. So the next term is {seq[-1]} + {step} = {seq[-1] + step}."
        return q, f"{THINK}{think}{THINK_END}{ANSWER}{seq[-1] + step}{ANSWER_END}"
    if kind == 2:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
        k = rng.randrange(1, 26)
        enc = "".join(chr((ord(c) - 97 + k) % 26 + 97) for c in word)
        q = f"Decode the Caesar cipher with shift {k}: {enc}"
        think = f"Shift each letter back by {k}. {enc} becomes {word}."
        return q, f"{THINK}{think}{THINK_END}{ANSWER}{word}{ANSWER_END}"
    prose = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30)))
    q = prose.capitalize() + "?"
    return q, f"{THINK}{rng.choice(_OPENERS)} {prose}.{THINK_END}{ANSWER}{rng.choice(['yes', 'no'])}{ANSWER_END}"


def build_corpus(n_dialogues: int = 3000, seed: int = 0) -> list[str]:
    """Seeded synthetic chat transcripts, one per string."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_dialogues):
        q, a = _reply(rng)
        out.append(f"{IM_START}user\n{q}{IM_END}\n{IM_START}assistant\n{a}{IM_END}\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", choices=["train", "corpus"], default="train")
    p.add_argument("--output", required=True, help="tokenizer dir (train) or corpus file (corpus)")
    p.add_argument("--vocab-size", type=int, help="train: vocabulary size (the tiny preset's is 1024)")
    p.add_argument("--corpus", help="train: text file, one line per sample (data/tokenizer_corpus.txt ships)")
    p.add_argument("--seed", type=int, default=0, help="corpus: seed of the synthetic text")
    args = p.parse_args(argv)
    if args.command == "corpus":
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(build_corpus(seed=args.seed)))
        print(f"wrote {out}")
        return
    if args.vocab_size is None or args.corpus is None:
        p.error("train needs --vocab-size and --corpus")
    corpus = Path(args.corpus)
    if not corpus.exists():
        raise FileNotFoundError(f"{corpus}: corpus missing; run `python -m model.tokenizer corpus --output {corpus}`")
    texts = corpus.read_text().splitlines(keepends=True)  # byte-level BPE never merges across lines
    tok = train_tokenizer(texts, args.vocab_size, args.output)
    print(f"trained {len(tok)} tokens on {corpus} -> {args.output}")


if __name__ == "__main__":
    main()
