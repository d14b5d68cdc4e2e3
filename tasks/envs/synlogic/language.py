"""Language and tracking tasks: Dyck languages, Word sorting, Object counting, Object
properties, Letter counting, String manipulation, Time sequence, Navigation, Shuffled objects.

Each answer is a function of the question (computed while generating), so verifiers compare the
canonical form of the answer with the reference.
"""

from __future__ import annotations

import re

from tasks.envs.base import register
from tasks.envs.synlogic.base import ANSWER_TAGS, SynLogicTask, canon, level, parse_ints
from tasks.envs.synlogic.puzzles_logic import NAMES

WORDS = """able about above across act add after again age ago air all allow almost alone along
already also always amount animal answer any appear apple area arm army around art ask atom baby
back bad ball band bank base basket bear beat bed before begin behind bell best better between big
bird black block blood blow blue board boat body bone book born both bottom box boy branch bread
break bright bring broad brother brown build burn busy call camp can capital captain car card care
carry case cat catch cause cell center chair chance change charge chart check chick chief child
choose church circle city claim class clean clear climb clock close cloud coast coat cold collect
colony color column come common company compare complete condition consider contain continent copy
corn corner cost cotton count country course cover cow crease create crop cross crowd cry current
cut dance danger dark day dead deal dear death decide deep degree depend describe desert design
detail develop dictionary differ direct discuss distant divide doctor dog dollar door double down
draw dream dress drink drive drop dry duck during each ear early earth ease east eat edge effect egg
eight either electric element else end enemy energy engine enough enter equal equate even evening
event ever every exact example except excite exercise expect experience experiment eye face fact
fair fall family famous far farm fast father favor fear feed feel fellow field fig fight figure fill
final find fine finger finish fire first fish fit five flat floor flow flower fly follow food foot
force forest form forward found fraction free fresh friend front fruit full fun game garden gas
gather gentle get girl give glad glass gold good govern grand grass gray great green grew ground
group grow guess guide gun hair half hand happen happy hard hat head hear heart heat heavy help high
hill history hold hole home hope horse hot hour house huge human hundred hunt hurry ice idea inch
insect iron island job join joy jump keep key kill kind king kitchen knew know lady lake land large
laugh lead learn leave left leg length letter level lie life lift light like line liquid list
listen little live locate log lone long lost loud love low machine magnet main major make man many
map mark market mass master match material matter meat meet melody metal method middle might mile
milk million mind mine minute miss modern molecule moment money month moon morning mother motion
mount mountain mouth move music name nation natural nature near neck need neighbor night noise
north nose note noun number object ocean office oil old open opposite order organ original oxygen
page paint pair paper paragraph parent party pass past path pattern pay people perhaps period
person phrase pick picture piece pitch plain plan plane planet plant play please plural poem point
pole poor port pose position possible pound power practice prepare present press pretty print
problem process produce product proper protect proud provide pull push quart question quick quiet
quite quotient race radio rail rain raise range rather reach read ready real reason receive record
region remember repeat reply represent require rest result rich ride right ring rise river road rock
roll room root rope rose round row rub rule safe sail salt sand save say scale school science score
sea search season seat second section seed select self sell send sense sentence separate serve
settle seven shape share sharp sheet shell shine ship shoe shop shore short shoulder shout show side
sight sign silent silver simple sing single sister size skill skin sky sleep slip slow small smell
smile snow soft soil soldier solution solve song soon sound south space speak special speech speed
spell spend spoke spot spread spring square stand star start state station stay steam steel step
stick still stone stood store story straight strange stream street stretch string strong student
study subject success sugar suggest suit summer sun supply support sure surface surprise swim
syllable symbol system table tail take talk tall teach team teeth tell temperature test thank thick
thin thing third thought thousand three through throw tie tiny tire together tone tool total touch
toward town track trade train travel tree triangle trip trouble truck true tube turn twenty type
under unit until usual valley value vary verb very view village visit voice vowel wait walk wall
warm wash watch water wave wear weather week weight west wheel white whole wide wife wild win wind
window wing winter wire wish woman wonder wood word work world write yard year yellow young""".split()


