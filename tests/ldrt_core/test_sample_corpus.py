"""The sample corpus: deterministic, and its ground truth matches what pdfplumber reads back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfplumber
import pytest

from ldrt_core.samples import SamplePaper, write_sample_corpus
from ldrt_core.samples.layout import (
    BODY_SIZE,
    CAPTION_SIZE,
    HEADING_SIZE,
    TABLE_SIZE,
)

REPO = Path(__file__).resolve().parents[2]
CAPTION_START = re.compile(r"^(Figure|Fig\.|FIGURE) (\d+)(\.?) ")
FIGURE_REF = re.compile(r"\bFig(?:ure)?s?\.?\s+(\d+)[A-D]?(?:\s+and\s+(\d+))?")
# Drawn graphics may sit this far outside a box (stroke ends, rounding to 0.01 pt).
TOLERANCE = 1.5
# A figure box is tight: its drawn content comes at least this close to every edge.
TIGHTNESS = 6.0
TEXT_SIZES = {BODY_SIZE, CAPTION_SIZE, HEADING_SIZE, TABLE_SIZE}

Bbox = tuple[float, float, float, float]
Sequence4 = Bbox | list[float]


@dataclass(frozen=True)
class ParsedPage:
    """What pdfplumber reads from one page, plus texts extracted inside the truth's boxes."""

    number: int
    width: float
    height: float
    chars: list[dict[str, Any]]
    images: list[Bbox]
    graphics: list[Bbox]  # rects, lines and curves
    text: str  # the whole page
    caption_texts: dict[str, str]  # label -> text inside its caption box
    body_text: str  # outside every float and the running header/footer, in reading order


@dataclass(frozen=True)
class ParsedPaper:
    truth: dict[str, Any]
    pages: list[ParsedPage]


def normalise(text: str) -> str:
    return " ".join(text.split())


def box_of(obj: dict[str, Any]) -> Bbox:
    return (float(obj["x0"]), float(obj["top"]), float(obj["x1"]), float(obj["bottom"]))


def inside(inner: Bbox, outer: Sequence4, tol: float = TOLERANCE) -> bool:
    return (
        inner[0] >= outer[0] - tol
        and inner[1] >= outer[1] - tol
        and inner[2] <= outer[2] + tol
        and inner[3] <= outer[3] + tol
    )


def overlaps(a: Sequence4, b: Sequence4, margin: float = 0.1) -> bool:
    return (
        a[0] < b[2] - margin
        and b[0] < a[2] - margin
        and a[1] < b[3] - margin
        and b[1] < a[3] - margin
    )


def float_regions(truth: dict[str, Any], page: int) -> list[list[float]]:
    floats = [f for f in truth["figures"] + truth["tables"] if f["page"] == page]
    return [f["bbox"] for f in floats] + [f["caption_bbox"] for f in floats]


def body_text(page: Any, truth: dict[str, Any]) -> str:
    """Body paragraphs in reading order: on two-column pages the left half, then the right half.

    Only body-size characters count, which leaves out the full-width title block of page 1, the
    running header and footer, and the references.
    """
    regions = float_regions(truth, page.page_number)

    def is_body(obj: dict[str, Any]) -> bool:
        if obj["object_type"] != "char":
            return True
        if round(obj["size"], 2) != BODY_SIZE:
            return False
        return not any(overlaps(box_of(obj), region) for region in regions)

    body = page.filter(is_body)
    if truth["layout"][page.page_number - 1] == "one-column":
        return str(body.extract_text())
    middle = float(page.width) / 2
    halves = [(0, 0, middle, page.height), (middle, 0, page.width, page.height)]
    return " ".join(str(body.crop(half).extract_text()) for half in halves)


def parse_paper(pdf_path: Path, truth_path: Path) -> ParsedPaper:
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    pages = []
    with pdfplumber.open(pdf_path) as pdf:
        for page in pdf.pages:
            floats = [
                f for f in truth["figures"] + truth["tables"] if f["page"] == page.page_number
            ]
            pages.append(
                ParsedPage(
                    number=page.page_number,
                    width=float(page.width),
                    height=float(page.height),
                    chars=list(page.chars),
                    images=[box_of(i) for i in page.images],
                    graphics=[box_of(g) for g in page.rects + page.lines + page.curves],
                    text=normalise(page.extract_text()),
                    caption_texts={
                        f["label"]: normalise(page.within_bbox(f["caption_bbox"]).extract_text())
                        for f in floats
                    },
                    body_text=body_text(page, truth),
                )
            )
    return ParsedPaper(truth=truth, pages=pages)


@dataclass(frozen=True)
class Corpus:
    folder: Path
    papers: list[SamplePaper]
    parsed: list[ParsedPaper]


def build_corpus(folder: Path, papers: int, seed: int) -> Corpus:
    samples = write_sample_corpus(folder, papers=papers, seed=seed)
    parsed = [parse_paper(s.pdf_path, s.truth_path) for s in samples]
    return Corpus(folder, samples, parsed)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("samples"), papers=8, seed=0)


