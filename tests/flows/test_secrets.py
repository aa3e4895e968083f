"""No secret leaks: a pipeline run with known secret values set, one paper failing, and the S3
result storage block saved; then everything a user or an operator can read is scanned.

Input: the sample corpus (one PDF cut off), the S3 store on the loopback S3 server, known values
for every secret setting (S3 keys, Semantic Scholar key, LLM key), the Prefect API (CI's
server, else the test harness). Output scanned: the flow and task runs, their logs and
artifacts, the saved blocks as the API returns them, every object in the store, every file
under LDRT_HOME, and what the test process printed and logged.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from deployments.deploy import configure_result_storage
from flows.pipeline import pipeline
from ldrt_core.config import load_settings
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import open_store
from tests.flows.test_flows import TINY_PIPELINE, flow_run_id

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_no_secret_reaches_runs_logs_artifacts_blocks_store_or_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_env: dict[str, str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = {
        # The S3 access key is an identifier, not a secret: the result storage block keeps it
        # in the clear, as Prefect's AWS and MinIO credential blocks do.
        "LDRT_S3_SECRET_KEY": f"s3-secret-{uuid.uuid4().hex}",
        "LDRT_S2_API_KEY": f"s2-key-{uuid.uuid4().hex}",
        "LDRT_LLM_API_KEY": f"llm-key-{uuid.uuid4().hex}",
    }
    papers = write_sample_corpus(tmp_path / "papers", papers=4, seed=4)
    cut = papers[-1].pdf_path
    cut.write_bytes(cut.read_bytes()[:5000])  # one failure, so an error message is made too
    for name, value in {
        **s3_env,
        **secrets,
        "LDRT_HOME": str(tmp_path / "home"),
        "LDRT_DOWNLOAD_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    block_id = configure_result_storage(settings)
    try:
        state = pipeline(source=f"folder:{tmp_path / 'papers'}", **TINY_PIPELINE, return_state=True)
        assert state.is_failed() and "cut short" in str(state.message)
        run_ids = [flow_run_id(state)]
        with get_client(sync_client=True) as client:
            seen: list[Any] = [
                *client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
                ),
                *client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
                ),
                *client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids))
                ),
                *client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)
                    )
                ),
                client.read_block_document(block_id, include_secrets=False),
            ]
        texts = {f"api {type(o).__name__} {i}": o.model_dump_json() for i, o in enumerate(seen)}
        # The scan reads what matters: the failure's reason is among what it reads.
        assert any("cut short" in t for t in texts.values()), sorted(texts)
        # The report's link in the evaluate summary is presigned, with S3's longest expiry.
        assert any("X-Amz-Expires=604800" in t for t in texts.values())
        store = open_store(settings)
        texts |= {f"store {key}": store.get(key).decode("latin-1") for key in store.list("")}
        assert any(key.startswith("store reports/") for key in texts), sorted(texts)
        home = tmp_path / "home"
        texts |= {
            f"file {p}": p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file()
        }
        out, err = capfd.readouterr()
        texts |= {"stdout": out, "stderr": err, "log": caplog.text}
        leaks = sorted(
            f"{name} in {where}"
            for where, text in texts.items()
            for name, value in secrets.items()
            if value in text
        )
        assert not leaks, leaks
    finally:
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()
