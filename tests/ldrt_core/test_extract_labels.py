"""Caption labels, sentences, hyphenation, figure mentions and caption comparison."""

# Scientific text: its dashes, quotes and ligatures are meant.
# ruff: noqa: RUF001

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ldrt_core.extract.labels import (
    CaptionStart,
    caption_body,
    dehyphenate,
    find_mentions,
    normalize_caption,
    parse_caption_start,
    split_sentences,
)
from ldrt_core.samples import write_sample_corpus
from tests.support.extract_truth import CORPUS_DIR, NO_CORPUS


def fig(label: str, number: str, rest: str = "", delimited: bool = True) -> CaptionStart:
    return CaptionStart("figure", label, number, delimited, rest)


def tab(label: str, number: str, rest: str = "", delimited: bool = True) -> CaptionStart:
    return CaptionStart("table", label, number, delimited, rest)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Figure 2. Dose response", fig("Figure 2", "2", "Dose response")),
        ("Fig. 2. Dose response", fig("Figure 2", "2", "Dose response")),
        ("Fig. 2: Dose response", fig("Figure 2", "2", "Dose response")),
        ("Fig 2. Dose response", fig("Figure 2", "2", "Dose response")),
        ("FIGURE 2 | Dose response", fig("Figure 2", "2", "Dose response")),
        ("FIGURE 2 Dose response", fig("Figure 2", "2", "Dose response")),
        ("FIG. 2. Dose response", fig("Figure 2", "2", "Dose response")),
        ("FIG. 2 Dose response", fig("Figure 2", "2", "Dose response")),
        ("  Figure 12 — Dose", fig("Figure 12", "12", "Dose")),
        ("Figure 3 – Dose", fig("Figure 3", "3", "Dose")),
        ("Figure 3 - Dose", fig("Figure 3", "3", "Dose")),
        ("Figure 3 -Dose", fig("Figure 3", "3", "-Dose", delimited=False)),
        ("Figure S1. Extra", fig("Figure S1", "S1", "Extra")),
        ("Fig. S3: Extra", fig("Figure S3", "S3", "Extra")),
        ("Supplementary Figure 1. Extra", fig("Figure S1", "S1", "Extra")),
        ("Supplementary Figure S1. Extra", fig("Figure S1", "S1", "Extra")),
        ("Supplementary Fig. S3. Extra", fig("Figure S3", "S3", "Extra")),
        ("Extended Data Fig. 4 | Blots", fig("Extended Data Figure 4", "4", "Blots")),
        ("Figure 1", fig("Figure 1", "1")),
        ("Figure 1  ", fig("Figure 1", "1")),
        ("Figure 1.", fig("Figure 1", "1")),
        ("Figure 1:Dose", fig("Figure 1", "1", "Dose")),
        ("Figure 1.Dose", fig("Figure 1", "1", "Dose")),
        ("Figure\u00a01. Dose", fig("Figure 1", "1", "Dose")),
        ("Fig.\u00a01. Dose", fig("Figure 1", "1", "Dose")),
        ("Figure 2 shows the dose", fig("Figure 2", "2", "shows the dose", delimited=False)),
        ("Fig. 2, 3 and 4", fig("Figure 2", "2", ", 3 and 4", delimited=False)),
        ("Table 1. Parameters", tab("Table 1", "1", "Parameters")),
        ("TABLE 1 Parameters", tab("Table 1", "1", "Parameters")),
        ("Table II. Parameters", tab("Table II", "II", "Parameters")),
        ("TABLE IV", tab("Table IV", "IV")),
        ("Table S2: Extra", tab("Table S2", "S2", "Extra")),
        ("Supplementary Table S2. Extra", tab("Table S2", "S2", "Extra")),
        ("Table 1 lists the values", tab("Table 1", "1", "lists the values", delimited=False)),
        ("Figure 2B. Detail", None),
        ("Fig. 2B shows the dose", None),
        ("Figure 2b", None),
        ("Figures 2 and 3 show", None),
        ("Figs. 2-4 show", None),
        ("Figure", None),
        ("Figure shows", None),
        ("Fig. A", None),
        ("Table of contents", None),
        ("Table In this study", None),
        ("Figure IV. Roman figures", None),
        ("As shown in Figure 2.", None),
        ("figure 2. lower case", None),
        ("Configure 2. Setup", None),
        ("", None),
    ],
)
def test_parse_caption_start(line: str, expected: CaptionStart | None) -> None:
    assert parse_caption_start(line) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two.", ["One.", "Two."]),
        ("Is it? Yes! Done.", ["Is it?", "Yes!", "Done."]),
        ("As shown in Fig. 2 the dose fell.", ["As shown in Fig. 2 the dose fell."]),
        ("See Figs. 2 and 3 here.", ["See Figs. 2 and 3 here."]),
        ("By Eq. 3 it holds. Eqs. 4, 5 too.", ["By Eq. 3 it holds.", "Eqs. 4, 5 too."]),
        ("As in Ref. 12 and Refs. 13, 14 we did.", ["As in Ref. 12 and Refs. 13, 14 we did."]),
        ("Smith et al. Showed it. Next.", ["Smith et al. Showed it.", "Next."]),
        ("Cytokines, e.g. IL-6, fell.", ["Cytokines, e.g. IL-6, fell."]),
        ("Cytokines (e.g. IL-6) fell.", ["Cytokines (e.g. IL-6) fell."]),
        ("One dose, i.e. 0.5 Gy, was given.", ["One dose, i.e. 0.5 Gy, was given."]),
        ("LDRT vs. Sham was tested.", ["LDRT vs. Sham was tested."]),
        ("It took approx. 5 min. Then.", ["It took approx. 5 min.", "Then."]),
        ("Made ca. 1990 in Berlin.", ["Made ca. 1990 in Berlin."]),
        ("No. 5 saw Dr. Jones and Mr. Lee.", ["No. 5 saw Dr. Jones and Mr. Lee."]),
        ("Written by J. Smith today.", ["Written by J. Smith today."]),
        ("A dose of 0.5 Gy was given. It helped.", ["A dose of 0.5 Gy was given.", "It helped."]),
        ("as shown in Fig. 2. The dose fell.", ["as shown in Fig. 2.", "The dose fell."]),
        ("It rose (Fig. 2). The dose fell.", ["It rose (Fig. 2).", "The dose fell."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Two   spaces\nand a\tbreak. Next", ["Two spaces and a break.", "Next"]),
        ("lower. case continues", ["lower. case continues"]),
        ("  ", []),
        ("", []),
    ],
)  # fmt: skip
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["radio-", "therapy"], "radiotherapy"),
        (["low-dose radio-", "therapy works"], "low-dose radiotherapy works"),
        (["IL-", "6"], "IL-6"),
        (["low-", "Dose"], "low-Dose"),
        (["TGF-", "β1 and"], "TGF-β1 and"),
        (["one", "two"], "one two"),
        (["  one  ", "", "  two "], "one two"),
        (["ends with dash -", "Next"], "ends with dash - Next"),
        (["radio\u00ad", "therapy"], "radiotherapy"),
        (["single"], "single"),
        ([], ""),
    ],
)
def test_dehyphenate(lines: list[str], expected: str) -> None:
    assert dehyphenate(lines) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("It fell (Fig. 2).", ["Figure 2"]),
        ("It fell (Figure 2).", ["Figure 2"]),
        ("It fell (FIG. 2).", ["Figure 2"]),
        ("It fell (FIGURE 2).", ["Figure 2"]),
        ("It fell (Fig. 2B).", ["Figure 2"]),
        ("It fell (Figure 2(b)).", ["Figure 2"]),
        ("It fell (Figure 1).", ["Figure 1"]),
        ("It fell (Figs. 2, 3).", ["Figure 2", "Figure 3"]),
        ("Figures 2 and 3 show it.", ["Figure 2", "Figure 3"]),
        ("Figs. 2-4 show it.", ["Figure 2", "Figure 3", "Figure 4"]),
        ("Figs. 2–4 show it.", ["Figure 2", "Figure 3", "Figure 4"]),
        ("Figs. 2 – 4 show it.", ["Figure 2", "Figure 3", "Figure 4"]),
        ("Figures 2A–C show it.", ["Figure 2"]),
        ("Fig. 3A and B show it.", ["Figure 3"]),
        ("Fig. 3a,b show it.", ["Figure 3"]),
        ("See Supplementary Figure S1.", ["Figure S1"]),
        ("See Supplementary Figure 1.", ["Figure S1"]),
        ("See Fig. S2.", ["Figure S2"]),
        ("See Figs. S1–S3.", ["Figure S1", "Figure S2", "Figure S3"]),
        ("See Extended Data Fig. 4.", ["Extended Data Figure 4"]),
        ("Figures 1 and 2B show it.", ["Figure 1", "Figure 2"]),
        ("Figures 1, 2, and 5 show it.", ["Figure 1", "Figure 2", "Figure 5"]),
        ("Fig.2 shows it.", ["Figure 2"]),
        ("see Fig. 3", ["Figure 3"]),
        ("Fig. 1 and later Fig. 4 agree.", ["Figure 1", "Figure 4"]),
        ("Fig. 2 and Fig. 2B agree.", ["Figure 2"]),
        ("Figs. 1–40 are endpoints only.", ["Figure 1", "Figure 40"]),
        ("Figs. 1–21 are endpoints only.", ["Figure 1", "Figure 21"]),
        ("Figs. 1–20 expand.", [f"Figure {n}" for n in range(1, 21)]),
        ("Table 1 lists it.", []),
        ("Tables 1 and 2 list it.", []),
        ("It is shown in the figure.", []),
        ("The config. 2 was used.", []),
        ("Figure A shows it.", []),
    ],
)
def test_find_mentions_one_sentence(sentence: str, labels: list[str]) -> None:
    found = find_mentions([sentence])
    assert list(found) == labels
    assert all(cited == [sentence] for cited in found.values())


