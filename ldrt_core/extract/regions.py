"""Caption-anchored figure finding, in the manner of pdffigures2.

Input: the `PageLayout`s of a document and its body font size. Output: figure and table
candidates (label, caption text and box, region box) and the roles of the page's lines, so
that the markdown and mention passes can skip what belongs to figures.

On each page: classify lines (running header/footer, body paragraph, heading, caption), find
the columns, find caption starts ("Figure 2.", "Fig. 2:", "FIGURE 2 |", bold labels), grow each
caption down its column, then take the region between the caption and the nearest blocking
text (a body paragraph, a heading, another caption, a table) as the figure: the union of the
graphics and the non-body text inside it. Tables are found first (caption above, region
below, unless that region runs into the next table's caption) so that no figure swallows a
table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ldrt_core.extract.labels import CaptionStart, dehyphenate, parse_caption_start
from ldrt_core.extract.layout import Graphic, Line, PageLayout
from ldrt_core.extract.records import BBox

RUNNING_MARGIN = 0.055  # share of the page height where headers and footers live


class Role(Enum):
    OTHER = "other"  # figure text, table cells, stray labels
    BODY = "body"
    HEADING = "heading"
    CAPTION = "caption"
    RUNNING = "running"
    FIGURE = "figure"  # text inside a found figure or table region


@dataclass
class Column:
    x0: float
    x1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0


@dataclass
class Caption:
    start: CaptionStart
    page: int
    lines: list[Line]
    score: int

    @property
    def text(self) -> str:
        return dehyphenate([line.text for line in self.lines])

    @property
    def bbox(self) -> BBox:
        return _union([line.bbox for line in self.lines])


@dataclass
class Found:
    caption: Caption
    region: BBox | None  # the figure (or table) itself, None when nothing was found


@dataclass
class PageAnalysis:
    layout: PageLayout
    columns: list[Column]
    roles: dict[int, Role] = field(default_factory=dict)  # id(line) -> role
    figures: list[Found] = field(default_factory=list)
    tables: list[Found] = field(default_factory=list)

    def role(self, line: Line) -> Role:
        return self.roles.get(id(line), Role.OTHER)


def analyse(pages: list[PageLayout], body_size: float) -> list[PageAnalysis]:
    analyses = [_classify(page, body_size) for page in pages]
    _carry_paragraph_ends(analyses, body_size)
    captions = _best_captions(analyses, body_size)
    for analysis in analyses:
        mine = [c for c in captions if c.page == analysis.layout.number]
        for caption in mine:
            for line in caption.lines:
                analysis.roles[id(line)] = Role.CAPTION
        taken: list[BBox] = []
        for caption in sorted(mine, key=lambda c: c.start.kind != "table"):  # tables first
            below_first = caption.start.kind == "table"
            region = _region(analysis, caption, taken, below_first)
            found = Found(caption, region)
            if region is not None:
                taken.append(region)
                for line in analysis.layout.lines:
                    if analysis.role(line) in (Role.OTHER, Role.HEADING) and _inside(
                        line.bbox, region
                    ):
                        analysis.roles[id(line)] = Role.FIGURE
            (analysis.tables if caption.start.kind == "table" else analysis.figures).append(found)
        analysis.figures.sort(key=lambda f: (f.caption.bbox[1], f.caption.bbox[0]))
    return analyses


# ---------------------------------------------------------------------------- line roles


def _classify(page: PageLayout, body_size: float) -> PageAnalysis:
    analysis = PageAnalysis(page, _columns(page, body_size))
    top_band, bottom_band = page.height * RUNNING_MARGIN, page.height * (1 - RUNNING_MARGIN)
    body_like = []
    for line in page.lines:
        # Reaching into the header band is enough: some running heads sit across its edge.
        # Not so the footer band, which the last line of body text often reaches into.
        if line.top < top_band or line.top > bottom_band:
            analysis.roles[id(line)] = Role.RUNNING
        elif abs(line.size - body_size) <= 0.75:
            body_like.append(line)
        elif (
            line.size >= body_size + 0.9
            and len(line.text) > 3
            and (_starts_column(analysis, line) or line.size >= body_size + 3)
        ):
            analysis.roles[id(line)] = Role.HEADING
    # Body paragraphs: runs of body-size lines in one column, evenly spaced, with a wide line.
    for column in analysis.columns:
        in_column = [ln for ln in body_like if _column_of(analysis, ln) is column]
        run: list[Line] = []
        for line in sorted(in_column, key=lambda ln: ln.top):
            if run and line.top - run[-1].bottom > 0.75 * line.size:
                _mark_paragraph(analysis, run, column)
                run = []
            run.append(line)
        _mark_paragraph(analysis, run, column)
    return analysis


def _mark_paragraph(analysis: PageAnalysis, run: list[Line], column: Column) -> None:
    wide = [ln for ln in run if ln.x1 - ln.x0 >= 0.6 * column.width]
    if len(wide) >= 1 and (len(run) >= 2 or len(wide[0].text) > 40):
        for line in run:
            analysis.roles[id(line)] = Role.BODY


def _carry_paragraph_ends(analyses: list[PageAnalysis], body_size: float) -> None:
    """A paragraph's last line set at the top of the next column is one short line, too little
    to pass for a paragraph: it is body when the column before ends mid-sentence on body and it
    reads as an end (alone, flush left, a full stop), or the next sentence runs on from the cut
    one."""
    open_sentence = False  # the column before ends on body text, mid-sentence
    for analysis in analyses:
        for column in analysis.columns:
            lines = sorted(
                (
                    ln
                    for ln in analysis.layout.lines
                    if abs(ln.size - body_size) <= 0.75
                    and analysis.role(ln) != Role.RUNNING
                    and _column_of(analysis, ln) is column
                ),
                key=lambda ln: ln.top,
            )
            if not lines:
                continue
            first = lines[0]
            if (
                open_sentence
                and analysis.role(first) == Role.OTHER
                and (len(lines) == 1 or lines[1].top - first.bottom > 0.75 * first.size)
                and abs(first.x0 - column.x0) < 2
                and _ends_sentence(first.text)
            ):
                analysis.roles[id(first)] = Role.BODY
            last = lines[-1]
            open_sentence = analysis.role(last) == Role.BODY and not _ends_sentence(last.text)


def _ends_sentence(text: str) -> bool:
    return text.rstrip().rstrip("\"')]\u201d\u2019").endswith((".", "?", "!", ":"))


def _columns(page: PageLayout, body_size: float) -> list[Column]:
    """One column, or two split at a gutter that (almost) no text line or graphic crosses."""
    margin_top, margin_bottom = page.height * RUNNING_MARGIN, page.height * (1 - RUNNING_MARGIN)
    boxes = [
        (ln.x0, ln.x1)
        for ln in page.lines
        if len(ln.text) > 8 and margin_top < ln.top and ln.bottom < margin_bottom
    ]
    boxes += [(g.x0, g.x1) for g in page.graphics if g.x1 - g.x0 > 20 and g.bottom - g.top > 20]
    if not boxes:
        return [Column(0.0, page.width)]
    full = Column(min(b[0] for b in boxes), max(b[1] for b in boxes))
    best_x, best_crossing = 0.0, len(boxes) + 1
    for step in range(31):  # candidate gutters across the middle of the text block
        x = full.x0 + full.width * (0.35 + 0.3 * step / 30)
        crossing = sum(1 for x0, x1 in boxes if x0 < x - 1 and x1 > x + 1)
        if crossing < best_crossing:
            best_x, best_crossing = x, crossing
    left = [b for b in boxes if b[1] <= best_x + 1]
    right = [b for b in boxes if b[0] >= best_x - 1]
    if best_crossing > 0.25 * len(boxes) or len(left) < 5 or len(right) < 5:
        return [full]
    return [
        Column(min(b[0] for b in left), max(b[1] for b in left)),
        Column(min(b[0] for b in right), max(b[1] for b in right)),
    ]


def _column_of(analysis: PageAnalysis, line: Line) -> Column | None:
    """The column a line sits in; None when it spans several."""
    for column in analysis.columns:
        if line.x0 >= column.x0 - 4 and line.x1 <= column.x1 + 4:
            return column
    centre = (line.x0 + line.x1) / 2
    if len(analysis.columns) > 1 and line.x1 - line.x0 > analysis.columns[0].width * 1.1:
        return None
    return min(analysis.columns, key=lambda c: abs((c.x0 + c.x1) / 2 - centre))


def _starts_column(analysis: PageAnalysis, line: Line) -> bool:
    return any(abs(line.x0 - c.x0) < 4 for c in analysis.columns)


# ---------------------------------------------------------------------------- captions


def _best_captions(analyses: list[PageAnalysis], body_size: float) -> list[Caption]:
    """One caption per label: the most caption-like line that starts with it; between equals,
    one with a figure beside it (in the body font, running text that begins 'Figure 2. The'
    scores as the caption does, and the first in page order would win and find nothing)."""
    best: dict[tuple[str, str], tuple[PageAnalysis, Caption]] = {}
    for analysis in analyses:
        lines = analysis.layout.lines
        for index, line in enumerate(lines):
            if analysis.role(line) == Role.RUNNING:
                continue
            start = parse_caption_start(line.text)
            if start is None:
                continue
            score = 2 * start.delimited + 2 * line.bold + (line.size < body_size - 0.2)
            if analysis.role(line) != Role.BODY:
                score += 1
            if score < 2:
                continue
            caption = Caption(start, analysis.layout.number, _grow(analysis, index), score)
            key = (start.kind, start.label)
            held = best.get(key)
            if (
                held is None
                or score > held[1].score
                or (
                    score == held[1].score
                    and not _has_region(*held)
                    and _has_region(analysis, caption)
                )
            ):
                best[key] = (analysis, caption)
    return [caption for _, caption in best.values()]


def _has_region(analysis: PageAnalysis, caption: Caption) -> bool:
    """Whether the caption finds a figure (or table) beside it, before any float is placed."""
    return _region(analysis, caption, [], caption.start.kind == "table") is not None


def _grow(analysis: PageAnalysis, index: int) -> list[Line]:
    """The caption's lines: its first, then each next line close below it in its column."""
    lines = analysis.layout.lines
    first = lines[index]
    column = _column_of(analysis, first)
    x0, x1 = (column.x0, column.x1) if column else (first.x0, first.x1)
    if column is None:
        x0, x1 = min(c.x0 for c in analysis.columns), max(c.x1 for c in analysis.columns)
    caption = [first]
    # The rest of the first row may sort before the label: a run in another font can reach a
    # hair higher. So every line from the label's row down is a candidate, not only later ones
    # (the row measured by font size: sideways text makes a line's height a column's length).
    row = first.top - 0.5 * first.size
    candidates = sorted(
        (
            ln
            for ln in lines
            if ln is not first
            and ln.top >= row
            and ln.x0 >= x0 - 6
            and ln.x1 <= x1 + 6
            and ln.x0 < max(first.x1, x0 + 0.5 * (x1 - x0))
        ),
        key=lambda ln: ln.top,
    )
    for line in candidates:
        last = caption[-1]
        if line.top < last.top + 0.5 * last.height:
            if line.x0 > last.x1:  # the rest of a line split at a font change
                caption.append(line)
            continue
        if line.top - last.bottom > 0.8 * first.size or abs(line.size - first.size) > 1.1:
            break
        if parse_caption_start(line.text) is not None or analysis.role(line) == Role.RUNNING:
            break
        caption.append(line)
    return caption


