"""The extraction stage over stored documents: results and bad PDFs recorded, nothing redone."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document, Figure
from ldrt_core.extract import EXTRACTOR_VERSION, ExtractOptions
from ldrt_core.extract.isolation import IsolatedPool
from ldrt_core.extract.stage import extract_document, pending_documents
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import ArtifactStore, content_key, open_store
from tests.support import bad_pdfs

pytestmark = pytest.mark.unit

BAD = {
    "encrypted": (bad_pdfs.encrypted_pdf, "EncryptedPDFError"),
    "truncated": (lambda: bad_pdfs.rich_pdf()[:900], "CorruptPDFError"),
    "garbage": (lambda: b"%PDF-1.4\n" + b"\x00garbage" * 50, "CorruptPDFError"),
    "empty": (bad_pdfs.empty_pdf, "EmptyPDFError"),
    "scan": (bad_pdfs.scan_pdf, "ImageOnlyPDFError"),
    "bomb": (bad_pdfs.image_bomb_pdf, "ImageBombError"),
    "pages": (bad_pdfs.many_pages_pdf, "TooManyPagesError"),
    "huge": (bad_pdfs.huge_page_pdf, "PageSizeError"),
}


def add_document(engine: Engine, store: ArtifactStore, pdf: bytes) -> str:
    info = store.put_content_info(pdf)
    with db.session_scope(engine) as session:
        session.add(Document(sha256=info.sha256, store_key=info.key, size=info.size))
    return info.sha256


def stored_samples(
    tmp_path: Path, count: int
) -> tuple[Engine, ArtifactStore, list[Any], list[str]]:
    """An embedded home with `count` sample papers stored as documents, not yet extracted: the
    papers and their documents' sha256."""
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    papers = write_sample_corpus(tmp_path / "papers", papers=count, seed=1)
    shas = [add_document(engine, store, p.pdf_path.read_bytes()) for p in papers]
    return engine, store, papers, shas


def test_good_and_bad_documents_side_by_side(tmp_path: Path) -> None:
    engine, store, papers, good = stored_samples(tmp_path, 3)
    bad = {name: add_document(engine, store, make()) for name, (make, _) in BAD.items()}
    assert len(pending_documents(engine)) == len(good) + len(bad)

    options = ExtractOptions(timeout_s=60)
    with IsolatedPool(2, options) as pool:
        outcomes = {
            sha: extract_document(engine, store, sha, pool=pool, flow_run_id="run-1")
            for sha in pending_documents(engine)
        }

    for sha in good:
        assert outcomes[sha].status == "ok" and outcomes[sha].figures > 0
    for name, sha in bad.items():
        assert outcomes[sha].status == "failed", name
        assert BAD[name][1] in str(outcomes[sha].error), (name, outcomes[sha].error)

    with db.session_scope(engine) as session:
        documents = {d.sha256: d for d in session.scalars(select(Document))}
        figures = list(session.scalars(select(Figure)))
    for name, sha in bad.items():
        assert documents[sha].extract_status == "failed"
        assert BAD[name][1] in (documents[sha].extract_error or "")
    truth_figures = sum(len(json.loads(p.truth_path.read_text())["figures"]) for p in papers)
    assert len(figures) == truth_figures
    for figure in figures:
        assert figure.extractor_version == EXTRACTOR_VERSION and figure.flow_run_id == "run-1"
        png = store.get(figure.image_key or "")
        assert png.startswith(b"\x89PNG") and hashlib.sha256(png).hexdigest() == figure.image_sha256
    for sha in good:
        extraction = json.loads(store.get(documents[sha].extraction_key or ""))
        assert len(extraction["figures"]) == outcomes[sha].figures
        markdown = store.get(documents[sha].markdown_key or "").decode()
        assert markdown.startswith("# ")
        assert documents[sha].pages and documents[sha].extract_status == "ok"

    # Nothing is pending now; asking again redoes nothing, and failures wait for retry_failed.
    assert pending_documents(engine) == []
    again = extract_document(engine, store, good[0])
    assert again.status == "skipped"
    assert sorted(pending_documents(engine, retry_failed=True)) == sorted(bad.values())
    with db.session_scope(engine) as session:
        assert len(list(session.scalars(select(Figure)))) == truth_figures


