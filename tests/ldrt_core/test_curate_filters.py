"""The caption/figure filters, their registry and chain, and the perceptual image hashes."""

# Greek letters and CJK text in the captions below are meant.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ldrt_core.curate.filters import (
    DEFAULT_CHAIN,
    LDRT_LEXICON,
    ChainResult,
    DuplicateImages,
    PairFilter,
    Relevance,
    build_chain,
    build_filter,
    filter_names,
    register,
    run_chain,
)
from ldrt_core.curate.imagehash import _dct_matrix, dhash, hamming, phash, popcount
from ldrt_core.curate.records import Decision, PairCandidate
from ldrt_core.extract.labels import caption_body
from tests.support.extract_truth import CORPUS_DIR, NO_CORPUS

pytestmark = pytest.mark.unit

GOOD_CAPTION = (
    "Figure 2. Effect of low-dose radiation therapy (0.5 Gy) on TNF-α levels in the knee joints "
    "of arthritic mice. Data are mean ± SD of five animals per group."
)
LDRT_TITLE = "Low-dose radiation therapy for osteoarthritis of the knee"


# --- images ---------------------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def chart(width: int = 400, height: int = 300, seed: int = 0, grey: bool = False) -> Image.Image:
    """Axes and coloured (or grey) bars on white."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(40, 20), (40, height - 30)], fill="black", width=2)
    draw.line([(40, height - 30), (width - 10, height - 30)], fill="black", width=2)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    bars = 6
    step = (width - 70) // bars
    for i in range(bars):
        top = int(rng.integers(40, height - 60))
        fill = (90, 90, 90) if grey else colours[i % len(colours)]
        draw.rectangle([50 + i * step, top, 50 + i * step + step - 10, height - 31], fill=fill)
    return image


def microscopy(width: int = 256, height: int = 256, seed: int = 0) -> Image.Image:
    """Smooth random blobs plus pixel noise, tinted green: a fluorescence-micrograph stand-in."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((height // 16, width // 16)) * 255).astype(np.uint8))
    blobs = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    grey = np.clip(blobs + rng.normal(0, 20, (height, width)), 0, 255)
    rgb = np.stack([grey * 0.3, grey, grey * 0.5], axis=2).astype(np.uint8)
    return Image.fromarray(rgb)


def table(width: int = 600, height: int = 300, grid: bool = False) -> Image.Image:
    """White page, three booktabs rules (or a full grid), rows of text-like dark blocks."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    rows = 6
    pitch = (height - 40) // rows
    rules = range(20, height - 10, pitch) if grid else (20, 20 + pitch, height - 20)
    for y in rules:
        draw.line([(10, y), (width - 10, y)], fill="black", width=max(1, width // 600))
    if grid:
        for x in range(10, width, (width - 20) // 4):
            draw.line([(x, 20), (x, rules[-1])], fill="black", width=1)
    rng = np.random.default_rng(1)
    cell = (width - 20) // 4
    glyph = max(6, width // 60)
    for row in range(rows):
        y = 28 + row * pitch
        for col in range(4):
            x = 20 + col * cell
            for k in range(int(rng.integers(2, 5))):
                left = x + k * int(glyph * 1.6)
                draw.rectangle([left, y, left + glyph, y + glyph // 2 + 3], fill="black")
    return image


def equation(width: int = 480, height: int = 100) -> Image.Image:
    """Sparse black glyph blocks and a short fraction bar on a white strip."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x = 30
    for k in range(12):
        draw.rectangle([x, 40, x + 9, 56], fill="black")
        x += 16 + (k % 3) * 6
    draw.line([(280, 48), (380, 48)], fill="black", width=1)
    return image


def framed_plot(width: int = 400, height: int = 300, reference: bool = False) -> Image.Image:
    """A black-and-white line plot in a box frame: long horizontal lines, but not a table."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([40, 20, width - 10, height - 30], outline="black", width=1)
    if reference:
        draw.line([(40, 100), (width - 10, 100)], fill="black", width=1)
    points = [(40 + i * 20, 150 + int(60 * np.sin(i / 3))) for i in range((width - 50) // 20)]
    draw.line(points, fill="black", width=2)
    return image


def jpeg_resized(image: Image.Image, scale: float = 0.9) -> Image.Image:
    """The same figure as a journal might re-serve it: JPEG, then PNG at 90% size."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=75)
    again = Image.open(io.BytesIO(out.getvalue())).convert("RGB")
    smaller = again.resize((int(image.width * scale), int(image.height * scale)))
    return Image.open(io.BytesIO(png(smaller)))