# ---------------------------------------------------------------------------- regions


def _region(
    analysis: PageAnalysis, caption: Caption, taken: list[BBox], below_first: bool
) -> BBox | None:
    if below_first:  # a table: its caption sits above it, its body is compact
        table = _table(analysis, caption)
        if table is not None:
            return table
    order = (True, False) if below_first else (False, True)
    for below in order:
        region = _search(analysis, caption, taken, below)
        if region is not None and _solid(region):
            return region
    return None


def _table(analysis: PageAnalysis, caption: Caption) -> BBox | None:
    """The table under its caption; or over it, when the one under runs into another table's
    caption (tables stacked with captions below: the grid under Table 1's is Table 2's)."""
    below, shared = _table_run(analysis, caption, below=True)
    if shared:
        above, above_shared = _table_run(analysis, caption, below=False)
        if above is not None and not above_shared:
            return above
    return below


def _search(
    analysis: PageAnalysis, caption: Caption, taken: list[BBox], below: bool
) -> BBox | None:
    page = analysis.layout
    _, ctop, _, cbottom = caption.bbox
    x0, x1 = _search_columns(analysis, caption)
    # The nearest blocking thing in the search direction bounds the region.
    limit = page.height * (1 - RUNNING_MARGIN) if below else page.height * RUNNING_MARGIN
    blockers = [
        line.bbox
        for line in page.lines
        if analysis.role(line) in (Role.BODY, Role.HEADING, Role.CAPTION, Role.RUNNING)
        and line not in caption.lines
        and _overlaps_x(line.bbox, x0, x1)
    ] + [box for box in taken if _overlaps_x(box, x0, x1)]
    for _bx0, btop, _bx1, bbottom in blockers:
        if below and btop >= cbottom - 1:
            limit = min(limit, btop)
        elif not below and bbottom <= ctop + 1:
            limit = max(limit, bbottom)
    top, bottom = (cbottom, limit) if below else (limit, ctop)
    if bottom - top < 8:
        return None
    graphics = [
        g
        for g in page.graphics
        if _overlaps_x((g.x0, g.top, g.x1, g.bottom), x0, x1)
        and top - 2 <= (g.top + g.bottom) / 2 <= bottom + 2
        and not _is_rule_next_to(g, caption, below)
        # A float found already bounds the region, and its edge rules sit on that bound.
        and not any(_inside((g.x0, g.top, g.x1, g.bottom), box) for box in taken)
    ]
    if not graphics:
        return None
    box = _union([_clip((g.x0, g.top, g.x1, g.bottom), top, bottom) for g in graphics])
    # Text inside the figure (axis labels, panel letters) widens the box within the region.
    texts = [
        line.bbox
        for line in page.lines
        if analysis.role(line) in (Role.OTHER, Role.FIGURE)
        and top - 1 <= line.top
        and line.bottom <= bottom + 1
    ]
    for _ in range(4):  # labels attach to the plot, then axis titles to the labels
        near = [t for t in texts if _near(t, box, 12)]
        grown = _union([box, *near])
        if grown == box:
            break
        box = grown
    return box


