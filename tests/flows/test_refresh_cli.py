"""`ldrt refresh` as a user runs it, on PostgreSQL and an S3 server, against the S2 replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.flows.test_cli import run_ldrt
from tests.support.s2_replay import Faults, S2Replay, make_papers


@pytest.mark.integration
def test_refresh_twice_against_postgres_and_s3(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str]
) -> None:
    papers = make_papers(40, every_nth_no_pdf=8)  # 5 without an open PDF
    papers[11].pdf, papers[11].pdf_name = papers[10].pdf, papers[10].paper_id + ".pdf"
    bad_html, bad_cut = papers[2].paper_id + ".pdf", papers[3].paper_id + ".pdf"
    faults = Faults(search_429=1, search_500=1, html_pdfs={bad_html}, truncated_pdfs={bad_cut})
    with S2Replay(papers, page_size=15, faults=faults) as s2:
        env = {
            **s3_env,
            "LDRT_DB_URL": pg_url,
            "LDRT_S2_API_URL": s2.url,
            "LDRT_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            "LDRT_S2_REQUESTS_PER_SECOND": "50",
            "LDRT_S2_BACKOFF_S": "0.05",
            "LDRT_DOWNLOAD_BACKOFF_S": "0.05",
        }
        first = run_ldrt(["refresh", "--json"], tmp_path, env)
        assert first.returncode == 1, first.stderr  # two downloads failed, as the flow run does
        summary = json.loads(first.stdout)
        assert {k: summary[k] for k in ("found", "new", "downloaded", "failed", "no_pdf")} == {
            "found": 40,
            "new": 40,
            "downloaded": 33,
            "failed": 2,
            "no_pdf": 5,
        }
        assert summary["already_stored"] == 1
        pdf_hits = s2.pdf_hits()

        second = run_ldrt(["refresh", "--json"], tmp_path, env)
        assert second.returncode == 0, second.stderr
        again = json.loads(second.stdout)
        assert (again["new"], again["downloaded"], again["failed"], again["no_pdf"]) == (0, 0, 0, 0)
        assert s2.pdf_hits() == pdf_hits

        human = run_ldrt(["refresh"], tmp_path, env)
        assert human.returncode == 0 and "0 new" in human.stdout

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = dict(
            conn.execute(text("SELECT download_status, count(*) FROM papers GROUP BY 1")).all()
        )
        assert rows == {"ok": 33, "failed": 2, "no_pdf": 5}
        documents = conn.execute(text("SELECT store_key, size FROM documents")).all()
        errors = conn.execute(
            text("SELECT external_id, download_error FROM papers WHERE download_status = 'failed'")
        ).all()
    engine.dispose()
    assert len(documents) == 32
    reasons = {paper_id: error for paper_id, error in errors}
    assert "HTML page" in reasons[papers[2].paper_id]
    assert "broke off" in reasons[papers[3].paper_id]

    from ldrt_core.config import load_settings
    from ldrt_core.store import open_store

    store = open_store(load_settings(s3_env))
    keys = list(store.list("sha256/"))
    assert sorted(keys) == sorted(key for key, _ in documents)
    assert all(store.stat(key).size == size for key, size in documents)


@pytest.mark.unit
def test_refresh_reports_a_dead_api_in_one_line(tmp_path: Path) -> None:
    env = {
        "LDRT_S2_API_URL": "http://127.0.0.1:9",
        "LDRT_S2_MAX_WAIT_S": "0.5",
        "LDRT_S2_BACKOFF_S": "0.1",
    }
    result = run_ldrt(["refresh", "--json"], tmp_path, env)
    assert result.returncode == 2
    assert "Semantic Scholar kept failing" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.unit
def test_sample_corpus_feeds_a_folder_refresh(tmp_path: Path) -> None:
    made = run_ldrt(["sample-corpus", "papers", "--papers", "3", "--seed", "7"], tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "papers"
    assert len(list(folder.glob("*.pdf"))) == 3 and len(list(folder.glob("*.json"))) == 3
    metadata = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    result = run_ldrt(["refresh", "--source", f"folder:{folder}", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["found"], summary["downloaded"], summary["failed"]) == (3, 3, 0)
    engine = create_engine(f"sqlite:///{tmp_path / '.ldrt' / 'ldrt.db'}")
    with engine.connect() as conn:
        titles = set(conn.execute(text("SELECT title FROM papers")).scalars())
        dois = set(conn.execute(text("SELECT doi FROM papers")).scalars())
    assert titles == {m["title"] for m in metadata}
    assert dois == {m["doi"].lower() for m in metadata}