def _open_brackets(seq: list[str]) -> str:
    """The worked solution's trace: the brackets still open after each symbol ("-" for none)."""
    close_of = {"(": ")", "[": "]", "{": "}", "<": ">"}
    open_, trace = "", []
    for ch in seq:
        open_ = open_ + ch if ch in close_of else open_[:-1]
        trace.append(open_ or "-")
    return ", ".join(trace)


class DyckLanguages(SynLogicTask):
    name = "dyck_languages"
    difficulty_range = (1, 5)
    knobs = "bracket kinds 2-4, sequence length 6-40, nesting depth"
    _levels = [(2, 6), (3, 10), (4, 16), (4, 26), (4, 40)]

    def make(self, rng, difficulty):
        kinds, length = level(difficulty, self._levels)
        pairs = ["()", "[]", "{}", "<>"][:kinds]
        seq, stack = [], []
        while len(seq) < length or not stack:
            if stack and (rng.random() < 0.4 or len(seq) + len(stack) >= 2 * length):
                seq.append(stack.pop())
            else:
                pair = rng.choice(pairs)
                seq.append(pair[0])
                stack.append(pair[1])
        question = (f"Complete the sequence so that every bracket is closed properly: "
                    f"{' '.join(seq)}\nAnswer with only the brackets that must be appended, "
                    f"separated by spaces. {ANSWER_TAGS}")
        answer = " ".join(reversed(stack))
        return question, answer, {"solution": f"<think>{_open_brackets(seq)}</think><answer>{answer}</answer>"}

    def check(self, item, answer):
        return float(re.sub(r"\s", "", answer) == re.sub(r"\s", "", item["answer"]))


class WordSorting(SynLogicTask):
    name = "word_sorting"
    difficulty_range = (1, 5)
    knobs = "word count 5-20; from level 3 words share their first letters"
    _levels = [(5, 0), (8, 0), (10, 1), (15, 2), (20, 2)]

    def make(self, rng, difficulty):
        n, shared = level(difficulty, self._levels)
        pool = WORDS
        if shared:
            prefix = rng.choice([w[:shared] for w in WORDS])
            close = [w for w in WORDS if w.startswith(prefix)]
            pool = close if len(close) >= n else WORDS
        words = rng.sample(pool, min(n, len(pool)))
        if len(words) < n:
            words += rng.sample([w for w in WORDS if w not in words], n - len(words))
        rng.shuffle(words)
        question = (f"Sort these words alphabetically: {' '.join(words)}\n"
                    f"Answer with the sorted words separated by spaces. {ANSWER_TAGS}")
        return question, " ".join(sorted(words)), {}

    def check(self, item, answer):
        return float(re.findall(r"[a-z]+", answer.lower()) == item["answer"].split())