def _table_run(analysis: PageAnalysis, caption: Caption, below: bool) -> tuple[BBox | None, bool]:
    """Cells and rules beside a table caption, out to the first gap, image or paragraph; and
    whether what ends them is another table's caption, which may have the better claim."""
    x0, x1 = _search_columns(analysis, caption)
    _, ctop, _, cbottom = caption.bbox
    gap = 2.5 * caption.lines[0].size
    items: list[tuple[BBox, bool, Line | None]] = [  # (box, stops the table, its text)
        (
            line.bbox,
            analysis.role(line) in (Role.BODY, Role.HEADING, Role.CAPTION, Role.RUNNING),
            line,
        )
        for line in analysis.layout.lines
        if line not in caption.lines
    ]
    items += [
        (
            (g.x0, g.top, g.x1, g.bottom),
            g.kind == "image" or min(g.x1 - g.x0, g.bottom - g.top) > 2.5,
            None,
        )
        for g in analysis.layout.graphics
    ]
    beside = sorted(
        (
            item
            for item in items
            if _overlaps_x(item[0], x0, x1)
            and (item[0][1] >= cbottom - 1 if below else item[0][3] <= ctop + 1)
        ),
        key=lambda item: item[0][1] if below else -item[0][3],
    )
    boxes: list[BBox] = []
    edge = cbottom if below else ctop
    for box, stops, line in beside:
        if (box[1] - edge if below else edge - box[3]) > gap:
            break
        if stops:
            shared = line is not None and _is_table_caption(analysis, line)
            return _solid_union(boxes), bool(boxes) and shared
        boxes.append(box)
        edge = max(edge, box[3]) if below else min(edge, box[1])
    return _solid_union(boxes), False


