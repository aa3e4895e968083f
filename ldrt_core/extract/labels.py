"""The pure-text side of figure extraction: caption labels, sentences, mentions, comparison.

Input: plain strings (text lines, body text, captions) read from a PDF elsewhere. Output:
`CaptionStart`s for lines that open a figure or table caption, body text split into sentences,
hyphenated line breaks joined, a map from normalised figure labels ("Figure 2", "Figure S1",
"Extended Data Figure 4") to the sentences that cite them, and captions normalised for comparison.
"""

# Dashes and curly quotes in the patterns below are meant.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

_CAPTION_START: Final = re.compile(
    r"\s*(?:(?P<prefix>Supplementary|SUPPLEMENTARY|Supplemental|SUPPLEMENTAL)\s+"
    r"|(?P<extended>Extended\s+Data|EXTENDED\s+DATA)\s+)?"
    r"(?P<word>Figure|FIGURE|Fig\.?|FIG\.?|Table|TABLE)\s*(?P<number>S?\d{1,3}|[IVX]{1,5})(?!\w)"
)
# After the number: a delimiter and a space (or the end), ":" or "|" run on, or the end of line.
_DELIMITER: Final = re.compile(r"\s*(?:[.—–-](?:\s+|$)|[:|]\s*|\.(?=[A-Z])|$)")

# A sentence ends at . ! or ?, closing quotes or brackets, space, then a capital or a digit.
_BOUNDARY: Final = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_OPENERS = "\"'“‘(["
# fmt: off
_ABBREVIATIONS: Final = frozenset((
    "fig.", "figs.", "eq.", "eqs.", "ref.", "refs.", "al.", "e.g.", "i.e.", "vs.", "approx.",
    "ca.", "no.", "nos.", "dr.", "mr.", "mrs.", "ms.", "prof.", "cf.", "suppl.", "tab.", "sec.",
    "sect.", "vol.", "resp.", "st."
))
# fmt: on
_INITIAL: Final = re.compile(r"[A-Z]\.")

# A decimal ("Fig. 3C, 1.0 Gy") or a quantity ("Fig. 2, 5 Gy") ends a list of figure numbers.
_UNIT = (
    r"(?:(?:[mcµμ]?Gy|m?Sv|h|hr|min|s|ms|[mcµμn]m|kg|mg|g|m[lL]|days?|weeks?|months?|years?)\b"
    r"|%|°)"
)
# A panel letter, a panel range or list ("2A–C", "2a, b") or panels in brackets ("2(b)").
_LETTER = r"[A-Za-z](?![A-Za-z])"
_PANELS = rf"{_LETTER}(?:\s*[-–,]\s*{_LETTER})*|\([A-Za-z](?:[,\s–-]+[A-Za-z])*\)"
_ITEM = rf"S?\d+(?![.,]\d|\d|\s*{_UNIT})(?:{_PANELS})?"
_MENTION: Final = re.compile(
    r"(?:(?P<supp>Supplementary|SUPPLEMENTARY|Supplemental|Suppl\.)\s*"
    r"|(?P<extended>Extended\s+Data|EXTENDED\s+DATA)\s+)?"
    r"\b(?:[Ff]ig(?:ure)?s?\.?|FIG(?:URE)?S?\.?)\s*"
    # A bare letter after a number ("Figs. 2A and B, and 4") is a panel of the figure before it.
    rf"(?P<items>{_ITEM}(?:\s*(?:,\s*and|,|and|&|[-–—])\s*(?:{_ITEM}|{_LETTER}))*)"
)
# A dash makes a range only between numbers; between panel letters ("1B–D") it does not.
_MENTION_PART: Final = re.compile(r"(?P<dash>[-–—])(?=\s*S?\d)|(?P<s>S?)(?P<n>\d+)")
MAX_RANGE: Final = 20

_HYPHENS = "-\u2010"
_SOFT_HYPHEN = "\u00ad"
_QUOTES: Final = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"',
                                "„": '"', "‟": '"'})  # fmt: skip


@dataclass(frozen=True)
class CaptionStart:
    kind: Literal["figure", "table"]
    label: str  # normalised: "Figure 2", "Figure S1", "Extended Data Figure 4", "Table II"
    number: str  # "2", "S1", "II"
    delimited: bool  # a caption delimiter (or the end of line) follows the label
    rest: str  # the text after the label and its delimiter


def _label(kind: str, number: str, supplementary: bool, extended: bool) -> tuple[str, str]:
    """The normalised (label, number) of a figure or table reference."""
    if supplementary and not number.startswith("S"):
        number = "S" + number
    word = "Figure" if kind == "figure" else "Table"
    return ("Extended Data " if extended else "") + f"{word} {number}", number


