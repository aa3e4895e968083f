"""The records evaluation passes between its steps: questions, answers, scores, per model.

`EvalItem`: one question of the evaluation split (a human turn of a held-out conversation) with
its reference answer and the figure's context. `ItemResult`: one model's answer to it with its
text metrics and every judge's verdict. `ModelResult`: all of one model's results. The report
(`ldrt_core.evaluate.report`) is made from a baseline and a tuned `ModelResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EvalItem", "ItemResult", "JudgeScore", "ModelResult"]


@dataclass(frozen=True)
class EvalItem:
    item_id: str  # "<record id>#<turn>": unique in the dataset version
    record_id: str
    category: str  # conversation, detailed_description, complex_reasoning
    image: str  # store key of the figure
    history: tuple[tuple[str, str], ...]  # earlier (question, reference answer) turns
    question: str
    reference: str
    caption: str
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class JudgeScore:
    score: float | None  # None: the verdict could not be had or parsed (never counted as 0)
    reason: str = ""
    error: str | None = None


@dataclass
class ItemResult:
    item_id: str
    category: str
    answer: str
    reference: str
    rouge: dict[str, float]  # rouge1, rouge2, rougeL (F-measure)
    length_ratio: float | None  # answer tokens / reference tokens
    hedges: int  # hedging words in the answer
    judges: dict[str, JudgeScore] = field(default_factory=dict)  # judge name -> verdict


@dataclass
class ModelResult:
    label: str  # "base", or "tuned" with the run
    model: str  # what answered: base model path, run id, adapter
    items: list[ItemResult] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
