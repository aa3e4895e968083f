"""What one sample paper says: metadata, body blocks, figure and table specs, figure mentions.

Input: a `PaperFrame` (choices fixed per paper), a freshly seeded `random.Random` and a density
(how much body text to write). Output: a `PaperContent` without positions: `layout.py` places it.

A figure's caption, its drawing and the body sentences that mention it all read the same
`PanelSpec`s, so what a caption says about a panel (its cytokine, dose, marker) is what it shows.
"""

# Scientific text: its Greek letters and multiplication signs are meant.
# ruff: noqa: RUF001

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Literal

from ldrt_core.samples import phrases
from ldrt_core.samples.phrases import Topic

CaptionStyle = Literal["Figure", "Fig.", "FIGURE"]
LayoutMode = Literal["one-column", "two-column", "mixed"]
FigureKind = Literal["raster", "vector", "multipanel"]
PanelKind = Literal["micrograph", "blot", "heatmap", "bars", "lines", "scatter"]

CAPTION_STYLES: tuple[CaptionStyle, ...] = ("Figure", "Fig.", "FIGURE")
LAYOUT_MODES: tuple[LayoutMode, ...] = ("two-column", "one-column", "mixed")
FIGURE_KINDS: tuple[FigureKind, ...] = ("raster", "vector", "multipanel")
RASTER_PANELS: tuple[PanelKind, ...] = ("micrograph", "blot", "heatmap")
VECTOR_PANELS: tuple[PanelKind, ...] = ("bars", "lines", "scatter")
PANEL_LETTERS = "ABCD"
HEATMAP_CYTOKINES = ("IL-6", "IL-1β", "TNF-α", "TGF-β1", "IL-10")
# Height over width of one panel, and the strip above a panel that holds its letter.
PANEL_ASPECT = 0.72
PANEL_LETTER_STRIP = 11.0


