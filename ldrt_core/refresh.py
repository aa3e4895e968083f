"""Corpus refresh: find papers new since the last run, and store each PDF exactly once.

Input: a `PaperSource`, a query, the lineage database and the artifact store.
Output: `papers` rows (deduplicated on the source id and on DOI), `documents` rows (one per PDF
sha256) with the bytes under `sha256/...` in the store, the refresh cursor moved on, and a
`RefreshSummary`. Each paper's download ends `ok`, `no_pdf` or `failed` with its reason.

Two steps, so an orchestrator can run the second per paper: `discover` (search, upsert, move the
cursor; returns the ids that need a PDF) and `download_paper` (one paper; never raises for a bad
PDF, only records it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ldrt_core.db import session_scope
from ldrt_core.db.models import Document, Paper, RefreshCursor
from ldrt_core.errors import DownloadError, LdrtError
from ldrt_core.papers import PaperRecord
from ldrt_core.sources.base import PaperSource
from ldrt_core.store import ArtifactStore

COMMIT_EVERY = 500  # papers per discovery transaction
Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Discovery:
    source: str
    query: str
    since: dt.date | None
    found: int = 0
    new: int = 0
    no_pdf: int = 0
    to_download: list[int] = field(default_factory=list)  # paper row ids


@dataclass(frozen=True)
class DownloadOutcome:
    paper_id: int
    external_id: str
    status: str  # ok | failed
    sha256: str | None = None
    error: str | None = None
    stored: bool = False  # False when the bytes were already in the store


@dataclass
class RefreshSummary:
    source: str
    query: str
    since: str | None
    found: int
    new: int
    downloaded: int
    failed: int
    no_pdf: int
    already_stored: int
    seconds: float
    failures: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cursor_key(source: PaperSource, query: str) -> str:
    return f"{source.name}:{hashlib.sha256(query.encode()).hexdigest()[:16]}"[:256]


def discover(
    engine: Engine,
    source: PaperSource,
    query: str,
    *,
    since: dt.date | None = None,
    max_papers: int | None = None,
    overlap_days: int = 90,
    retry_failed: bool = False,
    flow_run_id: str | None = None,
) -> Discovery:
    """Search from the cursor (minus the overlap) or `since`, upsert what comes back."""
    key = cursor_key(source, query)
    with session_scope(engine) as session:
        cursor = session.get(RefreshCursor, key)
        last = cursor.last_publication_date if cursor else None
    start = since or (last - dt.timedelta(days=overlap_days) if last else None)
    found = Discovery(source=source.name, query=query, since=start)
    newest = last
    records = iter(source.search(query, start))
    failure: LdrtError | None = None
    while failure is None:
        # max_papers counts new papers: those the last run saw again in the overlap do not use
        # it up, or a window holding more than max_papers known ones would stall the cursor.
        room = COMMIT_EVERY if max_papers is None else min(COMMIT_EVERY, max_papers - found.new)
        batch, failure = _take(records, room)
        if not batch:
            break
        with session_scope(engine) as session:
            for record in batch:
                paper, created = _upsert(session, record, flow_run_id)
                found.found += 1
                found.new += created
                if paper.download_status == "no_pdf":
                    found.no_pdf += created
                elif paper.download_status == "pending" or (
                    retry_failed and paper.download_status == "failed"
                ):
                    session.flush()
                    found.to_download.append(paper.id)
                if record.publication_date and (newest is None or record.publication_date > newest):
                    newest = record.publication_date
        if max_papers is not None and found.new >= max_papers:
            break
    if failure is not None:  # what came before the failure is stored; the cursor stays put
        raise failure
    found.to_download.extend(_left_behind(engine, source, retry_failed, set(found.to_download)))
    with session_scope(engine) as session:
        cursor = session.get(RefreshCursor, key) or RefreshCursor(source=key, query=query)
        cursor.last_publication_date = newest
        cursor.last_run_at = dt.datetime.now(dt.UTC)
        cursor.flow_run_id = flow_run_id
        session.add(cursor)
    return found


def _left_behind(
    engine: Engine, source: PaperSource, retry_failed: bool, queued: set[int]
) -> list[int]:
    """Papers of this kind of source still to download that the search window no longer
    reaches: pending ones (a run stopped before their download) and, with `retry_failed`,
    failed ones, however old."""
    statuses = ["pending", "failed"] if retry_failed else ["pending"]
    with session_scope(engine) as session:
        rows = session.execute(
            select(Paper.id, Paper.pdf_url)
            .where(
                Paper.source == source.name.partition(":")[0],
                Paper.download_status.in_(statuses),
            )
            .order_by(Paper.id)
        )
        return [i for i, url in rows if i not in queued and source.holds(url)]


def _take(records: Iterator[PaperRecord], n: int) -> tuple[list[PaperRecord], LdrtError | None]:
    """Up to n records, and the error that stopped the source early, if one did."""
    batch: list[PaperRecord] = []
    try:
        while len(batch) < n and (record := next(records, None)) is not None:
            batch.append(record)
    except LdrtError as exc:
        return batch, exc
    return batch, None


def _upsert(session: Session, record: PaperRecord, flow_run_id: str | None) -> tuple[Paper, bool]:
    """The paper's row, created or refreshed; dedupe on the source's id, then on DOI."""
    paper = session.scalar(select(Paper).where(Paper.external_id == record.external_id))
    if paper is None and record.doi:
        paper = session.scalar(select(Paper).where(Paper.doi == record.doi))
    values = record.row_values()
    if paper is None:
        status = "pending" if record.pdf_url else "no_pdf"
        paper = Paper(**values, download_status=status, flow_run_id=flow_run_id)
        session.add(paper)
        return paper, True
    for name in ("title", "abstract", "year", "publication_date", "venue", "authors"):
        if values[name] and getattr(paper, name) != values[name]:
            setattr(paper, name, values[name])
    if record.doi and paper.doi is None:
        taken = session.scalar(select(Paper.id).where(Paper.doi == record.doi))
        if taken is None:
            paper.doi = record.doi
    if record.pdf_url and paper.download_status in ("no_pdf", "failed"):
        paper.pdf_url = record.pdf_url  # a new link is worth a new try
        if paper.download_status == "no_pdf":
            paper.download_status = "pending"
    return paper, False


def download_paper(
    engine: Engine,
    store: ArtifactStore,
    source: PaperSource,
    paper_id: int,
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    flow_run_id: str | None = None,
) -> DownloadOutcome:
    """Fetch one paper's PDF into the store and record the outcome on its row.

    A bad PDF (refused URL, not a PDF, too large, still failing after `retries`) is recorded as
    `failed` with its reason and returned, not raised. Errors of our own side (the store or the
    database down) are raised, so the run fails visibly; the paper stays `pending` with the
    reason noted (when the database can take it), so the next refresh fetches it again.
    """
    with session_scope(engine) as session:
        paper = session.get(Paper, paper_id)
        if paper is None:
            raise LdrtError(f"no paper with id {paper_id}")
        if paper.download_status == "ok":
            return DownloadOutcome(paper_id, paper.external_id, "ok", paper.document_sha256)
        record = PaperRecord(
            source=paper.source,
            external_id=paper.external_id,
            title=paper.title,
            pdf_url=paper.pdf_url,
        )
    attempt, delay = 0, backoff_s
    while True:
        attempt += 1
        try:
            with source.open_pdf(record) as stream:
                info = store.put_content_info(stream, content_type="application/pdf")
            break
        except DownloadError as exc:
            if exc.transient and attempt <= retries:
                time.sleep(delay)
                delay *= 2
                continue
            _record_failure(engine, paper_id, str(exc), attempt, flow_run_id)
            return DownloadOutcome(paper_id, record.external_id, "failed", error=str(exc))
        except Exception as exc:  # ours (store, database) or a bug: the paper is not at fault
            with contextlib.suppress(Exception):  # the database may be what is down
                _record_failure(
                    engine,
                    paper_id,
                    f"{type(exc).__name__}: {exc}",
                    attempt,
                    flow_run_id,
                    status="pending",
                )
            raise
    with session_scope(engine) as session:
        created = _insert_ignore(
            session,
            Document,
            {
                "sha256": info.sha256,
                "store_key": info.key,
                "size": info.size,
                "flow_run_id": flow_run_id,
            },
        )
        paper = session.get(Paper, paper_id)
        assert paper is not None
        paper.download_status = "ok"
        paper.download_error = None
        paper.document_sha256 = info.sha256
        paper.download_attempts += attempt
        paper.flow_run_id = flow_run_id or paper.flow_run_id
    return DownloadOutcome(paper_id, record.external_id, "ok", info.sha256, stored=created)


def _record_failure(
    engine: Engine,
    paper_id: int,
    reason: str,
    attempts: int,
    flow_run_id: str | None,
    status: str = "failed",
) -> None:
    with session_scope(engine) as session:
        paper = session.get(Paper, paper_id)
        if paper is not None:
            paper.download_status = status
            paper.download_error = reason[:2000]
            paper.download_attempts += attempts
            paper.flow_run_id = flow_run_id or paper.flow_run_id


def _insert_ignore(session: Session, model: type[Document], values: dict[str, Any]) -> bool:
    """INSERT unless the primary key exists (two papers with one PDF, downloaded at once)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(model).values(**values).on_conflict_do_nothing()
    # RETURNING gives a row only when one was inserted; rowcount is not reliable across drivers.
    return session.execute(statement.returning(model.sha256)).first() is not None


