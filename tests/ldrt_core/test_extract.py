"""Figure extraction against ground truth: the generated corpus (boxes known) and real papers."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops
from reportlab.pdfgen.canvas import Canvas

from ldrt_core.extract import ExtractedDocument, ExtractOptions, extract_pdf
from ldrt_core.extract.engine import RENDER_PADDING
from ldrt_core.extract.labels import caption_body, normalize_caption
from ldrt_core.samples import write_sample_corpus
from tests.support.extract_truth import NO_CORPUS, load_real_truth

pytestmark = pytest.mark.unit


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[dict[str, Any], ExtractedDocument]]:
    folder = tmp_path_factory.mktemp("samples")
    papers = write_sample_corpus(folder, papers=8, seed=0)
    return [
        (json.loads(p.truth_path.read_text()), extract_pdf(p.pdf_path.read_bytes())) for p in papers
    ]


def test_every_generated_figure_is_found_with_its_box_caption_and_mentions(
    generated: list[tuple[dict[str, Any], ExtractedDocument]],
) -> None:
    for truth, document in generated:
        assert document.pages == truth["pages"]
        found = {f.label: f for f in document.figures}
        assert set(found) == {f["label"] for f in truth["figures"]}, truth["paper_id"]
        for want in truth["figures"]:
            got = found[want["label"]]
            where = f"{truth['paper_id']} {want['label']}"
            assert got.page == want["page"], where
            assert iou(got.bbox, want["bbox"]) >= 0.9, (where, got.bbox, want["bbox"])
            assert normalize_caption(got.caption) == normalize_caption(want["caption"]), where
            assert iou(got.caption_bbox, want["caption_bbox"]) >= 0.7, where
            assert set(want["mentions"]) <= set(got.mentions), where


def test_tables_are_recognised_and_kept_apart(
    generated: list[tuple[dict[str, Any], ExtractedDocument]],
) -> None:
    tables = 0
    for truth, document in generated:
        assert {t.label for t in document.tables} == {t["label"] for t in truth["tables"]}
        assert not any(f.label.startswith("Table") for f in document.figures)
        for table in document.tables:
            for figure in document.figures:
                if table.bbox and figure.page == table.page:
                    assert iou(table.bbox, figure.bbox) == 0.0
        tables += len(truth["tables"])
    assert tables > 0


def test_figures_are_rendered_at_the_requested_resolution(
    generated: list[tuple[dict[str, Any], ExtractedDocument]],
) -> None:
    _, document = generated[0]
    for figure in document.figures:
        assert figure.image_png is not None
        image = Image.open(io.BytesIO(figure.image_png))
        width_pt = figure.bbox[2] - figure.bbox[0] + 2 * RENDER_PADDING
        assert abs(image.width - width_pt * 150 / 72) <= 2
        assert image.getextrema() != ((255, 255), (255, 255), (255, 255))  # not blank


def test_render_off_and_dpi(tmp_path: Path) -> None:
    paper = write_sample_corpus(tmp_path, papers=1, seed=3)[0]
    bare = extract_pdf(paper.pdf_path.read_bytes(), ExtractOptions(render=False))
    assert all(f.image_png is None for f in bare.figures)
    sharp = extract_pdf(paper.pdf_path.read_bytes(), ExtractOptions(dpi=300))
    figure = sharp.figures[0]
    width = Image.open(io.BytesIO(figure.image_png or b"")).width
    assert abs(width - (figure.bbox[2] - figure.bbox[0] + 2 * RENDER_PADDING) * 300 / 72) <= 2


def _quarter_turned(pdf: bytes, rotation: int = 90) -> bytes:
    """Each page given /Rotate 90, its content left as drawn: a viewer shows it sideways."""
    document = pdfium.PdfDocument(pdf)
    for index in range(len(document)):
        document[index].set_rotation(rotation)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _half_turned(pdf: bytes) -> bytes:
    """Each page given /Rotate 180, its content left as drawn: a viewer shows it upside down."""
    return _quarter_turned(pdf, 180)


def _drawn_turned(pdf: bytes, rotation: int) -> bytes:
    """Each page drawn turned round by `rotation` degrees the other way, on a page that
    /Rotate `rotation` shows upright."""
    source, document = pdfium.PdfDocument(pdf), pdfium.PdfDocument.new()
    for index in range(len(source)):
        width, height = source[index].get_size()
        if rotation == 90:
            page = document.new_page(height, width)
            matrix = pdfium.PdfMatrix(0, 1, -1, 0, height, 0)
        else:
            page = document.new_page(width, height)
            matrix = pdfium.PdfMatrix(-1, 0, 0, -1, width, height)
        drawing = source.page_as_xobject(index, document).as_pageobject()
        drawing.set_matrix(matrix)
        page.insert_obj(drawing)
        page.gen_content()
        page.set_rotation(rotation)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _drawn_sideways(pdf: bytes) -> bytes:
    """A landscape page drawn a quarter turn round, as publishers set landscape tables."""
    return _drawn_turned(pdf, 90)


def _drawn_upside_down(pdf: bytes) -> bytes:
    """A page drawn a half turn round (a scan fed in upside down, then turned in a viewer)."""
    return _drawn_turned(pdf, 180)


@pytest.mark.parametrize(
    "turn", [_quarter_turned, _drawn_sideways, _half_turned, _drawn_upside_down]
)
def test_a_rotated_page_gives_the_figures_of_its_upright_page(
    tmp_path: Path, turn: Callable[[bytes], bytes]
) -> None:
    """PDFium reports text and objects unturned whatever the /Rotate; boxes and crops must not
    mix that space with the turned one."""
    pdf = write_sample_corpus(tmp_path, papers=1, seed=0)[0].pdf_path.read_bytes()
    upright = extract_pdf(pdf, ExtractOptions(dpi=72))
    turned = extract_pdf(turn(pdf), ExtractOptions(dpi=72))
    assert [(f.label, f.page, f.caption) for f in turned.figures] == [
        (f.label, f.page, f.caption) for f in upright.figures
    ]
    for want, got in zip(upright.figures, turned.figures, strict=True):
        assert iou(got.bbox, want.bbox) >= 0.99, (got.label, got.bbox, want.bbox)
        want_image = Image.open(io.BytesIO(want.image_png or b"")).convert("L")
        got_image = Image.open(io.BytesIO(got.image_png or b"")).convert("L")
        assert got_image.size == want_image.size, got.label
        assert ImageChops.difference(got_image, want_image).getextrema()[1] < 64, got.label


def test_upright_text_set_right_to_left_on_a_half_turned_page_is_read_unturned() -> None:
    """Arabic or Hebrew set upright comes in an order that steps right to left along the line;
    that is no sign of a page drawn upside down (its glyphs' angle is)."""
    from ldrt_core.extract.layout import read_page

    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.setFont("Helvetica", 11)
    for row in range(30):
        x = 540.0
        for char in "words set from the right":  # each glyph placed left of the one before
            x -= canvas.stringWidth(char, "Helvetica", 11)
            canvas.drawString(x, 700 - 14 * row, char)
    canvas.showPage()
    canvas.save()
    document = pdfium.PdfDocument(out.getvalue())
    try:
        document[0].set_rotation(180)
        assert read_page(document[0], 1).rotation == 0
    finally:
        document.close()


@pytest.mark.parametrize("box", ["crop", "media"])
def test_a_page_box_off_the_origin_moves_the_figures_with_it(tmp_path: Path, box: str) -> None:
    """Boxes are measured from the page as shown: trim marks cut off by a CropBox, or a
    MediaBox that does not start at (0, 0), move every figure and not its crop."""
    pdf = write_sample_corpus(tmp_path, papers=1, seed=0)[0].pdf_path.read_bytes()
    whole = extract_pdf(pdf, ExtractOptions(dpi=72))
    document = pdfium.PdfDocument(pdf)
    for index in range(len(document)):
        page = document[index]
        left, bottom, right, top = page.get_mediabox()
        inset = (left + 20, bottom + 20, right - 20, top - 20)
        (page.set_cropbox if box == "crop" else page.set_mediabox)(*inset)
    out = io.BytesIO()
    document.save(out)
    cut = extract_pdf(out.getvalue(), ExtractOptions(dpi=72))
    assert [f.label for f in cut.figures] == [f.label for f in whole.figures]
    for want, got in zip(whole.figures, cut.figures, strict=True):
        moved = (want.bbox[0] - 20, want.bbox[1] - 20, want.bbox[2] - 20, want.bbox[3] - 20)
        assert iou(got.bbox, moved) >= 0.99, (got.label, got.bbox, moved)
        want_image = Image.open(io.BytesIO(want.image_png or b"")).convert("L")
        got_image = Image.open(io.BytesIO(got.image_png or b"")).convert("L")
        assert got_image.size == want_image.size, got.label
        assert ImageChops.difference(got_image, want_image).getextrema()[1] < 64, got.label


def test_a_caption_label_and_its_text_set_as_two_runs_on_one_row_stay_one_caption() -> None:
    """A regular run's glyphs can reach a hair above the bold label's, so the run sorts before
    the label it follows on the row (peerj sets captions like this)."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.rect(100, 400, 300, 200, fill=1)
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(100, 385, "Figure 1.")
    canvas.setFont("Helvetica", 8)
    canvas.drawString(140, 385, "Dose response of IL-6 after 0.5 Gy.")
    canvas.showPage()
    canvas.save()
    document = extract_pdf(out.getvalue(), ExtractOptions(render=False))
    captions = [f.caption for f in document.figures]
    assert captions == ["Figure 1. Dose response of IL-6 after 0.5 Gy."]


BODY_LINE = "Macrophages were counted after each low-dose fraction."


def _two_columns(canvas: Canvas, left: tuple[float, float], right: tuple[float, float]) -> None:
    """Running text in a 54-292 and a 315-558 column, each from its (top, bottom) PDF y."""
    canvas.setFont("Helvetica", 9)
    for x, (top, bottom) in ((54, left), (315, right)):
        y = top
        while y > bottom:
            canvas.drawString(x, y, BODY_LINE)
            y -= 11


def _clip_to_left_column(canvas: Canvas) -> None:
    path = canvas.beginPath()
    path.rect(0, 0, 238, 180)
    canvas.clipPath(path, stroke=0, fill=0)


def _band_across_both_columns(canvas: Canvas) -> None:
    canvas.rect(0, 0, 504, 180, stroke=0, fill=1)


@pytest.mark.parametrize("clip", ["on the page", "inside a form", "around a form"])
def test_a_graphic_clipped_to_its_column_is_bounded_by_the_clip(clip: str) -> None:
    """A picture cut to one column by a clipping path (clark2015 sets its figures so) ends at
    the clip, not where its unclipped drawing would: else the box takes in the next column."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    if clip == "inside a form":
        canvas.beginForm("figure")
        _clip_to_left_column(canvas)
        _band_across_both_columns(canvas)
        canvas.endForm()
    elif clip == "around a form":
        canvas.beginForm("figure")
        _band_across_both_columns(canvas)
        canvas.endForm()
    canvas.saveState()
    canvas.translate(54, 540)  # so that a form's space is not the page's
    if clip != "inside a form":
        _clip_to_left_column(canvas)
    if clip == "on the page":
        _band_across_both_columns(canvas)
    else:
        canvas.doForm("figure")
    canvas.restoreState()
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(54, 525, "Figure 1. A band cut to the left column.")
    _two_columns(canvas, left=(495, 72), right=(720, 72))
    canvas.showPage()
    canvas.save()
    [figure] = extract_pdf(out.getvalue(), ExtractOptions(render=False)).figures
    assert iou(figure.bbox, (54, 72, 292, 252)) >= 0.95, figure.bbox


@pytest.mark.parametrize("form", [False, True])
def test_a_graphic_drawn_wholly_outside_its_clip_is_not_there(form: bool) -> None:
    """Nothing of it shows; it must not become a graphic spanning the gap to the clip."""
    from ldrt_core.extract.layout import read_page

    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    if form:
        canvas.beginForm("hidden")
    canvas.saveState()
    path = canvas.beginPath()
    path.rect(54, 400, 200, 200)  # the clip: x 54 to 254
    canvas.clipPath(path, stroke=0, fill=0)
    canvas.rect(350, 400, 200, 200, stroke=0, fill=1)  # drawn at x 350 to 550
    canvas.restoreState()
    if form:
        canvas.endForm()
        canvas.doForm("hidden")
    canvas.setFont("Helvetica", 10)
    canvas.drawString(54, 100, "some text")
    canvas.showPage()
    canvas.save()
    document = pdfium.PdfDocument(out.getvalue())
    try:
        assert read_page(document[0], 1).graphics == []
    finally:
        document.close()


def test_a_figure_right_under_a_full_width_table_leaves_out_the_tables_rules() -> None:
    """The table's bottom rule lies on the edge of the figure's search region; it belongs to
    the table already found, not to the figure in one column below it."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(
        54, 720, "Table 1. Doses, fractions and the macrophage response in both arms of the trial."
    )
    canvas.setLineWidth(0.5)
    for y in (712, 700, 662):
        canvas.line(54, y, 558, y)
    canvas.setFont("Helvetica", 8)
    for y, cells in ((703, ("Arm", "Dose (Gy)", "Response")), (690, ("Sham", "0", "1.0"))):
        for x, cell in zip((60, 250, 450), cells, strict=True):
            canvas.drawString(x, y, cell)
    for y, cells in ((678, ("Low", "0.5", "0.6")), (666, ("High", "2.0", "0.9"))):
        for x, cell in zip((60, 250, 450), cells, strict=True):
            canvas.drawString(x, y, cell)
    canvas.rect(315, 480, 243, 168, stroke=0, fill=1)
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(315, 466, "Figure 1. Response by dose.")
    _two_columns(canvas, left=(644, 72), right=(440, 72))
    canvas.showPage()
    canvas.save()
    document = extract_pdf(out.getvalue(), ExtractOptions(render=False))
    assert [t.label for t in document.tables] == ["Table 1"]
    [figure] = document.figures
    assert iou(figure.bbox, (315, 144, 558, 312)) >= 0.95, figure.bbox


def test_a_body_line_starting_with_a_figure_label_does_not_displace_its_caption() -> None:
    """With captions in the body font, 'Figure 2. The ...' in running text scores as high as
    the caption; it has no figure next to it, so the caption that does is the one kept."""
    sentence = [
        "Low-dose radiation therapy has been used for benign inflammatory diseases for many",
        "decades and its mechanisms are now being studied in more detail, as is shown in",
        "Figure 2. The response of macrophages was measured after irradiation with 0.5 Gy",
        "and compared with sham-irradiated controls handled identically in every respect.",
    ]
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.setFont("Helvetica", 10)
    for index, line in enumerate(sentence * 3):
        canvas.drawString(72, 700 - 12 * index - 6 * (index // 4), line)
    canvas.showPage()
    canvas.rect(100, 450, 300, 250, fill=1)
    canvas.setFont("Helvetica", 10)
    canvas.drawString(72, 430, "Figure 2. Macrophage polarisation after 0.5 Gy in mice, as")
    canvas.drawString(72, 418, "measured by flow cytometry 72 hours after the last fraction.")
    for index, line in enumerate(sentence[:2] + sentence[3:]):
        canvas.drawString(72, 380 - 12 * index, line)
    canvas.showPage()
    canvas.save()
    [figure] = extract_pdf(out.getvalue(), ExtractOptions(render=False)).figures
    assert (figure.label, figure.page) == ("Figure 2", 2)
    assert figure.caption.startswith("Figure 2. Macrophage polarisation")
    assert iou(figure.bbox, (100, 92, 400, 342)) >= 0.95, figure.bbox


def _grid(canvas: Canvas, top: float, rows: int) -> None:
    """A ruled table in the right column from PDF y `top` down, 11 pt a row."""
    canvas.setLineWidth(0.5)
    for row in range(rows + 1):
        canvas.line(315, top - 11 * row, 558, top - 11 * row)
    canvas.setFont("Helvetica", 9)
    for row in range(rows):
        for x, cell in zip((320, 440, 500), ("Sham", "0.5 Gy", "0.93"), strict=True):
            canvas.drawString(x, top - 11 * row - 8, cell)


@pytest.mark.parametrize("captions", ["below", "above"])
def test_stacked_tables_each_get_their_own_grid(captions: str) -> None:
    """Two tables one over the other with captions below them (as CS and ACL papers set them):
    the grid under Table 1's caption is Table 2's, and taking it left Table 2 nothing."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.setFont("Helvetica-Bold", 9)
    if captions == "below":
        _grid(canvas, 738, 4)
        canvas.drawString(340, 682, "Table 1. Precision and recall on figures.")
        _grid(canvas, 662, 3)
        canvas.setFont("Helvetica-Bold", 9)
        canvas.drawString(340, 617, "Table 2. Precision and recall on tables.")
        grids = {"Table 1": (315, 54, 558, 98), "Table 2": (315, 130, 558, 163)}
    else:
        canvas.drawString(340, 738, "Table 1. Precision and recall on figures.")
        _grid(canvas, 728, 4)
        canvas.setFont("Helvetica-Bold", 9)
        canvas.drawString(340, 672, "Table 2. Precision and recall on tables.")
        _grid(canvas, 662, 3)
        grids = {"Table 1": (315, 64, 558, 108), "Table 2": (315, 130, 558, 163)}
    _two_columns(canvas, left=(720, 72), right=(590, 72))
    canvas.showPage()
    canvas.save()
    tables = extract_pdf(out.getvalue(), ExtractOptions(render=False)).tables
    assert [t.label for t in tables] == ["Table 1", "Table 2"]
    for table in tables:
        assert table.bbox is not None, table.label
        assert iou(table.bbox, grids[table.label]) >= 0.9, (table.label, table.bbox)


def test_a_paragraphs_last_line_carried_to_the_next_column_stays_in_the_text() -> None:
    """One short line at a column's top is too little to pass for a paragraph; when the column
    before ends mid-sentence it is that paragraph's end, and without it the next sentence was
    glued onto the unfinished one (and so was the mention it holds)."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    _two_columns(canvas, left=(720, 100), right=(470, 100))
    canvas.setFont("Helvetica", 9)
    canvas.drawString(54, 94, "Tissue sections of the irradiated lung were stained for")
    canvas.drawString(315, 720, "Arg1 and counterstained with DAPI.")
    canvas.drawString(315, 696, "The data in Figure 1 indicate an early change in")
    canvas.drawString(315, 685, "the macrophages counted after each fraction.")
    canvas.rect(315, 510, 243, 150, stroke=0, fill=1)
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(315, 496, "Figure 1. Response by dose.")
    canvas.showPage()
    canvas.save()
    document = extract_pdf(out.getvalue(), ExtractOptions(render=False))
    assert "Arg1 and counterstained with DAPI." in document.markdown
    [figure] = document.figures
    assert figure.mentions == [
        "The data in Figure 1 indicate an early change in the macrophages counted after each"
        " fraction."
    ]


def test_markdown_reads_in_order_with_headings(
    generated: list[tuple[dict[str, Any], ExtractedDocument]],
) -> None:
    for truth, document in generated:
        markdown = document.markdown
        assert markdown.startswith("# ")
        headings = [line for line in markdown.splitlines() if line.startswith("## ")]
        names = [h.split(" ", 1)[1].lstrip("0123456789. ") for h in headings]
        assert [n for n in names if n in ("Introduction", "Methods", "Results", "Discussion")] == [
            "Introduction",
            "Methods",
            "Results",
            "Discussion",
        ], truth["paper_id"]
        assert markdown.count("\n# ") == 0, "the title is one heading"
        # Captions sit where their figures interrupt the text; without them the text runs on.
        running = " ".join(
            " ".join(block.split()) for block in markdown.split("\n\n") if not block.startswith("*")
        )
        for figure in truth["figures"]:
            assert " ".join(markdown.split()).count(caption_body(figure["caption"])[:50]) == 1
            for mention in figure["mentions"]:
                assert mention in running, (truth["paper_id"], mention)


# ---------------------------------------------------------------------------- real papers


@pytest.fixture(scope="module")
def real() -> list[tuple[Any, ExtractedDocument]]:
    truths = load_real_truth()
    if not truths:
        pytest.skip(NO_CORPUS)
    return [
        (t, extract_pdf(Path(t.pdf_path).read_bytes(), ExtractOptions(render=False)))
        for t in truths
    ]


def test_real_papers_figures_by_label(real: list[tuple[Any, ExtractedDocument]]) -> None:
    true_positives = false_positives = false_negatives = 0
    for truth, document in real:
        want = {f.label for f in truth.figures}
        got = {f.label for f in document.figures}
        true_positives += len(want & got)
        false_positives += len(got - want)
        false_negatives += len(want - got)
        if not want:
            assert not got, f"{truth.name} has no figures, found {sorted(got)}"
    assert true_positives / (true_positives + false_positives) >= 0.95
    assert true_positives / (true_positives + false_negatives) >= 0.95


def test_real_papers_captions(real: list[tuple[Any, ExtractedDocument]]) -> None:
    import difflib

    scores = []
    for truth, document in real:
        found = {f.label: f for f in document.figures}
        for figure in truth.figures:
            if figure.label in found and figure.caption:
                ours = caption_body(found[figure.label].caption)
                theirs = normalize_caption(figure.caption)
                scores.append(difflib.SequenceMatcher(None, ours, theirs).ratio())
    assert len(scores) > 50
    assert sum(scores) / len(scores) >= 0.95


def test_real_paper_boxes_where_known(real: list[tuple[Any, ExtractedDocument]]) -> None:
    boxed = [(t, d) for t, d in real if t.has_boxes]
    assert boxed, "the deepfigures truth gives boxes for one paper"
    for truth, document in boxed:
        found = {f.label: f for f in document.figures}
        matched = [
            iou(found[f.label].bbox, f.bbox) >= 0.5
            for f in truth.figures
            if f.label in found and f.bbox and found[f.label].page == f.page
        ]
        assert sum(matched) == len(truth.figures), truth.name


def test_a_pages_last_body_line_across_the_footer_bands_edge_stays_text() -> None:
    """A running head may reach into the header band from below; but the last line of body
    text often reaches a little into the footer band, and it is text (with its mentions)."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(612, 792), invariant=1)
    canvas.setFont("Helvetica", 10)
    canvas.drawString(54, 770, "Journal of Things 12 (2026)")  # a running head, in the band
    sentences = [f"Sentence {n} of the running text says something plain." for n in range(60)]
    y = 700.0
    for sentence in sentences:
        canvas.drawString(54, y, sentence)
        y -= 11.0
    canvas.drawString(54, 42, "The last line reads as shown in Figure 1 of this page.")
    canvas.drawString(300, 20, "7")  # a page number, in the band
    canvas.showPage()
    canvas.save()
    document = extract_pdf(out.getvalue(), ExtractOptions(render=False))
    assert "The last line reads as shown in Figure 1" in document.markdown
    assert "Journal of Things" not in document.markdown
