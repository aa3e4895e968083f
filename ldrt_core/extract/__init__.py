"""PDF extraction: figures with captions and mentions, tables, and the paper as markdown.

`extract_pdf(pdf_bytes, options)` runs the default engine (PDFium, caption-anchored) in this
process; `ldrt_core.extract.stage` runs it per stored document in worker processes with time and
memory limits and records the results. Marker, when installed with local weights, gives the
markdown instead (`with_marker_markdown`, in the calling process: its models outgrow a worker).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from ldrt_core.extract.engine import extract_with_pdfium
from ldrt_core.extract.records import (
    ExtractedDocument,
    ExtractedFigure,
    ExtractedTable,
    ExtractOptions,
)

log = logging.getLogger(__name__)

# Bump when extraction output changes: documents extracted by an older version are redone.
EXTRACTOR_VERSION = "pdfium-5"

__all__ = [
    "EXTRACTOR_VERSION",
    "ExtractOptions",
    "ExtractedDocument",
    "ExtractedFigure",
    "ExtractedTable",
    "extract_pdf",
    "marker_status",
    "with_marker_markdown",
]


def extract_pdf(pdf: bytes, options: ExtractOptions | None = None) -> ExtractedDocument:
    """Figures, tables and markdown of one PDF. Raises an ExtractionError subclass for bad input."""
    return extract_with_pdfium(pdf, options or ExtractOptions())


def marker_status(models_dir: str | None) -> tuple[bool, str]:
    """Whether the Marker backend can run, and a sentence saying why (not)."""
    if importlib.util.find_spec("marker") is None:
        return False, "marker-pdf is not installed (pip install 'ldrt[marker]'); using PDFium"
    if not models_dir:
        return (
            False,
            "LDRT_MARKER_MODELS is not set (a local folder of Marker weights); using PDFium",
        )
    if not Path(models_dir).is_dir():
        return False, f"LDRT_MARKER_MODELS={models_dir} is not a folder; using PDFium"
    return True, f"Marker with weights from {models_dir}"


def with_marker_markdown(
    document: ExtractedDocument, pdf: bytes, models_dir: str | None
) -> ExtractedDocument:
    """Marker's markdown in place of PDFium's when `models_dir` (LDRT_MARKER_MODELS) is set;
    figures stay PDFium's (they come with their captions).

    When Marker cannot run (not installed, no such folder, its models do not load) the document
    comes back as it is and the reason is logged once a process; when it fails on this PDF, the
    same, logged for the PDF. The converter (its models) is loaded once per process and used by
    one thread at a time, with no time limit of its own (the worker's is PDFium's)."""
    if not models_dir:
        return document
    usable, why = marker_status(models_dir)
    if usable and models_dir in _unloadable:
        usable, why = False, _unloadable[models_dir]
    if not usable:
        _say_once(why)
        return document
    with _marker_lock:
        try:
            converter, text_from_rendered = _marker_converter(models_dir)
        except Exception as exc:  # a third-party model stack: say it once, then use PDFium
            _unloadable[models_dir] = (
                f"Marker could not load its models from {models_dir} "
                f"({type(exc).__name__}: {exc}); using PDFium"
            )
            _say_once(_unloadable[models_dir])
            return document
        try:
            with tempfile.NamedTemporaryFile(suffix=".pdf") as file:
                file.write(pdf)
                file.flush()
                markdown, _, _ = text_from_rendered(converter(file.name))
        except Exception as exc:  # fails on this PDF: it keeps PDFium's, loudly
            log.warning(
                "markdown: Marker failed (%s: %s); this document keeps PDFium's",
                type(exc).__name__,
                exc,
            )
            return document
    return replace(document, markdown=str(markdown), engine="marker")


_told: set[str] = set()  # reasons already logged: one warning a process, not one a document
_unloadable: dict[str, str] = {}  # models folder -> why Marker did not load from it
_marker_lock = threading.Lock()


def _say_once(why: str) -> None:
    if why not in _told:
        _told.add(why)
        log.warning("markdown: %s", why)


@functools.cache
def _marker_converter(models_dir: str) -> tuple[Any, Any]:
    # Marker reads its weights from its model cache folder, named before its first import:
    # the local weights, so nothing is downloaded.
    os.environ["MODEL_CACHE_DIR"] = models_dir
    from marker.converters.pdf import PdfConverter  # type: ignore[import-not-found]
    from marker.models import create_model_dict  # type: ignore[import-not-found]
    from marker.output import text_from_rendered  # type: ignore[import-not-found]

    return PdfConverter(artifact_dict=create_model_dict()), text_from_rendered
