"""The paper record every source produces and the refresh stage stores.

A `PaperRecord` is metadata only; its PDF is fetched by the source that found it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)", re.IGNORECASE)


def normalize_doi(doi: str | None) -> str | None:
    """DOIs are case-insensitive: compare them lower-cased, without a resolver prefix."""
    if not doi:
        return None
    doi = _DOI_PREFIX.sub("", doi.strip()).lower()
    return doi or None


class PaperRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str = Field(description="Which source found it: 's2' or 'folder'.")
    external_id: str = Field(description="The source's id: an S2 paperId, or 'folder:<name>'.")
    title: str
    doi: str | None = None
    abstract: str | None = None
    year: int | None = None
    publication_date: dt.date | None = None
    venue: str | None = None
    authors: list[str] = Field(default_factory=list)
    pdf_url: str | None = Field(default=None, description="Where the PDF is; None: no open PDF.")

    @field_validator("doi")
    @classmethod
    def _normalize_doi(cls, value: str | None) -> str | None:
        return normalize_doi(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("a paper needs a title")
        return value

    def row_values(self) -> dict[str, Any]:
        """The columns of `papers` this record sets."""
        return self.model_dump()
