"""Corpus refresh against the Semantic Scholar replay on loopback, with SQLite and a local store."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from ldrt_core import db
from ldrt_core.config import Settings, load_settings
from ldrt_core.db.models import Document, Paper, RefreshCursor
from ldrt_core.errors import SourceAuthError, SourceUnavailableError, StoreUnavailableError
from ldrt_core.fsck import check
from ldrt_core.refresh import RefreshSummary, discover, refresh
from ldrt_core.sources import open_source
from ldrt_core.sources.semantic_scholar import RateLimiter, paper_from_s2
from ldrt_core.store import ArtifactStore, open_store
from tests.support.s2_replay import Faults, ReplayPaper, S2Replay, make_papers, minimal_pdf

pytestmark = pytest.mark.unit


def fast_settings(tmp_path: Path, s2_url: str, **extra: str) -> Settings:
    return load_settings(
        {
            "LDRT_HOME": str(tmp_path / "home"),
            "LDRT_S2_API_URL": s2_url,
            "LDRT_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            "LDRT_S2_REQUESTS_PER_SECOND": "200",
            "LDRT_S2_BACKOFF_S": "0.02",
            "LDRT_S2_MAX_WAIT_S": "5",
            "LDRT_DOWNLOAD_READ_TIMEOUT_S": "1",
            **extra,
        }
    )


@dataclass
class Env:
    settings: Settings
    engine: Engine
    store: ArtifactStore

    def run(self, **kwargs: Any) -> RefreshSummary:
        source = open_source(self.settings, kwargs.pop("source", "s2"))
        try:
            return refresh(
                self.engine,
                self.store,
                source,
                kwargs.pop("query", self.settings.refresh_query),
                retries=2,
                backoff_s=0.01,
                **kwargs,
            )
        finally:
            source.close()

    def assert_consistent(self) -> None:
        """`ldrt fsck`: every stored PDF is whole and referenced, every row's key is stored."""
        report = check(self.engine, self.store)
        assert report.ok, report.problems

    def count(self, model: type[Any]) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)

    def papers(self) -> dict[str, Paper]:
        with db.session_scope(self.engine) as session:
            return {p.external_id: p for p in session.scalars(select(Paper))}


def make_env(tmp_path: Path, s2: S2Replay, **extra: str) -> Env:
    settings = fast_settings(tmp_path, s2.url, **extra)
    engine = db.connect(settings)
    db.upgrade(engine)
    return Env(settings, engine, open_store(settings))


@pytest.fixture
def corpus() -> list[ReplayPaper]:
    papers = make_papers(30, every_nth_no_pdf=10)  # 3 without an open PDF
    papers[5].pdf, papers[5].pdf_name = papers[4].pdf, papers[4].paper_id + ".pdf"  # same PDF twice
    return papers


def name(paper: ReplayPaper) -> str:
    return paper.pdf_name or paper.paper_id + ".pdf"


def test_first_run_stores_each_pdf_once_second_run_does_nothing(
    tmp_path: Path, corpus: list[ReplayPaper]
) -> None:
    faults = Faults(html_pdfs={name(corpus[7])}, truncated_pdfs={name(corpus[8])})
    with S2Replay(corpus, page_size=7, faults=faults) as s2:
        env = make_env(tmp_path, s2)
        first = env.run()
        assert (first.found, first.new, first.no_pdf) == (30, 30, 3)
        assert first.failed == 2
        assert first.downloaded == 25  # 30 - 3 without PDF - 2 failed
        assert first.already_stored == 1  # papers 4 and 5 share their bytes
        assert env.count(Document) == 24
        assert len(list(env.store.list("sha256/"))) == 24
        papers = env.papers()
        assert (
            papers[corpus[4].paper_id].document_sha256 == papers[corpus[5].paper_id].document_sha256
        )
        html, cut = papers[corpus[7].paper_id], papers[corpus[8].paper_id]
        assert html.download_status == "failed" and "HTML page" in (html.download_error or "")
        assert cut.download_status == "failed" and "broke off" in (cut.download_error or "")
        assert cut.download_attempts == 3  # first try + 2 retries
        assert {p.download_status for p in papers.values()} == {"ok", "no_pdf", "failed"}
        for paper in papers.values():
            if paper.download_status == "ok":
                sha = str(paper.document_sha256)
                assert env.store.get(f"sha256/{sha[:2]}/{sha}").startswith(b"%PDF-")

        pdf_requests = s2.pdf_hits()
        started = time.monotonic()
        second = env.run()
        assert (second.new, second.downloaded, second.failed) == (0, 0, 0)
        assert s2.pdf_hits() == pdf_requests  # not one download
        assert env.count(Paper) == 30 and env.count(Document) == 24
        assert time.monotonic() - started < 5
        env.assert_consistent()


