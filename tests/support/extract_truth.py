"""Ground truth for figure/caption extraction, and scoring an `ExtractedDocument` against it.

Generated corpus (`load_sample_truth`): `write_sample_corpus`'s `<id>.json`, with figure boxes,
captions and mentions. Real corpus (`load_real_truth`, [] without it) in `CORPUS_DIR`: the
folder LDRT_TEST_CORPUS names, else `shared/corpus` beside the checkout. Its truth: publisher
JATS captions, GROBID's hand-labelled figure TEI (caption text, no boxes) and one deepfigures
output (machine-made boxes). `score_paper` matches predictions to truth by label, and
with boxes also by page and IoU >= 0.5; captions are compared after `normalize`: whole for
generated papers, label-stripped (`caption_body`) for real ones, whose truth omits the label.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # only types: the scorer reads attributes, and never needs the package to import
    from ldrt_core.extract.records import BBox, ExtractedDocument, ExtractedFigure

CORPUS_DIR = Path(
    os.environ.get("LDRT_TEST_CORPUS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
).resolve()
NO_CORPUS = f"no real corpus at {CORPUS_DIR}: set LDRT_TEST_CORPUS to the folder that holds one"
IOU_MIN = 0.5

Source = Literal["sample", "jats", "tei", "deepfigures"]


# --- text normalisation (private on purpose: the scorer must not share the extractor's) --------

_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u2010": "-", "\u2011": "-", "\u2212": "-", "\u00ad": "",  # hyphens, minus, soft hyphen
        "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
        **dict.fromkeys("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff", ""),  # invisible
    }
)  # fmt: skip
_DEHYPHENATE = re.compile(r"(?<=\w)-\s+(?=[a-z])")
_SPACE_BEFORE, _SPACE_AFTER = re.compile(r"\s+(?=[,.;:)\]])"), re.compile(r"(?<=[(\[])\s+")
_LABEL_PREFIX = re.compile(
    r"^\s*(?:supplementary\s+)?fig(?:ure)?s?\.?\s*(S?\d+)\s*[.:|\u2013\u2014-]?\s*",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """NFKC, straight quotes, no ligatures or invisible characters, "radio- therapy" ->
    "radiotherapy", one space, none inside brackets or before punctuation."""
    text = " ".join(unicodedata.normalize("NFKC", text).translate(_CHAR_MAP).split())
    text = _DEHYPHENATE.sub("", text)
    return _SPACE_AFTER.sub("", _SPACE_BEFORE.sub("", text))


def caption_body(text: str) -> str:
    """The normalised caption without its leading label ("Figure 2." / "Fig. 2:" / "FIGURE 2 |")."""
    return _LABEL_PREFIX.sub("", normalize(text), count=1)


def label_key(label: str) -> str:
    """Canonical label: "Fig. 1." -> "Figure 1", "Supplementary Figure 1" -> "Figure S1"."""
    text = normalize(label)
    m = _LABEL_PREFIX.match(text)
    if not m:
        return text
    number = m.group(1).upper()
    if text.lower().startswith("supplementary") and not number.startswith("S"):
        number = "S" + number
    return f"Figure {number}"


# --- ground truth ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthFigure:
    label: str  # "Figure 2", "Figure S1"
    page: int | None  # 1-based
    bbox: BBox | None  # PDF points, top-left origin
    caption: str
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaperTruth:
    name: str
    pdf_path: Path
    figures: list[TruthFigure]
    has_boxes: bool
    source: Source = "sample"


def _bbox(values: Any) -> BBox:
    x0, top, x1, bottom = (float(v) for v in values)
    return (x0, top, x1, bottom)


def load_sample_truth(json_path: Path) -> PaperTruth:
    """One generated paper's `<id>.json`; its PDF is `<id>.pdf` beside it."""
    data = json.loads(json_path.read_text(encoding="utf-8"))
    figures = [
        TruthFigure(label_key(f["label"]), int(f["page"]), _bbox(f["bbox"]), f["caption"],
                    tuple(f.get("mentions", ())))
        for f in data["figures"]
    ]  # fmt: skip
    name = data.get("paper_id", json_path.stem)
    return PaperTruth(name, json_path.with_suffix(".pdf"), figures, has_boxes=True)


def load_sample_corpus(folder: Path) -> list[PaperTruth]:
    paths = sorted(p for p in folder.glob("*.json") if p.with_suffix(".pdf").exists())
    return [load_sample_truth(p) for p in paths]


def _load_jats(path: Path) -> list[TruthFigure]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [TruthFigure(label_key(f["label"]), None, None, f["caption"]) for f in data["figures"]]


