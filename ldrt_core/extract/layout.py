"""Page layout from PDFium: text lines with their font, and graphic boxes.

Input: a pypdfium2 page. Output: a `PageLayout` of `Line`s (text segments merged along the
baseline) and `Graphic` boxes (images and vector paths, also inside form XObjects, cut to their
clipping paths), all in PDF points with the origin at the top-left of the page as read (see
`_View`). This is the hot path: one text-rect pass and one object pass per page, no
per-character work except one font lookup per segment.
"""

from __future__ import annotations

import ctypes
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ldrt_core.extract.records import BBox

MAX_OBJECT_DEPTH = 8  # form XObjects nest; deeper than this is hostile, not a figure


@dataclass
class Line:
    x0: float
    top: float
    x1: float
    bottom: float
    text: str
    size: float
    bold: bool  # the first segment is bold (caption labels often are)
    segments: int = 1

    @property
    def bbox(self) -> BBox:
        return (self.x0, self.top, self.x1, self.bottom)

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass(frozen=True)
class Graphic:
    x0: float
    top: float
    x1: float
    bottom: float
    kind: str  # "image" | "path"


@dataclass
class PageLayout:
    number: int  # 1-based
    width: float
    height: float
    rotation: int = 0  # the /Rotate the page is read in, and must be rendered in
    lines: list[Line] = field(default_factory=list)
    graphics: list[Graphic] = field(default_factory=list)


@dataclass(frozen=True)
class _View:
    """Page space from the corner of the visible page (media box cut by crop box, which need
    not start at 0, 0), turned by `rotation` degrees clockwise as a viewer turns a page by
    /Rotate; y still points up. PDFium reports text and objects in page space regardless."""

    rotation: int
    left: float
    bottom: float
    page_width: float  # unturned
    page_height: float

    @property
    def width(self) -> float:
        return self.page_height if self.rotation in (90, 270) else self.page_width

    @property
    def height(self) -> float:
        return self.page_width if self.rotation in (90, 270) else self.page_height

    def point(self, x: float, y: float) -> tuple[float, float]:
        x, y = x - self.left, y - self.bottom
        if self.rotation == 90:
            return y, self.page_width - x
        if self.rotation == 180:
            return self.page_width - x, self.page_height - y
        if self.rotation == 270:
            return self.page_height - y, x
        return x, y

    def rect(
        self, left: float, bottom: float, right: float, top: float
    ) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.point(left, bottom), self.point(right, top)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def read_page(page: pdfium.PdfPage, number: int) -> PageLayout:
    textpage = page.get_textpage()
    try:
        left, bottom, right, top = page.get_bbox()
        rotation = _reading_rotation(page, textpage)
        view = _View(rotation, left, bottom, right - left, top - bottom)
        layout = PageLayout(number, view.width, view.height, view.rotation)
        layout.lines = _lines(textpage, view)
    finally:
        textpage.close()
    layout.graphics = _graphics(page, view)
    return layout


