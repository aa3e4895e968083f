"""Page layout for the sample papers: blocks in, positioned lines, figure boxes and tables out.

Input: the blocks of a `PaperContent`, a `PageGeometry`, the `Fonts` and the layout of each page.
Output: one `PagePlan` per page. Every coordinate is in PDF points from the top-left corner of the
page (pdfplumber's convention); `render.py` flips them for reportlab.

Floats (figures, tables) go where their first mention leaves them if they fit, else to the top of
the next column or page, in number order. On two-column pages a wide float spans both columns at
the top or bottom of a page, so the body still reads left column first, then right column.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from reportlab.pdfbase import pdfmetrics

from ldrt_core.samples.content import FigureSpec, TableSpec

Layout = Literal["one-column", "two-column"]
FloatSpec = FigureSpec | TableSpec
Token = tuple[str, str]  # (word, font name)

BODY_SIZE: Final = 9.5
BODY_LEADING: Final = 12.0
HEADING_SIZE: Final = 11.0
HEADING_LEADING: Final = 15.0
CAPTION_SIZE: Final = 8.0
CAPTION_LEADING: Final = 10.0
TABLE_SIZE: Final = 7.5
TABLE_ROW: Final = 12.0
TABLE_CELL_PAD: Final = 4.0
CAPTION_GAP: Final = 6.0
FLOAT_GAP_BEFORE: Final = 8.0
FLOAT_GAP_AFTER: Final = 14.0
# A figure never takes more than this share of the body height, so it fits any fresh column.
MAX_FIGURE_SHARE: Final = 0.42
EPSILON: Final = 0.01


@dataclass(frozen=True)
class Fonts:
    """Registered reportlab font names and the descent pdfminer uses to size their glyph boxes."""

    regular: str
    bold: str
    descent: float  # a fraction of the font size, negative

    def width(self, text: str, font: str, size: float) -> float:
        return float(pdfmetrics.stringWidth(text, font, size))


@dataclass(frozen=True)
class Box:
    x0: float
    top: float
    x1: float
    bottom: float

    def rounded(self) -> list[float]:
        return [round(self.x0, 2), round(self.top, 2), round(self.x1, 2), round(self.bottom, 2)]

    def union(self, other: Box) -> Box:
        return Box(
            min(self.x0, other.x0),
            min(self.top, other.top),
            max(self.x1, other.x1),
            max(self.bottom, other.bottom),
        )

    def padded(self, pad: float) -> Box:
        return Box(self.x0 - pad, self.top - pad, self.x1 + pad, self.bottom + pad)


@dataclass(frozen=True)
class Run:
    text: str
    font: str
    size: float


@dataclass(frozen=True)
class Line:
    """One drawn line of text: runs side by side from `x`, all on `baseline`."""

    x: float
    baseline: float
    runs: tuple[Run, ...]

    @property
    def text(self) -> str:
        return "".join(run.text for run in self.runs)

    def box(self, fonts: Fonts) -> Box:
        """The union of the glyph boxes pdfplumber will report for this line."""
        size = max(run.size for run in self.runs)
        width = sum(fonts.width(run.text, run.font, run.size) for run in self.runs)
        top = self.baseline - (1 + fonts.descent) * size
        return Box(self.x, top, self.x + width, self.baseline - fonts.descent * size)


@dataclass(frozen=True)
class PageGeometry:
    width: float
    height: float
    margin_x: float = 54.0
    body_top: float = 66.0
    margin_bottom: float = 60.0
    gutter: float = 18.0
    # Running header and footer live outside the body: above header_limit and below footer_limit.
    header_baseline: float = 42.0
    header_limit: float = 54.0
    footer_offset: float = 34.0

    @property
    def text_width(self) -> float:
        return self.width - 2 * self.margin_x

    @property
    def column_width(self) -> float:
        return (self.text_width - self.gutter) / 2

    @property
    def body_bottom(self) -> float:
        return self.height - self.margin_bottom

    @property
    def footer_baseline(self) -> float:
        return self.height - self.footer_offset

    @property
    def footer_limit(self) -> float:
        return self.footer_baseline - 10.0

    @property
    def max_figure_height(self) -> float:
        return MAX_FIGURE_SHARE * (self.body_bottom - self.body_top)

    def frames(self, layout: Layout, top: float) -> list[Frame]:
        left, bottom = self.margin_x, self.body_bottom
        if layout == "one-column":
            return [Frame(left, left + self.text_width, top, bottom)]
        right = left + self.column_width + self.gutter
        return [
            Frame(left, left + self.column_width, top, bottom),
            Frame(right, right + self.column_width, top, bottom),
        ]


@dataclass
class Frame:
    """A column's free region on the current page; spanning floats move its top or bottom."""

    x0: float
    x1: float
    top: float
    bottom: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0


