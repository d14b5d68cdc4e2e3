"""Classical ciphers: Caesar, Vigenère, Rail fence, Affine.

The question gives a ciphertext and the rule (with its key, or at the top levels of Caesar a
known word of the plaintext instead of the key); the answer is the plaintext, compared as
lower-case letters and single spaces.
"""

from __future__ import annotations

import re

from tasks.envs.base import register
from tasks.envs.synlogic.base import ANSWER_TAGS, SynLogicTask, level
from tasks.envs.synlogic.language import WORDS

_A = ord("a")


def _plaintext(rng, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _shift(text: str, key) -> str:
    """Shift letter i of the text (spaces skipped) by key(i) places."""
    out, i = [], 0
    for ch in text:
        if ch == " ":
            out.append(ch)
            continue
        out.append(chr((ord(ch) - _A + key(i)) % 26 + _A))
        i += 1
    return "".join(out)


class _Cipher(SynLogicTask):
    def check(self, item, answer):
        words = lambda text: re.findall(r"[a-z]+", text.lower())  # noqa: E731
        return float(words(answer) == words(item["answer"]))


class CaesarCipher(_Cipher):
    name = "caesar_cipher"
    difficulty_range = (1, 5)
    knobs = "words 3-10; from level 3 the shift is unknown and one plaintext word is given"
    _levels = [(3, True), (5, True), (5, False), (8, False), (10, False)]

    def make(self, rng, difficulty):
        n, key_given = level(difficulty, self._levels)
        plain = _plaintext(rng, n)
        k = rng.randint(1, 25)
        cipher = _shift(plain, lambda i: k)
        if key_given:
            hint = f"Each letter was shifted {k} places forward in the alphabet (z wraps to a)."
        else:
            hint = (f"Each letter was shifted forward by the same unknown number of places (z wraps "
                    f"to a); the plaintext contains the word \"{rng.choice(plain.split())}\".")
        question = (f"Decrypt this Caesar cipher: \"{cipher}\". {hint}\n"
                    f"Answer with the plaintext in lower case. {ANSWER_TAGS}")
        return question, plain, {}


class VigenereCipher(_Cipher):
    name = "vigenere_cipher"
    difficulty_range = (1, 5)
    knobs = "words 2-8 and key length 2-7"
    _levels = [(2, 2), (3, 3), (4, 4), (6, 5), (8, 7)]

    def make(self, rng, difficulty):
        n, key_len = level(difficulty, self._levels)
        plain = _plaintext(rng, n)
        key = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(key_len))
        cipher = _shift(plain, lambda i: ord(key[i % key_len]) - _A)
        question = (f"Decrypt this Vigenère cipher with key \"{key}\": \"{cipher}\". Letters "
                    f"(spaces skipped) were shifted forward by the key's letters in turn (a = 0, "
                    f"b = 1, ...), the key repeating.\nAnswer with the plaintext in lower case. "
                    f"{ANSWER_TAGS}")
        return question, plain, {}


class RailFenceCipher(_Cipher):
    name = "rail_fence_cipher"
    difficulty_range = (1, 5)
    knobs = "words 2-6 and rails 2-5"
    _levels = [(2, 2), (3, 3), (4, 3), (5, 4), (6, 5)]

    def make(self, rng, difficulty):
        n, rails = level(difficulty, self._levels)
        plain = _plaintext(rng, n)
        letters = plain.replace(" ", "")
        pattern = list(range(rails)) + list(range(rails - 2, 0, -1))
        rows = [[] for _ in range(rails)]
        for i, ch in enumerate(letters):
            rows[pattern[i % len(pattern)]].append(ch)
        cipher = "".join("".join(row) for row in rows)
        question = (f"The letters of a text (spaces removed) were written in a zigzag over {rails} "
                    f"rails (down from the top rail, then up, and so on), and the rails were read "
                    f"off top to bottom, giving \"{cipher}\". The text has {n} words of lengths "
                    f"{', '.join(str(len(w)) for w in plain.split())}.\n"
                    f"Answer with the plaintext in lower case, words separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, plain, {}


class AffineCipher(_Cipher):
    name = "affine_cipher"
    difficulty_range = (1, 5)
    knobs = "words 2-8 and multiplier (1 = a shift at level 1)"
    _levels = [(2, [1]), (3, [3, 5]), (4, [3, 5, 7, 9, 11]), (6, [3, 5, 7, 9, 11, 15, 17, 19]),
               (8, [3, 5, 7, 9, 11, 15, 17, 19, 21, 23, 25])]

    def make(self, rng, difficulty):
        n, multipliers = level(difficulty, self._levels)
        plain = _plaintext(rng, n)
        a, b = rng.choice(multipliers), rng.randint(1, 25)
        cipher = "".join(ch if ch == " " else chr(((ord(ch) - _A) * a + b) % 26 + _A) for ch in plain)
        question = (f"Decrypt this affine cipher: \"{cipher}\". Each letter x (a = 0, ..., z = 25) "
                    f"was encrypted as ({a} * x + {b}) mod 26.\n"
                    f"Answer with the plaintext in lower case. {ANSWER_TAGS}")
        return question, plain, {}


for _task in (CaesarCipher(), VigenereCipher(), RailFenceCipher(), AffineCipher()):
    register(_task)