_OBJECTS = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "plum"],
    "animal": ["cat", "cow", "dog", "donkey", "duck", "goat", "mouse", "pig", "rabbit", "snake"],
    "musical instrument": ["accordion", "clarinet", "drum", "flute", "piano", "trombone",
                           "trumpet", "violin"],
    "vegetable": ["cabbage", "carrot", "celery", "garlic", "lettuce", "onion", "potato", "yam"],
}
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _plural(word: str, k: int) -> str:
    if k == 1:
        return word
    if word.endswith(("ch", "sh", "s", "x", "o")) and word not in ("piano",):
        return word + "es"
    return word[:-1] + "ies" if word.endswith("y") and word[-2] not in "aeiou" else word + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class ObjectCounting(SynLogicTask):
    name = "object_counting"
    difficulty_range = (1, 5)
    knobs = "distinct items 3-12 and largest count per item 1-5"
    _levels = [(3, 1), (5, 2), (7, 3), (9, 4), (12, 5)]

    def make(self, rng, difficulty):
        n, most = level(difficulty, self._levels)
        target = rng.choice(sorted(_OBJECTS))
        pool = [(cat, w) for cat, words in _OBJECTS.items() for w in words]
        picks = rng.sample(pool, n)
        if all(cat != target for cat, _ in picks):
            picks[0] = (target, rng.choice(_OBJECTS[target]))
        counts = [rng.randint(1, most) for _ in picks]
        said = ", ".join(f"{_article(w) if k == 1 else _NUMBER_WORDS[k]} {_plural(w, k)}"
                         for (_, w), k in zip(picks, counts))
        total = sum(k for (cat, _), k in zip(picks, counts) if cat == target)
        question = (f"I have {said}. How many {target}s do I have?\n"
                    f"Answer with a number. {ANSWER_TAGS}")
        # worked solution: each object of the asked kind with its count, then the running sum
        mine = [(w, k) for (cat, w), k in zip(picks, counts) if cat == target]
        steps, running = [f"{w} {k}" for w, k in mine], mine[0][1]
        for _, k in mine[1:]:
            steps.append(f"{running}+{k}={running + k}")
            running += k
        return question, str(total), {"solution": f"<think>{', '.join(steps)}</think><answer>{total}</answer>"}

    def check(self, item, answer):
        return float(parse_ints(answer) == [int(item["answer"])])


_COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "gray"]
_THINGS = ["pen", "cup", "book", "key", "sock", "ball", "plate", "mug"]


class ObjectProperties(SynLogicTask):
    name = "object_properties"
    difficulty_range = (1, 5)
    knobs = "object groups 3-8 and removal steps 0-4"
    _levels = [(3, 0), (4, 1), (5, 2), (6, 3), (8, 4)]

    def make(self, rng, difficulty):
        n, steps = level(difficulty, self._levels)
        groups = []
        while len(groups) < n:
            g = [rng.randint(1, 4), rng.choice(_COLOURS[:5]), rng.choice(_THINGS[:5])]
            if all(g[1:] != h[1:] for h in groups):
                groups.append(g)
        said = ", ".join(f"{_NUMBER_WORDS[k]} {c} {_plural(t, k)}" for k, c, t in groups)
        story = [f"On the desk there are {said}."]
        for _ in range(steps):
            if rng.random() < 0.5:
                colour = rng.choice([c for _, c, _ in groups])
                story.append(f"I remove all the {colour} things.")
                groups = [g for g in groups if g[1] != colour]
            else:
                thing = rng.choice([t for k, _, t in groups if k] or _THINGS)
                story.append(f"I take away one {thing} of each colour that has one left.")
                groups = [[max(k - 1, 0) if t == thing else k, c, t] for k, c, t in groups]
            if not groups:
                break
        if rng.random() < 0.5:
            colour = rng.choice(_COLOURS[:5])
            ask, total = f"{colour} things", sum(k for k, c, _ in groups if c == colour)
            mine = [(k, c, t) for k, c, t in groups if c == colour and k]
        else:
            thing = rng.choice(_THINGS[:5])
            ask, total = f"{thing}s", sum(k for k, _, t in groups if t == thing)
            mine = [(k, c, t) for k, c, t in groups if t == thing and k]
        question = (f"{' '.join(story)} How many {ask} remain on the desk?\n"
                    f"Answer with a number. {ANSWER_TAGS}")
        # worked solution: the asked-for groups left at the end with their counts, then the running sum
        steps = [f"{c} {t} {k}" for k, c, t in mine] or ["none 0"]
        for i in range(1, len(mine)):
            steps.append(f"{sum(k for k, _, _ in mine[:i])}+{mine[i][0]}={sum(k for k, _, _ in mine[:i + 1])}")
        return question, str(total), {"solution": f"<think>{', '.join(steps)}</think><answer>{total}</answer>"}

    def check(self, item, answer):
        return float(parse_ints(answer) == [int(item["answer"])])


