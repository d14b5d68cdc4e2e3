"""Small text statistics."""


def word_count(text):
    return len(text.split())


def char_frequency(text):
    counts = {}
    for ch in text:
        if ch.isalpha():
            counts[ch.lower()] = counts.get(ch.lower(), 0) + 1
    return counts


def longest_word(text):
    best = ""
    for word in text.split():
        word = word.strip(".,;:!?")
        if len(word) > len(best):
            best = word
    return best


def average_word_length(text):
    words = [w.strip(".,;:!?") for w in text.split()]
    if len(words) == 0:
        return 0.0
    return sum(len(w) for w in words) / len(words)


def capitalize_sentences(text):
    out = []
    start = True
    for ch in text:
        if start and ch.isalpha():
            out.append(ch.upper())
            start = False
        else:
            out.append(ch)
        if ch in ".!?":
            start = True
    return "".join(out)
