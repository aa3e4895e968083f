"""docker/compose.yaml: no Docker engine runs here, so check the file's promises directly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    return data


def test_services_the_code_expects_are_there_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "minio", "prefect-server"):
        assert "healthcheck" in services[name], name
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_prefect_and_ldrt_get_separate_databases(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_DB"] == "ldrt"
    assert postgres["LDRT_EXTRA_DATABASES"] == "prefect"
    url = compose["services"]["prefect-server"]["environment"][
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    ]
    assert url.endswith("@postgres:5432/prefect")
    assert "CREATE DATABASE" in (REPO / "docker" / "postgres" / "init-databases.sh").read_text()


def test_no_secret_is_written_into_the_file(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET", key):
                assert str(value).startswith("${"), f"{key} must come from docker/.env"


def test_the_bucket_is_created_private(compose: dict[str, Any]) -> None:
    entrypoint = compose["services"]["minio-init"]["entrypoint"]
    assert "mb --ignore-existing" in entrypoint
    assert "anonymous set none" in entrypoint
