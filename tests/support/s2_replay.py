"""A loopback HTTP server that answers like Semantic Scholar's Graph API and serves PDFs.

The product talks to it through its real clients (`semanticscholar` + httpx), so tests exercise
the same code paths as production: bulk search with continuation tokens, field selection, date
filters, and PDF downloads, with the faults the real world has (429 bursts, 500s, malformed
JSON, HTML instead of a PDF, truncated and slow downloads, a refused API key, a token that never
ends).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.bad_pdfs import minimal_pdf
from tests.support.http import QuietHandler

__all__ = ["Faults", "ReplayPaper", "S2Replay", "make_papers", "minimal_pdf"]


@dataclass
class ReplayPaper:
    paper_id: str
    title: str
    publication_date: str  # YYYY-MM-DD
    pdf: bytes | None  # None: listed with an empty openAccessPdf url
    doi: str | None = None
    abstract: str = "Low-dose radiation therapy modulates inflammation."
    venue: str = "Radiation Research"
    authors: list[str] = field(default_factory=lambda: ["A. Author", "B. Author"])
    pdf_name: str | None = None  # served at /pdf/<name>; papers may share a name (same bytes)
    pdf_url: str | None = None  # listed as its openAccessPdf url instead of the replay's own

    def as_s2(self, base_url: str, fields: list[str]) -> dict[str, Any]:
        full = {
            "paperId": self.paper_id,
            "externalIds": {"DOI": self.doi} if self.doi else {},
            "title": self.title,
            "abstract": self.abstract,
            "year": int(self.publication_date[:4]),
            "publicationDate": self.publication_date,
            "venue": self.venue,
            "authors": [{"authorId": str(i), "name": n} for i, n in enumerate(self.authors)],
            "openAccessPdf": {
                "url": self.pdf_url
                or (
                    f"{base_url}/pdf/{self.pdf_name or self.paper_id + '.pdf'}" if self.pdf else ""
                ),
                "status": "GREEN" if self.pdf else None,
            },
        }
        return {"paperId": self.paper_id, **{k: full[k] for k in fields if k in full}}


@dataclass
class Faults:
    search_429: int = 0  # the first N search requests answer 429
    search_500: int = 0  # then N answer 500
    search_malformed: int = 0  # then N answer 200 with a body that is not JSON
    search_429_forever: bool = False
    refuse_key: bool = False  # every request answers 403
    endless_token: bool = False  # pages beyond the data keep returning an empty page and a token
    html_pdfs: set[str] = field(default_factory=set)  # pdf names answered with an HTML page
    truncated_pdfs: set[str] = field(default_factory=set)  # always cut short
    truncated_once: set[str] = field(default_factory=set)  # cut short the first time only
    pdf_500_once: set[str] = field(default_factory=set)
    slow_pdfs: dict[str, float] = field(default_factory=dict)  # seconds before the body
    odd_items: list[Any] = field(default_factory=list)  # raw items at the end of the first page


class S2Replay:
    """`with S2Replay(papers) as s2: ... s2.url ...`"""

    def __init__(
        self, papers: list[ReplayPaper], page_size: int = 100, faults: Faults | None = None
    ):
        self.papers = sorted(papers, key=lambda p: (p.publication_date, p.paper_id))
        self.page_size = page_size
        self.faults = faults or Faults()
        self.hits: Counter[str] = Counter()  # "search", "pdf:<name>"
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> S2Replay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _by_pdf_name(self) -> dict[str, ReplayPaper]:
        return {p.pdf_name or p.paper_id + ".pdf": p for p in reversed(self.papers)}

    def pdf_hits(self) -> int:
        return sum(n for k, n in self.hits.items() if k.startswith("pdf:"))

    def _count(self, key: str) -> int:
        with self._lock:
            self.hits[key] += 1
            return self.hits[key]

    # ------------------------------------------------------------------ handlers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if replay.faults.refuse_key:
                    return self._send(403, b'{"message": "Forbidden"}')
                if path == "/graph/v1/paper/search/bulk":
                    return replay._search(self)
                if path.startswith("/pdf/"):
                    return replay._pdf(self, path.removeprefix("/pdf/"))
                return self._send(404, b'{"error": "Not found"}')

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _search(self, handler: Any) -> None:
        n = self._count("search")
        f = self.faults
        if f.search_429_forever or n <= f.search_429:
            return handler._send(429, b'{"message": "Too Many Requests"}')
        if n <= f.search_429 + f.search_500:
            return handler._send(500, b'{"message": "Internal Server Error"}')
        if n <= f.search_429 + f.search_500 + f.search_malformed:
            return handler._send(200, b'{"total": 3, "data": [{"paperId": ')
        params = parse_qs(urlsplit(handler.path).query)
        self.queries.append(params.get("query", [""])[0])
        fields = params.get("fields", ["paperId,title"])[0].split(",")
        start = params.get("publicationDateOrYear", [":"])[0].split(":")[0]
        matching = [p for p in self.papers if not start or p.publication_date >= start]
        token = params.get("token", [None])[0]
        offset = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        page = matching[offset : offset + self.page_size]
        body: dict[str, Any] = {
            "total": len(matching),
            "data": [p.as_s2(self.url, fields) for p in page] + (f.odd_items if not offset else []),
        }
        following = offset + self.page_size
        if following < len(matching) or f.endless_token:
            body["token"] = base64.urlsafe_b64encode(str(following).encode()).decode()
        handler._send(200, json.dumps(body).encode())

    def _pdf(self, handler: Any, name: str) -> None:
        n = self._count(f"pdf:{name}")
        f = self.faults
        paper = self._by_pdf_name().get(name)
        if paper is None or paper.pdf is None:
            return handler._send(404, b"not found", "text/plain")
        if name in f.slow_pdfs:
            time.sleep(f.slow_pdfs[name])
        if name in f.html_pdfs:
            page = b"<!DOCTYPE html><html><head><title>Article</title></head><body>Log in</body>"
            return handler._send(200, page, "text/html")
        if name in f.pdf_500_once and n == 1:
            return handler._send(500, b"busy", "text/plain")
        if name in f.truncated_pdfs or (name in f.truncated_once and n == 1):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/pdf")
            handler.send_header("Content-Length", str(len(paper.pdf)))
            handler.end_headers()
            handler.wfile.write(paper.pdf[: len(paper.pdf) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return None
        return handler._send(200, paper.pdf, "application/pdf")


def make_papers(
    count: int, *, start: str = "2024-01-01", every_nth_no_pdf: int = 0
) -> list[ReplayPaper]:
    """`count` distinct papers, one a day from `start`, each with its own small PDF and DOI."""
    import datetime as dt

    day0 = dt.date.fromisoformat(start)
    papers = []
    for i in range(count):
        no_pdf = every_nth_no_pdf and i % every_nth_no_pdf == every_nth_no_pdf - 1
        title = f"Low-dose radiation therapy study {i}"
        papers.append(
            ReplayPaper(
                paper_id=f"{i:040x}",
                title=title,
                doi=f"10.5555/ldrt.{i}",
                publication_date=(day0 + dt.timedelta(days=i)).isoformat(),
                pdf=None if no_pdf else minimal_pdf(title),
            )
        )
    return papers