# Checks of one paper's truth against its PDF, shared by the seed-0 tests and the multi-seed one.


def check_pages(paper: ParsedPaper) -> None:
    truth = paper.truth
    assert len(paper.pages) == truth["pages"]
    assert 2 <= truth["pages"] <= 6
    assert len(truth["layout"]) == truth["pages"]
    assert set(truth["layout"]) <= {"one-column", "two-column"}


def check_numbering(paper: ParsedPaper) -> None:
    figures, tables = paper.truth["figures"], paper.truth["tables"]
    assert 2 <= len(figures) <= 5
    assert len(tables) <= 2
    for floats, word in ((figures, "Figure"), (tables, "Table")):
        numbers = [f["number"] for f in floats]
        assert numbers == list(range(1, len(floats) + 1))
        assert [f["label"] for f in floats] == [f"{word} {n}" for n in numbers]
        pages = [f["page"] for f in floats]
        assert pages == sorted(pages), "floats appear in number order"


def check_captions(paper: ParsedPaper) -> None:
    for figure in paper.truth["figures"]:
        page = paper.pages[figure["page"] - 1]
        assert page.caption_texts[figure["label"]] == figure["caption"]
        start = CAPTION_START.match(figure["caption"])
        assert start, figure["caption"]
        assert int(start.group(2)) == figure["number"]
        assert (start.group(1) == "FIGURE") == (start.group(3) == "")
        for letter in figure["panels"]:
            assert f"({letter}) " in figure["caption"]
    for table in paper.truth["tables"]:
        page = paper.pages[table["page"] - 1]
        assert page.caption_texts[table["label"]] == table["caption"]
        assert table["caption"].startswith(f"{table['label']}. ")
        assert table["caption_bbox"][3] <= table["bbox"][1], "table captions sit above"


def graphics_inside(page: ParsedPage, bbox: list[float]) -> list[Bbox]:
    return [g for g in page.graphics + page.images if inside(g, bbox)]


def check_figure_content(paper: ParsedPaper) -> None:
    for figure in paper.truth["figures"]:
        page, bbox = paper.pages[figure["page"] - 1], figure["bbox"]
        images = [i for i in page.images if inside(i, bbox)]
        vectors = [g for g in page.graphics if inside(g, bbox)]
        if figure["kind"] == "raster":
            assert images and not vectors
        elif figure["kind"] == "vector":
            assert len(vectors) >= 8 and not images
        else:
            assert 2 <= len(figure["panels"]) <= 4
            letters = [
                c["text"]
                for c in page.chars
                if inside(box_of(c), bbox) and "Bold" in c["fontname"] and c["size"] > 8.5
            ]
            assert letters == figure["panels"]
        content = [*images, *vectors] + [
            box_of(c) for c in page.chars if inside(box_of(c), bbox, 0.0)
        ]
        reach = (
            min(b[0] for b in content) - bbox[0],
            min(b[1] for b in content) - bbox[1],
            bbox[2] - max(b[2] for b in content),
            bbox[3] - max(b[3] for b in content),
        )
        assert max(reach) <= TIGHTNESS, f"{figure['label']} box is loose by {reach}"


def check_every_graphic_belongs_to_a_float(paper: ParsedPaper) -> None:
    for page in paper.pages:
        boxes = [
            f["bbox"]
            for f in paper.truth["figures"] + paper.truth["tables"]
            if f["page"] == page.number
        ]
        for graphic in page.graphics + page.images:
            assert any(inside(graphic, box) for box in boxes), (page.number, graphic)


def check_boxes_keep_clear(paper: ParsedPaper) -> None:
    floats = paper.truth["figures"] + paper.truth["tables"]
    for figure in paper.truth["figures"]:
        page, bbox = paper.pages[figure["page"] - 1], figure["bbox"]
        assert not overlaps(bbox, figure["caption_bbox"])
        for char in page.chars:
            box = box_of(char)
            if overlaps(box, bbox):
                assert inside(box, bbox, 0.5), ("text straddles the figure box", char["text"])
                assert round(char["size"], 2) not in TEXT_SIZES, "body text inside a figure"
            if overlaps(box, figure["caption_bbox"]):
                assert inside(box, figure["caption_bbox"], 0.0)
                assert round(char["size"], 2) == CAPTION_SIZE
    for i, a in enumerate(floats):
        for b in floats[i + 1 :]:
            if a["page"] == b["page"]:
                for box_a in (a["bbox"], a["caption_bbox"]):
                    for box_b in (b["bbox"], b["caption_bbox"]):
                        assert not overlaps(box_a, box_b), (a["label"], b["label"])


def check_mentions(paper: ParsedPaper) -> None:
    text = normalise(" ".join(page.body_text for page in paper.pages))
    for figure in paper.truth["figures"]:
        assert figure["mentions"], f"{figure['label']} is never mentioned"
        for mention in figure["mentions"]:
            assert mention in text
            cited = {int(n) for ref in FIGURE_REF.findall(mention) for n in ref if n}
            assert figure["number"] in cited, mention


