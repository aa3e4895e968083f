"""The phrase bank the sample papers are written from.

Input: nothing. Output: immutable tuples of words, phrases and sentence templates about low-dose
radiation therapy (LDRT). `content.py` fills the templates with a seeded RNG.

No sentence here may name a figure or a table: the ground truth lists every sentence that mentions
a figure, and only `content.py` writes those.
"""

# The bank is scientific text: its Greek letters and multiplication signs are meant.
# ruff: noqa: RUF001

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Topic:
    """One disease the sample papers can be about, with the words specific to it."""

    condition: str
    keyword: str
    models: tuple[str, ...]
    tissues: tuple[str, ...]
    outcomes: tuple[str, ...]
    cells: tuple[str, ...]
    titles: tuple[str, ...]


TOPICS: Final = (
    Topic(
        condition="knee osteoarthritis",
        keyword="osteoarthritis",
        models=(
            "rats with monoiodoacetate-induced arthritis",
            "primary human chondrocytes",
            "fibroblast-like synoviocytes from patients with osteoarthritis",
            "mice with collagen-induced arthritis",
            "patients with painful knee osteoarthritis",
        ),
        tissues=("synovial tissue", "articular cartilage", "synovial fluid", "subchondral bone"),
        outcomes=(
            "the WOMAC pain score",
            "the visual analogue scale for pain",
            "synovial inflammation",
            "cartilage degradation",
            "joint swelling",
        ),
        cells=("synovial macrophages", "chondrocytes", "fibroblast-like synoviocytes"),
        titles=(
            "Low-dose radiation therapy attenuates {cytokine} signalling in {model}",
            "Anti-inflammatory effects of {dose} irradiation in {condition}",
            "Radiation hormesis and M2 macrophage polarisation in {condition}",
            "Pain relief after low-dose radiotherapy for {condition}: a {design}",
        ),
    ),
    Topic(
        condition="COVID-19 pneumonia",
        keyword="COVID-19",
        models=(
            "hospitalised patients with COVID-19 pneumonia",
            "hamsters infected with SARS-CoV-2",
            "alveolar macrophages from patients with COVID-19",
            "patients with oxygen-dependent COVID-19 pneumonia",
        ),
        tissues=("lung tissue", "bronchoalveolar lavage fluid", "peripheral blood", "serum"),
        outcomes=(
            "oxygen saturation",
            "the time to clinical recovery",
            "the radiographic severity score",
            "the need for mechanical ventilation",
        ),
        cells=("alveolar macrophages", "neutrophils", "peripheral blood mononuclear cells"),
        titles=(
            "Whole-lung low-dose radiation therapy for {condition}: a {design}",
            "Low-dose irradiation dampens the {cytokine} storm in {model}",
            "Immunomodulatory effects of {dose} whole-lung irradiation in {condition}",
            "Low-dose radiation therapy and macrophage polarisation in {condition}",
        ),
    ),
    Topic(
        condition="Alzheimer's disease",
        keyword="Alzheimer's disease",
        models=(
            "5xFAD transgenic mice",
            "APP/PS1 mice",
            "primary microglial cultures",
            "patients with mild Alzheimer's disease",
        ),
        tissues=("hippocampus", "cortex", "cerebrospinal fluid", "brain tissue"),
        outcomes=(
            "amyloid-β plaque burden",
            "escape latency in the Morris water maze",
            "microglial activation",
            "the MMSE score",
        ),
        cells=("microglia", "astrocytes", "hippocampal neurons"),
        titles=(
            "Low-dose cranial irradiation reduces amyloid-β burden in {model}",
            "Fractionated low-dose radiation therapy for {condition}: a {design}",
            "Radiation hormesis and microglial {cytokine} release in {condition}",
            "Effects of {dose} whole-brain irradiation on neuroinflammation in {model}",
        ),
    ),
)