@pytest.mark.unit
def test_find_mentions_keeps_order_and_drops_duplicates() -> None:
    sentences = [
        "Fig. 2 shows it.",
        "Figs. 1 and 2 agree.",
        "Fig. 2 shows it.",
        "Table 2 lists it.",
        "Figure 1B too.",
    ]
    assert find_mentions(sentences) == {
        "Figure 2": ["Fig. 2 shows it.", "Figs. 1 and 2 agree."],
        "Figure 1": ["Figs. 1 and 2 agree.", "Figure 1B too."],
    }


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Figure 1.  Dose\n  response ", "Figure 1. Dose response"),
        ("Dose radio-\ntherapy of IL-\n6", "Dose radiotherapy of IL-6"),
        ("the \ufb01rst e\ufb00ect", "the first effect"),
        ("“quoted” and ‘single’", "\"quoted\" and 'single'"),
        ("dose\u00a0of 5\u2009Gy", "dose of 5 Gy"),
        ("radio\u00adtherapy", "radiotherapy"),
        ("", ""),
    ],
)
def test_normalize_caption(text: str, expected: str) -> None:
    assert normalize_caption(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Figure 2. Dose response", "Dose response"),
        ("Fig. 2: Dose response", "Dose response"),
        ("FIGURE 2 | Dose response", "Dose response"),
        ("FIGURE 2 Dose response", "Dose response"),
        ("Figure 2 —\nDose radio-\ntherapy", "Dose radiotherapy"),
        ("Supplementary Figure S1. Extra", "Extra"),
        ("Table 1. Parameters", "Table 1. Parameters"),  # a table caption keeps its label
        ("Dose response without label", "Dose response without label"),
        ("Figure 2 shows the dose", "shows the dose"),
    ],
)
def test_caption_body(text: str, expected: str) -> None:
    assert caption_body(text) == expected


