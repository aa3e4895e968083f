"""Corpus refresh throughput over replayed Semantic Scholar papers.

    python bench/refresh.py [--papers 1000] [--workers 4] [--db-url URL]
                            [--s3 ENDPOINT [--access-key K --secret-key S]]

Serves N papers (small PDFs) from the loopback replay of the S2 API, runs a full refresh, then a
second one that finds nothing new. Prints papers/s of the first and the wall time of the no-op
(started once the API's rate limit, LDRT_S2_REQUESTS_PER_SECOND, would let a request through, so
it times ldrt, not the wait). Default: SQLite and a local store in a temp folder; --db-url
(an empty database) / --s3 point at PostgreSQL / S3 (a scratch bucket, removed at the end).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text

from ldrt_core import db
from ldrt_core.config import Settings, load_settings
from ldrt_core.refresh import refresh
from ldrt_core.sources import open_source
from ldrt_core.store import open_store
from tests.support.s2_replay import S2Replay, make_papers
from tests.support.s3_bucket import remove_bucket


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--db-url", help="lineage database (default: SQLite in a temp folder)")
    parser.add_argument("--s3", help="S3 endpoint URL (default: a local folder store)")
    parser.add_argument("--access-key", default="bench")
    parser.add_argument("--secret-key", default="bench-secret")
    args = parser.parse_args()

    papers = make_papers(args.papers, start="2020-01-01")
    with tempfile.TemporaryDirectory() as home, S2Replay(papers, page_size=1000) as s2:
        env = {
            "LDRT_HOME": home,
            "LDRT_S2_API_URL": s2.url,
            "LDRT_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
        }
        if args.db_url:
            env["LDRT_DB_URL"] = args.db_url
        if args.s3:
            env |= {
                "LDRT_STORE_URL": f"s3://ldrt-bench-{uuid.uuid4().hex[:8]}",
                "LDRT_S3_ENDPOINT": args.s3,
                "LDRT_S3_ACCESS_KEY": args.access_key,
                "LDRT_S3_SECRET_KEY": args.secret_key,
                "LDRT_S3_REGION": "us-east-1",
            }
        settings = load_settings(env)
        engine = db.connect(settings)
        db.upgrade(engine)
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM papers")).scalar():
                sys.exit(f"{args.db_url} holds papers already: give an empty database")
        try:
            run(args, papers, s2, settings, engine)
        finally:
            if args.s3:
                remove_bucket(env)


def run(
    args: argparse.Namespace, papers: list[Any], s2: S2Replay, settings: Settings, engine: Engine
) -> None:
    """The two refreshes, timed."""
    store = open_store(settings)
    source = open_source(settings)
    backend = f"{engine.dialect.name} + {'s3' if args.s3 else 'local store'}"
    size = sum(len(p.pdf or b"") for p in papers) / len(papers)
    print(f"{args.papers} papers, {size / 1024:.1f} KB PDFs, {args.workers} workers, {backend}")

    def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        summary = refresh(engine, store, source, settings.refresh_query, workers=args.workers)
        return summary, time.perf_counter() - started

    first, wall = timed()
    print(
        f"first refresh: {wall:6.2f} s  {first.found / wall:7.1f} papers/s  "
        f"(new {first.new}, downloaded {first.downloaded}, failed {first.failed}, "
        f"S2 requests {s2.hits['search']})"
    )
    time.sleep(1 / settings.s2_requests_per_second)  # the limiter lets the next one through
    second, wall = timed()
    print(
        f"no-op refresh: {wall:6.2f} s  (found {second.found} in the overlap window, "
        f"new {second.new}, downloaded {second.downloaded})"
    )
    source.close()


if __name__ == "__main__":
    main()