class LetterCounting(SynLogicTask):
    name = "letter_counting"
    difficulty_range = (1, 5)
    knobs = "text of 1-24 words; from level 3 count two letters"
    _levels = [(1, 1), (4, 1), (8, 2), (14, 2), (24, 2)]

    def make(self, rng, difficulty):
        n, n_letters = level(difficulty, self._levels)
        words = [rng.choice(WORDS) for _ in range(n)]
        text = " ".join(words)
        letters = rng.sample(sorted(set(text.replace(" ", ""))), n_letters)
        total = sum(text.count(ch) for ch in letters)
        which = " or ".join(f"'{ch}'" for ch in letters)
        question = (f"How many times does the letter {which} appear in the text \"{text}\"?\n"
                    f"Answer with a number. {ANSWER_TAGS}")
        return question, str(total), {}

    def check(self, item, answer):
        return float(parse_ints(answer) == [int(item["answer"])])


def _apply(op: str, s: str) -> str:
    if op == "reverse":
        return s[::-1]
    if op == "swap":
        return s[-1] + s[1:-1] + s[0] if len(s) > 1 else s
    if op == "rotate":
        return s[2:] + s[:2]
    if op == "vowels":
        return "".join(ch for ch in s if ch not in "aeiou") or s
    if op == "double":
        return "".join(ch * 2 if i % 2 == 0 else ch for i, ch in enumerate(s))
    return "".join(chr((ord(ch) - 97 + 1) % 26 + 97) for ch in s)  # "shift"


_OP_TEXT = {
    "reverse": "reverse the string",
    "swap": "swap the first and the last character",
    "rotate": "move the first two characters to the end",
    "vowels": "delete every vowel (a, e, i, o, u), unless that would leave nothing",
    "double": "double every character in an odd position (1st, 3rd, 5th, ...)",
    "shift": "replace every letter by the next one in the alphabet (z becomes a)",
}


class StringManipulation(SynLogicTask):
    name = "string_manipulation"
    difficulty_range = (1, 5)
    knobs = "operations 1-6 on a string of 4-12 letters"
    _levels = [(1, 4), (2, 6), (3, 8), (4, 10), (6, 12)]

    def make(self, rng, difficulty):
        n_ops, length = level(difficulty, self._levels)
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
        ops = [rng.choice(sorted(_OP_TEXT)) for _ in range(n_ops)]
        out = s
        for op in ops:
            out = _apply(op, out)
        steps = "\n".join(f"{i + 1}. {_OP_TEXT[op]}" for i, op in enumerate(ops))
        question = (f"Start from the string \"{s}\" and apply, in order:\n{steps}\n"
                    f"Answer with the resulting string. {ANSWER_TAGS}")
        return question, out, {}


def _hour(h: int) -> str:
    return f"{(h - 1) % 12 + 1}{'am' if h < 12 else 'pm'}"


class TimeSequence(SynLogicTask):
    name = "time_sequence"
    difficulty_range = (1, 5)
    knobs = "sightings 3-10 in the day"
    _levels = [3, 4, 6, 8, 10]
    _places = ["park", "library", "bakery", "museum", "gym", "station", "market", "beach",
               "office", "cafe", "garage", "bank"]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        person, goal = rng.choice(NAMES), rng.choice(self._places)
        start = rng.randint(5, 9)
        end = start + n + 4  # at most 23h
        cuts = sorted(rng.sample(range(start + 1, end), n))
        spans = list(zip([start] + cuts, cuts + [end]))
        free = rng.randrange(1, len(spans))
        seen = [s for i, s in enumerate(spans) if i != free]
        others = [p for p in self._places if p != goal]
        lines = [f"{person} woke up at {_hour(start)}."]
        for a, b in seen:
            lines.append(f"From {_hour(a)} to {_hour(b)}, {person} was seen at the "
                         f"{rng.choice(others)} by {rng.choice([x for x in NAMES if x != person])}.")
        close = spans[-1][1]
        lines.append(f"The {goal} was closed after {_hour(close)}.")
        order = lines[:1] + rng.sample(lines[1:-1], len(lines) - 2) + lines[-1:]
        a, b = spans[free]
        question = (f"Today, {person} went to the {goal}. {' '.join(order)}\n"
                    f"Between what times could {person} have gone to the {goal}? Answer as "
                    f"'start-end' in 24-hour hours, for example 14-16. {ANSWER_TAGS}")
        return question, f"{a}-{b}", {}

    def check(self, item, answer):
        return float([abs(v) for v in parse_ints(answer)] == parse_ints(item["answer"].replace("-", " ")))


