"""The sample corpus taken through the pipeline in-process, for tests that need its products.

`extracted_world(home, papers_dir, papers, seed)`: a migrated SQLite database and a local store
under `home`, holding `papers` generated papers refreshed from `papers_dir` and extracted.
`cut_short(pdf)`: a paper whose download fails, until its bytes are put back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Engine

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document
from ldrt_core.extract.stage import extract_document, pending_documents
from ldrt_core.refresh import refresh
from ldrt_core.samples import write_sample_corpus
from ldrt_core.sources import open_source
from ldrt_core.store import ArtifactStore, open_store


def extracted_world(
    home: Path, papers_dir: Path, *, papers: int, seed: int
) -> tuple[Engine, ArtifactStore]:
    settings = load_settings({"LDRT_HOME": str(home)})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    write_sample_corpus(papers_dir, papers=papers, seed=seed)
    refresh(engine, store, open_source(settings, f"folder:{papers_dir}"), "LDRT")
    for sha in pending_documents(engine):
        extract_document(engine, store, sha)
    return engine, store


def store_documents(engine: Engine, store: ArtifactStore, pdfs: Iterable[bytes]) -> list[str]:
    """Each PDF into the store once, with its `documents` row, as a refresh leaves them; the
    sha256 of each, in order (bytes that repeat get one row)."""
    shas: list[str] = []
    for pdf in pdfs:
        info = store.put_content_info(pdf, content_type="application/pdf")
        if info.sha256 not in shas:
            with db.session_scope(engine) as session:
                session.add(Document(sha256=info.sha256, store_key=info.key, size=info.size))
        shas.append(info.sha256)
    return shas


def cut_short(pdf: Path) -> bytes:
    """Cut the PDF file in half (no %%EOF: the download check refuses it, as a transfer that
    broke off); return its whole bytes, to write back when the test fixes the input."""
    whole = pdf.read_bytes()
    pdf.write_bytes(whole[: len(whole) // 2])
    return whole
