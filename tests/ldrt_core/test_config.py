from __future__ import annotations

from pathlib import Path

import pytest

from ldrt_core.config import load_settings
from ldrt_core.errors import ConfigError

pytestmark = pytest.mark.unit


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    settings = load_settings({"LDRT_HOME": str(tmp_path / "h")})
    assert settings.db_url == f"sqlite:///{tmp_path / 'h' / 'ldrt.db'}"
    assert settings.store_url == (tmp_path / "h" / "store").as_uri()
    assert not settings.store_is_s3


def test_default_home_is_dot_ldrt() -> None:
    settings = load_settings({})
    assert settings.home == Path(".ldrt")
    assert settings.db_url == "sqlite:///.ldrt/ldrt.db"


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDRT_STORE_URL", "s3://bucket-one/runs")
    monkeypatch.setenv("LDRT_S3_ENDPOINT", "minio:9000")
    settings = load_settings()
    assert settings.store_is_s3
    assert settings.s3_host == "minio:9000"


def test_plain_postgres_url_uses_psycopg3() -> None:
    settings = load_settings({"LDRT_DB_URL": "postgresql://u:p@db:5432/ldrt"})
    assert settings.db_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("endpoint", "secure", "host"),
    [
        ("http://127.0.0.1:9000", False, "127.0.0.1:9000"),
        ("https://s3.example.org", True, "s3.example.org"),
        ("minio:9000", True, "minio:9000"),
    ],
)
def test_s3_secure_follows_the_endpoint_scheme(endpoint: str, secure: bool, host: str) -> None:
    settings = load_settings({"LDRT_S3_ENDPOINT": endpoint})
    assert settings.s3_secure is secure
    assert settings.s3_host == host


def test_explicit_s3_secure_wins() -> None:
    assert (
        load_settings({"LDRT_S3_ENDPOINT": "minio:9000", "LDRT_S3_SECURE": "false"}).s3_secure
        is False
    )


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({"LDRT_S3_SECURE": "maybe"}, "LDRT_S3_SECURE", "true or false"),
        ({"LDRT_STORE_URL": "ftp://x/y"}, "LDRT_STORE_URL", "file:// or s3://"),
        ({"LDRT_STORE_URL": "s3://Bad_Bucket"}, "LDRT_STORE_URL", "valid bucket name"),
        ({"LDRT_DB_URL": "not a url"}, "LDRT_DB_URL", "SQLAlchemy database URL"),
        ({"LDRT_DB_URL": "mysql://u@h/db"}, "LDRT_DB_URL", "postgresql:// or sqlite://"),
        ({"LDRT_S3_ENDPOINT": "http://h:9000/path"}, "LDRT_S3_ENDPOINT", "no path"),
        ({"LDRT_S3_ENDPOINT": "h:port"}, "LDRT_S3_ENDPOINT", "numeric port"),
        ({"LDRT_S3_ENDPOINT": "ftp://h"}, "LDRT_S3_ENDPOINT", "host[:port]"),
        ({"LDRT_S3_PUBLIC_ENDPOINT": "localhost:90o0"}, "LDRT_S3_PUBLIC_ENDPOINT", "numeric port"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_expects(
    env: dict[str, str], variable: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert variable in message
    assert expected in message


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"LDRT_S3_SECURE": "maybe", "LDRT_STORE_URL": "ftp://x"})
    assert "LDRT_S3_SECURE" in str(info.value)
    assert "LDRT_STORE_URL" in str(info.value)


def test_errors_never_repeat_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "LDRT_STORE_URL": "s3://AKIAXX:hunter2secret@Bad_Bucket",
                "LDRT_S3_ENDPOINT": "http://user:pa55word@h:9000/path",
            }
        )
    assert "hunter2secret" not in str(info.value)
    assert "pa55word" not in str(info.value)


def test_redacted_masks_secrets_and_database_password() -> None:
    settings = load_settings(
        {
            "LDRT_DB_URL": "postgresql://ldrt:db-pass-123@db/ldrt",
            "LDRT_S3_ACCESS_KEY": "access-123",
            "LDRT_S3_SECRET_KEY": "secret-456",
        }
    )
    shown = settings.redacted()
    text = repr(shown) + repr(settings)
    for secret in ("db-pass-123", "access-123", "secret-456"):
        assert secret not in text
    assert shown["LDRT_S3_SECRET_KEY"] == "********"
    assert "***" in shown["LDRT_DB_URL"]
    assert settings.scrub("x secret-456 y db-pass-123") == "x ******** y ********"