def _is_table_caption(analysis: PageAnalysis, line: Line) -> bool:
    start = parse_caption_start(line.text)
    return analysis.role(line) == Role.CAPTION and start is not None and start.kind == "table"


def _search_columns(analysis: PageAnalysis, caption: Caption) -> tuple[float, float]:
    """The x-range to search beside a caption: its column, or the whole text block."""
    cx0, _, cx1, _ = caption.bbox
    column = _column_of(analysis, caption.lines[0])
    if column is None or len(analysis.columns) == 1:
        x0 = min(c.x0 for c in analysis.columns)
        x1 = max(c.x1 for c in analysis.columns)
    else:
        x0, x1 = column.x0, column.x1
    return min(x0, cx0), max(x1, cx1)


def _is_rule_next_to(graphic: Graphic, caption: Caption, below: bool) -> bool:
    """A thin horizontal rule hugging the caption is a separator, not the figure."""
    if graphic.bottom - graphic.top > 2.5:
        return False
    _, ctop, _, cbottom = caption.bbox
    return abs(graphic.top - cbottom) < 6 if below else abs(graphic.bottom - ctop) < 6


# ---------------------------------------------------------------------------- geometry


def _solid(box: BBox) -> bool:
    """A lone rule (a table's edge, clipped to the region) has no height: it is no float."""
    return box[2] - box[0] > 2 and box[3] - box[1] > 2


def _solid_union(boxes: list[BBox]) -> BBox | None:
    box = _union(boxes) if boxes else None
    return box if box is not None and _solid(box) else None


def _union(boxes: list[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _clip(box: BBox, top: float, bottom: float) -> BBox:
    return (box[0], max(box[1], top), box[2], min(box[3], bottom))


def _overlaps_x(box: BBox, x0: float, x1: float) -> bool:
    return min(box[2], x1) - max(box[0], x0) > 1


def _inside(box: BBox, region: BBox, slack: float = 1.5) -> bool:
    return (
        box[0] >= region[0] - slack
        and box[1] >= region[1] - slack
        and box[2] <= region[2] + slack
        and box[3] <= region[3] + slack
    )


def _near(box: BBox, region: BBox, distance: float) -> bool:
    return (
        box[0] < region[2] + distance
        and box[2] > region[0] - distance
        and box[1] < region[3] + distance
        and box[3] > region[1] - distance
    )
