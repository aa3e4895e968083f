"""Draw laid-out pages into a PDF with reportlab.

Input: the `PagePlan`s of one paper, its `PaperContent` (for the PDF's document information),
the `PageGeometry` and the `Fonts`. Output: the PDF file. The canvas runs in reportlab's invariant
mode, so the same plans always give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from ldrt_core.samples.content import PaperContent
from ldrt_core.samples.figures import Area, draw_figure
from ldrt_core.samples.layout import Box, Fonts, Line, PageGeometry, PagePlan, PlacedTable

REGULAR_FONT = "LdrtSans"
BOLD_FONT = "LdrtSans-Bold"


def register_fonts() -> Fonts:
    """DejaVu Sans from matplotlib's own data: unlike Helvetica it has Greek glyphs
    (the text needs beta, kappa and alpha as well as micro).

    Registration is process-wide in reportlab and idempotent here.
    """
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, file in ((REGULAR_FONT, "DejaVuSans.ttf"), (BOLD_FONT, "DejaVuSans-Bold.ttf")):
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    descent = float(pdfmetrics.getFont(REGULAR_FONT).face.descent) / 1000
    return Fonts(regular=REGULAR_FONT, bold=BOLD_FONT, descent=descent)


def render_pdf(
    path: Path,
    content: PaperContent,
    pages: list[PagePlan],
    geometry: PageGeometry,
    fonts: Fonts,
) -> None:
    canvas = Canvas(str(path), pagesize=(geometry.width, geometry.height), invariant=1)
    canvas.setTitle(content.title)
    canvas.setAuthor(", ".join(content.authors))
    canvas.setSubject(f"doi:{content.doi}")
    canvas.setCreator("ldrt sample corpus")
    for page in pages:
        for line in page.lines:
            draw_line(canvas, line, geometry, fonts)
        for figure in page.figures:
            draw_figure(canvas, figure.spec, area_of(figure.box, geometry), fonts)
            for line in figure.caption_lines:
                draw_line(canvas, line, geometry, fonts)
        for table in page.tables:
            draw_table(canvas, table, geometry, fonts)
        canvas.showPage()
    canvas.save()


def area_of(box: Box, geometry: PageGeometry) -> Area:
    return Area(box.x0, geometry.height - box.bottom, box.x1 - box.x0, box.bottom - box.top)


def draw_line(canvas: Canvas, line: Line, geometry: PageGeometry, fonts: Fonts) -> None:
    canvas.setFillColorRGB(0, 0, 0)
    x, y = line.x, geometry.height - line.baseline
    for run in line.runs:
        canvas.setFont(run.font, run.size)
        canvas.drawString(x, y, run.text)
        x += fonts.width(run.text, run.font, run.size)


def draw_table(canvas: Canvas, table: PlacedTable, geometry: PageGeometry, fonts: Fonts) -> None:
    """Caption, then a full grid: every row and column edge is a drawn line."""
    for line in (*table.caption_lines, *table.cell_lines):
        draw_line(canvas, line, geometry, fonts)
    canvas.setStrokeColorRGB(0, 0, 0)
    canvas.setLineWidth(0.5)
    left, right = table.column_edges[0], table.column_edges[-1]
    top, bottom = table.row_edges[0], table.row_edges[-1]
    height = geometry.height
    for y in table.row_edges:
        canvas.line(left, height - y, right, height - y)
    for x in table.column_edges:
        canvas.line(x, height - top, x, height - bottom)