def check_columns(paper: ParsedPaper) -> None:
    """Two-column pages keep a gutter at the middle; one-column body lines cross it."""
    for page in paper.pages[1:]:
        regions = float_regions(paper.truth, page.number)
        body = [
            box_of(c)
            for c in page.chars
            if round(c["size"], 2) == BODY_SIZE and not any(overlaps(box_of(c), r) for r in regions)
        ]
        middle = page.width / 2
        straddling = [b for b in body if b[0] < middle < b[2]]
        if paper.truth["layout"][page.number - 1] == "two-column":
            assert not straddling
        elif len(body) > 300:
            assert straddling


ALL_CHECKS = (
    check_pages,
    check_numbering,
    check_captions,
    check_figure_content,
    check_every_graphic_belongs_to_a_float,
    check_boxes_keep_clear,
    check_mentions,
    check_columns,
)


@pytest.mark.unit
@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_truth_matches_pdf(corpus: Corpus, check: Any) -> None:
    for paper in corpus.parsed:
        check(paper)


@pytest.mark.unit
def test_files_and_metadata(corpus: Corpus) -> None:
    lines = (corpus.folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(corpus.papers) == 8
    for record, sample in zip(records, corpus.papers, strict=True):
        assert sample.pdf_path == corpus.folder / record["pdf"]
        assert sample.truth_path == sample.pdf_path.with_suffix(".json")
        assert record == {
            "paper_id": sample.paper_id,
            "title": sample.title,
            "doi": sample.doi,
            "year": sample.year,
            "publication_date": sample.publication_date,
            "authors": sample.authors,
            "abstract": sample.abstract,
            "venue": sample.venue,
            "pdf": f"{sample.paper_id}.pdf",
        }
        assert sample.publication_date.startswith(f"{sample.year}-")
        assert 2 <= len(sample.authors) <= 6
    assert len({s.paper_id for s in corpus.papers}) == len({s.doi for s in corpus.papers}) == 8
    for sample, parsed in zip(corpus.papers, corpus.parsed, strict=True):
        assert parsed.truth["paper_id"] == sample.paper_id
        first_page = parsed.pages[0].text
        assert sample.title in first_page
        assert f"doi:{sample.doi}" in first_page


@pytest.mark.unit
def test_corpus_covers_every_feature(corpus: Corpus) -> None:
    truths = [paper.truth for paper in corpus.parsed]
    figures = [f for t in truths for f in t["figures"]]
    assert {layout for t in truths for layout in t["layout"]} == {"one-column", "two-column"}
    assert {f["kind"] for f in figures} == {"raster", "vector", "multipanel"}
    assert any(f["spans_columns"] for f in figures)
    assert any(not f["spans_columns"] for f in figures)
    assert any(
        count >= 2 for t in truths for count in Counter(f["page"] for f in t["figures"]).values()
    )
    assert any(t["tables"] for t in truths)
    styles = {CAPTION_START.match(f["caption"]).group(1) for f in figures}  # type: ignore[union-attr]
    assert styles == {"Figure", "Fig.", "FIGURE"}
    assert any(len(f["caption"]) > 200 for f in figures), "some captions run several lines"


@pytest.mark.unit
def test_same_seed_gives_identical_files(corpus: Corpus, tmp_path: Path) -> None:
    again = write_sample_corpus(tmp_path / "again", papers=2, seed=0)
    for sample, original in zip(again, corpus.papers, strict=False):
        assert sample.pdf_path.read_bytes() == original.pdf_path.read_bytes()
        assert sample.truth_path.read_bytes() == original.truth_path.read_bytes()
    # A fresh interpreter (another hash seed, no fonts registered yet) writes the same bytes.
    code = (
        "import sys; from pathlib import Path; from ldrt_core.samples import write_sample_corpus;"
        "write_sample_corpus(Path(sys.argv[1]), papers=1, seed=0)"
    )
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-c", code, str(fresh)], cwd=REPO, check=True)
    for name in (f"{corpus.papers[0].paper_id}.pdf", f"{corpus.papers[0].paper_id}.json"):
        assert (fresh / name).read_bytes() == (corpus.folder / name).read_bytes()


@pytest.mark.unit
def test_other_seed_gives_other_papers(corpus: Corpus, tmp_path: Path) -> None:
    other = write_sample_corpus(tmp_path, papers=2, seed=1)
    for sample, original in zip(other, corpus.papers, strict=False):
        assert sample.paper_id != original.paper_id
        assert sample.pdf_path.read_bytes() != original.pdf_path.read_bytes()
    assert [s.abstract for s in other] != [s.abstract for s in corpus.papers[:2]]


@pytest.mark.unit
@pytest.mark.parametrize(("papers", "seed"), [(0, 0), (1, -1)])
def test_rejects_impossible_arguments(tmp_path: Path, papers: int, seed: int) -> None:
    with pytest.raises(ValueError):
        write_sample_corpus(tmp_path, papers=papers, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_truth_matches_pdf_for_other_seeds(tmp_path: Path, seed: int) -> None:
    for paper in build_corpus(tmp_path, papers=8, seed=seed).parsed:
        for check in ALL_CHECKS:
            check(paper)