def pair(
    key: str = "doc:1",
    caption: str = GOOD_CAPTION,
    image: Image.Image | bytes | None = None,
    title: str = LDRT_TITLE,
    mentions: Sequence[str] = (),
) -> PairCandidate:
    data = image if isinstance(image, bytes) else png(image if image is not None else chart())
    return PairCandidate(
        pair_key=key,
        paper_id="paper",
        paper_title=title,
        label="Figure 2",
        caption=caption,
        image=data,
        image_sha256=hashlib.sha256(data).hexdigest(),
        mentions=tuple(mentions),
    )


def decide(name: str, pairs: Sequence[PairCandidate], **params: Any) -> list[Decision]:
    return build_filter(name, params).apply(pairs)


def one(name: str, candidate: PairCandidate, **params: Any) -> Decision:
    (decision,) = decide(name, [candidate], **params)
    return decision


# --- imagehash ------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_function", [phash, dhash])
@pytest.mark.parametrize("make", [chart, microscopy, table], ids=["chart", "micro", "table"])
def test_hash_survives_reencoding_and_rescaling(hash_function: Any, make: Any) -> None:
    image = make()
    reencoded = Image.open(io.BytesIO(png(image)))
    assert hash_function(reencoded) == hash_function(image)
    assert hamming(hash_function(jpeg_resized(image)), hash_function(image)) <= 6


@pytest.mark.parametrize("hash_function", [phash, dhash])
def test_different_figures_hash_far_apart(hash_function: Any) -> None:
    assert hamming(hash_function(microscopy(seed=1)), hash_function(microscopy(seed=2))) > 10
    assert hamming(hash_function(chart()), hash_function(microscopy())) > 10


def test_hashes_fit_64_bits_and_hamming_counts_bits() -> None:
    assert 0 <= phash(chart()) < 2**63  # 63 AC coefficients
    assert 0 <= dhash(chart()) < 2**64
    assert hamming(0b1011, 0b0010) == 2
    assert hamming(2**64 - 1, 0) == 64
    with pytest.raises(ValueError, match="size"):
        phash(chart(), size=9)


def test_dct_matrix_is_orthonormal() -> None:
    basis = _dct_matrix(32)
    np.testing.assert_allclose(basis @ basis.T, np.eye(32), atol=1e-10)


def test_transparent_background_hashes_like_white() -> None:
    opaque = chart()
    transparent = opaque.convert("RGBA")
    alpha = np.where(np.asarray(opaque.convert("L")) > 250, 0, 255).astype(np.uint8)
    transparent.putalpha(Image.fromarray(alpha))
    assert hamming(phash(transparent), phash(opaque)) <= 2


# --- caption text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "body"),
    [
        ("Figure 2. Dose response.", "Dose response."),
        ("Fig. 2: Dose response.", "Dose response."),
        ("FIGURE 2 | Dose response.", "Dose response."),
        ("Fig 12 — Dose response.", "Dose response."),
        ("Supplementary Figure S1. Dose response.", "Dose response."),
        ("Extended Data Fig. 4a. Dose response.", "Dose response."),
        ("Figure IV. Dose response.", "Dose response."),
        ("Figure 3", ""),
        ("Figure\n2.  Dose\n response.", "Dose response."),
        ("Figure in which dose varies.", "Figure in which dose varies."),
        ("Table 1. Patient characteristics.", "Table 1. Patient characteristics."),
        ("Dose response without a label.", "Dose response without a label."),
    ],
)
def test_caption_body_strips_the_label(caption: str, body: str) -> None:
    assert caption_body(caption) == body


