"""Over two hundred damaged and hostile PDFs through the `extract` flow.

Input: `tests.support.bad_pdfs.mutated_pdfs`, 230 cases and over 200 distinct PDFs (truncated,
bit-flipped, overwritten, xref destroyed, absurd numbers, cut ranges) and its special cases
(encrypted, thousands of pages, 2,000 nested forms, image bombs, scans, garbage), each stored as
a document under an embedded LDRT_HOME, with a 10 s and 512 MB limit per PDF; the Prefect API
(CI's server, else the test harness). Output: the flow run's state, one task run per document,
each document's row (done, or failed with a typed reason), the time each task took, and
`fsck` on what was stored.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
)
from sqlalchemy import select

from flows.stages import ItemsFailed, extract_flow
from ldrt_core import db, errors
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document
from ldrt_core.fsck import check
from ldrt_core.store import open_store
from tests.flows.test_flows import flow_run_id
from tests.support import bad_pdfs
from tests.support.corpus import store_documents

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

TIMEOUT_S = 10
PAGE = 200  # the server's most rows a read
TYPED = re.compile(r"^(\w+Error): \S")


def extract_runs(run_id: UUID, expected: int, wait_s: float = 60) -> list[Any]:
    """The flow run's finished extract task runs, once the server has recorded them all (task
    run states reach it as events, a little after the flow run ends), page by page."""
    deadline = time.monotonic() + wait_s
    while True:
        runs: list[Any] = []
        with get_client(sync_client=True) as client:
            while page := client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="extract-")),
                offset=len(runs),
                limit=PAGE,
            ):
                runs += page
        done = [r for r in runs if r.state is not None and r.state.is_final()]
        if len(done) >= expected or time.monotonic() > deadline:
            return done
        time.sleep(1)


@pytest.mark.timeout(600)
def test_two_hundred_hostile_pdfs_each_end_done_or_failed_with_a_typed_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LDRT_HOME": str(tmp_path / "home"),
        "LDRT_EXTRACT_TIMEOUT_S": str(TIMEOUT_S),
        "LDRT_EXTRACT_MEMORY_MB": "512",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    cases = bad_pdfs.mutated_pdfs(seed=1, count=230)
    expected = {name: error for name, _, error in bad_pdfs.special_cases()}
    shas = store_documents(engine, store, [pdf for _, pdf in cases])
    names: dict[str, str] = {}  # sha256 -> case name (the first, where bytes repeat)
    for sha, (name, _) in zip(shas, cases, strict=True):
        names.setdefault(sha, name)

    assert len(names) >= 200  # distinct PDFs (a few mutations land on the same bytes)

    state = extract_flow(return_state=True)

    assert state.is_failed()  # some of them are refused, and the flow says so
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ItemsFailed)
    with db.session_scope(engine) as session:
        documents = {d.sha256: d for d in session.scalars(select(Document))}
    statuses = Counter(d.extract_status for d in documents.values())
    assert set(statuses) == {"ok", "failed"} and sum(statuses.values()) == len(names)
    assert statuses["failed"] == len(error.failures)
    kinds = Counter()
    for sha, document in documents.items():
        if document.extract_status == "failed":
            typed = TYPED.match(document.extract_error or "")
            assert typed, (names[sha], document.extract_error)
            assert issubclass(getattr(errors, typed.group(1)), errors.ExtractionError)
            kinds[typed.group(1)] += 1
        else:
            assert document.markdown_key and document.extraction_key and document.pages
    for sha, name in names.items():
        if name.startswith("special-") and expected.get(name.removeprefix("special-")):
            want = expected[name.removeprefix("special-")]
            assert want is not None
            assert (documents[sha].extract_error or "").startswith(want.__name__), name

    runs = extract_runs(flow_run_id(state), len(names))
    assert len(runs) == len(names)
    assert Counter(r.state.type.value for r in runs) == {
        "COMPLETED": statuses["ok"],
        "FAILED": statuses["failed"],
    }
    slowest = max(r.total_run_time.total_seconds() for r in runs)
    assert slowest < TIMEOUT_S + 5, slowest  # the limit stops a PDF; nothing runs on past it
    print(f"{len(names)} PDFs: {dict(statuses)}; failures {dict(kinds)}; slowest {slowest:.1f} s")
    assert check(engine, store).ok
