"""Records of the curation stage: a candidate figure-caption pair and a filter's verdict on it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PairCandidate:
    pair_key: str  # stable across runs: "<document sha256>:<figure ordinal>"
    paper_id: str  # the paper's external id; the split keeps each paper whole
    paper_title: str
    label: str  # "Figure 2"
    caption: str  # whole caption, label prefix included
    image: bytes  # the rendered figure, PNG
    image_sha256: str
    mentions: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    kept: bool
    reason: str | None = None  # why it was dropped, in words a person can check

    @classmethod
    def keep(cls) -> Decision:
        return cls(True)

    @classmethod
    def drop(cls, reason: str) -> Decision:
        return cls(False, reason)
