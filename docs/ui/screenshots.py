"""Retake the README's pictures of the Prefect UI from a real run of the `pipeline` flow.

Input: nothing but this checkout. Unless --api-url names a Prefect server (whose UI must be served
at the same address, without /api), a local one is started with its UI on a free loopback port,
on SQLite in a temporary PREFECT_HOME, and stopped at the end. The pipeline runs in this process
on the sample corpus (6 papers, seed 0) in a temporary LDRT_HOME (embedded SQLite and local store)
with a tiny model, as the end-to-end test does; about two minutes on two cores.

Output, in --out (default: this folder), taken with headless Chromium:
    pipeline-run.png        the pipeline's flow run page: its task graph and state
    pipeline-artifacts.png  its table artifact `ldrt-pipeline-summary`: each stage's outcome and
                            counts (the run page's Artifacts tab shows just that artifact's card)
    evaluate-report.png     the evaluation's markdown artifact `ldrt-evaluation-report`

Run: `.venv/bin/python docs/ui/screenshots.py [--out DIR] [--api-url URL]`.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from flows.server import SERVER_SETTINGS

HERE = Path(__file__).resolve().parent
PREFECT = Path(sys.executable).with_name("prefect")
SIZE = (1600, 900)
REPORT_SIZE = (1600, 1500)  # the report down to its text metrics and per-category plots
SETTLE = 5.0  # seconds for the page to draw once its data is in


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5):
                return
        except OSError:
            time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the Prefect server at {api_url} did not come up:\n{tail}")


@contextmanager
def prefect_server() -> Iterator[str]:
    """A Prefect server with its UI on a free loopback port, on SQLite in a temporary
    PREFECT_HOME; yields its API URL and stops it on the way out."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with tempfile.TemporaryDirectory(prefix="ldrt-prefect-") as home:
        env = os.environ | SERVER_SETTINGS | {"PREFECT_HOME": home, "PREFECT_UI_API_URL": api_url}
        log = Path(home) / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        try:
            wait_healthy(api_url, server, log)
            yield api_url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def run_pipeline(work: Path) -> UUID:
    """The pipeline on the sample corpus, as the end-to-end test runs it; its flow run id."""
    from flows.pipeline import pipeline
    from ldrt_core.samples import write_sample_corpus

    write_sample_corpus(work / "papers", papers=6, seed=0)
    state = pipeline(
        source=f"folder:{work / 'papers'}",
        curation={"eval_share": 0.35},
        qa_backend="template",
        base_model="tiny-random",
        max_steps=20,
        lora_r=16,
        lora_alpha=32,
        align_lr=1e-2,
        instruct_lr=1e-2,
        checkpoint_every=0,
        eval_limit=8,
        max_new_tokens=64,
        return_state=True,
    )
    run_id = state.state_details.flow_run_id
    if not state.is_completed() or run_id is None:
        raise RuntimeError(f"the pipeline ended {state.name}: {state.message}")
    return run_id


def artifact_id(key: str, flow_run_ids: list[UUID]) -> UUID:
    """The artifact with this key made by one of these flow runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids),
            )
        )
    if not found:
        raise RuntimeError(f"no artifact {key} in flow runs {flow_run_ids}")
    return found[0].id


class Page:
    """A tab of headless Chromium, driven over the DevTools protocol."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        sent = next(self.ids)
        self.connection.send(json.dumps({"id": sent, "method": method, "params": params}))
        while (reply := json.loads(self.connection.recv())).get("id") != sent:
            pass  # an event
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def screenshot(self, url: str, out: Path, size: tuple[int, int], ready: str) -> None:
        """A PNG of the page, taken once the CSS selector `ready` matches and then SETTLE
        seconds have passed (in real time: under Chromium's virtual time the graph's time axis
        sometimes comes out unscaled)."""
        width, height = size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)  # answers once the new document is in
        deadline = time.monotonic() + 120
        check = f"!!document.querySelector({json.dumps(ready)})"
        while not self.call("Runtime.evaluate", expression=check)["result"].get("value"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} showed no {ready} in 120 s")
            time.sleep(0.5)
        time.sleep(SETTLE)
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))


@contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """Headless Chromium on a free DevTools port (which it writes to its profile folder)."""
    browser = subprocess.Popen(
        [
            shutil.which("chromium") or "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",  # WebGL (the run graph) falls back to software rendering
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or browser.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            tab = next(t for t in json.load(response) if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as connection:
            yield Page(connection)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


def take_pictures(api_url: str, out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="ldrt-ui-") as tmp:
        work = Path(tmp)
        os.environ["LDRT_HOME"] = str(work / "ldrt")
        # Prefect is imported by now (`flows` installs its patches on import), so its settings
        # change through its context, as the tests' `prefect_api` fixture does.
        with temporary_settings(
            {PREFECT_API_URL: api_url, PREFECT_LOCAL_STORAGE_PATH: work / "results"}
        ):
            run_id = run_pipeline(work)
            summary = artifact_id("ldrt-pipeline-summary", [run_id])
            report = artifact_id("ldrt-evaluation-report", [run_id])
        ui = api_url.removesuffix("/api")
        shots = {  # the picture: its page, its size, what shows the page has its data
            "pipeline-run.png": (f"{ui}/runs/flow-run/{run_id}", SIZE, ".run-graph canvas"),
            "pipeline-artifacts.png": (f"{ui}/artifacts/artifact/{summary}", SIZE, "table"),
            "evaluate-report.png": (f"{ui}/artifacts/artifact/{report}", REPORT_SIZE, "table"),
        }
        out.mkdir(parents=True, exist_ok=True)
        with chromium(work / "chromium") as page:
            for name, (url, size, ready) in shots.items():
                print(f"{name}: {url}", flush=True)
                page.screenshot(url, out / name, size, ready)
    return [out / name for name in shots]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the PNGs")
    parser.add_argument("--api-url", help="a running Prefect server's API URL; default: start one")
    args = parser.parse_args()
    if args.api_url:
        pictures = take_pictures(args.api_url.rstrip("/"), args.out)
    else:
        with prefect_server() as api_url:
            pictures = take_pictures(api_url, args.out)
    for picture in pictures:
        print(f"{picture} ({picture.stat().st_size // 1024} KiB)")


if __name__ == "__main__":  # the extract stage's worker processes import this module again
    main()