DOSES: Final = ("0.1 Gy", "0.3 Gy", "0.5 Gy", "1.0 Gy", "1.5 Gy")
LOW_DOSES: Final = ("10 μGy", "50 μGy", "100 mGy", "20 mGy")
FRACTIONATIONS: Final = ("6 × 0.5 Gy", "6 × 1.0 Gy", "5 × 0.1 Gy", "2 × 0.5 Gy", "10 × 0.3 Gy")
CYTOKINES: Final = ("IL-6", "IL-1β", "TNF-α", "TGF-β1", "IL-10", "IL-8")
MARKERS: Final = ("CD206", "CD68", "Iba1", "Arg1", "iNOS", "GFAP")
PROTEINS: Final = ("NF-κB p65", "phospho-p38", "HO-1", "Nrf2", "caspase-3", "XIAP")
SAMPLES: Final = ("culture supernatants", "serum", "synovial fluid", "tissue homogenates")
DESIGNS: Final = (
    "randomised sham-controlled trial",
    "prospective phase II study",
    "preclinical study",
    "retrospective cohort study",
    "pilot study",
)
MECHANISMS: Final = (
    "polarisation of macrophages towards an anti-inflammatory M2 phenotype",
    "reduced adhesion of peripheral blood mononuclear cells to endothelial cells",
    "increased secretion of TGF-β1",
    "modulation of NF-κB signalling",
    "induction of apoptosis in activated immune cells",
    "reduced infiltration of neutrophils",
    "enhanced activity of antioxidant enzymes",
    "a discontinuous dose-response relationship consistent with hormesis",
)
ASSAYS: Final = (
    "enzyme-linked immunosorbent assay",
    "multiplex bead-based immunoassay",
    "quantitative real-time PCR",
    "flow cytometry",
    "western blotting",
)
SOURCES: Final = (
    "6 MV linear accelerator",
    "X-ray cabinet operated at 200 kV",
    "Cs-137 irradiator",
    "Co-60 teletherapy unit",
)
DOSE_RATES: Final = ("0.5 Gy/min", "0.8 Gy/min", "1.2 Gy/min", "2.0 Gy/min")
STAT_TESTS: Final = (
    "one-way ANOVA with Tukey's post hoc test",
    "the Mann-Whitney U test",
    "a linear mixed model",
    "the Kruskal-Wallis test with Dunn's correction",
    "two-way ANOVA",
)
TIMEPOINTS: Final = ("4", "24", "48", "72")
VENUES: Final = (
    "Journal of Low-Dose Radiobiology",
    "Radiation Hormesis Letters",
    "Annals of Benign Disease Radiotherapy",
    "Clinical Radiobiology Reports",
    "International Journal of Low-Dose Radiation Research",
    "Frontiers in Radioimmunology",
)
# fmt: off
FIRST_NAMES: Final = (
    "Anna", "Jonas", "Maria", "Lukas", "Sofia", "Wei", "Hiroshi", "Elena", "Rahul", "Chloé",
    "Mateo", "Ingrid", "Kwame", "Leila", "Tomasz", "Yuki", "Daniel", "Fatima", "Pieter", "Zoë",
)
SURNAMES: Final = (
    "Keller", "Müller", "Rossi", "Zhang", "Tanaka", "Novak", "Okafor", "Haddad", "Lindqvist",
    "Fernández", "Kowalski", "Dubois", "Nakamura", "Schmidt", "Petrov", "Andersen", "Gupta",
    "Weber", "Moreau", "Costa",
)
# fmt: on
AFFILIATIONS: Final = (
    "Department of Radiation Oncology, University Hospital, Erlangen, Germany",
    "Institute of Radiation Biology, Helmholtz Centre, Munich, Germany",
    "Department of Radiotherapy, Tehran University of Medical Sciences, Tehran, Iran",
    "Division of Radiation Medicine, Emory University, Atlanta, USA",
    "Department of Radiation Oncology, Osaka University, Osaka, Japan",
)