def parse_caption_start(line: str) -> CaptionStart | None:
    """The caption label that opens `line`, or None if the line does not start with one."""
    line = line.replace("\u00a0", " ")
    match = _CAPTION_START.match(line)
    if match is None:
        return None
    word, roman = match["word"], match["number"][-1] in "IVX"
    kind: Literal["figure", "table"] = "table" if word.lower() == "table" else "figure"
    if roman and kind == "figure":
        return None
    label, number = _label(kind, match["number"], bool(match["prefix"]), bool(match["extended"]))
    tail = line[match.end() :]
    delimiter = _DELIMITER.match(tail)
    if delimiter is None and word.isupper() and tail[:1].isspace():
        # "FIGURE 2 Dose response ...": an all-capitals label is set apart by a space alone.
        delimiter = re.match(r"\s+", tail)
    if delimiter is None:
        return CaptionStart(kind, label, number, False, tail.strip())
    return CaptionStart(kind, label, number, True, tail[delimiter.end() :].strip())


def split_sentences(text: str) -> list[str]:
    """Running text split into sentences, white space collapsed; abbreviations do not split."""
    sentences: list[str] = []
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        if text[boundary.start()] == ".":
            words = text[start : boundary.start() + 1].split()
            token = words[-1].lstrip(_OPENERS) if words else ""
            if token.lower() in _ABBREVIATIONS or _INITIAL.fullmatch(token):
                continue
        sentences.append(text[start : boundary.end()])
        start = boundary.end()
    sentences.append(text[start:])
    return [" ".join(s.split()) for s in sentences if s.strip()]


def dehyphenate(lines: list[str]) -> str:
    """Text lines joined into one string, words hyphenated across a line break made whole."""
    out = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not out:
            out = line
        elif out.endswith(_SOFT_HYPHEN):
            out = out[:-1] + line
        elif out[-1] in _HYPHENS and len(out) > 1 and out[-2].islower() and line[0].islower():
            out = out[:-1] + line  # "radio-" + "therapy"
        elif out[-1] in _HYPHENS and len(out) > 1 and out[-2].isalnum() and line[0].isalnum():
            out += line  # "IL-" + "6", "low-" + "Dose"
        else:
            out += " " + line
    return out


def find_mentions(sentences: list[str]) -> dict[str, list[str]]:
    """Normalised figure label -> the sentences that cite it, in order, without duplicates."""
    mentions: dict[str, list[str]] = {}
    for sentence in sentences:
        for match in _MENTION.finditer(sentence):
            for label in _mentioned_labels(match):
                cited = mentions.setdefault(label, [])
                if sentence not in cited:
                    cited.append(sentence)
    return mentions


def _mentioned_labels(match: re.Match[str]) -> list[str]:
    """The labels one reference names: "Figs. 2–4" -> Figure 2, Figure 3, Figure 4."""
    numbers: list[str] = []
    after_dash = False
    for part in _MENTION_PART.finditer(match["items"]):
        if part["dash"]:
            after_dash = True
            continue
        prefix, value = part["s"], int(part["n"])
        if after_dash and numbers and numbers[-1].startswith("S") == bool(prefix):
            low = int(numbers[-1].removeprefix("S"))
            if 0 < value - low < MAX_RANGE:  # at most MAX_RANGE figures
                numbers += [f"{prefix}{n}" for n in range(low + 1, value)]
        numbers.append(f"{prefix}{value}")
        after_dash = False
    supplementary, extended = bool(match["supp"]), bool(match["extended"])
    labels = [_label("figure", n, supplementary, extended)[0] for n in numbers]
    return list(dict.fromkeys(labels))


def normalize_caption(text: str) -> str:
    """A caption for comparison: NFKC, straight quotes, line breaks joined, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    joined = dehyphenate(text.splitlines()).replace(_SOFT_HYPHEN, "")
    return " ".join(joined.split())


# A figure label at the start of a caption, as loosely as captions write it: "Figure 2.",
# "Fig. 2:", "FIGURE 2 |", "Supplementary Figure S1 -", "Extended Data Fig. 4a.", "Figure IV".
# Tables are not stripped: a caption that starts with "Table" says what the picture is.
_FIGURE_LABEL: Final = re.compile(
    r"^\s*(?:(?:supplementary|supplemental|suppl\.|extended\s+data)\s+)?"
    r"(?:figure|fig\.?|scheme|plate)\s*"
    r"(?:s?\d{1,3}(?:[a-z](?![a-z]))?|(?-i:[IVX]{1,5}))(?!\w)"
    r"\s*(?:[.:|—–-]+|\s|$)\s*",
    re.IGNORECASE,
)


def caption_body(text: str) -> str:
    """The normalised caption without its leading figure label and delimiter ("Figure 2. ")."""
    return _FIGURE_LABEL.sub("", normalize_caption(text), count=1).strip()