class Navigation(SynLogicTask):
    name = "navigation"
    difficulty_range = (1, 5)
    knobs = "instructions 3-16, turns and backward steps from level 2"
    _levels = [(3, False), (5, True), (8, True), (12, True), (16, True)]

    def make(self, rng, difficulty):
        n, turns = level(difficulty, self._levels)
        x = y = 0
        heading = 0  # 0 north, 1 east, 2 south, 3 west
        steps, trace = [], []  # trace: the worked solution, the position after each instruction
        for _ in range(n):
            kind = rng.choice(["step", "step", "turn", "back"] if turns else ["step"])
            if kind == "turn":
                right = rng.random() < 0.5
                heading = (heading + (1 if right else 3)) % 4
                steps.append(f"Turn {'right' if right else 'left'}.")
                trace.append("NESW"[heading])
                continue
            k = rng.randint(1, 9)
            sign = -1 if kind == "back" else 1
            dx, dy = [(0, 1), (1, 0), (0, -1), (-1, 0)][heading]
            x, y = x + sign * k * dx, y + sign * k * dy
            steps.append(f"Take {k} step{'s' if k > 1 else ''} {'backward' if sign < 0 else 'forward'}.")
            trace.append(f"({x}, {y})")
        question = (f"You start at (0, 0) facing north (north is +y, east is +x). "
                    f"{' '.join(steps)}\nWhere are you now? Answer as 'x, y'. {ANSWER_TAGS}")
        return question, f"{x}, {y}", {"solution": f"<think>{' '.join(trace)}</think><answer>{x}, {y}</answer>"}

    def check(self, item, answer):
        return float(parse_ints(answer) == parse_ints(item["answer"]))


class ShuffledObjects(SynLogicTask):
    name = "shuffled_objects"
    difficulty_range = (1, 5)
    knobs = "people 3-7 and swaps 3-15"
    _levels = [(3, 3), (4, 5), (5, 7), (6, 10), (7, 15)]
    _gifts = ["ball", "book", "kite", "hat", "clock", "lamp", "vase"]

    def make(self, rng, difficulty):
        n, swaps = level(difficulty, self._levels)
        people = rng.sample(NAMES, n)
        holds = dict(zip(people, rng.sample(self._gifts, n)))
        start = ", ".join(f"{p} has a {g}" for p, g in holds.items())
        story = []
        for _ in range(swaps):
            a, b = rng.sample(people, 2)
            holds[a], holds[b] = holds[b], holds[a]
            story.append(f"{a} and {b} swap their gifts.")
        question = (f"At the start, {start}. Then: {' '.join(story)}\n"
                    f"Who has what at the end? Answer as 'Name: gift' for every person in the "
                    f"order above, separated by commas. {ANSWER_TAGS}")
        return question, ", ".join(f"{p}: {holds[p]}" for p in people), {}

    def check(self, item, answer):
        pairs = lambda text: {canon(k): canon(v) for k, v in re.findall(r"(\w+)\s*:\s*(\w+)", text)}  # noqa: E731
        return float(pairs(answer) == pairs(item["answer"]))


for _task in (DyckLanguages(), WordSorting(), ObjectCounting(), ObjectProperties(),
              LetterCounting(), StringManipulation(), TimeSequence(), Navigation(),
              ShuffledObjects()):
    register(_task)
