"""The extraction stage over stored documents: PDF bytes in the store -> figures in the database.

Input: `documents` rows (PDF sha256 and store key). Output, per document: figure PNGs, the
markdown and a JSON of the whole result in the store (content-addressed), `figures` rows keyed by
(document, extractor version), and the document's status `ok` or `failed` with its reason.
A document already extracted by this extractor version is skipped. Store writes come before the
database rows that point to them, so no row ever names a missing object.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, delete, or_, select

from ldrt_core.config import Settings
from ldrt_core.db import session_scope
from ldrt_core.db.models import Document, Figure
from ldrt_core.errors import ExtractionError, LdrtError
from ldrt_core.extract import EXTRACTOR_VERSION, extract_pdf, with_marker_markdown
from ldrt_core.extract.isolation import IsolatedPool
from ldrt_core.extract.records import ExtractedDocument, ExtractOptions
from ldrt_core.store import ArtifactStore


def options_from_settings(settings: Settings) -> ExtractOptions:
    return ExtractOptions(
        dpi=settings.extract_dpi,
        max_pages=settings.extract_max_pages,
        max_page_points=settings.extract_max_page_points,
        max_image_pixels=settings.extract_max_image_pixels,
        timeout_s=settings.extract_timeout_s,
        memory_mb=settings.extract_memory_mb,
        marker_models=settings.marker_models,
    )


@dataclass(frozen=True)
class ExtractionOutcome:
    sha256: str
    status: str  # ok | failed | skipped
    pages: int = 0
    figures: int = 0
    error: str | None = None


def pending_documents(engine: Engine, retry_failed: bool = False) -> list[str]:
    """Documents this extractor version has not done yet (failed ones only when asked)."""
    with session_scope(engine) as session:
        done = Document.extractor_version == EXTRACTOR_VERSION
        query = select(Document.sha256).where(
            or_(~done, Document.extractor_version.is_(None), Document.extract_status == "pending")
        )
        if retry_failed:
            query = select(Document.sha256).where(
                or_(~done, Document.extractor_version.is_(None), Document.extract_status != "ok")
            )
        return list(session.scalars(query.order_by(Document.created_at, Document.sha256)))


def extract_document(
    engine: Engine,
    store: ArtifactStore,
    sha256: str,
    *,
    pool: IsolatedPool | None = None,
    options: ExtractOptions | None = None,
    flow_run_id: str | None = None,
    force: bool = False,
) -> ExtractionOutcome:
    """Extract one stored PDF and record the result; a bad PDF is recorded, not raised."""
    with session_scope(engine) as session:
        document = session.get(Document, sha256)
        if document is None:
            raise LdrtError(f"no document {sha256[:12]}... in the database")
        if (
            not force
            and document.extractor_version == EXTRACTOR_VERSION
            and document.extract_status != "pending"
        ):
            return ExtractionOutcome(sha256, "skipped", document.pages or 0)
        store_key = document.store_key
    pdf = store.get(store_key)
    options = pool.options if pool is not None else options or ExtractOptions()
    try:
        if pool is not None:
            future: Future[ExtractedDocument] = pool.submit(extract_pdf, pdf)
            result = future.result()
        else:
            result = extract_pdf(pdf, options)
    except ExtractionError as exc:
        _record(
            engine,
            sha256,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            flow_run_id=flow_run_id,
        )
        return ExtractionOutcome(sha256, "failed", error=f"{type(exc).__name__}: {exc}")
    result = with_marker_markdown(result, pdf, options.marker_models)
    figure_rows = []
    for ordinal, figure in enumerate(result.figures):
        image_key = image_sha = None
        if figure.image_png is not None:
            info = store.put_content_info(
                figure.image_png, namespace="figures", content_type="image/png"
            )
            image_key, image_sha = info.key, info.sha256
        figure_rows.append(
            Figure(
                document_sha256=sha256,
                extractor_version=EXTRACTOR_VERSION,
                ordinal=ordinal,
                label=figure.label,
                page=figure.page,
                bbox=list(figure.bbox),
                caption=figure.caption,
                mentions=list(figure.mentions),
                image_key=image_key,
                image_sha256=image_sha,
                flow_run_id=flow_run_id,
            )
        )
    markdown_key = store.put_content(
        result.markdown.encode(), namespace="markdown", content_type="text/markdown"
    )
    extraction_key = store.put_content(
        json.dumps(summary_json(result), indent=1).encode(),
        namespace="extractions",
        content_type="application/json",
    )
    with session_scope(engine) as session:
        session.execute(
            delete(Figure).where(
                Figure.document_sha256 == sha256, Figure.extractor_version == EXTRACTOR_VERSION
            )
        )
        session.add_all(figure_rows)
    _record(
        engine,
        sha256,
        status="ok",
        pages=result.pages,
        markdown_key=markdown_key,
        extraction_key=extraction_key,
        flow_run_id=flow_run_id,
    )
    return ExtractionOutcome(sha256, "ok", result.pages, len(figure_rows))


def _record(
    engine: Engine, sha256: str, *, status: str, flow_run_id: str | None, **values: Any
) -> None:
    with session_scope(engine) as session:
        document = session.get(Document, sha256)
        assert document is not None
        document.extract_status = status
        document.extractor_version = EXTRACTOR_VERSION
        document.extract_error = values.pop("error", None)
        for name, value in values.items():
            setattr(document, name, value)
        document.flow_run_id = flow_run_id or document.flow_run_id


def summary_json(
    document: ExtractedDocument, image_paths: list[str] | None = None
) -> dict[str, Any]:
    """The JSON `ldrt extract --json` prints: pages and figures (images by path when given)."""
    figures = []
    for index, figure in enumerate(document.figures):
        entry = asdict(figure)
        entry.pop("image_png")
        entry["bbox"] = list(figure.bbox)
        entry["caption_bbox"] = list(figure.caption_bbox)
        if image_paths is not None:
            entry["image"] = image_paths[index]
        figures.append(entry)
    tables = [
        {
            **asdict(t),
            "bbox": list(t.bbox) if t.bbox else None,
            "caption_bbox": list(t.caption_bbox),
        }
        for t in document.tables
    ]
    return {
        "pages": document.pages,
        "engine": document.engine,
        "figures": figures,
        "tables": tables,
    }
