"""The default extraction engine: PDFium for text, graphics and rendering.

Input: PDF bytes and `ExtractOptions`. Output: an `ExtractedDocument`. Runs in-process; callers
that need time and memory limits run it through `ldrt_core.extract.isolation`.
"""

from __future__ import annotations

import io

import pypdfium2 as pdfium

from ldrt_core.extract.labels import find_mentions, split_sentences
from ldrt_core.extract.layout import PageLayout, body_font_size, read_page
from ldrt_core.extract.preflight import preflight
from ldrt_core.extract.records import (
    BBox,
    ExtractedDocument,
    ExtractedFigure,
    ExtractedTable,
    ExtractOptions,
)
from ldrt_core.extract.regions import analyse
from ldrt_core.extract.text import body_text, to_markdown

RENDER_PADDING = 2.0  # points around a figure, so antialiased edges are not cut


def extract_with_pdfium(pdf: bytes, options: ExtractOptions) -> ExtractedDocument:
    preflight(pdf, options)
    document = pdfium.PdfDocument(pdf)
    try:
        layouts: list[PageLayout] = []
        for index in range(len(document)):
            page = document[index]
            try:
                layouts.append(read_page(page, index + 1))
            finally:
                page.close()
        body_size = body_font_size(layouts)
        analyses = analyse(layouts, body_size)
        mentions = find_mentions(split_sentences(body_text(analyses)))
        figures = []
        for analysis in analyses:
            page = document[analysis.layout.number - 1] if options.render else None
            if page is not None:
                page.set_rotation(analysis.layout.rotation)  # render as the layout was read
            try:
                for found in analysis.figures:
                    if found.region is None:
                        continue
                    caption = found.caption
                    figures.append(
                        ExtractedFigure(
                            label=caption.start.label,
                            number=caption.start.number,
                            page=caption.page,
                            bbox=_rounded(found.region),
                            caption=caption.text,
                            caption_bbox=_rounded(caption.bbox),
                            mentions=mentions.get(caption.start.label, []),
                            image_png=_render(page, found.region, options.dpi) if page else None,
                        )
                    )
            finally:
                if page is not None:
                    page.close()
        tables = [
            ExtractedTable(
                label=found.caption.start.label,
                number=found.caption.start.number,
                page=found.caption.page,
                bbox=_rounded(found.region) if found.region else None,
                caption=found.caption.text,
                caption_bbox=_rounded(found.caption.bbox),
            )
            for analysis in analyses
            for found in analysis.tables
        ]
        title_size = max((ln.size for ln in layouts[0].lines), default=body_size) if layouts else 0
        return ExtractedDocument(
            pages=len(layouts),
            figures=figures,
            tables=tables,
            markdown=to_markdown(analyses, title_size),
        )
    finally:
        document.close()


def _render(page: pdfium.PdfPage, box: BBox, dpi: int) -> bytes:
    width, height = page.get_size()
    x0, top, x1, bottom = box
    crop = (
        max(0.0, x0 - RENDER_PADDING),
        max(0.0, height - bottom - RENDER_PADDING),
        max(0.0, width - x1 - RENDER_PADDING),
        max(0.0, top - RENDER_PADDING),
    )
    bitmap = page.render(scale=dpi / 72, crop=crop)
    try:
        image = bitmap.to_pil()
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=1)  # speed over a few % of size
        return out.getvalue()
    finally:
        bitmap.close()


def _rounded(box: BBox) -> BBox:
    return (round(box[0], 2), round(box[1], 2), round(box[2], 2), round(box[3], 2))
