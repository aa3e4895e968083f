"""Fixtures for the Prefect flow and deployment tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from flows.server import temporary_server


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """CI's Prefect server (LDRT_TEST_PREFECT_API_URL), or a temporary one, for one test module;
    task results under a fresh folder either way."""
    results = tmp_path_factory.mktemp("prefect-results")
    url = os.environ.get("LDRT_TEST_PREFECT_API_URL")
    if url:
        with temporary_settings({PREFECT_API_URL: url, PREFECT_LOCAL_STORAGE_PATH: results}):
            yield
        return
    with (
        temporary_server(startup_timeout_s=90),
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: results}),
    ):
        yield