@pytest.mark.parametrize(
    ("caption", "kept"),
    [
        (GOOD_CAPTION, True),
        ("Figure 2. Dose response after pelvic irradiation.", True),  # five words
        ("Figure 2. Dose response after pelvic irradiation", True),
        ("Figure 2. Dose response after", False),  # the label does not count
        ("Figure 2.", False),
        (" ".join(["dose"] * 501), False),
        (" ".join(["dose"] * 500), True),
    ],
)
def test_caption_length(caption: str, kept: bool) -> None:
    decision = one("caption_length", pair(caption=caption))
    assert decision.kept is kept
    if not kept:
        assert decision.reason is not None and "words" in decision.reason


def test_caption_length_bounds_are_parameters() -> None:
    assert one("caption_length", pair(caption="Fig. 1. Dose"), min_words=1).kept
    assert not one("caption_length", pair(), max_words=10).kept


@pytest.mark.parametrize(
    ("caption", "kept"),
    [
        ("(A)", False),
        ("A", False),
        ("(a) (b)", False),
        ("(a)(b)(c)", False),
        ("A. B. C-D", False),
        ("(i) (ii) (iii)", False),
        ("Figure 3", False),
        ("", False),
        ("Fig. 2.", False),
        ("Figure 2. (A) and (B)", False),
        ("Figure 4 (continued)", False),
        ("Supplementary Figure S2. Panels A-C", False),
        ("Figure 1. (A) Control mice; (B) irradiated mice.", True),
        ("(A) Dose response curve", True),
        ("TNF-α", True),
        (GOOD_CAPTION, True),
    ],
)
def test_panel_label_only(caption: str, kept: bool) -> None:
    assert one("panel_label_only", pair(caption=caption)).kept is kept


@pytest.mark.parametrize(
    ("caption", "kept"),
    [
        (GOOD_CAPTION, True),
        ("Figure 3. Lymphocyte counts after 50 μGy whole-body exposure; TNF-α and IL-1β.", True),
        ("Figure 4. (A) Control. (B) 0.5 Gy. (C) 1.0 Gy.", True),  # too short to judge
        ("Dose–response of IFN-γ, TNF-α, IL-1β, IL-6 and IL-10 in irradiated mice.", True),
        (
            "Abbildung 2. Wirkung der niedrig dosierten Strahlentherapie auf die Gelenke der "
            "Mäuse. Die Daten sind Mittelwerte von fünf Tieren pro Gruppe.",
            False,
        ),
        (
            "Figure 2. Effet de la radiothérapie à faible dose sur les articulations des souris. "
            "Les données sont des moyennes de cinq animaux par groupe.",
            False,
        ),
        (
            "Figura 2. Efecto de la radioterapia de dosis baja en las articulaciones de los "
            "ratones. Los datos son medias de cinco animales por grupo.",
            False,
        ),
        ("图2. 低剂量放射治疗对小鼠膝关节炎症的影响。数据为平均值±标准差。", False),
        (
            "Рисунок 2. Влияние низкодозовой лучевой терапии на суставы мышей у пяти животных.",
            False,
        ),
    ],
)
def test_english(caption: str, kept: bool) -> None:
    decision = one("english", pair(caption=caption))
    assert decision.kept is kept, decision.reason
    if not kept:
        assert decision.reason is not None and decision.reason.startswith("not English")


def test_english_drops_keyword_lists_at_a_strict_share() -> None:
    caption = "Figure 1. Tumour volume growth curves mice. Spleen weight lymphocyte counts day 7."
    assert one("english", pair(caption=caption), min_share=0.0).kept
    assert not one("english", pair(caption=caption), min_share=1.0).kept


# --- relevance ------------------------------------------------------------------------------


KNEE = "Figure 1. Knee cartilage thickness at week 4."


