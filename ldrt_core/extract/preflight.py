"""Cheap checks that run on every PDF before extraction, so hostile or useless documents fail
fast with an error the user can act on instead of crashing, hanging or filling memory later.

Everything here reads structure only: page sizes come from the page tree, image sizes from the
image dictionaries (nothing is decoded or rendered), and the text check stops at the first page
that has any text.
"""

from __future__ import annotations

import ctypes

import pypdfium2.raw as pdfium_c

from ldrt_core.errors import (
    CorruptPDFError,
    EmptyPDFError,
    EncryptedPDFError,
    ImageBombError,
    ImageOnlyPDFError,
    PageSizeError,
    TooManyPagesError,
)
from ldrt_core.extract.records import ExtractOptions

# PDFium itself stops parsing form XObjects nested deeper than this; the cap only bounds our walk.
MAX_FORM_DEPTH = 64


def preflight(pdf: bytes, options: ExtractOptions) -> int:
    """The page count of `pdf`, or the ExtractionError that says why it cannot be extracted."""
    document = pdfium_c.FPDF_LoadMemDocument64(pdf, len(pdf), None)
    if not document:
        if pdfium_c.FPDF_GetLastError() == pdfium_c.FPDF_ERR_PASSWORD:
            raise EncryptedPDFError(
                "the PDF is encrypted and needs a password; ask for an unprotected copy"
            )
        raise CorruptPDFError(
            "the file cannot be parsed as a PDF (damaged, truncated or not a PDF at all); "
            "download it again or get it from another source"
        )
    try:  # `pdf` stays referenced until the document is closed: PDFium reads it in place
        return _check_document(document, options)
    finally:
        pdfium_c.FPDF_CloseDocument(document)


def _check_document(document: object, options: ExtractOptions) -> int:
    pages = int(pdfium_c.FPDF_GetPageCount(document))
    if pages <= 0:
        raise EmptyPDFError("the PDF has no pages")
    if pages > options.max_pages:
        raise TooManyPagesError(
            f"the PDF has {pages} pages, more than the limit of {options.max_pages}; "
            "raise LDRT_EXTRACT_MAX_PAGES to extract it anyway"
        )
    size = pdfium_c.FS_SIZEF()
    for index in range(pages):
        if not pdfium_c.FPDF_GetPageSizeByIndexF(document, index, size):
            raise CorruptPDFError(f"page {index + 1} cannot be read; the PDF is damaged")
        if not (1 < size.width <= options.max_page_points) or not (
            1 < size.height <= options.max_page_points
        ):
            raise PageSizeError(
                f"page {index + 1} is {size.width:g} x {size.height:g} points; pages must be "
                f"more than 1 and at most {options.max_page_points:g} points on each side "
                "(LDRT_EXTRACT_MAX_PAGE_POINTS)"
            )
    has_text = False
    for index in range(pages):
        page = pdfium_c.FPDF_LoadPage(document, index)
        if not page:
            raise CorruptPDFError(f"page {index + 1} cannot be loaded; the PDF is damaged")
        try:
            _check_images(page, index + 1, options.max_image_pixels)
            has_text = has_text or _has_text(page)
        finally:
            pdfium_c.FPDF_ClosePage(page)
    if not has_text:
        raise ImageOnlyPDFError(
            "no text layer; it looks like a scan. Captions cannot be read without OCR: "
            "find a born-digital version of the paper"
        )
    return pages


def _has_text(page: object) -> bool:
    textpage = pdfium_c.FPDFText_LoadPage(page)
    if not textpage:
        return False
    try:
        return int(pdfium_c.FPDFText_CountChars(textpage)) > 0
    finally:
        pdfium_c.FPDFText_ClosePage(textpage)


def _check_images(page: object, page_number: int, max_pixels: int) -> None:
    """Raise ImageBombError for an image on the page (or in its form XObjects, recursively)
    that declares more than `max_pixels` pixels. Reads the sizes without decoding anything."""
    width, height = ctypes.c_uint(), ctypes.c_uint()
    # (container, is_form, depth): an explicit stack, so no nesting can exhaust Python's
    stack: list[tuple[object, bool, int]] = [(page, False, 0)]
    while stack:
        container, is_form, depth = stack.pop()
        count_objects = (
            pdfium_c.FPDFFormObj_CountObjects if is_form else pdfium_c.FPDFPage_CountObjects
        )
        get_object = pdfium_c.FPDFFormObj_GetObject if is_form else pdfium_c.FPDFPage_GetObject
        for i in range(max(0, int(count_objects(container)))):
            obj = get_object(container, i)
            if not obj:
                continue
            kind = pdfium_c.FPDFPageObj_GetType(obj)
            if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                if not pdfium_c.FPDFImageObj_GetImagePixelSize(obj, width, height):
                    continue
                if width.value * height.value > max_pixels:
                    raise ImageBombError(
                        f"an image on page {page_number} declares {width.value} x "
                        f"{height.value} pixels, more than the limit of {max_pixels}; raise "
                        "LDRT_EXTRACT_MAX_IMAGE_PIXELS if the PDF is trusted"
                    )
            elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < MAX_FORM_DEPTH:
                stack.append((obj, True, depth + 1))