INTRODUCTION: Final = (
    "{Condition} remains a leading cause of disability, and current drug treatments often "
    "provide only partial relief.",
    "Low-dose radiation therapy (LDRT) with single doses of 0.5 to 1.0 Gy has been used for "
    "decades to treat benign inflammatory and degenerative diseases.",
    "The anti-inflammatory effects of LDRT are thought to involve {mechanism}.",
    "Radiation hormesis describes the hypothesis that exposures in the {low_dose} range can "
    "stimulate protective cellular responses.",
    "Total doses of {fractionation} are commonly prescribed for {condition} in several European "
    "countries.",
    "Despite this long clinical experience, randomised evidence for LDRT in {condition} is "
    "limited.",
    "Previous work in {model} suggested that {dose} suppresses the release of {cytokine}.",
    "Pro-inflammatory cytokines such as {cytokine} and {cytokine2} drive tissue damage in "
    "{condition}.",
    "Here we examined how LDRT modulates inflammation in {model}.",
    "M2 macrophages secrete IL-10 and TGF-β1 and contribute to the resolution of inflammation.",
    "Unlike high-dose radiotherapy for cancer, LDRT aims to modulate immune cells rather than "
    "to kill them.",
    "The biological effects of doses below 1 Gy often differ qualitatively from those seen at "
    "higher doses.",
    "Concerns about stochastic late effects have limited the use of LDRT outside Europe.",
    "Activated macrophages in the {tissue} are a major source of {cytokine}.",
    "Experimental studies point to a window of maximal anti-inflammatory efficacy between 0.3 "
    "and 0.7 Gy.",
    "Whether these effects translate into durable clinical benefit in {condition} is unclear.",
    "Older clinical series reported symptom relief in up to two thirds of treated patients.",
    "We therefore tested the hypothesis that {dose} reduces {outcome} in {model}.",
)
METHODS: Final = (
    "{Model} were irradiated with single doses of {dose} using a {source} at a dose rate of "
    "{dose_rate}.",
    "Sham-irradiated controls were handled identically but the source was not switched on.",
    "Concentrations of {cytokine} in {sample} were quantified by {assay}.",
    "Tissue sections of the {tissue} were stained for {marker} and counterstained with DAPI.",
    "Protein levels of {protein} were analysed by {assay} {hours} h after irradiation.",
    "Dosimetry was verified with thermoluminescent dosimeters placed at the target position.",
    "Statistical significance was assessed with {stat_test}, and p < 0.05 was considered "
    "significant.",
    "All experiments were performed in at least three independent biological replicates.",
    "Patients received {fractionation} over two weeks with opposing fields.",
    "The primary endpoint was the change in {outcome} after 12 weeks.",
    "Animals were housed under specific pathogen-free conditions with free access to food and "
    "water.",
    "The study protocol was approved by the institutional ethics committee.",
    "Investigators who assessed {outcome} were blinded to the treatment group.",
    "Cells were seeded at a density of 50,000 cells per well and stimulated with TNF-α before "
    "irradiation.",
    "Macrophage polarisation was determined by flow cytometry for CD80 and CD206.",
    "Samples were collected {hours} h after the last fraction and stored at -80 °C.",
    "The planning target volume included the whole {tissue} with a margin of 1 cm.",
    "Data were analysed with R version 4.3 and are reported as mean ± standard error.",
)
RESULTS: Final = (
    "Irradiation with {dose} reduced {cytokine} levels by {pct}% compared with sham-treated "
    "controls.",
    "The effect on {cytokine} was most pronounced at {hours} h and declined thereafter.",
    "No significant change in {cytokine2} was observed at doses above 1.0 Gy.",
    "LDRT increased the fraction of {marker}-positive M2 macrophages in the {tissue} "
    "(p = 0.0{p_digit}).",
    "{Outcome} improved in {pct}% of the irradiated group.",
    "Doses of {low_dose} did not measurably change {outcome}.",
    "The dose-response curve was non-linear, with the largest effect at {dose}.",
    "Expression of {protein} rose within {hours} h of irradiation.",
    "No acute radiation toxicity above grade 1 was recorded.",
    "Body weight did not differ between the irradiated and sham groups.",
    "The reduction in {cytokine} persisted for at least {hours} h.",
    "Secretion of IL-10 increased in parallel, shifting the cytokine balance towards resolution.",
    "Responses were similar in male and female {model}.",
    "At 1.5 Gy the anti-inflammatory effect was weaker than at 0.5 Gy.",
    "Adhesion of leukocytes to activated endothelial cells fell by {pct}%.",
    "Viability of {cells} was not affected at any dose tested.",
)
DISCUSSION: Final = (
    "Our findings support the view that LDRT acts through {mechanism}.",
    "The non-linear response we observed is consistent with radiation hormesis.",
    "A limitation of this study is the small number of {model}.",
    "The optimal fractionation scheme for {condition} remains uncertain.",
    "Long-term follow-up is needed to exclude late effects of low-dose exposure.",
    "Similar reductions in {cytokine} have been reported after {fractionation} in other "
    "inflammatory diseases.",
    "Future trials should stratify patients by baseline {cytokine} levels.",
    "Taken together, LDRT at {dose} appears to be a safe anti-inflammatory treatment for "
    "{condition}.",
    "The estimated effective dose of such treatments is small compared with diagnostic "
    "computed tomography.",
    "Sham-controlled trials remain essential because placebo responses in {condition} are large.",
    "The discontinuous dose dependence may reflect distinct signalling thresholds in immune cells.",
    "Our data do not exclude contributions from {mechanism}.",
    "Translation to clinical practice will require careful patient selection.",
)
# Each trailer goes only under figures that show what it describes.
ERROR_BAR_TRAILERS: Final = (
    "Data are mean ± SEM (n = {n}); *p < 0.05 versus sham.",
    "Error bars show the standard deviation of {n} independent experiments.",
)
SINGLE_MENTIONS: Final = (
    "As shown in {ref}, {finding}.",
    "{Finding} ({ref}).",
    "{Finding} (see {ref}).",
    "The data in {ref} indicate that {finding}.",
)
PAIR_MENTIONS: Final = ("{Refs} show that {finding}.", "{Finding} ({refs}).")
