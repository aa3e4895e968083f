"""Preflight recognises hostile and useless PDFs; isolated workers contain the rest.

Preflight tests call it in this process on hand-made PDFs it must reject with a specific error.
Isolation tests run real worker processes with misbehaving functions (sleep forever, allocate
2 GB, segfault) and check that only the offending task fails, with its typed error, and that the
pool goes on serving. The fuzz test feeds 200 damaged PDFs through the isolated path: each one
ends in a result or an ExtractionError, never another exception and never a hang.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any

import pytest

from ldrt_core.errors import (
    ExtractionCrashedError,
    ExtractionError,
    ExtractionMemoryError,
    ExtractionTimeoutError,
    ImageBombError,
    ImageOnlyPDFError,
    TooManyPagesError,
)
from ldrt_core.extract.isolation import IsolatedPool, run_isolated
from ldrt_core.extract.preflight import preflight
from ldrt_core.extract.records import ExtractOptions
from tests.support import bad_pdfs
from tests.support.s2_replay import minimal_pdf

OPTIONS = ExtractOptions(timeout_s=1.0, memory_mb=256)
VALID = minimal_pdf("Figure 1. Isolation works.")
SPECIAL = {name: (pdf, error) for name, pdf, error in bad_pdfs.special_cases()}
PAGES = {"minimal": 1, "rich": 3, "nested-forms-2000": 1}

pytestmark = pytest.mark.unit  # worker processes, but each test takes about a second at most


@pytest.fixture
def pool() -> Iterator[IsolatedPool]:
    with IsolatedPool(2, OPTIONS) as pool:
        yield pool


def outcome(future: Future[Any], wait_s: float = 30.0) -> object:
    """The task's result, or the exception it raised; a hang fails the test."""
    try:
        return future.result(timeout=wait_s)
    except FutureTimeout:
        pytest.fail(f"no outcome after {wait_s} s: the pool hangs")
    except BaseException as exc:
        return exc


# ---------------------------------------------------------------- preflight


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_preflight_recognises_each_special_case(name: str) -> None:
    pdf, error = SPECIAL[name]
    if error is None:
        assert preflight(pdf, ExtractOptions()) == PAGES[name]
        return
    with pytest.raises(error) as raised:
        preflight(pdf, ExtractOptions())
    assert type(raised.value) is error
    assert str(raised.value)


def test_preflight_messages_name_the_limit_and_the_setting() -> None:
    with pytest.raises(TooManyPagesError, match=r"5000 pages.*300.*LDRT_EXTRACT_MAX_PAGES"):
        preflight(SPECIAL["5000-pages"][0], ExtractOptions())
    with pytest.raises(ImageBombError, match=r"100000 x 100000.*LDRT_EXTRACT_MAX_IMAGE_PIXELS"):
        preflight(SPECIAL["image-bomb"][0], ExtractOptions())
    with pytest.raises(ImageOnlyPDFError, match="no text layer; it looks like a scan"):
        preflight(SPECIAL["scan"][0], ExtractOptions())


def test_preflight_limits_come_from_the_options() -> None:
    assert preflight(bad_pdfs.many_pages_pdf(400), ExtractOptions(max_pages=400)) == 400
    with pytest.raises(TooManyPagesError):
        preflight(bad_pdfs.many_pages_pdf(400), ExtractOptions(max_pages=399))
    assert preflight(SPECIAL["image-bomb"][0], ExtractOptions(max_image_pixels=10**10)) == 1
    wide = ExtractOptions(max_page_points=200_000)
    assert preflight(SPECIAL["page-100000pt-wide"][0], wide) == 1


def test_preflight_is_fast_per_page() -> None:
    pdf = bad_pdfs.many_pages_pdf(300)
    preflight(pdf, ExtractOptions())
    started = time.perf_counter()
    for _ in range(3):
        preflight(pdf, ExtractOptions())
    per_page = (time.perf_counter() - started) / 3 / 300
    assert per_page < 0.002, f"{per_page * 1000:.2f} ms per page"


def test_mutated_pdfs_are_deterministic_and_varied() -> None:
    cases = bad_pdfs.mutated_pdfs(seed=3)
    assert len(cases) == 200
    assert len({name for name, _ in cases}) == 200
    assert cases == bad_pdfs.mutated_pdfs(seed=3)
    assert cases != bad_pdfs.mutated_pdfs(seed=4)
    kinds = Counter(name.split("-", 2)[-1].split("@")[0] for name, _ in cases[len(SPECIAL) :])
    assert len(kinds) >= 6, kinds


# ---------------------------------------------------------------- isolation


