"""A deterministic corpus of synthetic LDRT papers with ground truth, for tests and demos.

Input: an output folder, a paper count and a seed. Output, in the folder: `<paper_id>.pdf` (2-6
pages, one- and two-column, raster / vector / multi-panel figures with captions, tables) and
`<paper_id>.json` (the ground truth: figure and caption boxes, captions, mentions, tables, page
layouts), plus `metadata.jsonl` with one line of bibliographic metadata per paper. The same seed
always gives byte-identical files.

Ground-truth boxes are [x0, top, x1, bottom] in PDF points from the top-left corner of the page,
pages count from 1, as pdfplumber reports them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reportlab.lib.pagesizes import A4, LETTER

from ldrt_core.samples.content import (
    FigureSpec,
    Heading,
    LayoutMode,
    PaperContent,
    PaperFrame,
    Paragraph,
    ReferenceEntry,
    TableSpec,
    choose_frame,
    compose_paper,
)
from ldrt_core.samples.layout import (
    BODY_LEADING,
    BODY_SIZE,
    HEADING_LEADING,
    HEADING_SIZE,
    FlowLayout,
    Fonts,
    Layout,
    Line,
    PageGeometry,
    PagePlan,
    Run,
    tokens,
)
from ldrt_core.samples.render import register_fonts, render_pdf

MIN_PAGES: Final = 2
MAX_PAGES: Final = 6
# Multiples of a paper's own text density to try, in order, until its length is in range.
DENSITY_FACTORS: Final = (1.0, 0.75, 0.55, 0.4, 0.3, 1.5, 2.0)
PARAGRAPH_INDENT: Final = 12.0


@dataclass(frozen=True)
class SamplePaper:
    paper_id: str
    pdf_path: Path
    truth_path: Path
    title: str
    doi: str
    year: int
    publication_date: str
    authors: list[str]
    abstract: str
    venue: str


def write_sample_corpus(
    out_dir: Path,
    papers: int = 8,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[SamplePaper]:
    """Write `papers` sample papers, their ground truth and `metadata.jsonl` into `out_dir`.

    `progress(done, total)` is called after each paper.
    """
    if papers < 1:
        raise ValueError(f"papers must be at least 1, got {papers}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fonts = register_fonts()
    samples = []
    for index in range(papers):
        samples.append(write_paper(out_dir, index, seed, fonts))
        if progress is not None:
            progress(index + 1, papers)
    lines = [json.dumps(metadata_record(sample), ensure_ascii=False) for sample in samples]
    (out_dir / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return samples


def metadata_record(sample: SamplePaper) -> dict[str, Any]:
    return {
        "paper_id": sample.paper_id,
        "title": sample.title,
        "doi": sample.doi,
        "year": sample.year,
        "publication_date": sample.publication_date,
        "authors": sample.authors,
        "abstract": sample.abstract,
        "venue": sample.venue,
        "pdf": sample.pdf_path.name,
    }


def write_paper(out_dir: Path, index: int, seed: int, fonts: Fonts) -> SamplePaper:
    paper_id = f"ldrt-sample-{seed}-{index + 1:02d}"
    frame_rng = random.Random(f"{paper_id}:frame")
    frame = choose_frame(frame_rng, index, seed)
    width, height = frame_rng.choice((LETTER, A4))
    geometry = PageGeometry(width=float(width), height=float(height))
    content, pages = fit_pages(paper_id, frame, geometry, fonts)
    pdf_path, truth_path = out_dir / f"{paper_id}.pdf", out_dir / f"{paper_id}.json"
    render_pdf(pdf_path, content, pages, geometry, fonts)
    truth = ground_truth(paper_id, content, pages)
    truth_path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return SamplePaper(
        paper_id=paper_id,
        pdf_path=pdf_path,
        truth_path=truth_path,
        title=content.title,
        doi=content.doi,
        year=content.year,
        publication_date=content.publication_date,
        authors=list(content.authors),
        abstract=content.abstract,
        venue=content.venue,
    )


def fit_pages(
    paper_id: str, frame: PaperFrame, geometry: PageGeometry, fonts: Fonts
) -> tuple[PaperContent, list[PagePlan]]:
    """Compose and lay out the paper, writing less (or more) text until its length is in range."""
    for factor in DENSITY_FACTORS:
        rng = random.Random(f"{paper_id}:content")
        content = compose_paper(frame, rng, frame.density * factor)
        pages = lay_out(content, geometry, fonts, page_layouts(content.layout_mode, frame.index))
        if MIN_PAGES <= len(pages) <= MAX_PAGES:
            return content, pages
    raise RuntimeError(f"{paper_id}: no text density gives {MIN_PAGES}-{MAX_PAGES} pages")


def page_layouts(mode: LayoutMode, index: int) -> Callable[[int], Layout]:
    """The layout of each page number. Mixed papers either open one-column and then switch to
    two columns, or alternate page by page."""

    def layout_of_page(number: int) -> Layout:
        if mode != "mixed":
            return mode
        if index % 2 == 0:
            return "one-column" if number == 1 else "two-column"
        return "two-column" if number % 2 == 1 else "one-column"

    return layout_of_page


def lay_out(
    content: PaperContent, geometry: PageGeometry, fonts: Fonts, layouts: Callable[[int], Layout]
) -> list[PagePlan]:
    flow = FlowLayout(geometry, fonts, layouts)
    add_title_block(flow, content, fonts)
    for block in content.body:
        match block:
            case Heading(text=text):
                flow.add_text(
                    tokens(text, fonts.bold),
                    HEADING_SIZE,
                    HEADING_LEADING,
                    space_before=8.0,
                    space_after=2.0,
                    keep_lines=2,
                )
            case Paragraph():
                flow.add_text(
                    tokens(block.text, fonts.regular),
                    BODY_SIZE,
                    BODY_LEADING,
                    indent=PARAGRAPH_INDENT if block.indent else 0.0,
                    space_after=3.0,
                )
            case ReferenceEntry(text=text):
                flow.add_text(tokens(text, fonts.regular), 8.0, 10.0, hanging=10.0, space_after=2.0)
            case FigureSpec() | TableSpec():
                flow.add_float(block)
    pages = flow.finish()
    for page in pages:
        page.lines += running_lines(content, page.number, geometry, fonts)
    return pages


def add_title_block(flow: FlowLayout, content: PaperContent, fonts: Fonts) -> None:
    regular, bold = fonts.regular, fonts.bold
    flow.add_text(tokens(content.title, bold), 16.0, 19.0, space_after=6.0)
    flow.add_text(tokens(", ".join(content.authors), regular), 10.0, 13.0, space_after=1.0)
    flow.add_text(tokens(content.affiliation, regular), 8.0, 10.0, space_after=1.0)
    published = f"{content.venue} · Published {content.publication_date} · doi:{content.doi}"
    flow.add_text(tokens(published, regular), 8.0, 10.0, space_after=8.0)
    flow.add_text(tokens("Abstract", bold), 10.0, 13.0)
    flow.add_text(tokens(content.abstract, regular), 9.0, 11.5, space_after=4.0)
    keywords = tokens("Keywords:", bold) + tokens("; ".join(content.keywords), regular)
    flow.add_text(keywords, 8.0, 10.0)
    flow.start_body(gap=14.0)


def running_lines(
    content: PaperContent, number: int, geometry: PageGeometry, fonts: Fonts
) -> list[Line]:
    """The running header (venue left, first author right) and the page number below the body."""
    size = 7.5
    surname = content.authors[0].split()[-1]
    right_text = f"{surname} et al. ({content.year})"
    right_x = geometry.width - geometry.margin_x - fonts.width(right_text, fonts.regular, size)
    page_text = str(number)
    page_x = (geometry.width - fonts.width(page_text, fonts.regular, size)) / 2
    return [
        Line(
            geometry.margin_x, geometry.header_baseline, (Run(content.venue, fonts.regular, size),)
        ),
        Line(right_x, geometry.header_baseline, (Run(right_text, fonts.regular, size),)),
        Line(page_x, geometry.footer_baseline, (Run(page_text, fonts.regular, size),)),
    ]


def ground_truth(paper_id: str, content: PaperContent, pages: list[PagePlan]) -> dict[str, Any]:
    figures = [figure for page in pages for figure in page.figures]
    tables = [table for page in pages for table in page.tables]
    return {
        "paper_id": paper_id,
        "pages": len(pages),
        "layout": [page.layout for page in pages],
        "figures": [
            {
                "label": f"Figure {f.spec.number}",
                "number": f.spec.number,
                "page": f.page,
                "bbox": f.box.rounded(),
                "caption": " ".join(line.text for line in f.caption_lines),
                "caption_bbox": f.caption_box.rounded(),
                "kind": f.spec.kind,
                "panels": list(f.spec.panels),
                "spans_columns": f.spans_columns,
                "mentions": [m.sentence for m in content.mentions if f.spec.number in m.numbers],
            }
            for f in figures
        ],
        "tables": [
            {
                "label": f"Table {t.spec.number}",
                "number": t.spec.number,
                "page": t.page,
                "bbox": t.box.rounded(),
                "caption": " ".join(line.text for line in t.caption_lines),
                "caption_bbox": t.caption_box.rounded(),
            }
            for t in tables
        ],
    }
