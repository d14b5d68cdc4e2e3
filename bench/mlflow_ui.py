"""Two pipeline runs with different params, side by side in the MLflow UI, checked in a real browser.

    .venv/bin/python bench/mlflow_ui.py --only raw_math,clean,dedup --set-b curate.clean.min_question_chars=20

Needs Debian's chromium (``apt-get install chromium``; not part of ``make test``). Copies the project
(every file git tracks or would track) into a temp folder and runs the flow there twice: run A with
params.yaml plus ``--set`` overrides, run B with ``--set-b`` overrides on top (the stages whose
inputs are unchanged are skipped in run B and appear as reused runs). Then it starts ``mlflow ui``
on that folder's ``mlflow.db`` (one worker, no job execution), opens it in headless chromium and
saves two screenshots: the runs table of experiment ``m1`` (the two pipeline runs with their stage
runs) as ``docs/figures/mlflow_runs.png`` and the Compare view of the two pipeline runs as
``docs/figures/mlflow_compare.png``. The server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def copy_project(dest: Path) -> None:
    """The files git tracks or would track (the working tree as it is), without outputs or state."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def set_params(path: Path, overrides: list[str]) -> None:
    """Apply ``key=value`` overrides (dotted keys, YAML values) to a params file."""
    from tasks.config import read_params

    doc = read_params(path)
    for text in overrides:
        key, _, raw = text.partition("=")
        node = doc
        *groups, leaf = key.split(".")
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = yaml.safe_load(raw)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def run_flow(work: Path, only: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "flows.full_pipeline"] + (["--only", only] if only else [])
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=work, env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chromium:
    """Headless chromium driven over its DevTools protocol (``websockets``, which prefect installs):
    open a page, wait for it, click, and save a full-page screenshot."""

    def __init__(self, binary: str, width: int, height: int):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        port = free_port()
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={port}", f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2))
                self.ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        else:
            raise SystemExit("error: chromium's DevTools endpoint did not come up")
        self.ws, self.ids = None, 0

    async def send(self, method: str, **params):
        import websockets

        if self.ws is None:
            self.ws = await websockets.connect(self.ws_url, max_size=2 ** 28)
        self.ids += 1
        await self.ws.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.ids:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        done = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return done.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not await self.js(expression):
            if time.time() > deadline:
                raise SystemExit(f"error: the page never satisfied {expression!r}")
            await asyncio.sleep(0.5)

    async def shoot(self, url: str, ready: str, clicks: list[str], out: Path) -> None:
        """Open ``url``, wait for ``ready`` (JS), click each CSS selector's elements, save ``out``."""
        await self.send("Page.enable")
        await self.send("Page.navigate", url=url)
        await self.wait_for(ready)
        for selector in clicks:
            await self.js(f"document.querySelectorAll({json.dumps(selector)}).forEach(e => e.click())")
            await asyncio.sleep(2)
        await asyncio.sleep(3)  # charts and expanded rows render
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {out} ({url})", flush=True)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="stages to run (default: all)")
    ap.add_argument("--set", dest="set_a", action="append", default=[], help="override for both runs")
    ap.add_argument("--set-b", action="append", default=[], help="override for run B only")
    ap.add_argument("--work", default="", help="work folder (default: a new temp folder, removed at the end)")
    ap.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    ap.add_argument("--screenshots-only", action="store_true", help="reuse the runs already in --work")
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("error: chromium not found; install Debian's: apt-get install chromium")
    work = Path(args.work or tempfile.mkdtemp(prefix="m1-mlflow-ui-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PREFECT_HOME": str(work / ".prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    if not (work / "flows").is_dir():
        copy_project(work)
        subprocess.run(["git", "init", "-q"], cwd=work, check=True)  # DVC records each stage; it needs a repository
    if not args.screenshots_only:
        set_params(work / "params.yaml", args.set_a)
        run_flow(work, args.only, env)
        set_params(work / "params.yaml", args.set_b)
        run_flow(work, args.only, env)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            raise SystemExit("error: mlflow ui did not answer within 300 s")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name("m1")
        parents = [r for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
                   if "mlflow.parentRunId" not in r.data.tags]
        ids = [r.info.run_id for r in parents[-2:]]
        print("pipeline runs:", [(r.info.run_name, r.info.status) for r in parents[-2:]], flush=True)
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        close_assistant = 'button[aria-label="Close"]'
        query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp.experiment_id])})
        shots = [((1800, 1100), f"{base}/#/experiments/{exp.experiment_id}/runs",
                  "document.querySelectorAll('.ag-row').length >= 2",
                  'button[data-component-id*="runnamecellrenderer"]', "mlflow_runs.png"),
                 ((1600, 2400), f"{base}/#/compare-runs?{query}", "document.body.innerText.includes('Comparing 2 Runs')",
                  'button[role="switch"][aria-label$="Show diff only"]', "mlflow_compare.png")]
        for (width, height), url, ready, click, name in shots:
            browser = Chromium(chromium, width, height)
            try:
                asyncio.run(browser.shoot(url, ready, [close_assistant, click], figures / name))
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        print("mlflow ui stopped", flush=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
