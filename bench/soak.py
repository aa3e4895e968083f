"""Soak: the refresh and extract flows, run after run over a growing corpus, with random faults.

Input: PostgreSQL (--db-url, an admin URL: a fresh database is made for the soak and dropped
after; default LDRT_TEST_PG_URL) and an S3 server (--s3-endpoint; default LDRT_TEST_S3_ENDPOINT,
else a moto server started here), each reached through a `FaultyProxy` so it can go down and
come back; the Prefect API (PREFECT_API_URL, else a temporary local server). Each run adds
--papers-per-run new sample papers to the corpus folder and runs `refresh` then `extract`, while
a fault thread takes S3 or PostgreSQL down (every connection cut, new ones refused) for 0.5-3 s
at a random moment within the time the last run's flows took. A run whose flows end Failed is
retried with `retry_failed`, up to --max-retries times, as an operator would. Task retry delays
are shortened to 1 s so that the soak takes minutes, not hours.

Output: one line per run (faults, attempts, outcome) and the totals: runs, outages during the
flows (one that would start after them is not made), items lost (papers in the corpus not
downloaded and extracted at the end: must be 0), duplicates (papers, documents or figures
recorded twice: must be 0) and `fsck` problems. The scratch bucket is removed at the end.

    python bench/soak.py [--runs 10] [--papers-per-run 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.support.faulty_proxy import FaultyProxy
from tests.support.s3_bucket import remove_bucket


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server `admin_url` names; dropped afterwards."""
    name = f"ldrt_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def s3_server(endpoint: str | None) -> Iterator[str]:
    """The S3 server at `endpoint`, else a moto server for the soak (bench/store.py's)."""
    if endpoint:
        yield endpoint
        return
    from store import moto_server  # bench/store.py, beside this script

    with moto_server() as url:
        yield url