@dataclass(frozen=True)
class PlacedFigure:
    spec: FigureSpec
    page: int
    box: Box
    caption_lines: tuple[Line, ...]
    caption_box: Box
    spans_columns: bool

    @property
    def bottom(self) -> float:
        return max(self.box.bottom, self.caption_box.bottom)


@dataclass(frozen=True)
class PlacedTable:
    spec: TableSpec
    page: int
    box: Box
    caption_lines: tuple[Line, ...]
    caption_box: Box
    cell_lines: tuple[Line, ...]
    column_edges: tuple[float, ...]
    row_edges: tuple[float, ...]
    spans_columns: bool

    @property
    def bottom(self) -> float:
        return max(self.box.bottom, self.caption_box.bottom)


Placed = PlacedFigure | PlacedTable


@dataclass
class PagePlan:
    number: int
    layout: Layout
    lines: list[Line] = field(default_factory=list)
    figures: list[PlacedFigure] = field(default_factory=list)
    tables: list[PlacedTable] = field(default_factory=list)


def line_runs(tokens: list[Token], size: float) -> tuple[Run, ...]:
    """Consecutive words in one font become one run; the space before a run belongs to it."""
    runs: list[Run] = []
    for word, font in tokens:
        if runs and runs[-1].font == font:
            runs[-1] = Run(f"{runs[-1].text} {word}", font, size)
        else:
            runs.append(Run(f" {word}" if runs else word, font, size))
    return tuple(runs)


def take_line(tokens: deque[Token], width: float, size: float, fonts: Fonts) -> list[Token]:
    """Pop the words that fit in `width` (at least one); words are never hyphenated."""
    taken = [tokens.popleft()]
    used = fonts.width(taken[0][0], taken[0][1], size)
    while tokens:
        word, font = tokens[0]
        extra = fonts.width(f" {word}", font, size)
        if used + extra > width:
            break
        taken.append(tokens.popleft())
        used += extra
    return taken


def wrap(tokens: list[Token], width: float, size: float, fonts: Fonts) -> list[list[Token]]:
    queue = deque(tokens)
    lines = []
    while queue:
        lines.append(take_line(queue, width, size, fonts))
    return lines


def tokens(text: str, font: str) -> list[Token]:
    return [(word, font) for word in text.split()]


def text_block(
    label: str, text: str, x: float, top: float, width: float, fonts: Fonts
) -> tuple[tuple[Line, ...], Box]:
    """A caption: the bold label, then the text, wrapped to `width` from `top` down."""
    words = tokens(label, fonts.bold) + tokens(text, fonts.regular)
    lines = tuple(
        Line(x, top + CAPTION_SIZE + i * CAPTION_LEADING, line_runs(chunk, CAPTION_SIZE))
        for i, chunk in enumerate(wrap(words, width, CAPTION_SIZE, fonts))
    )
    box = lines[0].box(fonts)
    for line in lines[1:]:
        box = box.union(line.box(fonts))
    return lines, box.padded(1.0)


def figure_at(
    spec: FigureSpec,
    page: int,
    x0: float,
    x1: float,
    top: float,
    spans: bool,
    geometry: PageGeometry,
    fonts: Fonts,
    one_column: bool,
) -> PlacedFigure:
    """The figure centred between x0 and x1 with its top at `top`, caption below."""
    width = x1 - x0
    if one_column:
        width = min(width * spec.width_fraction, geometry.max_figure_height / spec.aspect)
    height = min(width * spec.aspect, geometry.max_figure_height)
    left = x0 + (x1 - x0 - width) / 2
    box = Box(left, top, left + width, top + height)
    lines, caption_box = text_block(
        spec.label, spec.caption_text, left, box.bottom + CAPTION_GAP, width, fonts
    )
    return PlacedFigure(spec, page, box, lines, caption_box, spans)