def test_the_cursor_moves_and_the_next_search_overlaps(tmp_path: Path) -> None:
    papers = make_papers(10, start="2025-03-01")
    with S2Replay(papers) as s2:
        env = make_env(tmp_path, s2)
        assert env.run(overlap_days=3).since is None
        with db.session_scope(env.engine) as session:
            cursor = session.scalars(select(RefreshCursor)).one()
            assert cursor.last_publication_date == dt.date(2025, 3, 10)
        second = env.run(overlap_days=3)
        assert second.since == "2025-03-07"
        assert second.found == 4  # 7th to 10th March, all known
        assert second.new == 0
        s2.papers.append(
            ReplayPaper(
                "f" * 40, "A new LDRT trial", "2025-04-01", minimal_pdf("new"), doi="10.1/new"
            )
        )
        third = env.run(overlap_days=3)
        assert (third.new, third.downloaded) == (1, 1)


def test_api_faults_are_retried_without_duplicates(
    tmp_path: Path, corpus: list[ReplayPaper]
) -> None:
    faults = Faults(search_429=2, search_500=2, search_malformed=1)
    with S2Replay(corpus, page_size=10, faults=faults) as s2:
        env = make_env(tmp_path, s2)
        summary = env.run()
        assert summary.found == 30 and summary.new == 30
        assert s2.hits["search"] == 5 + 3  # five failures, then three pages
        assert env.count(Paper) == 30
        env.assert_consistent()


def test_download_faults_that_clear_up_are_retried(
    tmp_path: Path, corpus: list[ReplayPaper]
) -> None:
    faults = Faults(pdf_500_once={name(corpus[0])}, truncated_once={name(corpus[1])})
    with S2Replay(corpus, faults=faults) as s2:
        env = make_env(tmp_path, s2)
        summary = env.run()
        assert summary.failed == 0
        assert s2.hits[f"pdf:{name(corpus[0])}"] == 2
        assert s2.hits[f"pdf:{name(corpus[1])}"] == 2
        env.assert_consistent()


def test_a_slow_pdf_times_out_and_is_recorded(tmp_path: Path, corpus: list[ReplayPaper]) -> None:
    faults = Faults(slow_pdfs={name(corpus[0]): 3.0, name(corpus[1]): 0.2})
    with S2Replay(corpus[:3], faults=faults) as s2:
        env = make_env(tmp_path, s2)
        summary = env.run()
        assert [f["paper"] for f in summary.failures] == [corpus[0].paper_id]
        assert "ReadTimeout" in str(summary.failures[0]["error"])
        assert summary.downloaded == 2
        env.assert_consistent()


def test_a_429_storm_gives_up_within_the_wait_cap(
    tmp_path: Path, corpus: list[ReplayPaper]
) -> None:
    with S2Replay(corpus, faults=Faults(search_429_forever=True)) as s2:
        env = make_env(tmp_path, s2, LDRT_S2_MAX_WAIT_S="1")
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError, match="HTTP 429"):
            env.run()
        assert time.monotonic() - started < 10
        assert env.count(Paper) == 0
        env.assert_consistent()


def test_an_endless_token_is_stopped(tmp_path: Path, corpus: list[ReplayPaper]) -> None:
    with S2Replay(corpus[:5], page_size=5, faults=Faults(endless_token=True)) as s2:
        env = make_env(tmp_path, s2)
        with pytest.raises(SourceUnavailableError, match="pagination"):
            env.run()
        assert env.count(Paper) == 5  # what came before the broken page is kept, once
        env.assert_consistent()


def test_a_refused_key_says_which_variable(tmp_path: Path, corpus: list[ReplayPaper]) -> None:
    with S2Replay(corpus, faults=Faults(refuse_key=True)) as s2:
        env = make_env(tmp_path, s2, LDRT_S2_API_KEY="not-a-valid-key")
        with pytest.raises(SourceAuthError, match="LDRT_S2_API_KEY") as info:
            env.run()
        assert "not-a-valid-key" not in str(info.value)


