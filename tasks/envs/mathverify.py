"""Math answer checking with math-verify, safe off the main thread (report section 4.1, math data).

math-verify's own timeouts use ``signal.alarm``, which only works on the main thread; Prefect runs
tasks in threads. So every parse and comparison runs in a worker process with math-verify's
timeouts off (``parsing_timeout=None, timeout_seconds=None``), and the caller waits on the worker's
pipe with its own deadline: a worker that overruns (sympy can spin for minutes on
``10^{10^{10^{10}}}``-style input) is killed and replaced. Workers are pooled, one per concurrent
caller up to the number of CPU cores (beyond that, callers queue for a worker).

Text is read as LaTeX: a bare answer (``\\frac{1}{2}``, ``x^2+1``, ``[1, 3)``) is wrapped in ``$...$``
first, because math-verify's plain-expression extractor takes only the last number of ``2\\pi`` or
``3\\sqrt{3}``; text that already carries ``$``, ``\\(``, ``\\[`` or ``\\boxed`` is parsed as given.

Usage::

    from tasks.envs.mathverify import parse_clean, verify_math
    parse_clean("\\frac{2}{4}", timeout_s=5)          # '\\frac{1}{2}'
    parse_clean("True", timeout_s=5)                   # None: not a math value
    verify_math("\\frac{1}{2}", "0.5", timeout_s=5)    # True
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time

#: a fresh worker imports sympy and math-verify (about a second); this bounds that, not the call
_STARTUP_TIMEOUT_S = 120.0
#: address space of a worker: a pathological expression fails with MemoryError instead of eating
#: the machine's memory before its deadline
_WORKER_MEMORY_MB = 4096
#: workers alive at once (each holds sympy, ~150 MB); more concurrent callers wait their turn
_MAX_WORKERS = max(2, os.cpu_count() or 2)

_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")  # an escaped \$ is a dollar sign
_SCI = re.compile(r"\s*([+-]?\d+(?:\.\d*)?)[eE]([+-]?\d+)\s*")
# LaTeX commands and the contents of \text{...}-style groups (units, words math-verify drops)
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_TEXT_GROUP = re.compile(r"\\(?:text|mbox|mathrm|textbf|operatorname|begin|end)\s*\{[^{}]*\}")
_WORD = re.compile(r"[a-zA-Z]{2,}")
_FUNCTION_NAMES = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "arcsin",
                   "arccos", "arctan", "sinh", "cosh", "tanh", "pi", "mod", "gcd", "lcm", "det"}


# ---------------------------------------------------------------------------------------------
# Worker side: runs in its own process; every function here may hang, the parent enforces time.


def _as_latex(text: str) -> str:
    """Bare text wrapped in ``$...$`` (scientific notation spelled out); delimited text unchanged."""
    if _DELIMITED.search(text):
        return text
    sci = _SCI.fullmatch(text)
    if sci:
        text = f"{sci.group(1)}\\times 10^{{{sci.group(2)}}}"
    return f"${text}$"


def _parse(text: str) -> list:
    from math_verify import parse

    found = parse(_as_latex(text), parsing_timeout=None)
    if not found and not _DELIMITED.search(text):
        found = parse(text, parsing_timeout=None)
    return found


def _has_words(text: str) -> bool:
    """Whether text has a run of letters that is no LaTeX command, \\text group or function name."""
    bare = _COMMAND.sub(" ", _TEXT_GROUP.sub(" ", text))
    return any(w.lower() not in _FUNCTION_NAMES for w in _WORD.findall(bare))


def _clean(text: str) -> str | None:
    import sympy

    if _has_words(text):
        return None
    found = _parse(text)
    if not found or isinstance(found[0], str):
        return None
    value = found[0]
    if isinstance(value, sympy.FiniteSet) and len(value) > 1:
        return None
    # a lone letter is a choice label, "(B)", not a value
    if isinstance(value, sympy.Symbol):
        return None
    # a symbol named by several letters is a word math-verify turned into a variable (\text{yes})
    symbols = getattr(value, "free_symbols", set())
    if any(len(s.name) > 1 for s in symbols):
        return None
    return sympy.latex(value)


def _verify(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    g = _parse(gold)
    if not g:
        return False
    p = _parse(pred)
    if p and verify(g, p, timeout_seconds=None):
        return True
    # math-verify's own extraction of the bare text drops units and words ("12 dollars" -> 12),
    # which the LaTeX reading turns into a product of letters
    raw = parse(pred, parsing_timeout=None)
    return bool(raw) and bool(verify(g, raw, timeout_seconds=None))


def _worker_main() -> None:
    """Serve JSON-line requests on stdin until it closes: ``{"op": "clean"|"verify", ...}``."""
    import logging
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_MB << 20,) * 2)
    logging.disable(logging.WARNING)  # math-verify warns on every call that its timeouts are off
    import math_verify  # noqa: F401  (imported once here, not inside the first timed request)

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "clean":
                reply = {"value": _clean(req["text"])}
            else:
                reply = {"value": _verify(req["gold"], req["pred"])}
        except Exception as exc:  # noqa: BLE001  (any parser failure is "no clean value")
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# Caller side: a pool of worker processes, one checked out per call.


class _Timeout(Exception):
    pass


class _Worker:
    def __init__(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = f"import sys; sys.path.insert(0, {root!r}); from tasks.envs.mathverify import _worker_main; _worker_main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._buf = b""
        if self._readline(_STARTUP_TIMEOUT_S) != b"ready":
            self.kill()
            raise RuntimeError("math-verify worker failed to start")

    def _readline(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Timeout
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("math-verify worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def call(self, request: dict, timeout_s: float) -> dict:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self._readline(timeout_s))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self.slots = threading.BoundedSemaphore(max_workers)
        self.idle: list[_Worker] = []
        self.lock = threading.Lock()

    def call(self, request: dict, timeout_s: float) -> dict | None:
        """The worker's reply, or None when it overran ``timeout_s`` or died (it is then replaced)."""
        with self.slots:  # the deadline starts once a worker is ours, not while waiting for one
            with self.lock:
                worker = self.idle.pop() if self.idle else None
            worker = worker or _Worker()
            try:
                reply = worker.call(request, timeout_s)
            except (_Timeout, EOFError, BrokenPipeError, ValueError):
                worker.kill()
                return None
            with self.lock:
                self.idle.append(worker)
            return reply

    def close(self) -> None:
        with self.lock:
            workers, self.idle = self.idle, []
        for w in workers:
            w.kill()


_POOL = _Pool(_MAX_WORKERS)
atexit.register(_POOL.close)


def parse_clean(text: str, *, timeout_s: float) -> str | None:
    """The canonical LaTeX of the single clean value math-verify parses from ``text``.

    None when the text parses to nothing, to several values (``1, 2``), to garbage (words such as
    ``True``, ``(B)``, ``7 apples``), or when parsing takes longer than ``timeout_s``. The result
    parses back to the same value: ``verify_math(text, parse_clean(text))`` holds.
    """
    reply = _POOL.call({"op": "clean", "text": text}, timeout_s)
    return reply.get("value") if reply else None


def verify_math(gold: str, pred: str, *, timeout_s: float) -> bool:
    """Whether ``pred`` equals the reference ``gold`` under math-verify; False on timeout or error."""
    reply = _POOL.call({"op": "verify", "gold": gold, "pred": pred}, timeout_s)
    return bool(reply and reply.get("value"))
