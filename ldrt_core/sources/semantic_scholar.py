"""`SemanticScholarSource`: open-access papers from the Semantic Scholar Graph API.

Uses the `semanticscholar` client for bulk search (`/graph/v1/paper/search/bulk`, token
pagination), with our own HTTP layer under it: at most LDRT_S2_REQUESTS_PER_SECOND requests,
exponential backoff on 429, 5xx, network errors and malformed JSON, capped at LDRT_S2_MAX_WAIT_S
seconds of waiting in all, and a clear error when the API key is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from semanticscholar import SemanticScholar
from semanticscholar.ApiRequester import ApiRequester
from semanticscholar.Paper import Paper
from semanticscholar.SemanticScholarException import NoMorePagesException

from ldrt_core.config import Settings
from ldrt_core.download import Downloader, DownloadPolicy
from ldrt_core.errors import DownloadError, SourceAuthError, SourceError, SourceUnavailableError
from ldrt_core.papers import PaperRecord
from ldrt_core.sources.base import PaperSource

FIELDS = [
    "paperId",
    "externalIds",
    "title",
    "abstract",
    "year",
    "publicationDate",
    "venue",
    "authors",
    "openAccessPdf",
]
MAX_EMPTY_PAGES = 3  # a token that keeps coming back with nothing is a broken cursor


class RateLimiter:
    """At most `rate` calls per second, across threads: each call reserves the next free slot."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Seconds to wait before the caller may go."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
            return start - now


class _Requester(ApiRequester):  # type: ignore[misc]
    """HTTP under the semanticscholar client: rate limit, typed errors, bounded backoff."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(timeout=settings.s2_timeout_s, retry=False)
        self._limiter = RateLimiter(settings.s2_requests_per_second)
        self._max_wait = settings.s2_max_wait_s
        self._backoff = settings.s2_backoff_s
        self._has_key = settings.s2_api_key is not None
        self.requests = 0
        self.retries = 0
        self.dropped = 0  # items the client cannot read

    async def get_data_async(
        self, url: str, parameters: str, headers: dict[str, str], payload: Any = None
    ) -> Any:
        waited, delay, attempts = 0.0, self._backoff, 0
        while True:
            await asyncio.sleep(self._limiter.reserve())
            attempts += 1
            self.requests += 1
            retry_after = 0.0
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.request(
                        "POST" if payload else "GET",
                        url,
                        params=parameters.lstrip("&"),
                        headers=headers,
                        json=payload,
                    )
                problem, data = self._read(response)
                retry_after = _retry_after(response)
            except httpx.HTTPError as exc:
                problem, data = f"network error ({type(exc).__name__})", None
            if problem is None:
                return data
            pause = max(delay, retry_after) * random.uniform(1.0, 1.25)
            if waited + pause > self._max_wait:
                raise SourceUnavailableError(
                    f"Semantic Scholar kept failing ({problem}): gave up after {attempts} "
                    f"attempts and {waited:.0f} s of backoff "
                    f"(LDRT_S2_MAX_WAIT_S={self._max_wait:g})"
                )
            self.retries += 1
            await asyncio.sleep(pause)
            waited += pause
            delay *= 2

    def _read(self, response: httpx.Response) -> tuple[str | None, Any]:
        """(None, data) for a good answer, (problem, None) for one worth retrying; else raise."""
        status = response.status_code
        if status in (401, 403):
            hint = (
                "check LDRT_S2_API_KEY (or unset it to use the public, slower limit)"
                if self._has_key
                else "the public API refused us; set LDRT_S2_API_KEY"
            )
            raise SourceAuthError(f"Semantic Scholar refused the request (HTTP {status}): {hint}")
        if status == 429 or status >= 500:
            return f"HTTP {status}", None
        if status != 200:
            raise SourceError(
                f"Semantic Scholar rejected the request (HTTP {status}): {_error_text(response)}"
            )
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "malformed JSON", None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            return "a response without a 'data' list", None
        data["data"] = [item for item in data["data"] if self._readable(item)]
        return None, data

    def _readable(self, item: Any) -> bool:
        """Whether the client can build its `Paper` from `item`: it builds one for every item of
        a page before we see any, and a single bad one (a null, a date like "2024-01") would
        end the search with a bare ValueError or TypeError. Bad items are dropped and counted."""
        try:
            if not isinstance(item, dict):
                raise TypeError(f"an item that is not an object: {item!r:.40}")
            Paper(item)
        except (AttributeError, KeyError, TypeError, ValueError):
            self.dropped += 1
            return False
        return True


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else 0.0


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error") or body.get("message") or body)[:300]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return response.text[:300]


def paper_from_s2(raw: dict[str, Any]) -> PaperRecord | None:
    """A record from one bulk-search item; None when it lacks an id or a title."""
    pdf = raw.get("openAccessPdf") or {}
    try:
        return PaperRecord(
            source="s2",
            external_id=raw["paperId"],
            title=raw.get("title") or "",
            doi=(raw.get("externalIds") or {}).get("DOI"),
            abstract=raw.get("abstract"),
            year=raw.get("year"),
            publication_date=raw.get("publicationDate"),
            venue=raw.get("venue") or None,
            authors=[a["name"] for a in raw.get("authors") or [] if a.get("name")],
            pdf_url=(pdf.get("url") or None) if isinstance(pdf, dict) else None,
        )
    except (KeyError, TypeError, AttributeError, ValidationError):
        return None


class SemanticScholarSource(PaperSource):
    name = "s2"

    def __init__(self, settings: Settings) -> None:
        key = settings.s2_api_key.get_secret_value() if settings.s2_api_key else None
        self._client = SemanticScholar(
            timeout=int(settings.s2_timeout_s), api_key=key, api_url=settings.s2_api_url
        )
        self.requester = _Requester(settings)
        # The client has no public hook for its HTTP layer; PaginatedResults takes this one.
        self._client._AsyncSemanticScholar._requester = self.requester
        self._downloader = Downloader(DownloadPolicy.from_settings(settings))
        self._skipped = 0  # items without an id or title

    def search(self, query: str, since: dt.date | None) -> Iterator[PaperRecord]:
        results = self._client.search_paper(
            # The client pastes the query into the URL as is: encode '+', '&', quotes ourselves.
            quote(query, safe=""),
            bulk=True,
            sort="publicationDate:asc",
            open_access_pdf=True,
            fields=FIELDS,
            publication_date_or_year=f"{since.isoformat()}:" if since else None,
        )
        seen, empty_pages = 0, 0
        while True:
            items = results.items[seen:]
            seen += len(items)
            for item in items:
                record = paper_from_s2(item.raw_data)
                if record is None:
                    self._skipped += 1
                else:
                    yield record
            empty_pages = 0 if items else empty_pages + 1
            if empty_pages >= MAX_EMPTY_PAGES:
                raise SourceUnavailableError(
                    f"Semantic Scholar returned {MAX_EMPTY_PAGES} empty pages in a row with a "
                    "continuation token: the pagination is broken, stopping"
                )
            try:
                results.next_page()
            except NoMorePagesException:
                return

    @property
    def skipped(self) -> int:
        """Items of the search left out: unreadable, or without an id or a title."""
        return self.requester.dropped + self._skipped

    def open_pdf(self, paper: PaperRecord) -> AbstractContextManager[BinaryIO]:
        if not paper.pdf_url:
            raise DownloadError(f"{paper.external_id} has no open-access PDF")
        return self._downloader.open(paper.pdf_url)

    def close(self) -> None:
        self._downloader.close()