@pytest.mark.parametrize(
    ("caption", "title", "mentions", "kept"),
    [
        (GOOD_CAPTION, "", (), True),
        ("Figure 1. Knee cartilage thickness after 0.5 Gy.", "", (), True),  # gy 1 + ...
        (KNEE, LDRT_TITLE, (), True),  # title 0.5 x 5.5
        (KNEE, "Knee cartilage", ("Figure 1 shows the dose",), False),  # mention 0.5 x 1
        (KNEE, "", ("after irradiation of the knee",), True),  # mention 0.5 x 2
        ("Figure 5. Quarterly stock prices of three retailers.", "Retail economics", (), False),
        ("Figure 5. Cytokines.", "", (), True),  # plural of "cytokine"
        ("Figure 5. Measured in mGy per hour.", "", (), True),  # mgy 1, and no "gy" inside it
        ("Figure 5. Gyroscope drift over time.", "", (), False),  # no "gy" inside a word
    ],
)  # fmt: skip
def test_relevance(caption: str, title: str, mentions: tuple[str, ...], kept: bool) -> None:
    decision = one("relevance", pair(caption=caption, title=title, mentions=mentions))
    assert decision.kept is kept, decision.reason
    if not kept:
        assert decision.reason is not None and "score" in decision.reason


def test_relevance_scores_distinct_terms_by_source() -> None:
    relevance = Relevance()
    patterns = [
        (re.compile(rf"\b{term}\b", re.IGNORECASE), weight)
        for term, weight in {"dose": 1.0, "radiation": 1.5}.items()
    ]
    candidate = pair(caption="Dose dose dose.", title="Radiation", mentions=("dose",))
    assert relevance.score(candidate, patterns) == pytest.approx(1.0 + 0.5 * 1.0 + 0.5 * 1.5)
    drop = one("relevance", pair(caption="Figure 1. Dose.", title=""), threshold=2.0)
    assert drop.reason == "low relevance: score 1.00 < 2"


def test_relevance_lexicon_can_be_replaced() -> None:
    candidate = pair(caption="Figure 1. Quarterly stock prices.", title="")
    assert not one("relevance", candidate).kept
    assert one("relevance", candidate, lexicon={"stock price": 2}).kept
    assert not one("relevance", pair(), lexicon={"stock price": 2}).kept
    assert "hormesis" in LDRT_LEXICON


@pytest.mark.parametrize("lexicon", [{}, {"dose": 0}, {"dose": "high"}, {"": 1.0}, ["dose"]])
def test_relevance_refuses_a_bad_lexicon(lexicon: Any) -> None:
    with pytest.raises(ValueError, match=r"'relevance'.*'lexicon'"):
        build_filter("relevance", {"lexicon": lexicon})


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "kept", "reason"),
    [
        (png(chart()), True, None),
        (png(microscopy(1200, 900)), True, None),
        (png(Image.new("RGB", (20, 20), "white")), False, "image too small"),
        (png(Image.new("RGB", (5000, 200), "white")), False, "image too elongated"),
        (png(Image.new("RGB", (100, 620), "white")), False, "image too elongated"),
        (b"not a png at all", False, "unreadable image"),
    ],
    ids=["chart", "micrograph", "tiny", "strip", "tall", "garbage"],
)
def test_image_size(image: bytes, kept: bool, reason: str | None) -> None:
    decision = one("image_size", pair(image=image))
    assert decision.kept is kept
    if reason:
        assert decision.reason is not None and decision.reason.startswith(reason)


def test_image_size_max_side_is_a_parameter() -> None:
    assert not one("image_size", pair(image=chart(1200, 900)), max_side=1000).kept
    assert one("image_size", pair(image=chart(1200, 900)), max_side=1200).kept


def test_image_size_does_not_decode_pixels() -> None:
    header_only = png(chart())[:100]  # IHDR survives; the pixel data is cut off
    assert one("image_size", pair(image=header_only)).kept


@pytest.mark.parametrize(
    ("image", "kept"),
    [
        (table(), False),
        (table(1500, 700), False),
        (table(1200, 2600), False),  # rows pooled 3 to 1: a 2 px rule must survive
        (table(900, 500, grid=True), False),
        (chart(), True),
        (chart(grey=True), True),
        (framed_plot(), True),
        (framed_plot(reference=True), True),  # three long lines, but a y-axis too
        (framed_plot(1600, 1200, reference=True), True),
        (microscopy(), True),
        (equation(), True),
    ],
    ids=[
        "booktabs",
        "big-booktabs",
        "tall-booktabs",
        "grid",
        "chart",
        "grey-chart",
        "framed-plot",
        "reference-line",
        "big-reference-line",
        "micro",
        "eq",
    ],
)
def test_table_like_image(image: Image.Image, kept: bool) -> None:
    decision = one("table_like", pair(image=image))
    assert decision.kept is kept, decision.reason


