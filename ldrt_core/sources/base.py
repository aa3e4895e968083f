"""`PaperSource`: where papers come from. Two methods: find papers, open one's PDF.

The refresh stage never knows which source it has: Semantic Scholar, a local folder, or (in
tests) Semantic Scholar's API replayed on loopback.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from ldrt_core.papers import PaperRecord


class PaperSource(ABC):
    name: str  # "s2", "folder:/abs/path": with the query, it keys the refresh cursor

    @abstractmethod
    def search(self, query: str, since: dt.date | None) -> Iterator[PaperRecord]:
        """Papers matching `query` published on or after `since`, oldest first."""

    @abstractmethod
    def open_pdf(self, paper: PaperRecord) -> AbstractContextManager[BinaryIO]:
        """A checked stream of the paper's PDF bytes (see `ldrt_core.download`)."""

    def holds(self, pdf_url: str | None) -> bool:
        """Whether a paper of this kind of source, with this link, is this source's to fetch:
        every one for an API; for a folder, only the files in it."""
        return True

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release connections."""
