"""The extraction stage over stored documents: results and bad PDFs recorded, nothing redone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document, Figure
from ldrt_core.extract import EXTRACTOR_VERSION, ExtractOptions
from ldrt_core.extract.isolation import IsolatedPool
from ldrt_core.extract.stage import extract_document, pending_documents
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import ArtifactStore, open_store
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


def test_good_and_bad_documents_side_by_side(tmp_path: Path) -> None:
    settings = load_settings({"LDRT_HOME": str(tmp_path / "home")})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    papers = write_sample_corpus(tmp_path / "papers", papers=3, seed=1)
    good = [add_document(engine, store, p.pdf_path.read_bytes()) for p in papers]
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