def refresh(
    engine: Engine,
    store: ArtifactStore,
    source: PaperSource,
    query: str,
    *,
    since: dt.date | None = None,
    max_papers: int | None = None,
    overlap_days: int = 90,
    retry_failed: bool = False,
    workers: int = 4,
    retries: int = 3,
    backoff_s: float = 1.0,
    flow_run_id: str | None = None,
    progress: Progress | None = None,
) -> RefreshSummary:
    """discover, then download every paper that needs its PDF, `workers` at a time."""
    started = time.monotonic()
    found = discover(
        engine,
        source,
        query,
        since=since,
        max_papers=max_papers,
        overlap_days=overlap_days,
        retry_failed=retry_failed,
        flow_run_id=flow_run_id,
    )
    outcomes: list[DownloadOutcome] = []
    errors: list[BaseException] = []
    if found.to_download:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ldrt-download") as pool:
            futures = [
                pool.submit(
                    download_paper,
                    engine,
                    store,
                    source,
                    paper_id,
                    retries=retries,
                    backoff_s=backoff_s,
                    flow_run_id=flow_run_id,
                )
                for paper_id in found.to_download
            ]
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    outcomes.append(future.result())
                except Exception as exc:  # recorded on the paper by download_paper
                    errors.append(exc)
                if progress:
                    progress(done, len(futures))
    failures = [
        {"paper": o.external_id, "error": o.error} for o in outcomes if o.status == "failed"
    ]
    failures += [{"paper": None, "error": str(e)} for e in errors]
    ok = [o for o in outcomes if o.status == "ok"]
    return RefreshSummary(
        source=found.source,
        query=found.query,
        since=found.since.isoformat() if found.since else None,
        found=found.found,
        new=found.new,
        downloaded=len(ok),
        failed=len(failures),
        no_pdf=found.no_pdf,
        already_stored=sum(not o.stored for o in ok),
        seconds=round(time.monotonic() - started, 3),
        failures=failures,
    )