def _tei_text(elem: ET.Element) -> str:
    """Text of a TEI element with `<lb/>` read as a line break."""
    parts = [elem.text or ""]
    for child in elem:
        parts.append("\n" if _local(child.tag) == "lb" else _tei_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _load_tei(path: Path) -> list[TruthFigure]:
    figures = []
    for fig in ET.parse(path).getroot().iter():
        if _local(fig.tag) != "figure" or fig.get("type") == "table":
            continue
        parts = {_local(c.tag): c for c in fig.iter()}
        head, desc = parts.get("head"), parts.get("figDesc")
        if head is None or desc is None or "label" not in parts:
            continue
        label = label_key(_tei_text(head))
        figures.append(TruthFigure(label, None, None, " ".join(_tei_text(desc).split())))
    return figures


def _load_deepfigures(path: Path) -> list[TruthFigure]:
    data = json.loads(path.read_text(encoding="utf-8"))
    scale = 72 / float(data.get("dpi") or 100)  # pixels at `dpi` -> PDF points
    return [
        TruthFigure(label_key(f"Figure {f['name']}"), int(f["page"]) + 1,
                    _bbox(f["figure_boundary"][k] * scale for k in ("x1", "y1", "x2", "y2")),
                    f.get("caption_text", ""))
        for f in data["figures"]
        if f.get("figure_type") == "Figure"
    ]  # fmt: skip


_READERS: dict[str, tuple[Callable[[Path], list[TruthFigure]], Source]] = {
    ".captions.json": (_load_jats, "jats"),
    ".grobid-figure.tei.xml": (_load_tei, "tei"),
    ".deepfigures-result.json": (_load_deepfigures, "deepfigures"),  # boxes, machine-made
}


def load_real_truth(corpus_dir: Path | None = None) -> list[PaperTruth]:
    """Every real paper that has truth and a PDF, sorted by name; [] without the corpus."""
    root = corpus_dir or CORPUS_DIR
    if not (root / "truth").is_dir():
        return []
    papers = []
    for path in sorted((root / "truth").iterdir()):
        for suffix, (read, source) in _READERS.items():
            if path.name.endswith(suffix):
                name = path.name.removesuffix(suffix)
                pdf = root / "pdfs" / f"{name}.pdf"
                papers.append(PaperTruth(name, pdf, read(path), source == "deepfigures", source))
    return [p for p in papers if p.pdf_path.exists()]


# --- scoring -----------------------------------------------------------------------------------


def iou(a: BBox, b: BBox) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class PaperScore:
    name: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    caption_exact: int = 0
    caption_sim: float = 0.0  # sum over truth figures (0 for a missed one)
    mentions_total: int = 0
    mentions_found: int = 0
    false_on_empty: int = 0  # predicted figures on a paper whose truth has none
    matched: list[tuple[TruthFigure, ExtractedFigure]] = field(default_factory=list)
    missed: list[TruthFigure] = field(default_factory=list)
    extra: list[ExtractedFigure] = field(default_factory=list)

    @property
    def truth_figures(self) -> int:
        return self.tp + self.fn

    @property
    def mean_caption_sim(self) -> float:
        return self.caption_sim / self.truth_figures if self.truth_figures else 1.0


def _matches(truth: TruthFigure, pred: ExtractedFigure, boxes: bool) -> float:
    """Match quality (> 0) of a prediction for a truth figure, or 0 if it does not match."""
    if label_key(pred.label) != truth.label:
        return 0.0
    if not boxes or truth.bbox is None:
        return 1.0
    overlap = iou(truth.bbox, pred.bbox) if pred.page == truth.page else 0.0
    return overlap if overlap >= IOU_MIN else 0.0


def score_paper(truth: PaperTruth, doc: ExtractedDocument, boxes: bool | None = None) -> PaperScore:
    """Match `doc.figures` to `truth.figures` (greedy, best IoU first) and score the captions."""
    use_boxes = truth.has_boxes if boxes is None else boxes
    whole = truth.source == "sample"  # generated captions carry their label; publishers' do not
    key = normalize if whole else caption_body
    score = PaperScore(truth.name)
    free = list(doc.figures)
    for t in truth.figures:
        quality = [(_matches(t, p, use_boxes), i) for i, p in enumerate(free)]
        best = max(quality, default=(0.0, -1))
        score.mentions_total += len(t.mentions)
        if best[0] <= 0:
            score.fn += 1
            score.missed.append(t)
            continue
        pred = free.pop(best[1])
        score.tp += 1
        score.matched.append((t, pred))
        got, want = key(pred.caption), key(t.caption)
        score.caption_exact += got == want
        score.caption_sim += SequenceMatcher(None, got, want, autojunk=False).ratio()
        found = [normalize(m) for m in pred.mentions]
        score.mentions_found += sum(any(normalize(s) in m for m in found) for s in t.mentions)
    score.fp, score.extra = len(free), free
    score.false_on_empty = 0 if truth.figures else len(doc.figures)
    return score


def _ratio(num: float, den: float, empty: float = 1.0) -> float:
    return num / den if den else empty


def aggregate(scores: list[PaperScore]) -> dict[str, float]:
    """Micro-averaged over papers: counts, precision, recall, F1, caption and mention quality."""

    def total(key: str) -> float:
        return float(sum(getattr(s, key) for s in scores))

    tp, fp, fn = total("tp"), total("fp"), total("fn")
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "papers": len(scores),
        "truth_figures": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall, 0.0),
        "caption_exact": _ratio(total("caption_exact"), tp + fn),
        "caption_similarity": _ratio(total("caption_sim"), tp + fn),
        "truth_mentions": total("mentions_total"),
        "mention_recall": _ratio(total("mentions_found"), total("mentions_total")),
        "empty_papers": sum(1 for s in scores if s.truth_figures == 0),
        "false_figures_on_empty": total("false_on_empty"),
    }
