"""Dashboard fixtures: a real main-job chain, the dashboard CLI behind a token, headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from mainjob import MainJob

from prover.anvil import free_port
from prover.paths import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def zkcare(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prover", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class DashboardServer:
    """``python -m prover dashboard`` on a loopback port, with a token file."""

    url: str
    token: str
    proc: subprocess.Popen[str]
    job: MainJob

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(
            self.url + path, headers=headers, timeout=30, allow_redirects=False, **kw
        )


@pytest.fixture(scope="module")
def dashboard_main_job() -> Iterator[MainJob]:
    """One real run of the main job for the module (anvil and the relay left running)."""
    with MainJob.running("dashboard-mainjob") as job:
        yield job


@pytest.fixture(scope="module")
def dashboard_server(
    dashboard_main_job: MainJob,
) -> Iterator[DashboardServer]:
    """The dashboard as an operator starts it: a token made with --add-token, then served."""
    tmp = Path(tempfile.mkdtemp(prefix="zkcare-dashboard-"))  # outlives pytest's pruning
    tokens = tmp / "tokens"
    made = zkcare(
        "dashboard",
        "--rpc",
        dashboard_main_job.rpc,
        "--deployment",
        dashboard_main_job.deployment,
        "--tokens",
        tokens,
        "--add-token",
        "auditor",
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token and token not in tokens.read_text()  # only its hash is stored
    port = free_port()
    log = (tmp / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prover",
            "dashboard",
            "--rpc",
            dashboard_main_job.rpc,
            "--deployment",
            str(dashboard_main_job.deployment),
            "--db",
            str(tmp / "index.sqlite"),
            "--port",
            str(port),
            "--relay",
            dashboard_main_job.relay,
            "--relay-token-file",  # an operator's relay client: read + admin
            str(dashboard_main_job.relay_token_file),
            "--tokens",
            str(tokens),
            "--poll",
            "0.3",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/login", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((tmp / "dashboard.log").read_text()[-3000:])
        time.sleep(0.2)
    try:
        yield DashboardServer(url, token, proc, dashboard_main_job)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def dashboard_browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright, with a fresh profile."""
    if not CHROMIUM.is_file():
        pytest.fail("chromium is missing: ./zk setup installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="zkcare-chromium-")  # a fresh user-data-dir
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
