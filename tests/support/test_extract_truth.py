"""Tests of the extraction ground truth and scoring (tests/support/extract_truth.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.extract_truth import (
    NO_CORPUS,
    PaperTruth,
    TruthFigure,
    aggregate,
    caption_body,
    iou,
    label_key,
    load_real_truth,
    load_sample_corpus,
    normalize,
    score_paper,
)

pytestmark = pytest.mark.unit


def _records() -> ModuleType:
    """`ldrt_core.extract.records`, loaded from its file if the package's other modules fail to
    import (they are written alongside; records.py depends on nothing)."""
    try:
        from ldrt_core.extract import records
    except ImportError:
        path = Path(__file__).resolve().parents[2] / "ldrt_core" / "extract" / "records.py"
        spec = importlib.util.spec_from_file_location("_ldrt_extract_records", path)
        assert spec is not None and spec.loader is not None
        records = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = records
        spec.loader.exec_module(records)
    return records


_rec = _records()
ExtractedDocument, ExtractedFigure = _rec.ExtractedDocument, _rec.ExtractedFigure
BBox = tuple[float, float, float, float]

BOX_1: BBox = (54.0, 66.0, 297.0, 210.0)
BOX_2: BBox = (54.0, 300.0, 558.0, 500.0)
TRUTH = PaperTruth(
    name="hand-made",
    pdf_path=Path("hand-made.pdf"),
    figures=[
        TruthFigure("Figure 1", 2, BOX_1, "Figure 1. Dose response.", ("See Fig. 1 for it.",)),
        TruthFigure("Figure 2", 3, BOX_2, "Figure 2. Cytokine levels after LDRT.", ()),
    ],
    has_boxes=True,
)


def predicted(
    label: str, page: int, bbox: BBox, caption: str, mentions: tuple[str, ...] = ()
) -> Any:
    number = label.split()[-1]
    return ExtractedFigure(label, number, page, bbox, caption, bbox, list(mentions))


def doc(*figures: Any) -> Any:
    return ExtractedDocument(pages=3, figures=list(figures), tables=[], markdown="")


def correct() -> list[Any]:
    return [
        predicted("Figure 1", 2, BOX_1, "Figure 1. Dose response.", ("See Fig. 1 for it.",)),
        predicted("Figure 2", 3, BOX_2, "Figure 2. Cytokine levels after LDRT."),
    ]


def counts(truth: PaperTruth, *figures: Any) -> tuple[int, int, int]:
    score = score_paper(truth, doc(*figures))
    return score.tp, score.fp, score.fn


def test_iou() -> None:
    assert iou(BOX_1, BOX_1) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (0, 0, 0, 0)) == 0.0


def test_a_correct_document_scores_one() -> None:
    score = score_paper(TRUTH, doc(*correct()))
    assert (score.tp, score.fp, score.fn) == (2, 0, 0)
    totals = aggregate([score])
    for key in ("precision", "recall", "f1", "caption_exact", "caption_similarity"):
        assert totals[key] == pytest.approx(1.0), key
    assert totals["mention_recall"] == pytest.approx(1.0)
    assert totals["false_figures_on_empty"] == 0


def test_wrong_page_is_a_false_positive_and_a_miss() -> None:
    first, second = correct()
    assert counts(TRUTH, dataclasses.replace(first, page=3), second) == (1, 1, 1)


def test_a_shifted_box_below_half_iou_does_not_match() -> None:
    first, second = correct()
    shifted = (BOX_1[0] + 150, BOX_1[1], BOX_1[2] + 150, BOX_1[3])
    assert iou(BOX_1, shifted) < 0.5
    assert counts(TRUTH, dataclasses.replace(first, bbox=shifted), second) == (1, 1, 1)
    nudged = (BOX_1[0] + 10, BOX_1[1] + 5, BOX_1[2] + 10, BOX_1[3] + 5)
    assert counts(TRUTH, dataclasses.replace(first, bbox=nudged), second) == (2, 0, 0)


def test_missing_and_extra_figures() -> None:
    first, second = correct()
    assert counts(TRUTH, first) == (1, 0, 1)
    extra = predicted("Figure 3", 3, (54, 600, 300, 700), "Figure 3. Not a figure.")
    assert counts(TRUTH, first, second, extra) == (2, 1, 0)
    assert counts(TRUTH, first, second, second) == (2, 1, 0)  # a duplicate is a false one
    totals = aggregate([score_paper(TRUTH, doc(first))])
    assert totals["recall"] == pytest.approx(0.5)
    assert totals["precision"] == pytest.approx(1.0)
    assert totals["caption_similarity"] == pytest.approx(0.5)  # 0 for the missed figure


def test_caption_scores() -> None:
    first, second = correct()
    spaced = dataclasses.replace(first, caption="Figure  1.\nDose re- sponse.")
    score = score_paper(TRUTH, doc(spaced, second))
    assert score.caption_exact == 2
    wrong = dataclasses.replace(first, caption="Figure 1. Dose response in mice.")
    score = score_paper(TRUTH, doc(wrong, second))
    assert score.caption_exact == 1
    assert 0.5 < score.mean_caption_sim < 1.0


def test_label_only_matching_and_figure_less_papers() -> None:
    first, second = correct()
    real = dataclasses.replace(
        TRUTH,
        figures=[dataclasses.replace(f, page=None, bbox=None, caption=caption_body(f.caption))
                 for f in TRUTH.figures],
        has_boxes=False,
        source="jats",
    )  # fmt: skip
    anywhere = dataclasses.replace(first, page=1, bbox=(0, 0, 1, 1), label="Fig. 1")
    score = score_paper(real, doc(anywhere, second))
    assert (score.tp, score.fp, score.fn, score.caption_exact) == (2, 0, 0, 2)
    empty = dataclasses.replace(TRUTH, figures=[], has_boxes=False, source="jats")
    totals = aggregate([score_paper(empty, doc(first)), score_paper(empty, doc())])
    assert totals["false_figures_on_empty"] == 1
    assert totals["empty_papers"] == 2
    assert totals["fp"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Low-dose radio- therapy", "Low-dose radiotherapy"),
        ("IL- 6 and TNF-\u03b1", "IL- 6 and TNF-\u03b1"),  # only before a lowercase letter
        ("\u201cquoted\u201d and \u2018single\u2019", "\"quoted\" and 'single'"),
        ("e\ufb03cacy of \ufb01brosis", "efficacy of fibrosis"),
        ("  a\n\tb   c ", "a b c"),
        ("10 \u22121", "10 -1"),
        ("ref 37 , but ( a )", "ref 37, but (a)"),
        ("\uff21\uff22", "AB"),  # NFKC
        ("log\u206110 \u200bx\u00adx", "log10 xx"),  # invisible characters
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("caption", "body"),
    [
        ("Figure 2. Dose response.", "Dose response."),
        ("Fig. 2: Dose response.", "Dose response."),
        ("FIGURE 2 | Dose response.", "Dose response."),
        ("FIGURE 2 Dose response.", "Dose response."),
        ("Figure S1. Dose response.", "Dose response."),
        ("Dose response.", "Dose response."),
    ],
)
def test_caption_body(caption: str, body: str) -> None:
    assert caption_body(caption) == body


def test_label_key() -> None:
    assert label_key("Fig. 1.") == "Figure 1"
    assert label_key("FIGURE 12") == "Figure 12"
    assert label_key("Figure 1.") == "Figure 1"
    assert label_key("Figure S1") == "Figure S1"
    assert label_key("Supplementary Figure 2") == "Figure S2"


def test_real_truth_loader() -> None:
    papers = load_real_truth()
    if not papers:
        pytest.skip(NO_CORPUS)
    by_source = {p.source for p in papers}
    assert by_source == {"jats", "tei", "deepfigures"}
    assert all(p.pdf_path.exists() for p in papers)
    empty = [p for p in papers if p.name == "hindawi_PMC4709779"]
    assert len(empty) == 1 and empty[0].figures == []
    for paper in papers:
        labels = [f.label for f in paper.figures]
        assert all(label.startswith("Figure ") for label in labels), paper.name
        assert len(labels) == len(set(labels)), paper.name
        if paper.name != "hindawi_PMC4738737":  # its figures are printed with a bare label
            assert all(f.caption.strip() for f in paper.figures), paper.name
    boxed = next(p for p in papers if p.source == "deepfigures")
    assert boxed.has_boxes and len(boxed.figures) == 4  # its two tables are left out
    first = boxed.figures[0]
    assert first.page == 2 and first.bbox == pytest.approx((319.68, 54.0, 558.0, 213.84))
    tei = next(p for p in papers if p.name == "arxiv_0908.0054_cmb")
    assert len(tei.figures) == 6 and not tei.has_boxes
    assert caption_body("Figure1") == ""  # the bare-label figures above score as exact
    assert "continuous line" in normalize(tei.figures[0].caption)  # "con-<lb/>tinuous"


def test_real_truth_loader_without_corpus(tmp_path: Path) -> None:
    assert load_real_truth(tmp_path / "absent") == []


def test_sample_truth_loader(tmp_path: Path) -> None:
    from ldrt_core.samples import write_sample_corpus

    samples = write_sample_corpus(tmp_path, papers=2, seed=7)
    papers = load_sample_corpus(tmp_path)
    assert [p.name for p in papers] == [s.paper_id for s in samples]
    for paper in papers:
        assert paper.has_boxes and paper.pdf_path.exists() and paper.figures
        for f in paper.figures:
            assert f.label == label_key(f.caption)
            assert f.page is not None and f.page >= 1
            assert f.bbox is not None and f.bbox[0] < f.bbox[2] and f.bbox[1] < f.bbox[3]
        assert any(f.mentions for f in paper.figures)
        # A perfect prediction built from the truth scores 1.0.
        perfect = [
            predicted(f.label, f.page or 1, f.bbox or (0, 0, 1, 1), f.caption, f.mentions)
            for f in paper.figures
        ]
        totals = aggregate([score_paper(paper, doc(*perfect))])
        assert totals["f1"] == totals["caption_exact"] == totals["mention_recall"] == 1.0


def test_real_truth_loader_on_a_tiny_corpus(tmp_path: Path) -> None:
    (tmp_path / "truth").mkdir()
    (tmp_path / "pdfs").mkdir()
    for name in ("a", "b", "c", "no-pdf"):
        if name != "no-pdf":
            (tmp_path / "pdfs" / f"{name}.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "truth" / "a.grobid-figure.tei.xml").write_text(
        '<tei xmlns="http://www.tei-c.org/ns/1.0"><text>'
        "<figure><head>Fig. <label>1</label>.</head><figDesc>Radio-<lb/>therapy of con-<lb/>"
        "tinuous <hi>dose</hi>.</figDesc></figure>"
        '<figure type="table"><head>Table <label>1</label></head><figDesc>T</figDesc></figure>'
        "</text></tei>",
        encoding="utf-8",
    )
    empty = {"pdf": "b.pdf", "n_figures": 0, "figures": []}
    (tmp_path / "truth" / "b.captions.json").write_text(json.dumps(empty), encoding="utf-8")
    box = {"x1": 100.0, "x2": 200.0, "y1": 50.0, "y2": 150.0}
    found = [
        {"figure_type": "Figure", "name": "1", "page": 0, "figure_boundary": box,
         "caption_text": "Figure 1: A plot."},
        {"figure_type": "Table", "name": "1", "page": 0, "figure_boundary": box,
         "caption_text": "Table 1: Numbers."},
    ]  # fmt: skip
    deep = json.dumps({"dpi": 100, "figures": found})
    (tmp_path / "truth" / "c.deepfigures-result.json").write_text(deep, encoding="utf-8")
    (tmp_path / "truth" / "no-pdf.captions.json").write_text(json.dumps(empty), encoding="utf-8")

    a, b, c = load_real_truth(tmp_path)
    assert (a.name, a.source, a.has_boxes) == ("a", "tei", False)
    assert [f.label for f in a.figures] == ["Figure 1"]
    assert normalize(a.figures[0].caption) == "Radiotherapy of continuous dose."
    assert (b.source, b.figures) == ("jats", [])
    assert (c.source, c.has_boxes, len(c.figures)) == ("deepfigures", True, 1)
    assert c.figures[0].page == 1
    assert c.figures[0].bbox == pytest.approx((72.0, 36.0, 144.0, 108.0))
    assert caption_body(c.figures[0].caption) == "A plot."
