"""What the QA generator asks for: the prompt, the output schema, and the fixed instruction lists.

Bump PROMPT_VERSION whenever the prompt or schema changes: cached generations are keyed by it.
"""

from __future__ import annotations

from typing import Any, Final

PROMPT_VERSION: Final = "qa-1"
CATEGORIES: Final = ("conversation", "detailed_description", "complex_reasoning")

_TURN: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 8},
        "answer": {"type": "string", "minLength": 8},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}
SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "conversation": {"type": "array", "minItems": 2, "maxItems": 6, "items": _TURN},
        "detailed_description": _TURN,
        "complex_reasoning": _TURN,
    },
    "required": list(CATEGORIES),
    "additionalProperties": False,
}

SYSTEM: Final = """\
You are an AI visual assistant looking at one figure from a scientific paper on low-dose \
radiation therapy. You are given the figure's caption, the sentences of the paper that cite it \
and the paper's title, but answer as if you were looking at the figure itself.

Write, as JSON matching the schema:
- "conversation": 2 to 6 question-answer turns between a researcher and you about what the \
figure shows (what is plotted or imaged, doses, groups, trends, panels);
- "detailed_description": one request for a detailed description and a thorough answer;
- "complex_reasoning": one question that needs reasoning beyond what is drawn (mechanism, \
implication, limitation) and a careful answer grounded in the figure.

Rules: never mention a caption, a text, a description or the paper's sentences; never say you \
cannot see the image; do not copy the caption word for word; only state what the figure and its \
context support; use the units as given (Gy, mGy, μGy)."""

USER: Final = """\
Title: {title}

Caption: {caption}

Sentences citing the figure:
{mentions}"""

# LLaVA's stage-1 instructions for a brief description (llava/train: "brief description" list).
BRIEF_INSTRUCTIONS: Final = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
)
ALIGN_VERSION: Final = "align-1"  # bump when BRIEF_INSTRUCTIONS change