def test_run_isolated_returns_the_result_and_reraises_typed_errors() -> None:
    assert run_isolated(bad_pdfs.page_count, VALID, OPTIONS) == 1
    pdf, error = SPECIAL["encrypted"]
    assert error is not None
    with pytest.raises(error) as in_process:
        preflight(pdf, OPTIONS)
    with pytest.raises(error) as isolated:
        run_isolated(bad_pdfs.page_count, pdf, OPTIONS)
    assert type(isolated.value) is error
    assert str(isolated.value) == str(in_process.value)


def test_an_extraction_error_arrives_with_its_type_and_message(pool: IsolatedPool) -> None:
    error = outcome(pool.submit(bad_pdfs.raise_image_bomb, b"abc"))
    assert type(error) is ImageBombError
    assert str(error) == "an image declares too many pixels (3 bytes)"


def test_other_exceptions_become_extraction_errors(pool: IsolatedPool) -> None:
    error = outcome(pool.submit(bad_pdfs.raise_value_error, VALID))
    assert type(error) is ExtractionError
    assert "ValueError: not a number" in str(error)
    error = outcome(pool.submit(bad_pdfs.unpicklable_result, VALID))
    assert type(error) is ExtractionError
    assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1


def test_a_task_over_time_is_killed_and_the_pool_goes_on() -> None:
    with IsolatedPool(1, OPTIONS) as pool:
        before = outcome(pool.submit(bad_pdfs.worker_pid, VALID))
        started = time.monotonic()
        error = outcome(pool.submit(bad_pdfs.sleep_forever, VALID))
        assert time.monotonic() - started < OPTIONS.timeout_s + 2
        assert isinstance(error, ExtractionTimeoutError)
        assert "1 s" in str(error) and "LDRT_EXTRACT_TIMEOUT_S" in str(error)
        assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1
        assert outcome(pool.submit(bad_pdfs.worker_pid, VALID)) != before  # a new worker


def test_a_task_over_memory_fails_and_the_pool_goes_on(pool: IsolatedPool) -> None:
    error = outcome(pool.submit(bad_pdfs.allocate_2gb, VALID))
    assert isinstance(error, ExtractionMemoryError)
    assert "256 MB" in str(error) and "LDRT_EXTRACT_MEMORY_MB" in str(error)
    assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1


def test_a_worker_killed_by_sigkill_counts_as_out_of_memory(pool: IsolatedPool) -> None:
    error = outcome(pool.submit(bad_pdfs.sigkill_self, VALID))
    assert isinstance(error, ExtractionMemoryError)
    assert "SIGKILL" in str(error)
    assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1


def test_a_crashed_worker_is_replaced(pool: IsolatedPool) -> None:
    error = outcome(pool.submit(bad_pdfs.segfault, VALID))
    assert isinstance(error, ExtractionCrashedError)
    assert "SIGSEGV" in str(error)
    error = outcome(pool.submit(bad_pdfs.exit_quietly, VALID))
    assert isinstance(error, ExtractionCrashedError)
    assert "code 3" in str(error)
    assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1


def test_a_failing_task_does_not_disturb_the_others(pool: IsolatedPool) -> None:
    bad = [pool.submit(fn, VALID) for fn in (bad_pdfs.sleep_forever, bad_pdfs.segfault)]
    good = [pool.submit(bad_pdfs.page_count, VALID) for _ in range(6)]
    assert isinstance(outcome(bad[0]), ExtractionTimeoutError)
    assert isinstance(outcome(bad[1]), ExtractionCrashedError)
    assert [outcome(future) for future in good] == [1] * 6


def test_a_closed_pool_refuses_work_and_stops_its_workers() -> None:
    pool = IsolatedPool(2, OPTIONS)
    assert outcome(pool.submit(bad_pdfs.page_count, VALID)) == 1
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(bad_pdfs.page_count, VALID)


def test_every_mutated_pdf_ends_in_a_result_or_an_extraction_error() -> None:
    options = replace(OPTIONS, timeout_s=10.0, memory_mb=512)
    cases = bad_pdfs.mutated_pdfs(seed=0, count=200)
    started = time.monotonic()
    with IsolatedPool(2, options) as pool:
        futures = [(name, pool.submit(bad_pdfs.preflight_then_parse, pdf)) for name, pdf in cases]
        results = {name: outcome(future, wait_s=120) for name, future in futures}
    elapsed = time.monotonic() - started
    wrong = {n: repr(r) for n, r in results.items() if not isinstance(r, dict | ExtractionError)}
    assert wrong == {}
    for name, (_, error) in SPECIAL.items():
        result = results[f"special-{name}"]
        assert type(result) is (error or dict), (name, result)
    tally = Counter(type(r).__name__ for r in results.values())
    print(f"200 mutated PDFs in {elapsed:.1f} s: {dict(tally)}")
    assert elapsed < 90