def test_query_reaches_the_api_intact(tmp_path: Path, corpus: list[ReplayPaper]) -> None:
    query = '"low-dose radiation" + (osteoarthritis | pneumonia) & -mice'
    with S2Replay(corpus[:2]) as s2:
        make_env(tmp_path, s2).run(query=query)
        assert s2.queries == [query]


def test_max_papers_stops_early(tmp_path: Path, corpus: list[ReplayPaper]) -> None:
    with S2Replay(corpus, page_size=4) as s2:
        summary = make_env(tmp_path, s2).run(max_papers=6)
        assert summary.found == 6
        assert s2.hits["search"] == 2


def test_max_papers_counts_new_papers_so_the_cursor_moves_on(tmp_path: Path) -> None:
    """Each run searches again from 90 days before its cursor: the papers it saw last time
    must not use up --max-papers, or every run would find the same two."""
    with S2Replay(make_papers(5, start="2024-01-01")) as s2:
        env = make_env(tmp_path, s2)
        runs = [env.run(max_papers=2) for _ in range(4)]
    assert [r.new for r in runs] == [2, 2, 1, 0]
    assert [r.found for r in runs] == [2, 4, 5, 5]
    assert env.count(Paper) == 5


def test_same_doi_from_another_source_is_one_paper(tmp_path: Path) -> None:
    pdf = minimal_pdf("shared")
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "mine.pdf").write_bytes(pdf)
    (folder / "metadata.jsonl").write_text(
        json.dumps({"pdf": "mine.pdf", "title": "Our copy", "doi": "https://doi.org/10.1/ABC"})
        + "\n"
    )
    s2_paper = ReplayPaper("a" * 40, "LDRT and knees", "2024-05-01", pdf, doi="10.1/abc")
    with S2Replay([s2_paper]) as s2:
        env = make_env(tmp_path, s2)
        from_folder = env.run(source=f"folder:{folder}")
        from_s2 = env.run()
        assert (from_folder.new, from_s2.new) == (1, 0)
        assert env.count(Paper) == 1 and env.count(Document) == 1
        assert s2.pdf_hits() == 0  # the PDF was already there


def test_retry_failed_reaches_papers_outside_the_search_window(tmp_path: Path) -> None:
    papers = make_papers(10, start="2025-03-01")
    faults = Faults(html_pdfs={name(papers[0])})  # published 1 March
    with S2Replay(papers, faults=faults) as s2:
        env = make_env(tmp_path, s2)
        assert env.run(overlap_days=3).failed == 1
        s2.faults = Faults()  # the publisher fixed it
        again = env.run(overlap_days=3)  # searches from 7 March: the paper is not found again
        assert (again.found, again.downloaded) == (4, 0)
        retried = env.run(overlap_days=3, retry_failed=True)
        assert (retried.found, retried.downloaded, retried.failed) == (4, 1, 0)
        assert env.papers()[papers[0].paper_id].download_status == "ok"


def test_a_store_outage_leaves_the_paper_pending_for_the_next_refresh(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "p0.pdf").write_bytes(minimal_pdf("paper 0"))
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    down = StoreUnavailableError("cannot write: unreachable; is the S3 server up?")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "put_content_info", lambda *a, **k: (_ for _ in ()).throw(down))
        first = Env(settings, engine, store).run(source=f"folder:{folder}")
    assert first.failed == 1 and "unreachable" in str(first.failures[0]["error"])
    [paper] = Env(settings, engine, store).papers().values()
    assert paper.download_status == "pending" and "unreachable" in (paper.download_error or "")
    again = Env(settings, engine, store).run(source=f"folder:{folder}")  # no --retry-failed
    assert (again.downloaded, again.failed) == (1, 0)
    Env(settings, engine, store).assert_consistent()