@pytest.mark.unit
def test_caption_body_of_publisher_captions() -> None:
    if not (CORPUS_DIR / "truth").is_dir():
        pytest.skip(NO_CORPUS)
    checked = 0
    for path in sorted((CORPUS_DIR / "truth").glob("*.captions.json")):
        for figure in json.loads(path.read_text(encoding="utf-8"))["figures"]:
            label = figure["label"].rstrip(".")  # some labels carry their own period
            caption = figure["caption"]
            assert parse_caption_start(label) is not None, (path.name, label)
            assert caption_body(f"{label}. {caption}") == normalize_caption(caption), path.name
            checked += 1
    assert checked > 0


@pytest.mark.unit
def test_sample_corpus_captions_and_mentions(tmp_path: Path) -> None:
    figures = 0
    for paper in write_sample_corpus(tmp_path, papers=4, seed=0):
        truth = json.loads(paper.truth_path.read_text(encoding="utf-8"))
        for figure in truth["figures"]:
            start = parse_caption_start(figure["caption"])
            assert start is not None, figure["caption"]
            assert (start.kind, start.label, start.delimited) == ("figure", figure["label"], True)
            assert caption_body(figure["caption"]) == start.rest
            for mention in figure["mentions"]:
                assert figure["label"] in find_mentions(split_sentences(mention)), mention
            figures += 1
        for table in truth["tables"]:
            start = parse_caption_start(table["caption"])
            assert start is not None, table["caption"]
            assert (start.kind, start.label, start.delimited) == ("table", table["label"], True)
    assert figures > 0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("As shown in Figure 3C, 1.0 Gy shifted macrophages.", ["Figure 3"]),
        ("See Fig. 2, 5 Gy gave the largest effect.", ["Figure 2"]),
        ("Fig. 4, 20% of cells responded.", ["Figure 4"]),
        ("Figs. 2, 3 and 4 show it.", ["Figure 2", "Figure 3", "Figure 4"]),
    ],
)
def test_numbers_after_a_mention_that_are_quantities_are_not_figures(
    sentence: str, labels: list[str]
) -> None:
    assert list(find_mentions([sentence])) == labels


@pytest.mark.unit
@pytest.mark.parametrize(
    ("sentence", "labels"),
    [
        ("See Figs 2A–D and 3.", ["Figure 2", "Figure 3"]),
        ("It fell (Figs. 2A–C, 3B).", ["Figure 2", "Figure 3"]),
        ("It fell (Figs. 1B–D and 2).", ["Figure 1", "Figure 2"]),
        ("It fell (Figs. 2A, B and 3).", ["Figure 2", "Figure 3"]),
        ("It fell (Figures 2a and b, and 4).", ["Figure 2", "Figure 4"]),
        ("It fell (Figs. 1(a–c) and 4).", ["Figure 1", "Figure 4"]),
        ("It fell (Fig. 2A and B).", ["Figure 2"]),
        ("Figs. 2A–4B show it.", ["Figure 2", "Figure 3", "Figure 4"]),
    ],
)
def test_find_mentions_read_on_past_panel_ranges_and_lists(
    sentence: str, labels: list[str]
) -> None:
    """A panel range ("1B-D") is not a figure range, and it does not end the list of figures."""
    assert list(find_mentions([sentence])) == labels