@pytest.mark.parametrize(
    ("caption", "kept"),
    [
        ("Table 2. Patient characteristics and dose.", False),
        ("TABLE 2 Patient characteristics.", False),
        ("Tables and figures of the trial.", False),
        ("Tabulated doses per patient and fraction.", True),
        (GOOD_CAPTION, True),
    ],
)
def test_table_like_caption(caption: str, kept: bool) -> None:
    assert one("table_like", pair(caption=caption, image=chart())).kept is kept


@pytest.mark.parametrize(
    ("image", "kept"),
    [
        (equation(), False),
        (equation(900, 150), False),
        (chart(1200, 250), True),  # a wide coloured bar chart
        (chart(1200, 250, grey=True), True),  # wide, grey, but with an x-axis
        (microscopy(1200, 250), True),
        (table(), True),  # not wide enough
        (Image.new("RGB", (300, 300), "white"), True),
    ],
    ids=["eq", "wide-eq", "wide-chart", "wide-grey-chart", "wide-micro", "table", "blank"],
)
def test_equation_like_image(image: Image.Image, kept: bool) -> None:
    decision = one("equation_like", pair(image=image))
    assert decision.kept is kept, decision.reason


@pytest.mark.parametrize(
    ("caption", "kept"),
    [
        ("Equation 1", False),
        ("Eq. (2).", False),
        ("Equation 3:", False),
        ("Equation 1 fitted to the survival data of irradiated cells.", True),
        (GOOD_CAPTION, True),
    ],
)
def test_equation_like_caption(caption: str, kept: bool) -> None:
    assert one("equation_like", pair(caption=caption, image=chart())).kept is kept


@pytest.mark.parametrize("name", ["image_size", "table_like", "equation_like", "duplicate_images"])
def test_image_filters_drop_unreadable_images(name: str) -> None:
    decision = one(name, pair(image=b"\x89PNG\r\n\x1a\n broken"))
    assert not decision.kept
    assert decision.reason is not None and decision.reason.startswith("unreadable image")


# --- duplicates -----------------------------------------------------------------------------


def test_duplicate_images_exact_and_near() -> None:
    figure = chart(seed=3)
    pairs = [
        pair("a:1", image=figure),
        pair("b:1", image=microscopy(seed=1)),
        pair("a:1-copy", image=figure),
        pair("c:1", image=jpeg_resized(figure)),
        pair("d:1", image=microscopy(seed=2)),
    ]
    decisions = decide("duplicate_images", pairs)
    assert [d.kept for d in decisions] == [True, True, False, False, True]
    assert decisions[2].reason == "duplicate image: same bytes as a:1"
    assert decisions[3].reason is not None
    assert decisions[3].reason.startswith("duplicate image: near copy of a:1 (phash distance")


def test_duplicate_images_keeps_the_first_occurrence_in_input_order() -> None:
    figure = microscopy(seed=4)
    first, second = pair("x:1", image=jpeg_resized(figure)), pair("y:1", image=figure)
    assert [d.kept for d in decide("duplicate_images", [first, second])] == [True, False]
    assert [d.kept for d in decide("duplicate_images", [second, first])] == [True, False]


def test_duplicate_images_distance_and_difference_are_parameters() -> None:
    pairs = [pair("a:1", image=microscopy(seed=1)), pair("b:1", image=microscopy(seed=2))]
    assert [d.kept for d in decide("duplicate_images", pairs, max_distance=64)] == [True, True]
    loose = {"max_distance": 64, "max_pixel_difference": 255}
    assert [d.kept for d in decide("duplicate_images", pairs, **loose)] == [True, False]


