"""Post-processing of generated turns: drop the ones that leak, trim the tell-tale prefixes.

Input: a question, an answer and the caption they were generated from. Output: the cleaned turn,
or the reason it was dropped. A turn leaks when it talks about the caption or the text instead
of the figure, refuses ("I cannot see the image"), or copies the caption word for word.
"""

from __future__ import annotations

import re
from typing import Final

_LEAKS: Final = re.compile(
    r"\b(?:caption|figure legend|legend says|description (?:says|states|mentions))\b"
    r"|\b(?:the|this) (?:text|passage|paragraph|sentence)s? (?:says|states|mentions|describes)\b"
    r"|\bcannot see (?:the |this )?(?:image|figure)\b|\bunable to (?:see|view)\b"
    r"|\bnot visible in the (?:image|figure)\b|\bas an ai\b|\bI(?:'m| am) sorry\b|\bsorry\b",
    re.IGNORECASE,
)
_PREFIX: Final = re.compile(
    r"^(?:based on|according to|from|as (?:stated|described|mentioned) in) (?:the )?"
    r"(?:caption|description|text|provided (?:information|context)|context|figure legend)"
    r"(?: provided)?[,:]\s*",
    re.IGNORECASE,
)
COPY_WORDS: Final = 12  # this many consecutive caption words in an answer is a copy
# Bump when the rules change: cleaned turns are cached (ldrt_core.qa.generate keys them by it).
CLEAN_VERSION: Final = "clean-1"


def clean_turn(question: str, answer: str, caption: str) -> tuple[str, str] | str:
    """(question, answer) cleaned, or a string saying why the turn is dropped."""
    question, answer = " ".join(question.split()), _strip_prefix(" ".join(answer.split()))
    for text in (question, answer):
        leak = _LEAKS.search(text)
        if leak:
            return f"leaks: {leak.group(0)!r}"
    if _copies(answer, caption):
        return f"copies {COPY_WORDS}+ words of the caption"
    if len(answer) < 8:
        return "empty answer"
    return question, answer


def _strip_prefix(text: str) -> str:
    stripped = _PREFIX.sub("", text, count=1)
    return stripped[:1].upper() + stripped[1:] if stripped != text else text


def _copies(answer: str, caption: str) -> bool:
    words = re.findall(r"\w+", caption.lower())
    if len(words) < COPY_WORDS:
        return False
    text = " ".join(re.findall(r"\w+", answer.lower()))
    return any(
        " ".join(words[i : i + COPY_WORDS]) in text for i in range(len(words) - COPY_WORDS + 1)
    )
