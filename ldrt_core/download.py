"""PDF download: a URL in, a checked stream of PDF bytes out.

Only http and https; a host that resolves to a loopback, private, link-local or otherwise
special address is refused unless it is in LDRT_DOWNLOAD_ALLOW_HOSTS (redirects are checked hop
by hop). The stream enforces the size cap and checks that the bytes are a whole PDF: `%PDF-` at
the start (an HTML landing page is not a PDF) and `%%EOF` near the end (a cut-off download is not
either). Nothing is written until the caller has read the stream to its end without an error.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from ldrt_core.config import Settings
from ldrt_core.errors import (
    DownloadError,
    NotAPDFError,
    RefusedURLError,
    TooLargeError,
    TransientDownloadError,
    TruncatedPDFError,
)

MAX_REDIRECTS = 5
HEADER_WINDOW = 1024  # readers accept %PDF- anywhere in the first KB
TRAILER_WINDOW = 2048  # %%EOF sits in the last few hundred bytes of a whole file
USER_AGENT = "ldrt/0.1 (open-access corpus refresh; +https://github.com/ldrt)"


@dataclass(frozen=True)
class DownloadPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    max_bytes: int = 50_000_000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadPolicy:
        return cls(
            allowed_hosts=settings.allowed_hosts,
            max_bytes=settings.download_max_bytes,
            connect_timeout_s=settings.download_connect_timeout_s,
            read_timeout_s=settings.download_read_timeout_s,
        )


def check_url(url: str, allowed_hosts: frozenset[str]) -> None:
    """Raise RefusedURLError unless `url` is http(s) to a public address (or an allowed host)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: "Port out of range", "Port could not be cast"
    except ValueError as exc:
        raise RefusedURLError(f"refused malformed URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedURLError(f"refused {parts.scheme or 'scheme-less'} URL: only http and https")
    host = (parts.hostname or "").lower()
    if not host:
        raise RefusedURLError(f"refused URL without a host: {url!r}")
    if host in allowed_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TransientDownloadError(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError as exc:  # not a host name: a label over 63 characters, say
        raise RefusedURLError(f"refused malformed host {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise RefusedURLError(
                f"refused {host}: it resolves to the non-public address {address} "
                "(add the host to LDRT_DOWNLOAD_ALLOW_HOSTS to allow it)"
            )


class Downloader:
    """Fetches PDFs over HTTP with the checks above. Thread-safe; reuse one per run."""

    def __init__(self, policy: DownloadPolicy) -> None:
        self.policy = policy
        self._client = httpx.Client(
            timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
            follow_redirects=False,  # each hop is checked by check_url
            headers={"User-Agent": USER_AGENT, "Accept": "application/pdf,*/*;q=0.5"},
            limits=httpx.Limits(max_connections=32),
        )

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def open(self, url: str) -> Iterator[BinaryIO]:
        """A stream of the PDF at `url`; read it to the end, and errors surface as DownloadError."""
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.policy.allowed_hosts)
            try:
                request = self._client.build_request("GET", url)
                response = self._client.send(request, stream=True)
            except httpx.InvalidURL as exc:
                raise RefusedURLError(f"refused malformed URL {url!r}: {exc}") from None
            except httpx.HTTPError as exc:
                raise TransientDownloadError(f"cannot fetch {url}: {_reason(exc)}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                _check_status(response, url)
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.policy.max_bytes:
                    raise TooLargeError(
                        f"{url} is {int(length):,} bytes, over the cap of "
                        f"{self.policy.max_bytes:,} (LDRT_DOWNLOAD_MAX_BYTES)"
                    )
                yield io.BufferedReader(
                    PDFStream(response.iter_bytes(), url, self.policy.max_bytes)
                )
                return
            finally:
                response.close()
        raise RefusedURLError(f"more than {MAX_REDIRECTS} redirects from {url}")


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise TransientDownloadError(f"{url} answered HTTP {status}")
    raise DownloadError(f"{url} answered HTTP {status}")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class PDFStream(io.RawIOBase):
    """Bytes from an iterator, checked on the way through: size cap, PDF header and trailer."""

    def __init__(self, chunks: Iterator[bytes], source: str, max_bytes: int) -> None:
        self._chunks = chunks
        self._source = source
        self._max = max_bytes
        self._pending = b""
        self._size = 0
        self._head = b""
        self._tail = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._done:
            self._pending = self._next_chunk()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_chunk(self) -> bytes:
        chunk: bytes | None = b""
        while chunk == b"":  # skip empty chunks; None is the end
            try:
                chunk = next(self._chunks, None)
            except httpx.HTTPError as exc:
                raise TransientDownloadError(
                    f"download of {self._source} broke off after {self._size:,} bytes: "
                    f"{_reason(exc)}"
                ) from None
        if chunk is None:
            self._finish()
            return b""
        self._size += len(chunk)
        if self._size > self._max:
            raise TooLargeError(
                f"{self._source} is over the cap of {self._max:,} bytes (LDRT_DOWNLOAD_MAX_BYTES)"
            )
        if len(self._head) < HEADER_WINDOW:
            self._head += chunk[: HEADER_WINDOW - len(self._head)]
            if len(self._head) >= HEADER_WINDOW:
                self._check_header()
        self._tail = (self._tail + chunk)[-TRAILER_WINDOW:]
        return chunk

    def _check_header(self) -> None:
        if b"%PDF-" not in self._head:
            looks = "an HTML page" if b"<html" in self._head.lower() else "not a PDF"
            raise NotAPDFError(f"{self._source} is {looks} (no %PDF- header)")

    def _finish(self) -> None:
        self._done = True
        self._check_header()
        if b"%%EOF" not in self._tail:
            raise TruncatedPDFError(
                f"{self._source} is cut short: {self._size:,} bytes and no %%EOF at the end"
            )


def pdf_stream_from_file(stream: BinaryIO, source: str, max_bytes: int) -> BinaryIO:
    """The same checks for a local file."""
    chunks = iter(lambda: stream.read(1024 * 1024), b"")
    return io.BufferedReader(PDFStream(chunks, source, max_bytes))