def test_a_phash_match_is_confirmed_on_the_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """pHash can put two charts on one template within a few bits; forced here to one hash."""
    monkeypatch.setattr("ldrt_core.curate.filters.phash", lambda image: 42)
    figure = chart(seed=3)
    pairs = [
        pair("a:1", image=figure),
        pair("a:2", image=chart(seed=4)),  # the same axes, other data
        pair("b:1", image=jpeg_resized(figure)),  # a copy
    ]
    decisions = decide("duplicate_images", pairs)
    assert [d.kept for d in decisions] == [True, True, False]
    assert decisions[2].reason == "duplicate image: near copy of a:1 (phash distance 0)"


def test_same_template_charts_of_a_real_paper_are_not_copies() -> None:
    """A paper's 6-, 9- and 12-month results (Figures 2 to 4) are within 2 to 4 pHash bits."""
    from ldrt_core.extract import extract_pdf

    pdf = CORPUS_DIR / "pdfs" / "hindawi_PMC4745327.pdf"
    if not pdf.is_file():
        pytest.skip(NO_CORPUS)
    figures = {f.label: f.image_png for f in extract_pdf(pdf.read_bytes()).figures}
    results = [figures[f"Figure {n}"] for n in (2, 3, 4)]
    assert all(results)
    pairs = [pair(f"p:{n}", image=image) for n, image in enumerate(results, 2)]
    copy = jpeg_resized(Image.open(io.BytesIO(results[0] or b"")), scale=0.7)
    decisions = decide("duplicate_images", [*pairs, pair("q:2", image=copy)])
    assert [d.kept for d in decisions] == [True, True, True, False]


def test_popcount_without_numpy_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.array([0, 1, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    fast = popcount(values).tolist()
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert popcount(values).tolist() == fast == [0, 1, 3, 64]


def test_duplicate_images_scales_to_thousands(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    hashes = iter(int(h) for h in rng.integers(0, 2**62, size=5000, dtype=np.int64))
    monkeypatch.setattr("ldrt_core.curate.filters.phash", lambda image: next(hashes))
    tiny = png(Image.new("RGB", (8, 8)))
    pairs = [
        PairCandidate(f"k:{i}", "p", "", "Figure 1", "c", tiny, f"sha{i}") for i in range(5000)
    ]
    decisions = DuplicateImages().apply(pairs)
    assert len(decisions) == 5000
    assert sum(d.kept for d in decisions) > 4990  # random 62-bit hashes are far apart


LONG = (
    "Figure 3. Expression of TNF-alpha and IL-1beta in synovial tissue of arthritic rats "
    "treated with 0.5 Gy low-dose radiation therapy or sham irradiation, measured by ELISA "
    "at days 3, 7 and 14 after treatment; mean and SD of six animals per group."
)


@pytest.mark.parametrize(
    ("second", "kept"),
    [
        (LONG, False),
        ("Fig. 7: " + LONG[10:].upper().replace(",", "").replace(";", " ; "), False),
        (LONG + " Scale bar, 50 µm.", False),  # two more shingles of 45
        (LONG.replace("synovial tissue of arthritic rats", "the spleen of healthy mice"), True),
        ("Figure 3. Survival of irradiated fibroblasts.", True),
        ("Figure 4", True),  # no words: left to the other filters
    ],
    ids=["exact", "relabelled", "appended", "different", "other", "empty"],
)
def test_duplicate_captions(second: str, kept: bool) -> None:
    decisions = decide("duplicate_captions", [pair("a:1", LONG), pair("b:1", second)])
    assert decisions[0].kept
    assert decisions[1].kept is kept, decisions[1].reason
    if not kept:
        assert decisions[1].reason is not None and "a:1" in decisions[1].reason


def test_duplicate_captions_threshold_is_a_parameter() -> None:
    pairs = [pair("a:1", LONG), pair("b:1", LONG + " Scale bar, 50 µm.")]
    assert [d.kept for d in decide("duplicate_captions", pairs, min_similarity=1.0)] == [
        True,
        True,
    ]
    reason = decide("duplicate_captions", pairs)[1].reason
    assert reason is not None and reason.startswith("duplicate caption: near copy of a:1 (Jaccard")


def test_duplicate_captions_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(40)]
    base = [list(rng.choice(vocabulary, size=30)) for _ in range(20)]
    captions = []
    for _ in range(300):
        words = list(base[int(rng.integers(0, 20))])
        for _ in range(int(rng.integers(0, 3))):
            words[int(rng.integers(0, 30))] = str(rng.choice(vocabulary))
        captions.append(" ".join(words))
    pairs = [pair(f"k:{i}", caption) for i, caption in enumerate(captions)]
    fast = [d.kept for d in decide("duplicate_captions", pairs, min_similarity=0.8)]

    def shingles(text: str) -> set[str]:
        words = text.split()
        return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}

    kept: list[set[str]] = []
    slow = []
    for caption in captions:
        s = shingles(caption)
        duplicate = any(len(s & k) / len(s | k) >= 0.8 for k in kept)
        slow.append(not duplicate)
        if not duplicate:
            kept.append(s)
    assert fast == slow
    assert 0 < sum(fast) < len(fast)


# --- registry -------------------------------------------------------------------------------


def test_registry_refuses_a_taken_name() -> None:
    @dataclass(frozen=True)
    class Impostor(PairFilter):
        name: ClassVar[str] = "relevance"

        def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
            return [Decision.keep() for _ in pairs]

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert isinstance(build_filter("relevance", {}), Relevance)


def test_registry_refuses_a_class_that_is_not_a_dataclass() -> None:
    class Loose(PairFilter):
        name: ClassVar[str] = "loose-test-filter"

        def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
            return []

    with pytest.raises(TypeError, match="dataclass"):
        register(Loose)
    assert "loose-test-filter" not in filter_names()


def test_unknown_filter_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="unknown filter 'relevanse'") as error:
        build_filter("relevanse", {})
    message = str(error.value)
    assert "did you mean 'relevance'" in message
    for name in filter_names():
        assert repr(name) in message