STANDIN = Path(__file__).resolve().parents[1] / "support" / "marker_standin"


@pytest.fixture
def marker_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An embedded home with two sample papers stored, and Marker's caches reset around the test."""
    import ldrt_core.extract as extract

    def reset() -> None:
        extract._marker_converter.cache_clear()
        extract._told.clear()
        extract._unloadable.clear()
        for name in [m for m in sys.modules if m == "marker" or m.startswith("marker.")]:
            del sys.modules[name]

    reset()
    monkeypatch.delenv("MODEL_CACHE_DIR", raising=False)
    engine, store, _, shas = stored_samples(tmp_path, 2)
    yield engine, store, shas, tmp_path / "weights"
    reset()


def markdown_of(engine: Engine, store: ArtifactStore, sha: str) -> str:
    with db.session_scope(engine) as session:
        document = session.get(Document, sha)
        assert document is not None and document.extract_status == "ok"
        return store.get(str(document.markdown_key)).decode()


def test_marker_writes_the_markdown_when_it_is_set_up(
    marker_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, store, shas, weights = marker_world
    weights.mkdir()
    monkeypatch.syspath_prepend(str(STANDIN))
    options = ExtractOptions(marker_models=str(weights))
    with IsolatedPool(1, options) as pool:
        for sha in shas:
            extract_document(engine, store, sha, pool=pool)
    for sha in shas:
        size = len(store.get(content_key(sha)))
        assert markdown_of(engine, store, sha) == (
            f"# Marker\n\n{size} bytes, weights from {weights}\n"
        )
    with db.session_scope(engine) as session:  # the figures are still PDFium's
        assert session.scalar(select(func.count()).select_from(Figure)) > 0


def test_without_marker_or_when_it_fails_the_markdown_is_pdfiums(
    marker_world: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine, store, shas, weights = marker_world
    options = ExtractOptions(marker_models=str(weights))  # no such folder
    with caplog.at_level(logging.WARNING, "ldrt_core.extract"):
        for sha in shas:
            extract_document(engine, store, sha, options=options)
    # Here marker-pdf is not installed, and the folder is missing: said once, not per document.
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("markdown: ") and warning.endswith("; using PDFium")
    assert all(markdown_of(engine, store, sha).startswith("# ") for sha in shas)
    assert not any("Marker" in markdown_of(engine, store, sha) for sha in shas)

    weights.mkdir()
    monkeypatch.syspath_prepend(str(STANDIN))
    failing = add_document(engine, store, bad_pdfs.rich_pdf() + b"%marker-fails-here\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, "ldrt_core.extract"):
        outcome = extract_document(engine, store, failing, options=options)
    assert outcome.status == "ok"
    assert "Marker failed (RuntimeError: CUDA out of memory)" in caplog.text
    assert "Marker" not in markdown_of(engine, store, failing)


def test_marker_models_that_do_not_load_are_tried_once(
    marker_world: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine, store, shas, weights = marker_world
    weights.mkdir()
    (weights / "broken").touch()
    monkeypatch.syspath_prepend(str(STANDIN))
    options = ExtractOptions(marker_models=str(weights))
    with caplog.at_level(logging.WARNING, "ldrt_core.extract"):
        for sha in shas:
            assert extract_document(engine, store, sha, options=options).status == "ok"
    [warning] = [r.getMessage() for r in caplog.records]
    assert "Marker could not load its models" in warning and "no model weights" in warning
    assert not any("Marker" in markdown_of(engine, store, sha) for sha in shas)
