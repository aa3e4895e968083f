"""Records the extraction stage produces. Boxes are PDF points, origin at the top-left of the
page (pdfplumber's convention): (x0, top, x1, bottom). Pages count from 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class ExtractOptions:
    dpi: int = 150  # figure rendering resolution
    render: bool = True  # render figure PNGs (off for quality benchmarks of boxes only)
    max_pages: int = 300
    max_page_points: float = 14_400.0  # 200 inches: the PDF spec's own limit
    max_image_pixels: int = 150_000_000
    timeout_s: float = 120.0  # per document, enforced by the worker process
    memory_mb: int = 1024  # per worker process
    marker_models: str | None = None  # Marker's weights: its markdown instead of PDFium's


@dataclass(frozen=True)
class ExtractedFigure:
    label: str  # normalised: "Figure 2", "Supplementary Figure S1"
    number: str  # "2", "S1"
    page: int
    bbox: BBox  # the graphic itself, with its own text (axis labels, panel letters)
    caption: str  # whole caption, label prefix included, white space normalised
    caption_bbox: BBox
    mentions: list[str] = field(default_factory=list)  # body sentences that cite this figure
    image_png: bytes | None = None


@dataclass(frozen=True)
class ExtractedTable:
    label: str  # "Table 1"
    number: str
    page: int
    bbox: BBox | None
    caption: str
    caption_bbox: BBox


@dataclass(frozen=True)
class ExtractedDocument:
    pages: int
    figures: list[ExtractedFigure]
    tables: list[ExtractedTable]
    markdown: str
    engine: Literal["pdfium", "marker"] = "pdfium"