def _reading_rotation(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> int:
    """A page turned a quarter by /Rotate is read as shown when its text runs up or down the
    page (a landscape table set sideways), and unturned when its text runs across already; a
    page turned a half, as shown when its glyphs are drawn upside down."""
    rotation = page.get_rotation()
    if rotation == 180:
        return 180 if _upside_down(textpage) else 0
    if rotation not in (90, 270):
        return 0
    across = up = 0.0
    for index in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(index)
        across += right - left
        up += top - bottom
    return rotation if up > across else 0


def _upside_down(textpage: pdfium.PdfTextPage, most: int = 4000) -> bool:
    """Whether most of the page's glyphs are drawn turned a half round (their angle near pi):
    the glyphs' own angle, not the order of the characters, which runs right to left in
    Arabic or Hebrew set upright. The first `most` characters tell."""
    turned = upright = 0
    for index in range(min(textpage.count_chars(), most)):
        angle = pdfium_c.FPDFText_GetCharAngle(textpage.raw, index)
        if angle < 0:  # no angle: a generated space or line break
            continue
        if abs(angle - math.pi) < math.pi / 4:
            turned += 1
        elif angle < math.pi / 4 or angle > 7 * math.pi / 4:
            upright += 1
    return turned > upright


def _segments(textpage: pdfium.PdfTextPage, view: _View) -> list[Line]:
    """Text segments: each of PDFium's text lines, split where it splits the line into rects."""
    raw = textpage.raw
    count = textpage.count_chars()
    # One cheap call per character; get_text_bounded per rect is O(chars) and far slower.
    chars = [pdfium_c.FPDFText_GetUnicode(raw, i) for i in range(count)]
    font = _FontReader(raw)
    segments: list[Line] = []
    start = 0
    for end in [i for i, code in enumerate(chars) if code in (10, 13)] + [count]:
        if end - start > 0:
            segments += _line_segments(textpage, chars, start, end, view, font)
        start = end + 1
    return segments


def _line_segments(
    textpage: pdfium.PdfTextPage,
    chars: list[int],
    start: int,
    end: int,
    view: _View,
    font: _FontReader,
) -> list[Line]:
    rects = [
        view.rect(*textpage.get_rect(r)) for r in range(textpage.count_rects(start, end - start))
    ]
    if not rects:
        return []
    # PDFium splits a line into a rect per text object; glue rects a word-gap apart, so only
    # real gaps (a column gutter) split the line.
    blocks = [list(rects[0])]
    for left, bottom, right, top in rects[1:]:
        last = blocks[-1]
        gap = left - last[2]
        if -1.0 < gap < 0.9 * max(top - bottom, last[3] - last[1]):
            last[:] = [
                min(last[0], left),
                min(last[1], bottom),
                max(last[2], right),
                max(last[3], top),
            ]
        else:
            blocks.append([left, bottom, right, top])
    if len(blocks) == 1:
        groups = [(blocks[0], list(range(start, end)))]
    else:  # a line across a gutter: give each character to the block it starts in
        members: list[list[int]] = [[] for _ in blocks]
        x, y = ctypes.c_double(), ctypes.c_double()
        for i in range(start, end):
            pdfium_c.FPDFText_GetCharOrigin(textpage.raw, i, ctypes.byref(x), ctypes.byref(y))
            origin = view.point(x.value, y.value)
            best = min(range(len(blocks)), key=lambda b: _distance(blocks[b], *origin))
            members[best].append(i)
        groups = [(block, m) for block, m in zip(blocks, members, strict=True) if m]
    out = []
    for (left, bottom, right, top), indices in groups:
        text = _clean("".join(_char(chars[i]) for i in indices))
        if not text:
            continue
        first = next((i for i in indices if chars[i] > 32), indices[0])
        size, bold = font.read(first, top - bottom)
        out.append(Line(left, view.height - top, right, view.height - bottom, text, size, bold))
    return out


def _distance(rect: list[float], x: float, y: float) -> float:
    left, bottom, right, top = rect
    return max(left - x, 0.0, x - right) + max(bottom - y, 0.0, y - top)


_MISSING_SPACE = re.compile(r"(?<=[a-z][.;:,])(?=[A-Z][a-z])")


def _clean(text: str) -> str:
    """Join UTF-16 surrogate pairs (PDFium reports math letters as two units), fold math
    alphanumerics and ligatures to plain letters, and restore spaces lost between sentences."""
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = "".join(
        unicodedata.normalize("NFKC", c)
        if "\U0001d400" <= c <= "\U0001d7ff" or "\ufb00" <= c <= "\ufb06"
        else c
        for c in text
    )
    return _MISSING_SPACE.sub(" ", text).strip()


def _char(code: int) -> str:
    if code in (2, 0xFFFE):  # PDFium's soft-hyphen markers
        return "-"
    return chr(code) if code >= 32 else " "


class _FontReader:
    """Effective size and boldness of the character at an index."""

    def __init__(self, textpage: object) -> None:
        self._raw = textpage
        self._name = ctypes.create_string_buffer(128)
        self._flags = ctypes.c_int()
        self._matrix = pdfium_c.FS_MATRIX()

    def read(self, index: int, fallback_size: float) -> tuple[float, bool]:
        # Some producers set 1-pt fonts scaled by the text matrix: the effective size is the
        # font size times the matrix's vertical scale.
        size = pdfium_c.FPDFText_GetFontSize(self._raw, index)
        if size and pdfium_c.FPDFText_GetMatrix(self._raw, index, ctypes.byref(self._matrix)):
            size *= math.hypot(self._matrix.c, self._matrix.d)
        weight = pdfium_c.FPDFText_GetFontWeight(self._raw, index)
        pdfium_c.FPDFText_GetFontInfo(self._raw, index, self._name, 128, ctypes.byref(self._flags))
        name = self._name.value.decode("latin-1", "replace").lower()
        bold = weight >= 600 or any(w in name for w in ("bold", "black", "heavy", "semibold"))
        return round(size or fallback_size, 1), bold


def _lines(textpage: pdfium.PdfTextPage, view: _View) -> list[Line]:
    """Merge segments that sit on one baseline with a word-sized gap between them."""
    segments = sorted(_segments(textpage, view), key=lambda s: (round(s.top), s.x0))
    lines: list[Line] = []
    for segment in segments:
        for line in reversed(lines[-6:]):
            overlap = min(line.bottom, segment.bottom) - max(line.top, segment.top)
            gap = segment.x0 - line.x1
            if overlap > 0.5 * min(line.height, segment.height) and -1.0 < gap < 0.9 * max(
                line.size, segment.size
            ):
                line.text = (
                    f"{line.text} {segment.text}"
                    if gap > 0.15 * line.size
                    else line.text + segment.text
                )
                line.x1 = max(line.x1, segment.x1)
                line.top, line.bottom = min(line.top, segment.top), max(line.bottom, segment.bottom)
                line.size = max(line.size, segment.size) if line.segments == 1 else line.size
                line.segments += 1
                break
        else:
            lines.append(segment)
    lines.sort(key=lambda line: (line.top, line.x0))
    return lines


Rect = tuple[float, float, float, float]  # left, bottom, right, top, in PDF space


def _graphics(page: pdfium.PdfPage, view: _View) -> list[Graphic]:
    found: list[Graphic] = []
    width, height = view.width, view.height
    for kind, bounds in _walk(page, None, None, None, 0):
        left, bottom, right, top = view.rect(*bounds)
        x0, x1 = max(0.0, left), min(width, right)
        y0, y1 = max(0.0, height - top), min(height, height - bottom)
        if x1 < x0 or y1 < y0 or (x1 - x0 < 0.5 and y1 - y0 < 0.5):
            continue  # clipped away, off the page, or a speck
        if (x1 - x0) > 0.95 * width and (y1 - y0) > 0.95 * height:
            continue  # a page background or frame
        found.append(Graphic(x0, y0, x1, y1, kind))
    return found


def _walk(
    page: pdfium.PdfPage,
    form: pdfium.PdfObject | None,
    matrix: pdfium.PdfMatrix | None,
    clip: Rect | None,
    depth: int,
) -> Iterator[tuple[str, Rect]]:
    """Images and paths with their page-space bounds, cut to the clipping paths they are drawn
    under: a picture clipped to one column would otherwise reach into the next. Objects inside
    a form XObject report bounds and clips in the form's space, so the forms' matrices are
    applied on the way down; PDFium starts a form's clips afresh, so `clip` carries the ones
    in force where the form is drawn (in page space)."""
    for obj in page.get_objects(form=form, max_depth=1):
        own = _clip_box(obj)
        if own is not None and matrix is not None:
            own = matrix.on_rect(*own)
        here = own if clip is None else clip if own is None else _intersect(clip, own)
        if here is not None and _empty(here):
            continue  # clipped away whole, a form with all it draws
        if obj.type in (pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH):
            bounds = obj.get_bounds()
            if matrix is not None:
                bounds = matrix.on_rect(*bounds)
            if here is not None:
                bounds = _intersect(bounds, here)
                if _empty(bounds):
                    continue  # drawn wholly outside its clip: nothing shows
            yield ("image" if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE else "path"), bounds
        elif obj.type == pdfium_c.FPDF_PAGEOBJ_FORM and depth < MAX_OBJECT_DEPTH:
            inner = obj.get_matrix()
            yield from _walk(
                page, obj, inner if matrix is None else inner.multiply(matrix), here, depth + 1
            )


def _clip_box(obj: pdfium.PdfObject) -> Rect | None:
    """The box an object's clipping paths leave (each path's points' extent, the paths
    intersected), in the space of its bounds; None when it is not clipped."""
    clip = pdfium_c.FPDFPageObj_GetClipPath(obj.raw)
    if not clip:
        return None
    box: Rect | None = None
    x, y = ctypes.c_float(), ctypes.c_float()
    for path in range(pdfium_c.FPDFClipPath_CountPaths(clip)):  # -1 (none) reads as 0
        xs, ys = [], []
        for index in range(pdfium_c.FPDFClipPath_CountPathSegments(clip, path)):
            segment = pdfium_c.FPDFClipPath_GetPathSegment(clip, path, index)
            if pdfium_c.FPDFPathSegment_GetPoint(segment, ctypes.byref(x), ctypes.byref(y)):
                xs.append(x.value)
                ys.append(y.value)
        if xs:
            extent = (min(xs), min(ys), max(xs), max(ys))
            box = extent if box is None else _intersect(box, extent)
    return box


def _intersect(a: Rect, b: Rect) -> Rect:
    """The overlap of two rects; inverted (right < left or top < bottom) when there is none."""
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _empty(rect: Rect) -> bool:
    """An inverted rect (see `_intersect`): `_View.rect` would sort its corners into a box
    that covers the gap between the two rects that did not overlap."""
    return rect[2] < rect[0] or rect[3] < rect[1]


def body_font_size(pages: list[PageLayout]) -> float:
    """The size most characters are set in: the running text."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0
