"""Shared fixtures: the real services the integration tier talks to.

.ci/run starts PostgreSQL, an S3 server and a Prefect server and names them in LDRT_TEST_* variables
(with LDRT_TEST_REQUIRE_SERVICES=1, so that a missing service fails the run instead of skipping).
Run locally without them, the S3 fixtures start moto's S3 server on loopback themselves and the
PostgreSQL and Prefect tests skip, saying which variable to set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
REQUIRE_SERVICES = os.environ.get("LDRT_TEST_REQUIRE_SERVICES") == "1"


def need_env(var: str, what: str) -> str:
    value = os.environ.get(var)
    if value:
        return value
    if REQUIRE_SERVICES:
        pytest.fail(f"{what}: {var} is not set, and LDRT_TEST_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(f"{what} not available: set {var} (.ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # the server answers; any status will do
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a real S3 server on loopback: CI's, or a moto server started for this session."""
    configured = os.environ.get("LDRT_TEST_S3_ENDPOINT")
    if configured:
        yield configured
        return
    if REQUIRE_SERVICES:
        pytest.fail("LDRT_TEST_S3_ENDPOINT is not set, and LDRT_TEST_REQUIRE_SERVICES=1")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/moto-api/")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_env(s3_endpoint: str) -> Iterator[dict[str, str]]:
    """LDRT_* settings for a fresh, empty bucket on the loopback S3 server, removed after."""
    from tests.support.s3_bucket import remove_bucket

    env = {
        "LDRT_STORE_URL": f"s3://ldrt-test-{uuid.uuid4().hex[:12]}",
        "LDRT_S3_ENDPOINT": s3_endpoint,
        "LDRT_S3_ACCESS_KEY": "test-access-key",
        "LDRT_S3_SECRET_KEY": "test-secret-key-do-not-print",
        "LDRT_S3_REGION": "us-east-1",
    }
    yield env
    remove_bucket(env)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return need_env("LDRT_TEST_PG_URL", "PostgreSQL")


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"ldrt_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(pg_admin_url).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def prefect_api_url() -> str:
    return need_env("LDRT_TEST_PREFECT_API_URL", "Prefect server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; run on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