def table_natural_widths(spec: TableSpec, fonts: Fonts) -> list[float]:
    widths = []
    for column in range(len(spec.header)):
        cells = [(spec.header[column], fonts.bold)] + [
            (row[column], fonts.regular) for row in spec.rows
        ]
        widths.append(max(fonts.width(t, f, TABLE_SIZE) for t, f in cells) + 2 * TABLE_CELL_PAD)
    return widths


def table_at(
    spec: TableSpec,
    page: int,
    x0: float,
    x1: float,
    top: float,
    spans: bool,
    fonts: Fonts,
    one_column: bool,
) -> PlacedTable:
    """Caption above, then the grid; columns share the spare width in proportion to content."""
    natural = table_natural_widths(spec, fonts)
    width = x1 - x0
    if one_column:
        width = min(width, max(sum(natural) * 1.3, 0.6 * width))
    left = x0 + (x1 - x0 - width) / 2
    lines, caption_box = text_block(spec.label, spec.caption_text, left, top, width, fonts)
    grid_top = caption_box.bottom + 4.0
    scale = width / sum(natural)
    column_edges = [left]
    for w in natural:
        column_edges.append(column_edges[-1] + w * scale)
    row_edges = [grid_top + i * TABLE_ROW for i in range(len(spec.rows) + 2)]
    cells: list[Line] = []
    for r, row in enumerate((spec.header, *spec.rows)):
        font = fonts.bold if r == 0 else fonts.regular
        baseline = row_edges[r] + (TABLE_ROW + TABLE_SIZE) / 2 - 1.0
        cells += [
            Line(column_edges[c] + TABLE_CELL_PAD, baseline, (Run(text, font, TABLE_SIZE),))
            for c, text in enumerate(row)
        ]
    box = Box(left, grid_top, left + width, row_edges[-1])
    return PlacedTable(
        spec,
        page,
        box,
        lines,
        caption_box,
        tuple(cells),
        tuple(column_edges),
        tuple(row_edges),
        spans,
    )