@pytest.mark.parametrize(
    ("name", "params", "param"),
    [
        ("caption_length", {"min_word": 3}, "min_word"),
        ("caption_length", {"min_words": "five"}, "min_words"),
        ("caption_length", {"min_words": True}, "min_words"),
        ("caption_length", {"min_words": 10, "max_words": 5}, "max_words"),
        ("english", {"min_share": 1.5}, "min_share"),
        ("duplicate_captions", {"min_similarity": 0}, "min_similarity"),
        ("duplicate_images", {"max_distance": 4.5}, "max_distance"),
        ("image_size", {"max_aspect": "wide"}, "max_aspect"),
        ("table_like", {"min_rules": 0}, "min_rules"),
        ("relevance", {"threshold": -1}, "threshold"),
    ],
)
def test_bad_parameters_name_the_parameter_and_the_filter(
    name: str, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(ValueError, match=rf"'{name}'.*'{param}'"):
        build_filter(name, params)


def test_filters_are_frozen_dataclasses_of_their_parameters() -> None:
    for name in filter_names():
        built = build_filter(name, {})
        assert built.name == name
        assert dataclasses.is_dataclass(built)
        params = dataclasses.asdict(built)
        assert build_filter(name, params) == built
        if params:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(built, next(iter(params)), 1)


def test_integer_values_are_accepted_for_float_parameters() -> None:
    built = build_filter("relevance", {"threshold": 2})
    assert isinstance(built, Relevance) and built.threshold == 2.0
    assert isinstance(built.threshold, float)


@pytest.mark.parametrize("item", [{"min_words": 3}, {"name": 7}, "caption_length"])
def test_build_chain_refuses_items_without_a_name(item: Any) -> None:
    with pytest.raises(ValueError, match="item 1"):
        build_chain([{"name": "caption_length"}, item])


def test_default_chain_builds_cheap_text_first_and_image_dedupe_last() -> None:
    chain = build_chain(DEFAULT_CHAIN)
    names = [f.name for f in chain]
    assert names == [item["name"] for item in DEFAULT_CHAIN]
    assert set(names) == set(filter_names())
    assert names[-1] == "duplicate_images"
    assert names.index("caption_length") < names.index("image_size")


# --- run_chain ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorder(PairFilter):
    """Keeps everything and remembers what it saw (not registered)."""

    name: ClassVar[str] = "recorder"
    seen: list[str] = field(default_factory=list)

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        self.seen.extend(p.pair_key for p in pairs)
        return [Decision.keep() for _ in pairs]


def batch() -> list[PairCandidate]:
    def caption(topic: str) -> str:
        return f"Figure 1. {topic} in the knee joints of mice after low-dose radiation therapy."

    return [
        pair("good:1", caption("Cartilage thickness"), chart()),
        pair("short:1", "Figure 1. Dose."),  # relevant, too short
        pair("off:1", "Figure 1. Quarterly stock prices of three retailers.", title=""),
        pair("tiny:1", caption("Synovial swelling"), Image.new("RGB", (20, 20), "white")),
        pair("table:1", caption("Baseline characteristics"), table()),
        pair("twin:1", caption("Macrophage counts"), microscopy(seed=5)),
        pair("twin:2", caption("Macrophage counts"), microscopy(seed=6)),
        pair("copy:1", LONG, jpeg_resized(chart())),
        pair("micro:1", caption("Osteoclast staining"), microscopy(seed=7)),
    ]


def check_stats(result: ChainResult, total: int) -> None:
    seen = total
    for stats in result.stats:
        assert stats.seen == seen
        assert stats.seen == stats.kept + stats.dropped
        assert sum(stats.reasons.values()) == stats.dropped
        seen = stats.kept
    assert len(result.kept) == seen
    assert len(result.kept) + len(result.dropped) == total


def test_a_pair_dropped_early_is_not_seen_later() -> None:
    recorder = Recorder()
    chain = [build_filter("caption_length", {}), recorder]
    result = run_chain(batch(), chain)
    assert "short:1" not in recorder.seen
    assert recorder.seen == [p.pair_key for p in result.kept]
    assert result.dropped["short:1"] == ("caption_length", "caption too short: 1 words < 5")


def test_order_decides_which_filter_drops_a_pair() -> None:
    length, relevance = build_filter("caption_length", {}), build_filter("relevance", {})
    both = pair("both:1", caption="Figure 1. Stocks.", title="")
    first = run_chain([both], [length, relevance])
    second = run_chain([both], [relevance, length])
    assert first.dropped["both:1"][0] == "caption_length"
    assert second.dropped["both:1"][0] == "relevance"
    assert [s.seen for s in first.stats] == [1, 0]


def test_run_chain_default_chain_end_to_end() -> None:
    pairs = batch()
    result = run_chain(pairs, build_chain(DEFAULT_CHAIN))
    check_stats(result, len(pairs))
    assert [p.pair_key for p in result.kept] == ["good:1", "twin:1", "micro:1"]
    assert {key: name for key, (name, _) in result.dropped.items()} == {
        "short:1": "caption_length",
        "off:1": "relevance",
        "twin:2": "duplicate_captions",
        "tiny:1": "image_size",
        "table:1": "table_like",
        "copy:1": "duplicate_images",
    }
    by_name = {s.name: s for s in result.stats}
    assert by_name["relevance"].params["threshold"] == 1.0
    assert by_name["duplicate_captions"].reasons == {"duplicate caption": 1}
    assert by_name["relevance"].reasons == {"low relevance": 1}


def test_run_chain_counts_duplicates_by_reason_kind() -> None:
    figure = chart(seed=9)
    pairs = [pair(f"k:{i}", image=figure if i % 2 else jpeg_resized(figure)) for i in range(6)]
    result = run_chain(pairs, [build_filter("duplicate_images", {})])
    check_stats(result, 6)
    assert result.stats[0].reasons == {"duplicate image": 5}
    assert result.dropped["k:2"] == ("duplicate_images", "duplicate image: same bytes as k:0")


def test_run_chain_refuses_a_filter_that_loses_decisions() -> None:
    @dataclass(frozen=True)
    class Lossy(PairFilter):
        name: ClassVar[str] = "lossy"

        def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
            return []

    with pytest.raises(RuntimeError, match="'lossy' returned 0 decisions for 1 pairs"):
        run_chain([pair()], [Lossy()])


def test_run_chain_on_nothing() -> None:
    result = run_chain([], build_chain(DEFAULT_CHAIN))
    assert result.kept == [] and result.dropped == {}
    assert all(s.seen == 0 for s in result.stats)