@dataclass(frozen=True)
class PanelSpec:
    """One panel: what it plots. `cytokine` labels charts; `dose` names the irradiated group."""

    kind: PanelKind
    cytokine: str
    dose: str
    marker: str
    protein: str
    outcome: str

    def slots(self) -> dict[str, str]:
        return {
            "cytokine": self.cytokine,
            "dose": self.dose,
            "marker": self.marker,
            "protein": self.protein,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class FigureSpec:
    """A figure before placement. `label` is drawn bold, then `caption_text` in the regular face."""

    number: int
    kind: FigureKind
    panel_specs: tuple[PanelSpec, ...]
    wide: bool
    width_fraction: float
    aspect: float
    label: str
    caption_text: str
    seed: int

    @property
    def caption(self) -> str:
        return f"{self.label} {self.caption_text}"

    @property
    def panels(self) -> tuple[str, ...]:
        """The panel letters drawn in the figure; none for a single-panel figure."""
        if self.kind != "multipanel":
            return ()
        return tuple(PANEL_LETTERS[: len(self.panel_specs)])

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the panels."""
        return grid_of(len(self.panel_specs))


@dataclass(frozen=True)
class TableSpec:
    number: int
    wide: bool
    label: str
    caption_text: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def caption(self) -> str:
        return f"{self.label} {self.caption_text}"


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    sentences: tuple[str, ...]
    indent: bool = True

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass(frozen=True)
class ReferenceEntry:
    text: str


Block = Heading | Paragraph | ReferenceEntry | FigureSpec | TableSpec


@dataclass(frozen=True)
class FigureMention:
    """A body sentence and the figure numbers it refers to."""

    sentence: str
    numbers: tuple[int, ...]


@dataclass(frozen=True)
class PaperContent:
    title: str
    authors: tuple[str, ...]
    affiliation: str
    abstract: str
    keywords: tuple[str, ...]
    venue: str
    doi: str
    year: int
    publication_date: str
    caption_style: CaptionStyle
    layout_mode: LayoutMode
    body: tuple[Block, ...]
    mentions: tuple[FigureMention, ...]


@dataclass(frozen=True)
class PaperFrame:
    """The choices fixed before any text is written; they do not change with the density."""

    index: int
    seed: int
    topic: Topic
    caption_style: CaptionStyle
    layout_mode: LayoutMode
    figure_count: int
    table_count: int
    density: float  # how much body text, relative to the typical amount


def grid_of(count: int) -> tuple[int, int]:
    return (2, 2) if count == 4 else (1, count)


def choose_frame(rng: random.Random, index: int, seed: int) -> PaperFrame:
    # Rotating styles and layouts by index puts every one of them in any 3 consecutive papers.
    return PaperFrame(
        index=index,
        seed=seed,
        topic=rng.choice(phrases.TOPICS),
        caption_style=CAPTION_STYLES[(seed + 2 * index) % 3],
        layout_mode=LAYOUT_MODES[(seed + index) % 3],
        figure_count=rng.randint(2, 5),
        table_count=max(1 if index == 0 else 0, rng.choice((0, 1, 1, 2))),
        density=rng.uniform(0.6, 1.6),
    )


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


@dataclass
class Writer:
    """Fills templates for one paper. Each bank is dealt like a deck, so a sentence repeats only
    once its whole bank has been used."""

    rng: random.Random
    topic: Topic
    decks: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def fill(self, template: str, **fixed: str) -> str:
        """`template` with its slots filled; `{Name}` gives a capitalised value of `{name}`."""
        rng, topic = self.rng, self.topic
        cytokine, cytokine2 = rng.sample(phrases.CYTOKINES, 2)
        slots = {
            "condition": topic.condition,
            "model": rng.choice(topic.models),
            "tissue": rng.choice(topic.tissues),
            "outcome": rng.choice(topic.outcomes),
            "cells": rng.choice(topic.cells),
            "dose": rng.choice(phrases.DOSES),
            "low_dose": rng.choice(phrases.LOW_DOSES),
            "fractionation": rng.choice(phrases.FRACTIONATIONS),
            "cytokine": cytokine,
            "cytokine2": cytokine2,
            "marker": rng.choice(phrases.MARKERS),
            "protein": rng.choice(phrases.PROTEINS),
            "sample": rng.choice(phrases.SAMPLES),
            "mechanism": rng.choice(phrases.MECHANISMS),
            "assay": rng.choice(phrases.ASSAYS),
            "source": rng.choice(phrases.SOURCES),
            "dose_rate": rng.choice(phrases.DOSE_RATES),
            "stat_test": rng.choice(phrases.STAT_TESTS),
            "design": rng.choice(phrases.DESIGNS),
            "hours": rng.choice(phrases.TIMEPOINTS),
            "pct": str(rng.randint(18, 64)),
            "p_digit": str(rng.randint(1, 4)),
            "n": str(rng.randint(5, 12)),
        } | fixed
        slots |= {name.capitalize(): capitalise(value) for name, value in list(slots.items())}
        return template.format(**slots)

    def sentence(self, template: str, **fixed: str) -> str:
        return capitalise(self.fill(template, **fixed))

    def sentences(self, bank: tuple[str, ...], count: int) -> list[str]:
        deck = self.decks.setdefault(bank, [])
        drawn = []
        for _ in range(count):
            if not deck:
                deck.extend(self.rng.sample(bank, len(bank)))
            drawn.append(self.sentence(deck.pop()))
        return drawn


def scaled(rng: random.Random, low: int, high: int, density: float) -> int:
    return max(1, round(rng.randint(low, high) * density))


def compose_paper(frame: PaperFrame, rng: random.Random, density: float) -> PaperContent:
    """The whole paper; `rng` must be freshly seeded so a retry with another density replays."""
    writer = Writer(rng, frame.topic)
    authors = tuple(
        f"{first} {last}"
        for first, last in zip(
            rng.sample(phrases.FIRST_NAMES, 6), rng.sample(phrases.SURNAMES, 6), strict=True
        )
    )[: rng.randint(2, 6)]
    published = date(2014, 1, 1) + timedelta(days=rng.randint(0, 11 * 365))
    figures = figure_specs(frame, writer)
    tables = table_specs(frame, rng)
    body, mentions = body_blocks(writer, figures, tables, density)
    return PaperContent(
        title=capitalise(writer.fill(rng.choice(frame.topic.titles))),
        authors=authors,
        affiliation=rng.choice(phrases.AFFILIATIONS),
        abstract=abstract(writer),
        keywords=("low-dose radiation therapy", frame.topic.keyword, "inflammation", "hormesis"),
        venue=rng.choice(phrases.VENUES),
        doi=f"10.5555/ldrt-sample.s{frame.seed}.{frame.index + 1:03d}",
        year=published.year,
        publication_date=published.isoformat(),
        caption_style=frame.caption_style,
        layout_mode=frame.layout_mode,
        body=tuple(body),
        mentions=tuple(mentions),
    )


def abstract(writer: Writer) -> str:
    parts = [
        *writer.sentences(phrases.INTRODUCTION, 2),
        *writer.sentences(phrases.METHODS, 2),
        *writer.sentences(phrases.RESULTS, 2),
        *writer.sentences(phrases.DISCUSSION, 1),
    ]
    return " ".join(parts)


def figure_label(style: CaptionStyle, number: int) -> str:
    return f"FIGURE {number}" if style == "FIGURE" else f"{style} {number}."


def figure_specs(frame: PaperFrame, writer: Writer) -> list[FigureSpec]:
    # The first kinds are a shuffled permutation so every paper with 3+ figures has all three.
    kinds = list(FIGURE_KINDS)
    writer.rng.shuffle(kinds)
    kinds += [writer.rng.choice(FIGURE_KINDS) for _ in range(frame.figure_count - len(kinds))]
    specs = [
        figure_spec(frame, writer, number, kind)
        for number, kind in enumerate(kinds[: frame.figure_count], 1)
    ]
    if not any(spec.wide for spec in specs):
        # Every paper gets one figure that spans both columns on a two-column page.
        widest = max(specs, key=lambda spec: (len(spec.panel_specs), -spec.number))
        specs = [replace(s, wide=True, width_fraction=0.95) if s is widest else s for s in specs]
    return specs


def panel_spec(writer: Writer, kind: PanelKind) -> PanelSpec:
    rng = writer.rng
    return PanelSpec(
        kind=kind,
        cytokine=rng.choice(phrases.CYTOKINES),
        dose=rng.choice(phrases.DOSES),
        marker=rng.choice(phrases.MARKERS),
        protein=rng.choice(phrases.PROTEINS),
        outcome=rng.choice(writer.topic.outcomes),
    )


def figure_spec(frame: PaperFrame, writer: Writer, number: int, kind: FigureKind) -> FigureSpec:
    rng = writer.rng
    if kind == "raster":
        kinds: tuple[PanelKind, ...] = (rng.choice(RASTER_PANELS),)
    elif kind == "vector":
        kinds = (rng.choice(VECTOR_PANELS),)
    else:
        kinds = tuple(rng.choice(RASTER_PANELS + VECTOR_PANELS) for _ in range(rng.randint(2, 4)))
    panels = tuple(panel_spec(writer, k) for k in kinds)
    if kind == "multipanel":
        wide = len(panels) == 3 or rng.random() < 0.5
        rows, cols = grid_of(len(panels))
        aspect = (rows * PANEL_ASPECT + rows * PANEL_LETTER_STRIP / 250) / cols
    else:
        # A single chart across both columns is rare in print, and then short.
        wide = rng.random() < 0.15
        aspect = rng.uniform(0.38, 0.5) if wide else rng.uniform(0.58, 0.72)
    return FigureSpec(
        number=number,
        kind=kind,
        panel_specs=panels,
        wide=wide,
        width_fraction=rng.uniform(0.85, 1.0) if wide else rng.uniform(0.55, 0.75),
        aspect=aspect,
        label=figure_label(frame.caption_style, number),
        caption_text=caption_text(writer, kind, panels),
        seed=rng.randrange(2**31),
    )


def panel_descriptions(kind: PanelKind) -> tuple[str, ...]:
    match kind:
        case "micrograph":
            return (
                "representative immunofluorescence images of {marker}-positive {cells} in the "
                "{tissue} {hours} h after {dose} (scale bar, 50 μm)",
                "{marker} staining (green) and DAPI (blue) in the {tissue} after {dose} "
                "irradiation",
            )
        case "blot":
            return (
                "western blot of {protein} in {cells} after sham or {dose} irradiation, with "
                "β-actin as loading control",
            )
        case "heatmap":
            return (
                "heat map of IL-6, IL-1β, TNF-α, TGF-β1 and IL-10 expression by dose (z-scores)",
            )
        case "bars":
            return (
                "{cytokine} concentrations in {sample} after sham, 0.1, 0.5 and 1.0 Gy",
                "{cytokine} levels in {cells} by dose group",
            )
        case "lines":
            return ("time course of {outcome} after sham or {dose} irradiation",)
        case "scatter":
            return ("correlation between the delivered dose and {cytokine} release",)


def panel_findings(kind: PanelKind) -> tuple[str, ...]:
    match kind:
        case "micrograph":
            return (
                "the number of {marker}-positive cells increased after {dose}",
                "{dose} shifted {cells} towards an M2 phenotype",
            )
        case "blot":
            return ("{protein} expression changed within {hours} h of {dose}",)
        case "heatmap":
            return ("LDRT lowered pro-inflammatory cytokines while IL-10 rose",)
        case "bars":
            return (
                "{dose} reduced {cytokine} levels by {pct}% relative to sham irradiation",
                "{cytokine} release followed a non-linear dose-response",
            )
        case "lines":
            return ("{outcome} improved over 72 h after {dose}",)
        case "scatter":
            return ("{cytokine} release decreased with the delivered dose",)


def caption_titles(kind: PanelKind) -> tuple[str, ...]:
    """Opening sentences of a caption that fit what its first panel shows."""
    match kind:
        case "micrograph" | "blot":
            return (
                "Low-dose radiation therapy promotes M2 polarisation of {cells}.",
                "Anti-inflammatory response of the {tissue} to {dose} irradiation.",
                "LDRT alters {protein} signalling in {model}.",
            )
        case "bars" | "scatter" | "heatmap":
            return (
                "Effect of low-dose irradiation on {cytokine} release in {model}.",
                "Dose-dependent changes in {cytokine} after LDRT.",
                "Cytokine response of the {tissue} to low-dose irradiation.",
            )
        case "lines":
            return (
                "LDRT modulates {outcome} in {condition}.",
                "Time course of the response to {dose} in {model}.",
            )


def caption_text(writer: Writer, kind: FigureKind, panels: tuple[PanelSpec, ...]) -> str:
    rng = writer.rng
    first = panels[0]
    parts = [writer.sentence(rng.choice(caption_titles(first.kind)), **first.slots())]
    descriptions = [
        writer.fill(rng.choice(panel_descriptions(p.kind)), **p.slots()) for p in panels
    ]
    if kind == "multipanel":
        parts += [
            f"({letter}) {capitalise(d)}."
            for letter, d in zip(PANEL_LETTERS, descriptions, strict=False)
        ]
    elif rng.random() < 0.7:
        parts.append(f"{capitalise(descriptions[0])}.")
    if any(p.kind in ("bars", "lines") for p in panels) and rng.random() < 0.7:
        parts.append(writer.sentence(rng.choice(phrases.ERROR_BAR_TRAILERS)))
    return " ".join(parts)


def table_specs(frame: PaperFrame, rng: random.Random) -> list[TableSpec]:
    makers = [dose_group_table, parameter_table]
    rng.shuffle(makers)
    return [maker(frame, rng, n) for n, maker in enumerate(makers[: frame.table_count], 1)]


def dose_group_table(frame: PaperFrame, rng: random.Random, number: int) -> TableSpec:
    cytokine, cytokine2 = rng.sample(phrases.CYTOKINES, 2)
    base, base2 = rng.uniform(200, 600), rng.uniform(20, 90)
    rows = []
    for group, factor in (("Sham", 1.0), ("0.1 Gy", 0.9), ("0.5 Gy", 0.6), ("1.0 Gy", 0.75)):
        mean = base * factor * rng.uniform(0.9, 1.1)
        mean2 = base2 * factor * rng.uniform(0.9, 1.1)
        rows.append(
            (group, str(rng.randint(6, 14)), f"{mean:.0f} ± {mean * 0.1:.0f}", f"{mean2:.1f}")
        )
    model = rng.choice(frame.topic.models)
    return TableSpec(
        number=number,
        wide=rng.random() < 0.3,
        label=f"Table {number}.",
        caption_text=f"{cytokine} and {cytokine2} levels by dose group in {model}.",
        header=("Group", "n", f"{cytokine} (pg/mL)", f"{cytokine2} (pg/mL)"),
        rows=tuple(rows),
    )


def parameter_table(frame: PaperFrame, rng: random.Random, number: int) -> TableSpec:
    rows = (
        ("Radiation source", rng.choice(("6 MV photons", "200 kV X-rays", "Cs-137"))),
        ("Dose per fraction", rng.choice(("0.5 Gy", "1.0 Gy", "0.3 Gy"))),
        ("Number of fractions", str(rng.choice((1, 2, 5, 6)))),
        ("Dose rate", rng.choice(phrases.DOSE_RATES)),
        ("Field size", f"{rng.choice((10, 15, 20))} × {rng.choice((10, 15, 20))} cm"),
    )
    return TableSpec(
        number=number,
        wide=False,
        label=f"Table {number}.",
        caption_text=f"Irradiation parameters used for {frame.topic.condition}.",
        header=("Parameter", "Value"),
        rows=rows,
    )


def figure_ref(rng: random.Random, spec: FigureSpec) -> tuple[str, PanelSpec]:
    """A reference such as "Fig. 2" or "Figure 3B", and the panel it points at."""
    word = rng.choice(("Fig.", "Figure"))
    index = rng.randrange(len(spec.panel_specs))
    letter = spec.panels[index] if spec.panels and rng.random() < 0.6 else ""
    return f"{word} {spec.number}{letter}", spec.panel_specs[index]


def single_mention(writer: Writer, spec: FigureSpec) -> FigureMention:
    rng = writer.rng
    ref, panel = figure_ref(rng, spec)
    finding = writer.fill(rng.choice(panel_findings(panel.kind)), **panel.slots())
    sentence = rng.choice(phrases.SINGLE_MENTIONS).format(
        ref=ref, finding=finding, Finding=capitalise(finding)
    )
    return FigureMention(sentence=sentence, numbers=(spec.number,))


def pair_mention(writer: Writer, first: FigureSpec, second: FigureSpec) -> FigureMention:
    rng = writer.rng
    panel = first.panel_specs[0]
    finding = writer.fill(rng.choice(panel_findings(panel.kind)), **panel.slots())
    word = rng.choice(("Figures", "Figs."))
    sentence = rng.choice(phrases.PAIR_MENTIONS).format(
        Refs=f"{word} {first.number} and {second.number}",
        refs=f"Figs. {first.number} and {second.number}",
        finding=finding,
        Finding=capitalise(finding),
    )
    return FigureMention(sentence=sentence, numbers=(first.number, second.number))


def table_sentence(rng: random.Random, number: int) -> str:
    return rng.choice(
        (
            f"The irradiation parameters and group sizes are summarised in Table {number}.",
            f"Baseline values did not differ between groups (Table {number}).",
            f"Table {number} lists the measured values for each group.",
        )
    )


def body_blocks(
    writer: Writer, figures: list[FigureSpec], tables: list[TableSpec], density: float
) -> tuple[list[Block], list[FigureMention]]:
    """Sections in order; each float follows the paragraph that first mentions it."""
    rng = writer.rng
    numbered = rng.random() < 0.5
    names = ("Introduction", "Methods", "Results", "Discussion", "References")
    heads = [Heading(f"{i}. {name}" if numbered else name) for i, name in enumerate(names, 1)]
    blocks: list[Block] = [heads[0]]
    mentions: list[FigureMention] = []

    def paragraph(bank: tuple[str, ...], extra: list[str], first: bool) -> None:
        text = writer.sentences(bank, scaled(rng, 3, 5, density))
        for sentence in extra:
            text.insert(rng.randint(1, len(text)), sentence)
        blocks.append(Paragraph(tuple(text), indent=not first))

    for i in range(scaled(rng, 2, 3, density)):
        paragraph(phrases.INTRODUCTION, [], i == 0)
    blocks.append(heads[1])
    waiting_tables = list(tables)
    methods_figure = figures[0] if rng.random() < 0.4 else None
    for i in range(max(len(tables), scaled(rng, 2, 3, density))):
        extra = [table_sentence(rng, waiting_tables[0].number)] if waiting_tables else []
        if methods_figure is not None and i == 0:
            mention = single_mention(writer, methods_figure)
            mentions.append(mention)
            extra.append(mention.sentence)
        paragraph(phrases.METHODS, extra, i == 0)
        if waiting_tables:
            blocks.append(waiting_tables.pop(0))
        if methods_figure is not None and i == 0:
            blocks.append(methods_figure)
    blocks.append(heads[2])
    blocks += results_blocks(writer, figures, methods_figure, density, mentions)
    blocks.append(heads[3])
    for i in range(scaled(rng, 2, 3, density)):
        recalled = [single_mention(writer, rng.choice(figures))] if i == 0 else []
        mentions += recalled
        paragraph(phrases.DISCUSSION, [m.sentence for m in recalled], i == 0)
    blocks.append(heads[4])
    count = scaled(rng, 6, 10, density)
    blocks += [ReferenceEntry(reference(writer, n)) for n in range(1, count + 1)]
    return blocks, mentions


def results_blocks(
    writer: Writer,
    figures: list[FigureSpec],
    already_placed: FigureSpec | None,
    density: float,
    mentions: list[FigureMention],
) -> list[Block]:
    """One paragraph per figure; one adjacent pair is introduced together ("Figures 2 and 3")."""
    rng = writer.rng
    blocks: list[Block] = []
    introduced = {already_placed.number} if already_placed else set()
    pair_at = rng.randrange(len(figures) - 1) if len(figures) > 1 else -1
    for i, spec in enumerate(figures):
        own = [single_mention(writer, spec)]
        if i == pair_at:
            own.append(pair_mention(writer, spec, figures[i + 1]))
        mentions += own
        text = writer.sentences(phrases.RESULTS, scaled(rng, 2, 4, density))
        text.insert(rng.randint(0, 1), own[0].sentence)
        text += [m.sentence for m in own[1:]]
        blocks.append(Paragraph(tuple(text), indent=i > 0))
        for newly in [spec, *(figures[i + 1 : i + 2] if i == pair_at else [])]:
            if newly.number not in introduced:
                introduced.add(newly.number)
                blocks.append(newly)
    return blocks


def reference(writer: Writer, number: int) -> str:
    rng = writer.rng
    first, second = rng.sample(phrases.SURNAMES, 2)
    initials = "ABCDEFGHJKLMNPRSTW"
    title = capitalise(writer.fill(rng.choice(writer.topic.titles)))
    volume, page = rng.randint(4, 120), rng.randint(1, 900)
    return (
        f"[{number}] {first} {rng.choice(initials)}, {second} {rng.choice(initials)}, et al. "
        f"{title}. {rng.choice(phrases.VENUES)}. {rng.randint(1995, 2023)};{volume}:"
        f"{page}-{page + rng.randint(5, 14)}."
    )