class FlowLayout:
    """Pours blocks into the frames of successive pages. Call the `add_*` methods in reading order,
    then `finish()`."""

    def __init__(
        self, geometry: PageGeometry, fonts: Fonts, layout_of_page: Callable[[int], Layout]
    ) -> None:
        self.pages: list[PagePlan] = []
        self._geometry = geometry
        self._fonts = fonts
        self._layout_of_page = layout_of_page
        self._frames: list[Frame] = []
        self._frame_index = 0
        self._cursor = 0.0
        self._pending: deque[FloatSpec] = deque()
        self._bottom_taken = False  # a float already spans the bottom of this page
        self._columns_used = False
        self._new_page()
        # The title block of page 1 spans the text width whatever the page's layout.
        self._frames = geometry.frames("one-column", geometry.body_top)

    @property
    def _page(self) -> PagePlan:
        return self.pages[-1]

    @property
    def _frame(self) -> Frame:
        return self._frames[self._frame_index]

    @property
    def _at_frame_top(self) -> bool:
        return self._cursor <= self._frame.top + EPSILON

    def start_body(self, gap: float) -> None:
        """End the title block: the columns of page 1 start `gap` below it."""
        self._frames = self._geometry.frames(self._page.layout, self._cursor + gap)
        self._frame_index = 0
        self._cursor = self._frames[0].top

    def add_text(
        self,
        words: list[Token],
        size: float,
        leading: float,
        *,
        indent: float = 0.0,
        hanging: float = 0.0,
        space_before: float = 0.0,
        space_after: float = 0.0,
        keep_lines: int = 0,
    ) -> None:
        """Wrap and place `words`, moving to the next frame when one is full. `keep_lines` body
        lines must fit after the first line (headings keep with their paragraph)."""
        if not self._at_frame_top:
            self._cursor += space_before
        if self._cursor + leading + keep_lines * BODY_LEADING > self._frame.bottom:
            self._next_frame()
        queue = deque(words)
        offset = indent
        while queue:
            if self._cursor + leading > self._frame.bottom:
                self._next_frame()
                continue
            chunk = take_line(queue, self._frame.width - offset, size, self._fonts)
            self._page.lines.append(
                Line(self._frame.x0 + offset, self._cursor + size, line_runs(chunk, size))
            )
            self._cursor += leading
            self._columns_used = True
            offset = hanging
        self._cursor += space_after

    def add_float(self, spec: FloatSpec) -> None:
        if self._pending or not self._place_now(spec):
            self._pending.append(spec)

    def finish(self) -> list[PagePlan]:
        stalled_pages = 0
        while self._pending:
            pages, waiting = len(self.pages), len(self._pending)
            self._next_frame()
            if len(self.pages) > pages and len(self._pending) == waiting:
                stalled_pages += 1
                if stalled_pages > 1:
                    raise RuntimeError(f"float {self._pending[0]!r} fits no page")
        return self.pages

    def _new_page(self) -> None:
        number = len(self.pages) + 1
        self.pages.append(PagePlan(number=number, layout=self._layout_of_page(number)))
        self._frames = self._geometry.frames(self._page.layout, self._geometry.body_top)
        self._frame_index = 0
        self._cursor = self._frames[0].top
        self._bottom_taken = False
        self._columns_used = False

    def _next_frame(self) -> None:
        if self._frame_index + 1 < len(self._frames):
            self._frame_index += 1
            self._cursor = self._frame.top
            self._flush_pending()
        else:
            self._new_page()
            self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending and self._place_now(self._pending[0]):
            self._pending.popleft()

    def _is_span(self, spec: FloatSpec) -> bool:
        if self._page.layout == "one-column":
            return False
        if isinstance(spec, TableSpec):
            return spec.wide or sum(table_natural_widths(spec, self._fonts)) > self._frame.width
        return spec.wide

    def _place_now(self, spec: FloatSpec) -> bool:
        if not self._is_span(spec):
            return self._place_in_frame(spec)
        return self._place_top_span(spec) or self._place_bottom_span(spec)

    def _build(self, spec: FloatSpec, x0: float, x1: float, top: float, spans: bool) -> Placed:
        one_column = self._page.layout == "one-column"
        if isinstance(spec, FigureSpec):
            return figure_at(
                spec, self._page.number, x0, x1, top, spans, self._geometry, self._fonts, one_column
            )
        return table_at(spec, self._page.number, x0, x1, top, spans, self._fonts, one_column)

    def _record(self, placed: Placed) -> None:
        if isinstance(placed, PlacedFigure):
            self._page.figures.append(placed)
        else:
            self._page.tables.append(placed)

    def _place_in_frame(self, spec: FloatSpec) -> bool:
        frame = self._frame
        top = self._cursor if self._at_frame_top else self._cursor + FLOAT_GAP_BEFORE
        placed = self._build(spec, frame.x0, frame.x1, top, spans=False)
        if placed.bottom > frame.bottom:
            return False
        self._record(placed)
        self._cursor = placed.bottom + FLOAT_GAP_AFTER
        self._columns_used = True
        return True

    def _place_top_span(self, spec: FloatSpec) -> bool:
        if self._columns_used or self._frame_index != 0:
            return False
        g = self._geometry
        placed = self._build(spec, g.margin_x, g.margin_x + g.text_width, self._frame.top, True)
        below = placed.bottom + FLOAT_GAP_AFTER
        if below + 3 * BODY_LEADING > self._frame.bottom:
            return False
        self._record(placed)
        for frame in self._frames:
            frame.top = below
        self._cursor = below
        return True

    def _place_bottom_span(self, spec: FloatSpec) -> bool:
        if self._bottom_taken or self._frame_index != 0:
            return False
        g = self._geometry
        trial = self._build(spec, g.margin_x, g.margin_x + g.text_width, 0.0, True)
        top = self._frame.bottom - trial.bottom
        if top - FLOAT_GAP_BEFORE < self._cursor + 2 * BODY_LEADING:
            return False
        self._record(self._build(spec, g.margin_x, g.margin_x + g.text_width, top, True))
        for frame in self._frames:
            frame.bottom = top - FLOAT_GAP_BEFORE
        self._bottom_taken = True
        return True
