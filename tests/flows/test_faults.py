"""Fault injection: a service goes down in the middle of a stage flow and comes back.

Input: the Prefect server (CI's, else Prefect's test harness), sample papers, and the real
service under test reached through a `FaultyProxy` on loopback: the S3 server during
`extract_flow`, PostgreSQL during `refresh_flow`. Once the flow has recorded some of its items
(seen through a direct, unproxied connection) a trip wire is armed, and the proxy cuts at the
next request or transaction that matches it, so the test knows exactly where the outage fell;
it is restored later. The service itself never stops, so its data and the Prefect server that
shares it are untouched. Task retry delays are shortened; every wait is bounded.
Output: flow and task run states read back from the API, the rows in the lineage database, the
objects in the store, and `ldrt fsck`'s verdict, which must be clean at the end of every test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from flows.stages import ItemsFailed, extract_flow, refresh_flow
from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document, Paper
from ldrt_core.fsck import check, content_sha256
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import ArtifactStore, open_store
from tasks.stages import download_paper_task, extract_document_task
from tests.flows.test_cli import run_ldrt
from tests.flows.test_flows import flow_run, flow_run_id, retry_flow_run, task_runs
from tests.support.faulty_proxy import FaultyProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers


@contextmanager
def when(
    condition: Callable[[], bool], action: Callable[[], None], timeout_s: float
) -> Iterator[threading.Event]:
    """Poll `condition` in a thread (every 20 ms, for at most `timeout_s`) and run `action` once
    it holds. Yields an event set once the action has run; the thread is joined on exit, and an
    error raised by either callable is raised there."""
    fired, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if condition():
                    action()
                    fired.set()
                    return
                stop.wait(0.02)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=watch, name="fault-trigger")
    thread.start()
    try:
        yield fired
    finally:
        stop.set()
        thread.join(timeout_s + 30)
        assert not thread.is_alive(), "the fault trigger did not stop"
    if errors:
        raise errors[0]


def count(engine: Engine, column: Any, *where: Any) -> int:
    with db.session_scope(engine) as session:
        return int(session.scalar(select(func.count(column)).where(*where)) or 0)


def settled_task_runs(
    run_id: UUID, prefix: str, expected: int, since: dt.datetime | None = None
) -> list[Any]:
    """The flow run's task runs named `prefix...` (created since), once `expected` of them are
    in a final state: the API takes task run states in as events, a moment after the flow has
    returned. Waits at most 30 s, then returns what there is (the caller's asserts say what)."""
    deadline = time.monotonic() + 30
    while True:
        runs = [
            r
            for r in task_runs(run_id)
            if r.name.startswith(prefix) and (since is None or r.created >= since)
        ]
        final = [r for r in runs if r.state is not None and r.state.is_final()]
        if len(final) >= expected or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def assert_objects_whole(store: ArtifactStore) -> int:
    """Every content-addressed object in the store, referenced or not, hashes to its key: no
    write cut short by the outage left part of an object behind. Returns how many were read."""
    checked = 0
    for key in store.list(""):
        expected = content_sha256(key)
        if expected is not None:
            assert hashlib.sha256(store.get(key)).hexdigest() == expected, key
            checked += 1
    return checked


def assert_fsck_clean(tmp_path: Path, env: dict[str, str]) -> None:
    """`ldrt fsck` as a user runs it: exit 0 and no problem."""
    result = run_ldrt(["fsck", "--json"], tmp_path, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] and report["problems"] == [] and report["verified"] > 0


# ----------------------------------------------------------------------------- the proxy


def test_the_proxy_cuts_restores_and_trips_with_every_thread_joined() -> None:
    """The tool itself, against a loopback echo server that records what reaches it."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            got = b""
            with conn, contextlib.suppress(OSError):  # a reset from the proxy ends it too
                while data := conn.recv(1024):
                    got += data
                    conn.sendall(data)
            received.append(got)

    echoing = threading.Thread(target=echo, name="echo")
    echoing.start()
    try:
        with FaultyProxy(*server.getsockname()) as proxy:
            address = ("127.0.0.1", proxy.port)
            with socket.create_connection(address, timeout=5) as conn:
                conn.sendall(b"hello")
                assert conn.recv(5) == b"hello"
                proxy.cut()  # the open connection ends, and a new one is refused
                assert conn.recv(5) == b""
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5)
            assert proxy.open_connections == 0 and not proxy.is_up

            proxy.restore()  # the same port again
            with socket.create_connection(address, timeout=5) as conn:
                tripped = proxy.cut_when(b"TRIP", forward=3)
                conn.sendall(b"ok")
                assert conn.recv(2) == b"ok"
                conn.sendall(b"abcTRIPxyz")  # "abcTRI" reaches the server, no answer comes back
                assert tripped.wait(5) and conn.recv(10) == b""
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5)
            assert proxy.cuts == 2 and proxy.accepted == 2
        assert not [t for t in threading.enumerate() if t.name.startswith("proxy-")]
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        server.close()
        echoing.join(5)
    assert not echoing.is_alive() and received == [b"hello", b"okabcTRI"]


# ----------------------------------------------------------------------------- S3

# Where the S3 outage falls in the second document's extraction; the wire is armed once the
# first document is recorded, and the proxy cuts at the first request that matches it.
# "between-documents": the second document's PDF is never read (its GET never reaches S3).
# "mid-upload": during the second document's markdown PUT, after its figure PNGs are stored, the
# server gets the request's headers and part of its body, then the connection dies.
# S3 stays down until the flow run has ended.
HEADERS_AND_SOME_BODY = 1500  # a minio PUT's headers are about 720 bytes


@pytest.mark.parametrize("moment", ["between-documents", "mid-upload"])
def test_s3_outage_during_extraction_fails_cleanly_and_a_flow_run_retry_finishes(
    moment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]
) -> None:
    s3 = urlsplit(s3_env["LDRT_S3_ENDPOINT"])
    assert s3.hostname and s3.port
    bucket = s3_env["LDRT_STORE_URL"].removeprefix("s3://")
    with FaultyProxy(s3.hostname, s3.port) as proxy:
        env = {
            "LDRT_HOME": str(tmp_path / "home"),
            **s3_env,
            "LDRT_S3_ENDPOINT": f"http://127.0.0.1:{proxy.port}",
            "LDRT_EXTRACT_WORKERS": "1",  # one document at a time: the outage falls between two
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        engine = db.connect(settings)
        db.upgrade(engine)
        # The test's own view of the bucket, past the proxy: readable while S3 is "down".
        direct = open_store(load_settings(s3_endpoint=s3_env["LDRT_S3_ENDPOINT"]))
        pdfs = [p.pdf_path.read_bytes() for p in write_sample_corpus(tmp_path / "p", 3, seed=3)]
        shas, keys = [], []
        for pdf in pdfs:
            info = direct.put_content_info(pdf, content_type="application/pdf")
            with db.session_scope(engine) as session:
                session.add(Document(sha256=info.sha256, store_key=info.key, size=info.size))
            shas.append(info.sha256)
            keys.append(info.key)
        # The task's retry comes 1 s after its first failure instead of 30 s; S3 stays down
        # past it, so the retry fails too and the run ends Failed.
        monkeypatch.setattr(extract_document_task, "retry_delay_seconds", 1)

        if moment == "between-documents":
            # Armed before the run, on the second document's PDF: documents go one at a time,
            # so the first is done before it trips. (A wire on any PDF, armed once the first
            # is done, could miss a fetch that starts within the poll's 20 ms.)
            proxy.cut_when(f"GET /{bucket}/{keys[1]}".encode())

        def outage() -> None:
            if moment == "mid-upload":
                pattern = f"PUT /{bucket}/markdown/".encode()
                proxy.cut_when(pattern, forward=HEADERS_AND_SOME_BODY)

        def first_done() -> bool:
            return count(engine, Document.sha256, Document.extract_status == "ok") >= 1

        started = time.monotonic()
        with when(first_done, outage, 60) as armed:
            state = extract_flow(return_state=True)
        assert armed.is_set(), "the first document was never recorded ok"
        assert proxy.tripped.is_set() and not proxy.is_up and proxy.cuts == 1
        failed_run_s = time.monotonic() - started

        # The run ends Failed, naming the two documents S3 was down for, and why.
        assert state.is_failed(), state.message
        error = state.result(raise_on_failure=False)
        assert isinstance(error, ItemsFailed) and len(error.failures) == 2
        assert sorted(item for item, _ in error.failures) == sorted(shas[1:])
        assert all("is the S3 server up" in reason for _, reason in error.failures), error
        run_id = flow_run_id(state)
        runs = {r.name: r for r in settled_task_runs(run_id, "extract-", len(shas))}
        assert sorted(runs) == sorted(f"extract-{sha[:12]}" for sha in shas)
        assert runs[f"extract-{shas[0][:12]}"].state.is_completed()
        for sha in shas[1:]:  # each tried twice: the first attempt and its one retry
            assert runs[f"extract-{sha[:12]}"].state.is_failed()
            assert runs[f"extract-{sha[:12]}"].run_count == 2

        # Still down: the rows and the bucket agree. The first document is done; the other two
        # were never recorded (an outage is not the document's fault), so they stay pending
        # with no error. Nothing a row names is missing or damaged, and no object is partial;
        # the second document's figures, stored before the cut, are orphans until it is redone.
        with db.session_scope(engine) as session:
            documents = {d.sha256: d for d in session.scalars(select(Document))}
        assert documents[shas[0]].extract_status == "ok"
        for sha in shas[1:]:
            assert documents[sha].extract_status == "pending", documents[sha].extract_error
            assert documents[sha].extract_error is None
            assert documents[sha].markdown_key is None and documents[sha].extraction_key is None
        during = check(engine, direct)
        orphans = [p.key for p in during.problems if p.kind == "orphan"]
        assert len(orphans) == len(during.problems), during.problems
        if moment == "mid-upload":
            assert orphans and all(key.startswith("figures/") for key in orphans)
        else:
            assert not orphans
        assert assert_objects_whole(direct) >= len(shas) + len(orphans)

        # S3 is back; the user retries the same flow run: only the two pending documents run.
        proxy.restore()
        retried_at = dt.datetime.now(dt.UTC)
        retry_started = time.monotonic()
        retry_flow_run(run_id, "flows/stages.py:extract_flow")
        retry_s = time.monotonic() - retry_started

        run = flow_run(run_id)
        assert run.state.is_completed() and run.run_count == 2
        again = settled_task_runs(run_id, "extract-", len(shas) - 1, since=retried_at)
        assert sorted(r.name for r in again) == sorted(f"extract-{sha[:12]}" for sha in shas[1:])
        assert all(r.state.is_completed() and r.run_count == 1 for r in again)
        with db.session_scope(engine) as session:
            documents = {d.sha256: d for d in session.scalars(select(Document))}
        assert all(d.extract_status == "ok" and d.extract_error is None for d in documents.values())
        assert all(documents[sha].flow_run_id == str(run_id) for sha in shas)
        markdown = documents[shas[1]].markdown_key
        assert markdown is not None
        if moment == "mid-upload":  # the PUT that died was cut within its body, not after it
            assert direct.stat(markdown).size > HEADERS_AND_SOME_BODY
        after = check(engine, direct)
        assert after.ok, after.problems  # the figures orphaned by the outage are referenced now
        assert_objects_whole(direct)
        assert_fsck_clean(tmp_path, env)
    print(f"\nS3 outage {moment}: failed run {failed_run_s:.1f} s, retry {retry_s:.1f} s")


# ----------------------------------------------------------------------------- PostgreSQL

PAPERS = 6
# PostgreSQL goes down at the start of the first transaction after two papers are recorded
# (psycopg opens each one with this simple-query message; the wire drops it, so no transaction
# is cut with its COMMIT in flight and the test knows exactly what was recorded).
BEGIN = b"Q\x00\x00\x00\nBEGIN\x00"
# How long PostgreSQL is away, and the download task's retry delays (10 s and 60 s in
# production). "short": the restart (3 s) ends between the task's first retry (1 s) and its
# second (4 s later), so Prefect's retries carry the run through. "long": it is still down after
# both retries, so the run fails, and the user retries the flow run once it is back.
OUTAGES = {"short": (3.0, [1.0, 4.0]), "long": (None, [0.5, 0.5])}


@pytest.mark.parametrize("outage", ["short", "long"])
def test_postgres_restart_during_refresh_is_retried_without_duplicates(
    outage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    down_s, retry_delays = OUTAGES[outage]
    url = make_url(pg_url)
    assert url.host and url.port
    corpus = write_sample_corpus(tmp_path / "papers", PAPERS, seed=5)
    source = f"folder:{tmp_path / 'papers'}"
    watcher = db.connect(pg_url)  # the test's own connection, past the proxy
    db.upgrade(watcher)
    with FaultyProxy(url.host, url.port) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = {
            "LDRT_HOME": str(tmp_path / "home"),
            "LDRT_DB_URL": proxied,
            "LDRT_DOWNLOAD_WORKERS": "1",  # one paper at a time: the outage falls between two
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(download_paper_task, "retry_delay_seconds", retry_delays)
        store = open_store(load_settings())

        def restart() -> None:
            went_down = proxy.cut_when(BEGIN)
            if down_s is not None:
                assert went_down.wait(30), "no transaction started after the wire was armed"
                time.sleep(down_s)
                proxy.restore()

        def some_done() -> bool:
            return count(watcher, Paper.id, Paper.download_status == "ok") >= 2

        started = time.monotonic()
        with when(some_done, restart, 60) as restarted:
            state = refresh_flow(source=source, return_state=True)
        assert restarted.is_set(), "no paper was recorded before the flow ended"
        assert proxy.tripped.is_set() and proxy.cuts == 1
        run_s = time.monotonic() - started
        runs = settled_task_runs(flow_run_id(state), "download-", PAPERS)
        assert len(runs) == PAPERS

        if outage == "short":
            # The download running when the database went away failed, was retried by Prefect
            # until the database was back, and the run finished as if nothing had happened.
            assert state.is_completed(), state.message
            summary = state.result()
            assert (summary["found"], summary["new"], summary["downloaded"]) == (PAPERS,) * 3
            assert summary["failed"] == 0
            assert all(r.state.is_completed() for r in runs)
            assert sorted(r.run_count for r in runs) == [1] * (PAPERS - 1) + [3]
            retry_s = 0.0
        else:
            # Every download from the cut on failed three times; the run names them and why.
            # Nothing could be recorded while the database was down: those papers are pending.
            assert state.is_failed(), state.message
            with db.session_scope(watcher) as session:
                statuses = dict(session.execute(select(Paper.id, Paper.download_status)).all())
            pending = {str(i) for i, status in statuses.items() if status == "pending"}
            assert set(statuses.values()) == {"ok", "pending"} and PAPERS - len(pending) >= 2
            error = state.result(raise_on_failure=False)
            assert isinstance(error, ItemsFailed)
            assert {item for item, _ in error.failures} == pending
            # Each says which database was away, without its password or the SQL it ran.
            away = f"postgresql+psycopg://{url.username}:***@127.0.0.1:{proxy.port}/"
            for _, reason in error.failures:
                assert f"cannot connect to the database {away}" in reason
                assert "Connection refused" in reason and url.password not in reason
                assert "[SQL" not in reason
            failed = sorted(r.name for r in runs if r.state.is_failed())
            assert failed == sorted(f"download-{i}" for i in pending)
            assert all(r.run_count == 3 for r in runs if r.state.is_failed())
            # No row names a missing object (a PDF stored before the cut may be an orphan).
            during = check(watcher, store)
            assert all(p.kind == "orphan" for p in during.problems), during.problems

            # PostgreSQL is back; the user retries the same flow run: the papers are found
            # again (not added again) and only the pending ones are downloaded.
            proxy.restore()
            retried_at = dt.datetime.now(dt.UTC)
            retry_started = time.monotonic()
            retry_flow_run(flow_run_id(state), "flows/stages.py:refresh_flow")
            retry_s = time.monotonic() - retry_started
            run = flow_run(flow_run_id(state))
            assert run.state.is_completed() and run.run_count == 2
            again = settled_task_runs(run.id, "download-", len(failed), since=retried_at)
            assert sorted(r.name for r in again) == failed
            assert all(r.state.is_completed() and r.run_count == 1 for r in again)

        # A second refresh finds the same papers and adds nothing.
        later = refresh_flow(source=source, return_state=True)
        assert later.is_completed(), later.message
        assert later.result()["new"] == 0 and later.result()["to download"] == 0

        with db.session_scope(watcher) as session:
            papers = list(session.scalars(select(Paper)))
            documents = list(session.scalars(select(Document)))
        assert len(papers) == PAPERS == len({p.external_id for p in papers})
        assert {p.external_id for p in papers} == {f"folder:{s.paper_id}" for s in corpus}
        assert all(p.download_status == "ok" and p.download_error is None for p in papers)
        assert len(documents) == PAPERS == len({p.document_sha256 for p in papers})
        assert all(d.extract_status == "pending" for d in documents)
        report = check(watcher, store)
        assert report.ok, report.problems
        assert_fsck_clean(tmp_path, env)
    watcher.dispose()
    print(
        f"\nPostgreSQL restart ({outage}): refresh run {run_s:.1f} s, flow-run retry "
        f"{retry_s:.1f} s, {proxy.accepted} connections through the proxy"
    )