def test_folder_source_refresh_twice(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.pdf").write_bytes(minimal_pdf(f"paper {i}"))
    (folder / "notes.pdf").write_bytes(b"<html>not a pdf</html>")
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    env = Env(settings, engine, open_store(settings))
    first = env.run(source=f"folder:{folder}")
    assert (first.found, first.downloaded, first.failed) == (4, 3, 1)
    assert "no %PDF- header" in str(first.failures[0]["error"])
    second = env.run(source=f"folder:{folder}")
    assert (second.new, second.downloaded, second.failed) == (0, 0, 0)


def test_unreadable_items_and_malformed_links_do_not_stop_a_refresh(tmp_path: Path) -> None:
    papers = make_papers(4)
    papers[1].pdf_url = "https://example.org:99999/paper.pdf"  # a port out of range
    odd = [
        None,
        "a string",
        [],
        {"paperId": "B", "title": "a month, not a date", "publicationDate": "2024-01"},
        {"paperId": "C", "title": "a null author", "authors": [None]},
    ]
    with S2Replay(papers, faults=Faults(odd_items=odd)) as s2:
        env = make_env(tmp_path, s2)
        source = open_source(env.settings, "s2")
        try:
            summary = refresh(env.engine, env.store, source, "q", retries=0)
            assert source.skipped == 5  # type: ignore[attr-defined]
        finally:
            source.close()
    assert (summary.found, summary.downloaded, summary.failed) == (4, 3, 1)
    failed = env.papers()[papers[1].paper_id]
    assert failed.download_status == "failed"
    assert "malformed URL" in (failed.download_error or "")
    assert "Port out of range" in (failed.download_error or "")


def test_folder_source_skips_folders_and_records_a_vanished_pdf(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "old.pdf").mkdir()  # a folder with a PDF's name is no paper
    for i in range(3):
        (folder / f"p{i}.pdf").write_bytes(minimal_pdf(f"paper {i}"))
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    env = Env(settings, engine, open_store(settings))
    source = open_source(settings, f"folder:{folder}")
    found = list(source.search("q", None))
    assert sorted(r.external_id for r in found) == ["folder:p0", "folder:p1", "folder:p2"]
    (folder / "p1.pdf").unlink()  # gone between the search and the download
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(source, "search", lambda *_: iter(found))
        summary = refresh(engine, env.store, source, "q", retries=0)
    assert (summary.found, summary.downloaded, summary.failed) == (3, 2, 1)
    gone = env.papers()["folder:p1"]
    assert gone.download_status == "failed" and "cannot read" in (gone.download_error or "")
    assert "No such file" in (gone.download_error or "")
    env.assert_consistent()


def test_a_folder_leaves_another_folders_papers_alone(tmp_path: Path) -> None:
    """A refresh of folder A stopped before its downloads; refreshing folder B must not try
    (and fail) A's paper, which stays pending for A's next refresh."""
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    env = Env(settings, engine, open_store(settings))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"only-in-{name}.pdf").write_bytes(minimal_pdf(f"paper {name}"))
    discover(engine, open_source(settings, f"folder:{tmp_path / 'a'}"), "q")
    for _ in range(2):
        b = env.run(source=f"folder:{tmp_path / 'b'}")
        assert b.failed == 0 and b.failures == []
    assert env.papers()["folder:only-in-a"].download_status == "pending"
    a = env.run(source=f"folder:{tmp_path / 'a'}")
    assert (a.downloaded, a.failed) == (1, 0)


def test_an_unexpected_error_is_recorded_and_the_other_downloads_finish(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.pdf").write_bytes(minimal_pdf(f"paper {i}"))
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    put = store.put_content_info

    def flaky(stream: Any, **kwargs: Any) -> Any:
        data = stream.read()
        if data == minimal_pdf("paper 1"):
            raise RuntimeError("a bug of ours")
        return put(io.BytesIO(data), **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "put_content_info", flaky)
        first = Env(settings, engine, store).run(source=f"folder:{folder}")
    assert (first.downloaded, first.failed) == (2, 1)
    assert "a bug of ours" in str(first.failures[0]["error"])
    paper = Env(settings, engine, store).papers()["folder:p1"]
    assert paper.download_status == "pending"  # not the paper's fault: the next run tries again
    assert paper.download_error == "RuntimeError: a bug of ours"
    again = Env(settings, engine, store).run(source=f"folder:{folder}")
    assert (again.downloaded, again.failed) == (1, 0)


def test_malformed_items_are_skipped() -> None:
    assert paper_from_s2({"title": "no id"}) is None
    assert paper_from_s2({"paperId": "x", "title": "  "}) is None
    assert paper_from_s2({"paperId": "x", "title": "t", "publicationDate": "not a date"}) is None
    record = paper_from_s2(
        {
            "paperId": "x",
            "title": "t",
            "externalIds": {"DOI": "10.1/ABC"},
            "authors": [{"name": "A"}, {"authorId": "2"}],
            "openAccessPdf": {"url": ""},
        }
    )
    assert record is not None
    assert (record.doi, record.authors, record.pdf_url) == ("10.1/abc", ["A"], None)


def test_rate_limiter_spaces_calls() -> None:
    limiter = RateLimiter(rate=4.0)
    waits = [limiter.reserve() for _ in range(4)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.25, 0.5, 0.75], abs=0.02)
