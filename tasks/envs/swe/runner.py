"""Runs inside the sandbox: apply the patch, restore the tests, compile, run the tests, report.

Run by ``tasks.envs.sandbox.run`` (so it is the scratch directory's ``main.py``) beside ``repo/`` (the
buggy repository), ``pristine_tests/`` (its tests as generated) and ``fix.diff``, with a one-time
nonce on stdin. It prints exactly one line ``SWE-RESULT <nonce> <json>``, where json has
``status``: ``no_apply`` | ``syntax_error`` | ``ran`` and, when the tests ran, ``tests`` (every
test id found) and ``failed`` (id -> the failure's exception line). The patched code runs in this
process only after the nonce has been read and the checks above are done, so it cannot forge an
earlier verdict; a crash or ``os._exit`` in it leaves no result line, which the caller scores as a
failure. Code that digs the nonce out of this process's memory or patches ``unittest`` at import
could still fake a pass: the tests and the patched code share one interpreter, as in SWE-bench.

Standard library only: the sandbox's interpreter runs without site-packages.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest


def report(nonce, **fields):
    sys.stdout.write(f"SWE-RESULT {nonce} {json.dumps(fields)}\n")
    sys.stdout.flush()


def apply_patch(diff_path):
    """git apply, then GNU patch (more forgiving of hunk offsets); (applied, message)."""
    git = subprocess.run(["git", "apply", "--whitespace=nowarn", diff_path], capture_output=True, text=True)
    if git.returncode == 0:
        return True, ""
    dry = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-i", diff_path]
    check = subprocess.run(dry + ["--dry-run"], capture_output=True, text=True)
    if check.returncode == 0 and subprocess.run(dry, capture_output=True, text=True).returncode == 0:
        return True, ""
    return False, (git.stderr + check.stdout)[-500:]


def headline(traceback_text):
    """The exception line of a traceback (``AssertionError: 3 != 7``), not the diff lines after it."""
    lines = traceback_text.strip().splitlines()
    found = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\b", line)]
    return (found or lines or [""])[-1][:300]


def test_ids(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from test_ids(test)
        else:
            yield test


def main():
    nonce = sys.stdin.readline().strip()
    os.chdir("repo")
    applied, message = apply_patch(os.path.abspath("../fix.diff"))
    if not applied:
        report(nonce, status="no_apply", detail=message)
        return
    shutil.rmtree("tests", ignore_errors=True)  # a patch does not get to edit the tests
    shutil.copytree("../pristine_tests", "tests")
    for root, _, names in os.walk("."):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                try:
                    with open(path, encoding="utf-8") as f:
                        compile(f.read(), path, "exec")
                except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
                    report(nonce, status="syntax_error", detail=f"{path}: {exc}")
                    return
    sys.path.insert(0, os.getcwd())
    suite = unittest.defaultTestLoader.discover("tests", top_level_dir=".")
    tests = sorted(t.id() for t in test_ids(suite))  # before running: a run drops finished tests
    result = unittest.TestResult()
    suite.run(result)
    failed = {t.id(): headline(err) for t, err in result.failures + result.errors}
    report(nonce, status="ran", tests=tests, failed=failed)


if __name__ == "__main__":
    main()