def proxied(url: str, proxy: FaultyProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    hostport = f"{proxy.host}:{proxy.port}"
    return parts._replace(
        netloc=f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
    ).geturl()


def target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (5432 if "postgres" in url else 80)


def inject(
    rng: random.Random,
    proxies: dict[str, FaultyProxy],
    log: list[str],
    done: threading.Event,
    within_s: float,
) -> threading.Thread:
    """In the background: one outage of a random service, at a random moment in the first
    `within_s` seconds, of random length; none (and none logged) when the flows are `done`
    before that moment."""
    name = rng.choice(sorted(proxies))
    wait, down = rng.uniform(0.0, within_s), rng.uniform(0.5, 3.0)

    def outage() -> None:
        if done.wait(wait):
            return
        proxies[name].cut()
        log.append(f"{name} down {down:.1f} s after {wait:.1f} s")
        time.sleep(down)
        proxies[name].restore()

    thread = threading.Thread(target=outage, name=f"fault-{name}")
    thread.start()
    return thread


def run_flows(corpus: Path, retry: bool) -> list[str]:
    """refresh then extract; the reasons of what failed (empty when both completed)."""
    from flows.stages import extract_flow, refresh_flow

    failed = []
    for flow, parameters in (
        (refresh_flow, {"source": f"folder:{corpus}", "retry_failed": retry}),
        (extract_flow, {"retry_failed": retry}),
    ):
        state: Any = flow(**parameters, return_state=True)
        if not state.is_completed():
            failed.append(f"{flow.name}: {str(state.message)[:160]}")
    return failed


def shorten_task_retries() -> None:
    import tasks.stages as stages

    for task in vars(stages).values():
        if getattr(task, "retries", 0):
            task.retry_delay_seconds = 1


def tally(db_url: str, corpus: Path) -> dict[str, int]:
    from ldrt_core.db.models import Document, Figure, Paper

    engine = create_engine(make_url(db_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        papers = {
            row.external_id: (row.download_status, row.document_sha256)
            for row in conn.execute(
                select(Paper.external_id, Paper.download_status, Paper.document_sha256)
            )
        }
        extracted = set(
            conn.scalars(select(Document.sha256).where(Document.extract_status == "ok"))
        )
        duplicates = sum(
            conn.scalar(select(func.count()).select_from(query.subquery())) or 0
            for query in (
                select(Paper.external_id).group_by(Paper.external_id).having(func.count() > 1),
                select(Paper.doi)
                .where(Paper.doi.is_not(None))
                .group_by(Paper.doi)
                .having(func.count() > 1),
                select(Figure.document_sha256, Figure.extractor_version, Figure.ordinal)
                .group_by(Figure.document_sha256, Figure.extractor_version, Figure.ordinal)
                .having(func.count() > 1),
            )
        )
    engine.dispose()
    expected = {f"folder:{pdf.stem}" for pdf in corpus.glob("*.pdf")}
    lost = sum(
        1
        for paper in expected
        if paper not in papers or papers[paper][0] != "ok" or papers[paper][1] not in extracted
    )
    return {"papers": len(expected), "lost": lost, "duplicates": duplicates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--papers-per-run", type=int, default=3)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db-url", default=os.environ.get("LDRT_TEST_PG_URL"))
    parser.add_argument("--s3-endpoint", default=os.environ.get("LDRT_TEST_S3_ENDPOINT"))
    args = parser.parse_args()
    if not args.db_url:
        parser.error("a PostgreSQL server is needed: --db-url or LDRT_TEST_PG_URL")
    rng = random.Random(args.seed)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retry warnings are expected here

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ldrt-soak-")))
        db_url = stack.enter_context(fresh_database(args.db_url))
        s3 = stack.enter_context(s3_server(args.s3_endpoint))
        proxies = {
            "postgres": stack.enter_context(FaultyProxy(*target(db_url))),
            "s3": stack.enter_context(FaultyProxy(*target(s3))),
        }
        os.environ.update(
            {
                "LDRT_HOME": str(work / "home"),
                "LDRT_DB_URL": proxied(db_url, proxies["postgres"]),
                "LDRT_STORE_URL": f"s3://ldrt-soak-{uuid.uuid4().hex[:8]}",
                "LDRT_S3_ENDPOINT": f"http://{proxies['s3'].host}:{proxies['s3'].port}",
                "LDRT_S3_ACCESS_KEY": "soak",
                "LDRT_S3_SECRET_KEY": "soak-secret",
                "LDRT_DOWNLOAD_RETRIES": "1",
                "LDRT_DOWNLOAD_BACKOFF_S": "0.2",
            }
        )
        if not os.environ.get("PREFECT_API_URL"):
            from flows.server import temporary_server

            stack.enter_context(temporary_server())
        shorten_task_retries()
        from ldrt_core.config import load_settings
        from ldrt_core.db import connect
        from ldrt_core.fsck import check
        from ldrt_core.samples import write_sample_corpus
        from ldrt_core.store import open_store

        corpus = work / "corpus"
        corpus.mkdir()
        faults: list[str] = []
        started = time.monotonic()
        last_s = 3.0  # the first run's guess of how long its flows take
        for run in range(1, args.runs + 1):
            batch = work / f"batch-{run}"
            for paper in write_sample_corpus(batch, papers=args.papers_per_run, seed=1000 + run):
                paper.pdf_path.rename(corpus / f"run{run:02d}-{paper.pdf_path.name}")
            before = len(faults)
            flows_done = threading.Event()
            # Within the time the last run's flows took, so that the outage meets them: on a
            # fast machine they take a second or two.
            fault = inject(rng, proxies, faults, flows_done, within_s=0.5 * last_s)
            started_run = time.monotonic()
            failed = run_flows(corpus, retry=False)
            last_s = time.monotonic() - started_run
            flows_done.set()
            fault.join()
            attempts = 1
            while failed and attempts <= args.max_retries:
                attempts += 1
                failed = run_flows(corpus, retry=True)
            outcome = "ok" if not failed else "FAILED: " + "; ".join(failed)
            print(
                f"run {run:2d}: {'; '.join(faults[before:]) or 'no fault'}; "
                f"{attempts} attempt(s); {outcome}",
                flush=True,
            )
        took = time.monotonic() - started
        counts = tally(db_url, corpus)
        settings = load_settings()
        report = check(connect(settings), open_store(settings))
        print(
            f"\nruns {args.runs} in {took:.0f} s, papers {counts['papers']}, "
            f"outages during the flows {len(faults)}\n"
            f"items lost   {counts['lost']}  (must be 0)\n"
            f"duplicates   {counts['duplicates']}  (must be 0)\n"
            f"fsck         {'clean' if report.ok else report.counts()}"
        )
        remove_bucket(os.environ)  # the soak's scratch bucket


if __name__ == "__main__":
    main()
