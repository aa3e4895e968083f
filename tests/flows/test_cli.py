"""The `ldrt` command as a user runs it: a real process, configured by environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldrt_core import db

LDRT = [sys.executable, "-m", "flows.cli"]
REPO = Path(__file__).resolve().parents[2]


def run_ldrt(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `ldrt` with only the given LDRT_*/PREFECT_API_URL settings (nothing inherited)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LDRT_", "PREFECT_"))}
    clean["PYTHONPATH"] = str(REPO)
    clean["PREFECT_HOME"] = str(cwd / ".prefect")
    clean["COLUMNS"] = "200"
    clean.update(env or {})
    return subprocess.run(
        LDRT + args, cwd=cwd, env=clean, capture_output=True, text=True, timeout=timeout
    )


def doctor_json(
    cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, dict[str, dict[str, str]], str]:
    result = run_ldrt(["doctor", "--json"], cwd, env)
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    return result.returncode, checks, result.stdout + result.stderr


@pytest.mark.unit
def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_ldrt(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("doctor", "db"):
        assert command in result.stdout


@pytest.mark.unit
def test_doctor_on_embedded_defaults_passes_and_creates_nothing(tmp_path: Path) -> None:
    code, checks, output = doctor_json(tmp_path)
    assert code == 0, output
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert "not created yet" in checks["database"]["detail"]
    assert "no PREFECT_API_URL" in checks["prefect"]["detail"]
    assert "torch" in checks["compute"]["detail"]
    assert not (tmp_path / ".ldrt").exists()


@pytest.mark.unit
def test_doctor_says_which_engine_writes_the_markdown(tmp_path: Path) -> None:
    _, checks, _ = doctor_json(tmp_path)
    assert checks["markdown"]["status"] == "ok" and "PDFium" in checks["markdown"]["detail"]
    _, checks, _ = doctor_json(tmp_path, {"LDRT_MARKER_MODELS": str(tmp_path / "nowhere")})
    assert checks["markdown"]["status"] == "warn"
    assert "using PDFium" in checks["markdown"]["detail"]


@pytest.mark.unit
def test_doctor_prints_a_readable_table(tmp_path: Path) -> None:
    result = run_ldrt(["doctor"], tmp_path)
    assert result.returncode == 0
    assert "LDRT_STORE_URL" in result.stdout
    assert "database" in result.stdout and "store" in result.stdout


@pytest.mark.unit
def test_doctor_names_a_dead_store_and_fails_fast(tmp_path: Path) -> None:
    env = {
        "LDRT_STORE_URL": "s3://ldrt-artifacts",
        "LDRT_S3_ENDPOINT": "http://127.0.0.1:9",
        "LDRT_S3_ACCESS_KEY": "AKIA-visible-nowhere",
        "LDRT_S3_SECRET_KEY": "s3cr3t-visible-nowhere",
    }
    started = time.monotonic()
    code, checks, output = doctor_json(tmp_path, env)
    assert time.monotonic() - started < 60
    assert code == 1
    assert checks["store"]["status"] == "fail"
    assert "s3://ldrt-artifacts" in checks["store"]["detail"]
    assert "unreachable" in checks["store"]["detail"]
    assert "visible-nowhere" not in output
    table = run_ldrt(["doctor"], tmp_path, env)
    assert table.returncode == 1
    assert "FAIL" in table.stdout and "store" in table.stdout


@pytest.mark.unit
def test_doctor_names_a_dead_prefect_api(tmp_path: Path) -> None:
    code, checks, _ = doctor_json(tmp_path, {"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert code == 1
    assert checks["prefect"]["status"] == "fail"
    assert "127.0.0.1:9" in checks["prefect"]["detail"]


@pytest.mark.unit
def test_doctor_shows_bracketed_text_and_survives_a_page_that_is_not_prefect(
    tmp_path: Path,
) -> None:
    """Rich read "[gpu]" as markup and dropped it; a proxy's HTML at /health raised."""
    import http.server
    import importlib.util
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>Please sign in</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/api"
        result = run_ldrt(["doctor"], tmp_path, {"PREFECT_API_URL": api})
    finally:
        server.shutdown()
    assert "Traceback" not in result.stderr, result.stderr
    assert "/health answered b'<html>Please sign in" in result.stdout
    assert result.returncode == 0  # reachable but not healthy: a warning
    if importlib.util.find_spec("vllm") is None:  # as on CI: vLLM needs CUDA
        assert "vllm ([gpu] extra)" in result.stdout


@pytest.mark.unit
def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = run_ldrt(["doctor"], tmp_path, {"LDRT_S3_SECURE": "perhaps"})
    assert result.returncode == 2
    assert "LDRT_S3_SECURE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.unit
def test_an_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    for command in (["db", "upgrade", "bogus"], ["db", "downgrade", "bogus"]):
        result = run_ldrt(command, tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "cannot go to revision 'bogus'" in result.stderr
        assert "0001" in result.stderr  # the revisions there are


@pytest.mark.unit
def test_db_upgrade_then_doctor_reports_schema_at_head(tmp_path: Path) -> None:
    result = run_ldrt(["db", "upgrade"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert db.head_revision() in result.stdout
    code, checks, _ = doctor_json(tmp_path)
    assert code == 0
    assert "schema up to date" in checks["database"]["detail"]
    result = run_ldrt(["db", "downgrade", "base"], tmp_path)
    assert result.returncode == 0, result.stderr
    _, checks, _ = doctor_json(tmp_path)
    assert checks["database"]["status"] == "warn"
    assert "ldrt db upgrade" in checks["database"]["detail"]


@pytest.mark.integration
def test_doctor_against_live_services(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str], prefect_api_url: str
) -> None:
    env = {**s3_env, "LDRT_DB_URL": pg_url, "PREFECT_API_URL": prefect_api_url}
    code, checks, output = doctor_json(tmp_path, env)
    assert code == 0, output
    assert checks["database"]["status"] == "warn"  # empty database: not migrated yet
    assert checks["store"]["status"] == "ok"
    assert checks["prefect"]["status"] == "ok"
    assert "healthy" in checks["prefect"]["detail"]
    assert run_ldrt(["db", "upgrade"], tmp_path, env).returncode == 0
    code, checks, output = doctor_json(tmp_path, env)
    assert code == 0
    assert checks["database"]["status"] == "ok"
    assert "postgresql 15" in checks["database"]["detail"]
    assert "test-secret-key-do-not-print" not in output
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in output


@pytest.mark.integration
def test_doctor_names_a_dead_database(tmp_path: Path) -> None:
    code, checks, output = doctor_json(
        tmp_path, {"LDRT_DB_URL": "postgresql://ldrt:pw-hidden@127.0.0.1:9/ldrt"}
    )
    assert code == 1
    assert checks["database"]["status"] == "fail"
    assert "127.0.0.1:9" in checks["database"]["detail"]
    assert "pw-hidden" not in output
