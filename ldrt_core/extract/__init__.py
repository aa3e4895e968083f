"""PDF extraction: figures with captions and mentions, tables, and the paper as markdown.

`extract_pdf(pdf_bytes, options)` runs the default engine (PDFium, caption-anchored) in this
process; `ldrt_core.extract.stage` runs it per stored document in worker processes with time and
memory limits and records the results. Marker, when installed with local weights, gives the
markdown instead (see `marker_markdown`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

from ldrt_core.errors import ConfigError
from ldrt_core.extract.engine import extract_with_pdfium
from ldrt_core.extract.records import (
    ExtractedDocument,
    ExtractedFigure,
    ExtractedTable,
    ExtractOptions,
)

# Bump when extraction output changes: documents extracted by an older version are redone.
EXTRACTOR_VERSION = "pdfium-1"

__all__ = [
    "EXTRACTOR_VERSION",
    "ExtractOptions",
    "ExtractedDocument",
    "ExtractedFigure",
    "ExtractedTable",
    "extract_pdf",
    "marker_status",
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
    document: ExtractedDocument, pdf_path: Path, models_dir: str
) -> ExtractedDocument:
    """Replace the markdown with Marker's (figures stay PDFium's: they come with captions)."""
    try:
        # Marker reads its weights from the model cache folder; point it at the local weights
        # for this call only, so nothing is downloaded.
        previous = os.environ.get("MODEL_CACHE_DIR")
        os.environ["MODEL_CACHE_DIR"] = models_dir
        from marker.converters.pdf import PdfConverter  # type: ignore[import-not-found]
        from marker.models import create_model_dict  # type: ignore[import-not-found]
        from marker.output import text_from_rendered  # type: ignore[import-not-found]

        converter = PdfConverter(artifact_dict=create_model_dict())
        markdown, _, _ = text_from_rendered(converter(str(pdf_path)))
    except Exception as exc:  # a third-party model stack: any failure falls back, loudly
        raise ConfigError(
            f"Marker failed ({type(exc).__name__}: {exc}); unset LDRT_MARKER_MODELS"
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("MODEL_CACHE_DIR", None)
        else:
            os.environ["MODEL_CACHE_DIR"] = previous
    return replace(document, markdown=str(markdown), engine="marker")
